// Group files: a CSV `file,group` that says which images show the same physical object (same tile under
// several lights, same part re-acquired...). Splits keep each group on one side.

import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { DatasetError, listForMessage } from './errors.js';
import { formatFromExtension } from './image-files.js';

export interface GroupRow {
  readonly file: string;
  readonly group: string;
  /** 1-based line number in the CSV. */
  readonly line: number;
}

/** Minimal RFC 4180 CSV: quoted fields, doubled quotes, CRLF/LF, BOM. Returns rows with their line numbers. */
export function parseCsv(text: string): { fields: string[]; line: number }[] {
  const rows: { fields: string[]; line: number }[] = [];
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  let fields: string[] = [];
  let field = '';
  let rowLine = 1;
  let inQuotes = false;
  let quotedField = false;
  const endRow = (): void => {
    fields.push(field);
    if (!(fields.length === 1 && fields[0] === '' && !quotedField)) rows.push({ fields, line: rowLine });
    fields = [];
    field = '';
    quotedField = false;
  };
  for (; i < text.length; i++) {
    const ch = text[i] as string;
    if (inQuotes) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else inQuotes = false;
      } else {
        if (ch === '\n') line++;
        field += ch;
      }
      continue;
    }
    if (ch === '"' && field === '') {
      inQuotes = true;
      quotedField = true;
    } else if (ch === ',') {
      fields.push(field);
      field = '';
      quotedField = false;
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      endRow();
      line++;
      rowLine = line;
    } else field += ch;
  }
  if (field !== '' || fields.length > 0 || quotedField) endRow();
  return rows;
}

const FILE_COLUMNS = ['file', 'path', 'image', 'filename', 'relpath'];
const GROUP_COLUMNS = ['group', 'group_id', 'groupid'];

/** Parses a groups CSV. A header row naming the columns (file/path/image + group) is optional. */
export function parseGroupsCsv(text: string, source = '<groups csv>'): GroupRow[] {
  const rows = parseCsv(text);
  if (rows.length === 0) throw new DatasetError('GROUPS_FILE', `groups file is empty: ${source}`, { input: source });
  let fileCol = 0;
  let groupCol = 1;
  let start = 0;
  const head = (rows[0] as { fields: string[] }).fields.map((f) => f.trim().toLowerCase());
  const fi = head.findIndex((h) => FILE_COLUMNS.includes(h));
  const gi = head.findIndex((h) => GROUP_COLUMNS.includes(h));
  if (fi >= 0 && gi >= 0) {
    fileCol = fi;
    groupCol = gi;
    start = 1;
  } else if (fi >= 0 || gi >= 0 || formatFromExtension(head[0] ?? '') === undefined) {
    // A first row that is no image path is a header with other column names, not a file called "name".
    throw new DatasetError('GROUPS_FILE', `groups file header must name a file column (${FILE_COLUMNS.join('/')}) and a group column (${GROUP_COLUMNS.join('/')}); line 1 is "${(rows[0] as { fields: string[] }).fields.join(',')}": ${source}`, { input: source });
  }
  const out: GroupRow[] = [];
  for (const r of rows.slice(start)) {
    const file = r.fields[fileCol]?.trim() ?? '';
    const group = r.fields[groupCol]?.trim() ?? '';
    if (file === '' || group === '') {
      throw new DatasetError('GROUPS_FILE', `${source}:${r.line}: expected "file,group", got "${r.fields.join(',')}"`, { input: source });
    }
    out.push({ file, group, line: r.line });
  }
  return out;
}

export interface ResolveGroupsOptions {
  /** Where the CSV came from, for messages. */
  source?: string;
  /**
   * relPaths of files that exist but were skipped by the scan (duplicates, unreadable): CSV rows naming
   * them are ignored instead of reported as unknown.
   */
  skipped?: Iterable<string>;
  /** Items the CSV doesn't name: 'error' (default) or 'singleton' (each its own group). */
  missing?: 'error' | 'singleton';
  /** CSV rows naming no dataset file: 'error' (default) or 'ignore'. */
  unknown?: 'error' | 'ignore';
}

function normaliseEntry(file: string, root: string | undefined): string {
  let f = file.replace(/\\/g, '/');
  if (root !== undefined && path.isAbsolute(file)) {
    f = path.relative(root, file).split(path.sep).join('/');
  }
  while (f.startsWith('./')) f = f.slice(2);
  return f;
}

/**
 * Maps each dataset item (by relPath) to its group. A CSV `file` may be relative to the dataset root,
 * absolute, relative to a parent folder (matched as a unique path suffix), or a bare basename (must be
 * unique in the dataset). Unknown files, items without a group, ambiguous basenames and conflicting rows
 * raise DatasetError naming the files.
 */
export function resolveGroups(
  rows: readonly GroupRow[],
  dataset: { root?: string; items: readonly { relPath: string }[] },
  opts: ResolveGroupsOptions = {},
): Map<string, string> {
  const source = opts.source ?? '<groups csv>';
  const relPaths = dataset.items.map((i) => i.relPath);
  const known = new Set(relPaths);
  const skipped = new Set(opts.skipped ?? []);
  const byBase = new Map<string, string[]>();
  const addBase = (rel: string): void => {
    const b = rel.slice(rel.lastIndexOf('/') + 1);
    const list = byBase.get(b);
    if (list) list.push(rel);
    else byBase.set(b, [rel]);
  };
  for (const r of relPaths) addBase(r);
  for (const r of skipped) addBase(r);

  const out = new Map<string, string>();
  const rowOf = new Map<string, GroupRow>();
  const unknown: string[] = [];
  const ambiguous: string[] = [];
  const conflicts: string[] = [];
  for (const row of rows) {
    const entry = normaliseEntry(row.file, dataset.root);
    let rel: string | undefined;
    if (known.has(entry) || skipped.has(entry)) rel = entry;
    else if (!entry.includes('/')) {
      const hits = byBase.get(entry) ?? [];
      if (hits.length === 1) rel = hits[0];
      else if (hits.length > 1) {
        ambiguous.push(`${row.file} (line ${row.line}: ${hits.join(', ')})`);
        continue;
      }
    } else {
      // Relative to some other folder: unique suffix match on a path boundary, either direction.
      const hits = [...relPaths, ...skipped].filter((r) => entry.endsWith(`/${r}`) || r.endsWith(`/${entry}`));
      if (hits.length === 1) rel = hits[0];
      else if (hits.length > 1) {
        ambiguous.push(`${row.file} (line ${row.line}: ${hits.join(', ')})`);
        continue;
      }
    }
    if (rel === undefined) {
      unknown.push(`${row.file} (line ${row.line})`);
      continue;
    }
    if (skipped.has(rel) && !known.has(rel)) continue;
    const prev = rowOf.get(rel);
    if (prev !== undefined && prev.group !== row.group) {
      conflicts.push(`${rel} (line ${prev.line}: ${prev.group}, line ${row.line}: ${row.group})`);
      continue;
    }
    rowOf.set(rel, row);
    out.set(rel, row.group);
  }
  if (ambiguous.length > 0) {
    throw new DatasetError('GROUPS_AMBIGUOUS', `${source}: ${ambiguous.length} entr${ambiguous.length === 1 ? 'y matches' : 'ies match'} several dataset files; use paths relative to the dataset root: ${listForMessage(ambiguous)}`, { input: source, entries: ambiguous });
  }
  if (conflicts.length > 0) {
    throw new DatasetError('GROUPS_FILE', `${source}: files given two different groups: ${listForMessage(conflicts)}`, { input: source, entries: conflicts });
  }
  if (unknown.length > 0 && (opts.unknown ?? 'error') === 'error') {
    throw new DatasetError('GROUPS_UNKNOWN_FILES', `${source}: ${unknown.length} file(s) not in the dataset${dataset.root ? ` ${dataset.root}` : ''}: ${listForMessage(unknown)}`, { input: source, entries: unknown });
  }
  const missing = relPaths.filter((r) => !out.has(r));
  if (missing.length > 0) {
    if ((opts.missing ?? 'error') === 'error') {
      throw new DatasetError('GROUPS_MISSING_FILES', `${source}: no group for ${missing.length} dataset file(s): ${listForMessage(missing)}`, { input: source, entries: missing });
    }
    for (const r of missing) out.set(r, `\u0000singleton:${r}`);
  }
  return out;
}

/** Reads a groups CSV from disk and resolves it against a dataset (see resolveGroups). */
export async function loadGroups(
  csvPath: string,
  dataset: { root?: string; items: readonly { relPath: string }[]; skipped?: readonly { relPath: string }[] },
  opts: Omit<ResolveGroupsOptions, 'source'> = {},
): Promise<Map<string, string>> {
  let text: string;
  try {
    text = await fs.readFile(csvPath, 'utf8');
  } catch (err) {
    throw new DatasetError('GROUPS_FILE', `cannot read groups file ${csvPath}: ${err instanceof Error ? err.message : String(err)}`, { input: csvPath, cause: err });
  }
  const skipped = opts.skipped ?? dataset.skipped?.map((s) => s.relPath);
  return resolveGroups(parseGroupsCsv(text, csvPath), dataset, { ...opts, source: csvPath, ...(skipped ? { skipped } : {}) });
}
