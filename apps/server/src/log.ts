// Structured logs: one JSON object per line ({"time","level","msg",...fields}) on stdout (or any
// writable). Levels: debug < info < warn < error; below the configured level nothing is formatted.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
  readonly level: LogLevel;
}

function serializable(v: unknown): unknown {
  if (v instanceof Error) {
    const e: Record<string, unknown> = { name: v.name, message: v.message };
    const code = (v as { code?: unknown }).code;
    if (code !== undefined) e['code'] = code;
    return e;
  }
  if (typeof v === 'bigint') return v.toString();
  return v;
}

export function isLogLevel(v: unknown): v is LogLevel {
  return typeof v === 'string' && v in ORDER;
}

export function createLogger(level: LogLevel = 'info', out: { write(s: string): unknown } = process.stdout, base: Record<string, unknown> = {}): Logger {
  const min = ORDER[level];
  const emit = (lvl: Exclude<LogLevel, 'silent'>, msg: string, fields?: Record<string, unknown>): void => {
    if (ORDER[lvl] < min) return;
    const rec: Record<string, unknown> = { time: new Date().toISOString(), level: lvl, msg, ...base };
    if (fields) for (const [k, v] of Object.entries(fields)) if (v !== undefined) rec[k] = serializable(v);
    let line: string;
    try {
      line = JSON.stringify(rec);
    } catch {
      line = JSON.stringify({ time: rec['time'], level: lvl, msg, note: 'fields not serialisable' });
    }
    out.write(`${line}\n`);
  };
  return {
    level,
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createLogger(level, out, { ...base, ...fields }),
  };
}

export const silentLogger: Logger = createLogger('silent');
