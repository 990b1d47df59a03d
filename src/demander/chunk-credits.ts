/**
 * The node-wide limit on file chunks in flight to this node (`rebalance.receiveChunksMax`), over
 * every transfer it receives: a counting semaphore with a FIFO queue.
 *
 * Why: each transfer keeps up to `rebalance.chunkWindow` chunk requests in flight, and 16 transfers
 * at once put 64 MiB on the way. The answers arrive together, and every one is copied, CRC-checked
 * and written on the node's one thread: an event-loop turn then took tens of ms, and a replicated
 * write (acknowledged after its temporary-WAL append) waited several turns — hundreds of ms under
 * load, while the disk, not the number of chunks in flight, set the transfer speed. At 1M entries
 * under load (bench:catchup) 8 in flight streamed as fast as 16 (7.6 vs 7.4 s) and let through
 * twice the writes meanwhile (2.8k vs 1.5k a second of 3.5k asked).
 *
 * Use: `tryTake()` while a transfer already has requests in flight (it never waits then: it
 * processes what it has), `take()` when it has none (FIFO, so every transfer gets its turn);
 * `give()` once per credit when its chunk was written or its request failed. The limit is read
 * live (`configSet rebalance.receiveChunksMax`); lowering it lets the chunks in flight land.
 * Bound: a transfer waits only when it has nothing in flight, so the queue holds at most one
 * waiter per running transfer (rebalance.receiveSlots).
 */
import { ErrorCode, ptnError } from '../errors.js';

export class ChunkCredits {
  private inUse = 0;
  private readonly waiters: Array<{ resolve: () => void; reject: (err: unknown) => void; signal?: AbortSignal; onAbort?: () => void }> = [];

  constructor(private readonly limit: () => number) {}

  /** Credits held now. */
  get held(): number {
    return this.inUse;
  }

  /** Takes a credit when one is free and nobody waits for one. */
  tryTake(): boolean {
    if (this.waiters.length > 0 || this.inUse >= this.limit()) return false;
    this.inUse++;
    return true;
  }

  /** Takes a credit, waiting in FIFO order; rejects with ERR_REBALANCE_CANCELLED when `signal` aborts first. */
  take(signal?: AbortSignal): Promise<void> {
    if (this.tryTake()) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(cancelled());
    return new Promise<void>((resolve, reject) => {
      const w: (typeof this.waiters)[number] = { resolve, reject, signal };
      if (signal) {
        w.onAbort = () => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(cancelled());
          this.admit(); // the next waiter may fit now
        };
        signal.addEventListener('abort', w.onAbort, { once: true });
      }
      this.waiters.push(w);
    });
  }

  /** Returns one credit. */
  give(): void {
    if (this.inUse > 0) this.inUse--;
    this.admit();
  }

  private admit(): void {
    while (this.waiters.length > 0 && this.inUse < this.limit()) {
      const w = this.waiters.shift()!;
      if (w.onAbort) w.signal!.removeEventListener('abort', w.onAbort);
      this.inUse++;
      w.resolve();
    }
  }
}

function cancelled() {
  return ptnError(ErrorCode.ERR_REBALANCE_CANCELLED, 'transfer cancelled while waiting for a chunk credit');
}
