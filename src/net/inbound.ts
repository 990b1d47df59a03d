/**
 * Receive-side flow control of one connection.
 *
 * Counts received frames whose handling (handler run and, for requests, the response queued)
 * is not finished. At `bytesMax` bytes or `framesMax` frames it pauses reading from the socket,
 * so a peer that outruns our handlers (a slow disk under a file stream) is slowed down by TCP
 * instead of filling our memory; below both limits again, reading resumes.
 *
 * Never paused while we wait for answers on the same socket: a socket carries requests both ways,
 * and pausing it while our own handlers wait for the peer's responses (a forwarded write waiting
 * for its replication, say) would stop those responses too — a deadlock between two nodes. So the
 * connection admits with `mayPause` false while it has requests of its own pending, and refuses
 * requests beyond the limits instead (`full`, answered ERR_PEER_BUSY, which the sender retries).
 *
 * Bound: `ws.pause()` stops the socket, but `ws` may still deliver the messages it already
 * parsed from the last chunk, so unfinished work may overshoot by about one socket read
 * (≤ 64 KiB) plus one frame (≤ frameBytesMax).
 */
import { assert } from '../errors.js';

/** What the flow control drives: a WebSocket's pause/resume. */
export interface Pausable {
  pause(): void;
  resume(): void;
}

export class InboundFlow {
  readonly #bytesMax: number;
  readonly #framesMax: number;
  readonly #socket: Pausable;
  #bytes = 0;
  #frames = 0;
  #paused = false;
  /** Times reading was paused. */
  pauses = 0;

  constructor(limits: { bytesMax: number; framesMax: number }, socket: Pausable) {
    assert(limits.bytesMax > 0 && limits.framesMax > 0, 'inbound limits must be positive');
    this.#bytesMax = limits.bytesMax;
    this.#framesMax = limits.framesMax;
    this.#socket = socket;
  }

  /** True while reading is paused by this flow control. */
  get paused(): boolean {
    return this.#paused;
  }

  /** Bytes of received frames not finished yet. */
  get bytes(): number {
    return this.#bytes;
  }

  /** True when unfinished work is at a limit: a new request should be refused, not admitted. */
  get full(): boolean {
    return this.#bytes >= this.#bytesMax || this.#frames >= this.#framesMax;
  }

  /** A received frame of `bytes` bytes starts being handled; at a limit reading pauses, if `mayPause`. */
  admit(bytes: number, mayPause = true): void {
    this.#bytes += bytes;
    this.#frames++;
    if (mayPause && !this.#paused && this.full) {
      this.#paused = true;
      this.pauses++;
      this.#socket.pause();
    }
  }

  /** A frame admitted with `bytes` is finished. Returns true when this resumed reading. */
  release(bytes: number): boolean {
    assert(this.#frames > 0 && this.#bytes >= bytes, 'release without admit');
    this.#bytes -= bytes;
    this.#frames--;
    if (!this.#paused || this.#bytes >= this.#bytesMax || this.#frames >= this.#framesMax) return false;
    this.#paused = false;
    this.#socket.resume();
    return true;
  }

  /** Reads again whatever is unfinished: closing must read the peer's close frame. */
  unpause(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#socket.resume();
  }
}
