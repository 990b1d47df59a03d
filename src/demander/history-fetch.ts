/**
 * Historical catch-up (demander step 7): pulls the supplier's WAL records for counter ranges with
 * `historyBatch` and applies them with apply-if-newer.
 *
 * Each range (from, to] is pulled in batches of at most `maxBytes`, continuing at the batch's
 * `lastCounter` until `done`. Every record is checked to belong to the partition and the range
 * asked for. ERR_WAL_HISTORY_GONE from the supplier propagates: the caller starts the partition
 * over with a fresh file.
 */
import { ErrorCode, ptnError } from '../errors.js';
import type { Update } from '../store/store.js';
import type { SupplierLink } from './file-receiver.js';
import { decodeHistoryBatch } from '../supplier/history-batch.js';
import { Method } from './protocol.js';
import type { Range } from './missing.js';

export interface HistoryFetchOptions {
  link: SupplierLink;
  cacheId: number;
  partition: number;
  ranges: readonly Range[];
  maxBytes: number;
  apply: (updates: Update[]) => Promise<void>;
  signal?: AbortSignal;
  /** Per batch: response bytes and updates (progress). */
  onBatch?: (bytes: number, updates: number) => void;
}

/** Fetches and applies every range; resolves with the number of updates received. */
export async function fetchHistory(o: HistoryFetchOptions): Promise<number> {
  let total = 0;
  for (const [from, to] of o.ranges) {
    let fromExclusive = from - 1;
    for (;;) {
      if (o.signal?.aborted) throw ptnError(ErrorCode.ERR_REBALANCE_CANCELLED, 'historical catch-up cancelled');
      const body = await o.link.request(Method.historyBatch, { cacheId: o.cacheId, partition: o.partition, fromExclusive, toInclusive: to, maxBytes: o.maxBytes });
      if (!Buffer.isBuffer(body)) throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, 'historyBatch: not a binary response');
      const { head, updates } = decodeHistoryBatch(body);
      const batch = { done: head.done, lastCounter: head.lastCounter, updates };
      for (const u of batch.updates) {
        if (u.cacheId !== o.cacheId || u.partition !== o.partition || u.counter <= fromExclusive || u.counter > to) {
          throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, `historyBatch returned counter ${u.counter} of ${u.cacheId}/${u.partition}, asked for (${fromExclusive}, ${to}] of ${o.cacheId}/${o.partition}`);
        }
      }
      await o.apply(batch.updates);
      total += batch.updates.length;
      o.onBatch?.(body.length, batch.updates.length);
      if (batch.done) break;
      if (!(batch.lastCounter > fromExclusive) || batch.lastCounter > to) {
        throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, `historyBatch made no progress: lastCounter ${batch.lastCounter} after ${fromExclusive} (to ${to})`);
      }
      fromExclusive = batch.lastCounter;
    }
  }
  return total;
}
