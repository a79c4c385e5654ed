// Reading files that arrive as input (images, model files): regular files only. A FIFO would block the
// read (and a libuv thread) forever, a device such as /dev/zero would grow the buffer without bound and a
// socket cannot be read at all, so the file is opened non-blocking, fstat-checked, and read to the size
// fstat reported (a file that grows meanwhile is read as it was).
import { constants, promises as fs } from 'node:fs';

/** Why a path is not a regular file, in words ("a FIFO", "a character device", ...). */
export function fileKind(st: { isFIFO(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isSocket(): boolean; isDirectory(): boolean }): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/** A path that is not a regular file (after following links). `code` is 'ENOTREG' for messages/tests. */
export class NotRegularFileError extends Error {
  readonly code = 'ENOTREG';

  constructor(
    readonly path: string,
    readonly kind: string,
  ) {
    super(`not a regular file (${kind})`);
    this.name = 'NotRegularFileError';
  }
}

/**
 * Opens `file` for reading only if it is a regular file (links followed): O_NONBLOCK so that opening a
 * FIFO never waits for a writer, then fstat on the open descriptor (no race with a swapped path).
 * Rejects with NotRegularFileError, or the fs error (ENOENT, EACCES, ...).
 */
export async function openRegularFile(file: string): Promise<{ handle: fs.FileHandle; size: number }> {
  const handle = await fs.open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new NotRegularFileError(file, fileKind(st));
    return { handle, size: st.size };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/** The bytes of a regular file (see openRegularFile), at most the size it had when opened. */
export async function readRegularFile(file: string): Promise<Buffer> {
  const { handle, size } = await openRegularFile(file);
  try {
    const buf = Buffer.allocUnsafe(size);
    let off = 0;
    while (off < size) {
      const { bytesRead } = await handle.read(buf, off, size - off, off);
      if (bytesRead === 0) break; // shrank while reading: what there is
      off += bytesRead;
    }
    return off === size ? buf : buf.subarray(0, off);
  } finally {
    await handle.close();
  }
}
