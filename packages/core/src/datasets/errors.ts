// Errors raised by the dataset tools. Each names the file (or dataset root) it is about.
import { LoupeError, type LoupeErrorCode } from '../errors.js';

export type DatasetErrorCode = Extract<LoupeErrorCode, `DATASET_${string}` | `GROUPS_${string}` | 'SPLIT_INVALID'>;

export class DatasetError extends LoupeError {
  declare readonly code: DatasetErrorCode;
  /** Offending entries (file names), when the error lists several. */
  readonly entries?: readonly string[];

  constructor(code: DatasetErrorCode, message: string, options?: { input?: string; entries?: readonly string[]; cause?: unknown }) {
    super(code, message, { ...(options?.input !== undefined ? { input: options.input } : {}), cause: options?.cause });
    if (options?.entries !== undefined) this.entries = options.entries;
  }
}

/** Formats a list of names for an error message: the first `max`, then a count of the rest. */
export function listForMessage(names: readonly string[], max = 10): string {
  const shown = names.slice(0, max).join(', ');
  return names.length > max ? `${shown}, ... (${names.length - max} more)` : shown;
}
