// How the CLI reports failures: one line naming what failed on which input, and an exit code.
import { readFileSync } from 'node:fs';

import { isLoupeError } from '@loupe/core';

// The exit codes, one rule for every command (and for local and remote predict/inspect):
//   0 every image inspected (and, for predict/inspect, every one good);
//   1 some image anomalous (predict/inspect), or the command itself failed (a bad model file, a server error);
//   2 some image could not be inspected, or a usage error (a bad option, a path that does not exist);
//   130 interrupted (SIGINT or SIGTERM).
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
/** predict/inspect: every image was inspected and some are anomalous. */
export const EXIT_ANOMALOUS = 1;
export const EXIT_USAGE = 2;
/** Some inputs got no answer (unreadable, undecodable, refused), the others did: predict, inspect. */
export const EXIT_SOME_FAILED = 2;
export const EXIT_INTERRUPTED = 130;

/** A problem with the command line itself (a path that does not exist, options that do not go together): exit 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export function errorText(err: unknown): string {
  if (isLoupeError(err)) {
    // Core messages name their input already; add it where one does not.
    return err.input && !err.message.includes(err.input) ? `${err.message} (${err.input})` : err.message;
  }
  if (err instanceof Error) return err.message;
  return String(err);
}

export function exitCodeOf(err: unknown): number {
  if (err instanceof UsageError) return EXIT_USAGE;
  return isLoupeError(err) && err.code === 'ABORTED' ? EXIT_INTERRUPTED : EXIT_FAILURE;
}

let version: string | undefined;
export function cliVersion(): string {
  if (version === undefined) {
    try {
      version = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? '0.0.0';
    } catch {
      version = '0.0.0';
    }
  }
  return version;
}
