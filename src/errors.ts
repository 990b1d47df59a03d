/**
 * One error type for the whole node, with stable codes.
 *
 * Operating errors (bad input, corrupt files, full disks, peers that misbehave) are
 * `PtnError`s with a code from `ErrorCode`; tests check the code, never the message.
 * Programmer errors are assertions (`assert()` below) and are never caught to be handled.
 * Every code is listed in docs/errors.md; keep the two in step.
 */

export const ErrorCode = {
  // configuration and usage
  ERR_CONFIG_INVALID: 'ERR_CONFIG_INVALID',
  ERR_USAGE: 'ERR_USAGE',
  ERR_CLUSTER_NOT_READY: 'ERR_CLUSTER_NOT_READY',
  // lifecycle
  ERR_NOT_OPEN: 'ERR_NOT_OPEN',
  ERR_CLOSED: 'ERR_CLOSED',
  // storage: partition files and pages
  ERR_PAGE_CORRUPT: 'ERR_PAGE_CORRUPT',
  ERR_FILE_FORMAT: 'ERR_FILE_FORMAT',
  ERR_FILE_VERSION: 'ERR_FILE_VERSION',
  ERR_FILE_WRONG_PARTITION: 'ERR_FILE_WRONG_PARTITION',
  ERR_FILE_WRONG_CLUSTER: 'ERR_FILE_WRONG_CLUSTER',
  ERR_KEY_TOO_LARGE: 'ERR_KEY_TOO_LARGE',
  ERR_VALUE_TOO_LARGE: 'ERR_VALUE_TOO_LARGE',
  ERR_PAGE_CACHE_FULL: 'ERR_PAGE_CACHE_FULL',
  ERR_CHECKPOINT_JOURNAL_CORRUPT: 'ERR_CHECKPOINT_JOURNAL_CORRUPT',
  ERR_DISK_FULL: 'ERR_DISK_FULL',
  ERR_IO: 'ERR_IO',
  // WAL
  ERR_WAL_CORRUPT: 'ERR_WAL_CORRUPT',
  ERR_WAL_VERSION: 'ERR_WAL_VERSION',
  ERR_WAL_RECORD_TOO_LARGE: 'ERR_WAL_RECORD_TOO_LARGE',
  ERR_WAL_HISTORY_GONE: 'ERR_WAL_HISTORY_GONE',
  ERR_TEMP_WAL_CORRUPT: 'ERR_TEMP_WAL_CORRUPT',
  // counters and store
  ERR_COUNTER_GAPS_OVERFLOW: 'ERR_COUNTER_GAPS_OVERFLOW',
  ERR_CACHE_NOT_FOUND: 'ERR_CACHE_NOT_FOUND',
  ERR_CACHE_EXISTS: 'ERR_CACHE_EXISTS',
  ERR_PARTITION_NOT_FOUND: 'ERR_PARTITION_NOT_FOUND',
  ERR_PARTITION_NOT_OWNED: 'ERR_PARTITION_NOT_OWNED',
  ERR_INDEX_NOT_FOUND: 'ERR_INDEX_NOT_FOUND',
  ERR_META_CORRUPT: 'ERR_META_CORRUPT',
  // network
  ERR_PROTOCOL_BAD_FRAME: 'ERR_PROTOCOL_BAD_FRAME',
  ERR_PROTOCOL_FRAME_TOO_LARGE: 'ERR_PROTOCOL_FRAME_TOO_LARGE',
  ERR_PROTOCOL_VERSION: 'ERR_PROTOCOL_VERSION',
  ERR_HANDSHAKE_CLUSTER: 'ERR_HANDSHAKE_CLUSTER',
  ERR_HANDSHAKE_AUTH: 'ERR_HANDSHAKE_AUTH',
  ERR_HANDSHAKE_TIMEOUT: 'ERR_HANDSHAKE_TIMEOUT',
  ERR_REQUEST_TIMEOUT: 'ERR_REQUEST_TIMEOUT',
  ERR_CONNECTION_CLOSED: 'ERR_CONNECTION_CLOSED',
  ERR_REMOTE: 'ERR_REMOTE',
  ERR_PEER_BUSY: 'ERR_PEER_BUSY',
  // rebalance
  ERR_BUSY: 'ERR_BUSY',
  ERR_SNAPSHOT_GONE: 'ERR_SNAPSHOT_GONE',
  ERR_TRANSFER_CORRUPT: 'ERR_TRANSFER_CORRUPT',
  ERR_REBALANCE_CANCELLED: 'ERR_REBALANCE_CANCELLED',
  ERR_UNKNOWN_METHOD: 'ERR_UNKNOWN_METHOD',
  ERR_TEST_FAULT: 'ERR_TEST_FAULT', // an injected fault (src/testing/, test runs only)
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface PtnErrorOptions {
  cause?: unknown;
  /** Extra machine-readable detail (file, key, offsets …). */
  details?: Record<string, unknown>;
}

/** The one error type of the project. `code` is stable; `message` is for people. */
export class PtnError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: PtnErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PtnError';
    this.code = code;
    this.details = options.details;
  }
}

/** Makes a coded error. Prefer this over `new PtnError` for brevity at call sites. */
export function ptnError(code: ErrorCode, message: string, options?: PtnErrorOptions): PtnError {
  return new PtnError(code, message, options);
}

/** True when `err` is a PtnError (optionally with the given code). */
export function isPtnError(err: unknown, code?: ErrorCode): err is PtnError {
  return err instanceof PtnError && (code === undefined || err.code === code);
}

/** Programmer-error check: throws a plain AssertionError-like Error, never a PtnError. */
export function assert(condition: unknown, message = 'assertion failed'): asserts condition {
  if (!condition) {
    const err = new Error(`assertion failed: ${message}`);
    err.name = 'AssertionError';
    throw err;
  }
}

/** Maps a Node.js file-system error to a coded error (ENOSPC → ERR_DISK_FULL, else ERR_IO). */
export function fsError(err: unknown, what: string): PtnError {
  if (err instanceof PtnError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return ptnError(ErrorCode.ERR_DISK_FULL, `${what}: no space left on device`, { cause: err });
  }
  return ptnError(ErrorCode.ERR_IO, `${what}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}
