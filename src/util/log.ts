/**
 * Logging: one structured logger type for the whole node (pino underneath).
 * Components take a `Logger` and never print directly; tests pass `silentLogger`.
 */
import pino from 'pino';

export interface Logger {
  error(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  info(obj: object | string, msg?: string): void;
  debug(obj: object | string, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

/** A logger writing JSON lines to `destination` (a file path) or to stdout. */
export function createLogger(opts: { level: string; name?: string; destination?: string }): Logger {
  const dest = opts.destination ? pino.destination({ dest: opts.destination, sync: false, mkdir: true }) : pino.destination(1);
  return pino({ level: opts.level, name: opts.name, base: { pid: process.pid } }, dest) as unknown as Logger;
}

const noop = () => {};
/** A logger that drops everything. */
export const silentLogger: Logger = {
  error: noop,
  warn: noop,
  info: noop,
  debug: noop,
  child: () => silentLogger,
};
