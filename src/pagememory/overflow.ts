/**
 * Overflow pages: values too large to sit inline in a leaf are stored in a chain of OVERFLOW
 * pages; the leaf cell keeps the value length and the first page of the chain.
 *
 * | offset | size | field                                            |
 * |--------|------|--------------------------------------------------|
 * | 0      | 16   | common page header (page.ts), type OVERFLOW      |
 * | 16     | 4    | next page of the chain (0 = last), u32           |
 * | 20     | 4    | value bytes held in this page d, u32             |
 * | 24     | d    | the next d bytes of the value                    |
 *
 * Every page but the last is full, so the chain length is ceil(v / capacity) and a reader can
 * check each page's byte count.
 */
import { assert, ErrorCode, ptnError } from '../errors.js';
import { initPage, PageType } from './page.js';

const OFF_NEXT = 16;
const OFF_BYTES = 20;
export const OVERFLOW_HEADER_BYTES = 24;

/** Value bytes one overflow page holds. */
export function overflowCapacity(pageSize: number): number {
  return pageSize - OVERFLOW_HEADER_BYTES;
}

/** Pages a chain for `valueLength` bytes needs. */
export function overflowPagesFor(valueLength: number, pageSize: number): number {
  return Math.ceil(valueLength / overflowCapacity(pageSize));
}

/** Fills `buf` as overflow page `index` holding `value[from, from + n)` (unsealed). */
export function encodeOverflowPage(buf: Buffer, index: number, next: number, value: Buffer, from: number): number {
  const n = Math.min(overflowCapacity(buf.length), value.length - from);
  assert(n > 0, 'empty overflow page');
  initPage(buf, PageType.OVERFLOW, index);
  buf.writeUInt32LE(next, OFF_NEXT);
  buf.writeUInt32LE(n, OFF_BYTES);
  value.copy(buf, OVERFLOW_HEADER_BYTES, from, from + n);
  return n;
}

/** Next page of the chain after overflow page `buf`. */
export function overflowNext(buf: Buffer): number {
  return buf.readUInt32LE(OFF_NEXT);
}

/**
 * Copies overflow page `buf`'s bytes into `out` at `at`, checking that the page holds exactly what
 * the chain position implies (full pages but the last). ERR_PAGE_CORRUPT otherwise.
 */
export function readOverflowInto(buf: Buffer, index: number, out: Buffer, at: number): number {
  const n = buf.readUInt32LE(OFF_BYTES);
  const expected = Math.min(overflowCapacity(buf.length), out.length - at);
  if (n !== expected) {
    throw ptnError(ErrorCode.ERR_PAGE_CORRUPT, `overflow page ${index} holds ${n} bytes, expected ${expected}`, {
      details: { pageIndex: index, reason: 'overflow byte count' },
    });
  }
  buf.copy(out, at, OVERFLOW_HEADER_BYTES, OVERFLOW_HEADER_BYTES + n);
  return n;
}
