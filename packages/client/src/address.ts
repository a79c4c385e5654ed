// Server addresses and gRPC targets, without loading grpc-js (the CLI checks --server while parsing).
import { isIP } from 'node:net';

/** "host:port" (IPv6 as [::1]:port). */
export function parseAddress(address: string): string {
  const a = address.trim();
  if (!/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9._-]+):\d{1,5}$/.test(a)) throw new Error(`server address must be HOST:PORT, got '${address}'`);
  return a;
}

/**
 * The gRPC target for one server or several:
 *   - 'host:port'                       one server (a name resolving to several addresses: all of them)
 *   - 'dns:///host:port'                every address the name resolves to (a Kubernetes headless service)
 *   - ['10.0.0.5:50051', '10.0.0.6:50051'] or '10.0.0.5:50051,10.0.0.6:50051'
 *                                       a static list of IP addresses (grpc-js' ipv4:/ipv6: targets)
 * The channel balances calls over the resolved addresses with round_robin (see serviceConfig).
 */
export function resolveTarget(address: string | readonly string[]): string {
  const list = (typeof address === 'string' ? address.split(',') : [...address]).map((a) => a.trim()).filter((a) => a !== '');
  if (list.length === 0) throw new Error('no server address given (HOST:PORT, dns:///HOST:PORT or a list of IP:PORT)');
  if (list.length === 1) {
    const a = list[0]!;
    const scheme = /^(dns|ipv4|ipv6|unix):/.exec(a);
    if (scheme) {
      if (scheme[1] === 'dns') parseAddress(a.replace(/^dns:(\/\/[^/]*\/)?/, ''));
      return a;
    }
    return parseAddress(a);
  }
  const parsed = list.map(parseAddress);
  const host = (a: string): string => a.slice(0, a.lastIndexOf(':')).replace(/^\[|\]$/g, '');
  if (parsed.every((a) => isIP(host(a)) === 4)) return `ipv4:${parsed.join(',')}`;
  if (parsed.every((a) => isIP(host(a)) === 6)) return `ipv6:${parsed.join(',')}`;
  throw new Error(`a list of servers must be IP:PORT addresses of one family (got ${list.join(', ')}); for host names use one name that resolves to all of them: dns:///HOST:PORT`);
}

/** True when the target names several servers (or a name that may resolve to several): worth resuming on. */
export function isMultiServerTarget(target: string): boolean {
  return /^(dns|ipv4|ipv6):/.test(target);
}
