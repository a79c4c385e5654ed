// Targets: one server, a DNS name for several, a static list of IP addresses; bad ones name the input.
import { describe, expect, it } from 'vitest';

import { isMultiServerTarget, LoupeClient, resolveTarget, serviceConfig } from '../src/index.js';

describe('resolveTarget', () => {
  it('passes one HOST:PORT and dns:/// targets through, and joins IP lists into ipv4:/ipv6: targets', () => {
    expect(resolveTarget('localhost:50051')).toBe('localhost:50051');
    expect(resolveTarget('dns:///loupe.plant.svc:50051')).toBe('dns:///loupe.plant.svc:50051');
    expect(resolveTarget(['10.0.0.5:50051', '10.0.0.6:50051'])).toBe('ipv4:10.0.0.5:50051,10.0.0.6:50051');
    expect(resolveTarget(' 10.0.0.5:1, 10.0.0.6:2 ')).toBe('ipv4:10.0.0.5:1,10.0.0.6:2');
    expect(resolveTarget('[::1]:1,[::1]:2')).toBe('ipv6:[::1]:1,[::1]:2');
    expect(isMultiServerTarget(resolveTarget('10.0.0.5:1,10.0.0.6:2'))).toBe(true);
    expect(isMultiServerTarget(resolveTarget('localhost:1'))).toBe(false);
  });

  it('refuses what grpc-js cannot resolve, saying what to write instead', () => {
    expect(() => resolveTarget('localhost')).toThrow("server address must be HOST:PORT, got 'localhost'");
    expect(() => resolveTarget('a.example:1,b.example:2')).toThrow(/dns:\/\/\/HOST:PORT/);
    expect(() => resolveTarget('10.0.0.5:1,[::1]:2')).toThrow(/one family/);
    expect(() => resolveTarget('dns:///nohost')).toThrow(/HOST:PORT/);
    expect(() => resolveTarget([])).toThrow(/no server address/);
  });
});

describe('channel', () => {
  it('round_robin and a retryPolicy for UNAVAILABLE are in the service config grpc-js parses', () => {
    const c = JSON.parse(serviceConfig(4)) as { loadBalancingConfig: unknown[]; methodConfig: { retryPolicy: { maxAttempts: number; retryableStatusCodes: string[] } }[] };
    expect(c.loadBalancingConfig).toEqual([{ round_robin: {} }]);
    expect(c.methodConfig[0]!.retryPolicy).toMatchObject({ maxAttempts: 4, retryableStatusCodes: ['UNAVAILABLE'] });
    // grpc-js validates the service config when the channel is made: an invalid one throws here.
    const client = new LoupeClient('127.0.0.1:1,127.0.0.1:2', { maxAttempts: 4 });
    expect(client.target).toBe('ipv4:127.0.0.1:1,127.0.0.1:2');
    client.close();
  });
});
