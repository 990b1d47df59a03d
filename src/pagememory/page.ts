/**
 * The common header every page of a partition file starts with, and the page check.
 *
 * Every page (meta, B+tree leaf and inner, overflow, free list) begins with this 16-byte header;
 * the rest of the page is laid out by the file that owns that page type. The CRC covers the whole
 * page after the CRC field, including the page index, so a page written at the wrong place, torn,
 * or rotted on disk is caught on read. Pages are sealed (CRC set) right before they are written
 * and checked right before they are written and right after they are read.
 *
 * | offset | size | field                                                                  |
 * |--------|------|------------------------------------------------------------------------|
 * | 0      | 4    | CRC-32 of bytes [4, pageSize), u32 LE                                  |
 * | 4      | 1    | page type (`PageType`)                                                 |
 * | 5      | 1    | page layout version (1)                                                |
 * | 6      | 2    | reserved, 0                                                            |
 * | 8      | 4    | page index (its position in the file, in pages), u32 LE                |
 * | 12     | 4    | id of the checkpoint that wrote the page (low 32 bits), for diagnosis  |
 *
 * No LSN: pages are only written by checkpoints, and crash consistency comes from the checkpoint
 * journal (see page-memory.ts), not from per-page log sequence numbers.
 */
import { crc32 } from '../util/crc32.js';
import { assert, ErrorCode, ptnError } from '../errors.js';

/** Size of the common page header. */
export const PAGE_HEADER_BYTES = 16;
/** Layout version of the common header and of every page type in this build. */
export const PAGE_LAYOUT_VERSION = 1;
/** Smallest page size a partition file may use (also how much of a file is read to find its page size). */
export const PAGE_SIZE_MIN = 4096;
/** Largest page size (offsets inside a page must fit the u16 slot fields). */
export const PAGE_SIZE_MAX = 65536;

/** Page types. 0 is never valid, so an all-zero page (a hole) fails the type check. */
export const PageType = {
  META: 1,
  LEAF: 2,
  INNER: 3,
  OVERFLOW: 4,
  FREE_LIST: 5,
} as const;
export type PageType = (typeof PageType)[keyof typeof PageType];

const OFF_CRC = 0;
const OFF_TYPE = 4;
const OFF_VERSION = 5;
const OFF_RESERVED = 6;
const OFF_INDEX = 8;
const OFF_CHECKPOINT = 12;

/** True for a valid page size: a power of two in [PAGE_SIZE_MIN, PAGE_SIZE_MAX]. */
export function isValidPageSize(size: number): boolean {
  return Number.isInteger(size) && size >= PAGE_SIZE_MIN && size <= PAGE_SIZE_MAX && (size & (size - 1)) === 0;
}

function isKnownType(t: number): t is PageType {
  return t >= PageType.META && t <= PageType.FREE_LIST;
}

/** Zero-fills `buf` and writes a header of `type` for page `index` (CRC left for `sealPage`). */
export function initPage(buf: Buffer, type: PageType, index: number): void {
  buf.fill(0);
  buf[OFF_TYPE] = type;
  buf[OFF_VERSION] = PAGE_LAYOUT_VERSION;
  buf.writeUInt32LE(index, OFF_INDEX);
}

/** The page type byte (unchecked). */
export function pageTypeOf(buf: Buffer): number {
  return buf[OFF_TYPE]!;
}

/** The page index in the header (unchecked). */
export function pageIndexOf(buf: Buffer): number {
  return buf.readUInt32LE(OFF_INDEX);
}

/** The checkpoint id stamped in the header by the last write (unchecked). */
export function pageCheckpointOf(buf: Buffer): number {
  return buf.readUInt32LE(OFF_CHECKPOINT);
}

/**
 * Stamps the checkpoint id and sets the CRC. The header must already be a valid header for page
 * `index` (asserted: sealing a page meant for another place is a programmer error).
 */
export function sealPage(buf: Buffer, index: number, checkpointId: number): void {
  assert(isKnownType(buf[OFF_TYPE]!), `sealPage: page ${index} has unknown type ${buf[OFF_TYPE]}`);
  assert(buf[OFF_VERSION] === PAGE_LAYOUT_VERSION, `sealPage: page ${index} has layout version ${buf[OFF_VERSION]}`);
  assert(buf.readUInt32LE(OFF_INDEX) === index, `sealPage: header says page ${buf.readUInt32LE(OFF_INDEX)}, sealing as ${index}`);
  buf.writeUInt32LE(checkpointId >>> 0, OFF_CHECKPOINT);
  buf.writeUInt32LE(crc32(buf.subarray(4)), OFF_CRC);
}

/** Why a page failed its check, or undefined when it is good. */
export function pageProblem(buf: Buffer, index: number, expectedType?: PageType): string | undefined {
  if (buf.length < PAGE_SIZE_MIN) return `page is ${buf.length} bytes`;
  const stored = buf.readUInt32LE(OFF_CRC);
  const actual = crc32(buf.subarray(4));
  if (stored !== actual) return `CRC mismatch (stored ${stored.toString(16)}, computed ${actual.toString(16)})`;
  const type = buf[OFF_TYPE]!;
  if (!isKnownType(type)) return `unknown page type ${type}`;
  if (buf[OFF_VERSION] !== PAGE_LAYOUT_VERSION) return `unknown page layout version ${buf[OFF_VERSION]}`;
  if (buf.readUInt16LE(OFF_RESERVED) !== 0) return 'reserved header bytes are not zero';
  const at = buf.readUInt32LE(OFF_INDEX);
  if (at !== index) return `header names page ${at}`;
  if (expectedType !== undefined && type !== expectedType) return `page type ${type}, expected ${expectedType}`;
  return undefined;
}

/**
 * Checks CRC and header of page `index`. Throws ERR_PAGE_CORRUPT with details {pageIndex, reason, path}.
 * `expectedType`, when given, must match.
 */
export function checkPage(buf: Buffer, index: number, expectedType?: PageType, path?: string): void {
  const problem = pageProblem(buf, index, expectedType);
  if (problem !== undefined) {
    throw ptnError(ErrorCode.ERR_PAGE_CORRUPT, `page ${index}${path ? ` of ${path}` : ''} is corrupt: ${problem}`, {
      details: { pageIndex: index, reason: problem, path },
    });
  }
}
