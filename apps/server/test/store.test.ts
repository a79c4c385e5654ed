// The inspection log's retention on a real SQLite file: rows older than retentionDays go, maxRows keeps
// the newest, and what survives a prune also survives closing and reopening the file.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { InspectionStore, type InspectionRow } from '../src/store.js';

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 11, 1, 12);

function row(i: number, timeMs: number): InspectionRow {
  return {
    inspectionId: `insp-${i}`,
    clientId: `c-${i}`,
    timeMs,
    model: 'bottle',
    modelVersion: '1',
    verdict: i % 2 ? 'anomalous' : 'good',
    score: i / 100,
    defectType: '',
    latencyMs: 12,
    source: `img-${i}.png`,
    peer: 'ipv4:127.0.0.1:1',
  };
}

describe('InspectionStore retention', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const file = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'loupe-store-'));
    dirs.push(d);
    return join(d, 'inspections.db');
  };

  it('deletes rows older than retentionDays and nothing newer', async () => {
    const path = file();
    const store = new InspectionStore(path, { retentionDays: 30 });
    // 10 rows 40 days old, 10 rows 20 days old, 5 rows from today.
    await Promise.all([
      ...Array.from({ length: 10 }, (_, i) => store.record(row(i, NOW - 40 * DAY + i))),
      ...Array.from({ length: 10 }, (_, i) => store.record(row(10 + i, NOW - 20 * DAY + i))),
      ...Array.from({ length: 5 }, (_, i) => store.record(row(20 + i, NOW - i))),
    ]);
    expect(store.list({ pageSize: 100 }).items).toHaveLength(25);
    expect(store.prune(NOW)).toBe(10);
    const left = store.list({ pageSize: 100 }).items;
    expect(left).toHaveLength(15);
    expect(Math.min(...left.map((r) => r.timeMs))).toBeGreaterThanOrEqual(NOW - 30 * DAY);
    expect(store.prune(NOW)).toBe(0); // idempotent
    store.close();
    const reopened = new InspectionStore(path, { retentionDays: 30 });
    expect(reopened.list({ pageSize: 100 }).items.map((r) => r.inspectionId).sort()).toEqual(left.map((r) => r.inspectionId).sort());
    reopened.close();
  });

  it('keeps the newest maxRows rows, by arrival order', async () => {
    const store = new InspectionStore(file(), { maxRows: 7 });
    for (let i = 0; i < 20; i++) await store.record(row(i, NOW + i));
    expect(store.prune(NOW)).toBe(13);
    const ids = store.list({ pageSize: 100, oldestFirst: true }).items.map((r) => r.inspectionId);
    expect(ids).toEqual(Array.from({ length: 7 }, (_, i) => `insp-${13 + i}`));
    store.close();
  });

  it('with neither limit set, prune deletes nothing', async () => {
    const store = new InspectionStore(file());
    for (let i = 0; i < 5; i++) await store.record(row(i, NOW - 1000 * DAY));
    expect(store.prune(NOW)).toBe(0);
    expect(store.list({ pageSize: 100 }).items).toHaveLength(5);
    store.close();
  });
});
