/**
 * PageMemory: the storage engine of one node. Owns the page cache, the open partition files, the
 * mutation gate and checkpoints.
 *
 * Data flow: the store enters the mutation gate, logs its WAL record and applies the update to a
 * PartitionStore, which changes cached pages (dirty) in place. A checkpoint captures the dirty
 * pages at a quiescent instant and writes them crash-consistently; between checkpoints the files
 * on disk hold the last committed state and the WAL holds what came after.
 *
 * ## Checkpoint write algorithm (crash-consistent, no full double write)
 *
 * Per file, captured pages are either
 *   - FRESH: not referenced by the file's last committed state (beyond the committed page count,
 *     or taken from pages that were free at the last commit) — writing them cannot harm the
 *     committed state, so they are written once, in place; or
 *   - OVERWRITE: live in the committed state, always including the meta page 0 — writing them in
 *     place could tear the committed state, so they go through the checkpoint journal first.
 * Then:
 *   1. write FRESH pages in place (ascending, coalesced), extend the file to its new page count;
 *   2. write a checkpoint journal holding every OVERWRITE page image (checkpoint-journal.ts);
 *   3. fsync the touched partition files, the journal and the journal directory;
 *   4. write OVERWRITE pages in place; fsync the files;
 *   5. delete the journal, fsync its directory; advance the committed state (committed page count,
 *      free lists: pending-free pages become free).
 * Why it is consistent: until step 4 begins, every page the old meta page reaches is untouched
 * (fresh pages are unreachable from it), so a crash leaves the old state; the journal is durable
 * before step 4 begins, so a crash during or after step 4 is redone to the new state, whose fresh
 * pages were made durable in step 3. Only overwritten pages are written twice.
 *
 * Write hook: PartitionFile listeners fire before every overwrite of an existing page in steps 1
 * and 4 (and would in redo, but no partition is open during recovery).
 *
 * ## Recovery table (PageMemory.open(), before anything else)
 *
 * | case                                       | action                                                       |
 * |--------------------------------------------|--------------------------------------------------------------|
 * | no journal                                 | nothing to do                                                |
 * | complete journal                           | redo every page in place, fsync, delete it (new state)       |
 * | truncated journal                          | delete it: the crash came before step 4 began (old state)    |
 * | journal with a bad CRC                     | delete it: same (it was not durable yet)                     |
 * | journal naming a file that no longer exists| skip that file, redo the others                              |
 * | complete journal that fails its checks     | ERR_CHECKPOINT_JOURNAL_CORRUPT, journal kept                 |
 * | file longer than its committed page count  | cut at open (fresh pages of a checkpoint that did not commit)|
 * | a checkpoint write fails (I/O, disk full)  | the page memory is failed: mutations and checkpoints are refused with that error until a restart, whose recovery (journal + WAL replay) restores a consistent state |
 *
 * The last row is deliberate (as after a failed fsync in PostgreSQL): the captured pages are
 * kept pinned so reads stay correct, but retrying writes after an fsync error is not safe.
 */
import path from 'node:path';
import type { StorageConfig } from '../config.js';
import { assert, ErrorCode, fsError, ptnError, type PtnError, isPtnError } from '../errors.js';
import { type FileLayer, realFileLayer } from '../util/file-layer.js';
import { innerFanoutMin, inlineCellMax } from './btree.js';
import { LEAF_CELL_HEADER_BYTES, OVERFLOW_POINTER_BYTES } from './btree-node.js';
import { Checkpoint, type CheckpointWrite } from './checkpoint.js';
import { recoverCheckpointJournals, type JournalRecovery } from './checkpoint-journal.js';
import { readFreeListChain } from './free-list.js';
import { assertIdentity, checkIdentity, counterStateBytesMax, encodeMetaPage, type MetaState, type PartitionIdentity } from './meta-page.js';
import { MutationGate } from './mutation-gate.js';
import { PageCache } from './page-cache.js';
import { isValidPageSize, PageType, sealPage, pageProblem } from './page.js';
import { type IoCounters, PartitionFile } from './partition-file.js';
import { PageReads } from './page-reads.js';
import { PartitionStore } from './partition-store.js';
import { UpdateCounter } from './update-counter.js';

export type { CheckpointWrite, CheckpointStats } from './checkpoint.js';
export type { ApplyResult, PartitionIdentity, StoredEntry } from './partition-store.js';
export { PartitionStore } from './partition-store.js';

export interface PageMemoryOptions {
  storage: StorageConfig;
  journalDir: string;
  fileLayer?: FileLayer;
  onDirtyPressure?: () => void;
  log?: (msg: string, extra?: object) => void;
}

/** Paces background work (checkpoint sealing) behind foreground work; see PageMemory.setPace. */
export type Pace = () => Promise<void>;

/** Figures for status and metrics. */
export interface PageMemoryStats {
  cachedBytes: number;
  dirtyBytes: number;
  pageReads: number;
  /** Of the single page reads: synchronous ones (page-reads.ts), and those of them slower than a memory read. */
  pageReadsSync: number;
  pageReadsSlow: number;
  /** Times page reads went to the thread pool for a while (most recent synchronous ones were slow). */
  pageReadHolds: number;
  pageWrites: number;
  evictions: number;
  checkpoints: number;
}

/** Pages read per batch when a swap-in checks every page. */
const VERIFY_BATCH_PAGES = 64;

/** Asserts that the storage settings give a workable tree for files of `pageSize`. */
function checkGeometry(pageSize: number, s: StorageConfig): void {
  assert(isValidPageSize(pageSize), `bad page size ${pageSize}`);
  assert(innerFanoutMin(pageSize, s.keyBytesMax) >= 4, `page size ${pageSize} gives an inner fanout below 4 for keys of ${s.keyBytesMax} bytes`);
  assert(LEAF_CELL_HEADER_BYTES + s.keyBytesMax + OVERFLOW_POINTER_BYTES <= inlineCellMax(pageSize), `keys of ${s.keyBytesMax} bytes do not fit 3 per leaf`);
  assert(UpdateCounter.encodedBytesMax(s.counterGapsMax) <= counterStateBytesMax(pageSize), `counterGapsMax ${s.counterGapsMax} does not fit the meta page`);
}

export class PageMemory {
  private status: 'new' | 'opening' | 'open' | 'closing' | 'closed' = 'new';
  private readonly fl: FileLayer;
  private readonly cache: PageCache;
  private readonly gate = new MutationGate();
  private readonly io: IoCounters;
  private readonly partitions = new Set<PartitionStore>();
  private readonly byPath = new Map<string, PartitionStore>();
  private checkpointsDone = 0;
  private nextCheckpointId = 1;
  private running: Checkpoint | undefined;
  /** Checkpoints started from now on seal their pages at this pace (setPace). */
  private pace: Pace | undefined;
  /** Resolves when the previous checkpoint has finished writing (one at a time). */
  private checkpointTail: Promise<void> = Promise.resolve();
  private failure: PtnError | undefined;
  private closing: Promise<void> | undefined;
  /** What recovery did at open (for logs and tests). */
  recovery: JournalRecovery[] = [];

  constructor(private readonly opts: PageMemoryOptions) {
    this.fl = opts.fileLayer ?? realFileLayer;
    this.io = { pageReads: 0, pageWrites: 0, reads: new PageReads({ sync: opts.storage.syncPageReads }) };
    checkGeometry(opts.storage.pageSizeBytes, opts.storage);
    this.cache = new PageCache({
      budgetBytes: opts.storage.pageCacheBytesMax,
      dirtyRatio: opts.storage.checkpointDirtyRatio,
      onDirtyPressure: opts.onDirtyPressure,
    });
  }

  get stats(): PageMemoryStats {
    return {
      cachedBytes: this.cache.cachedBytes,
      dirtyBytes: this.cache.dirtyBytes,
      pageReads: this.io.pageReads,
      pageReadsSync: this.io.reads!.counts.sync,
      pageReadsSlow: this.io.reads!.counts.slow,
      pageReadHolds: this.io.reads!.counts.holds,
      pageWrites: this.io.pageWrites,
      evictions: this.cache.evictions,
      checkpoints: this.checkpointsDone,
    };
  }

  /** Recovers checkpoint journals (see the recovery table), then accepts partitions. */
  async open(): Promise<void> {
    assert(this.status === 'new', `PageMemory.open() in state ${this.status}`);
    this.status = 'opening';
    try {
      const dir = path.resolve(this.opts.journalDir);
      this.recovery = await recoverCheckpointJournals(this.fl, dir, path.dirname(dir), this.opts.log);
    } catch (err) {
      this.status = 'closed';
      throw err;
    }
    this.status = 'open';
  }

  private checkUsable(): void {
    if (this.status === 'new' || this.status === 'opening') throw ptnError(ErrorCode.ERR_NOT_OPEN, 'page memory is not open');
    if (this.status !== 'open') throw ptnError(ErrorCode.ERR_CLOSED, 'page memory is closed');
    if (this.failure) {
      throw ptnError(this.failure.code, `page memory failed at an earlier checkpoint: ${this.failure.message}`, { cause: this.failure });
    }
  }

  private register(file: PartitionFile, meta: MetaState): PartitionStore {
    const ps = new PartitionStore({ cache: this.cache, gate: this.gate, storage: this.opts.storage }, file, meta);
    this.partitions.add(ps);
    this.byPath.set(path.resolve(file.path), ps);
    this.nextCheckpointId = Math.max(this.nextCheckpointId, meta.checkpointId + 1);
    return ps;
  }

  /** Creates a new empty partition file (fsynced, directory fsynced) and opens it. */
  async createPartition(filePath: string, id: PartitionIdentity): Promise<PartitionStore> {
    this.checkUsable();
    assertIdentity(id);
    assert(!this.byPath.has(path.resolve(filePath)), `partition ${filePath} is open`);
    const s = this.opts.storage;
    const meta: MetaState = {
      pageSize: s.pageSizeBytes,
      identity: { ...id },
      checkpointId: 0,
      entryCount: 0,
      tombstoneCount: 0,
      pageCount: 1,
      rootPage: 0,
      treeHeight: 0,
      freeListHead: 0,
      freePageCount: 0,
      counterState: new UpdateCounter(s.counterGapsMax).encode(),
    };
    const image = encodeMetaPage(meta);
    sealPage(image, 0, 0);
    const file = await PartitionFile.create(this.fl, filePath, image, this.io);
    return this.register(file, meta);
  }

  /** Opens an existing partition file: reads and validates its meta page, nothing else. */
  async openPartition(filePath: string, id: PartitionIdentity): Promise<PartitionStore> {
    this.checkUsable();
    assert(!this.byPath.has(path.resolve(filePath)), `partition ${filePath} is already open`);
    const s = this.opts.storage;
    const { file, meta } = await PartitionFile.open(this.fl, filePath, 'r+', { gapsMax: s.counterGapsMax, pageSizeHint: s.pageSizeBytes, io: this.io });
    try {
      checkIdentity(meta, id, filePath);
      checkGeometry(meta.pageSize, s);
      if (file.lengthPages > meta.pageCount) await file.setLengthPages(meta.pageCount);
    } catch (err) {
      await file.close().catch(() => {});
      throw err;
    }
    return this.register(file, meta);
  }

  /**
   * Swap-in: validates `srcPath` (meta page; every page in use when verify is 'full'), renames it
   * over `destPath` (directory fsynced) and opens it. Wrong cluster/cache/partition/version → coded
   * error, src untouched. Any PartitionStore of destPath must have been destroyed first.
   */
  async restorePartition(srcPath: string, destPath: string, id: PartitionIdentity, verify: 'meta' | 'full' = 'meta'): Promise<PartitionStore> {
    this.checkUsable();
    assert(!this.byPath.has(path.resolve(destPath)), `destroy the open partition ${destPath} before restoring over it`);
    const s = this.opts.storage;
    const { file, meta } = await PartitionFile.open(this.fl, srcPath, 'r', { gapsMax: s.counterGapsMax, pageSizeHint: s.pageSizeBytes, io: this.io });
    try {
      checkIdentity(meta, id, srcPath);
      checkGeometry(meta.pageSize, s);
      if (verify === 'full') await this.verifyAllPages(file, meta);
    } finally {
      await file.close();
    }
    try {
      await this.fl.rename(srcPath, destPath);
      await this.fl.syncDir(path.dirname(path.resolve(destPath)));
      if (path.dirname(path.resolve(srcPath)) !== path.dirname(path.resolve(destPath))) await this.fl.syncDir(path.dirname(path.resolve(srcPath)));
    } catch (err) {
      throw fsError(err, `swap ${srcPath} in as ${destPath}`);
    }
    return this.openPartition(destPath, id);
  }

  /** Checkpoints begun after this call await `pace` between sealing slices (undefined: a bare event-loop hop). */
  setPace(pace: Pace | undefined): void {
    this.pace = pace;
  }

  /**
   * Reads the partition's live pages into the cache (PartitionStore.prewarm) when the whole file
   * fits in `bytesMax` and in the cache's free room, else nothing; returns the bytes cached. A
   * file that does not fit is left to demand reads: the catch-up bench at 1M (1,341 MiB of files,
   * a 512 MiB cache) took 3.6 s instead of 0.4 s to swap in when each partition warmed what room
   * was left, and the replays then evicted most of it again (join 18.3 s against 16.3 s); with
   * whole files only (84 MiB each, as many as fit) swap-in still took 3.6 s, hence the default
   * limit of rebalance.prewarmBytesMax (32 MiB: the 8.4 MiB files at 100k are warmed, REPLAYING
   * 2.9–3.7 s → 0.4–0.8 s).
   */
  async prewarmPartition(p: PartitionStore, bytesMax: number, pace?: Pace): Promise<number> {
    this.checkUsable();
    const fits = p.fileBytes() <= Math.min(bytesMax, this.cache.budgetBytes - this.cache.cachedBytes);
    return fits ? p.prewarm(bytesMax, pace) : 0;
  }

  /** Checks the CRC and header of every page the file's state uses (free pages may hold anything). */
  private async verifyAllPages(file: PartitionFile, meta: MetaState): Promise<void> {
    const { entries } = await readFreeListChain((i) => file.readPage(i, PageType.FREE_LIST), meta.freeListHead, meta.freePageCount, meta.pageCount, file.path);
    const free = new Set(entries);
    for (let first = 1; first < meta.pageCount; first += VERIFY_BATCH_PAGES) {
      const n = Math.min(VERIFY_BATCH_PAGES, meta.pageCount - first);
      const bytes = await file.readRawPages(first, n);
      for (let i = 0; i < n; i++) {
        const index = first + i;
        if (free.has(index)) continue;
        // Past a short read (the file ends early) the slice is empty, which pageProblem reports.
        const problem = pageProblem(bytes.subarray(i * meta.pageSize, (i + 1) * meta.pageSize), index);
        if (problem !== undefined) {
          throw ptnError(ErrorCode.ERR_PAGE_CORRUPT, `${file.path}: page ${index} is corrupt: ${problem}`, { details: { pageIndex: index, reason: problem, path: file.path } });
        }
      }
    }
  }

  /**
   * Drops every cached page of the partition (dirty ones are discarded), removes it from a
   * checkpoint that has not started its journal (or waits for one that has), closes the file, and
   * deletes it when asked.
   */
  async destroyPartition(p: PartitionStore, opts: { deleteFile: boolean }): Promise<void> {
    this.partitions.delete(p);
    if (this.byPath.get(path.resolve(p.path)) === p) this.byPath.delete(path.resolve(p.path));
    await p.shut('destroyed', async () => {
      if (this.running) await this.running.drop(p);
    });
    if (opts.deleteFile) {
      try {
        if (await this.fl.exists(p.path)) await this.fl.unlink(p.path);
        await this.fl.syncDir(path.dirname(path.resolve(p.path)));
      } catch (err) {
        throw fsError(err, `delete partition file ${p.path}`);
      }
    }
  }

  /** Enters the mutation gate (waits while a capture holds it closed). */
  enterMutation(): Promise<void> {
    try {
      this.checkUsable();
    } catch (err) {
      return Promise.reject(err);
    }
    return this.gate.enter();
  }

  exitMutation(): void {
    this.gate.exit();
  }

  /** Resolves when dirty bytes are below the page cache budget (await it before enterMutation). */
  waitForRoom(): Promise<void> {
    if (this.failure || this.status !== 'open') return Promise.resolve();
    return this.cache.waitForRoom();
  }

  /**
   * Captures a checkpoint at a quiescent instant (see the file comment): waits for the previous
   * checkpoint to finish writing, closes the gate, waits for mutations in flight, calls
   * `atCapture`, captures every changed partition (meta page + dirty pages), reopens the gate.
   * The caller must call `checkpoint.write()`.
   */
  async beginCheckpoint<T>(atCapture: () => T): Promise<{ captured: T; checkpoint: CheckpointWrite }> {
    this.checkUsable();
    const previous = this.checkpointTail;
    let release!: () => void;
    this.checkpointTail = new Promise((resolve) => (release = resolve));
    try {
      await previous;
      this.checkUsable();
      this.cache.checkpointStarted();
      await this.gate.closeAndDrain();
      let captured: T;
      let ckpt: Checkpoint;
      try {
        captured = atCapture();
        const id = this.nextCheckpointId++;
        const files = [];
        for (const p of this.partitions) {
          const c = p.capture(id);
          if (c) files.push(c);
        }
        ckpt = new Checkpoint(id, files, {
          fl: this.fl,
          cache: this.cache,
          journalDir: path.resolve(this.opts.journalDir),
          baseDir: path.dirname(path.resolve(this.opts.journalDir)),
          onFinished: (err) => this.checkpointFinished(ckpt, err, release),
          pace: this.pace,
        });
        this.running = ckpt;
      } finally {
        this.gate.open();
      }
      return { captured, checkpoint: ckpt };
    } catch (err) {
      this.cache.checkpointFinished();
      release();
      throw err;
    }
  }

  private checkpointFinished(ckpt: Checkpoint, err: unknown, release: () => void): void {
    if (this.running === ckpt) this.running = undefined;
    if (err === undefined) this.checkpointsDone++;
    else if (!this.failure) {
      this.failure = isPtnError(err) ? err : fsError(err, `checkpoint ${ckpt.checkpointId}`);
      this.opts.log?.('page memory failed: checkpoint write error; restart to recover', { checkpointId: ckpt.checkpointId, error: String(err) });
      this.cache.close();
    }
    this.cache.checkpointFinished();
    release();
  }

  /** Closes every partition file (no checkpoint: the store takes one first). Idempotent. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = (async () => {
      this.status = 'closing';
      if (this.running?.started) await this.running.done;
      for (const p of [...this.partitions]) await p.shut('closed', async () => {}).catch(() => {});
      this.partitions.clear();
      this.byPath.clear();
      this.cache.close();
      this.status = 'closed';
    })();
    return this.closing;
  }
}
