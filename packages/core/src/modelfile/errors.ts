// Typed errors for model files: every error names the file and, where it applies, the header field.

export type ModelFileErrorCode =
  | 'MODEL_READ' // the file cannot be read (missing, permissions)
  | 'MODEL_WRITE' // the file cannot be written
  | 'MODEL_NOT_A_MODEL' // not a Loupe model file at all (wrong magic)
  | 'MODEL_TRUNCATED' // shorter than its header says
  | 'MODEL_CORRUPT' // inconsistent or damaged (bad JSON, checksum mismatch, wrong lengths)
  | 'MODEL_INCOMPATIBLE'; // a valid file this version cannot use (newer format, other kind, other CNN)

export class ModelFileError extends Error {
  readonly code: ModelFileErrorCode;
  /** The model file (same field name as LoupeError). */
  readonly input: string;
  /** The header field at fault (e.g. 'payload.sha256', 'svm.weights'), when there is one. */
  readonly field: string | undefined;

  constructor(code: ModelFileErrorCode, file: string, message: string, options: { field?: string; cause?: unknown } = {}) {
    super(`${file}: ${options.field ? `${options.field}: ` : ''}${message}`, options.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'ModelFileError';
    this.code = code;
    this.input = file;
    this.field = options.field;
  }
}
