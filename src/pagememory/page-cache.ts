/**
 * The page cache: one per node, shared by every open partition file, within `pageCacheBytesMax`.
 *
 * Role: holds page images in memory. Each partition gets a `CacheSegment` (its pages by index).
 *
 * Entry states and what may happen to them:
 *   - clean, unpinned, not shared → on the LRU list; evicted freely (least recently used first);
 *   - pinned (an operation holds it across awaits) → never evicted until unpinned;
 *   - dirty (modified since the last checkpoint capture) → never evicted; counted in `dirtyBytes`;
 *   - shared (captured by the running checkpoint, not written yet) → never evicted (disk still has
 *     the older image); the first modification copies the buffer (copy-on-write) so the
 *     checkpoint keeps writing exactly the captured image.
 *
 * Budget: clean pages are evicted down to the budget after loads and mutations (`trim`), so data
 * larger than the budget works. Dirty and captured pages cannot be evicted: `dirtyBytes` counts
 * both (captured images until they are written). While it is at or above `dirtyRatio × budget`
 * and no checkpoint is active, the `onDirtyPressure` callback fires (the store starts a
 * checkpoint), and again every `PRESSURE_REPEAT_MS` while that lasts: a caller busy finishing
 * the previous checkpoint may ignore one call without stalling writers for good.
 * `waitForRoom()` resolves once `dirtyBytes` is below the budget (callers await it before a
 * mutation, outside the mutation gate).
 */
import { assert } from '../errors.js';

const RESOLVED: Promise<void> = Promise.resolve();
/** How often dirty-page pressure is signalled again while it lasts and no checkpoint runs. */
export const PRESSURE_REPEAT_MS = 25;

/** One cached page. `buf` may be replaced by copy-on-write: always re-read it after `writable()`. */
export class CacheEntry {
  dirty = false;
  shared = false;
  pins = 0;
  /** Removed from its segment (evicted, freed or dropped). */
  gone = false;
  prev: CacheEntry | null = null;
  next: CacheEntry | null = null;
  inLru = false;

  constructor(
    readonly seg: CacheSegment,
    readonly index: number,
    public buf: Buffer,
  ) {}
}

export interface PageCacheOptions {
  budgetBytes: number;
  dirtyRatio: number;
  onDirtyPressure?: () => void;
}

/** The node-wide cache: budget, LRU of evictable pages, dirty accounting, pressure and room. */
export class PageCache {
  readonly budgetBytes: number;
  readonly dirtyRatio: number;
  cachedBytes = 0;
  /** Bytes of dirty entries. */
  dirtyPageBytes = 0;
  /** Bytes of captured images the running checkpoint has not written yet. */
  pendingWriteBytes = 0;
  evictions = 0;
  private lruHead: CacheEntry | null = null;
  private lruTail: CacheEntry | null = null;
  private checkpointActive = false;
  private closed = false;
  private pressureTimer: NodeJS.Timeout | undefined;
  private roomWaiters: Array<() => void> = [];
  private readonly onDirtyPressure: (() => void) | undefined;

  constructor(opts: PageCacheOptions) {
    assert(opts.budgetBytes > 0 && opts.dirtyRatio > 0 && opts.dirtyRatio <= 1, 'bad page cache options');
    this.budgetBytes = opts.budgetBytes;
    this.dirtyRatio = opts.dirtyRatio;
    this.onDirtyPressure = opts.onDirtyPressure;
  }

  /** @internal True while a signal is pending or a checkpoint runs (markDirty skips the check). */
  get isPressureArmed(): boolean {
    return this.pressureTimer !== undefined || this.checkpointActive || this.closed;
  }

  /** Dirty pages plus captured-but-unwritten checkpoint images. */
  get dirtyBytes(): number {
    return this.dirtyPageBytes + this.pendingWriteBytes;
  }

  /** A new segment for one partition file. */
  segment(): CacheSegment {
    return new CacheSegment(this);
  }

  /** Evicts clean, unpinned, unshared pages (least recently used first) down to the budget. */
  trim(): void {
    while (this.cachedBytes > this.budgetBytes && this.lruHead !== null) {
      const e = this.lruHead;
      this.lruUnlink(e);
      e.seg.forget(e);
      this.evictions++;
    }
  }

  /** Resolves when dirty bytes are below the budget (signals pressure if they are not). */
  waitForRoom(): Promise<void> {
    if (this.dirtyBytes < this.budgetBytes) return RESOLVED;
    const p = new Promise<void>((resolve) => this.roomWaiters.push(resolve));
    this.pressureTimer?.ref(); // someone waits: the repeat must keep the process alive
    this.signalPressure();
    return p;
  }

  /** A checkpoint began (its capture is under way): no pressure signals until it finishes. */
  checkpointStarted(): void {
    this.checkpointActive = true;
  }

  /** A checkpoint finished (or failed): pressure may fire again; waiters may have room. */
  checkpointFinished(): void {
    this.checkpointActive = false;
    this.wakeRoomWaiters();
    // After a macrotask, so the caller's own promise chain has marked its checkpoint as done.
    setImmediate(() => this.signalPressure());
  }

  /** Lets every waiter go (the page memory failed or closed; their next step reports it). */
  releaseAllWaiters(): void {
    const w = this.roomWaiters;
    this.roomWaiters = [];
    for (const r of w) r();
    this.pressureTimer?.unref();
  }

  /** Stops pressure signals for good and releases waiters (page memory closed or failed). */
  close(): void {
    this.closed = true;
    clearTimeout(this.pressureTimer);
    this.pressureTimer = undefined;
    this.releaseAllWaiters();
  }

  /** Called when a captured image has been written or dropped. */
  releasePending(bytes: number): void {
    this.pendingWriteBytes -= bytes;
    assert(this.pendingWriteBytes >= 0, 'pendingWriteBytes below zero');
    this.wakeRoomWaiters();
  }

  /** @internal Fires onDirtyPressure when due (at most once per PRESSURE_REPEAT_MS, never during a checkpoint). */
  signalPressure(): void {
    if (this.onDirtyPressure === undefined || this.closed || this.checkpointActive || this.pressureTimer !== undefined) return;
    if (this.dirtyBytes < this.dirtyRatio * this.budgetBytes && this.roomWaiters.length === 0) return;
    const cb = this.onDirtyPressure;
    queueMicrotask(() => {
      try {
        cb();
      } catch {
        // The callback's own failure (it only starts a checkpoint); the signal repeats anyway.
      }
    });
    this.pressureTimer = setTimeout(() => {
      this.pressureTimer = undefined;
      this.signalPressure();
    }, PRESSURE_REPEAT_MS);
    if (this.roomWaiters.length === 0) this.pressureTimer.unref();
  }

  /** @internal */
  wakeRoomWaiters(): void {
    if (this.roomWaiters.length > 0 && this.dirtyBytes < this.budgetBytes) this.releaseAllWaiters();
  }

  /** @internal Appends `e` as most recently used. */
  lruPush(e: CacheEntry): void {
    e.prev = this.lruTail;
    e.next = null;
    if (this.lruTail) this.lruTail.next = e;
    else this.lruHead = e;
    this.lruTail = e;
    e.inLru = true;
  }

  /** @internal */
  lruUnlink(e: CacheEntry): void {
    if (e.prev) e.prev.next = e.next;
    else this.lruHead = e.next;
    if (e.next) e.next.prev = e.prev;
    else this.lruTail = e.prev;
    e.prev = e.next = null;
    e.inLru = false;
  }
}

/** The cached pages of one partition file. */
export class CacheSegment {
  readonly entries = new Map<number, CacheEntry>();
  readonly dirty = new Set<CacheEntry>();

  constructor(readonly cache: PageCache) {}

  /** The entry of page `index` when cached (not pinned: pin it before any await). */
  get(index: number): CacheEntry | undefined {
    return this.entries.get(index);
  }

  /** Keeps `e` from eviction until `unpin`. */
  pin(e: CacheEntry): void {
    if (e.inLru) this.cache.lruUnlink(e);
    e.pins++;
  }

  unpin(e: CacheEntry): void {
    assert(e.pins > 0, 'unpin of an unpinned page');
    e.pins--;
    if (e.pins === 0 && !e.dirty && !e.shared && !e.gone) this.cache.lruPush(e);
  }

  /** Adds page `index` (not cached yet), pinned once. `dirty` for a newly created page. */
  insertPinned(index: number, buf: Buffer, dirty: boolean): CacheEntry {
    assert(!this.entries.has(index), `page ${index} is already cached`);
    const e = new CacheEntry(this, index, buf);
    e.pins = 1;
    this.entries.set(index, e);
    this.cache.cachedBytes += buf.length;
    if (dirty) this.markDirty(e);
    return e;
  }

  /** The buffer to modify for `e` (must be pinned): copies it first when a checkpoint shares it; marks it dirty. */
  writable(e: CacheEntry): Buffer {
    if (e.shared) {
      e.buf = Buffer.from(e.buf);
      e.shared = false;
    }
    if (!e.dirty) this.markDirty(e);
    return e.buf;
  }

  private markDirty(e: CacheEntry): void {
    assert(!e.gone, `page ${e.index} modified after it left the cache`);
    e.dirty = true;
    if (e.inLru) this.cache.lruUnlink(e);
    this.dirty.add(e);
    this.cache.dirtyPageBytes += e.buf.length;
    if (!this.cache.isPressureArmed) this.cache.signalPressure();
  }

  /**
   * Hands every dirty entry to a checkpoint: they become clean and shared (copy-on-write from now
   * on) and their bytes move to `pendingWriteBytes`. Returns them in no particular order.
   */
  captureDirty(): CacheEntry[] {
    const out = [...this.dirty];
    this.dirty.clear();
    for (const e of out) {
      e.dirty = false;
      e.shared = true;
      this.cache.dirtyPageBytes -= e.buf.length;
      this.cache.pendingWriteBytes += e.buf.length;
    }
    return out;
  }

  /** A checkpoint wrote `image` for page `index`: the cached page (if still that image) becomes evictable. */
  written(index: number, image: Buffer): void {
    const e = this.entries.get(index);
    if (e !== undefined && e.buf === image && e.shared) {
      e.shared = false;
      if (e.pins === 0 && !e.dirty) this.cache.lruPush(e);
    }
    this.cache.releasePending(image.length);
  }

  /** Removes page `index` (it was freed): dirty content is discarded. Pinned entries may go too. */
  drop(index: number): void {
    const e = this.entries.get(index);
    if (e === undefined) return;
    if (e.inLru) this.cache.lruUnlink(e);
    this.forget(e);
  }

  /** Removes every page of this segment (dirty ones are discarded). */
  dropAll(): void {
    for (const e of [...this.entries.values()]) {
      if (e.inLru) this.cache.lruUnlink(e);
      this.forget(e);
    }
  }

  /** @internal Removes `e` from the maps and the byte counts (it is already off the LRU list). */
  forget(e: CacheEntry): void {
    this.entries.delete(e.index);
    e.gone = true;
    this.cache.cachedBytes -= e.buf.length;
    if (e.dirty) {
      e.dirty = false;
      this.dirty.delete(e);
      this.cache.dirtyPageBytes -= e.buf.length;
      this.cache.wakeRoomWaiters();
    }
  }
}
