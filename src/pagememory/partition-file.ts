/**
 * One partition file on disk: create, open (meta page only), page reads and coalesced page writes.
 *
 * Role: the only code that touches a partition file's bytes. Every page read is checked (CRC and
 * header) right after the read; every page is checked right before it is written. Contiguous pages
 * go out in one `writev`.
 *
 * The page-write hook: listeners registered with `addWriteListener` are called and awaited before
 * any page that already exists in the file (index < current length in pages) is overwritten, on
 * every write path (checkpoint fresh pages, checkpoint overwrites, journal redo all come through
 * `writePages`). The rebalance supplier's copy-on-write snapshot hangs on this: it saves the page's
 * on-disk image (`readCurrentImage`) before it changes.
 */
import path from 'node:path';
import { assert, ErrorCode, fsError, ptnError } from '../errors.js';
import type { FileLayer, FileLike } from '../util/file-layer.js';
import type { PageReads } from './page-reads.js';
import { checkPage, PAGE_SIZE_MIN, pageProblem, type PageType } from './page.js';
import { decodeMetaPage, type MetaState, peekMetaHeader } from './meta-page.js';

/** Called before an existing page is overwritten; `readCurrentImage` reads its on-disk bytes. */
export type WriteListener = (pageIndex: number, readCurrentImage: () => Promise<Buffer>) => Promise<void> | void;

/** One page to write: its index and its sealed image. */
export interface PageImage {
  index: number;
  image: Buffer;
}

/** I/O counters shared by every file of a PageMemory. */
export interface IoCounters {
  pageReads: number;
  pageWrites: number;
  /** How single page reads reach the file (page-reads.ts); the thread pool when absent. */
  reads?: PageReads;
}

/** Most pages one `writev` carries (bounded below IOV_MAX). */
export const WRITE_RUN_PAGES_MAX = 256;
/** Runs (write or writev calls) of one `writePages` in the thread pool at once. */
export const WRITES_IN_FLIGHT_MAX = 16;

/** An open partition file. Not safe for concurrent writers: the checkpoint is the only one. */
export class PartitionFile {
  private readonly listeners: WriteListener[] = [];
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly fh: FileLike,
    readonly pageSize: number,
    private length: number,
    private readonly io: IoCounters,
  ) {}

  /**
   * Creates (or replaces) a file holding just `metaImage` (a sealed page 0), fsyncs it and its
   * directory.
   */
  static async create(fl: FileLayer, filePath: string, metaImage: Buffer, io: IoCounters): Promise<PartitionFile> {
    checkPage(metaImage, 0);
    let fh: FileLike | undefined;
    try {
      fh = await fl.open(filePath, 'w+');
      await fh.write(metaImage, 0, metaImage.length, 0);
      await fh.sync();
      await fl.syncDir(path.dirname(filePath));
    } catch (err) {
      await fh?.close().catch(() => {});
      throw fsError(err, `create partition file ${filePath}`);
    }
    io.pageWrites++;
    return new PartitionFile(filePath, fh, metaImage.length, 1, io);
  }

  /**
   * Opens a file and decodes its meta page: one read of `pageSizeHint` bytes (a second only when the
   * file's page size is larger). Does not check the identity (callers do). `mode` 'r' for validation
   * of a file that must stay untouched. A file shorter than its page count says is ERR_FILE_FORMAT.
   */
  static async open(
    fl: FileLayer,
    filePath: string,
    mode: 'r' | 'r+',
    opts: { gapsMax: number; pageSizeHint: number; io: IoCounters },
  ): Promise<{ file: PartitionFile; meta: MetaState; fileBytes: number }> {
    let fh: FileLike;
    try {
      fh = await fl.open(filePath, mode);
    } catch (err) {
      throw fsError(err, `open partition file ${filePath}`);
    }
    try {
      const fileBytes = await fh.size();
      const head = Buffer.allocUnsafe(Math.min(fileBytes, Math.max(opts.pageSizeHint, PAGE_SIZE_MIN)));
      const got = await fh.read(head, 0, head.length, 0);
      opts.io.pageReads++;
      const { pageSize } = peekMetaHeader(head.subarray(0, Math.max(got, 0)), filePath);
      if (fileBytes < pageSize) throw ptnError(ErrorCode.ERR_FILE_FORMAT, `${filePath}: ${fileBytes} bytes is shorter than one page`);
      let page0 = head.subarray(0, pageSize);
      if (head.length < pageSize) {
        page0 = Buffer.allocUnsafe(pageSize);
        head.copy(page0);
        await fh.read(page0, head.length, pageSize - head.length, head.length);
        opts.io.pageReads++;
      }
      const meta = decodeMetaPage(page0, opts.gapsMax, filePath);
      if (fileBytes < meta.pageCount * pageSize) {
        throw ptnError(ErrorCode.ERR_FILE_FORMAT, `${filePath}: ${fileBytes} bytes, meta page says ${meta.pageCount} pages of ${pageSize}`, {
          details: { path: filePath, fileBytes, pageCount: meta.pageCount },
        });
      }
      return { file: new PartitionFile(filePath, fh, pageSize, Math.floor(fileBytes / pageSize), opts.io), meta, fileBytes };
    } catch (err) {
      await fh.close().catch(() => {});
      throw fsError(err, `open partition file ${filePath}`);
    }
  }

  /** Current length in whole pages. */
  get lengthPages(): number {
    return this.length;
  }

  /** Registers a listener called before existing pages are overwritten; returns its remover. */
  addWriteListener(l: WriteListener): () => void {
    this.listeners.push(l);
    return () => {
      const i = this.listeners.indexOf(l);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /** Reads page `index` without checking it (zeros past the end of the file). */
  async readRaw(index: number): Promise<Buffer> {
    this.checkOpen();
    const buf = Buffer.alloc(this.pageSize);
    try {
      await this.fh.read(buf, 0, this.pageSize, index * this.pageSize);
    } catch (err) {
      throw fsError(err, `read page ${index} of ${this.path}`);
    }
    return buf;
  }

  /**
   * Reads `count` pages from `first` unchecked into a buffer of its own (not pooled, not
   * zero-filled), cut to the whole pages read: shorter only where the file ends.
   */
  async readRawPages(first: number, count: number): Promise<Buffer> {
    this.checkOpen();
    const buf = Buffer.allocUnsafeSlow(count * this.pageSize);
    let got: number;
    try {
      got = await this.fh.read(buf, 0, buf.length, first * this.pageSize);
    } catch (err) {
      throw fsError(err, `read pages ${first}..${first + count - 1} of ${this.path}`);
    }
    const pages = Math.floor(got / this.pageSize);
    this.io.pageReads += pages;
    return buf.subarray(0, pages * this.pageSize);
  }

  /** Reads and checks page `index` (ERR_PAGE_CORRUPT when the check fails, or the page is beyond the end). */
  async readPage(index: number, expectedType?: PageType): Promise<Buffer> {
    this.checkOpen();
    const buf = Buffer.allocUnsafe(this.pageSize);
    let got: number;
    try {
      const pos = index * this.pageSize;
      got = await (this.io.reads ? this.io.reads.read(this.fh, buf, 0, this.pageSize, pos) : this.fh.read(buf, 0, this.pageSize, pos));
    } catch (err) {
      throw fsError(err, `read page ${index} of ${this.path}`);
    }
    this.io.pageReads++;
    if (got !== this.pageSize) {
      throw ptnError(ErrorCode.ERR_PAGE_CORRUPT, `page ${index} of ${this.path} is beyond the end of the file`, {
        details: { pageIndex: index, path: this.path, reason: 'short read' },
      });
    }
    checkPage(buf, index, expectedType, this.path);
    return buf;
  }

  /**
   * Writes sealed pages, ascending by index, contiguous runs coalesced into one writev each.
   * Listeners are awaited before each run for the pages of the run that already exist.
   * `onRunWritten` is told about every run once it is handed to the OS (not yet durable).
   */
  async writePages(pages: readonly PageImage[], onRunWritten?: (run: readonly PageImage[]) => void): Promise<void> {
    this.checkOpen();
    for (let i = 0; i < pages.length; i++) {
      const p = pages[i]!;
      assert(i === 0 || p.index > pages[i - 1]!.index, 'writePages: pages must be ascending and unique');
      assert(p.image.length === this.pageSize, `writePages: page ${p.index} image is ${p.image.length} bytes`);
      const problem = pageProblem(p.image, p.index);
      assert(problem === undefined, `writePages: page ${p.index} of ${this.path} fails its check before write: ${problem}`);
    }
    // Runs are disjoint, so they may be written in any order: keep up to WRITES_IN_FLIGHT_MAX of them
    // in the thread pool at once (one at a time left a checkpoint of 40k scattered pages waiting on
    // 40k thread-pool round trips). Each run still has its listeners (copy-on-write) awaited first.
    const runs: PageImage[][] = [];
    for (let i = 0; i < pages.length; ) {
      let j = i + 1;
      while (j < pages.length && j - i < WRITE_RUN_PAGES_MAX && pages[j]!.index === pages[j - 1]!.index + 1) j++;
      runs.push(pages.slice(i, j));
      i = j;
    }
    const existingPages = this.length; // pages past it are new: no listener wants their old image
    let next = 0;
    let failure: unknown;
    const worker = async (): Promise<void> => {
      while (failure === undefined && next < runs.length) {
        const run = runs[next++]!;
        try {
          await this.writeRun(run, existingPages);
        } catch (err) {
          failure ??= err;
          return;
        }
        onRunWritten?.(run);
      }
    };
    await Promise.all(Array.from({ length: Math.min(WRITES_IN_FLIGHT_MAX, runs.length) }, worker));
    if (failure !== undefined) throw failure;
  }

  /** Listeners first (copy-on-write), then one write or writev of consecutive pages. */
  private async writeRun(run: readonly PageImage[], existingPages: number): Promise<void> {
    await this.notifyListeners(run, existingPages);
    try {
      if (run.length === 1) await this.fh.write(run[0]!.image, 0, this.pageSize, run[0]!.index * this.pageSize);
      else await this.fh.writev(run.map((p) => p.image), run[0]!.index * this.pageSize);
    } catch (err) {
      throw fsError(err, `write pages ${run[0]!.index}..${run[run.length - 1]!.index} of ${this.path}`);
    }
    this.io.pageWrites += run.length;
    this.length = Math.max(this.length, run[run.length - 1]!.index + 1);
  }

  private async notifyListeners(run: readonly PageImage[], existingPages: number): Promise<void> {
    if (this.listeners.length === 0) return;
    const listeners = this.listeners.slice();
    for (const p of run) {
      if (p.index >= existingPages) break;
      const read = () => this.readRaw(p.index);
      for (const l of listeners) await l(p.index, read);
    }
  }

  /** Sets the file length to `pages` pages (extends with zeros or cuts). */
  async setLengthPages(pages: number): Promise<void> {
    this.checkOpen();
    try {
      await this.fh.truncate(pages * this.pageSize);
    } catch (err) {
      throw fsError(err, `truncate ${this.path}`);
    }
    this.length = pages;
  }

  /** fsync. */
  async sync(): Promise<void> {
    this.checkOpen();
    try {
      await this.fh.sync();
    } catch (err) {
      throw fsError(err, `fsync ${this.path}`);
    }
  }

  /** Closes the file; idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.length = 0;
    try {
      await this.fh.close();
    } catch (err) {
      throw fsError(err, `close ${this.path}`);
    }
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private checkOpen(): void {
    if (this.closed) throw ptnError(ErrorCode.ERR_CLOSED, `partition file ${this.path} is closed`);
  }
}
