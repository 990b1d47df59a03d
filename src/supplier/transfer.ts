/**
 * One outgoing transfer: a snapshot being pulled by one demander, with everything it holds.
 *
 * Lifecycle: 'opening' (slot taken, reservation, snapshot armed by a checkpoint) → 'open'
 * (serving chunks) → 'released' (by the demander, the idle timeout, a cache drop or a lost
 * ownership, or the node closing). Release is idempotent and complete: it aborts throttle waits,
 * waits for the request being served, then frees what was held, last taken first: the snapshot
 * (listener removed, partition file handle closed, delta file deleted), the WAL reservation, the
 * send slot.
 *
 * Chunk and trailer requests of one transfer run at most `limit` at a time (`limited`, the
 * supplier passes `rebalance.chunkWindow`): reads of consecutive chunks overlap (a file read waits
 * for a thread-pool thread and the disk; doing them one by one left the loop idle), while the
 * memory one transfer holds stays bounded at `limit` chunks whatever a demander sends. Requests
 * beyond it wait in FIFO order.
 */
import { ErrorCode, ptnError } from '../errors.js';
import type { PartitionSnapshot } from './snapshot.js';

export type TransferState = 'opening' | 'open' | 'released';

/** What `snapshotOpen` answers (kept for a resume). */
export interface SnapshotOpenResponse {
  transferId: string;
  fileBytes: number;
  pageSize: number;
  chunkBytes: number;
  counter: { lwm: number; hwm: number; gaps: Array<[number, number]> };
  entryCount: number;
  /** Id of the checkpoint the image is. */
  checkpointId: number;
  /** WAL history of the partition is reserved for counters above this (null: none is held). */
  historyReservedFrom: number | null;
}

/** One transfer for status (`supplier.list()`). */
export interface TransferInfo {
  transferId: string;
  cacheId: number;
  cache: string;
  partition: number;
  demander: string;
  state: TransferState;
  fileBytes: number;
  /** Raw image bytes served in chunks (a re-served range counts again). */
  bytesServed: number;
  /** Bytes of chunk data on the wire (after LZ4). */
  bytesSent: number;
  ackedBytes: number;
  chunks: number;
  chunksCompressed: number;
  deltaPages: number;
  throttleWaits: number;
  startedAt: number;
  lastActiveAt: number;
}

export interface TransferInit {
  transferId: string;
  cacheId: number;
  cache: string;
  partition: number;
  demander: string;
  /** Read at every (re)arm of the idle timer (a run-time setting). */
  idleTimeoutMs: () => number;
  /** Called when no request touched the transfer for idleTimeoutMs. */
  onIdle: (t: Transfer) => void;
}

/** See the file comment. */
export class Transfer {
  state: TransferState = 'opening';
  readonly startedAt = Date.now();
  lastActiveAt = Date.now();
  bytesServed = 0;
  bytesSent = 0;
  chunks = 0;
  chunksCompressed = 0;
  throttleWaits = 0;
  releaseReason: string | undefined;
  snapshot: PartitionSnapshot | undefined;
  openInfo: SnapshotOpenResponse | undefined;
  /** Aborted at release: throttle waits end at once. */
  readonly abort = new AbortController();
  private inFlight = 0;
  private readonly waiters: Array<() => void> = [];
  private readonly running = new Set<Promise<unknown>>();
  private activeRequests = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly held: Array<() => unknown> = [];
  private releasing: Promise<void> | undefined;

  constructor(readonly init: TransferInit) {}

  get transferId(): string {
    return this.init.transferId;
  }

  /** Registers something to free at release (freed in reverse order). */
  hold(free: () => unknown): void {
    this.held.push(free);
  }

  /**
   * Runs `fn` with at most `limit()` such tasks of this transfer running at once; counts as
   * activity. After release, queued tasks still run `fn`, which must check the state first.
   */
  async limited<T>(limit: () => number, fn: () => Promise<T>): Promise<T> {
    // A newcomer queues behind waiters; a woken waiter only needs room under the limit.
    let wait = this.inFlight >= Math.max(1, limit()) || this.waiters.length > 0;
    while (wait && this.state !== 'released') {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
      wait = this.inFlight >= Math.max(1, limit());
    }
    this.inFlight++;
    const run = this.active(fn);
    this.running.add(run);
    try {
      return await run;
    } finally {
      this.running.delete(run);
      this.inFlight--;
      this.waiters.shift()?.();
    }
  }

  /** Runs `fn` as activity: the idle timer cannot release the transfer meanwhile. */
  async active<T>(fn: () => Promise<T>): Promise<T> {
    this.activeRequests++;
    try {
      return await fn();
    } finally {
      this.activeRequests--;
      this.touch();
    }
  }

  /** Marks activity and re-arms the idle timer. */
  touch(): void {
    this.lastActiveAt = Date.now();
    if (this.state !== 'open') return;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.state !== 'open') return;
      if (this.activeRequests > 0) this.touch();
      else this.init.onIdle(this);
    }, this.init.idleTimeoutMs());
    this.idleTimer.unref();
  }

  info(): TransferInfo {
    const { transferId, cacheId, cache, partition, demander } = this.init;
    return {
      transferId,
      cacheId,
      cache,
      partition,
      demander,
      state: this.state,
      fileBytes: this.snapshot?.fileBytes ?? 0,
      bytesServed: this.bytesServed,
      bytesSent: this.bytesSent,
      ackedBytes: this.snapshot?.acked ?? 0,
      chunks: this.chunks,
      chunksCompressed: this.chunksCompressed,
      deltaPages: this.snapshot?.deltaPages ?? 0,
      throttleWaits: this.throttleWaits,
      startedAt: this.startedAt,
      lastActiveAt: this.lastActiveAt,
    };
  }

  /** Frees everything (see the file comment). Idempotent; resolves when all is freed. */
  release(reason: string): Promise<void> {
    if (!this.releasing) {
      this.state = 'released';
      this.releaseReason = reason;
      this.abort.abort(ptnError(ErrorCode.ERR_SNAPSHOT_GONE, `transfer ${this.transferId} was released: ${reason}`));
      if (this.idleTimer) clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
      for (const wake of this.waiters.splice(0)) wake();
      this.releasing = (async () => {
        await Promise.allSettled([...this.running]);
        let first: unknown;
        for (const free of this.held.splice(0).reverse()) {
          try {
            await free();
          } catch (err) {
            first ??= err;
          }
        }
        if (first !== undefined) throw first;
      })();
    }
    return this.releasing;
  }
}
