/**
 * One checkpoint's write: turns the pages captured at a quiescent instant into the new committed
 * state of every captured partition file, crash-consistently (algorithm and its reasoning at the
 * top of page-memory.ts). Steps, per checkpoint:
 *
 *   1. FRESH pages (not referenced by the committed state) written in place, ascending, coalesced;
 *      files extended to their captured page count;
 *   2. the checkpoint journal holding every OVERWRITE page image (the meta pages included);
 *   3. fsync of the files touched in 1, of the journal and of its directory (concurrently);
 *   4. OVERWRITE pages written in place; fsync of the files;
 *   5. journal deleted, its directory fsynced; the committed state of each file advances.
 *
 * A partition destroyed before step 2 starts is simply left out (its fresh pages are unreferenced
 * garbage in a file that still holds its committed state); after that, destroy waits for the end.
 * A failure anywhere fails the whole page memory (see page-memory.ts): what is on disk is then
 * either the old state or, through the journal at the next open, the new one.
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import path from 'node:path';
import { assert, fsError } from '../errors.js';
import type { FileLayer } from '../util/file-layer.js';
import { writeCheckpointJournal } from './checkpoint-journal.js';
import type { CacheSegment, PageCache } from './page-cache.js';
import { sealPage } from './page.js';

/** Pages sealed between two yields to the event loop (about 1 ms of CRC). */
const SEAL_SLICE_PAGES = 256;
import type { PageImage, PartitionFile } from './partition-file.js';

/** The durable write of one checkpoint, handed out by PageMemory.beginCheckpoint. */
export interface CheckpointWrite {
  readonly checkpointId: number;
  /** Writes the captured pages durably. Resolves with stats. */
  write(): Promise<CheckpointStats>;
}

export interface CheckpointStats {
  /** Partition-file pages written (fresh + overwrite). */
  pages: number;
  bytes: number;
  /** Pages that went through the journal. */
  journalPages: number;
  files: number;
}

/** What a partition hands to a checkpoint at the capture. */
export interface CapturedFile {
  /** Identifies the owner (for dropping a destroyed partition). */
  readonly owner: object;
  readonly file: PartitionFile;
  readonly seg: CacheSegment;
  /** Ascending. */
  readonly fresh: PageImage[];
  /** Ascending; includes the meta page 0. */
  readonly overwrite: PageImage[];
  /** File length in pages of the captured state. */
  readonly pageCount: number;
  /** Advances the owner's committed state (called once the new state is durable). */
  commit(): void;
}

interface FileState {
  c: CapturedFile;
  dropped: boolean;
  io: Promise<void>;
  /** Captured bytes still counted in the cache's pendingWriteBytes. */
  unreleasedBytes: number;
  touched: boolean;
}

type Phase = 'captured' | 'fresh' | 'journal' | 'overwrite' | 'done' | 'failed';

export interface CheckpointEnv {
  fl: FileLayer;
  cache: PageCache;
  journalDir: string;
  /** Paths in the journal are relative to this. */
  baseDir: string;
  /** Called once when the write ends, with the error when it failed. */
  onFinished(err: unknown): void;
  /** Awaited between sealing slices, after their event-loop hop (the node's ForegroundPacer). */
  pace?: () => Promise<void>;
}

export class Checkpoint implements CheckpointWrite {
  private phase: Phase = 'captured';
  private readonly files: FileState[];
  private resolveDone!: () => void;
  /** Settles (never rejects) when write() has ended. */
  readonly done: Promise<void>;

  constructor(
    readonly checkpointId: number,
    captured: CapturedFile[],
    private readonly env: CheckpointEnv,
  ) {
    this.files = captured.map((c) => ({
      c,
      dropped: false,
      io: Promise.resolve(),
      unreleasedBytes: [...c.fresh, ...c.overwrite].reduce((n, p) => n + p.image.length, 0),
      touched: false,
    }));
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  /** True once write() was called. */
  get started(): boolean {
    return this.phase !== 'captured';
  }

  /** True when `owner` has pages in this checkpoint. */
  has(owner: object): boolean {
    return this.files.some((f) => f.c.owner === owner && !f.dropped);
  }

  /**
   * Removes a partition being destroyed: left out when the journal has not started (resolves
   * when any write to its file in progress has finished), else resolves when the checkpoint ends.
   */
  async drop(owner: object): Promise<void> {
    const f = this.files.find((x) => x.c.owner === owner);
    if (f === undefined || f.dropped) return;
    if (this.phase === 'captured' || this.phase === 'fresh') {
      f.dropped = true;
      this.release(f);
      await f.io.catch(() => {});
      return;
    }
    await this.done;
  }

  private release(f: FileState): void {
    if (f.unreleasedBytes > 0) this.env.cache.releasePending(f.unreleasedBytes);
    f.unreleasedBytes = 0;
  }

  private written(f: FileState, run: readonly PageImage[]): void {
    if (f.dropped) return;
    for (const p of run) {
      f.c.seg.written(p.index, p.image);
      f.unreleasedBytes -= p.image.length;
    }
  }

  async write(): Promise<CheckpointStats> {
    assert(this.phase === 'captured', `checkpoint ${this.checkpointId} written twice`);
    this.phase = 'fresh';
    let failure: unknown;
    try {
      return await this.run();
    } catch (err) {
      failure = err instanceof Error && err.name === 'AssertionError' ? err : fsError(err, `checkpoint ${this.checkpointId}`);
      this.phase = 'failed';
      for (const f of this.files) this.release(f);
      throw failure;
    } finally {
      this.resolveDone();
      this.env.onFinished(failure);
    }
  }

  private async run(): Promise<CheckpointStats> {
    // Sealing (a CRC per page) in slices: tens of thousands of pages in one go held the event loop
    // for hundreds of ms, and with it every write the node was acknowledging. The images are the
    // checkpoint's own copies (copy-on-write), so nothing changes them between slices. With a pace
    // (a node that only supplies, rebalance.yieldLagMs on) the slices also wait their turn behind
    // the writes: the supplier's snapshot checkpoint after 10 s of writes at 10k/s (all 34k pages
    // of 134 MiB dirty) held node-1 at 100% for 1.5 s and left the writes a backlog.
    let sealed = 0;
    for (const f of this.files) {
      if (f.dropped) continue;
      for (const list of [f.c.fresh, f.c.overwrite]) {
        for (const p of list) {
          sealPage(p.image, p.index, this.checkpointId);
          if (++sealed % SEAL_SLICE_PAGES === 0) {
            await yieldToLoop();
            if (this.env.pace) await this.env.pace();
          }
        }
      }
    }
    // 1. fresh pages in place
    for (const f of this.files) {
      if (f.dropped) continue;
      f.io = this.writeFresh(f);
      await f.io;
    }
    this.phase = 'journal';
    const live = this.files.filter((f) => !f.dropped);
    const stats: CheckpointStats = { pages: 0, bytes: 0, journalPages: 0, files: live.length };
    if (live.length > 0) {
      // 2 + 3. the journal, and fsync of everything written so far
      const { env } = this;
      const [journal] = await Promise.all([
        writeCheckpointJournal(
          env.fl,
          env.journalDir,
          env.baseDir,
          this.checkpointId,
          live.map((f) => ({ path: path.resolve(f.c.file.path), pageSize: f.c.file.pageSize, pages: f.c.overwrite })),
        ),
        ...live.filter((f) => f.touched).map((f) => f.c.file.sync()),
      ]);
      // 4. overwrite pages in place
      this.phase = 'overwrite';
      for (const f of live) await f.c.file.writePages(f.c.overwrite, (run) => this.written(f, run));
      await Promise.all(live.map((f) => f.c.file.sync()));
      // 5. the journal goes; the new state is the committed one
      await env.fl.unlink(journal.path);
      await env.fl.syncDir(env.journalDir);
      for (const f of live) {
        stats.pages += f.c.fresh.length + f.c.overwrite.length;
        stats.bytes += (f.c.fresh.length + f.c.overwrite.length) * f.c.file.pageSize;
        stats.journalPages += f.c.overwrite.length;
      }
    }
    this.phase = 'done';
    for (const f of live) f.c.commit();
    return stats;
  }

  private async writeFresh(f: FileState): Promise<void> {
    if (f.c.fresh.length > 0) {
      f.touched = true;
      await f.c.file.writePages(f.c.fresh, (run) => this.written(f, run));
    }
    if (f.c.file.lengthPages < f.c.pageCount) {
      f.touched = true;
      await f.c.file.setLengthPages(f.c.pageCount);
    }
  }
}
