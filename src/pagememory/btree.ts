/**
 * The primary index of one partition: a B+tree in the partition file's own pages.
 *
 * Keys are the UTF-8 bytes of the entry key, compared bytewise; they are unique. Leaves hold the
 * entries (key, counter, flags, value kind, the value inline or the head of an overflow chain)
 * and are linked left to right for scans; inner nodes hold separators (full keys).
 *
 * Placement rule: a value is inline when its whole cell (+ slot) fits in a third of a leaf's
 * content area, so every leaf holds at least three entries and a split always succeeds; with 4 KiB
 * pages and keys up to ~300 bytes a 1 KiB value is inline. Larger values go to overflow chains.
 *
 * Operations run in two phases so that a tree change is never half done: an async phase that
 * finds and pins every page the change will touch (the path, the old overflow chain), then a
 * synchronous phase that modifies pages (copy-on-write through `writable`) and allocates new ones.
 * An I/O error can only happen in the first phase, before anything changed.
 *
 * Splits are the textbook ones, except at the right edge: appending after the last key of the
 * rightmost leaf moves only the new entry to the new leaf (and the inner split at that edge keeps
 * the left node full), so sequential loads fill pages. Updating a key with a value whose cell is
 * no larger rewrites the cell in place; an overflow value reuses its chain's pages.
 *
 * Shifts before splits: a change that overflows a leaf first tries to move one boundary cell to a
 * sibling under the same parent that has room (the separator between them follows), and splits
 * only when neither has (B*-tree style). Keys that arrive in ascending order into the middle of
 * the tree (keys `k1`, `k2`, … compare bytewise: `k10000` … `k10009` land after `k1000`) left
 * every split's left half at two thirds of a 1 KiB-value leaf, never to be filled: files were
 * half empty. With the shift, such loads fill leaves and random ones reach about 90% in simulation.
 *
 * Merges: a leaf that a change leaves below MERGE_BELOW_FILL of its content area merges with a
 * sibling under the same parent when both fit in MERGE_MAX_FILL (the sibling is loaded in the async
 * phase when the predicted fill is low), and the separator leaves the parent; an inner node that
 * underflows merges the same way with a sibling that is cached (pulling the separator down), and a
 * root left without keys hands the root to its only child. Without merges, churn (values changing
 * size, keys deleted and purged) would leave ever more half-empty and empty leaves behind.
 *
 * Not thread-safe by itself: the owner (PartitionStore) serialises operations and pins pages.
 */
import { ErrorCode, ptnError } from '../errors.js';
import type { CacheEntry } from './page-cache.js';
import { PageType, pageTypeOf } from './page.js';
import {
  cellKey,
  cellSize,
  encodeInnerCell,
  encodeLeafCell,
  FLAG_OVERFLOW,
  FLAG_TOMBSTONE,
  innerCellChild,
  innerChildFor,
  LEAF_CELL_HEADER_BYTES,
  nodeAppendAll,
  nodeAppendCell,
  nodeCapacity,
  nodeCompact,
  nodeCount,
  nodeFreeBytes,
  nodeInit,
  nodeInsertCell,
  nodeLink,
  nodeRemove,
  nodeReplaceCellInPlace,
  nodeSearch,
  nodeSplit,
  NODE_HEADER_BYTES,
  nodeUsedBytes,
  OVERFLOW_POINTER_BYTES,
  readLeafCell,
  setNodeLink,
  SLOT_BYTES,
  slotOffset,
  type LeafCell,
} from './btree-node.js';
import { encodeOverflowPage, overflowNext, overflowPagesFor, readOverflowInto } from './overflow.js';

/** What the tree needs from its owner: pinned page access and allocation. */
export interface TreePages {
  readonly pageSize: number;
  /** The cached page, pinned for the current operation, or undefined. */
  peek(index: number): CacheEntry | undefined;
  /** Reads a page into the cache, pinned for the current operation. */
  load(index: number): Promise<CacheEntry>;
  /** Like peek/load but without keeping a pin (for bytes copied out at once). */
  readTransient(index: number): Buffer | Promise<Buffer>;
  /** The buffer to modify (copy-on-write, marks dirty). The entry must be pinned. */
  writable(e: CacheEntry): Buffer;
  /** A new page (uninitialised: lay it out before anything else), pinned and dirty. */
  allocate(): CacheEntry;
  /** Gives a page up (dropped from the cache). */
  free(index: number): void;
}

/** One entry as stored (tombstones included). */
export interface StoredEntry {
  key: string;
  counter: number;
  tombstone: boolean;
  valueKind: number;
  value: Buffer;
}

/** Where a key is or would be: the inner path, the leaf, and the slot. */
export interface Locator {
  path: Array<{ entry: CacheEntry; pos: number }>;
  leaf: CacheEntry | undefined;
  pos: number;
  found: boolean;
}

/** The value part of a write. */
export interface LeafWrite {
  tombstone: boolean;
  valueKind: number;
  counter: number;
  value: Buffer | undefined;
}

/** A node below this share of its content area tries to merge with a sibling… */
export const MERGE_BELOW_FILL = 0.5;
/** …when both together need at most this share (slack, so the next insert does not split it again). */
export const MERGE_MAX_FILL = 0.85;

/** A loaded sibling leaf a change may merge with. */
export interface Sibling {
  entry: CacheEntry;
  /** True when it is the right neighbour. */
  right: boolean;
}

const EMPTY = Buffer.alloc(0);
/** Scratch for one encoded cell (largest page size). */
const cellBuf = Buffer.allocUnsafe(65536);
const innerCellBuf = Buffer.allocUnsafe(65536);
/** Scratch for a leaf cell moving to a sibling. */
const moveBuf = Buffer.allocUnsafe(65536);
/** Slot + inner cell header: an inner cell's bytes besides its key. */
const INNER_SEP_OVERHEAD = SLOT_BYTES + 6;

/** Largest inline leaf cell (header + key + value, without its slot) for a page size. */
export function inlineCellMax(pageSize: number): number {
  return Math.floor(nodeCapacity(pageSize) / 3) - SLOT_BYTES;
}

/** Smallest inner fanout (children per node) guaranteed for keys up to `keyBytesMax`. */
export function innerFanoutMin(pageSize: number, keyBytesMax: number): number {
  return Math.floor(nodeCapacity(pageSize) / (SLOT_BYTES + 6 + keyBytesMax)) + 1;
}

function corrupt(index: number, why: string): never {
  throw ptnError(ErrorCode.ERR_PAGE_CORRUPT, `page ${index}: ${why}`, { details: { pageIndex: index, reason: why } });
}

/** Checks a tree page's type and slot/heap bounds (after it was read or before it is used). */
function checkNode(buf: Buffer, index: number, type: number): void {
  if (pageTypeOf(buf) !== type) corrupt(index, `page type ${pageTypeOf(buf)}, expected ${type}`);
  if (type === PageType.OVERFLOW) return;
  const heap = buf.readUInt32LE(20);
  if (NODE_HEADER_BYTES + 2 * nodeCount(buf) > heap || heap > buf.length) corrupt(index, 'slot array overlaps the cell heap');
}

/** Child page at position `pos` of an inner node (0 = child 0). */
function childAt(buf: Buffer, pos: number): number {
  return pos === 0 ? nodeLink(buf) : innerCellChild(buf, pos - 1);
}

export class BTree {
  private readonly inlineMax: number;
  private readonly mergeBelow: number;
  private readonly mergeMax: number;

  constructor(
    private readonly pages: TreePages,
    public root: number,
    public height: number,
  ) {
    this.inlineMax = inlineCellMax(pages.pageSize);
    this.mergeBelow = Math.floor(nodeCapacity(pages.pageSize) * MERGE_BELOW_FILL);
    this.mergeMax = Math.floor(nodeCapacity(pages.pageSize) * MERGE_MAX_FILL);
  }

  /** Bytes (with its slot) the leaf cell of an entry of this shape takes. */
  leafCellBytes(keyLength: number, valueLength: number, tombstone: boolean): number {
    const v = tombstone ? 0 : valueLength;
    const inline = LEAF_CELL_HEADER_BYTES + keyLength + v <= this.inlineMax;
    return SLOT_BYTES + LEAF_CELL_HEADER_BYTES + keyLength + (inline ? v : OVERFLOW_POINTER_BYTES);
  }

  /** Bytes the located leaf uses now (cells and slots). */
  leafUsedBytes(loc: Locator): number {
    return loc.leaf === undefined ? 0 : nodeUsedBytes(loc.leaf.buf, true);
  }

  /**
   * Loads (pinned) the siblings under the same parent that a change may merge the located leaf
   * with, when the change will leave it with `usedAfter` bytes, below the merge threshold.
   * Async phase.
   */
  async siblingsForMerge(loc: Locator, usedAfter: number): Promise<Sibling[] | undefined> {
    if (usedAfter >= this.mergeBelow || loc.leaf === undefined || loc.path.length === 0) return undefined;
    const { entry: parent, pos } = loc.path[loc.path.length - 1]!;
    const out: Sibling[] = [];
    if (pos > 0) out.push({ entry: await this.node(childAt(parent.buf, pos - 1), PageType.LEAF), right: false });
    if (pos < nodeCount(parent.buf)) out.push({ entry: await this.node(childAt(parent.buf, pos + 1), PageType.LEAF), right: true });
    return out;
  }

  /**
   * Loads (pinned) the siblings under the same parent a change may shift a cell to, when writing a
   * cell of `newBytes` (with its slot) in place of one of `oldBytes` (0: a new key) overflows the
   * located leaf. Async phase; on the put path, so the free gap is looked at before the cells are
   * counted.
   */
  async siblingsForShift(loc: Locator, oldBytes: number, newBytes: number): Promise<Sibling[] | undefined> {
    if (loc.leaf === undefined || loc.path.length === 0 || nodeFreeBytes(loc.leaf.buf) >= newBytes) return undefined;
    if (nodeUsedBytes(loc.leaf.buf, true) - oldBytes + newBytes <= nodeCapacity(this.pages.pageSize)) return undefined;
    const { entry: parent, pos } = loc.path[loc.path.length - 1]!;
    const out: Sibling[] = [];
    if (pos < nodeCount(parent.buf)) out.push({ entry: await this.node(childAt(parent.buf, pos + 1), PageType.LEAF), right: true });
    if (pos > 0) out.push({ entry: await this.node(childAt(parent.buf, pos - 1), PageType.LEAF), right: false });
    return out;
  }

  private async node(index: number, type: number): Promise<CacheEntry> {
    const e = this.pages.peek(index) ?? (await this.pages.load(index));
    checkNode(e.buf, index, type);
    return e;
  }

  /** Finds `key`: pins the path and the leaf. */
  async locate(key: Buffer): Promise<Locator> {
    const path: Locator['path'] = [];
    if (this.root === 0) return { path, leaf: undefined, pos: 0, found: false };
    let index = this.root;
    for (let level = this.height; level > 1; level--) {
      const entry = this.pages.peek(index) ?? (await this.pages.load(index));
      checkNode(entry.buf, index, PageType.INNER);
      const { pos, child } = innerChildFor(entry.buf, key);
      path.push({ entry, pos });
      index = child;
    }
    const leaf = this.pages.peek(index) ?? (await this.pages.load(index));
    checkNode(leaf.buf, index, PageType.LEAF);
    const r = nodeSearch(leaf.buf, key, true);
    return { path, leaf, pos: r >= 0 ? r : -r - 1, found: r >= 0 };
  }

  /** The cell at a found locator. */
  cellAt(loc: Locator): LeafCell {
    return readLeafCell(loc.leaf!.buf, loc.pos);
  }

  /** Pins every page of an overflow chain (before a synchronous change that reuses or frees it). */
  async loadChain(first: number, valueLength: number): Promise<CacheEntry[]> {
    const n = overflowPagesFor(valueLength, this.pages.pageSize);
    const out: CacheEntry[] = [];
    for (let p = first; out.length < n; ) {
      if (p === 0) corrupt(out.length ? out[out.length - 1]!.index : first, 'overflow chain ends early');
      const e = await this.node(p, PageType.OVERFLOW);
      out.push(e);
      p = overflowNext(e.buf);
    }
    return out;
  }

  private async nodeNoSlotCheck(index: number): Promise<Buffer> {
    const buf = await this.pages.readTransient(index);
    if (pageTypeOf(buf) !== PageType.OVERFLOW) corrupt(index, `page type ${pageTypeOf(buf)}, expected overflow`);
    return buf;
  }

  /** Reads a whole value (inline or from its chain). */
  async readValue(leafBuf: Buffer, cell: LeafCell): Promise<Buffer> {
    if ((cell.flags & FLAG_OVERFLOW) === 0) {
      return cell.valueLength === 0 ? EMPTY : Buffer.from(leafBuf.subarray(cell.valueOffset, cell.valueOffset + cell.valueLength));
    }
    const out = Buffer.allocUnsafe(cell.valueLength);
    let at = 0;
    let p = cell.overflowPage;
    while (at < out.length) {
      if (p === 0) corrupt(cell.overflowPage, 'overflow chain ends early');
      const buf = await this.nodeNoSlotCheck(p);
      at += readOverflowInto(buf, p, out, at);
      p = overflowNext(buf);
    }
    if (p !== 0) corrupt(cell.overflowPage, 'overflow chain longer than its value');
    return out;
  }

  /** The entry for `key`, or undefined. */
  async get(key: Buffer, keyString: string): Promise<StoredEntry | undefined> {
    const loc = await this.locate(key);
    if (!loc.found) return undefined;
    const buf = loc.leaf!.buf;
    const cell = readLeafCell(buf, loc.pos);
    return {
      key: keyString,
      counter: cell.counter,
      tombstone: (cell.flags & FLAG_TOMBSTONE) !== 0,
      valueKind: cell.valueKind,
      value: await this.readValue(buf, cell),
    };
  }

  // ------------------------------------------------------------------ synchronous changes

  /**
   * Writes an entry at a locator (synchronous). `oldChain` is the pinned chain of the entry being
   * replaced, when it has one.
   */
  write(loc: Locator, key: Buffer, w: LeafWrite, oldChain: CacheEntry[] | undefined, siblings?: Sibling[]): void {
    const value = w.tombstone ? EMPTY : (w.value ?? EMPTY);
    const inline = LEAF_CELL_HEADER_BYTES + key.length + value.length <= this.inlineMax;
    let first = 0;
    if (!inline) first = this.writeChain(value, oldChain ?? []);
    else if (oldChain) for (const e of oldChain) this.pages.free(e.index);
    const flags = (w.tombstone ? FLAG_TOMBSTONE : 0) | (inline ? 0 : FLAG_OVERFLOW);
    const size = encodeLeafCell(cellBuf, key, flags, w.valueKind, w.counter, value.length, inline ? value : undefined, first);
    if (loc.leaf === undefined) {
      const e = this.pages.allocate();
      const leaf = this.pages.writable(e);
      nodeInit(leaf, PageType.LEAF, e.index, 0);
      nodeInsertCell(leaf, 0, cellBuf, size, true);
      this.root = e.index;
      this.height = 1;
      return;
    }
    const buf = this.pages.writable(loc.leaf);
    if (loc.found) {
      if (size <= cellSize(buf, slotOffset(buf, loc.pos), true)) {
        nodeReplaceCellInPlace(buf, loc.pos, cellBuf, size);
        this.mergeLeaf(loc, siblings);
        return;
      }
      nodeRemove(buf, loc.pos);
    }
    if (nodeInsertCell(buf, loc.pos, cellBuf, size, true)) {
      this.mergeLeaf(loc, siblings);
      return;
    }
    if (siblings !== undefined && this.shiftLeaf(loc, key, size, siblings)) return;
    this.splitLeaf(loc, size);
  }

  /**
   * Inserts the new cell (`cellBuf[0..size)`, at `loc.pos`) into a leaf it does not fit by moving
   * one boundary cell of leaf + new cell to a loaded sibling with room, right one first; the
   * separator between the two in the parent becomes the right one's new first key. False (nothing
   * changed) when no sibling, or the parent for the new separator, has the room.
   */
  private shiftLeaf(loc: Locator, key: Buffer, size: number, siblings: Sibling[]): boolean {
    const leafE = loc.leaf!;
    const cap = nodeCapacity(this.pages.pageSize);
    const { entry: parentE, pos: pp } = loc.path[loc.path.length - 1]!;
    const leafBuf = leafE.buf;
    const n = nodeCount(leafBuf);
    const leafUsed = nodeUsedBytes(leafBuf, true);
    for (const s of siblings) {
      if (s.entry.gone) continue;
      const sepAt = s.right ? pp : pp - 1; // the parent cell between the two
      if (sepAt < 0 || sepAt >= nodeCount(parentE.buf) || innerCellChild(parentE.buf, sepAt) !== (s.right ? s.entry.index : leafE.index)) continue;
      // The cell that moves: the last (right) or first (left) of leaf + new cell.
      const movesNew = s.right ? loc.pos === n : loc.pos === 0;
      const boundary = s.right ? n - 1 : 0;
      const movedSize = movesNew ? size : cellSize(leafBuf, slotOffset(leafBuf, boundary), true);
      if (nodeUsedBytes(s.entry.buf, true) + movedSize + SLOT_BYTES > cap) continue;
      if (!movesNew && leafUsed - movedSize + size > cap) continue; // the rest must fit the leaf
      // The new separator: the right one's first key after the move.
      let sep: Buffer;
      if (s.right) sep = movesNew ? key : cellKey(leafBuf, boundary, true);
      else if (movesNew) sep = cellKey(leafBuf, 0, true);
      else sep = n >= 2 && loc.pos > 1 ? cellKey(leafBuf, 1, true) : key; // cell 1 becomes first, or the new one does
      const sepCopy = Buffer.from(sep);
      const oldSepBytes = INNER_SEP_OVERHEAD + cellKey(parentE.buf, sepAt, false).length;
      if (nodeUsedBytes(parentE.buf, false) - oldSepBytes + INNER_SEP_OVERHEAD + sepCopy.length > cap) continue;
      // Every check passed: change the three pages.
      const leaf = this.pages.writable(leafE);
      const sib = this.pages.writable(s.entry);
      let movedBuf: Buffer = cellBuf;
      if (!movesNew) {
        const off = slotOffset(leaf, boundary);
        leaf.copy(moveBuf, 0, off, off + movedSize);
        movedBuf = moveBuf;
        nodeRemove(leaf, boundary);
        nodeInsertCell(leaf, s.right ? loc.pos : loc.pos - 1, cellBuf, size, true);
      }
      if (s.right) nodeInsertCell(sib, 0, movedBuf, movedSize, true);
      else nodeAppendCell(sib, movedBuf, movedSize, true);
      const parent = this.pages.writable(parentE);
      const child = innerCellChild(parent, sepAt);
      nodeRemove(parent, sepAt);
      const sepSize = encodeInnerCell(innerCellBuf, sepCopy, child);
      nodeInsertCell(parent, sepAt, innerCellBuf, sepSize, false);
      return true;
    }
    return false;
  }

  /** Removes the entry at a found locator (synchronous); frees its chain. */
  remove(loc: Locator, oldChain: CacheEntry[] | undefined, siblings?: Sibling[]): void {
    nodeRemove(this.pages.writable(loc.leaf!), loc.pos);
    if (oldChain) for (const e of oldChain) this.pages.free(e.index);
    this.mergeLeaf(loc, siblings);
  }

  /** Merges the located leaf with the emptier of its loaded siblings when both fit (synchronous). */
  private mergeLeaf(loc: Locator, siblings: Sibling[] | undefined): void {
    if (siblings === undefined) return;
    const leaf = loc.leaf!;
    const used = nodeUsedBytes(leaf.buf, true);
    if (used >= this.mergeBelow) return;
    let best: Sibling | undefined;
    let bestUsed = Infinity;
    for (const s of siblings) {
      if (s.entry.gone) continue;
      const u = nodeUsedBytes(s.entry.buf, true);
      if (u < bestUsed) [best, bestUsed] = [s, u];
    }
    if (best === undefined || used + bestUsed > this.mergeMax) return;
    const [left, right] = best.right ? [leaf, best.entry] : [best.entry, leaf];
    const lb = this.pages.writable(left);
    nodeAppendAll(lb, right.buf, true);
    setNodeLink(lb, nodeLink(right.buf));
    const parentPos = loc.path[loc.path.length - 1]!.pos;
    this.pages.free(right.index);
    this.removeSeparator(loc.path, loc.path.length - 1, best.right ? parentPos : parentPos - 1);
  }

  /** Removes cell `cellIndex` of the inner node at `level` of `path`; merges or collapses upwards. */
  private removeSeparator(path: Locator['path'], level: number, cellIndex: number): void {
    const { entry } = path[level]!;
    const buf = this.pages.writable(entry);
    nodeRemove(buf, cellIndex);
    if (level === 0) {
      if (nodeCount(buf) === 0) {
        this.root = nodeLink(buf);
        this.height--;
        this.pages.free(entry.index);
      }
      return;
    }
    if (nodeUsedBytes(buf, false) < this.mergeBelow) this.mergeInner(path, level);
  }

  /** Merges the inner node at `level` with a cached sibling (the emptier that fits), pulling their separator down. */
  private mergeInner(path: Locator['path'], level: number): void {
    const node = path[level]!.entry;
    const { entry: gp, pos } = path[level - 1]!;
    const n = nodeCount(gp.buf);
    const used = nodeUsedBytes(node.buf, false);
    let best: { sibling: CacheEntry; right: boolean; cellBytes: number } | undefined;
    let bestUsed = Infinity;
    for (const right of [false, true]) {
      if (right ? pos >= n : pos === 0) continue;
      // Only a cached sibling: inner pages nearly always are, and the merge can wait otherwise.
      const sibling = this.pages.peek(childAt(gp.buf, right ? pos + 1 : pos - 1));
      if (sibling === undefined) continue;
      checkNode(sibling.buf, sibling.index, PageType.INNER);
      const sepKeyBytes = cellKey(gp.buf, right ? pos : pos - 1, false).length;
      const u = nodeUsedBytes(sibling.buf, false);
      if (u < bestUsed) [best, bestUsed] = [{ sibling, right, cellBytes: SLOT_BYTES + 6 + sepKeyBytes }, u];
    }
    if (best === undefined || used + bestUsed + best.cellBytes > this.mergeMax) return;
    const [left, rightNode] = best.right ? [node, best.sibling] : [best.sibling, node];
    const sepAt = best.right ? pos : pos - 1;
    const size = encodeInnerCell(innerCellBuf, cellKey(gp.buf, sepAt, false), nodeLink(rightNode.buf));
    const lb = this.pages.writable(left);
    nodeCompact(lb, false);
    nodeAppendCell(lb, innerCellBuf, size, false);
    nodeAppendAll(lb, rightNode.buf, false);
    this.pages.free(rightNode.index);
    this.removeSeparator(path, level - 1, sepAt);
  }

  /** Writes `value` into a chain, reusing `old` pages first; returns the first page. */
  private writeChain(value: Buffer, old: CacheEntry[]): number {
    const need = overflowPagesFor(value.length, this.pages.pageSize);
    const chain: CacheEntry[] = [];
    for (let i = 0; i < need; i++) chain.push(i < old.length ? old[i]! : this.pages.allocate());
    for (let i = need; i < old.length; i++) this.pages.free(old[i]!.index);
    let from = 0;
    for (let i = 0; i < need; i++) {
      const e = chain[i]!;
      from += encodeOverflowPage(this.pages.writable(e), e.index, i + 1 < need ? chain[i + 1]!.index : 0, value, from);
    }
    return chain[0]!.index;
  }

  private splitLeaf(loc: Locator, size: number): void {
    const leftE = loc.leaf!;
    const left = this.pages.writable(leftE);
    const atEdge = loc.pos === nodeCount(left) && nodeLink(left) === 0;
    const rightE = this.pages.allocate();
    nodeInit(rightE.buf, PageType.LEAF, rightE.index, nodeLink(left));
    const sep = nodeSplit(left, rightE.buf, loc.pos, cellBuf, size, true, atEdge);
    setNodeLink(left, rightE.index);
    this.insertIntoParent(loc.path, loc.path.length - 1, sep, rightE.index, leftE.index);
  }

  /** Inserts separator `sep` → `right` into the inner node at `level` of `path`, splitting upwards. */
  private insertIntoParent(path: Locator['path'], level: number, sep: Buffer, right: number, left: number): void {
    const size = encodeInnerCell(innerCellBuf, sep, right);
    if (level < 0) {
      const e = this.pages.allocate();
      nodeInit(e.buf, PageType.INNER, e.index, left);
      nodeInsertCell(e.buf, 0, innerCellBuf, size, false);
      this.root = e.index;
      this.height++;
      return;
    }
    const { entry, pos } = path[level]!;
    const buf = this.pages.writable(entry);
    if (nodeInsertCell(buf, pos, innerCellBuf, size, false)) return;
    let rightmost = pos === nodeCount(buf);
    for (let l = 0; l < level && rightmost; l++) rightmost = path[l]!.pos === nodeCount(path[l]!.entry.buf);
    const newE = this.pages.allocate();
    nodeInit(newE.buf, PageType.INNER, newE.index, 0);
    const up = nodeSplit(buf, newE.buf, pos, innerCellBuf, size, false, rightmost);
    this.insertIntoParent(path, level - 1, up, newE.index, entry.index);
  }

  // ------------------------------------------------------------------ scans

  /**
   * Up to `maxEntries` entries (or about `maxBytes` of values) after `fromExclusive` (from the
   * start when undefined), in key order. `lastKey` is the last key examined (tombstones included),
   * to resume from; `done` when the end was reached.
   */
  async scanBatch(
    fromExclusive: Buffer | undefined,
    opts: { includeTombstones: boolean; maxEntries: number; maxBytes: number },
  ): Promise<{ entries: StoredEntry[]; lastKey: Buffer | undefined; done: boolean }> {
    const entries: StoredEntry[] = [];
    if (this.root === 0) return { entries, lastKey: undefined, done: true };
    let leaf: CacheEntry;
    let pos: number;
    if (fromExclusive === undefined) {
      let index = this.root;
      for (let level = this.height; level > 1; level--) index = nodeLink((await this.node(index, PageType.INNER)).buf);
      leaf = await this.node(index, PageType.LEAF);
      pos = 0;
    } else {
      const loc = await this.locate(fromExclusive);
      leaf = loc.leaf!;
      pos = loc.found ? loc.pos + 1 : loc.pos;
    }
    let bytes = 0;
    let lastKey: Buffer | undefined;
    for (;;) {
      const buf = leaf.buf;
      const n = nodeCount(buf);
      for (; pos < n; pos++) {
        const cell = readLeafCell(buf, pos);
        const ks = cell.offset + LEAF_CELL_HEADER_BYTES;
        lastKey = buf.subarray(ks, ks + cell.keyLength);
        const tombstone = (cell.flags & FLAG_TOMBSTONE) !== 0;
        if (tombstone && !opts.includeTombstones) continue;
        const value = await this.readValue(buf, cell);
        entries.push({ key: buf.toString('utf8', ks, ks + cell.keyLength), counter: cell.counter, tombstone, valueKind: cell.valueKind, value });
        bytes += value.length + cell.keyLength;
        if (entries.length >= opts.maxEntries || bytes >= opts.maxBytes) {
          return { entries, lastKey: Buffer.from(lastKey), done: pos + 1 >= n && nodeLink(buf) === 0 };
        }
      }
      const next = nodeLink(buf);
      if (next === 0) return { entries, lastKey: lastKey && Buffer.from(lastKey), done: true };
      leaf = await this.node(next, PageType.LEAF);
      pos = 0;
    }
  }
}
