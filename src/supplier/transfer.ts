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
 * Chunk and trailer requests of one transfer run one at a time in arrival order (`serial`): the
 * running CRC advances chunk by chunk, and the memory a transfer holds is one chunk being read
 * (the demander's window of requests waits in the connection's bounded receive queue meanwhile).
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
  private chain: Promise<unknown> = Promise.resolve();
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

  /** Runs `fn` after every earlier serial task of this transfer; counts as activity. */
  serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(() => this.active(fn));
    this.chain = run.catch(() => undefined);
    return run;
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
      this.releasing = (async () => {
        await this.chain;
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
