/**
 * Byte layouts of B+tree leaf and inner pages (slotted pages), and the operations on one page.
 *
 * Node header, after the common 16-byte page header:
 *
 * | offset | size | field                                                            |
 * |--------|------|------------------------------------------------------------------|
 * | 16     | 2    | cell count n, u16                                                |
 * | 18     | 2    | reserved, 0                                                      |
 * | 20     | 4    | heap start: lowest byte used by cells (cells grow down from the end) |
 * | 24     | 4    | leaf: next leaf page (0 = last leaf); inner: child 0 page         |
 * | 28     | 2·n  | slot array: cell offsets, u16, in key order                      |
 * | …      |      | free space, then the cell heap up to the end of the page         |
 *
 * Leaf cell (one entry):
 *
 * | offset | size | field                                                      |
 * |--------|------|------------------------------------------------------------|
 * | 0      | 2    | key length k, u16                                          |
 * | 2      | 1    | flags: bit 0 tombstone, bit 1 value in an overflow chain   |
 * | 3      | 1    | value kind (opaque to storage)                             |
 * | 4      | 8    | update counter, u64 (safe integer)                         |
 * | 12     | 4    | value length v in bytes (whole value), u32                 |
 * | 16     | k    | key, UTF-8                                                 |
 * | 16 + k | v/4  | the value inline, or the first overflow page (u32)         |
 *
 * Inner cell (a separator and the child right of it):
 *
 * | offset | size | field                       |
 * |--------|------|-----------------------------|
 * | 0      | 2    | key length k, u16           |
 * | 2      | 4    | child page, u32             |
 * | 6      | k    | key                         |
 *
 * Inner semantics: child 0 holds keys < key 0; the child of cell i holds keys ≥ key i.
 * Keys compare bytewise. Deleted or shrunk cells leave holes, reclaimed by `compact` when an
 * insert needs the room.
 */
import { initPage, PageType } from './page.js';

export const NODE_HEADER_BYTES = 28;
const OFF_COUNT = 16;
const OFF_HEAP = 20;
const OFF_LINK = 24;
export const SLOT_BYTES = 2;
export const LEAF_CELL_HEADER_BYTES = 16;
export const INNER_CELL_HEADER_BYTES = 6;
export const OVERFLOW_POINTER_BYTES = 4;

export const FLAG_TOMBSTONE = 1;
export const FLAG_OVERFLOW = 2;

/** Shared scratch page for compaction and splits (JS is single-threaded; never held across awaits). */
let scratch = Buffer.allocUnsafe(65536);

// ---------------------------------------------------------------- common

export function nodeInit(buf: Buffer, type: typeof PageType.LEAF | typeof PageType.INNER, index: number, link: number): void {
  initPage(buf, type, index);
  buf.writeUInt32LE(buf.length, OFF_HEAP);
  buf.writeUInt32LE(link, OFF_LINK);
}

export function nodeCount(buf: Buffer): number {
  return buf[OFF_COUNT]! | (buf[OFF_COUNT + 1]! << 8);
}

function setCount(buf: Buffer, n: number): void {
  buf[OFF_COUNT] = n & 0xff;
  buf[OFF_COUNT + 1] = n >>> 8;
}

export function nodeLink(buf: Buffer): number {
  return buf.readUInt32LE(OFF_LINK);
}

export function setNodeLink(buf: Buffer, link: number): void {
  buf.writeUInt32LE(link, OFF_LINK);
}

function heapStart(buf: Buffer): number {
  return buf.readUInt32LE(OFF_HEAP);
}

export function slotOffset(buf: Buffer, i: number): number {
  const o = NODE_HEADER_BYTES + 2 * i;
  return buf[o]! | (buf[o + 1]! << 8);
}

function setSlot(buf: Buffer, i: number, off: number): void {
  const o = NODE_HEADER_BYTES + 2 * i;
  buf[o] = off & 0xff;
  buf[o + 1] = off >>> 8;
}

/** Bytes between the slot array and the heap. */
export function nodeFreeBytes(buf: Buffer): number {
  return heapStart(buf) - NODE_HEADER_BYTES - 2 * nodeCount(buf);
}

/** Bytes of a node's content area (what cells plus slots may use). */
export function nodeCapacity(pageSize: number): number {
  return pageSize - NODE_HEADER_BYTES;
}

function keyLenAt(buf: Buffer, off: number): number {
  return buf[off]! | (buf[off + 1]! << 8);
}

/** Size of the cell at `off` (leaf or inner per `leaf`). */
export function cellSize(buf: Buffer, off: number, leaf: boolean): number {
  const k = keyLenAt(buf, off);
  if (!leaf) return INNER_CELL_HEADER_BYTES + k;
  const overflow = (buf[off + 2]! & FLAG_OVERFLOW) !== 0;
  return LEAF_CELL_HEADER_BYTES + k + (overflow ? OVERFLOW_POINTER_BYTES : buf.readUInt32LE(off + 12));
}

/** Bytes used by live cells and their slots. */
export function nodeUsedBytes(buf: Buffer, leaf: boolean): number {
  const n = nodeCount(buf);
  let used = 2 * n;
  for (let i = 0; i < n; i++) used += cellSize(buf, slotOffset(buf, i), leaf);
  return used;
}

function keyStart(off: number, leaf: boolean): number {
  return off + (leaf ? LEAF_CELL_HEADER_BYTES : INNER_CELL_HEADER_BYTES);
}

/**
 * Compares the key of cell `i` with `key`, bytewise: <0, 0, >0. A plain loop: keys are short, and
 * it beats a native `Buffer.compare` call with its argument checks several times over.
 */
export function compareCellKey(buf: Buffer, i: number, key: Buffer, leaf: boolean): number {
  const off = slotOffset(buf, i);
  const ks = keyStart(off, leaf);
  const klen = keyLenAt(buf, off);
  const n = klen < key.length ? klen : key.length;
  for (let j = 0; j < n; j++) {
    const d = buf[ks + j]! - key[j]!;
    if (d !== 0) return d;
  }
  return klen - key.length;
}

/** The key bytes of cell `i` (a view into the page). */
export function cellKey(buf: Buffer, i: number, leaf: boolean): Buffer {
  const off = slotOffset(buf, i);
  const ks = keyStart(off, leaf);
  return buf.subarray(ks, ks + keyLenAt(buf, off));
}

/**
 * Binary search: index of the cell whose key equals `key` (≥ 0), or -(insertion point) - 1.
 */
export function nodeSearch(buf: Buffer, key: Buffer, leaf: boolean): number {
  let lo = 0;
  let hi = nodeCount(buf) - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const c = compareCellKey(buf, mid, key, leaf);
    if (c < 0) lo = mid + 1;
    else if (c > 0) hi = mid - 1;
    else return mid;
  }
  return -lo - 1;
}

/** Rewrites the heap without holes (slot order kept). */
export function nodeCompact(buf: Buffer, leaf: boolean): void {
  if (scratch.length < buf.length) scratch = Buffer.allocUnsafe(buf.length);
  buf.copy(scratch, 0, 0, buf.length);
  const n = nodeCount(buf);
  let top = buf.length;
  for (let i = 0; i < n; i++) {
    const off = slotOffset(scratch, i);
    const size = cellSize(scratch, off, leaf);
    top -= size;
    scratch.copy(buf, top, off, off + size);
    setSlot(buf, i, top);
  }
  buf.writeUInt32LE(top, OFF_HEAP);
}

/**
 * Reserves `size` heap bytes and a slot at position `pos` (shifting later slots); returns the
 * cell offset. The caller checked the room (`nodeFreeBytes ≥ size + 2`).
 */
function reserveCell(buf: Buffer, pos: number, size: number): number {
  const n = nodeCount(buf);
  const top = heapStart(buf) - size;
  const slotAt = NODE_HEADER_BYTES + 2 * pos;
  if (pos < n) buf.copyWithin(slotAt + 2, slotAt, NODE_HEADER_BYTES + 2 * n);
  buf.writeUInt32LE(top, OFF_HEAP);
  setCount(buf, n + 1);
  setSlot(buf, pos, top);
  return top;
}

/** Removes the slot of cell `pos` (its bytes become a hole). */
export function nodeRemove(buf: Buffer, pos: number): void {
  const n = nodeCount(buf);
  const slotAt = NODE_HEADER_BYTES + 2 * pos;
  buf.copyWithin(slotAt, slotAt + 2, NODE_HEADER_BYTES + 2 * n);
  setCount(buf, n - 1);
  if (n === 1) buf.writeUInt32LE(buf.length, OFF_HEAP);
}

/** Inserts a pre-encoded cell (`cell[0..size)`) at `pos`, compacting first if needed; false when it does not fit. */
export function nodeInsertCell(buf: Buffer, pos: number, cell: Buffer, size: number, leaf: boolean): boolean {
  if (nodeFreeBytes(buf) < size + SLOT_BYTES) {
    if (nodeUsedBytes(buf, leaf) + size + SLOT_BYTES > nodeCapacity(buf.length)) return false;
    nodeCompact(buf, leaf);
  }
  const off = reserveCell(buf, pos, size);
  cell.copy(buf, off, 0, size);
  return true;
}

/** Overwrites cell `pos` in place with a cell no larger than the old one. */
export function nodeReplaceCellInPlace(buf: Buffer, pos: number, cell: Buffer, size: number): void {
  cell.copy(buf, slotOffset(buf, pos), 0, size);
}

// ---------------------------------------------------------------- leaf cells

/** What a leaf cell says (value not copied). */
export interface LeafCell {
  offset: number;
  keyLength: number;
  flags: number;
  valueKind: number;
  counter: number;
  valueLength: number;
  /** First overflow page, or 0 for an inline value. */
  overflowPage: number;
  /** Offset of the inline value. */
  valueOffset: number;
  size: number;
}

export function readLeafCell(buf: Buffer, i: number): LeafCell {
  const off = slotOffset(buf, i);
  const k = keyLenAt(buf, off);
  const flags = buf[off + 2]!;
  const valueLength = buf.readUInt32LE(off + 12);
  const overflow = (flags & FLAG_OVERFLOW) !== 0;
  return {
    offset: off,
    keyLength: k,
    flags,
    valueKind: buf[off + 3]!,
    counter: buf.readUInt32LE(off + 4) + buf.readUInt32LE(off + 8) * 0x1_0000_0000,
    valueLength,
    overflowPage: overflow ? buf.readUInt32LE(off + LEAF_CELL_HEADER_BYTES + k) : 0,
    valueOffset: off + LEAF_CELL_HEADER_BYTES + k,
    size: LEAF_CELL_HEADER_BYTES + k + (overflow ? OVERFLOW_POINTER_BYTES : valueLength),
  };
}

/** The counter of leaf cell `i` (hot path: no object). */
export function leafCellCounter(buf: Buffer, i: number): number {
  const off = slotOffset(buf, i);
  return buf.readUInt32LE(off + 4) + buf.readUInt32LE(off + 8) * 0x1_0000_0000;
}

/**
 * Encodes a leaf cell into `out` (which must hold it); returns its size. `value` is the inline
 * value, or undefined with `overflowPage` set.
 */
export function encodeLeafCell(
  out: Buffer,
  key: Buffer,
  flags: number,
  valueKind: number,
  counter: number,
  valueLength: number,
  value: Buffer | undefined,
  overflowPage: number,
): number {
  const k = key.length;
  out[0] = k & 0xff;
  out[1] = k >>> 8;
  out[2] = flags;
  out[3] = valueKind;
  out.writeUInt32LE(counter % 0x1_0000_0000, 4);
  out.writeUInt32LE(Math.floor(counter / 0x1_0000_0000), 8);
  out.writeUInt32LE(valueLength, 12);
  key.copy(out, LEAF_CELL_HEADER_BYTES);
  if ((flags & FLAG_OVERFLOW) !== 0) {
    out.writeUInt32LE(overflowPage, LEAF_CELL_HEADER_BYTES + k);
    return LEAF_CELL_HEADER_BYTES + k + OVERFLOW_POINTER_BYTES;
  }
  if (value !== undefined && value.length > 0) value.copy(out, LEAF_CELL_HEADER_BYTES + k);
  return LEAF_CELL_HEADER_BYTES + k + valueLength;
}

// ---------------------------------------------------------------- inner cells

/** Child page of inner cell `i`. */
export function innerCellChild(buf: Buffer, i: number): number {
  return buf.readUInt32LE(slotOffset(buf, i) + 2);
}

/** Child page to follow for `key`, and its position (0 = child 0, i + 1 = child of cell i). */
export function innerChildFor(buf: Buffer, key: Buffer): { pos: number; child: number } {
  const r = nodeSearch(buf, key, false);
  const pos = r >= 0 ? r + 1 : -r - 1;
  return { pos, child: pos === 0 ? nodeLink(buf) : innerCellChild(buf, pos - 1) };
}

/** Encodes an inner cell into `out`; returns its size. */
export function encodeInnerCell(out: Buffer, key: Buffer, child: number): number {
  out[0] = key.length & 0xff;
  out[1] = key.length >>> 8;
  out.writeUInt32LE(child, 2);
  key.copy(out, INNER_CELL_HEADER_BYTES);
  return INNER_CELL_HEADER_BYTES + key.length;
}

// ---------------------------------------------------------------- splits

/**
 * Splits a full node while inserting `cell` at `pos`. `left` (the page being split) keeps the
 * first part; `right` (a freshly initialised empty node of the same type) gets the rest.
 * Returns the separator key to insert into the parent for `right` (a copy).
 *
 * Leaves: `atEdge` (an append at the right edge of the tree) keeps every old cell left and puts
 * only the new one right, so sequential loads fill pages; otherwise the cut balances bytes. The
 * separator is the right leaf's first key.
 *
 * Inner nodes: the cell at the cut moves up (its key is the separator); its child becomes the
 * right node's child 0. `atEdge` keeps all old cells but the last one left.
 */
export function nodeSplit(left: Buffer, right: Buffer, pos: number, cell: Buffer, cellBytes: number, leaf: boolean, atEdge: boolean): Buffer {
  if (scratch.length < left.length) scratch = Buffer.allocUnsafe(left.length);
  left.copy(scratch, 0, 0, left.length);
  const total = nodeCount(scratch) + 1;
  const srcOf = (j: number): Buffer => (j === pos ? cell : scratch);
  const offOf = (j: number): number => (j === pos ? 0 : slotOffset(scratch, j < pos ? j : j - 1));
  const sizeOf = (j: number): number => (j === pos ? cellBytes : cellSize(scratch, offOf(j), leaf));
  let cut: number;
  if (atEdge) cut = leaf ? total - 1 : total - 2;
  else {
    let all = 0;
    for (let j = 0; j < total; j++) all += sizeOf(j) + SLOT_BYTES;
    let acc = 0;
    cut = 0;
    while (cut < total - 1 && acc + (sizeOf(cut) + SLOT_BYTES) / 2 < all / 2) acc += sizeOf(cut++) + SLOT_BYTES;
    cut = Math.max(cut, 1);
    if (!leaf) cut = Math.min(cut, total - 2);
  }
  // Rebuild left from the scratch copy (its link — next leaf or child 0 — stays).
  left.fill(0, NODE_HEADER_BYTES);
  setCount(left, 0);
  left.writeUInt32LE(left.length, OFF_HEAP);
  for (let j = 0; j < cut; j++) appendRaw(left, srcOf(j), offOf(j), sizeOf(j));
  let from = cut;
  let up: Buffer;
  if (leaf) {
    up = Buffer.from(srcOf(cut).subarray(offOf(cut) + LEAF_CELL_HEADER_BYTES, offOf(cut) + LEAF_CELL_HEADER_BYTES + keyLenAt(srcOf(cut), offOf(cut))));
  } else {
    const b = srcOf(cut);
    const off = offOf(cut);
    up = Buffer.from(b.subarray(off + INNER_CELL_HEADER_BYTES, off + INNER_CELL_HEADER_BYTES + keyLenAt(b, off)));
    setNodeLink(right, b.readUInt32LE(off + 2));
    from = cut + 1;
  }
  for (let j = from; j < total; j++) appendRaw(right, srcOf(j), offOf(j), sizeOf(j));
  return up;
}

/** Appends every cell of `src` after the cells of `dst` (compacting `dst` first); the caller checked the room. */
export function nodeAppendAll(dst: Buffer, src: Buffer, leaf: boolean): void {
  nodeCompact(dst, leaf);
  const n = nodeCount(src);
  for (let i = 0; i < n; i++) {
    const off = slotOffset(src, i);
    appendRaw(dst, src, off, cellSize(src, off, leaf));
  }
}

/** Appends one encoded cell as the last slot (compacting first when needed); the caller checked the room. */
export function nodeAppendCell(dst: Buffer, cell: Buffer, size: number, leaf: boolean): void {
  if (nodeFreeBytes(dst) < size + SLOT_BYTES) nodeCompact(dst, leaf);
  appendRaw(dst, cell, 0, size);
}

/** Appends a cell (bytes at `src[off..off+size)`) as the last slot; room guaranteed by the split rule. */
function appendRaw(buf: Buffer, src: Buffer, off: number, size: number): void {
  const n = nodeCount(buf);
  const at = reserveCell(buf, n, size);
  src.copy(buf, at, off, off + size);
}
