// Errors raised by the dataset tools. Each names the file (or dataset root) it is about.

export type DatasetErrorCode =
  | 'DATASET_NOT_FOUND' // root missing or not a directory
  | 'DATASET_LAYOUT' // the folder does not have the expected layout
  | 'DATASET_EMPTY' // no usable images / too few for the operation
  | 'GROUPS_FILE' // malformed groups CSV
  | 'GROUPS_UNKNOWN_FILES' // CSV names files that are not in the dataset
  | 'GROUPS_MISSING_FILES' // dataset items have no group in the CSV
  | 'GROUPS_AMBIGUOUS' // a basename in the CSV matches several dataset files
  | 'SPLIT_INVALID'; // bad ratio / k / impossible split

export class DatasetError extends Error {
  readonly code: DatasetErrorCode;
  /** The file or folder the error is about, when there is one (same field name as LoupeError). */
  readonly input: string | undefined;
  /** Offending entries (file names), when the error lists several. */
  readonly entries?: readonly string[];

  constructor(code: DatasetErrorCode, message: string, options?: { input?: string; entries?: readonly string[]; cause?: unknown }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'DatasetError';
    this.code = code;
    this.input = options?.input;
    if (options?.entries !== undefined) this.entries = options.entries;
  }
}

/** Formats a list of names for an error message: the first `max`, then a count of the rest. */
export function listForMessage(names: readonly string[], max = 10): string {
  const shown = names.slice(0, max).join(', ');
  return names.length > max ? `${shown}, ... (${names.length - max} more)` : shown;
}
