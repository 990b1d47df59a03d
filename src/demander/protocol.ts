/**
 * The demander's view of the rebalance protocol (docs/rebalance-protocol.md): the shape of every
 * response it reads, checked before use, so a supplier that answers nonsense gets a coded error
 * (ERR_PROTOCOL_BAD_FRAME) instead of a crash or a wrong file.
 * The binary formats (chunks, history batches) are the supplier's files, one per format:
 * src/supplier/chunk-format.ts and src/supplier/history-batch.ts.
 */
import { ErrorCode, ptnError } from '../errors.js';
import type { Body } from '../net/connection.js';
import type { CounterState } from './task-state.js';

/** Request and response method names. */
export const Method = {
  partitionInfo: 'partitionInfo',
  snapshotOpen: 'snapshotOpen',
  snapshotChunk: 'snapshotChunk',
  snapshotTrailer: 'snapshotTrailer',
  snapshotRelease: 'snapshotRelease',
  historyBatch: 'historyBatch',
} as const;

/** `partitionInfo` response. */
export interface PartitionInfo {
  entryCount: number;
  fileBytes: number;
  pageSize: number;
  counter: CounterState;
  /** Lowest fromExclusive for which the supplier's history is complete (Infinity: none). */
  historyAvailableFrom: number;
}

/** `snapshotOpen` response. */
export interface SnapshotOpened {
  transferId: string;
  fileBytes: number;
  pageSize: number;
  chunkBytes: number;
  counter: CounterState;
  entryCount: number;
}

/** `snapshotTrailer` response. */
export interface SnapshotTrailer {
  fileBytes: number;
  fileCrc: number;
}

function bad(what: string, body: unknown): never {
  throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, `${what}: malformed response`, { details: { body: summarize(body) } });
}

function summarize(body: unknown): unknown {
  if (Buffer.isBuffer(body)) return `<${body.length} bytes>`;
  try {
    return JSON.stringify(body)?.slice(0, 200);
  } catch {
    return String(body);
  }
}

const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

function isObject(b: unknown): b is Record<string, unknown> {
  return typeof b === 'object' && b !== null && !Buffer.isBuffer(b) && !Array.isArray(b);
}

/** Checks a counter state {lwm, hwm, gaps} (gaps: sorted, disjoint inclusive ranges above lwm + 1). */
export function parseCounter(v: unknown, what: string): CounterState {
  if (!isObject(v) || !isCount(v.lwm) || !isCount(v.hwm) || !Array.isArray(v.gaps)) bad(what, v);
  let prev = (v.lwm as number) + 1;
  const gaps: Array<[number, number]> = [];
  for (const g of v.gaps as unknown[]) {
    if (!Array.isArray(g) || g.length !== 2 || !isCount(g[0]) || !isCount(g[1]) || g[0] > g[1] || g[0] <= prev) bad(what, v);
    gaps.push([g[0], g[1]]);
    prev = g[1] + 1;
  }
  const hwm = gaps.length > 0 ? gaps[gaps.length - 1]![1] : (v.lwm as number);
  if (v.hwm !== hwm) bad(what, v);
  return { lwm: v.lwm as number, hwm, gaps };
}

export function parsePartitionInfo(b: Body): PartitionInfo {
  if (!isObject(b) || !isCount(b.entryCount) || !isCount(b.fileBytes) || !isCount(b.pageSize)) bad(Method.partitionInfo, b);
  // JSON has no Infinity: a supplier with no history at all sends null.
  const from = b.historyAvailableFrom === null ? Infinity : b.historyAvailableFrom;
  if (from !== Infinity && !isCount(from)) bad(Method.partitionInfo, b);
  return {
    entryCount: b.entryCount as number,
    fileBytes: b.fileBytes as number,
    pageSize: b.pageSize as number,
    counter: parseCounter(b.counter, Method.partitionInfo),
    historyAvailableFrom: from as number,
  };
}

export function parseSnapshotOpened(b: Body, expectTransferId: string): SnapshotOpened {
  if (!isObject(b) || b.transferId !== expectTransferId || !isCount(b.fileBytes) || !isCount(b.pageSize) || !isCount(b.chunkBytes) || !isCount(b.entryCount)) {
    bad(Method.snapshotOpen, b);
  }
  const pageSize = b.pageSize as number;
  const chunkBytes = b.chunkBytes as number;
  const fileBytes = b.fileBytes as number;
  if (pageSize === 0 || chunkBytes === 0 || chunkBytes % pageSize !== 0 || fileBytes % pageSize !== 0 || fileBytes === 0) bad(Method.snapshotOpen, b);
  return { transferId: expectTransferId, fileBytes, pageSize, chunkBytes, counter: parseCounter(b.counter, Method.snapshotOpen), entryCount: b.entryCount as number };
}

export function parseTrailer(b: Body): SnapshotTrailer {
  if (!isObject(b) || !isCount(b.fileBytes) || !Number.isInteger(b.fileCrc) || (b.fileCrc as number) < 0 || (b.fileCrc as number) > 0xffffffff) {
    bad(Method.snapshotTrailer, b);
  }
  return { fileBytes: b.fileBytes as number, fileCrc: b.fileCrc as number };
}
