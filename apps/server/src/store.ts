// The inspection log: every result, in an embedded SQLite database (better-sqlite3, WAL mode).
//
// Durability: results are written (committed) BEFORE they are sent to the client, so a result the
// client has seen survives a server crash. With synchronous=NORMAL a commit is in the WAL file (the OS
// has it) when it returns, which survives kill -9; synchronous=FULL also fsyncs (power loss).
// Commits are grouped: results finished in the same event-loop turn share one transaction.
//
// A log that cannot commit (its disk full, read-only, failing) makes the server unable to deliver
// anything: the store says so (`writable`, 'writable' events; health turns NOT_SERVING), its errors name
// the log and what is wrong (LogWriteError), and a probe write once a second finds out when it can again.
import Database from 'better-sqlite3';
import { EventEmitter } from 'node:events';
import { mkdirSync } from 'node:fs';
import { basename, dirname } from 'node:path';

import type { StoreImages, Synchronous } from './config.js';

export type VerdictName = 'good' | 'anomalous';

export interface InspectionRow {
  inspectionId: string;
  clientId: string;
  timeMs: number;
  model: string;
  modelVersion: string;
  verdict: VerdictName;
  score: number;
  defectType: string;
  latencyMs: number;
  source: string;
  peer: string;
  image?: Buffer | undefined;
}

export interface StoredInspection extends Omit<InspectionRow, 'image'> {
  seq: number;
  hasImage: boolean;
}

export interface ListQuery {
  pageSize?: number;
  pageToken?: string;
  sinceMs?: number;
  untilMs?: number;
  model?: string;
  verdict?: VerdictName;
  clientId?: string;
  oldestFirst?: boolean;
  /** Stop the page before its rows' text exceeds this many bytes (at least one row is always returned). */
  maxBytes?: number;
}

/**
 * Longest text of each column a listing returns, in characters. New rows are bounded when they arrive
 * (limits.ts); rows written before those limits (a 5 MB `source`) are cut here, so that any single row,
 * and so every page, fits in a message.
 */
export const LIST_TEXT_LIMITS: Record<string, number> = { client_id: 1024, model: 256, model_version: 64, defect_type: 256, source: 4096, peer: 256 };

/** Bytes a row takes in a page besides its text (ids, numbers, framing). */
const ROW_OVERHEAD_BYTES = 128;

export class PageTokenError extends Error {
  override name = 'PageTokenError';
}

/** The inspection log cannot be opened or written; the message names the file and the cause in words. */
export class LogWriteError extends Error {
  override name = 'LogWriteError';

  constructor(
    message: string,
    /** SQLite's code (SQLITE_FULL, SQLITE_READONLY, SQLITE_IOERR_WRITE, ...) or the system's. */
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** What a SQLite or file system error means for the log, in words. */
export function logProblem(err: unknown): { code: string; why: string } {
  const code = String((err as { code?: unknown } | null)?.code ?? 'UNKNOWN');
  const msg = err instanceof Error ? err.message : String(err);
  if (code === 'SQLITE_FULL' || code === 'ENOSPC') return { code, why: `the disk holding it is full (${msg})` };
  if (code.startsWith('SQLITE_READONLY') || code === 'EROFS') return { code, why: `it is read-only (${msg})` };
  if (code === 'EEXIST' || code === 'ENOTDIR') return { code, why: `a file is in the way of its folder (${msg})` };
  if (code.startsWith('SQLITE_CANTOPEN') || code === 'EACCES') return { code, why: `it cannot be opened (${msg})` };
  if (code.startsWith('SQLITE_IOERR')) return { code, why: `the disk fails to write it (${msg})` };
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return { code, why: `another server holds it (${msg}): each server needs its own db.path, or a fleet shares one PostgreSQL log (db.url)` };
  }
  return { code, why: msg };
}

/** pageSize and sort order of a listing, defaults applied (both backends). */
export function pageParams(q: ListQuery): { pageSize: number; oldestFirst: boolean } {
  return { pageSize: Math.min(1000, Math.max(1, q.pageSize || 100)), oldestFirst: q.oldestFirst ?? false };
}

/** The `seq` a page token continues from; PageTokenError for a token this server did not issue. */
export function decodePageToken(token: string, oldestFirst: boolean): number {
  let cursor: { s: number; o: boolean };
  try {
    cursor = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { s: number; o: boolean };
  } catch {
    throw new PageTokenError('page_token is not a token this server issued');
  }
  if (!Number.isSafeInteger(cursor.s) || typeof cursor.o !== 'boolean') throw new PageTokenError('page_token is not a token this server issued');
  if (cursor.o !== oldestFirst) throw new PageTokenError('page_token was issued for the other sort order');
  return cursor.s;
}

/** The SELECT list of a listing's text columns, cut to LIST_TEXT_LIMITS (same SQL in SQLite and PostgreSQL). */
export function listTextColumns(): string {
  return Object.entries(LIST_TEXT_LIMITS).map(([c, n]) => `substr(${c}, 1, ${n}) AS ${c}, length(${c}) > ${n} AS ${c}_cut`).join(', ');
}

/**
 * A page from up to pageSize + 1 rows (seq, inspection_id, time_ms, verdict, score, latency_ms, the cut
 * text columns, has_image): rows up to pageSize and up to maxBytes of text (never fewer than one).
 * Booleans arrive as 1/0 from SQLite and true/false from PostgreSQL, numbers as numbers.
 */
export function pageOf(rows: Record<string, unknown>[], pageSize: number, oldestFirst: boolean, maxBytes?: number): { items: StoredInspection[]; nextPageToken: string } {
  const cut = (r: Record<string, unknown>, c: string): string => (r[`${c}_cut`] === 1 || r[`${c}_cut`] === true ? `${r[c] as string}...` : (r[c] as string));
  let n = Math.min(pageSize, rows.length);
  if (maxBytes !== undefined) {
    let bytes = 0;
    for (let i = 0; i < n; i++) {
      const r = rows[i]!;
      bytes += ROW_OVERHEAD_BYTES + Object.keys(LIST_TEXT_LIMITS).reduce((a, c) => a + Buffer.byteLength(r[c] as string, 'utf8'), 0);
      if (bytes > maxBytes && i > 0) {
        n = i;
        break;
      }
    }
  }
  const more = rows.length > n;
  const items = rows.slice(0, n).map(
    (r): StoredInspection => ({
      seq: Number(r['seq']),
      inspectionId: r['inspection_id'] as string,
      clientId: cut(r, 'client_id'),
      timeMs: Number(r['time_ms']),
      model: cut(r, 'model'),
      modelVersion: cut(r, 'model_version'),
      verdict: r['verdict'] as VerdictName,
      score: r['score'] as number,
      defectType: cut(r, 'defect_type'),
      latencyMs: r['latency_ms'] as number,
      source: cut(r, 'source'),
      peer: cut(r, 'peer'),
      hasImage: r['has_image'] === 1 || r['has_image'] === true,
    }),
  );
  const last = items[items.length - 1];
  const nextPageToken = more && last ? Buffer.from(JSON.stringify({ s: last.seq, o: oldestFirst })).toString('base64url') : '';
  return { items, nextPageToken };
}

/**
 * What the server needs of an inspection log, whichever backend holds it: SQLite (InspectionStore, one
 * server) or PostgreSQL (PgInspectionStore, a fleet). Both commit a result before it is answered, emit
 * 'writable' (ok, error) when they stop or start being able to commit, and page by `seq`.
 */
export interface InspectionLog extends EventEmitter {
  /** Where it is, for logs and messages (a file, or a postgres URL without its password). */
  readonly location: string;
  readonly storeImages: StoreImages;
  readonly writable: boolean;
  readonly writeError: LogWriteError | null;
  /** Results in the log (PostgreSQL: as of start or the last retention pass, plus this server's own). */
  readonly count: number;
  keepsImage(verdict: VerdictName): boolean;
  record(row: InspectionRow): Promise<void>;
  list(q?: ListQuery): { items: StoredInspection[]; nextPageToken: string } | Promise<{ items: StoredInspection[]; nextPageToken: string }>;
  prune(now?: number): number | Promise<number>;
  close(): void | Promise<void>;
}

const SCHEMA_VERSION = 1;

interface Pending {
  row: InspectionRow;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export interface StoreOptions {
  synchronous?: Synchronous;
  storeImages?: StoreImages;
  retentionDays?: number;
  maxRows?: number;
}

/** How often a log that cannot commit is tried again. */
const PROBE_MS = 1000;

export class InspectionStore extends EventEmitter implements InspectionLog {
  private readonly db: Database.Database;
  private readonly insert: Database.Statement;
  private readonly insertMany: (rows: InspectionRow[]) => void;
  private pending: Pending[] = [];
  private flushScheduled = false;
  private closed = false;
  readonly storeImages: StoreImages;
  private readonly retentionDays: number;
  private readonly maxRows: number;
  private rowCount: number;
  private failure: LogWriteError | null = null;
  private probeTimer: NodeJS.Timeout | undefined;
  private readonly probe: Database.Statement;

  /**
   * Opens (creating it if needed) the log at `path`. Throws LogWriteError naming the file and the cause
   * (a folder that cannot be made, a file that cannot be opened, a full disk).
   */
  constructor(
    readonly path: string,
    opts: StoreOptions = {},
  ) {
    super();
    try {
      if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
      this.db = new Database(path);
    } catch (err) {
      const p = logProblem(err);
      throw new LogWriteError(`cannot open the inspection log ${path}: ${p.why}`, p.code, { cause: err });
    }
    try {
      ({ insert: this.insert, insertMany: this.insertMany, probe: this.probe, rows: this.rowCount } = this.prepare(opts));
    } catch (err) {
      this.db.close();
      const p = logProblem(err);
      throw new LogWriteError(`cannot open the inspection log ${path}: ${p.why}`, p.code, { cause: err });
    }
    this.storeImages = opts.storeImages ?? 'none';
    this.retentionDays = opts.retentionDays ?? 0;
    this.maxRows = opts.maxRows ?? 0;
  }

  private prepare(opts: StoreOptions): { insert: Database.Statement; insertMany: (rows: InspectionRow[]) => void; probe: Database.Statement; rows: number } {
    // One server per file: EXCLUSIVE keeps SQLite's file lock for as long as this connection is open (the
    // kernel drops it when the process dies, kill -9 included), so a second server on the same file is
    // refused at start (SQLITE_BUSY) instead of sharing it. A fleet shares one PostgreSQL log (db.url).
    this.db.pragma('busy_timeout = 0');
    this.db.pragma('locking_mode = EXCLUSIVE');
    this.db.pragma('journal_mode = WAL');
    this.db.pragma(`synchronous = ${opts.synchronous ?? 'NORMAL'}`);
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) throw new Error(`its schema ${version} is newer than this server's (${SCHEMA_VERSION})`);
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS inspections (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        inspection_id TEXT    NOT NULL UNIQUE,
        client_id     TEXT    NOT NULL,
        time_ms       INTEGER NOT NULL,
        model         TEXT    NOT NULL,
        model_version TEXT    NOT NULL,
        verdict       TEXT    NOT NULL CHECK (verdict IN ('good', 'anomalous')),
        score         REAL    NOT NULL,
        defect_type   TEXT    NOT NULL DEFAULT '',
        latency_ms    REAL    NOT NULL,
        source        TEXT    NOT NULL DEFAULT '',
        peer          TEXT    NOT NULL DEFAULT '',
        image         BLOB
      );
      CREATE INDEX IF NOT EXISTS inspections_time ON inspections (time_ms);
      CREATE INDEX IF NOT EXISTS inspections_model_time ON inspections (model, time_ms);
      CREATE INDEX IF NOT EXISTS inspections_client ON inspections (client_id);
      -- One row rewritten by the probe that finds out when a failing log can commit again.
      CREATE TABLE IF NOT EXISTS write_probe (id INTEGER PRIMARY KEY CHECK (id = 1), at_ms INTEGER NOT NULL);
      PRAGMA user_version = ${SCHEMA_VERSION};
    `);
    const insert = this.db.prepare(
      `INSERT INTO inspections (inspection_id, client_id, time_ms, model, model_version, verdict, score, defect_type, latency_ms, source, peer, image)
       VALUES (@inspectionId, @clientId, @timeMs, @model, @modelVersion, @verdict, @score, @defectType, @latencyMs, @source, @peer, @image)`,
    );
    const insertMany = this.db.transaction((rows: InspectionRow[]) => {
      for (const r of rows) insert.run({ ...r, image: r.image ?? null });
    });
    const probe = this.db.prepare('INSERT OR REPLACE INTO write_probe (id, at_ms) VALUES (1, ?)');
    const rows = (this.db.prepare('SELECT count(*) AS n FROM inspections').get() as { n: number }).n;
    return { insert, insertMany, probe, rows };
  }

  get location(): string {
    return this.path;
  }

  /** Whether results can be committed now (false from a failed commit until a probe write succeeds). */
  get writable(): boolean {
    return this.failure === null;
  }

  /** Why the log cannot commit, while it cannot. */
  get writeError(): LogWriteError | null {
    return this.failure;
  }

  /** A commit failed: say so once ('writable', false) and probe until the log can commit again. */
  private failed(err: unknown): LogWriteError {
    const p = logProblem(err);
    const e = new LogWriteError(`the inspection log ${basename(this.path)} cannot record results: ${p.why}`, p.code, { cause: err });
    if (!this.failure) {
      this.failure = e;
      this.emit('writable', false, e);
      this.probeTimer = setInterval(() => this.tryProbe(), PROBE_MS);
      this.probeTimer.unref();
    }
    return e;
  }

  private tryProbe(): void {
    if (this.closed || !this.failure) return;
    try {
      this.probe.run(Date.now());
    } catch {
      return; // still failing
    }
    clearInterval(this.probeTimer);
    this.probeTimer = undefined;
    this.failure = null;
    this.emit('writable', true, null);
  }

  /** Whether the image of a result with this verdict is kept. */
  keepsImage(verdict: VerdictName): boolean {
    return this.storeImages === 'all' || (this.storeImages === 'anomalous' && verdict === 'anomalous');
  }

  /**
   * Records a result; resolves once it is committed. Results recorded in the same event-loop turn are
   * committed together (one transaction).
   */
  record(row: InspectionRow): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the inspection log is closed'));
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ row, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Commits everything recorded so far (synchronously). */
  flush(): void {
    this.flushScheduled = false;
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    try {
      this.insertMany(batch.map((p) => p.row));
      this.rowCount += batch.length;
    } catch (err) {
      const e = this.failed(err);
      for (const p of batch) p.reject(e);
      return;
    }
    for (const p of batch) p.resolve();
  }

  get count(): number {
    return this.rowCount;
  }

  list(q: ListQuery = {}): { items: StoredInspection[]; nextPageToken: string } {
    const { pageSize, oldestFirst } = pageParams(q);
    const where: string[] = [];
    const params: Record<string, unknown> = {};
    if (q.pageToken) {
      where.push(oldestFirst ? 'seq > @cursor' : 'seq < @cursor');
      params['cursor'] = decodePageToken(q.pageToken, oldestFirst);
    }
    if (q.sinceMs !== undefined) {
      where.push('time_ms >= @since');
      params['since'] = q.sinceMs;
    }
    if (q.untilMs !== undefined) {
      where.push('time_ms < @until');
      params['until'] = q.untilMs;
    }
    if (q.model) {
      where.push('model = @model');
      params['model'] = q.model;
    }
    if (q.verdict) {
      where.push('verdict = @verdict');
      params['verdict'] = q.verdict;
    }
    if (q.clientId) {
      where.push('client_id = @clientId');
      params['clientId'] = q.clientId;
    }
    // Text is cut in SQL: a legacy multi-megabyte value is never read whole.
    const text = listTextColumns();
    const sql =
      `SELECT seq, inspection_id, time_ms, verdict, score, latency_ms, ${text}, image IS NOT NULL AS has_image
       FROM inspections ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY seq ${oldestFirst ? 'ASC' : 'DESC'} LIMIT ${pageSize + 1}`;
    const rows = this.db.prepare(sql).all(params) as Record<string, unknown>[];
    return pageOf(rows, pageSize, oldestFirst, q.maxBytes);
  }

  /** The stored image of a result, if kept. */
  image(inspectionId: string): Buffer | undefined {
    const r = this.db.prepare('SELECT image FROM inspections WHERE inspection_id = ?').get(inspectionId) as { image: Buffer | null } | undefined;
    return r?.image ?? undefined;
  }

  /** Applies the retention settings; returns the rows deleted. */
  prune(now = Date.now()): number {
    let deleted = 0;
    if (this.retentionDays > 0) {
      const cutoff = now - this.retentionDays * 86_400_000;
      deleted += this.db.prepare('DELETE FROM inspections WHERE time_ms < ?').run(cutoff).changes;
    }
    if (this.maxRows > 0) {
      deleted += this.db
        .prepare('DELETE FROM inspections WHERE seq <= (SELECT seq FROM inspections ORDER BY seq DESC LIMIT 1 OFFSET ?)')
        .run(this.maxRows).changes;
    }
    if (deleted > 0) this.rowCount = (this.db.prepare('SELECT count(*) AS n FROM inspections').get() as { n: number }).n;
    return deleted;
  }

  /** Commits what is pending, checkpoints the WAL into the database file and closes. */
  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    if (this.probeTimer) clearInterval(this.probeTimer);
    try {
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    } finally {
      this.db.close();
    }
  }
}
