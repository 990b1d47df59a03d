/**
 * The temporary catch-up WAL of one partition (DESIGN.md "Rebalance", demander steps 1 and 6).
 *
 * Role: while a partition file is in flight to this node, every replicated update for that partition
 * is appended here as an opaque payload. After the swap-in the demander reads the records back in
 * append order and replays them WHILE new updates keep appending; when the reader catches up, a short
 * fence on the partition closes the last stretch. Then the demander destroys the WAL.
 *
 * Data flow: append() → in-memory write queue (≤ writeBufferBytesMax bytes of frames) → one writev per
 * batch into the last segment → readBatch() reads the first segment through its own file handle.
 * Format: see temp-wal-segment.ts (segment header + `length | crc | payload` frames).
 *
 * Invariants:
 *   - Appends never wait for the reader. They wait only for the disk: a full write queue, a segment
 *     roll, or a sync() in progress. The reader never holds anything the writer needs.
 *   - The reader always reads `segments[0]`; a segment is deleted as soon as the reader has read past
 *     its last record and a later segment exists. When the reader has caught up with everything
 *     written and the writer is idle, the writer truncates its segment back to the header, so after
 *     a full drain the directory holds one segment header: disk use follows the lag, not the history.
 *   - A record never spans segments: a frame that does not fit in the rest of the current segment
 *     starts a new one. A frame larger than a whole segment gets a segment of its own (so
 *     `segmentBytes` is a target that only an oversized record exceeds).
 *   - The reader sees only bytes whose write completed (it reads up to the in-memory end of each
 *     segment, updated after each write), never a half-written frame. Records still in the write
 *     queue count as appended: readBatch waits for them to reach the OS instead of returning [].
 *
 * Memory bounds: the write queue holds at most `writeBufferBytesMax` bytes of encoded frames (or one
 * frame larger than that, alone). Appends beyond it wait in order without a copy (the caller's buffer
 * is referenced until its promise resolves: do not modify it before). readBatch holds about
 * `maxBytes` + READ_SLACK_BYTES, or one record when a record is larger. Recovery reads
 * RECOVERY_CHUNK_BYTES (temp-wal-segment.ts) at a time, or one whole record when larger.
 *
 * Recovery on open of an existing directory. The read position restarts at the start of what is
 * left, so records the reader had already returned before a crash may come again: the demander's
 * replay is idempotent (apply-if-newer by counter). Records lost to a truncated tail leave counter
 * gaps, which the historical catch-up (demander step 7) fetches from the supplier.
 *
 * | case                                                         | action                                   |
 * |--------------------------------------------------------------|------------------------------------------|
 * | directory missing, or no segment files in it                 | create it with an empty segment 1        |
 * | files whose names are not `<16 digits>.twal`                 | ignored, left alone                      |
 * | segment indexes not contiguous (a middle segment missing)    | ERR_TEMP_WAL_CORRUPT                     |
 * | last segment shorter than its header (torn creation)         | header rewritten, segment empty          |
 * | non-last segment shorter than its header                     | ERR_TEMP_WAL_CORRUPT                     |
 * | bad magic, header CRC or reserved bytes (any segment)        | ERR_TEMP_WAL_CORRUPT                     |
 * | unknown format version (header CRC valid)                    | ERR_TEMP_WAL_CORRUPT (details.version)   |
 * | header segment index differs from the file name              | ERR_TEMP_WAL_CORRUPT                     |
 * | last segment: torn record (frame cut short by end of file)   | truncated at the record's start          |
 * | last segment: garbage tail (length > recordBytesMax, or CRC) | truncated at the first bad frame         |
 * | last segment: bad CRC mid-segment, valid records after it    | truncated at the bad frame; later dropped|
 * | non-last segment: any torn or bad record                     | ERR_TEMP_WAL_CORRUPT (a sealed segment   |
 * |                                                              | only loses bytes to a power loss before  |
 * |                                                              | sync(); the demander starts over)        |
 */
import path from 'node:path';
import { assert, ErrorCode, fsError, ptnError, PtnError } from '../errors.js';
import { realFileLayer, type FileLayer, type FileLike } from '../util/file-layer.js';
import {
  corruptAt,
  encodeFrame,
  encodeSegmentHeader,
  frameBytes,
  parseSegmentFileName,
  probeFrame,
  readFully,
  recoverSegmentFile,
  segmentFileName,
  TEMP_WAL_FRAME_HEADER_BYTES,
  TEMP_WAL_HEADER_BYTES,
  TEMP_WAL_PAYLOAD_BYTES_LIMIT,
} from './temp-wal-segment.js';

/** Options of a temporary WAL. */
export interface TempWalOptions {
  /** Directory owned by this WAL (created if missing; destroy() removes it). */
  dir: string;
  /** Target segment size in bytes (wal.tempSegmentBytes). */
  segmentBytes: number;
  /** Largest payload accepted on append and believed on read (wal.recordBytesMax). */
  recordBytesMax: number;
  /** Bound of the in-memory write queue, in bytes of encoded frames. Default TEMP_WAL_WRITE_BUFFER_BYTES_DEFAULT. */
  writeBufferBytesMax?: number;
  /** File layer for all I/O (tests inject faults). Default realFileLayer. */
  fileLayer?: FileLayer;
}

/** Counters of a temporary WAL. Bytes are payload bytes except the disk figures. */
export interface TempWalStats {
  appendedRecords: number;
  appendedBytes: number;
  readRecords: number;
  readBytes: number;
  lagRecords: number;
  lagBytes: number;
  /** Segment files on disk. */
  segments: number;
  /** Bytes of all segment files (headers and frames included). */
  diskBytes: number;
  peakDiskBytes: number;
}

/** What open() found in an existing directory. */
export interface TempWalRecovery {
  segments: number;
  records: number;
  /** Bytes cut from the tail of the last segment (0 when it was clean). */
  truncatedBytes: number;
}

/** Default bound of the write queue: 1 MiB of encoded frames. */
export const TEMP_WAL_WRITE_BUFFER_BYTES_DEFAULT = 1024 * 1024;
/** Extra bytes readBatch reads beyond maxBytes so the frame headers fit (a partial last frame is re-read next time). */
const READ_SLACK_BYTES = 64 * 1024;
/** Most frames per writev (IOV_MAX on Linux). */
const WRITE_BATCH_FRAMES_MAX = 1024;
/** Smallest segment that holds a header and a small frame. */
const SEGMENT_BYTES_MIN = 64;

interface SegmentState {
  index: number;
  path: string;
  /** End of the last complete, written record (the header's end when empty). */
  bytes: number;
}

interface PendingAppend {
  /** Caller's payload until the entry enters the write queue; then null and `frame` holds the copy. */
  payload: Uint8Array | null;
  frame: Buffer | null;
  frameBytes: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

type Lifecycle = 'open' | 'closing' | 'closed';

const noop = () => {};

/** A file-backed FIFO of opaque records: one writer, one concurrent reader. */
export class TempWal {
  readonly #dir: string;
  readonly #fl: FileLayer;
  readonly #segmentBytes: number;
  readonly #recordBytesMax: number;
  readonly #writeBufferBytesMax: number;
  #state: Lifecycle = 'open';
  #closing: Promise<void> | undefined;
  #destroying: Promise<void> | undefined;
  #failed: PtnError | undefined;

  /** segments[0] is the reader's, the last one the writer's. Never empty while open. */
  #segments: SegmentState[] = [];
  #diskBytes = 0;
  #peakDiskBytes = 0;

  // writer side
  #writer: FileLike | undefined;
  #queue: PendingAppend[] = [];
  #queuedBytes = 0;
  #blocked: PendingAppend[] = [];
  #writerRunning = false;
  /** Serializes what touches the writer's file: write batches, rolls, truncation, sync. */
  #writerLockTail: Promise<void> = Promise.resolve();
  /** Settles when the latest append settles (never rejects): "everything appended so far reached the OS". */
  #lastAppendSettled: Promise<void> = Promise.resolve();
  #unsyncedSealed = new Set<string>();
  #dirUnsynced = false;

  // reader side
  #reader: FileLike | undefined;
  #readerSegment = 0;
  #readPos = TEMP_WAL_HEADER_BYTES;
  #readerBusy = false;
  #readerChain: Promise<void> = Promise.resolve();

  #appendedRecords = 0;
  #appendedBytes = 0;
  #readRecords = 0;
  #readBytes = 0;

  /** What open() found; all zero for a new directory. */
  readonly recovery: TempWalRecovery = { segments: 0, records: 0, truncatedBytes: 0 };

  private constructor(opts: TempWalOptions, fl: FileLayer) {
    this.#dir = opts.dir;
    this.#fl = fl;
    this.#segmentBytes = opts.segmentBytes;
    this.#recordBytesMax = opts.recordBytesMax;
    this.#writeBufferBytesMax = opts.writeBufferBytesMax ?? TEMP_WAL_WRITE_BUFFER_BYTES_DEFAULT;
  }

  /** Creates `dir`, or recovers the segments in it (table at the top). The reader starts at the first record left. */
  static async open(opts: TempWalOptions): Promise<TempWal> {
    assert(typeof opts.dir === 'string' && opts.dir.length > 0, 'dir required');
    assert(Number.isSafeInteger(opts.segmentBytes) && opts.segmentBytes >= SEGMENT_BYTES_MIN, 'segmentBytes too small');
    assert(
      Number.isSafeInteger(opts.recordBytesMax) && opts.recordBytesMax >= 1 && opts.recordBytesMax <= TEMP_WAL_PAYLOAD_BYTES_LIMIT,
      'recordBytesMax out of range',
    );
    const wbm = opts.writeBufferBytesMax;
    assert(wbm === undefined || (Number.isSafeInteger(wbm) && wbm >= 1), 'writeBufferBytesMax out of range');
    const wal = new TempWal(opts, opts.fileLayer ?? realFileLayer);
    try {
      await wal.#openDir();
    } catch (err) {
      await wal.#closeHandles().catch(noop); // the open error is the one worth reporting
      throw ioError(err, `temp WAL ${opts.dir}: open`);
    }
    return wal;
  }

  async #openDir(): Promise<void> {
    await this.#fl.mkdir(this.#dir);
    const indexes = (await this.#fl.readdir(this.#dir))
      .map(parseSegmentFileName)
      .filter((i): i is number => i !== undefined)
      .sort((a, b) => a - b);
    for (let i = 1; i < indexes.length; i++) {
      if (indexes[i] !== indexes[i - 1]! + 1) {
        throw ptnError(ErrorCode.ERR_TEMP_WAL_CORRUPT, `${this.#dir}: segment ${indexes[i - 1]! + 1} is missing`, {
          details: { dir: this.#dir, missing: indexes[i - 1]! + 1 },
        });
      }
    }
    if (indexes.length === 0) {
      const seg = this.#segmentState(1);
      this.#writer = await this.#fl.open(seg.path, 'w+');
      await this.#writer.write(encodeSegmentHeader(1), 0, TEMP_WAL_HEADER_BYTES, 0);
      this.#segments.push(seg);
      this.#dirUnsynced = true;
    } else {
      for (let i = 0; i < indexes.length; i++) await this.#recoverSegment(indexes[i]!, i === indexes.length - 1);
      this.#writer = await this.#fl.open(this.#segments[this.#segments.length - 1]!.path, 'r+');
      this.recovery.segments = indexes.length;
    }
    this.#diskBytes = this.#segments.reduce((sum, s) => sum + s.bytes, 0);
    this.#peakDiskBytes = this.#diskBytes;
    this.#readPos = TEMP_WAL_HEADER_BYTES;
  }

  #segmentState(index: number): SegmentState {
    return { index, path: path.join(this.#dir, segmentFileName(index)), bytes: TEMP_WAL_HEADER_BYTES };
  }

  /** Checks one existing segment, truncating a bad tail when it is the last one (table at the top). */
  async #recoverSegment(index: number, isLast: boolean): Promise<void> {
    const seg = this.#segmentState(index);
    const found = await recoverSegmentFile(this.#fl, seg.path, index, isLast, this.#recordBytesMax);
    seg.bytes = found.bytes;
    this.recovery.records += found.records;
    this.recovery.truncatedBytes += found.truncatedBytes;
    this.#appendedRecords += found.records;
    this.#appendedBytes += found.payloadBytes;
    this.#segments.push(seg);
  }

  /** Counters; a fresh object each time. */
  get stats(): TempWalStats {
    return {
      appendedRecords: this.#appendedRecords,
      appendedBytes: this.#appendedBytes,
      readRecords: this.#readRecords,
      readBytes: this.#readBytes,
      lagRecords: this.#appendedRecords - this.#readRecords,
      lagBytes: this.#appendedBytes - this.#readBytes,
      segments: this.#segments.length,
      diskBytes: this.#diskBytes,
      peakDiskBytes: this.#peakDiskBytes,
    };
  }

  /** The directory this WAL owns. */
  get dir(): string {
    return this.#dir;
  }

  #checkOpen(): void {
    if (this.#state !== 'open') throw ptnError(ErrorCode.ERR_CLOSED, `temp WAL ${this.#dir} is closed`);
  }

  // ───────────────────────────── writer ─────────────────────────────

  /**
   * Appends one record. Records keep the order of the calls. Resolves when the record was handed to
   * the OS (no fsync; see sync()). Never waits for the reader. Do not modify `payload` before the
   * promise settles. A payload above recordBytesMax → ERR_WAL_RECORD_TOO_LARGE.
   */
  async append(payload: Buffer): Promise<void> {
    this.#checkOpen();
    if (this.#failed) throw this.#failed;
    if (payload.length > this.#recordBytesMax) {
      throw ptnError(ErrorCode.ERR_WAL_RECORD_TOO_LARGE, `temp WAL record of ${payload.length} bytes, limit ${this.#recordBytesMax}`, {
        details: { bytes: payload.length, recordBytesMax: this.#recordBytesMax },
      });
    }
    const done = new Promise<void>((resolve, reject) => {
      const entry: PendingAppend = { payload, frame: null, frameBytes: frameBytes(payload.length), resolve, reject };
      if (this.#blocked.length === 0 && this.#hasRoomFor(entry.frameBytes)) this.#enqueue(entry);
      else this.#blocked.push(entry);
    });
    this.#appendedRecords++;
    this.#appendedBytes += payload.length;
    this.#lastAppendSettled = done.then(noop, noop);
    this.#kickWriter();
    return done;
  }

  #hasRoomFor(bytes: number): boolean {
    return this.#queuedBytes === 0 || this.#queuedBytes + bytes <= this.#writeBufferBytesMax;
  }

  #enqueue(entry: PendingAppend): void {
    entry.frame = encodeFrame(entry.payload!);
    entry.payload = null;
    this.#queue.push(entry);
    this.#queuedBytes += entry.frameBytes;
  }

  #withWriterLock(fn: () => Promise<void>): Promise<void> {
    const run = this.#writerLockTail.then(fn);
    this.#writerLockTail = run.then(noop, noop);
    return run;
  }

  /** Starts the writer loop unless it runs. The loop stops (synchronously) when it finds nothing to do. */
  #kickWriter(): void {
    if (this.#writerRunning || this.#failed || this.#state === 'closed') return;
    this.#writerRunning = true;
    void this.#writerLoop();
  }

  async #writerLoop(): Promise<void> {
    try {
      for (;;) {
        if (this.#queue.length > 0) {
          await this.#withWriterLock(() => this.#writeBatch());
        } else if (this.#canTruncateDrained()) {
          await this.#withWriterLock(() => this.#truncateDrained());
        } else {
          this.#writerRunning = false;
          return;
        }
      }
    } catch (err) {
      this.#writerRunning = false;
      this.#fail(fsError(err, `temp WAL ${this.#dir}: write`));
      if (!(err instanceof PtnError) && (err as Error)?.name === 'AssertionError') throw err;
    }
  }

  /** Writes the head of the queue, as many frames as fit in the current segment, with one writev. */
  async #writeBatch(): Promise<void> {
    if (this.#queue.length === 0) return;
    let seg = this.#segments[this.#segments.length - 1]!;
    if (seg.bytes > TEMP_WAL_HEADER_BYTES && seg.bytes + this.#queue[0]!.frameBytes > this.#segmentBytes) {
      await this.#roll();
      seg = this.#segments[this.#segments.length - 1]!;
    }
    const frames: Buffer[] = [];
    let bytes = 0;
    for (const entry of this.#queue) {
      if (frames.length === WRITE_BATCH_FRAMES_MAX) break;
      if (frames.length > 0 && seg.bytes + bytes + entry.frameBytes > this.#segmentBytes) break;
      frames.push(entry.frame!);
      bytes += entry.frameBytes;
    }
    await this.#writer!.writev(frames, seg.bytes);
    seg.bytes += bytes;
    this.#addDiskBytes(bytes);
    const written = this.#queue.splice(0, frames.length);
    this.#queuedBytes -= bytes;
    while (this.#blocked.length > 0 && this.#hasRoomFor(this.#blocked[0]!.frameBytes)) this.#enqueue(this.#blocked.shift()!);
    for (const entry of written) entry.resolve();
  }

  /** Seals the current segment and starts the next one. */
  async #roll(): Promise<void> {
    const old = this.#segments[this.#segments.length - 1]!;
    const next = this.#segmentState(old.index + 1);
    const writer = this.#writer!;
    this.#writer = undefined;
    await writer.close();
    this.#unsyncedSealed.add(old.path);
    this.#writer = await this.#fl.open(next.path, 'w+');
    await this.#writer.write(encodeSegmentHeader(next.index), 0, TEMP_WAL_HEADER_BYTES, 0);
    this.#dirUnsynced = true;
    this.#segments.push(next);
    this.#addDiskBytes(TEMP_WAL_HEADER_BYTES);
  }

  #addDiskBytes(bytes: number): void {
    this.#diskBytes += bytes;
    if (this.#diskBytes > this.#peakDiskBytes) this.#peakDiskBytes = this.#diskBytes;
  }

  /** True when the reader has read everything written, nothing is queued and the segment holds records. */
  #canTruncateDrained(): boolean {
    const seg = this.#segments[0];
    return (
      this.#state === 'open' &&
      !this.#failed &&
      !this.#readerBusy &&
      this.#queue.length === 0 &&
      this.#blocked.length === 0 &&
      this.#segments.length === 1 &&
      seg !== undefined &&
      seg.bytes > TEMP_WAL_HEADER_BYTES &&
      this.#readPos === seg.bytes
    );
  }

  /** Cuts the fully read segment back to its header: disk use follows the lag. */
  async #truncateDrained(): Promise<void> {
    if (!this.#canTruncateDrained()) return;
    const seg = this.#segments[0]!;
    await this.#writer!.truncate(TEMP_WAL_HEADER_BYTES);
    this.#diskBytes -= seg.bytes - TEMP_WAL_HEADER_BYTES;
    seg.bytes = TEMP_WAL_HEADER_BYTES;
    this.#readPos = TEMP_WAL_HEADER_BYTES;
  }

  /** After a write failure the WAL is broken: queued appends are rejected and not counted. */
  #fail(err: PtnError): void {
    if (this.#failed) return;
    this.#failed = err;
    const lost = [...this.#queue, ...this.#blocked];
    this.#queue = [];
    this.#blocked = [];
    this.#queuedBytes = 0;
    for (const entry of lost) {
      this.#appendedRecords--;
      this.#appendedBytes -= entry.frameBytes - TEMP_WAL_FRAME_HEADER_BYTES;
      entry.reject(err);
    }
  }

  /** fsyncs everything appended before the call: the current segment, sealed ones not yet synced, the directory. */
  async sync(): Promise<void> {
    this.#checkOpen();
    await this.#lastAppendSettled;
    if (this.#failed) throw this.#failed;
    await this.#withWriterLock(async () => {
      if (this.#failed) throw this.#failed;
      try {
        await this.#writer!.sync();
        for (const sealed of [...this.#unsyncedSealed]) {
          await this.#syncSealed(sealed);
          this.#unsyncedSealed.delete(sealed);
        }
        if (this.#dirUnsynced) {
          this.#dirUnsynced = false;
          await this.#fl.syncDir(this.#dir);
        }
      } catch (err) {
        throw ioError(err, `temp WAL ${this.#dir}: sync`);
      }
    });
  }

  /** fsyncs a sealed segment unless the reader deleted it meanwhile. */
  async #syncSealed(file: string): Promise<void> {
    let f: FileLike;
    try {
      f = await this.#fl.open(file, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    try {
      await f.sync();
    } finally {
      await f.close();
    }
  }

  // ───────────────────────────── reader ─────────────────────────────

  /**
   * The next records in append order: at most `maxRecords`, and about `maxBytes` of payload (at least
   * one record even when it is larger). [] when the reader has everything appended so far. Records
   * still in the write queue count as appended: this waits until they reach the OS. Calls are
   * serialized. Payloads may be views into one shared buffer.
   */
  readBatch(maxRecords: number, maxBytes: number): Promise<Buffer[]> {
    assert(Number.isSafeInteger(maxRecords) && maxRecords >= 1, 'maxRecords must be >= 1');
    assert(Number.isSafeInteger(maxBytes) && maxBytes >= 1, 'maxBytes must be >= 1');
    const run = this.#readerChain.then(() => this.#readBatch(maxRecords, maxBytes));
    this.#readerChain = run.then(noop, noop);
    return run;
  }

  async #readBatch(maxRecords: number, maxBytes: number): Promise<Buffer[]> {
    this.#checkOpen();
    this.#readerBusy = true;
    try {
      const out: Buffer[] = [];
      let bytes = 0;
      while (out.length < maxRecords && bytes < maxBytes) {
        const seg = this.#segments[0]!;
        if (this.#readPos < seg.bytes) {
          bytes += await this.#readFrames(seg, out, maxRecords - out.length, maxBytes - bytes);
        } else if (this.#segments.length > 1) {
          await this.#dropFirstSegment();
        } else if (out.length > 0) {
          break;
        } else if (this.#queue.length === 0) {
          if (this.#failed) throw this.#failed; // caught up, and what was queued is lost
          break;
        } else {
          await this.#lastAppendSettled; // flush first: queued records count as appended
        }
      }
      // Delete a segment this batch finished, now rather than at the next call.
      if (this.#segments.length > 1 && this.#readPos === this.#segments[0]!.bytes) await this.#dropFirstSegment();
      this.#readRecords += out.length;
      this.#readBytes += bytes;
      return out;
    } catch (err) {
      throw ioError(err, `temp WAL ${this.#dir}: read`);
    } finally {
      this.#readerBusy = false;
      this.#kickWriter(); // the writer may now cut a drained segment back
    }
  }

  /** Reads frames from the reader's position in `seg`; returns the payload bytes added to `out`. */
  async #readFrames(seg: SegmentState, out: Buffer[], recordsLeft: number, bytesLeft: number): Promise<number> {
    const file = await this.#readerFor(seg);
    const end = seg.bytes;
    const chunkBytes = Math.min(end - this.#readPos, bytesLeft + READ_SLACK_BYTES);
    let chunk = Buffer.allocUnsafe(chunkBytes);
    await readFully(file, chunk, this.#readPos);
    let off = 0;
    let bytes = 0;
    let records = 0;
    while (records < recordsLeft && (records === 0 || bytes < bytesLeft) && off < chunk.length) {
      const probe = probeFrame(chunk, off, this.#recordBytesMax);
      if (probe.kind === 'record') {
        out.push(probe.payload);
        bytes += probe.payload.length;
        records++;
        off += probe.frameBytes;
      } else if (probe.kind === 'short' && off === 0 && probe.frameBytes !== undefined && this.#readPos + probe.frameBytes <= end) {
        chunk = Buffer.allocUnsafe(probe.frameBytes); // a record larger than the chunk: read it alone
        await readFully(file, chunk, this.#readPos);
      } else if (probe.kind === 'short' && off > 0) {
        break; // the rest of this frame comes with the next read
      } else {
        const why = probe.kind === 'bad' ? probe.why : 'frame runs past the written end';
        throw corruptAt(seg.path, this.#readPos + off, why);
      }
    }
    this.#readPos += off;
    return bytes;
  }

  async #readerFor(seg: SegmentState): Promise<FileLike> {
    if (this.#reader && this.#readerSegment === seg.index) return this.#reader;
    if (this.#reader) {
      const old = this.#reader;
      this.#reader = undefined;
      await old.close();
    }
    this.#reader = await this.#fl.open(seg.path, 'r');
    this.#readerSegment = seg.index;
    return this.#reader;
  }

  /** The reader has passed segments[0] and a later segment exists: delete it. */
  async #dropFirstSegment(): Promise<void> {
    const seg = this.#segments[0]!;
    assert(this.#segments.length > 1 && this.#readPos === seg.bytes, 'dropping a segment the reader has not passed');
    if (this.#reader && this.#readerSegment === seg.index) {
      const old = this.#reader;
      this.#reader = undefined;
      await old.close();
    }
    this.#segments.shift();
    this.#diskBytes -= seg.bytes;
    this.#readPos = TEMP_WAL_HEADER_BYTES;
    this.#unsyncedSealed.delete(seg.path);
    this.#dirUnsynced = true;
    await this.#fl.unlink(seg.path);
  }

  // ───────────────────────────── lifecycle ─────────────────────────────

  /** Writes what was appended, waits for a readBatch in flight, closes the files. Keeps the files. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#state = 'closing';
    await this.#lastAppendSettled;
    let tail: Promise<void>;
    do {
      tail = this.#writerLockTail; // a sync() may have queued behind the last write
      await tail;
    } while (tail !== this.#writerLockTail);
    await this.#readerChain;
    this.#state = 'closed';
    await this.#closeHandles();
  }

  async #closeHandles(): Promise<void> {
    const handles = [this.#writer, this.#reader].filter((h): h is FileLike => h !== undefined);
    this.#writer = undefined;
    this.#reader = undefined;
    let first: unknown;
    for (const h of handles) {
      try {
        await h.close();
      } catch (err) {
        first ??= err;
      }
    }
    if (first !== undefined) throw fsError(first, `temp WAL ${this.#dir}: close`);
  }

  /** Closes and removes the directory with every segment. Idempotent. */
  destroy(): Promise<void> {
    this.#destroying ??= (async () => {
      try {
        await this.close();
      } finally {
        try {
          await this.#fl.rm(this.#dir);
        } catch (err) {
          throw fsError(err, `temp WAL ${this.#dir}: destroy`);
        }
      }
    })();
    return this.#destroying;
  }
}

/** Maps a file-system error to a coded one; assertion failures (programmer errors) pass unchanged. */
function ioError(err: unknown, what: string): unknown {
  if ((err as Error)?.name === 'AssertionError') return err;
  return fsError(err, what);
}
