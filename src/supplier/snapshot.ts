/**
 * A consistent snapshot of one partition file while writes continue: the checkpoint image.
 *
 * How: the store arms the snapshot synchronously at the end of a checkpoint (store.snapshotCheckpoint):
 * the file on disk then holds exactly the committed state, `fileBytes` long. From then on the
 * page-write listener (`onPageWrite`, awaited by PartitionFile before an existing page is
 * overwritten) saves the page's on-disk image to the delta file the first time that page is
 * about to change — unless the page lies below what the demander acknowledged (it was delivered
 * and will never be asked for again) or beyond `fileBytes` (not part of the snapshot). Reads
 * merge file + delta: the file range is read first, then every page found in the delta index is
 * replaced by its saved image. So the bytes served are exactly the checkpoint image.
 *
 * Why the read order is safe (a page p inside a range being read while a checkpoint writes it):
 *   - the listener saves p's image and records it in the index BEFORE the overwrite starts;
 *   - so if the file read saw the new bytes of p, the index already had p when the read ended,
 *     and the merge step replaces them; if the index lacked p when the read ended, the overwrite
 *     had not started, and the file bytes are the checkpoint image.
 *   - a listener failure (delta disk full…) breaks the snapshot before the overwrite happens:
 *     every later read, and a read in progress, fails with ERR_SNAPSHOT_GONE (never wrong bytes).
 *
 * The running CRC of the image is kept at every chunk boundary reached from 0 by contiguous served
 * chunks (each chunk's own CRC is combined in, in any serving order: chunks may be read in
 * parallel), so the trailer's whole-file CRC is known without re-reading, also after a resume
 * (boundaries below the acknowledged offset are dropped: they can no longer be resumed from).
 */
import { ErrorCode, assert, fsError, isPtnError, ptnError, type PtnError } from '../errors.js';
import type { FileLayer, FileLike } from '../util/file-layer.js';
import { crc32 } from '../util/crc32.js';
import { crc32Combine } from './crc32-combine.js';
import { DeltaFile } from './delta-file.js';

type State = 'new' | 'armed' | 'broken' | 'closed';

/** Options of PartitionSnapshot.open(). */
export interface SnapshotOptions {
  fl: FileLayer;
  /** The partition file (opened read-only here; a later unlink or rename does not disturb the open handle). */
  filePath: string;
  /** Where to spill the delta (created, deleted on close). */
  deltaPath: string;
  pageSize: number;
  /** Called once per page saved to the delta. */
  onDeltaPage?: () => void;
  /** Called once when the snapshot breaks (the listener could not save a page). */
  onBroken?: (err: PtnError) => void;
}

/** File + copy-on-write delta of one partition as of one checkpoint. */
export class PartitionSnapshot {
  private state: State = 'new';
  private brokenBy: PtnError | undefined;
  /** Length of the image (set at arm). */
  fileBytes = 0;
  private pages = 0;
  /** What the demander acknowledged: pages below are never saved nor served again. */
  private ackedBytes = 0;
  /** End of the furthest chunk served. */
  private servedEnd = 0;
  /** Running CRC-32 of the image [0, offset) at chunk boundaries reached contiguously from 0. */
  private readonly crcAt = new Map<number, number>([[0, 0]]);
  /** Chunks served whose start boundary has no running CRC yet: offset → own CRC and length. */
  private readonly loose = new Map<number, { crc: number; bytes: number }>();
  private readonly saving = new Set<number>();
  private removeListener: (() => void) | undefined;

  private constructor(
    private readonly opts: SnapshotOptions,
    private readonly file: FileLike,
    private readonly delta: DeltaFile,
  ) {}

  /** Opens the partition file for reading and creates the delta file. Call `arm` next. */
  static async open(opts: SnapshotOptions): Promise<PartitionSnapshot> {
    let file: FileLike;
    try {
      file = await opts.fl.open(opts.filePath, 'r');
    } catch (err) {
      throw fsError(err, `open ${opts.filePath} for a snapshot`);
    }
    try {
      return new PartitionSnapshot(opts, file, await DeltaFile.create(opts.fl, opts.deltaPath, opts.pageSize));
    } catch (err) {
      await file.close().catch(() => undefined);
      throw err;
    }
  }

  get pageSize(): number {
    return this.opts.pageSize;
  }

  /** Pages saved to the delta. */
  get deltaPages(): number {
    return this.delta.pages;
  }

  /** The acknowledged offset (the floor of what may still be asked for). */
  get acked(): number {
    return this.ackedBytes;
  }

  /**
   * The page-write listener; register it with PartitionStore.addWriteListener at the arm. Never
   * throws: a failure to save breaks this snapshot instead of failing the checkpoint.
   */
  readonly onPageWrite = async (pageIndex: number, readCurrentImage: () => Promise<Buffer>): Promise<void> => {
    if (this.state !== 'armed' || pageIndex >= this.pages) return;
    if (pageIndex * this.opts.pageSize < this.ackedBytes) return;
    if (this.delta.has(pageIndex) || this.saving.has(pageIndex)) return;
    this.saving.add(pageIndex);
    try {
      const image = await readCurrentImage();
      if (this.state !== 'armed') return;
      await this.delta.save(pageIndex, image);
      this.opts.onDeltaPage?.();
    } catch (err) {
      this.break(isPtnError(err) ? err : fsError(err, `save page ${pageIndex} to the snapshot delta`));
    } finally {
      this.saving.delete(pageIndex);
    }
  };

  /**
   * Called synchronously at the checkpoint end: the file now holds the image, `fileBytes` long;
   * `removeListener` unregisters `onPageWrite` (called at close).
   */
  arm(fileBytes: number, removeListener: () => void): void {
    assert(this.state === 'new', `arm in state ${this.state}`);
    assert(fileBytes > 0 && fileBytes % this.opts.pageSize === 0, `snapshot length ${fileBytes} is not whole pages`);
    this.fileBytes = fileBytes;
    this.pages = fileBytes / this.opts.pageSize;
    this.removeListener = removeListener;
    this.state = 'armed';
  }

  private break(err: PtnError): void {
    if (this.state !== 'armed') return;
    this.state = 'broken';
    this.brokenBy = err;
    this.removeListener?.();
    this.opts.onBroken?.(err);
  }

  private checkUsable(): void {
    if (this.state === 'armed') return;
    throw ptnError(ErrorCode.ERR_SNAPSHOT_GONE, `snapshot of ${this.opts.filePath} is ${this.state}`, { cause: this.brokenBy });
  }

  /** Raises the acknowledged offset (never lowers it). `ackedBytes` must be a served chunk end. */
  acknowledge(ackedBytes: number): void {
    if (ackedBytes <= this.ackedBytes) return;
    if (ackedBytes > this.servedEnd || ackedBytes % this.opts.pageSize !== 0) {
      throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, `ackedBytes ${ackedBytes} is not a served, page-aligned offset (served up to ${this.servedEnd})`, {
        details: { ackedBytes, servedEnd: this.servedEnd },
      });
    }
    this.ackedBytes = ackedBytes;
    for (const b of this.crcAt.keys()) if (b < ackedBytes) this.crcAt.delete(b);
    for (const b of this.loose.keys()) if (b < ackedBytes) this.loose.delete(b);
  }

  /** Fills `target` with the image bytes [offset, offset + target.length). */
  async readRange(offset: number, target: Buffer): Promise<void> {
    this.checkUsable();
    const { pageSize } = this.opts;
    const len = target.length;
    assert(offset % pageSize === 0 && len % pageSize === 0 && len > 0, 'snapshot reads are whole pages');
    assert(offset + len <= this.fileBytes, 'snapshot read past the recorded length');
    if (offset < this.ackedBytes) {
      throw ptnError(ErrorCode.ERR_SNAPSHOT_GONE, `offset ${offset} is below the acknowledged ${this.ackedBytes}: those pages are no longer kept`, {
        details: { offset, ackedBytes: this.ackedBytes },
      });
    }
    let got: number;
    try {
      got = await this.file.read(target, 0, len, offset);
    } catch (err) {
      throw fsError(err, `read ${this.opts.filePath} for a snapshot`);
    }
    if (got !== len) throw ptnError(ErrorCode.ERR_IO, `${this.opts.filePath}: short read at ${offset} (${got} of ${len} bytes)`);
    if (this.delta.pages > 0) {
      const first = offset / pageSize;
      for (let i = 0; i < len / pageSize; i++) {
        if (this.delta.has(first + i)) await this.delta.readInto(first + i, target.subarray(i * pageSize, (i + 1) * pageSize));
      }
    }
    this.checkUsable(); // broken meanwhile: the bytes read may be newer than the image
    if (offset < this.ackedBytes) {
      // Acknowledged past this range while it was read (a peer breaking its promise): its pages were unprotected.
      throw ptnError(ErrorCode.ERR_SNAPSHOT_GONE, `offset ${offset} was acknowledged while being read`, { details: { offset, ackedBytes: this.ackedBytes } });
    }
  }

  /**
   * Records a chunk served: extends the running CRC when its start is a known boundary. Returns
   * the CRC-32 of the chunk itself.
   */
  recordChunk(offset: number, raw: Buffer): number {
    const crc = crc32(raw);
    const end = offset + raw.length;
    if (end > this.servedEnd) this.servedEnd = end;
    if (offset < this.ackedBytes || this.crcAt.has(end)) return crc;
    let before = this.crcAt.get(offset);
    if (before === undefined) {
      this.loose.set(offset, { crc, bytes: raw.length });
      return crc;
    }
    // Extend the running CRC, then through every loose chunk that now follows on (no second pass over the bytes).
    let at = end;
    before = crc32Combine(before, crc, raw.length);
    for (;;) {
      this.crcAt.set(at, before);
      const next = this.loose.get(at);
      if (next === undefined) break;
      this.loose.delete(at);
      before = crc32Combine(before, next.crc, next.bytes);
      at += next.bytes;
    }
    return crc;
  }

  /**
   * CRC-32 of the whole image. Known at once when every chunk was served in order; else it reads
   * the rest from the last known boundary (at or above the acknowledged offset) with `scratch`.
   */
  async fileCrc(scratch: Buffer): Promise<number> {
    this.checkUsable();
    const known = this.crcAt.get(this.fileBytes);
    if (known !== undefined) return known;
    let from = -1;
    for (const b of this.crcAt.keys()) if (b > from && b >= this.ackedBytes) from = b;
    if (from < 0) {
      throw ptnError(ErrorCode.ERR_SNAPSHOT_GONE, `no CRC boundary at or above the acknowledged ${this.ackedBytes}: restart the transfer`);
    }
    let crc = this.crcAt.get(from)!;
    const step = scratch.length - (scratch.length % this.opts.pageSize);
    assert(step > 0, 'scratch smaller than a page');
    for (let off = from; off < this.fileBytes; off += step) {
      const part = scratch.subarray(0, Math.min(step, this.fileBytes - off));
      await this.readRange(off, part);
      crc = crc32(part, crc);
    }
    this.crcAt.set(this.fileBytes, crc);
    return crc;
  }

  /** Unregisters the listener, closes the file, deletes the delta. Idempotent. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.removeListener?.();
    try {
      await this.file.close();
    } finally {
      await this.delta.close();
    }
  }
}
