// The inspection log of a fleet on a real PostgreSQL server that the test starts (initdb in a temp
// folder, Debian's postgresql binaries): the same listing, paging and retention as the SQLite log, two
// replicas writing one log, kill -9 of a replica losing no acknowledged result, NOT_SERVING while the
// database is down and SERVING again once it is back. And the SQLite log's rule: one server per file.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { InspectionStore, PgInspectionStore, type InspectionLog, type LoupeClient } from '../dist/index.js';
import type { InspectionRow } from '../dist/store.js';
import { bottleImages, client, grpcError, modelDirWithFixtures, smallImage, spawnServer, SVM_MODEL, type ChildServer } from './fixtures.js';
import { postgresBinDir, startPostgres, type TestPostgres } from './helpers/postgres.js';

const fixtures = inject('fixtureModels');
const pgBin = postgresBinDir();
if (!pgBin.dir) process.stderr.write(`[postgres.test] SKIPPED: ${pgBin.why}\n`);

async function until(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const row = (i: number, over: Partial<InspectionRow> = {}): InspectionRow => ({
  inspectionId: `id-${i}`,
  clientId: `c-${i}`,
  timeMs: 1_700_000_000_000 + i * 1000,
  model: i % 2 ? 'odd' : 'even',
  modelVersion: '1',
  verdict: i % 3 ? 'good' : 'anomalous',
  score: i / 10,
  defectType: '',
  latencyMs: 1.5,
  source: `line-${i}`,
  peer: 'ipv4:127.0.0.1:1',
  ...over,
});

describe.skipIf(!pgBin.dir)('PostgreSQL inspection log', () => {
  let pg: TestPostgres;
  let tmp: string;
  beforeAll(async () => {
    pg = await startPostgres();
    tmp = mkdtempSync(join(tmpdir(), 'loupe-pg-test-'));
  });
  afterAll(async () => {
    await pg?.destroy();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  // One scenario, both backends: what a client sees of the log does not depend on where it is.
  it('lists, pages, filters and prunes exactly as the SQLite log does', async () => {
    await pg.query('DROP TABLE IF EXISTS inspections, write_probe, loupe_schema');
    const logs: InspectionLog[] = [new InspectionStore(join(tmp, 'same.db'), { maxRows: 40 }), await PgInspectionStore.open(pg.url, { maxRows: 40 })];
    const views = [];
    for (const log of logs) {
      await Promise.all(Array.from({ length: 50 }, (_, i) => log.record(row(i, i === 7 ? { source: 'x'.repeat(5000) } : {}))));
      expect(log.count).toBe(50);
      const pages: string[][] = [];
      let token = '';
      do {
        const p = await log.list({ pageSize: 12, pageToken: token, model: 'odd' });
        pages.push(p.items.map((r) => r.inspectionId));
        token = p.nextPageToken;
      } while (token);
      const oldest = await log.list({ pageSize: 5, oldestFirst: true, verdict: 'anomalous', sinceMs: 1_700_000_010_000 });
      const cut = (await log.list({ clientId: 'c-7' })).items[0]!;
      // the token of one sort order is refused by the other
      const wrongOrder = await Promise.resolve()
        .then(() => log.list({ pageToken: (oldest.nextPageToken || 'x'), oldestFirst: false }))
        .then(() => 'accepted', (e: Error) => e.name);
      expect(await log.prune(1_700_000_000_000 + 60_000)).toBe(10);
      expect(log.count).toBe(40);
      const after = (await log.list({ pageSize: 1000, oldestFirst: true })).items;
      views.push({ pages, oldest: oldest.items.map((r) => [r.inspectionId, r.verdict, r.timeMs]), cut: [cut.source.length, cut.source.endsWith('...')], wrongOrder, after: after.map((r) => r.inspectionId) });
      await log.close();
    }
    expect(views[0]!.pages.flat()).toHaveLength(25);
    expect(views[0]!.pages.map((p) => p.length)).toEqual([12, 12, 1]);
    expect(views[0]!.after[0]).toBe('id-10');
    expect(views[0]!.wrongOrder).toBe('PageTokenError');
    expect(views[1]).toEqual(views[0]);
  });

  it('two replicas write one log at once: every result once, one sequence for paging', async () => {
    await pg.query('DROP TABLE IF EXISTS inspections, write_probe, loupe_schema');
    // both create the schema at the same time (the advisory lock serialises them)
    const [a, b] = await Promise.all([PgInspectionStore.open(pg.url), PgInspectionStore.open(pg.url)]);
    try {
      await Promise.all([
        ...Array.from({ length: 300 }, (_, i) => a.record(row(i, { inspectionId: `a-${i}` }))),
        ...Array.from({ length: 300 }, (_, i) => b.record(row(i, { inspectionId: `b-${i}` }))),
      ]);
      const seen: string[] = [];
      let token = '';
      do {
        const p = await a.list({ pageSize: 97, pageToken: token });
        seen.push(...p.items.map((r) => r.inspectionId));
        token = p.nextPageToken;
      } while (token);
      expect(seen).toHaveLength(600);
      expect(new Set(seen).size).toBe(600);
      const counted = await pg.query<{ n: string }>('SELECT count(DISTINCT inspection_id) AS n FROM inspections');
      expect(Number(counted[0]?.n)).toBe(600);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('a database that cannot be reached is named without its password', async () => {
    const url = `postgres://loupe:s3cret@127.0.0.1:${pg.port + 1 === 65536 ? 1 : pg.port + 1}/loupe`;
    const err = await PgInspectionStore.open(url, { queryTimeoutMs: 2000 }).then(
      () => null,
      (e: Error) => e,
    );
    expect(err?.name).toBe('LogWriteError');
    expect(err?.message).toMatch(/^cannot open the inspection log postgres:\/\/loupe:\*\*\*@127\.0\.0\.1:\d+\/loupe: the database cannot be reached/);
    expect(err?.message).not.toContain('s3cret');
  });

  describe.skipIf(!fixtures)('a server on PostgreSQL', () => {
    let dir: string;
    let image: Buffer;
    const servers: ChildServer[] = [];
    beforeAll(async () => {
      dir = modelDirWithFixtures(fixtures);
      image = await smallImage(bottleImages('train/good', 1)[0]!);
    });
    afterAll(() => {
      for (const s of servers) if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
      if (dir) rmSync(dir, { recursive: true, force: true });
    });
    const start = async (): Promise<ChildServer> => {
      // The URL by environment, as a Secret would give it (a flag's password shows in the process list).
      const s = await spawnServer(['--models', dir, '--port', '0'], { LOUPE_SERVER_DB_URL: pg.url });
      servers.push(s);
      return s;
    };

    it('kill -9 mid-stream loses no acknowledged result; down database: NOT_SERVING, then SERVING again', async () => {
      await pg.query('DROP TABLE IF EXISTS inspections, write_probe, loupe_schema');
      const srv = await start();
      expect(srv.logs.join('\n')).not.toContain(':loupe@');
      let c: LoupeClient = client(srv.port);
      const acked = new Map<string, string>();
      let i = 0;
      const endless = function* (): Generator<{ id: string; image: Buffer; model: string }> {
        for (;;) yield { id: `k-${i++}`, image, model: SVM_MODEL };
      };
      const summary = await c.inspectMany(endless(), {
        window: 32,
        onResponse: (r) => {
          if (r.result) acked.set(r.id, r.result.inspectionId);
          if (acked.size === 60) srv.child.kill('SIGKILL');
        },
      });
      c.close();
      expect(summary.status).not.toBe(0);
      expect((await srv.exited).signal).toBe('SIGKILL');
      expect(acked.size).toBeGreaterThanOrEqual(60);
      const rows = await pg.query<{ inspection_id: string; client_id: string }>('SELECT inspection_id, client_id FROM inspections');
      const logged = new Map(rows.map((r) => [r.inspection_id, r.client_id]));
      expect([...acked].filter(([id, iid]) => logged.get(iid) !== id)).toEqual([]);

      // A replica whose log cannot commit answers nothing: NOT_SERVING (load balancers drain it) until it can.
      const srv2 = await start();
      c = client(srv2.port);
      try {
        expect(await c.checkHealth()).toBe('SERVING');
        expect((await c.inspectOne({ id: 'before', image, model: SVM_MODEL })).result).toBeDefined();
        await pg.stop('immediate');
        const failed = await grpcError(c.inspectOne({ id: 'down', image, model: SVM_MODEL }));
        expect(failed.code).toBe(14); // UNAVAILABLE: another replica may answer it
        expect(failed.details).toMatch(/the inspection log postgres:\/\/loupe:\*\*\*@127\.0\.0\.1:\d+\/loupe cannot record results: the database cannot be reached/);
        expect(await c.checkHealth()).toBe('NOT_SERVING');
        await pg.start();
        await until('SERVING once the database is back', async () => (await c.checkHealth()) === 'SERVING');
        const back = await c.inspectOne({ id: 'after', image, model: SVM_MODEL });
        expect(back.result).toBeDefined();
        const [found] = await pg.query<{ client_id: string }>('SELECT client_id FROM inspections WHERE inspection_id = $1', [back.result!.inspectionId]);
        expect(found?.client_id).toBe('after');
      } finally {
        c.close();
        srv2.child.kill('SIGTERM');
        expect((await srv2.exited).code).toBe(0);
      }
    });
  });
});

describe('SQLite inspection log: one server per file', () => {
  it('a second server on the same file refuses to start, naming the file; it starts once the first is gone', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'loupe-sqlite-lock-'));
    const db = join(dir, 'shared.db');
    try {
      const first = await spawnServer(['--models', dir, '--port', '0', '--db', db]);
      const second = await spawnServer(['--models', dir, '--port', '0', '--db', db]).then(
        () => 'started',
        (e: Error) => e.message,
      );
      expect(second).toContain(`cannot start: cannot open the inspection log ${db}: another server holds it`);
      expect(second).toContain('or a fleet shares one PostgreSQL log (db.url)');
      first.child.kill('SIGKILL');
      await first.exited;
      const third = await spawnServer(['--models', dir, '--port', '0', '--db', db]);
      const c = client(third.port);
      expect(await c.checkHealth()).toBe('SERVING');
      c.close();
      third.child.kill('SIGTERM');
      expect((await third.exited).code).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
