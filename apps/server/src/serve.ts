// Running the server in the foreground: flags -> config -> start -> wait for SIGTERM/SIGINT -> graceful
// stop. Used by the `loupe-server` binary (main.ts) and by `loupe serve`.
import { parseArgs } from 'node:util';

import { ConfigError, loadConfig, type ServerConfig } from './config.js';
import { createLogger, isLogLevel, type Logger } from './log.js';
import { LoupeServer } from './server.js';

export const SERVE_USAGE = `Usage: loupe-server [options]   (also: loupe serve [options])

Runs the Loupe inspection server (gRPC loupe.v1.Inspection + grpc.health.v1.Health) in the foreground.
SIGTERM/SIGINT stop it gracefully: no new work, in-flight images answered, the log flushed.

Options (flags > LOUPE_SERVER_* environment > --config file > defaults):
  --config FILE          JSON config file (see apps/server/README.md)
  --models DIR           model directory (required): <name>.loupe or <name>/<version>.loupe
  --host HOST            address to bind (default 0.0.0.0)
  --port N               gRPC port (default 50051; 0 = any free port)
  --metrics-port M       Prometheus /metrics on this port (default: off)
  --db FILE              SQLite inspection log (default <models>/inspections.db)
  --db-url URL           PostgreSQL inspection log shared by a fleet (postgres://...; prefer
                         $LOUPE_SERVER_DB_URL: a flag's password shows in the process list)
  --rescan-ms MS         rescan the models folder this often and load new versions (fleet; default 0 = off)
  --tls-cert FILE        server certificate (PEM); with --tls-key enables TLS
  --tls-key FILE         server private key (PEM)
  --tls-client-ca FILE   require client certificates signed by this CA (mutual TLS)
  --token TOKEN          accept this bearer token (repeatable); none = no authentication
  --max-batch N          most images per engine batch (default 32)
  --max-delay-ms MS      longest wait for a fuller batch (default 5)
  --stream-window N      unanswered images read per stream (default 32)
  --weights PATH         ResNet-50 weights (default: $LOUPE_WEIGHTS or the cache)
  --backend NAME         auto | cpu | cuda (default auto)
  --threads N            engine threads (default: all cores)
  --log-level LEVEL      debug | info | warn | error (default info)
  -h, --help             this help
`;

const OPTIONS = {
  config: { type: 'string' },
  models: { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  'metrics-port': { type: 'string' },
  db: { type: 'string' },
  'db-url': { type: 'string' },
  'rescan-ms': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-client-ca': { type: 'string' },
  token: { type: 'string', multiple: true },
  'max-batch': { type: 'string' },
  'max-delay-ms': { type: 'string' },
  'stream-window': { type: 'string' },
  weights: { type: 'string' },
  backend: { type: 'string' },
  threads: { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Flags as the CLI's `serve` command passes them (all optional). */
export interface ServeFlags {
  config?: string;
  models?: string;
  host?: string;
  port?: number;
  metricsPort?: number;
  db?: string;
  dbUrl?: string;
  rescanMs?: number;
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
  token?: string[];
  maxBatch?: number;
  maxDelayMs?: number;
  streamWindow?: number;
  weights?: string;
  backend?: string;
  threads?: number;
  logLevel?: string;
}

function int(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\s*\d+\s*$/.test(v) || !Number.isSafeInteger(n)) throw new ConfigError(`--${name} must be a non-negative integer, got '${v}'`);
  return n;
}

/** Parses loupe-server's argv into ServeFlags (throws ConfigError on a bad flag). */
export function parseServeArgs(argv: readonly string[]): ServeFlags & { help?: boolean } {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: false, strict: true });
  } catch (err) {
    throw new ConfigError(err instanceof Error ? err.message : String(err));
  }
  const v = parsed.values;
  const delay = v['max-delay-ms'];
  if (delay !== undefined && !Number.isFinite(Number(delay))) throw new ConfigError(`--max-delay-ms must be a number, got '${delay}'`);
  return {
    help: v.help,
    config: v.config,
    models: v.models,
    host: v.host,
    port: int('port', v.port),
    metricsPort: int('metrics-port', v['metrics-port']),
    db: v.db,
    dbUrl: v['db-url'],
    rescanMs: int('rescan-ms', v['rescan-ms']),
    tlsCert: v['tls-cert'],
    tlsKey: v['tls-key'],
    tlsClientCa: v['tls-client-ca'],
    token: v.token,
    maxBatch: int('max-batch', v['max-batch']),
    maxDelayMs: delay === undefined ? undefined : Number(delay),
    streamWindow: int('stream-window', v['stream-window']),
    weights: v.weights,
    backend: v.backend,
    threads: int('threads', v.threads),
    logLevel: v['log-level'],
  };
}

/** Flags -> config overrides (only what was given). */
export function flagsToOverrides(f: ServeFlags): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  const set = (path: string, value: unknown): void => {
    if (value === undefined) return;
    const parts = path.split('.');
    let cur = o;
    for (const p of parts.slice(0, -1)) cur = (cur[p] ??= {}) as Record<string, unknown>;
    cur[parts[parts.length - 1]!] = value;
  };
  set('modelsDir', f.models);
  set('host', f.host);
  set('port', f.port);
  set('metrics.port', f.metricsPort);
  set('db.path', f.db);
  set('db.url', f.dbUrl);
  set('rescanMs', f.rescanMs);
  set('tls.cert', f.tlsCert);
  set('tls.key', f.tlsKey);
  set('tls.clientCa', f.tlsClientCa);
  if (f.token && f.token.length > 0) set('auth.tokens', f.token);
  set('batching.maxBatchSize', f.maxBatch);
  set('batching.maxQueueDelayMs', f.maxDelayMs);
  set('flow.maxInFlightPerStream', f.streamWindow);
  set('engine.weights', f.weights);
  set('engine.backend', f.backend);
  set('engine.threads', f.threads);
  set('log.level', f.logLevel);
  return o;
}

export interface ServeOptions {
  flags?: ServeFlags;
  env?: NodeJS.ProcessEnv;
  logger?: Logger;
  /** Called once the server is listening. */
  onStarted?: (server: LoupeServer) => void;
  /** Stop when this fires (besides SIGTERM/SIGINT). */
  signal?: AbortSignal;
}

/** Runs the server until SIGTERM/SIGINT (or `signal`); resolves with the process exit code. */
export async function serve(opts: ServeOptions = {}): Promise<number> {
  let config: ServerConfig;
  const flags = opts.flags ?? {};
  try {
    config = loadConfig({ ...(flags.config ? { file: flags.config } : {}), env: opts.env ?? process.env, overrides: flagsToOverrides(flags) });
  } catch (err) {
    process.stderr.write(`loupe-server: ${err instanceof Error ? err.message : String(err)}\n`);
    return 2;
  }
  const log = opts.logger ?? createLogger(isLogLevel(config.log.level) ? config.log.level : 'info');
  let server: LoupeServer;
  try {
    server = await LoupeServer.start(config, { logger: log });
  } catch (err) {
    log.error('failed to start', { error: err });
    process.stderr.write(`loupe-server: cannot start: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  opts.onStarted?.(server);
  await new Promise<void>((resolve) => {
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals): void => {
      signals++;
      if (signals === 1) {
        log.info('signal received: stopping gracefully', { signal: sig });
        resolve();
      } else {
        log.warn('second signal: exiting now', { signal: sig });
        process.exit(130);
      }
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    opts.signal?.addEventListener('abort', () => resolve(), { once: true });
  });
  await server.stop();
  return 0;
}

/** The loupe-server command line. */
export async function main(argv: readonly string[]): Promise<number> {
  let flags;
  try {
    flags = parseServeArgs(argv);
  } catch (err) {
    process.stderr.write(`loupe-server: ${err instanceof Error ? err.message : String(err)}\n\n${SERVE_USAGE}`);
    return 2;
  }
  if (flags.help) {
    process.stdout.write(SERVE_USAGE);
    return 0;
  }
  return serve({ flags });
}
