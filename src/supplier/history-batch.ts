/**
 * WAL history served to a demander (`historyBatch`, docs/rebalance-protocol.md): the updates of
 * one partition with fromExclusive < counter ≤ lastCounter, as one binary response body.
 *
 * | offset | size | field                                                    |
 * |-------:|-----:|----------------------------------------------------------|
 * |      0 |    4 | JSON length n (u32 BE)                                   |
 * |      4 |    n | JSON `{done, lastCounter}` (UTF-8)                       |
 * |    4+n |    … | update batch (src/cluster/update-codec.ts), by counter   |
 *
 * The frame around it carries the version, length and CRC. `lastCounter` is the upper end of the
 * counter range this batch covers COMPLETELY: every record of the partition with
 * fromExclusive < counter ≤ lastCounter that the WAL holds is in it. When `done` is false the
 * demander asks again from lastCounter. Why a range and not "the next N records": WAL order is not
 * counter order (backups apply out of order), so cutting the WAL stream after N records could skip
 * a lower counter logged later. The reader keeps at most ~maxBytes: when the batch overflows it
 * drops its highest counters and lowers lastCounter below them (records above it are skipped).
 */
import { ErrorCode, ptnError } from '../errors.js';
import type { NodeWal } from '../wal/node-wal.js';
import type { Update } from '../store/store.js';
import { decodeUpdateBatch, encodeUpdateBatch, updateSize } from '../cluster/update-codec.js';

/** The JSON head of a batch. */
export interface HistoryBatchHead {
  done: boolean;
  lastCounter: number;
}

/** Bytes of the length prefix. */
export const HISTORY_BATCH_PREFIX_BYTES = 4;

/** Encodes a batch response. */
export function encodeHistoryBatch(head: HistoryBatchHead, updates: readonly Update[]): Buffer {
  const json = Buffer.from(JSON.stringify({ done: head.done, lastCounter: head.lastCounter }), 'utf8');
  const batch = encodeUpdateBatch(updates);
  const out = Buffer.allocUnsafe(HISTORY_BATCH_PREFIX_BYTES + json.length + batch.length);
  out.writeUInt32BE(json.length, 0);
  json.copy(out, HISTORY_BATCH_PREFIX_BYTES);
  batch.copy(out, HISTORY_BATCH_PREFIX_BYTES + json.length);
  return out;
}

function bad(msg: string): never {
  throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, `historyBatch: ${msg}`);
}

/** Decodes a batch response; ERR_PROTOCOL_BAD_FRAME when malformed. */
export function decodeHistoryBatch(buf: Buffer): { head: HistoryBatchHead; updates: Update[] } {
  if (!Buffer.isBuffer(buf) || buf.length < HISTORY_BATCH_PREFIX_BYTES) bad('response shorter than its length prefix');
  const n = buf.readUInt32BE(0);
  if (HISTORY_BATCH_PREFIX_BYTES + n > buf.length) bad('truncated JSON head');
  let head: HistoryBatchHead;
  try {
    head = JSON.parse(buf.toString('utf8', HISTORY_BATCH_PREFIX_BYTES, HISTORY_BATCH_PREFIX_BYTES + n)) as HistoryBatchHead;
  } catch (err) {
    throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, 'historyBatch: JSON head does not parse', { cause: err });
  }
  if (typeof head?.done !== 'boolean' || !Number.isSafeInteger(head.lastCounter)) bad('bad JSON head');
  return { head, updates: decodeUpdateBatch(buf.subarray(HISTORY_BATCH_PREFIX_BYTES + n)) };
}

/**
 * Reads one batch of history (fromExclusive, toInclusive] of a partition from the WAL, at most
 * about `maxBytes` of encoded updates (always at least one record when there is one).
 * ERR_WAL_HISTORY_GONE when the range is no longer held.
 */
export async function readHistoryBatch(
  wal: NodeWal,
  q: { cacheId: number; partition: number; fromExclusive: number; toInclusive: number; maxBytes: number },
): Promise<{ head: HistoryBatchHead; updates: Update[] }> {
  let upTo = q.toInclusive;
  let kept: Update[] = [];
  let bytes = 0;
  // The read ends once nothing at or below upTo can follow (NodeWal.history), not at the WAL's end.
  const bound = { upTo };
  for await (const r of wal.history(q.cacheId, q.partition, q.fromExclusive, q.toInclusive, bound)) {
    if ((r.type !== 'put' && r.type !== 'remove') || r.counter > upTo) continue;
    const u: Update = r.type === 'put'
      ? { cacheId: r.cacheId, partition: r.partition, counter: r.counter, key: r.key, op: 'put', valueKind: r.valueKind, value: r.value }
      : { cacheId: r.cacheId, partition: r.partition, counter: r.counter, key: r.key, op: 'remove' };
    kept.push(u);
    bytes += updateSize(u);
    if (bytes > q.maxBytes && kept.length > 1) {
      kept.sort((a, b) => a.counter - b.counter);
      while (kept.length > 1 && (bytes > q.maxBytes || kept[kept.length - 1]!.counter > upTo)) {
        const dropped = kept.pop()!;
        bytes -= updateSize(dropped);
        upTo = Math.min(upTo, dropped.counter - 1);
      }
      bound.upTo = upTo;
      if (kept[kept.length - 1]!.counter > upTo) {
        // Only with a repeated counter (not logged twice in practice): keep the range exact anyway.
        kept = kept.filter((k) => k.counter <= upTo);
        bytes = kept.reduce((n, k) => n + updateSize(k), 0);
      }
    }
  }
  kept.sort((a, b) => a.counter - b.counter);
  return { head: { done: upTo >= q.toInclusive, lastCounter: upTo }, updates: kept };
}
