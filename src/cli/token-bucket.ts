/**
 * A token bucket that paces the load generator to at most `ratePerSec` operations per second.
 *
 * The bucket holds up to `burstTokens` tokens and refills continuously at `ratePerSec`. An
 * operation takes one token; when none is left, `tryTake()` says how long to wait. The clock and
 * the sleep are injected so that tests drive time by hand (no wall-clock assertions).
 */

/** Milliseconds since some fixed origin (monotonic). */
export type Clock = () => number;
/** Waits `ms` milliseconds (or less when `signal` aborts). */
export type Sleep = (ms: number, signal?: AbortSignal) => Promise<void>;

/** `performance.now()`: monotonic, unaffected by wall-clock changes. */
export const monotonicClock: Clock = () => performance.now();

/** A real sleep that ends early when the signal aborts. */
export const realSleep: Sleep = (ms, signal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });

/** A token bucket with an injected clock; see the file comment. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  /**
   * @param ratePerSec refill rate, > 0
   * @param burstTokens capacity (≥ 1); the bucket starts full
   */
  constructor(
    readonly ratePerSec: number,
    readonly burstTokens: number,
    private readonly clock: Clock = monotonicClock,
    private readonly sleep: Sleep = realSleep,
  ) {
    if (!(ratePerSec > 0) || !(burstTokens >= 1)) throw new RangeError('TokenBucket: ratePerSec must be > 0 and burstTokens ≥ 1');
    this.tokens = burstTokens;
    this.last = clock();
  }

  private refill(): void {
    const now = this.clock();
    const elapsedMs = Math.max(0, now - this.last);
    this.last = now;
    this.tokens = Math.min(this.burstTokens, this.tokens + (elapsedMs * this.ratePerSec) / 1000);
  }

  /** Takes one token and returns 0, or returns the milliseconds until one will be there. */
  tryTake(): number {
    this.refill();
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return ((1 - this.tokens) * 1000) / this.ratePerSec;
  }

  /** Waits for a token; resolves false (without a token) when `signal` aborts first. */
  async take(signal?: AbortSignal): Promise<boolean> {
    for (;;) {
      if (signal?.aborted) return false;
      const waitMs = this.tryTake();
      if (waitMs === 0) return true;
      await this.sleep(waitMs, signal);
    }
  }
}
