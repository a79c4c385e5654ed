// Typed errors for model files: every error names the file and, where it applies, the header field.
import { LoupeError, type LoupeErrorCode } from '../errors.js';

export type ModelFileErrorCode = Extract<LoupeErrorCode, `MODEL_${string}`>;

export class ModelFileError extends LoupeError {
  declare readonly code: ModelFileErrorCode;
  /** The model file. */
  declare readonly input: string;
  /** The header field at fault (e.g. 'payload.sha256', 'svm.weights'), when there is one. */
  readonly field: string | undefined;

  constructor(code: ModelFileErrorCode, file: string, message: string, options: { field?: string; cause?: unknown } = {}) {
    super(code, `${file}: ${options.field ? `${options.field}: ` : ''}${message}`, { input: file, cause: options.cause });
    this.field = options.field;
  }
}
