// The inspection log of a fleet: one PostgreSQL database that every replica writes (node-postgres).
//
// Same guarantees as the SQLite log (store.ts): a result is committed before it is answered (one
// multi-row INSERT per event-loop turn, committed when it returns; with PostgreSQL's default
// synchronous_commit=on the commit is flushed to its WAL), so a replica killed with -9 loses only
// results it never answered. A log that cannot commit (the database down, unreachable, full, read-only)
// turns the replica NOT_SERVING ('writable' false) and a probe write once a second finds out when it
// can again. Retention and paging are those of the SQLite log; `seq` comes from one sequence shared by
// the replicas, so paging by it is stable across them.
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';

import pg from 'pg';

import { redactDbUrl, type StoreImages } from './config.js';
import {
  decodePageToken,
  listTextColumns,
  LogWriteError,
  pageOf,
  pageParams,
  type InspectionLog,
  type InspectionRow,
  type ListQuery,
  type StoredInspection,
  type VerdictName,
} from './store.js';

const SCHEMA_VERSION = 1;
/** How often a log that cannot commit is tried again. */
const PROBE_MS = 1000;
/** Columns of one result, in INSERT order. */
const COLUMNS = ['inspection_id', 'client_id', 'time_ms', 'model', 'model_version', 'verdict', 'score', 'defect_type', 'latency_ms', 'source', 'peer', 'image'] as const;
/** Most rows per INSERT (PostgreSQL takes at most 65535 parameters). */
const MAX_ROWS_PER_INSERT = Math.floor(65_535 / COLUMNS.length);

export interface PgStoreOptions {
  storeImages?: StoreImages;
  retentionDays?: number;
  maxRows?: number;
  /** Connections of this replica (commits and listings share them). */
  poolSize?: number;
  /** Longest a commit or query may take before it counts as failed (ms). */
  queryTimeoutMs?: number;
}

/** What a PostgreSQL or network error means for the log, in words. */
function pgProblem(err: unknown): { code: string; why: string } {
  const code = String((err as { code?: unknown } | null)?.code ?? 'UNKNOWN');
  const msg = err instanceof Error ? err.message : String(err);
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'ETIMEDOUT' || code === 'ECONNRESET' || /timeout|terminat|Connection/i.test(msg)) {
    return { code, why: `the database cannot be reached (${msg})` };
  }
  if (code === '53100') return { code, why: `the database's disk is full (${msg})` };
  if (code === '25006') return { code, why: `the database is read-only (${msg})` };
  if (code === '28P01' || code === '28000') return { code, why: `the database refused the login (${msg})` };
  if (code === '3D000') return { code, why: `the database does not exist (${msg})` };
  if (code.startsWith('57P')) return { code, why: `the database is shutting down or restarting (${msg})` };
  return { code, why: msg };
}

interface Pending {
  row: InspectionRow;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class PgInspectionStore extends EventEmitter implements InspectionLog {
  readonly location: string;
  readonly storeImages: StoreImages;
  private readonly retentionDays: number;
  private readonly maxRows: number;
  private pending: Pending[] = [];
  private flushScheduled = false;
  private inFlight = new Set<Promise<void>>();
  private closed = false;
  private failure: LogWriteError | null = null;
  private probeTimer: NodeJS.Timeout | undefined;
  private rowCount = 0;
  /** This replica's row in write_probe. */
  private readonly probeId = `${hostname()}:${process.pid}`;

  private constructor(
    private readonly pool: pg.Pool,
    url: string,
    opts: PgStoreOptions,
  ) {
    super();
    this.location = redactDbUrl(url);
    this.storeImages = opts.storeImages ?? 'none';
    this.retentionDays = opts.retentionDays ?? 0;
    this.maxRows = opts.maxRows ?? 0;
    // An idle connection that breaks (the database restarted) must not crash the server: the next
    // commit fails and says so, the pool opens a new connection for the one after.
    pool.on('error', () => undefined);
  }

  /**
   * Connects, creates the schema if needed (under an advisory lock: replicas start together) and counts
   * the rows. Throws LogWriteError naming the database (password hidden) and the cause.
   */
  static async open(url: string, opts: PgStoreOptions = {}): Promise<PgInspectionStore> {
    const timeout = opts.queryTimeoutMs ?? 10_000;
    const pool = new pg.Pool({
      connectionString: url,
      max: opts.poolSize ?? 4,
      connectionTimeoutMillis: timeout,
      query_timeout: timeout,
      keepAlive: true,
      application_name: 'loupe-server',
    });
    const store = new PgInspectionStore(pool, url, opts);
    try {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', ['loupe.inspections.schema']);
        await client.query('CREATE TABLE IF NOT EXISTS loupe_schema (version INTEGER NOT NULL)');
        const v = await client.query<{ version: number }>('SELECT max(version) AS version FROM loupe_schema');
        const version = v.rows[0]?.version ?? 0;
        if (version > SCHEMA_VERSION) throw Object.assign(new Error(`its schema ${version} is newer than this server's (${SCHEMA_VERSION})`), { code: 'SCHEMA' });
        await client.query(`
          CREATE TABLE IF NOT EXISTS inspections (
            seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            inspection_id TEXT             NOT NULL UNIQUE,
            client_id     TEXT             NOT NULL,
            time_ms       BIGINT           NOT NULL,
            model         TEXT             NOT NULL,
            model_version TEXT             NOT NULL,
            verdict       TEXT             NOT NULL CHECK (verdict IN ('good', 'anomalous')),
            score         DOUBLE PRECISION NOT NULL,
            defect_type   TEXT             NOT NULL DEFAULT '',
            latency_ms    DOUBLE PRECISION NOT NULL,
            source        TEXT             NOT NULL DEFAULT '',
            peer          TEXT             NOT NULL DEFAULT '',
            image         BYTEA
          );
          CREATE INDEX IF NOT EXISTS inspections_time ON inspections (time_ms);
          CREATE INDEX IF NOT EXISTS inspections_model_time ON inspections (model, time_ms);
          CREATE INDEX IF NOT EXISTS inspections_client ON inspections (client_id);
          -- One row per replica, rewritten by the probe that finds out when a failing log can commit again.
          CREATE TABLE IF NOT EXISTS write_probe (id TEXT PRIMARY KEY, at_ms BIGINT NOT NULL);
        `);
        if (version < SCHEMA_VERSION) await client.query('INSERT INTO loupe_schema (version) VALUES ($1)', [SCHEMA_VERSION]);
        await client.query('COMMIT');
        store.rowCount = Number((await client.query<{ n: string }>('SELECT count(*) AS n FROM inspections')).rows[0]!.n);
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        client.release();
      }
    } catch (err) {
      await pool.end().catch(() => undefined);
      const p = pgProblem(err);
      throw new LogWriteError(`cannot open the inspection log ${store.location}: ${p.why}`, p.code, { cause: err });
    }
    return store;
  }

  get writable(): boolean {
    return this.failure === null;
  }

  get writeError(): LogWriteError | null {
    return this.failure;
  }

  get count(): number {
    return this.rowCount;
  }

  keepsImage(verdict: VerdictName): boolean {
    return this.storeImages === 'all' || (this.storeImages === 'anomalous' && verdict === 'anomalous');
  }

  private failed(err: unknown): LogWriteError {
    const p = pgProblem(err);
    const e = new LogWriteError(`the inspection log ${this.location} cannot record results: ${p.why}`, p.code, { cause: err });
    if (!this.failure && !this.closed) {
      this.failure = e;
      this.emit('writable', false, e);
      this.probeTimer = setInterval(() => void this.tryProbe(), PROBE_MS);
      this.probeTimer.unref();
    }
    return e;
  }

  private probing = false;

  private async tryProbe(): Promise<void> {
    if (this.closed || !this.failure || this.probing) return;
    this.probing = true;
    try {
      await this.pool.query('INSERT INTO write_probe (id, at_ms) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET at_ms = EXCLUDED.at_ms', [this.probeId, Date.now()]);
    } catch {
      return; // still failing
    } finally {
      this.probing = false;
    }
    clearInterval(this.probeTimer);
    this.probeTimer = undefined;
    this.failure = null;
    this.emit('writable', true, null);
  }

  /** Records a result; resolves once it is committed (results of one event-loop turn share one INSERT). */
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

  private flush(): void {
    this.flushScheduled = false;
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0, MAX_ROWS_PER_INSERT);
      const p = this.commit(batch).finally(() => this.inFlight.delete(p));
      this.inFlight.add(p);
    }
  }

  private async commit(batch: Pending[]): Promise<void> {
    const values: unknown[] = [];
    const tuples = batch.map(({ row: r }, i) => {
      values.push(r.inspectionId, r.clientId, r.timeMs, r.model, r.modelVersion, r.verdict, r.score, r.defectType, r.latencyMs, r.source, r.peer, r.image ?? null);
      return `(${COLUMNS.map((_, j) => `$${i * COLUMNS.length + j + 1}`).join(', ')})`;
    });
    try {
      // One statement is one transaction: all of the batch is committed, or none of it.
      await this.pool.query(`INSERT INTO inspections (${COLUMNS.join(', ')}) VALUES ${tuples.join(', ')}`, values);
    } catch (err) {
      const e = this.failed(err);
      for (const p of batch) p.reject(e);
      return;
    }
    this.rowCount += batch.length;
    for (const p of batch) p.resolve();
  }

  async list(q: ListQuery = {}): Promise<{ items: StoredInspection[]; nextPageToken: string }> {
    const { pageSize, oldestFirst } = pageParams(q);
    const where: string[] = [];
    const params: unknown[] = [];
    const param = (v: unknown): string => {
      params.push(v);
      return `$${params.length}`;
    };
    if (q.pageToken) where.push(`seq ${oldestFirst ? '>' : '<'} ${param(decodePageToken(q.pageToken, oldestFirst))}`);
    if (q.sinceMs !== undefined) where.push(`time_ms >= ${param(q.sinceMs)}`);
    if (q.untilMs !== undefined) where.push(`time_ms < ${param(q.untilMs)}`);
    if (q.model) where.push(`model = ${param(q.model)}`);
    if (q.verdict) where.push(`verdict = ${param(q.verdict)}`);
    if (q.clientId) where.push(`client_id = ${param(q.clientId)}`);
    // BIGINTs come back as text from node-postgres: cast what pageOf reads as numbers.
    const sql =
      `SELECT seq::float8 AS seq, inspection_id, time_ms::float8 AS time_ms, verdict, score, latency_ms, ${listTextColumns()}, image IS NOT NULL AS has_image
       FROM inspections ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY seq ${oldestFirst ? 'ASC' : 'DESC'} LIMIT ${pageSize + 1}`;
    const res = await this.pool.query<Record<string, unknown>>(sql, params);
    return pageOf(res.rows, pageSize, oldestFirst, q.maxBytes);
  }

  /** The stored image of a result, if kept. */
  async image(inspectionId: string): Promise<Buffer | undefined> {
    const res = await this.pool.query<{ image: Buffer | null }>('SELECT image FROM inspections WHERE inspection_id = $1', [inspectionId]);
    return res.rows[0]?.image ?? undefined;
  }

  /** Applies the retention settings (any replica may: the deletes are idempotent); returns the rows deleted. */
  async prune(now = Date.now()): Promise<number> {
    let deleted = 0;
    if (this.retentionDays > 0) {
      deleted += (await this.pool.query('DELETE FROM inspections WHERE time_ms < $1', [now - this.retentionDays * 86_400_000])).rowCount ?? 0;
    }
    if (this.maxRows > 0) {
      deleted += (await this.pool.query('DELETE FROM inspections WHERE seq <= (SELECT seq FROM inspections ORDER BY seq DESC LIMIT 1 OFFSET $1)', [this.maxRows])).rowCount ?? 0;
    }
    this.rowCount = Number((await this.pool.query<{ n: string }>('SELECT count(*) AS n FROM inspections')).rows[0]!.n);
    return deleted;
  }

  /** Commits what is pending, waits for the commits in flight and closes the connections. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    if (this.probeTimer) clearInterval(this.probeTimer);
    await Promise.allSettled([...this.inFlight]);
    await this.pool.end();
  }
}
