/**
 * The copy-on-write delta of one snapshot: checkpoint images of pages that were overwritten in the
 * partition file after the snapshot was armed, spilled to a scratch file so a long transfer under
 * heavy writes never holds them in memory. Only the index (page → slot offset, CRC) is in memory.
 *
 * Layout: page images back to back, slot i at i × pageSize. No header: the file lives only as long
 * as its transfer, is never read after a restart (the supplier empties `<dataDir>/tmp/supplier/`
 * when it starts), and is not fsynced. The CRC of each image is kept in the index and checked when
 * the image is read back (check after every read).
 *
 * Invariant: an index entry exists only once its image is fully written, so a reader that finds
 * the entry can read the image, and a reader that does not find it knows the page in the partition
 * file was not yet overwritten when the listener ran (see snapshot.ts).
 */
import { ErrorCode, assert, fsError, ptnError } from '../errors.js';
import type { FileLayer, FileLike } from '../util/file-layer.js';
import { crc32 } from '../util/crc32.js';

interface Slot {
  offset: number;
  crc: number;
}

/** One snapshot's delta file. */
export class DeltaFile {
  private readonly index = new Map<number, Slot>();
  private nextOffset = 0;
  private closed = false;

  private constructor(
    private readonly fl: FileLayer,
    readonly path: string,
    private readonly fh: FileLike,
    readonly pageSize: number,
  ) {}

  /** Creates (or truncates) the delta file. */
  static async create(fl: FileLayer, filePath: string, pageSize: number): Promise<DeltaFile> {
    try {
      return new DeltaFile(fl, filePath, await fl.open(filePath, 'w+'), pageSize);
    } catch (err) {
      throw fsError(err, `create snapshot delta ${filePath}`);
    }
  }

  /** Pages saved so far. */
  get pages(): number {
    return this.index.size;
  }

  /** Bytes of the file. */
  get bytes(): number {
    return this.nextOffset;
  }

  has(pageIndex: number): boolean {
    return this.index.has(pageIndex);
  }

  /** Appends the checkpoint image of `pageIndex`; the index entry appears once it is written. */
  async save(pageIndex: number, image: Buffer): Promise<void> {
    this.checkOpen();
    assert(image.length === this.pageSize, `delta image of ${image.length} bytes, page size ${this.pageSize}`);
    assert(!this.index.has(pageIndex), `page ${pageIndex} is already in the delta`);
    const offset = this.nextOffset;
    this.nextOffset += this.pageSize; // reserved synchronously: concurrent saves never share a slot
    try {
      await this.fh.write(image, 0, image.length, offset);
    } catch (err) {
      throw fsError(err, `write snapshot delta ${this.path}`);
    }
    this.index.set(pageIndex, { offset, crc: crc32(image) });
  }

  /** Reads the saved image of `pageIndex` into `target` (exactly one page). False when not saved. */
  async readInto(pageIndex: number, target: Buffer): Promise<boolean> {
    const slot = this.index.get(pageIndex);
    if (slot === undefined) return false;
    this.checkOpen();
    assert(target.length === this.pageSize, 'delta read target must be one page');
    let got: number;
    try {
      got = await this.fh.read(target, 0, this.pageSize, slot.offset);
    } catch (err) {
      throw fsError(err, `read snapshot delta ${this.path}`);
    }
    if (got !== this.pageSize || crc32(target) !== slot.crc) {
      throw ptnError(ErrorCode.ERR_IO, `snapshot delta ${this.path}: page ${pageIndex} reads back wrong`, { details: { pageIndex, got } });
    }
    return true;
  }

  /** Closes and deletes the file; idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.index.clear();
    try {
      await this.fh.close();
    } finally {
      await this.fl.rm(this.path);
    }
  }

  private checkOpen(): void {
    if (this.closed) throw ptnError(ErrorCode.ERR_CLOSED, `snapshot delta ${this.path} is closed`);
  }
}
