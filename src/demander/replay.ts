/**
 * Replays a partition's catch-up log into the store after the swap-in (demander step 6).
 *
 * Records are read in append order, in batches, and applied with apply-if-newer while new updates
 * keep appending. Each batch is applied concurrently (one group commit for many records), which is
 * what lets the reader outpace the writer; the brake on the log (catch-up-log.ts) bounds the lag
 * should it not. When the lag is at most `fenceLagRecords` — and, while each batch shrinks it by
 * a quarter at least, a few batches later (down to CLOSE_IN_LAG_RECORDS) — the fence goes up (new
 * updates wait), the rest is drained, the log switches to direct apply and the fence comes down; its length is
 * reported. If the drain fails the fence comes down in 'log' mode, so nothing is lost: updates
 * keep going to the log and the task retries.
 */
import { ErrorCode, ptnError } from '../errors.js';
import type { CatchUpLog } from './catch-up-log.js';

export interface ReplayOptions {
  /** Close the last stretch under the fence when the reader is this close to the writer. */
  fenceLagRecords: number;
  /** Appends wait while the log is this far ahead of the reader (default max(16 × fence lag, 4096)). */
  brakeLagRecords?: number;
  batchRecordsMax?: number;
  batchBytesMax?: number;
  signal?: AbortSignal;
  /** Called after every applied batch (progress for status). */
  onBatch?: (records: number) => void;
  /** Clock for the fence length (tests pass a fake one). */
  nowMs?: () => number;
}

export interface ReplayResult {
  /** Records applied in total. */
  records: number;
  /** Records drained under the fence. */
  fenceRecords: number;
  fenceMs: number;
}

const BATCH_RECORDS_MAX_DEFAULT = 1024;
const BATCH_BYTES_MAX_DEFAULT = 4 << 20;
/** The fence goes up at once when the lag is at most this many records. */
const CLOSE_IN_LAG_RECORDS = 8;
/** Batches at most between reaching fenceLagRecords and raising the fence. */
const CLOSE_IN_STEPS_MAX = 16;

function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw ptnError(ErrorCode.ERR_REBALANCE_CANCELLED, 'replay cancelled');
}

/** Drains `log` through `apply` and switches it to direct apply (see the file comment). */
export async function replayCatchUpLog(log: CatchUpLog, apply: (batch: Buffer[]) => Promise<void>, o: ReplayOptions): Promise<ReplayResult> {
  const now = o.nowMs ?? (() => performance.now());
  const records = o.batchRecordsMax ?? BATCH_RECORDS_MAX_DEFAULT;
  const bytes = o.batchBytesMax ?? BATCH_BYTES_MAX_DEFAULT;
  const result: ReplayResult = { records: 0, fenceRecords: 0, fenceMs: 0 };
  const step = async (): Promise<number> => {
    const batch = await log.wal.readBatch(records, bytes);
    if (batch.length > 0) {
      await apply(batch);
      result.records += batch.length;
      o.onBatch?.(batch.length);
    }
    log.readerProgressed();
    return batch.length;
  };
  log.brakeLagRecords = o.brakeLagRecords ?? Math.max(16 * o.fenceLagRecords, 4096);
  try {
    let applied: number;
    let lag: number;
    for (;;) {
      checkAborted(o.signal);
      applied = await step();
      lag = log.wal.stats.lagRecords;
      if (lag <= o.fenceLagRecords) break;
    }
    // Within reach of the fence: go on without it while each batch shrinks the lag by a quarter at
    // least (the last batch of `applied` records let in at most 3/4 as many: the lag converges),
    // so the fence drains a handful of records instead of up to fenceLagRecords. Applying to pages
    // of a freshly swapped-in file that are not cached yet costs 0.15–0.3 ms a record: 100–200
    // records held the fence 15–55 ms at 2k writes/s, while the replay could close them in.
    for (let i = 0; i < CLOSE_IN_STEPS_MAX && lag > CLOSE_IN_LAG_RECORDS && applied > 0 && 4 * lag <= 3 * applied; i++) {
      checkAborted(o.signal);
      applied = await step();
      const next = log.wal.stats.lagRecords;
      if (next >= lag) break; // not closing in after all: fence now
      lag = next;
    }
    checkAborted(o.signal);
    log.raiseFence();
    const t0 = now();
    let drained = false;
    try {
      for (;;) {
        const n = await step();
        result.fenceRecords += n;
        if (n === 0) break;
      }
      drained = true;
    } finally {
      result.fenceMs = now() - t0;
      log.lift(drained ? 'direct' : 'log');
    }
    return result;
  } finally {
    log.brakeLagRecords = undefined;
    log.readerProgressed();
  }
}
