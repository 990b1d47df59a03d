/**
 * Argument parsers for the `ptn` command line.
 *
 * Each parser either returns the parsed value or throws commander's InvalidArgumentError, which
 * commander turns into "option '--nodes <n>' argument 'x' is invalid. expected …" and `main.ts`
 * into one `error ERR_USAGE: …` line with exit code 2. Keeping them pure makes them testable
 * without spawning the command.
 */
import { InvalidArgumentError } from 'commander';

/** Parser of an integer in [min, max] (inclusive). */
export function intArg(min: number, max: number = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value: string) => {
    if (!/^-?\d+$/.test(value.trim())) throw new InvalidArgumentError(`expected an integer in ${min}..${max}`);
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected an integer in ${min}..${max}`);
    return n;
  };
}

/** Parser of a finite number > 0 (rates, seconds). */
export function positiveNumberArg(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a number > 0');
  return n;
}

/** Parser of a HOST:PORT address. */
export function addressArg(value: string): string {
  const m = /^([^:\s]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$/.exec(value);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new InvalidArgumentError('expected HOST:PORT');
  return value;
}

/** Collects a repeatable option into an array (`--index a --index b`). */
export function collectArg(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/**
 * A VALUE argument of put/query: JSON when it parses as JSON, else the string itself
 * (`ptn put k 42` stores the number 42, `ptn put k hello` the string "hello").
 */
export function parseValueArg(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** Splits HOST:PORT; the port as a number. */
export function splitAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i).replace(/^\[(.*)\]$/, '$1'), port: Number(address.slice(i + 1)) };
}
