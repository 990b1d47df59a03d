/**
 * How a page read reaches the file: a synchronous pread on the event loop while reads are fast,
 * the thread pool while they are not. One per page memory (node-wide: the files share a disk).
 *
 * Why: a page that a write, a replay or a history record misses in the page cache is nearly always
 * in the OS page cache (a received file was just written; the node's files were read before). A
 * thread-pool read of it costs a queue hop, a thread wake-up and a promise per page: on the
 * development machine ~36–40k 4 KiB reads/s with 64 in flight, against ~109k/s synchronous from
 * the same cached 84 MiB file, and on two shared cores each wake-up may preempt the loop. At 1M
 * entries (1.3 GiB of files, a 256 MiB cache) those reads were most of a joining node's replay.
 * But a read that goes to the device blocks the whole loop while it waits. So every synchronous
 * read is timed against `slowUs` (a device, not memory). One slow read proves little: on shared
 * cores a read from memory is preempted now and then (measured: the first version, holding after
 * any single slow read, sent ~97% of a joining node's reads to the pool). A decaying score
 * (score × (1 − 1/32) + 1 per slow read) holds when it exceeds SLOW_SCORE_HOLD, i.e. when more than
 * a quarter of the recent synchronous reads were slow: then every page read goes to the thread pool
 * for `holdMs`. The score stays as it was, so after the hold one more slow read holds again, and
 * fast ones bring it down. A node whose data is on the device pays about one blocking device read
 * per `holdMs` (about ten at the very start).
 *
 * Synchronous reads never hold the event loop for long: a chain of them resolves in microtasks
 * only, so a scan over pages not cached (a verify digest of an 84 MiB partition) would run to its
 * end while timers, heartbeats and sockets waited (it did: a peer was declared dead after 6.8 s).
 * Once reads have run `sliceMs` without the loop reaching its check phase (a setImmediate marks
 * it), the next reads go to the thread pool, which hands the loop back, until it does.
 *
 * A file without `readSync` (a test double) is always read through the thread pool.
 */
import type { FileLike } from '../util/file-layer.js';

export interface PageReadOptions {
  /** Synchronous reads at all (storage.syncPageReads). */
  sync: boolean;
  /** A synchronous read slower than this (µs) counts as a device read. */
  slowUs?: number;
  /** Reads go to the thread pool this long once most recent synchronous ones were slow (ms). */
  holdMs?: number;
  /** Synchronous reads run at most this long (ms) between two turns of the event loop. */
  sliceMs?: number;
  /** Clock (ms, fractional); tests pass a fake. */
  now?: () => number;
  /** Runs `fn` at the loop's next check phase (setImmediate); tests pass a fake. */
  nextTurn?: (fn: () => void) => void;
}

export const SLOW_SYNC_READ_US = 250;
export const SYNC_SLICE_MS = 4;
export const ASYNC_HOLD_MS = 1000;
/** Decay of the slow-read score per synchronous read, and the score that starts a hold. */
const SLOW_SCORE_DECAY = 1 - 1 / 32;
export const SLOW_SCORE_HOLD = 8;

/** Counters for stats and metrics. */
export interface PageReadCounts {
  sync: number;
  async: number;
  /** Synchronous reads slower than slowUs. */
  slow: number;
  /** Holds started (reads sent to the thread pool for holdMs). */
  holds: number;
  /** Reads sent to the thread pool because synchronous ones had run sliceMs without a loop turn. */
  yields: number;
}

export class PageReads {
  readonly counts: PageReadCounts = { sync: 0, async: 0, slow: 0, holds: 0, yields: 0 };
  private readonly slowMs: number;
  private readonly holdMs: number;
  private readonly sliceMs: number;
  private readonly now: () => number;
  private readonly nextTurn: (fn: () => void) => void;
  /** Decaying count of slow synchronous reads (see the file comment). */
  private slowScore = 0;
  /** Reads go to the thread pool until then (a hold). */
  private asyncUntil = -Infinity;
  /** When the current run of synchronous reads began; undefined once the loop has turned since. */
  private sliceStart: number | undefined;
  private readonly turned = () => {
    this.sliceStart = undefined;
  };

  constructor(private readonly opts: PageReadOptions) {
    this.slowMs = (opts.slowUs ?? SLOW_SYNC_READ_US) / 1000;
    this.holdMs = opts.holdMs ?? ASYNC_HOLD_MS;
    this.now = opts.now ?? (() => performance.now());
    this.sliceMs = opts.sliceMs ?? SYNC_SLICE_MS;
    this.nextTurn = opts.nextTurn ?? ((fn) => void setImmediate(fn));
  }

  /** True during a hold: reads go to the thread pool. */
  get holding(): boolean {
    return this.now() < this.asyncUntil;
  }

  /** Reads up to `length` bytes at `position` into `buf[offset..]`; resolves with the bytes read. */
  read(fh: FileLike, buf: Buffer, offset: number, length: number, position: number): number | Promise<number> {
    if (!this.opts.sync || fh.readSync === undefined || this.holding) {
      this.counts.async++;
      return fh.read(buf, offset, length, position);
    }
    const t0 = this.now();
    if (this.sliceStart === undefined) {
      this.sliceStart = t0;
      this.nextTurn(this.turned);
    } else if (t0 - this.sliceStart > this.sliceMs) {
      this.counts.yields++;
      this.counts.async++;
      return fh.read(buf, offset, length, position);
    }
    const got = fh.readSync(buf, offset, length, position);
    const t1 = this.now();
    this.counts.sync++;
    const slow = t1 - t0 > this.slowMs;
    this.slowScore = this.slowScore * SLOW_SCORE_DECAY + (slow ? 1 : 0);
    if (slow) {
      this.counts.slow++;
      if (this.slowScore > SLOW_SCORE_HOLD) {
        this.counts.holds++;
        this.asyncUntil = t1 + this.holdMs;
      }
    }
    return got;
  }
}
