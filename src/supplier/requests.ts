/**
 * Checks of the supplier's request bodies (docs/rebalance-protocol.md). A body from a peer is
 * untrusted: anything missing, of the wrong type or out of range is ERR_PROTOCOL_BAD_FRAME with
 * the field named, answered as an error response (the connection stays up).
 */
import { ErrorCode, ptnError } from '../errors.js';
import type { Body } from '../net/connection.js';

/** Transfer ids are chosen by the demander: short, printable, file-name safe. */
export const TRANSFER_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
/** Longest `reason` string kept from a release. */
export const RELEASE_REASON_CHARS_MAX = 200;

function bad(method: string, msg: string): never {
  throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, `${method}: ${msg}`, { details: { method } });
}

function object(method: string, body: Body): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Buffer.isBuffer(body) || Array.isArray(body)) bad(method, 'body must be a JSON object');
  return body as Record<string, unknown>;
}

function int(method: string, b: Record<string, unknown>, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = b[name];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) bad(method, `${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
  return v;
}

function transferId(method: string, b: Record<string, unknown>): string {
  const v = b.transferId;
  if (typeof v !== 'string' || !TRANSFER_ID_PATTERN.test(v)) bad(method, `transferId must match ${TRANSFER_ID_PATTERN}, got ${JSON.stringify(v)}`);
  return v;
}

/** `{cacheId, partition}` (partitionInfo). */
export function parsePartitionRef(method: string, body: Body): { cacheId: number; partition: number } {
  const b = object(method, body);
  return { cacheId: int(method, b, 'cacheId', 0, 0xffffffff), partition: int(method, b, 'partition', 0, 0xffff) };
}

/** `{cacheId, partition, transferId, resume?}` (snapshotOpen). */
export function parseOpen(body: Body): { cacheId: number; partition: number; transferId: string; resume: boolean } {
  const m = 'snapshotOpen';
  const b = object(m, body);
  if (b.resume !== undefined && typeof b.resume !== 'boolean') bad(m, 'resume must be a boolean');
  return { ...parsePartitionRef(m, b), transferId: transferId(m, b), resume: b.resume === true };
}

/** `{transferId, offset, ackedBytes}` (snapshotChunk); offset ≥ ackedBytes. */
export function parseChunk(body: Body): { transferId: string; offset: number; ackedBytes: number } {
  const m = 'snapshotChunk';
  const b = object(m, body);
  const r = { transferId: transferId(m, b), offset: int(m, b, 'offset', 0), ackedBytes: int(m, b, 'ackedBytes', 0) };
  if (r.ackedBytes > r.offset) bad(m, `ackedBytes ${r.ackedBytes} is beyond the requested offset ${r.offset}`);
  return r;
}

/** `{transferId}` (snapshotTrailer). */
export function parseTrailer(body: Body): { transferId: string } {
  return { transferId: transferId('snapshotTrailer', object('snapshotTrailer', body)) };
}

/** `{transferId, reason?}` (snapshotRelease). */
export function parseRelease(body: Body): { transferId: string; reason: string } {
  const m = 'snapshotRelease';
  const b = object(m, body);
  if (b.reason !== undefined && typeof b.reason !== 'string') bad(m, 'reason must be a string');
  return { transferId: transferId(m, b), reason: String(b.reason ?? 'released').slice(0, RELEASE_REASON_CHARS_MAX) };
}

/** `{cacheId, partition, fromExclusive, toInclusive, maxBytes}` (historyBatch). */
export function parseHistory(body: Body): { cacheId: number; partition: number; fromExclusive: number; toInclusive: number; maxBytes: number } {
  const m = 'historyBatch';
  const b = object(m, body);
  const r = {
    ...parsePartitionRef(m, b),
    fromExclusive: int(m, b, 'fromExclusive', 0),
    toInclusive: int(m, b, 'toInclusive', 0),
    maxBytes: int(m, b, 'maxBytes', 1, 0xffffffff),
  };
  if (r.toInclusive < r.fromExclusive) bad(m, `toInclusive ${r.toInclusive} is below fromExclusive ${r.fromExclusive}`);
  return r;
}
