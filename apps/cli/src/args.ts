// Option-value parsers shared by the commands: each names the option and what it accepts, and commander
// turns the InvalidArgumentError into a usage error (exit 2).
import { InvalidArgumentError } from 'commander';

/** An integer in [min, max]; `why`, when given, says why the range is what it is. */
export function intInRange(name: string, min: number, max: number, why?: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}]${why ? ` (${why})` : ''}, got '${value}'`);
    }
    return n;
  };
}

/** A path option given as '' would otherwise be falsy and silently do nothing. */
export function nonEmptyPath(name: string) {
  return (value: string): string => {
    if (value.trim() === '') throw new InvalidArgumentError(`${name} needs a path, got ''`);
    return value;
  };
}
