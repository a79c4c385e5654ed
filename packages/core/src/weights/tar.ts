// A minimal streaming tar reader (ustar + pax 'path' + GNU long names): enough for npm tarballs,
// so the weights can be unpacked with node:zlib alone. Only regular files are reported; contents are
// buffered only for entries the caller wants, everything else is skipped as it streams past.
import { LoupeError } from '../errors.js';

export interface TarEntry {
  /** Path as stored in the archive, '/'-separated, without a leading './'. */
  readonly path: string;
  readonly data: Buffer;
}

const BLOCK = 512;

class ByteQueue {
  private chunks: Buffer[] = [];
  length = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** Removes and returns exactly n bytes (n <= length). */
  take(n: number): Buffer {
    const first = this.chunks[0];
    if (first && first.length >= n) {
      // Fast path: no copy when one chunk holds the whole request.
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.length -= n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - filled);
      c.copy(out, filled, 0, k);
      filled += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.length -= n;
    return out;
  }

  /** Drops up to n bytes; returns how many were dropped. */
  drop(n: number): number {
    let dropped = 0;
    while (dropped < n && this.chunks.length > 0) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - dropped);
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
      dropped += k;
    }
    this.length -= dropped;
    return dropped;
  }
}

function corrupt(detail: string): LoupeError {
  return new LoupeError('WEIGHTS_CORRUPT', `malformed tar archive: ${detail}`);
}

function cString(buf: Buffer, start: number, len: number): string {
  const field = buf.subarray(start, start + len);
  const nul = field.indexOf(0);
  return field.subarray(0, nul === -1 ? field.length : nul).toString('utf8');
}

function parseNumber(buf: Buffer, start: number, len: number): number {
  const field = buf.subarray(start, start + len);
  if ((field[0]! & 0x80) !== 0) {
    // GNU base-256 for sizes >= 8 GiB: big-endian, top bit is the flag.
    let v = field[0]! & 0x7f;
    for (let i = 1; i < field.length; i++) v = v * 256 + field[i]!;
    return v;
  }
  const text = cString(buf, start, len).trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw corrupt(`bad octal field "${text}"`);
  return parseInt(text, 8);
}

function checksumOk(header: Buffer): boolean {
  const stored = parseNumber(header, 148, 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i]!;
  return sum === stored;
}

function parsePaxPath(data: Buffer): string | undefined {
  // Records: "<len> <key>=<value>\n", len counting the whole record.
  let off = 0;
  let path: string | undefined;
  while (off < data.length) {
    const space = data.indexOf(0x20, off);
    if (space === -1) break;
    const len = parseInt(data.subarray(off, space).toString('ascii'), 10);
    if (!Number.isFinite(len) || len <= 0) break;
    const record = data.subarray(space + 1, off + len - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq !== -1 && record.slice(0, eq) === 'path') path = record.slice(eq + 1);
    off += len;
  }
  return path;
}

function normalisePath(p: string): string {
  return p.replace(/\\/g, '/').replace(/^(\.\/)+/, '');
}

/** Yields the regular files of a tar stream for which `want(path)` is true. */
export async function* readTar(source: AsyncIterable<Buffer>, want: (path: string) => boolean): AsyncGenerator<TarEntry> {
  const it = source[Symbol.asyncIterator]();
  const q = new ByteQueue();
  let ended = false;
  const fill = async (n: number): Promise<boolean> => {
    while (q.length < n && !ended) {
      const r = await it.next();
      if (r.done) ended = true;
      else q.push(Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as Uint8Array));
    }
    return q.length >= n;
  };
  const skip = async (n: number): Promise<void> => {
    let left = n;
    while (left > 0) {
      if (q.length === 0 && !(await fill(1))) throw corrupt('unexpected end of archive');
      left -= q.drop(left);
    }
  };
  const takeData = async (size: number): Promise<Buffer> => {
    if (!(await fill(size))) throw corrupt('unexpected end of archive inside a file');
    const data = q.take(size);
    await skip((BLOCK - (size % BLOCK)) % BLOCK);
    return data;
  };

  let longName: string | undefined;
  let paxPath: string | undefined;
  try {
    for (;;) {
      if (!(await fill(BLOCK))) {
        if (q.length === 0) return; // EOF without the two zero blocks: tolerated, as GNU tar does
        throw corrupt('unexpected end of archive inside a header');
      }
      const header = q.take(BLOCK);
      if (header.every((b) => b === 0)) return; // end-of-archive marker
      if (!checksumOk(header)) throw corrupt('header checksum mismatch');
      const size = parseNumber(header, 124, 12);
      const type = String.fromCharCode(header[156]!);
      const magic = cString(header, 257, 6);
      const prefix = magic.startsWith('ustar') ? cString(header, 345, 155) : '';
      const name = cString(header, 0, 100);

      if (type === 'x' || type === 'L') {
        const data = await takeData(size);
        if (type === 'x') paxPath = parsePaxPath(data) ?? paxPath;
        else longName = cString(data, 0, data.length);
        continue;
      }
      const path = normalisePath(paxPath ?? longName ?? (prefix ? `${prefix}/${name}` : name));
      paxPath = undefined;
      longName = undefined;
      const isFile = type === '0' || type === '\0' || type === '7';
      if (isFile && want(path)) {
        yield { path, data: await takeData(size) };
      } else {
        await skip(Math.ceil(size / BLOCK) * BLOCK);
      }
    }
  } finally {
    await it.return?.();
  }
}
