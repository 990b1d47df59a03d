/**
 * A bounded pool of equal-sized buffers for the hot streaming path (file chunks).
 *
 * Why: a 1 MiB chunk buffer allocated per chunk and dropped after the socket took it makes V8
 * count ~1 MiB of external memory per chunk; every few dozen chunks that forces a full garbage
 * collection, and every fresh buffer costs the kernel page faults when it is first filled. On the
 * supplier that was a fifth of the main thread while streaming. Reusing a few buffers removes both.
 *
 * Bounds: at most `freeMax` buffers of `slotBytes` wait in the pool (`slotBytes × freeMax` bytes
 * idle at most); buffers in use are bounded by their users (a transfer's chunk window). A request
 * larger than a slot gets a plain allocation that `release()` ignores, as it ignores a buffer that
 * is not one of its slots; releasing a slot twice is a programmer error (asserted).
 */
import { assert } from '../errors.js';

export class BufferPool {
  readonly #free: Buffer[] = [];
  readonly #lent = new WeakSet<ArrayBuffer | SharedArrayBuffer>();
  /** Slots allocated since creation (a pool that works allocates about `freeMax` of them). */
  allocated = 0;
  /** Buffers handed out from the pool without allocating. */
  reused = 0;

  constructor(
    readonly slotBytes: number,
    readonly freeMax: number,
  ) {
    assert(Number.isSafeInteger(slotBytes) && slotBytes > 0, 'slotBytes must be a positive integer');
    assert(Number.isSafeInteger(freeMax) && freeMax >= 0, 'freeMax must be an integer >= 0');
  }

  /** A buffer of exactly `bytes` bytes (uninitialised): a view of a pooled slot when it fits. */
  acquire(bytes: number): Buffer {
    assert(Number.isSafeInteger(bytes) && bytes >= 0, 'bytes must be an integer >= 0');
    if (bytes > this.slotBytes) return Buffer.allocUnsafeSlow(bytes);
    let slot = this.#free.pop();
    if (slot) this.reused++;
    else {
      slot = Buffer.allocUnsafeSlow(this.slotBytes);
      this.allocated++;
    }
    this.#lent.add(slot.buffer);
    return slot.subarray(0, bytes);
  }

  /** Gives back a buffer from `acquire()` (any view of it); the caller must not touch it after. */
  release(buf: Buffer): void {
    const ab = buf.buffer;
    if (!this.#lent.has(ab)) {
      assert(!this.#free.some((b) => b.buffer === ab), 'buffer released twice');
      return; // an oversize allocation, or not ours: the GC takes it
    }
    this.#lent.delete(ab);
    if (this.#free.length < this.freeMax) this.#free.push(Buffer.from(ab, 0, this.slotBytes));
  }

  /** Buffers waiting in the pool. */
  get freeCount(): number {
    return this.#free.length;
  }
}
