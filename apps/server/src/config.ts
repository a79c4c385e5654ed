// Server configuration: defaults < JSON config file < environment (LOUPE_SERVER_*) < flags/overrides.
// Every setting has a default except the model directory. Paths in a config file are relative to the
// file's folder; paths from the environment or flags are relative to the working directory.
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';

import { DEFAULT_PRECISION } from '@loupe/core';

import { isLogLevel, type LogLevel } from './log.js';

export type StoreImages = 'none' | 'anomalous' | 'all';
export type Synchronous = 'NORMAL' | 'FULL';

export interface TlsConfig {
  /** PEM certificate chain of the server. */
  cert: string;
  /** PEM private key of the server. */
  key: string;
  /** PEM CA bundle: when set, clients must present a certificate signed by it (mutual TLS). */
  clientCa?: string;
}

export interface ServerConfig {
  host: string;
  /** gRPC port; 0 = any free port (the bound port is reported). */
  port: number;
  /** Folder of Loupe model files: <name>.loupe (version 1) or <name>/<version>.loupe. */
  modelsDir: string;
  /** Load the newest version of every model at start. */
  autoload: boolean;
  /**
   * Rescan the models folder this often (ms; 0 = only when asked): a replica of a fleet sees versions that
   * another one trained or an operator copied into the shared folder, and (with autoload) loads them.
   */
  rescanMs: number;
  metrics: {
    /** '' (default) = the gRPC `host`: a server bound to loopback does not publish its metrics to the network. */
    host: string;
    /** null = no metrics endpoint; 0 = any free port. */
    port: number | null;
  };
  tls: TlsConfig | null;
  auth: {
    /** Bearer tokens accepted in `authorization: Bearer <token>`; empty = no authentication. */
    tokens: string[];
    /** A file with one token per line (merged with `tokens`). */
    tokensFile?: string;
    /**
     * With tokens: per-model health (Health.Check of a model name, Watch) and Health.List answer without a
     * token too. Default false: they name the models, so only the overall status ("") is open.
     */
    openHealth: boolean;
  };
  batching: {
    /** Most images (views) per engine run. */
    maxBatchSize: number;
    /** Longest the oldest queued image waits for a fuller batch while the engine is idle. */
    maxQueueDelayMs: number;
    /** Engine runs in flight at once (2 lets a GPU start the next batch without a gap). */
    maxInflightBatches: number;
    /** Identical images (same bytes) queued together share one engine view; each is still answered. */
    dedupe: boolean;
  };
  flow: {
    /** Unanswered images read per Inspect stream before the server stops reading it. */
    maxInFlightPerStream: number;
    /** Images waiting server-wide for a pipeline slot; beyond: RESOURCE_EXHAUSTED. */
    maxQueue: number;
    /** Bytes of encoded images waiting server-wide; beyond: RESOURCE_EXHAUSTED. */
    maxQueueBytes: number;
    /** Images being decoded/inferred/scored at once; 0 = maxBatchSize * (maxInflightBatches + 1). */
    maxActive: number;
  };
  limits: {
    /** Largest gRPC message, both ways. */
    maxMessageBytes: number;
    /** Largest encoded image. */
    maxImageBytes: number;
    /** Largest decoded image, width * height (decompression-bomb guard). */
    maxImagePixels: number;
  };
  keepalive: { timeMs: number; timeoutMs: number; minPingIntervalMs: number };
  engine: { weights?: string; backend: 'auto' | 'cpu' | 'cuda'; precision: 'fp32' | 'bf16' | 'fp16'; threads?: number };
  db: {
    /** SQLite file; default <modelsDir>/inspections.db. Ignored when `url` is set. */
    path: string;
    /** postgres://user:password@host:port/db: the log a fleet of servers shares (instead of the SQLite file). */
    url?: string;
    storeImages: StoreImages;
    /** Delete results older than this many days (0 = keep). */
    retentionDays: number;
    /** Keep at most this many results (0 = no cap). */
    maxRows: number;
    /** NORMAL: survives a process crash (kill -9); FULL: also a power loss (fsync per commit). */
    synchronous: Synchronous;
  };
  training: {
    /** Trainings at once; more are answered RESOURCE_EXHAUSTED. */
    maxConcurrent: number;
    /** Engine threads of the training process (it shares the machine with inspection). */
    threads: number;
    /** Most training images per request. */
    maxImages: number;
  };
  /** Longest a graceful shutdown waits for in-flight work before cancelling it. */
  shutdownGraceMs: number;
  /** Serve gRPC server reflection (behind the same authentication as the API). */
  reflection: boolean;
  log: { level: LogLevel };
}

export type DeepPartial<T> = { [K in keyof T]?: T[K] extends object | null ? (T[K] extends unknown[] ? T[K] : DeepPartial<NonNullable<T[K]>> | null) : T[K] };

export const DEFAULTS: Omit<ServerConfig, 'modelsDir' | 'db'> & { db: Omit<ServerConfig['db'], 'path'> } = {
  host: '0.0.0.0',
  port: 50051,
  autoload: true,
  rescanMs: 0,
  metrics: { host: '', port: null },
  tls: null,
  auth: { tokens: [], openHealth: false },
  batching: { maxBatchSize: 32, maxQueueDelayMs: 5, maxInflightBatches: 1, dedupe: true },
  flow: { maxInFlightPerStream: 32, maxQueue: 2048, maxQueueBytes: 256 * 1024 * 1024, maxActive: 0 },
  limits: { maxMessageBytes: 16 * 1024 * 1024, maxImageBytes: 16 * 1024 * 1024 - 1024, maxImagePixels: 50_000_000 },
  keepalive: { timeMs: 30_000, timeoutMs: 10_000, minPingIntervalMs: 10_000 },
  engine: { backend: 'auto', precision: DEFAULT_PRECISION },
  db: { storeImages: 'none', retentionDays: 90, maxRows: 10_000_000, synchronous: 'NORMAL' },
  training: { maxConcurrent: 1, threads: 1, maxImages: 5000 },
  shutdownGraceMs: 30_000,
  reflection: true,
  log: { level: 'info' },
};

export class ConfigError extends Error {
  override name = 'ConfigError';
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    out[k] = isObject(v) && isObject(out[k]) ? merge(out[k] as Record<string, unknown>, v) : v;
  }
  return out;
}

function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let cur = obj;
  for (const p of parts.slice(0, -1)) {
    if (!isObject(cur[p])) cur[p] = {};
    cur = cur[p] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1]!] = value;
}

type Kind = 'int' | 'num' | 'str' | 'bool' | 'list' | 'path';

/** LOUPE_SERVER_* variables and the config path each one sets. */
export const ENV_VARS: Record<string, [string, Kind]> = {
  LOUPE_SERVER_HOST: ['host', 'str'],
  LOUPE_SERVER_PORT: ['port', 'int'],
  LOUPE_SERVER_MODELS: ['modelsDir', 'path'],
  LOUPE_SERVER_AUTOLOAD: ['autoload', 'bool'],
  LOUPE_SERVER_RESCAN_MS: ['rescanMs', 'int'],
  LOUPE_SERVER_METRICS_HOST: ['metrics.host', 'str'],
  LOUPE_SERVER_METRICS_PORT: ['metrics.port', 'int'],
  LOUPE_SERVER_TLS_CERT: ['tls.cert', 'path'],
  LOUPE_SERVER_TLS_KEY: ['tls.key', 'path'],
  LOUPE_SERVER_TLS_CLIENT_CA: ['tls.clientCa', 'path'],
  LOUPE_SERVER_TOKENS: ['auth.tokens', 'list'],
  LOUPE_SERVER_TOKENS_FILE: ['auth.tokensFile', 'path'],
  LOUPE_SERVER_OPEN_HEALTH: ['auth.openHealth', 'bool'],
  LOUPE_SERVER_MAX_BATCH: ['batching.maxBatchSize', 'int'],
  LOUPE_SERVER_MAX_DELAY_MS: ['batching.maxQueueDelayMs', 'num'],
  LOUPE_SERVER_INFLIGHT_BATCHES: ['batching.maxInflightBatches', 'int'],
  LOUPE_SERVER_DEDUPE: ['batching.dedupe', 'bool'],
  LOUPE_SERVER_STREAM_WINDOW: ['flow.maxInFlightPerStream', 'int'],
  LOUPE_SERVER_MAX_QUEUE: ['flow.maxQueue', 'int'],
  LOUPE_SERVER_MAX_MESSAGE_BYTES: ['limits.maxMessageBytes', 'int'],
  LOUPE_SERVER_DB: ['db.path', 'path'],
  LOUPE_SERVER_DB_URL: ['db.url', 'str'],
  LOUPE_SERVER_STORE_IMAGES: ['db.storeImages', 'str'],
  LOUPE_SERVER_RETENTION_DAYS: ['db.retentionDays', 'num'],
  LOUPE_SERVER_DB_SYNCHRONOUS: ['db.synchronous', 'str'],
  LOUPE_SERVER_WEIGHTS: ['engine.weights', 'path'],
  LOUPE_SERVER_BACKEND: ['engine.backend', 'str'],
  LOUPE_SERVER_THREADS: ['engine.threads', 'int'],
  LOUPE_SERVER_TRAIN_THREADS: ['training.threads', 'int'],
  LOUPE_SERVER_LOG_LEVEL: ['log.level', 'str'],
};

function parseValue(name: string, raw: string, kind: Kind): unknown {
  switch (kind) {
    case 'int': {
      const n = Number(raw);
      if (!/^\s*-?\d+\s*$/.test(raw) || !Number.isSafeInteger(n)) throw new ConfigError(`${name}: expected an integer, got '${raw}'`);
      return n;
    }
    case 'num': {
      const n = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(n)) throw new ConfigError(`${name}: expected a number, got '${raw}'`);
      return n;
    }
    case 'bool':
      if (/^(1|true|yes|on)$/i.test(raw)) return true;
      if (/^(0|false|no|off)$/i.test(raw)) return false;
      throw new ConfigError(`${name}: expected true/false, got '${raw}'`);
    case 'list':
      return raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
    case 'path':
      return resolve(raw);
    default:
      return raw;
  }
}

/** The config values set by LOUPE_SERVER_* variables in `env`. */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, [path, kind]] of Object.entries(ENV_VARS)) {
    const raw = env[name];
    if (raw === undefined || raw === '') continue;
    setPath(out, path, parseValue(name, raw, kind));
  }
  return out;
}

const FILE_PATHS = ['modelsDir', 'tls.cert', 'tls.key', 'tls.clientCa', 'auth.tokensFile', 'db.path', 'engine.weights'];

/** Reads a JSON config file; relative paths in it are resolved against its folder. */
export function readConfigFile(file: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError(`cannot read the config file ${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!isObject(parsed)) throw new ConfigError(`${file}: the config must be a JSON object`);
  const base = dirname(resolve(file));
  for (const p of FILE_PATHS) {
    const parts = p.split('.');
    let cur: unknown = parsed;
    for (const k of parts.slice(0, -1)) cur = isObject(cur) ? cur[k] : undefined;
    const last = parts[parts.length - 1]!;
    if (isObject(cur) && typeof cur[last] === 'string' && !isAbsolute(cur[last] as string)) cur[last] = join(base, cur[last] as string);
  }
  return parsed;
}

export interface LoadConfigOptions {
  /** JSON config file (also $LOUPE_SERVER_CONFIG). */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Highest precedence (command-line flags, tests). */
  overrides?: DeepPartial<ServerConfig> | Record<string, unknown>;
}

function check(cond: boolean, msg: string): void {
  if (!cond) throw new ConfigError(msg);
}

const posInt = (v: unknown): boolean => Number.isInteger(v) && (v as number) > 0;
const nonNegInt = (v: unknown): boolean => Number.isInteger(v) && (v as number) >= 0;
const port = (v: unknown): boolean => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 65535;

/** Merges and validates the configuration. */
export function loadConfig(opts: LoadConfigOptions = {}): ServerConfig {
  const env = opts.env ?? process.env;
  const file = opts.file ?? env['LOUPE_SERVER_CONFIG'];
  let merged: Record<string, unknown> = merge({}, DEFAULTS as unknown as Record<string, unknown>);
  if (file) merged = merge(merged, readConfigFile(file));
  merged = merge(merged, configFromEnv(env));
  if (opts.overrides) merged = merge(merged, opts.overrides as Record<string, unknown>);
  const c = merged as unknown as ServerConfig;

  check(typeof c.modelsDir === 'string' && c.modelsDir !== '', 'the model directory is required (--models DIR, $LOUPE_SERVER_MODELS or "modelsDir" in the config file)');
  c.modelsDir = resolve(c.modelsDir);
  if (c.metrics && (c.metrics.host === '' || c.metrics.host === undefined)) c.metrics = { ...c.metrics, host: c.host };
  if (!c.db || typeof c.db.path !== 'string' || c.db.path === '') c.db = { ...c.db, path: join(c.modelsDir, 'inspections.db') };
  check(nonNegInt(c.rescanMs), 'rescanMs must be a non-negative integer (ms; 0 = off)');
  check(typeof c.host === 'string' && c.host !== '', 'host must be a non-empty string');
  check(port(c.port), `port must be an integer in [0, 65535], got ${String(c.port)}`);
  check(c.metrics.port === null || port(c.metrics.port), `metrics.port must be null or an integer in [0, 65535], got ${String(c.metrics.port)}`);
  if (c.tls && (c.tls.cert || c.tls.key || c.tls.clientCa)) {
    check(typeof c.tls.cert === 'string' && typeof c.tls.key === 'string', 'TLS needs both tls.cert and tls.key (PEM files)');
  } else c.tls = null;
  check(Array.isArray(c.auth.tokens) && c.auth.tokens.every((t) => typeof t === 'string' && t !== ''), 'auth.tokens must be a list of non-empty strings');
  check(typeof c.auth.openHealth === 'boolean', 'auth.openHealth must be true or false');
  check(posInt(c.batching.maxBatchSize) && c.batching.maxBatchSize <= 1024, 'batching.maxBatchSize must be an integer in [1, 1024]');
  check(typeof c.batching.maxQueueDelayMs === 'number' && c.batching.maxQueueDelayMs >= 0 && c.batching.maxQueueDelayMs <= 10_000, 'batching.maxQueueDelayMs must be in [0, 10000]');
  check(posInt(c.batching.maxInflightBatches) && c.batching.maxInflightBatches <= 8, 'batching.maxInflightBatches must be an integer in [1, 8]');
  check(typeof c.batching.dedupe === 'boolean', 'batching.dedupe must be true or false');
  check(posInt(c.flow.maxInFlightPerStream), 'flow.maxInFlightPerStream must be a positive integer');
  check(posInt(c.flow.maxQueue), 'flow.maxQueue must be a positive integer');
  check(posInt(c.flow.maxQueueBytes), 'flow.maxQueueBytes must be a positive integer');
  check(nonNegInt(c.flow.maxActive), 'flow.maxActive must be a non-negative integer');
  check(posInt(c.limits.maxMessageBytes), 'limits.maxMessageBytes must be a positive integer');
  check(posInt(c.limits.maxImageBytes), 'limits.maxImageBytes must be a positive integer');
  check(posInt(c.limits.maxImagePixels), 'limits.maxImagePixels must be a positive integer');
  check(posInt(c.keepalive.timeMs) && posInt(c.keepalive.timeoutMs) && posInt(c.keepalive.minPingIntervalMs), 'keepalive times must be positive integers (ms)');
  check(['auto', 'cpu', 'cuda'].includes(c.engine.backend), `engine.backend must be auto, cpu or cuda, got ${String(c.engine.backend)}`);
  check(['fp32', 'bf16', 'fp16'].includes(c.engine.precision), `engine.precision must be fp32, bf16 or fp16`);
  check(c.engine.threads === undefined || posInt(c.engine.threads), 'engine.threads must be a positive integer');
  check(['none', 'anomalous', 'all'].includes(c.db.storeImages), `db.storeImages must be none, anomalous or all, got ${String(c.db.storeImages)}`);
  check(typeof c.db.retentionDays === 'number' && c.db.retentionDays >= 0, 'db.retentionDays must be >= 0');
  check(nonNegInt(c.db.maxRows), 'db.maxRows must be a non-negative integer');
  check(['NORMAL', 'FULL'].includes(c.db.synchronous), 'db.synchronous must be NORMAL or FULL');
  if (c.db.url === '') delete c.db.url;
  check(c.db.url === undefined || (typeof c.db.url === 'string' && /^postgres(ql)?:\/\/./i.test(c.db.url)), `db.url must be a postgres://user:password@host:port/database URL (it starts with '${String(c.db.url).slice(0, 12)}')`);
  check(posInt(c.training.maxConcurrent) && posInt(c.training.threads) && posInt(c.training.maxImages), 'training.maxConcurrent, threads and maxImages must be positive integers');
  check(nonNegInt(c.shutdownGraceMs), 'shutdownGraceMs must be a non-negative integer');
  check(typeof c.reflection === 'boolean', 'reflection must be true or false');
  check(isLogLevel(c.log.level), `log.level must be debug, info, warn, error or silent, got ${String(c.log.level)}`);
  if (c.auth.tokensFile) {
    let text: string;
    try {
      text = readFileSync(c.auth.tokensFile, 'utf8');
    } catch (err) {
      throw new ConfigError(`cannot read auth.tokensFile ${c.auth.tokensFile}: ${err instanceof Error ? err.message : String(err)}`);
    }
    const fromFile = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
    c.auth = { ...c.auth, tokens: [...new Set([...c.auth.tokens, ...fromFile])] };
  }
  if (c.flow.maxActive === 0) c.flow.maxActive = c.batching.maxBatchSize * (c.batching.maxInflightBatches + 1);
  return c;
}

/** A postgres:// URL without its password, for logs and messages. */
export function redactDbUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparsable URL)';
  }
}

/** The config as it may be logged: secrets replaced. */
export function redactConfig(c: ServerConfig): Record<string, unknown> {
  return { ...c, db: c.db.url ? { ...c.db, url: redactDbUrl(c.db.url) } : c.db, auth: { tokens: `${c.auth.tokens.length} token(s)`, tokensFile: c.auth.tokensFile, openHealth: c.auth.openHealth } };
}
