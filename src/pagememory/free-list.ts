/**
 * Page reuse within one partition file, and the persisted free list.
 *
 * Three kinds of unreferenced pages, by when they may be reused:
 *   - free: not referenced by the last committed file state nor by the running checkpoint's
 *     captured state → reusable at once. A write to such a page is a FRESH write (no journal).
 *   - pending: freed during the current interval but still referenced by the committed state (or
 *     by the captured state of the running checkpoint) → reusable only after the next checkpoint
 *     that no longer references them commits. Overwriting one earlier would break the committed
 *     state a crash falls back to.
 *   - allocated-and-freed within the same interval → never persisted anywhere → free at once.
 *
 * The committed free set lives in a chain of FREE_LIST pages (head and count in the meta page).
 * A capture rewrites the chain only when the free set changed, into pages taken from the free set
 * itself or from the end of the file (fresh pages), and the old chain pages become pending.
 * Loading the chain is lazy (first mutation), so opening a file reads only its meta page.
 *
 * FREE_LIST page layout:
 *
 * | offset | size | field                                          |
 * |--------|------|------------------------------------------------|
 * | 0      | 16   | common page header (page.ts), type FREE_LIST   |
 * | 16     | 4    | next free-list page (0 = last), u32            |
 * | 20     | 4    | entry count n, u32                             |
 * | 24     | 4·n  | free page indexes, u32 each                    |
 */
import { assert, ErrorCode, ptnError } from '../errors.js';
import { initPage, PageType } from './page.js';

const OFF_NEXT = 16;
const OFF_COUNT = 20;
const OFF_ENTRIES = 24;

/** Page indexes one FREE_LIST page holds. */
export function freeListCapacity(pageSize: number): number {
  return Math.floor((pageSize - OFF_ENTRIES) / 4);
}

/** Fills `buf` as FREE_LIST page `index` (unsealed). */
export function encodeFreeListPage(buf: Buffer, index: number, next: number, entries: readonly number[]): void {
  assert(entries.length <= freeListCapacity(buf.length), 'free-list page overfull');
  initPage(buf, PageType.FREE_LIST, index);
  buf.writeUInt32LE(next, OFF_NEXT);
  buf.writeUInt32LE(entries.length, OFF_COUNT);
  let off = OFF_ENTRIES;
  for (const p of entries) {
    buf.writeUInt32LE(p, off);
    off += 4;
  }
}

/** Decodes a checked FREE_LIST page. */
export function decodeFreeListPage(buf: Buffer): { next: number; entries: number[] } {
  const n = buf.readUInt32LE(OFF_COUNT);
  if (n > freeListCapacity(buf.length)) throw ptnError(ErrorCode.ERR_FILE_FORMAT, `free-list page holds ${n} entries`);
  const entries = new Array<number>(n);
  for (let i = 0; i < n; i++) entries[i] = buf.readUInt32LE(OFF_ENTRIES + 4 * i);
  return { next: buf.readUInt32LE(OFF_NEXT), entries };
}

/**
 * Reads a persisted free list: the chain pages and the free page indexes. Validates every index
 * (inside the file, not page 0, no duplicates, count as the meta page says): ERR_FILE_FORMAT.
 */
export async function readFreeListChain(
  readPage: (index: number) => Promise<Buffer>,
  head: number,
  count: number,
  pageCount: number,
  path: string,
): Promise<{ listPages: number[]; entries: number[] }> {
  const bad = (why: string) => ptnError(ErrorCode.ERR_FILE_FORMAT, `${path}: free list: ${why}`, { details: { path } });
  const listPages: number[] = [];
  const entries: number[] = [];
  const seen = new Set<number>();
  for (let p = head; p !== 0; ) {
    if (p >= pageCount || seen.has(p)) throw bad(`bad chain page ${p}`);
    seen.add(p);
    listPages.push(p);
    const page = decodeFreeListPage(await readPage(p));
    for (const e of page.entries) {
      if (e === 0 || e >= pageCount || seen.has(e)) throw bad(`bad free page ${e}`);
      seen.add(e);
      entries.push(e);
    }
    if (entries.length > count) throw bad(`more than ${count} entries`);
    p = page.next;
  }
  if (entries.length !== count) throw bad(`${entries.length} entries, meta page says ${count}`);
  return { listPages, entries };
}

/** What a capture decided about free space (applied by `commit` once the checkpoint is durable). */
export interface FreeSpaceCapture {
  /** Pages not referenced by the committed state: written in place without the journal. */
  freshPages: Set<number>;
  /** New free-list pages to write (with their content), empty when the list did not change. */
  listPages: Array<{ index: number; next: number; entries: number[] }>;
  head: number;
  count: number;
  /** Pages that become reusable when this capture commits. */
  releaseAtCommit: number[];
  /** The chain pages of the captured state. */
  newListPages: number[];
}

/** In-memory free space of one partition file (see the file comment for the rules). */
export class FreeSpace {
  /** File length in pages as the live state sees it (next page to append). */
  nextPageIndex: number;
  /** Reusable now; kept sorted descending at commit so `pop()` tends to return low pages. */
  private free: number[] = [];
  private pending: number[] = [];
  private allocatedThisInterval = new Set<number>();
  private changed = false;
  private committedListPages: number[] = [];
  private committedHead = 0;
  private committedCount = 0;
  loaded: boolean;

  constructor(pageCount: number, opts: { head: number; count: number }) {
    this.nextPageIndex = pageCount;
    this.committedHead = opts.head;
    this.committedCount = opts.count;
    this.loaded = opts.count === 0;
  }

  /** Loads the persisted list (once, before the first allocation or release). */
  async load(readPage: (index: number) => Promise<Buffer>, path: string): Promise<void> {
    if (this.loaded) return;
    const { listPages, entries } = await readFreeListChain(readPage, this.committedHead, this.committedCount, this.nextPageIndex, path);
    this.committedListPages = listPages;
    this.free = entries.sort((a, b) => b - a);
    this.loaded = true;
  }

  /**
   * Pages below the end that hold no live content: reusable, pending release, or a chain page of
   * the committed list (loaded first). What a page-cache prewarm must leave out: a free page may
   * hold a stale image, and allocate() expects it uncached.
   */
  notInUse(): Set<number> {
    assert(this.loaded, 'free list not loaded before notInUse');
    return new Set([...this.free, ...this.pending, ...this.committedListPages]);
  }

  /** Pages reusable right now (for stats and tests). */
  get freeCount(): number {
    return this.free.length;
  }

  get pendingCount(): number {
    return this.pending.length;
  }

  /** A page for new content: a free one, else one past the end. */
  allocate(): number {
    assert(this.loaded, 'free list not loaded before allocate');
    this.changed = true;
    const p = this.free.length > 0 ? this.free.pop()! : this.nextPageIndex++;
    this.allocatedThisInterval.add(p);
    return p;
  }

  /** Gives page `index` up (the caller drops it from the cache). */
  release(index: number): void {
    assert(this.loaded, 'free list not loaded before release');
    assert(index > 0 && index < this.nextPageIndex, `release of page ${index}`);
    this.changed = true;
    if (this.allocatedThisInterval.delete(index)) this.free.push(index);
    else this.pending.push(index);
  }

  /**
   * At a checkpoint capture: closes the interval and decides the persisted free list of the
   * captured state (allocating its chain pages, which are fresh).
   */
  capture(pageSize: number): FreeSpaceCapture {
    const freshPages = this.allocatedThisInterval;
    this.allocatedThisInterval = new Set();
    const releaseAtCommit = this.pending;
    this.pending = [];
    if (!this.changed) {
      return { freshPages, listPages: [], head: this.committedHead, count: this.committedCount, releaseAtCommit, newListPages: this.committedListPages };
    }
    this.changed = false;
    assert(this.loaded, 'free list not loaded at a capture with changes');
    for (const p of this.committedListPages) releaseAtCommit.push(p);
    const cap = freeListCapacity(pageSize);
    const chain: number[] = [];
    const total = () => this.free.length + releaseAtCommit.length;
    while (chain.length < Math.ceil(total() / cap)) {
      // Take chain pages from the free set only while that leaves it an entry to list: a chain
      // that swallowed the last free page would persist head≠0 with count 0 (an invalid meta page).
      const p = total() > 1 && this.free.length > 0 ? this.free.pop()! : this.nextPageIndex++;
      freshPages.add(p);
      chain.push(p);
    }
    const all = this.free.concat(releaseAtCommit);
    const listPages = chain.map((index, i) => ({
      index,
      next: i + 1 < chain.length ? chain[i + 1]! : 0,
      entries: all.slice(i * cap, (i + 1) * cap),
    }));
    return { freshPages, listPages, head: chain[0] ?? 0, count: all.length, releaseAtCommit, newListPages: chain };
  }

  /** The captured state is durable: its released pages become reusable. */
  commit(c: FreeSpaceCapture): void {
    for (const p of c.releaseAtCommit) this.free.push(p);
    this.free.sort((a, b) => b - a);
    this.committedListPages = c.newListPages;
    this.committedHead = c.head;
    this.committedCount = c.count;
  }
}
