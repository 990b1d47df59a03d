/**
 * The mutation gate of a PageMemory: every partition mutation runs between `enter()` and `exit()`.
 *
 * A checkpoint capture closes the gate, waits until the mutations in flight have left, captures
 * at that quiescent instant, and reopens it. Mutations that arrive while it is closed wait.
 * The store appends its WAL record inside the gate, so the WAL position read at the capture splits
 * records cleanly: everything before it is in the captured pages, nothing after it is.
 */
import { assert } from '../errors.js';

const RESOLVED: Promise<void> = Promise.resolve();

export class MutationGate {
  private inFlightCount = 0;
  private closed = false;
  private entryWaiters: Array<() => void> = [];
  private drainWaiter: (() => void) | undefined;

  /** Mutations currently between enter and exit. */
  get inFlight(): number {
    return this.inFlightCount;
  }

  /** Resolves once the caller may mutate (at once unless a capture holds the gate closed). */
  enter(): Promise<void> {
    if (!this.closed) {
      this.inFlightCount++;
      return RESOLVED;
    }
    return new Promise((resolve) => this.entryWaiters.push(() => {
      this.inFlightCount++;
      resolve();
    }));
  }

  exit(): void {
    assert(this.inFlightCount > 0, 'exitMutation without enterMutation');
    this.inFlightCount--;
    if (this.inFlightCount === 0 && this.drainWaiter) {
      const w = this.drainWaiter;
      this.drainWaiter = undefined;
      w();
    }
  }

  /** Closes the gate and resolves when no mutation is in flight. */
  async closeAndDrain(): Promise<void> {
    assert(!this.closed, 'mutation gate closed twice');
    this.closed = true;
    if (this.inFlightCount > 0) await new Promise<void>((resolve) => (this.drainWaiter = resolve));
  }

  /** Reopens the gate and lets the waiting mutations in. */
  open(): void {
    this.closed = false;
    const w = this.entryWaiters;
    this.entryWaiters = [];
    for (const f of w) f();
  }
}
