// How the CLI reports failures: one line naming what failed on which input, and an exit code.
import { readFileSync } from 'node:fs';

import { isLoupeError } from '@loupe/core';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
/** Some inputs got no answer (unreadable, undecodable, refused), the others did: predict, inspect. */
export const EXIT_SOME_FAILED = 2;
export const EXIT_INTERRUPTED = 130;

export function errorText(err: unknown): string {
  if (isLoupeError(err)) {
    // Core messages name their input already; add it where one does not.
    return err.input && !err.message.includes(err.input) ? `${err.message} (${err.input})` : err.message;
  }
  if (err instanceof Error) return err.message;
  return String(err);
}

export function exitCodeOf(err: unknown): number {
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
