/**
 * Receive-side flow control of one connection.
 *
 * Counts received frames whose handling (handler run and, for requests, the response queued)
 * is not finished. At `bytesMax` bytes or `framesMax` frames it pauses reading from the socket,
 * so a peer that outruns our handlers (a slow disk under a file stream) is slowed down by TCP
 * instead of filling our memory; below both limits again, reading resumes.
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

  /** A received frame of `bytes` bytes starts being handled. */
  admit(bytes: number): void {
    this.#bytes += bytes;
    this.#frames++;
    if (!this.#paused && (this.#bytes >= this.#bytesMax || this.#frames >= this.#framesMax)) {
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
