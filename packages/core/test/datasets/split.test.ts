import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { labelCounts } from '../../src/datasets/counts.js';
import { DatasetError } from '../../src/datasets/errors.js';
import { loadGroups, parseCsv, parseGroupsCsv, resolveGroups } from '../../src/datasets/groups.js';
import { scanDataset } from '../../src/datasets/scan.js';
import { groupLeakage, kFold, randomSplit, stratifiedSplit, undersample, type SplitItem } from '../../src/datasets/split.js';
import { sharedDir, skipNote, tempDir } from '../support/env.js';
import { writeBytes } from './fixtures.js';

function items(spec: Record<string, number>): SplitItem[] {
  const out: SplitItem[] = [];
  for (const [label, n] of Object.entries(spec)) for (let i = 0; i < n; i++) out.push({ relPath: `${label}/${String(i).padStart(3, '0')}.png`, label });
  return out;
}

const count = (xs: readonly SplitItem[], label: string): number => xs.filter((x) => x.label === label).length;

describe('undersample', () => {
  it('keeps the smallest class size for every label, seeded and order-independent', () => {
    const all = items({ a: 30, b: 7, c: 12 });
    const u1 = undersample(all, { seed: 5 });
    const u2 = undersample([...all].reverse(), { seed: 5 });
    const u3 = undersample(all, { seed: 6 });
    expect(labelCounts(u1)).toEqual([
      { label: 'a', count: 7 },
      { label: 'b', count: 7 },
      { label: 'c', count: 7 },
    ]);
    expect(u1).toEqual(u2);
    expect(u1.map((x) => x.relPath)).not.toEqual(u3.map((x) => x.relPath));
    expect(undersample(all, { seed: 5, perLabel: 3 })).toHaveLength(9);
  });
});

describe('stratifiedSplit', () => {
  it('splits each label by the ratio, deterministically, with no overlap', () => {
    const all = items({ good: 40, scratch: 10, dent: 5 });
    const s = stratifiedSplit(all, { testRatio: 0.2, seed: 1 });
    expect(count(s.test, 'good')).toBe(8);
    expect(count(s.test, 'scratch')).toBe(2);
    expect(count(s.test, 'dent')).toBe(1);
    expect(s.train.length + s.test.length).toBe(55);
    const train = new Set(s.train.map((x) => x.relPath));
    expect(s.test.some((x) => train.has(x.relPath))).toBe(false);
    expect(stratifiedSplit([...all].reverse(), { testRatio: 0.2, seed: 1 })).toEqual(s);
    expect(stratifiedSplit(all, { testRatio: 0.2, seed: 2 }).test).not.toEqual(s.test);
  });

  it('keeps at least one item per side for labels with 2+ items; rejects bad ratios', () => {
    const s = stratifiedSplit(items({ a: 2, b: 3, c: 1 }), { testRatio: 0.05, seed: 0 });
    expect(count(s.test, 'a')).toBe(1);
    expect(count(s.train, 'a')).toBe(1);
    expect(count(s.test, 'c')).toBe(0);
    expect(() => stratifiedSplit(items({ a: 4 }), { testRatio: 1, seed: 0 })).toThrow(DatasetError);
    expect(() => stratifiedSplit(items({ a: 4 }), { testRatio: 0, seed: 0 })).toThrow(/testRatio/);
  });

  it('group-aware: whole groups on one side, label proportions close to the ratio', () => {
    const all = items({ a: 60, b: 30 });
    const groups = new Map(all.map((x, i) => [x.relPath, `${x.label}:${Math.floor(i / 3)}`])); // groups of 3
    const s = stratifiedSplit(all, { testRatio: 0.3, seed: 3, groups });
    expect(groupLeakage(s, groups).leakedTestItems).toBe(0);
    expect(Math.abs(count(s.test, 'a') - 18)).toBeLessThanOrEqual(3);
    expect(Math.abs(count(s.test, 'b') - 9)).toBeLessThanOrEqual(3);
    expect(s.train.length + s.test.length).toBe(90);
  });
});

describe('kFold', () => {
  it('stratified: every item tested exactly once, folds balanced per label', () => {
    const all = items({ a: 23, b: 11 });
    const folds = kFold(all, { k: 5, seed: 9 });
    expect(folds).toHaveLength(5);
    const tested = folds.flatMap((f) => f.test.map((x) => x.relPath)).sort();
    expect(tested).toEqual(all.map((x) => x.relPath).sort());
    for (const f of folds) {
      expect(f.train.length + f.test.length).toBe(34);
      expect([4, 5]).toContain(count(f.test, 'a'));
      expect([2, 3]).toContain(count(f.test, 'b'));
      const tr = new Set(f.train.map((x) => x.relPath));
      expect(f.test.some((x) => tr.has(x.relPath))).toBe(false);
    }
    const sizes = folds.map((f) => f.test.length);
    expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    expect(kFold(all, { k: 5, seed: 9 })).toEqual(folds);
  });

  it('group-aware: no group in two folds', () => {
    const all = items({ a: 40, b: 20 });
    const groups = new Map(all.map((x, i) => [x.relPath, `g${Math.floor(i / 4)}`]));
    const folds = kFold(all, { k: 3, seed: 1, groups });
    for (const f of folds) expect(groupLeakage(f, groups).fraction).toBe(0);
    const tested = folds.flatMap((f) => f.test.map((x) => x.relPath));
    expect(new Set(tested).size).toBe(60);
    expect(() => kFold(items({ a: 4 }), { k: 5, seed: 0 })).toThrow(/at least 5 items/);
    expect(() => kFold(all, { k: 20, seed: 0, groups })).toThrow(/at least 20 groups/);
  });
});

describe('groups CSV', () => {
  const ds = { root: '/data/ds', items: [{ relPath: 'good/a.png' }, { relPath: 'good/b.png' }, { relPath: 'bad/c.png' }, { relPath: 'bad/sub/a.png' }] };

  it('parses quoted CSV with a header, CRLF and a BOM', () => {
    expect(parseCsv('\ufefffile,group\r\n"x, y.png","g ""1"""\r\n\r\nz.png,2')).toEqual([
      { fields: ['file', 'group'], line: 1 },
      { fields: ['x, y.png', 'g "1"'], line: 2 },
      { fields: ['z.png', '2'], line: 4 },
    ]);
    expect(parseGroupsCsv('group,path\nA,good/a.png\n')).toEqual([{ file: 'good/a.png', group: 'A', line: 2 }]);
    expect(() => parseGroupsCsv('file,group\ngood/a.png,\n', 'g.csv')).toThrow(/g.csv:2/);
    // headerless files work; a header with other column names is named as such (not "no file called name")
    expect(parseGroupsCsv('good/a.png,A\n')).toEqual([{ file: 'good/a.png', group: 'A', line: 1 }]);
    expect(() => parseGroupsCsv('name,part\ngood/a.png,A\n', 'g.csv')).toThrow(/must name a file column .* line 1 is "name,part": g.csv/);
  });

  it('resolves paths relative to the root, absolute, parent-relative, and unique basenames', () => {
    const rows = parseGroupsCsv('file,group\ngood/a.png,1\n/data/ds/good/b.png,1\nds/bad/c.png,2\n./bad/sub/a.png,3\n');
    expect([...resolveGroups(rows, ds)]).toEqual([
      ['good/a.png', '1'],
      ['good/b.png', '1'],
      ['bad/c.png', '2'],
      ['bad/sub/a.png', '3'],
    ]);
    const byBase = parseGroupsCsv('file,group\nb.png,1\nc.png,2\ngood/a.png,1\nbad/sub/a.png,4\n');
    expect(resolveGroups(byBase, ds).get('bad/c.png')).toBe('2');
  });

  it('errors name unknown, missing, ambiguous and conflicting files', () => {
    const unknown = parseGroupsCsv('file,group\ngood/a.png,1\ngood/b.png,1\nbad/c.png,2\nbad/sub/a.png,3\nnothere.png,9\n');
    const e1 = (() => {
      try {
        resolveGroups(unknown, ds, { source: 'g.csv' });
      } catch (e) {
        return e as DatasetError;
      }
      return undefined;
    })();
    expect(e1?.code).toBe('GROUPS_UNKNOWN_FILES');
    expect(e1?.message).toContain('nothere.png (line 6)');
    expect(e1?.input).toBe('g.csv');
    expect(resolveGroups(unknown, ds, { unknown: 'ignore' }).size).toBe(4);

    const missing = parseGroupsCsv('file,group\ngood/a.png,1\nbad/c.png,2\nbad/sub/a.png,3\n');
    expect(() => resolveGroups(missing, ds)).toThrow(/no group for 1 dataset file\(s\): good\/b.png/);
    const single = resolveGroups(missing, ds, { missing: 'singleton' });
    expect(single.get('good/b.png')).toBeDefined();
    expect(single.get('good/b.png')).not.toBe(single.get('good/a.png'));

    const ambiguous = parseGroupsCsv('file,group\na.png,1\ngood/b.png,1\nbad/c.png,2\n');
    expect(() => resolveGroups(ambiguous, ds)).toThrow(expect.objectContaining({ code: 'GROUPS_AMBIGUOUS' }));

    const conflict = parseGroupsCsv('file,group\ngood/a.png,1\ngood/a.png,2\n');
    expect(() => resolveGroups(conflict, ds, { unknown: 'ignore', missing: 'singleton' })).toThrow(/two different groups/);

    const skippedRow = parseGroupsCsv('file,group\ngood/a.png,1\ngood/b.png,1\nbad/c.png,2\nbad/sub/a.png,3\nbad/dup.png,2\n');
    expect(resolveGroups(skippedRow, ds, { skipped: ['bad/dup.png'] }).size).toBe(4);
  });

  it('loadGroups names an unreadable file', async () => {
    const t = tempDir('loupe-groups-');
    try {
      await expect(loadGroups(join(t.dir, 'missing.csv'), ds)).rejects.toMatchObject({ code: 'GROUPS_FILE', input: join(t.dir, 'missing.csv') });
      writeBytes(join(t.dir, 'g.csv'), 'file,group\ngood/a.png,1\ngood/b.png,1\nbad/c.png,2\nbad/sub/a.png,3\n');
      expect((await loadGroups(join(t.dir, 'g.csv'), ds)).size).toBe(4);
    } finally {
      t.cleanup();
    }
  });
});

describe('magnetic tile (real groups.csv)', () => {
  const root = join(sharedDir(), 'datasets', 'mtd', 'magnetic_tile');
  const have = existsSync(join(root, 'groups.csv'));
  if (!have) skipNote('magnetic tile group split', `no shared dataset at ${root} (set LOUPE_SHARED_DIR)`);

  it.skipIf(!have)('a random split leaks ~97% of the test half; the group split leaks nothing', async () => {
    const ds = await scanDataset(root, { verify: 'magic' });
    const groups = await loadGroups(join(root, 'groups.csv'), ds);
    expect(new Set(groups.values()).size).toBe(222);

    const random = randomSplit(ds.items, { testRatio: 0.5, seed: 1 });
    const leak = groupLeakage(random, groups);
    expect(leak.testItems).toBe(672);
    console.info(`[leak] random 50/50 split of magnetic tile: ${(100 * leak.fraction).toFixed(1)}% of test images have a same-tile sibling in train`);
    expect(leak.fraction).toBeGreaterThan(0.9); // the README measured ~97%
    expect(leak.sharedGroups.length).toBeGreaterThan(100);

    const honest = stratifiedSplit(ds.items, { testRatio: 0.3, seed: 1, groups });
    const ok = groupLeakage(honest, groups);
    expect(ok.leakedTestItems).toBe(0);
    expect(ok.sharedGroups).toEqual([]);
    // Stratified as well as the groups allow: every label on both sides, near 30% in test.
    for (const label of ds.labels) {
      const total = count(ds.items, label);
      const test = count(honest.test, label);
      expect(test).toBeGreaterThan(0);
      expect(Math.abs(test / total - 0.3)).toBeLessThan(0.1);
    }
    expect(Math.abs(honest.test.length / 1344 - 0.3)).toBeLessThan(0.02);

    const folds = kFold(ds.items, { k: 5, seed: 2, groups });
    for (const f of folds) expect(groupLeakage(f, groups).leakedTestItems).toBe(0);
    expect(folds.reduce((s, f) => s + f.test.length, 0)).toBe(1344);
  });

  it.skipIf(!have)('basename-only and parent-relative CSV entries resolve to the same groups', async () => {
    const ds = await scanDataset(root, { verify: 'extension', dedupe: false });
    const t = tempDir('loupe-mtgroups-');
    try {
      const orig = await loadGroups(join(root, 'groups.csv'), ds);
      const lines = ['file,group', ...[...orig].map(([rel, g], i) => (i % 2 ? `${rel.split('/').pop()},${g}` : `magnetic_tile/${rel},${g}`))];
      writeBytes(join(t.dir, 'alt.csv'), lines.join('\n'));
      expect(await loadGroups(join(t.dir, 'alt.csv'), ds)).toEqual(orig);
      writeBytes(join(t.dir, 'bad.csv'), [...lines.slice(0, 10), 'test/crack/does_not_exist.jpg,x'].join('\n'));
      await expect(loadGroups(join(t.dir, 'bad.csv'), ds)).rejects.toThrow(/does_not_exist\.jpg/);
    } finally {
      t.cleanup();
    }
  });
});
