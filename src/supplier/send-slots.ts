/**
 * The limit on concurrent outgoing transfers (`rebalance.sendSlots`): a counting semaphore with a
 * FIFO queue of waiters, each with its own deadline (ERR_BUSY when it passes).
 *
 * The limit is read live (`limit()`), so `configSet rebalance.sendSlots` applies at run time:
 * raising it admits queued waiters at once (re-checked on every acquire/release and, while anyone
 * waits, every `pollMs`); lowering it lets running transfers finish and admits nobody until the
 * count is below the new limit. The queue is bounded by `waitersMax` (ERR_BUSY beyond).
 */
import { ErrorCode, ptnError } from '../errors.js';

/** Frees a slot; idempotent. */
export type SlotRelease = () => void;

interface Waiter {
  resolve: (release: SlotRelease) => void;
  reject: (err: unknown) => void;
  timer: NodeJS.Timeout;
}

export interface SendSlotsOptions {
  /** How often the limit is re-read while someone waits. Default 25. */
  pollMs?: number;
  /** Most waiters queued at once. Default 1024. */
  waitersMax?: number;
}

/** See the file comment. */
export class SendSlots {
  private inUse = 0;
  private readonly waiters: Waiter[] = [];
  private poll: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly pollMs: number;
  private readonly waitersMax: number;

  constructor(
    private readonly limit: () => number,
    opts: SendSlotsOptions = {},
  ) {
    this.pollMs = opts.pollMs ?? 25;
    this.waitersMax = opts.waitersMax ?? 1024;
  }

  /** Slots held now. */
  get running(): number {
    return this.inUse;
  }

  /** Callers queued now. */
  get waiting(): number {
    return this.waiters.length;
  }

  /** Takes a slot, waiting in FIFO order up to `waitMs`; ERR_BUSY when none frees up in time. */
  acquire(waitMs: number): Promise<SlotRelease> {
    if (this.closed) return Promise.reject(ptnError(ErrorCode.ERR_CLOSED, 'send slots are closed'));
    if (this.waiters.length === 0 && this.inUse < this.limit()) return Promise.resolve(this.take());
    if (this.waiters.length >= this.waitersMax) return Promise.reject(this.busy(0));
    return new Promise<SlotRelease>((resolve, reject) => {
      const w: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
          this.updatePoll();
          reject(this.busy(waitMs));
        }, waitMs),
      };
      this.waiters.push(w);
      this.updatePoll();
    });
  }

  private busy(waitMs: number) {
    return ptnError(ErrorCode.ERR_BUSY, `no free send slot (${this.inUse} of ${this.limit()} in use, ${this.waiters.length} waiting) within ${waitMs} ms; retry later`, {
      details: { running: this.inUse, limit: this.limit(), waitMs },
    });
  }

  private take(): SlotRelease {
    this.inUse++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inUse--;
      this.pump();
    };
  }

  /** Admits waiters while slots are free (call after changing the limit for an immediate effect). */
  pump(): void {
    while (!this.closed && this.waiters.length > 0 && this.inUse < this.limit()) {
      const w = this.waiters.shift()!;
      clearTimeout(w.timer);
      w.resolve(this.take());
    }
    this.updatePoll();
  }

  private updatePoll(): void {
    if (this.waiters.length > 0 && !this.closed) {
      if (!this.poll) {
        this.poll = setInterval(() => this.pump(), this.pollMs);
        this.poll.unref();
      }
    } else if (this.poll) {
      clearInterval(this.poll);
      this.poll = undefined;
    }
  }

  /** Rejects every waiter with ERR_CLOSED and stops the poll; held slots stay counted until released. */
  close(): void {
    this.closed = true;
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(ptnError(ErrorCode.ERR_CLOSED, 'send slots closed'));
    }
    this.updatePoll();
  }
}
