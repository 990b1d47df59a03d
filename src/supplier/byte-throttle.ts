/**
 * The node's rebalance byte-rate limit: one token bucket shared by every outgoing transfer.
 *
 * Tokens (bytes) accrue at `rate()` per second up to a burst of `burstMs` worth; a sender takes
 * the bytes of its next chunk, which may drive the bucket into debt (so a chunk larger than the
 * burst still goes, and the long-run rate is exact); later senders wait, in FIFO order, until
 * the debt is paid back. `rate()` is read at every decision, so a setting changed at run time
 * (`configSet rebalance.throttleBytesPerSec`) applies within one sleep step (≤ `sleepStepMsMax`);
 * 0 means unlimited and lets every waiter go. The clock is injectable so tests count time
 * without wall-clock asserts.
 */
import { ErrorCode, ptnError } from '../errors.js';

/** Time source and sleeper. */
export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number;
  sleep(ms: number): Promise<void>;
}

/** The real clock. */
export const realClock: Clock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

interface Waiter {
  bytes: number;
  resolve: () => void;
  reject: (err: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

export interface ByteThrottleOptions {
  clock?: Clock;
  /** Burst allowance in milliseconds of the rate. Default 100. */
  burstMs?: number;
  /** Longest single sleep, so rate changes apply soon. Default 100. */
  sleepStepMsMax?: number;
}

/** A shared token bucket; see the file comment. */
export class ByteThrottle {
  private tokens = 0;
  private lastMs: number;
  private readonly queue: Waiter[] = [];
  private pumping = false;
  private closed = false;
  private readonly clock: Clock;
  private readonly burstMs: number;
  private readonly sleepStepMsMax: number;
  /** Times a sender had to wait. */
  waits = 0;

  constructor(
    private readonly rate: () => number,
    opts: ByteThrottleOptions = {},
  ) {
    this.clock = opts.clock ?? realClock;
    this.burstMs = opts.burstMs ?? 100;
    this.sleepStepMsMax = opts.sleepStepMsMax ?? 100;
    this.lastMs = this.clock.now();
  }

  /** Senders waiting now. */
  get waiting(): number {
    return this.queue.length;
  }

  /**
   * Resolves when `bytes` may be sent; true when it had to wait. Rejects with the signal's reason
   * when aborted while waiting, ERR_CLOSED once closed.
   */
  async take(bytes: number, signal?: AbortSignal): Promise<boolean> {
    if (this.closed) throw ptnError(ErrorCode.ERR_CLOSED, 'throttle is closed');
    signal?.throwIfAborted();
    const rate = this.rate();
    if (rate <= 0 && this.queue.length === 0) return false;
    if (this.queue.length === 0) {
      this.refill(rate);
      if (this.tokens >= 0) {
        this.tokens -= bytes;
        return false;
      }
    }
    this.waits++;
    await new Promise<void>((resolve, reject) => {
      const w: Waiter = { bytes, resolve, reject, signal };
      if (signal) {
        w.onAbort = () => {
          const i = this.queue.indexOf(w);
          if (i >= 0) this.queue.splice(i, 1);
          reject(signal.reason);
        };
        signal.addEventListener('abort', w.onAbort, { once: true });
      }
      this.queue.push(w);
      void this.pump();
    });
    return true;
  }

  private refill(rate: number): void {
    const now = this.clock.now();
    if (rate > 0) this.tokens = Math.min((rate * this.burstMs) / 1000, this.tokens + ((now - this.lastMs) * rate) / 1000);
    this.lastMs = now;
  }

  private admit(w: Waiter): void {
    if (w.onAbort) w.signal!.removeEventListener('abort', w.onAbort);
    w.resolve();
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0 && !this.closed) {
        const rate = this.rate();
        if (rate <= 0) {
          this.tokens = 0;
          for (const w of this.queue.splice(0)) this.admit(w);
          break;
        }
        this.refill(rate);
        if (this.tokens >= 0) {
          const w = this.queue.shift()!;
          this.tokens -= w.bytes;
          this.admit(w);
          continue;
        }
        await this.clock.sleep(Math.min(this.sleepStepMsMax, Math.max(1, Math.ceil((-this.tokens / rate) * 1000))));
      }
    } finally {
      this.pumping = false;
    }
  }

  /** Rejects every waiter with ERR_CLOSED; later takes fail. Idempotent. */
  close(): void {
    this.closed = true;
    for (const w of this.queue.splice(0)) {
      if (w.onAbort) w.signal!.removeEventListener('abort', w.onAbort);
      w.reject(ptnError(ErrorCode.ERR_CLOSED, 'throttle closed'));
    }
  }
}
