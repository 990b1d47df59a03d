/**
 * One open partition: its file, its cached pages, its B+tree, its counter and its counts.
 *
 * Role: the entry point for reads and apply-if-newer writes of one partition. Operations on one
 * partition are serialised by an async mutex (uncontended: no await). Mutations must run inside
 * the PageMemory mutation gate (asserted), so a checkpoint capture never sees half a change.
 *
 * Invariants:
 *   - the in-memory meta (counter, counts, root, height, free space) is the live state; it is
 *     encoded into a new meta page at each checkpoint capture, and `committed()` describes what
 *     the last completed checkpoint put on disk;
 *   - `apply` changes nothing when it throws: every page it needs is read and pinned before the
 *     counter or a page changes (see btree.ts);
 *   - tombstoned keys are tracked in memory (key → counter) so purging does not scan the tree; a
 *     file opened with tombstones gets one lazy scan at the first purge (opening stays O(1)).
 */
import type { StorageConfig } from '../config.js';
import { assert, ErrorCode, ptnError } from '../errors.js';
import { BTree, type Locator, type Sibling, type StoredEntry, type TreePages } from './btree.js';
import { FLAG_OVERFLOW, FLAG_TOMBSTONE, SLOT_BYTES } from './btree-node.js';
import type { CapturedFile } from './checkpoint.js';
import { encodeFreeListPage, FreeSpace } from './free-list.js';
import { encodeMetaPage, type MetaState, type PartitionIdentity } from './meta-page.js';
import type { MutationGate } from './mutation-gate.js';
import type { CacheEntry, CacheSegment, PageCache } from './page-cache.js';
import { pageProblem, PageType } from './page.js';
import type { PageImage, PartitionFile, WriteListener } from './partition-file.js';
import { UpdateCounter } from './update-counter.js';

export type { StoredEntry } from './btree.js';
export type { PartitionIdentity } from './meta-page.js';

/** Outcome of an apply-if-newer. */
export type ApplyResult = 'applied' | 'stale' | 'duplicate';

/** One update as the store hands it over. */
export interface PartitionUpdate {
  key: string;
  counter: number;
  op: 'put' | 'remove';
  valueKind?: number;
  value?: Buffer;
}

/** What the last completed checkpoint put on disk. */
export interface CommittedState {
  fileBytes: number;
  counterLwm: number;
  counterHwm: number;
  entryCount: number;
  checkpointId: number;
}

/** What a PageMemory shares with its partitions. @internal */
export interface PartitionContext {
  cache: PageCache;
  gate: MutationGate;
  storage: StorageConfig;
}

/** Pages per run of a prewarm (1 MiB of 4 KiB pages), read as slabs of PREWARM_SLAB_PAGES at once. */
export const PREWARM_READ_PAGES = 256;
/** Pages per buffer of a prewarm (64 KiB of 4 KiB pages): they share its memory. */
export const PREWARM_SLAB_PAGES = 16;
/** Entries per scan batch (the partition lock is released between batches). */
export const SCAN_BATCH_ENTRIES_MAX = 256;
/** About this many key + value bytes per scan batch. */
export const SCAN_BATCH_BYTES_MAX = 4 << 20;

export class PartitionStore implements TreePages {
  readonly id: PartitionIdentity;
  readonly path: string;
  readonly pageSize: number;
  readonly counter: UpdateCounter;
  private readonly seg: CacheSegment;
  private readonly tree: BTree;
  private readonly space: FreeSpace;
  private entries: number;
  private tombstones: number;
  private metaDirty = false;
  private committedState: CommittedState;
  private tombstoneKeys = new Map<string, number>();
  private tombstonesKnown: boolean;
  private readonly pins: CacheEntry[] = [];
  private locked = false;
  private lockWaiters: Array<() => void> = [];
  private state: 'open' | 'destroyed' | 'closed' = 'open';

  /** @internal Made by PageMemory. */
  constructor(
    private readonly ctx: PartitionContext,
    private readonly file: PartitionFile,
    meta: MetaState,
  ) {
    this.id = { ...meta.identity };
    this.path = file.path;
    this.pageSize = meta.pageSize;
    this.counter = UpdateCounter.decode(meta.counterState, ctx.storage.counterGapsMax);
    this.seg = ctx.cache.segment();
    this.tree = new BTree(this, meta.rootPage, meta.treeHeight);
    this.space = new FreeSpace(meta.pageCount, { head: meta.freeListHead, count: meta.freePageCount });
    this.entries = meta.entryCount;
    this.tombstones = meta.tombstoneCount;
    this.tombstonesKnown = meta.tombstoneCount === 0;
    this.committedState = {
      fileBytes: meta.pageCount * meta.pageSize,
      counterLwm: this.counter.lwm,
      counterHwm: this.counter.hwm,
      entryCount: meta.entryCount,
      checkpointId: meta.checkpointId,
    };
  }

  /** Live entries (tombstones excluded). */
  get entryCount(): number {
    return this.entries;
  }

  /** Tombstones currently stored. */
  get tombstoneCount(): number {
    return this.tombstones;
  }

  // ------------------------------------------------------------------ TreePages (internal)

  /** @internal */
  peek(index: number): CacheEntry | undefined {
    const e = this.seg.get(index);
    if (e !== undefined) {
      this.seg.pin(e);
      this.pins.push(e);
    }
    return e;
  }

  /** @internal */
  async load(index: number): Promise<CacheEntry> {
    const buf = await this.file.readPage(index);
    const e = this.seg.insertPinned(index, buf, false);
    this.pins.push(e);
    return e;
  }

  /** @internal */
  readTransient(index: number): Buffer | Promise<Buffer> {
    const e = this.seg.get(index);
    if (e !== undefined) {
      this.seg.pin(e);
      this.seg.unpin(e);
      return e.buf;
    }
    return this.file.readPage(index).then((buf) => {
      this.seg.unpin(this.seg.insertPinned(index, buf, false));
      return buf;
    });
  }

  /** @internal */
  writable(e: CacheEntry): Buffer {
    return this.seg.writable(e);
  }

  /** @internal The page is uninitialised memory: the tree always lays it out (initPage zero-fills) first. */
  allocate(): CacheEntry {
    const e = this.seg.insertPinned(this.space.allocate(), Buffer.allocUnsafe(this.pageSize), true);
    this.pins.push(e);
    return e;
  }

  /** @internal */
  free(index: number): void {
    this.space.release(index);
    this.seg.drop(index);
  }

  /** Ends an operation: unpins its pages and lets the cache trim. */
  private endOp(): void {
    for (const e of this.pins) this.seg.unpin(e);
    this.pins.length = 0;
    this.ctx.cache.trim();
  }

  private lock(): Promise<void> | undefined {
    if (!this.locked) {
      this.locked = true;
      return undefined;
    }
    return new Promise((resolve) => this.lockWaiters.push(resolve));
  }

  private unlock(): void {
    const next = this.lockWaiters.shift();
    if (next) next();
    else this.locked = false;
  }

  private checkUsable(): void {
    if (this.state !== 'open') throw ptnError(ErrorCode.ERR_CLOSED, `partition ${this.path} was ${this.state}`);
  }

  // ------------------------------------------------------------------ reads

  /** The stored entry for `key` (tombstones included), or undefined. */
  async get(key: string): Promise<StoredEntry | undefined> {
    const w = this.lock();
    if (w) await w;
    try {
      this.checkUsable();
      return await this.tree.get(Buffer.from(key, 'utf8'), key);
    } finally {
      this.endOp();
      this.unlock();
    }
  }

  /** Key-ordered scan; safe while mutations go on (re-seeks after the last key of each batch). */
  async *scan(opts: { fromKeyExclusive?: string; includeTombstones?: boolean } = {}): AsyncIterable<StoredEntry> {
    let from: Buffer | undefined = opts.fromKeyExclusive === undefined ? undefined : Buffer.from(opts.fromKeyExclusive, 'utf8');
    const batchOpts = { includeTombstones: opts.includeTombstones ?? false, maxEntries: SCAN_BATCH_ENTRIES_MAX, maxBytes: SCAN_BATCH_BYTES_MAX };
    for (;;) {
      const w = this.lock();
      if (w) await w;
      let batch: Awaited<ReturnType<BTree['scanBatch']>>;
      try {
        this.checkUsable();
        batch = await this.tree.scanBatch(from, batchOpts);
      } finally {
        this.endOp();
        this.unlock();
      }
      for (const e of batch.entries) yield e;
      if (batch.done || batch.lastKey === undefined) return;
      from = batch.lastKey;
    }
  }

  // ------------------------------------------------------------------ prewarm

  /**
   * Reads the file's live pages into the page cache, at most `bytesMax` of them and never beyond
   * the cache's free room (nothing is evicted for them), skipping pages already cached and pages
   * that hold no live content; returns the bytes cached. After a swap-in
   * the replay of the catch-up log touches pages all over the new file: reading each on demand
   * held the partition lock for a thread-pool round trip per page (0.15–0.3 ms a record under
   * load, most of the replay). Here a run of PREWARM_READ_PAGES is read as slabs of
   * PREWARM_SLAB_PAGES, all in flight at once, and the cached pages are views of the slabs: one
   * allocation per slab instead of one allocation and one copy per page (those cost as much as
   * the reads they replaced). The price: a slab stays in memory while any of its pages is cached,
   * so after partial evictions memory can exceed the cache's byte count by the rest of such slabs
   * (at most PREWARM_SLAB_PAGES − 1 pages each; pages warmed together sit together in the LRU list
   * and mostly leave together). A page that fails its check is left out, so reading it later
   * reports the corruption as before. Holds the partition lock during a run, not between runs;
   * `pace`, when given, is awaited before each run (outside the lock).
   */
  async prewarm(bytesMax: number, pace?: () => Promise<void>): Promise<number> {
    let cached = 0;
    for (let first = 1; cached + this.pageSize <= bytesMax; ) {
      if (pace) await pace();
      const w = this.lock();
      if (w) await w;
      try {
        this.checkUsable();
        await this.prepareWrite(); // the free list says which pages are not in use
        const end = this.file.lengthPages;
        if (first >= end) break;
        // The cache's room again each run: other partitions prewarm and load meanwhile.
        const room = this.ctx.cache.budgetBytes - this.ctx.cache.cachedBytes;
        const n = Math.min(PREWARM_READ_PAGES, end - first, Math.floor(Math.min(bytesMax - cached, room) / this.pageSize));
        if (n <= 0) break;
        const reads: Array<Promise<Buffer>> = [];
        for (let at = first; at < first + n; at += PREWARM_SLAB_PAGES) reads.push(this.file.readRawPages(at, Math.min(PREWARM_SLAB_PAGES, first + n - at)));
        const slabs = await Promise.all(reads);
        const notInUse = this.space.notInUse(); // each run: writes between runs allocate and free pages
        const { cache } = this.ctx;
        fill: for (let s = 0; s < slabs.length; s++) {
          const slab = slabs[s]!;
          const at = first + s * PREWARM_SLAB_PAGES;
          for (let i = 0; i < slab.length / this.pageSize; i++) {
            const index = at + i;
            if (notInUse.has(index) || this.seg.get(index) !== undefined) continue;
            if (cache.cachedBytes + this.pageSize > cache.budgetBytes) break fill; // others filled it while we read
            const image = slab.subarray(i * this.pageSize, (i + 1) * this.pageSize);
            if (pageProblem(image, index) !== undefined) continue;
            this.seg.unpin(this.seg.insertPinned(index, image, false));
            cached += this.pageSize;
          }
        }
        first += n;
      } finally {
        this.unlock();
      }
    }
    return cached;
  }

  // ------------------------------------------------------------------ writes

  private checkUpdate(u: PartitionUpdate): Buffer {
    const key = Buffer.from(u.key, 'utf8');
    const s = this.ctx.storage;
    if (key.length > s.keyBytesMax) {
      throw ptnError(ErrorCode.ERR_KEY_TOO_LARGE, `key of ${key.length} bytes exceeds storage.keyBytesMax ${s.keyBytesMax}`, {
        details: { keyBytes: key.length },
      });
    }
    if (u.op === 'put' && (u.value?.length ?? 0) > s.valueBytesMax) {
      throw ptnError(ErrorCode.ERR_VALUE_TOO_LARGE, `value of ${u.value!.length} bytes exceeds storage.valueBytesMax ${s.valueBytesMax}`, {
        details: { valueBytes: u.value!.length },
      });
    }
    assert(Number.isSafeInteger(u.counter) && u.counter >= 1, `update counter must be a safe integer >= 1, got ${u.counter}`);
    assert(u.valueKind === undefined || (Number.isInteger(u.valueKind) && u.valueKind >= 0 && u.valueKind <= 255), 'valueKind is a u8');
    return key;
  }

  private async prepareWrite(): Promise<void> {
    if (!this.space.loaded) await this.space.load((i) => this.file.readPage(i, PageType.FREE_LIST), this.path);
  }

  /**
   * Apply-if-newer, atomically with the counter bookkeeping: a counter already applied →
   * 'duplicate' (no change); else the counter is recorded (ERR_COUNTER_GAPS_OVERFLOW first, with no
   * change) and, when the stored entry has a counter ≥ this one, 'stale' (tree untouched), else the
   * entry is written (a remove writes a tombstone) → 'applied'. ERR_KEY_TOO_LARGE and
   * ERR_VALUE_TOO_LARGE are checked before anything else. Must run inside the mutation gate
   * (asserted). Changes nothing when it throws.
   */
  async apply(u: PartitionUpdate): Promise<ApplyResult> {
    assert(this.ctx.gate.inFlight > 0, 'PartitionStore.apply outside the mutation gate');
    const key = this.checkUpdate(u);
    const w = this.lock();
    if (w) await w;
    try {
      this.checkUsable();
      const c = u.counter;
      if (this.counter.has(c)) return 'duplicate';
      await this.prepareWrite();
      const loc = await this.tree.locate(key);
      const tombstone = u.op === 'remove';
      let oldFlags = -1;
      let oldChain: CacheEntry[] | undefined;
      let siblings: Sibling[] | undefined;
      if (loc.found) {
        const cell = this.tree.cellAt(loc);
        if (cell.counter >= c) {
          this.counter.add(c);
          this.metaDirty = true;
          return 'stale';
        }
        oldFlags = cell.flags;
        if ((cell.flags & FLAG_OVERFLOW) !== 0) oldChain = await this.tree.loadChain(cell.overflowPage, cell.valueLength);
        // Only a change that shrinks the leaf can leave it under the merge threshold.
        const newBytes = this.tree.leafCellBytes(key.length, u.value?.length ?? 0, tombstone);
        if (newBytes < cell.size + SLOT_BYTES) {
          siblings = await this.tree.siblingsForMerge(loc, this.tree.leafUsedBytes(loc) - cell.size - SLOT_BYTES + newBytes);
        }
      }
      if (siblings === undefined && loc.leaf !== undefined) {
        // A change that overflows the leaf first tries to shift a cell to a sibling (btree.ts).
        const oldBytes = loc.found ? this.tree.cellAt(loc).size + SLOT_BYTES : 0;
        siblings = await this.tree.siblingsForShift(loc, oldBytes, this.tree.leafCellBytes(key.length, u.value?.length ?? 0, tombstone));
      }
      this.counter.add(c); // may throw ERR_COUNTER_GAPS_OVERFLOW: nothing changed yet
      this.metaDirty = true;
      this.tree.write(loc, key, { tombstone, valueKind: tombstone ? 0 : (u.valueKind ?? 0), counter: c, value: u.value }, oldChain, siblings);
      this.countWrite(oldFlags, tombstone, u.key, c);
      return 'applied';
    } finally {
      this.endOp();
      this.unlock();
    }
  }

  private countWrite(oldFlags: number, tombstone: boolean, key: string, counter: number): void {
    if (oldFlags >= 0) {
      if ((oldFlags & FLAG_TOMBSTONE) !== 0) this.tombstones--;
      else this.entries--;
    }
    if (tombstone) {
      this.tombstones++;
      this.tombstoneKeys.set(key, counter);
    } else {
      this.entries++;
      if (this.tombstoneKeys.size > 0) this.tombstoneKeys.delete(key);
    }
  }

  /** Removes tombstones with counter ≤ upTo; returns how many. Inside the mutation gate. */
  async purgeTombstones(upTo: number): Promise<number> {
    assert(this.ctx.gate.inFlight > 0, 'PartitionStore.purgeTombstones outside the mutation gate');
    const w = this.lock();
    if (w) await w;
    try {
      this.checkUsable();
      if (!this.tombstonesKnown) await this.findTombstones();
      if (this.tombstoneKeys.size === 0) return 0;
      await this.prepareWrite();
      let purged = 0;
      for (const [key, counter] of [...this.tombstoneKeys]) {
        if (counter > upTo) continue;
        const loc: Locator = await this.tree.locate(Buffer.from(key, 'utf8'));
        if (loc.found) {
          const cell = this.tree.cellAt(loc);
          if ((cell.flags & FLAG_TOMBSTONE) !== 0 && cell.counter <= upTo) {
            const siblings = await this.tree.siblingsForMerge(loc, this.tree.leafUsedBytes(loc) - cell.size - SLOT_BYTES);
            this.tree.remove(loc, undefined, siblings);
            this.tombstones--;
            this.metaDirty = true;
            purged++;
          }
        }
        this.tombstoneKeys.delete(key);
        this.endOp();
      }
      return purged;
    } finally {
      this.endOp();
      this.unlock();
    }
  }

  /** One scan of the tree to learn the tombstones of a file opened with some (lock held). */
  private async findTombstones(): Promise<void> {
    const found = new Map<string, number>();
    let from: Buffer | undefined;
    const opts = { includeTombstones: true, maxEntries: SCAN_BATCH_ENTRIES_MAX, maxBytes: SCAN_BATCH_BYTES_MAX };
    for (;;) {
      const batch = await this.tree.scanBatch(from, opts);
      this.endOp();
      for (const e of batch.entries) if (e.tombstone) found.set(e.key, e.counter);
      if (batch.done || batch.lastKey === undefined) break;
      from = batch.lastKey;
    }
    this.tombstoneKeys = found;
    this.tombstonesKnown = true;
  }

  // ------------------------------------------------------------------ files and checkpoints

  /** As of the last completed checkpoint (what the file on disk holds). */
  committed(): CommittedState {
    return { ...this.committedState };
  }

  /** Registers a listener called before any existing page of the file is overwritten. */
  addWriteListener(l: WriteListener): () => void {
    return this.file.addWriteListener(l);
  }

  /** Current length of the file on disk. */
  fileBytes(): number {
    return this.file.lengthPages * this.pageSize;
  }

  /** Free-space figures (for tests and status). */
  spaceStats(): { pageCount: number; freePages: number; pendingFreePages: number } {
    return { pageCount: this.space.nextPageIndex, freePages: this.space.freeCount, pendingFreePages: this.space.pendingCount };
  }

  /**
   * @internal At a checkpoint capture (gate closed, quiescent): encodes the meta page, closes the
   * free-space interval, hands the dirty pages over. Undefined when nothing changed.
   */
  capture(checkpointId: number): CapturedFile | undefined {
    if (this.state !== 'open' || !this.metaDirty) return undefined;
    const fs = this.space.capture(this.pageSize);
    const fresh: PageImage[] = [];
    const overwrite: PageImage[] = [];
    for (const e of this.seg.captureDirty()) (fs.freshPages.has(e.index) ? fresh : overwrite).push({ index: e.index, image: e.buf });
    for (const lp of fs.listPages) {
      const image = Buffer.allocUnsafe(this.pageSize);
      encodeFreeListPage(image, lp.index, lp.next, lp.entries);
      fresh.push({ index: lp.index, image });
    }
    const pageCount = this.space.nextPageIndex;
    const meta = encodeMetaPage({
      pageSize: this.pageSize,
      identity: this.id,
      checkpointId,
      entryCount: this.entries,
      tombstoneCount: this.tombstones,
      pageCount,
      rootPage: this.tree.root,
      treeHeight: this.tree.height,
      freeListHead: fs.head,
      freePageCount: fs.count,
      counterState: this.counter.encode(),
    });
    overwrite.push({ index: 0, image: meta });
    this.ctx.cache.pendingWriteBytes += (fs.listPages.length + 1) * this.pageSize;
    fresh.sort((a, b) => a.index - b.index);
    overwrite.sort((a, b) => a.index - b.index);
    this.metaDirty = false;
    const next: CommittedState = {
      fileBytes: pageCount * this.pageSize,
      counterLwm: this.counter.lwm,
      counterHwm: this.counter.hwm,
      entryCount: this.entries,
      checkpointId,
    };
    return {
      owner: this,
      file: this.file,
      seg: this.seg,
      fresh,
      overwrite,
      pageCount,
      commit: () => {
        this.space.commit(fs);
        this.committedState = next;
      },
    };
  }

  /**
   * @internal Ends this partition: waits for its running operation, runs `beforeClose` (the page
   * memory drops it from a running checkpoint there), drops its cached pages, closes its file.
   */
  async shut(how: 'destroyed' | 'closed', beforeClose: () => Promise<void>): Promise<void> {
    if (this.state !== 'open') return;
    const w = this.lock();
    if (w) await w;
    try {
      if (this.state !== 'open') return;
      this.state = how;
      await beforeClose();
      this.seg.dropAll();
      await this.file.close();
    } finally {
      this.unlock();
    }
  }
}
