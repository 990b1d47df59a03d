/**
 * The update counter of one copy of one partition (DESIGN.md "Data model").
 *
 * The primary assigns counters 1, 2, 3 … to the updates of a partition; a copy may apply them out of
 * order (replication, temp-WAL replay, historical catch-up). The copy tracks what it has applied as
 *
 *   - `lwm` (low-water mark): every counter ≤ lwm has been applied;
 *   - a sorted list of applied ranges above lwm, disjoint and non-adjacent, each starting at
 *     lwm + 2 or later (a range starting at lwm + 1 is folded into lwm at once). The holes between
 *     them are the counters still missing.
 *
 * The list is bounded by `gapsMax` because it is persisted in the partition's meta page: an add that
 * would need one range more throws ERR_COUNTER_GAPS_OVERFLOW and leaves the state untouched, so the
 * caller can refuse the update before writing anything.
 *
 * Cost: `has`/`add` find their place by binary search, O(log ranges). Inserting or removing a range
 * is an array splice, a memmove over at most `gapsMax` slots (≤ 200 by the config schema), which is
 * cheaper in practice than a balanced tree at that size.
 *
 * Encoded form (persisted inside the meta page, which carries the CRC; little-endian):
 *
 * | offset     | size | field                                              |
 * |------------|------|----------------------------------------------------|
 * | 0          | 1    | version (1)                                        |
 * | 1          | 8    | lwm, u64                                           |
 * | 9          | 8    | hwm, u64 (= last range's end, or lwm when none)    |
 * | 17         | 2    | range count n, u16 (≤ gapsMax)                     |
 * | 19 + 16·i  | 8    | range i first counter, u64                         |
 * | 27 + 16·i  | 8    | range i last counter, u64 (inclusive)              |
 *
 * Total 19 + 16·n bytes; `decode` wants exactly that many. All u64 values must be safe integers.
 * Decode validates everything (version, length, count, each range > lwm + 1, sorted, disjoint,
 * non-adjacent, from ≤ to, hwm consistent) and throws ERR_META_CORRUPT otherwise.
 */
import { assert, ErrorCode, ptnError } from '../errors.js';

/** Format version of the encoded counter state. */
export const UPDATE_COUNTER_VERSION = 1;
/** Bytes before the ranges: version, lwm, hwm, count. */
export const UPDATE_COUNTER_HEADER_BYTES = 19;
/** Bytes per encoded range (two u64). */
export const UPDATE_COUNTER_RANGE_BYTES = 16;
/** The encoded range count is a u16. */
const RANGE_COUNT_MAX = 0xffff;

function assertCounter(c: number, what: string): void {
  assert(Number.isSafeInteger(c) && c >= 1, `${what} must be a safe integer >= 1, got ${c}`);
}

/** Low-water mark plus bounded out-of-order ranges of applied update counters. */
export class UpdateCounter {
  readonly #gapsMax: number;
  #lwm = 0;
  /** First counter of each applied range above lwm; sorted ascending. */
  #froms: number[] = [];
  /** Last counter (inclusive) of each range, parallel to #froms. */
  #tos: number[] = [];

  /** @param gapsMax most ranges above lwm this copy may track (storage.counterGapsMax). */
  constructor(gapsMax: number) {
    assert(Number.isInteger(gapsMax) && gapsMax >= 1 && gapsMax <= RANGE_COUNT_MAX, `gapsMax out of range: ${gapsMax}`);
    this.#gapsMax = gapsMax;
  }

  /** Every counter ≤ lwm has been applied (0 when none). */
  get lwm(): number {
    return this.#lwm;
  }

  /** Highest counter applied (0 if none); ≥ lwm. */
  get hwm(): number {
    const n = this.#tos.length;
    return n === 0 ? this.#lwm : this.#tos[n - 1]!;
  }

  /** Most ranges this counter may track. */
  get gapsMax(): number {
    return this.#gapsMax;
  }

  /** Index of the first range whose first counter is > c (binary search). */
  #upperBound(c: number): number {
    let lo = 0;
    let hi = this.#froms.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#froms[mid]! > c) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** True when `counter` has been applied. */
  has(counter: number): boolean {
    assertCounter(counter, 'counter');
    if (counter <= this.#lwm) return true;
    const i = this.#upperBound(counter) - 1;
    return i >= 0 && counter <= this.#tos[i]!;
  }

  /**
   * Marks `counter` applied. Returns false (no change) when it already was.
   * Throws ERR_COUNTER_GAPS_OVERFLOW, state unchanged, when it would need more than gapsMax ranges.
   */
  add(counter: number): boolean {
    assertCounter(counter, 'counter');
    if (counter <= this.#lwm) return false;
    const i = this.#upperBound(counter); // ranges [0, i) start at or below counter
    if (i > 0 && counter <= this.#tos[i - 1]!) return false;
    const joinsLeft = i > 0 ? this.#tos[i - 1]! === counter - 1 : counter === this.#lwm + 1;
    const joinsRight = i < this.#froms.length && this.#froms[i]! === counter + 1;
    if (i === 0 && joinsLeft) {
      // counter = lwm + 1: lwm advances, swallowing the first range when it touches.
      this.#lwm = counter;
      if (joinsRight) this.#absorbFirstRange();
    } else if (joinsLeft && joinsRight) {
      this.#tos[i - 1] = this.#tos[i]!;
      this.#froms.splice(i, 1);
      this.#tos.splice(i, 1);
    } else if (joinsLeft) {
      this.#tos[i - 1] = counter;
    } else if (joinsRight) {
      this.#froms[i] = counter;
    } else {
      this.#checkRoomFor(this.#froms.length + 1, counter, counter);
      this.#froms.splice(i, 0, counter);
      this.#tos.splice(i, 0, counter);
    }
    return true;
  }

  /**
   * Marks every counter in [from, to] applied (after a file swap-in or a bulk catch-up).
   * Parts already applied are fine. Throws ERR_COUNTER_GAPS_OVERFLOW, state unchanged, on overflow.
   */
  addRange(from: number, to: number): void {
    assertCounter(from, 'from');
    assertCounter(to, 'to');
    assert(from <= to, `addRange: from ${from} > to ${to}`);
    if (to <= this.#lwm) return;
    let lo = Math.max(from, this.#lwm + 1);
    let hi = to;
    // Ranges that overlap or touch [lo, hi]: indexes [first, last).
    const last = this.#upperBound(hi + 1);
    let first = last;
    while (first > 0 && this.#tos[first - 1]! >= lo - 1) first--;
    if (first < last) {
      lo = Math.min(lo, this.#froms[first]!);
      hi = Math.max(hi, this.#tos[last - 1]!);
    }
    if (lo === this.#lwm + 1) {
      // The merged range reaches lwm: it becomes part of lwm (first is 0 here).
      this.#froms.splice(first, last - first);
      this.#tos.splice(first, last - first);
      this.#lwm = hi;
      return;
    }
    this.#checkRoomFor(this.#froms.length - (last - first) + 1, lo, hi);
    this.#froms.splice(first, last - first, lo);
    this.#tos.splice(first, last - first, hi);
  }

  #absorbFirstRange(): void {
    this.#lwm = this.#tos[0]!;
    this.#froms.shift();
    this.#tos.shift();
  }

  #checkRoomFor(rangeCount: number, from: number, to: number): void {
    if (rangeCount > this.#gapsMax) {
      throw ptnError(
        ErrorCode.ERR_COUNTER_GAPS_OVERFLOW,
        `counter ${from === to ? from : `${from}..${to}`} would need ${rangeCount} out-of-order ranges, limit ${this.#gapsMax}`,
        { details: { lwm: this.#lwm, hwm: this.hwm, gapsMax: this.#gapsMax, from, to } },
      );
    }
  }

  /** Applied ranges above lwm, inclusive, sorted (a copy). */
  gaps(): Array<[number, number]> {
    return this.#froms.map((f, i) => [f, this.#tos[i]!] as [number, number]);
  }

  /** Counters in (lwm, upTo] not applied yet, as inclusive sorted ranges. */
  missing(upTo: number): Array<[number, number]> {
    assert(Number.isSafeInteger(upTo) && upTo >= 0, `missing: upTo must be a safe integer >= 0, got ${upTo}`);
    const out: Array<[number, number]> = [];
    let next = this.#lwm + 1; // first counter not known to be applied
    for (let i = 0; i < this.#froms.length && next <= upTo; i++) {
      const f = this.#froms[i]!;
      if (f > next) out.push([next, Math.min(f - 1, upTo)]);
      next = this.#tos[i]! + 1;
    }
    if (next <= upTo) out.push([next, upTo]);
    return out;
  }

  /** Exact encoded size of the current state. */
  encodedBytes(): number {
    return UPDATE_COUNTER_HEADER_BYTES + UPDATE_COUNTER_RANGE_BYTES * this.#froms.length;
  }

  /** Largest encoding a counter with this gapsMax can produce (for sizing the meta-page slot). */
  static encodedBytesMax(gapsMax: number): number {
    assert(Number.isInteger(gapsMax) && gapsMax >= 1 && gapsMax <= RANGE_COUNT_MAX, `gapsMax out of range: ${gapsMax}`);
    return UPDATE_COUNTER_HEADER_BYTES + UPDATE_COUNTER_RANGE_BYTES * gapsMax;
  }

  /** Encodes the state (layout in the file comment). Allocates once. */
  encode(): Buffer {
    const n = this.#froms.length;
    assert(n <= this.#gapsMax, 'range count above gapsMax');
    const buf = Buffer.allocUnsafe(this.encodedBytes());
    buf.writeUInt8(UPDATE_COUNTER_VERSION, 0);
    writeU64(buf, 1, this.#lwm);
    writeU64(buf, 9, this.hwm);
    buf.writeUInt16LE(n, 17);
    let off = UPDATE_COUNTER_HEADER_BYTES;
    for (let i = 0; i < n; i++) {
      writeU64(buf, off, this.#froms[i]!);
      writeU64(buf, off + 8, this.#tos[i]!);
      off += UPDATE_COUNTER_RANGE_BYTES;
    }
    return buf;
  }

  /** Decodes and validates an encoded state. Throws ERR_META_CORRUPT on anything inconsistent. */
  static decode(buf: Buffer, gapsMax: number): UpdateCounter {
    const out = new UpdateCounter(gapsMax);
    if (buf.length < UPDATE_COUNTER_HEADER_BYTES) corrupt(`${buf.length} bytes, header needs ${UPDATE_COUNTER_HEADER_BYTES}`);
    const version = buf.readUInt8(0);
    if (version !== UPDATE_COUNTER_VERSION) corrupt(`unknown version ${version}`);
    const lwm = readU64(buf, 1, 'lwm');
    const hwm = readU64(buf, 9, 'hwm');
    const n = buf.readUInt16LE(17);
    if (n > gapsMax) corrupt(`${n} ranges, gapsMax ${gapsMax}`);
    const expected = UPDATE_COUNTER_HEADER_BYTES + UPDATE_COUNTER_RANGE_BYTES * n;
    if (buf.length !== expected) corrupt(`${buf.length} bytes for ${n} ranges, expected ${expected}`);
    let prevTo = lwm; // the next range must start at prevTo + 2 or later
    let off = UPDATE_COUNTER_HEADER_BYTES;
    for (let i = 0; i < n; i++) {
      const from = readU64(buf, off, 'range start');
      const to = readU64(buf, off + 8, 'range end');
      if (from > to) corrupt(`range ${i} reversed: ${from} > ${to}`);
      if (from <= prevTo + 1) {
        corrupt(`range ${i} [${from}, ${to}] not above ${i === 0 ? `lwm ${lwm} + 1` : `the previous range end ${prevTo} + 1`}`);
      }
      out.#froms.push(from);
      out.#tos.push(to);
      prevTo = to;
      off += UPDATE_COUNTER_RANGE_BYTES;
    }
    if (hwm !== prevTo) corrupt(`hwm ${hwm} inconsistent with lwm ${lwm} and ranges (expected ${prevTo})`);
    out.#lwm = lwm;
    return out;
  }

  /** An independent copy. */
  clone(): UpdateCounter {
    const c = new UpdateCounter(this.#gapsMax);
    c.#lwm = this.#lwm;
    c.#froms = this.#froms.slice();
    c.#tos = this.#tos.slice();
    return c;
  }

  /** For status output and logs. */
  toJSON(): { lwm: number; hwm: number; gaps: Array<[number, number]> } {
    return { lwm: this.#lwm, hwm: this.hwm, gaps: this.gaps() };
  }
}

function corrupt(why: string): never {
  throw ptnError(ErrorCode.ERR_META_CORRUPT, `update counter state corrupt: ${why}`);
}

function writeU64(buf: Buffer, off: number, v: number): void {
  assert(Number.isSafeInteger(v) && v >= 0, `u64 field must be a safe integer, got ${v}`);
  buf.writeUInt32LE(v % 0x1_0000_0000, off);
  buf.writeUInt32LE(Math.floor(v / 0x1_0000_0000), off + 4);
}

/** Reads a u64 that must fit a safe integer (high word ≤ 0x1fffff). */
function readU64(buf: Buffer, off: number, what: string): number {
  const low = buf.readUInt32LE(off);
  const high = buf.readUInt32LE(off + 4);
  if (high > 0x1f_ffff) corrupt(`${what} at byte ${off} above 2^53 - 1`);
  return high * 0x1_0000_0000 + low;
}
