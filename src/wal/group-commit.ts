/**
 * The node WAL writer: frames records into batch buffers synchronously and writes them with
 * group commit — every record framed while a write+fsync is in flight joins the next batch,
 * which is written with ONE writev and ONE fdatasync per segment it touches.
 *
 * Data flow: frame() encodes into the tail chunk (a reusable buffer of chunkBytes, or a
 * dedicated one for a larger record) → the flusher takes all chunks at once → writev at the
 * file's end → fdatasync → the batch's promise resolves. Rollover happens at framing time (the
 * pointer is final when frame() returns); the flusher creates the next segment file only after
 * the previous one is fully written and synced, so a segment that exists implies every older one
 * is complete (recovery relies on it).
 *
 * Modes: 'fsync' — a flush starts on the next macrotask after the first framed record (so
 * concurrent appenders join) and the loop continues while records keep arriving; 'background' —
 * a timer flushes flushIntervalMs after the first unflushed record; flush() and a full buffer
 * flush at once.
 *
 * Invariants: unwritten bytes (pendingBytes) stay ≤ bufferBytesMax + one record for callers
 * that wait for room (NodeWal.append does); writes are strictly sequential; after a write or
 * fsync error the writer is failed for good (a failed fsync cannot be retried safely: the page
 * cache may have dropped the dirty pages), every later call rejects with that error.
 */
import path from 'node:path';
import { setImmediate as nextMacrotask } from 'node:timers/promises';
import { assert, ErrorCode, fsError, ptnError, type PtnError } from '../errors.js';
import type { FileLayer, FileLike } from '../util/file-layer.js';
import { encodeRecord, type WalPointer, type WalRecord } from './record.js';
import { encodeSegmentHeader, SEGMENT_HEADER_BYTES, segmentFileName } from './segment.js';

/** Size of the reusable batch buffers. */
export const CHUNK_BYTES = 256 * 1024;
/** Reusable chunks kept after a write (bounds idle memory to POOL_CHUNKS_MAX · CHUNK_BYTES). */
const POOL_CHUNKS_MAX = 8;

interface Chunk {
  segment: number;
  buf: Buffer;
  used: number;
}

interface Batch {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

function newBatch(): Batch {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {}); // callers that drop `durable` must not crash the process; awaiters still see it
  return { promise, resolve, reject };
}

const RESOLVED = Promise.resolve();

export interface WalWriterOptions {
  dir: string;
  clusterId: string;
  fileLayer: FileLayer;
  durability: 'fsync' | 'background';
  flushIntervalMs: number;
  segmentBytes: number;
  bufferBytesMax: number;
  /** The active segment as recovered (its file open for writing, `bytes` its valid length). */
  active: { index: number; file: FileLike; bytes: number };
}

/** Framing, batching, group commit and backpressure of the node WAL. */
export class WalWriter {
  /** Segment and end offset where the next record will be framed. */
  private segment: number;
  private segmentEnd: number;
  private chunks: Chunk[] = [];
  private readonly pool: Buffer[] = [];
  /** Bytes framed and not yet written (the backpressure measure). */
  pendingBytes = 0;
  pendingBytesPeak = 0;
  fsyncs = 0;
  appends = 0;
  private batch = newBatch(); // records framed since the flusher last took the chunks
  private inFlight: Batch | undefined;
  private flushing = false;
  private immediateArmed = false;
  private timer: NodeJS.Timeout | undefined;
  private urgent = false; // background mode: flush without waiting for the timer
  private roomWaiters: Batch[] = [];
  private file: FileLike;
  private fileSegment: number;
  private fileBytes: number;
  private failure: PtnError | undefined;
  private closed = false;

  constructor(private readonly o: WalWriterOptions) {
    this.segment = this.fileSegment = o.active.index;
    this.segmentEnd = this.fileBytes = o.active.bytes;
    this.file = o.active.file;
  }

  /** Pointer just past the last framed record. */
  position(): WalPointer {
    return { segment: this.segment, offset: this.segmentEnd };
  }

  /** Pointer just past the last record handed to the OS (readers may read up to here). */
  writtenEnd(): WalPointer {
    return { segment: this.fileSegment, offset: this.fileBytes };
  }

  /** The latched write failure, if any. */
  get failed(): PtnError | undefined {
    return this.failure;
  }

  hasRoom(): boolean {
    return this.pendingBytes < this.o.bufferBytesMax;
  }

  /**
   * Frames `record` (of `frameBytes`, already checked against recordBytesMax). Synchronous; the
   * returned pointer is final. Rolls to a new segment when this one would exceed segmentBytes
   * (a record larger than that gets a segment of its own).
   */
  frame(record: WalRecord, frameBytes: number): WalPointer {
    if (this.segmentEnd + frameBytes > this.o.segmentBytes && this.segmentEnd > SEGMENT_HEADER_BYTES) {
      this.segment++;
      this.segmentEnd = SEGMENT_HEADER_BYTES;
    }
    let c = this.chunks.length > 0 ? this.chunks[this.chunks.length - 1] : undefined;
    if (c === undefined || c.segment !== this.segment || c.buf.length - c.used < frameBytes) {
      c = { segment: this.segment, buf: this.takeBuffer(frameBytes), used: 0 };
      this.chunks.push(c);
    }
    encodeRecord(record, c.buf, c.used, frameBytes);
    c.used += frameBytes;
    const pointer = { segment: this.segment, offset: this.segmentEnd };
    this.segmentEnd += frameBytes;
    this.pendingBytes += frameBytes;
    if (this.pendingBytes > this.pendingBytesPeak) this.pendingBytesPeak = this.pendingBytes;
    this.appends++;
    this.schedule();
    return pointer;
  }

  /** The promise an append framed just now waits for, per the durability mode. */
  durable(): Promise<void> {
    if (this.o.durability === 'fsync') return this.batch.promise;
    return this.hasRoom() ? RESOLVED : this.waitForRoom();
  }

  /**
   * Resolves once pendingBytes is below bufferBytesMax again (callers re-check: several waiters
   * are woken together and the first ones may fill the buffer again).
   */
  waitForRoom(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(ptnError(ErrorCode.ERR_CLOSED, 'WAL is closed'));
    if (this.hasRoom()) return RESOLVED;
    const w = newBatch();
    this.roomWaiters.push(w);
    this.urgent = true;
    this.kick();
    return w.promise;
  }

  /** Makes everything framed so far durable. */
  flush(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.chunks.length > 0) {
      this.urgent = true;
      this.kick();
      return this.batch.promise;
    }
    return this.inFlight ? this.inFlight.promise : RESOLVED;
  }

  /**
   * Rejects waiters, flushes what is framed, stops the timer, closes the file. Call once. Rejects
   * when this last flush fails; a failure latched earlier was already reported to the appenders.
   */
  async close(): Promise<void> {
    this.closed = true;
    const err = ptnError(ErrorCode.ERR_CLOSED, 'WAL is closed');
    for (const w of this.roomWaiters.splice(0)) w.reject(err);
    try {
      if (!this.failure) await this.flush();
    } finally {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      await this.file.close().catch(() => {});
    }
  }

  private takeBuffer(frameBytes: number): Buffer {
    if (frameBytes <= CHUNK_BYTES) return this.pool.pop() ?? Buffer.allocUnsafe(CHUNK_BYTES);
    return Buffer.allocUnsafe(frameBytes);
  }

  /** Arms the flusher per the mode (records were framed). */
  private schedule(): void {
    if (this.flushing || this.immediateArmed) return;
    if (this.o.durability === 'fsync' || this.urgent || !this.hasRoom()) return this.kick();
    if (this.timer === undefined) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.urgent = true;
        this.kick();
      }, this.o.flushIntervalMs);
    }
  }

  /** Starts the flush loop on the next macrotask, so records framed meanwhile join the batch. */
  private kick(): void {
    if (this.flushing || this.immediateArmed) return;
    this.immediateArmed = true;
    setImmediate(() => {
      this.immediateArmed = false;
      void this.flushLoop();
    });
  }

  private async flushLoop(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    try {
      while (this.chunks.length > 0 && !this.failure && (this.o.durability === 'fsync' || this.urgent)) {
        this.urgent = false;
        const chunks = this.chunks;
        this.chunks = [];
        const batch = (this.inFlight = this.batch);
        this.batch = newBatch();
        try {
          await this.writeChunks(chunks);
          batch.resolve();
        } catch (err) {
          this.fail(fsError(err, `writing WAL segment ${segmentFileName(this.fileSegment)}`));
          batch.reject(this.failure);
        }
        this.inFlight = undefined;
        // Let the appenders this batch just released frame their next records first.
        if (this.o.durability === 'fsync' && !this.failure) await nextMacrotask();
      }
    } finally {
      this.flushing = false;
    }
    if (this.chunks.length > 0 && !this.failure) this.schedule();
  }

  /** Writes chunks in order: one writev + one fdatasync per segment they touch. */
  private async writeChunks(chunks: Chunk[]): Promise<void> {
    let i = 0;
    while (i < chunks.length) {
      const segment = chunks[i]!.segment;
      const bufs: Buffer[] = [];
      let bytes = 0;
      for (; i < chunks.length && chunks[i]!.segment === segment; i++) {
        const c = chunks[i]!;
        bufs.push(c.buf.subarray(0, c.used));
        bytes += c.used;
      }
      const rolled = segment !== this.fileSegment;
      if (rolled) await this.createSegment(segment, bufs);
      else await this.file.writev(bufs, this.fileBytes);
      this.fileBytes += bytes;
      this.pendingBytes -= bytes;
      for (let k = i - bufs.length; k < i; k++) this.recycle(chunks[k]!.buf);
      this.wakeRoomWaiters();
      if (rolled) await this.syncNewSegment();
      else await this.file.datasync();
      this.fsyncs++;
    }
  }

  /** Closes the (complete, synced) active file and creates `segment` with its header and first bytes. */
  private async createSegment(segment: number, bufs: Buffer[]): Promise<void> {
    assert(segment === this.fileSegment + 1, `segment ${segment} does not follow ${this.fileSegment}`);
    await this.file.close();
    const file = await this.o.fileLayer.open(path.join(this.o.dir, segmentFileName(segment)), 'wx+');
    this.file = file;
    this.fileSegment = segment;
    this.fileBytes = SEGMENT_HEADER_BYTES;
    await file.writev([encodeSegmentHeader(segment, this.o.clusterId), ...bufs], 0);
  }

  /** A new segment needs a full fsync (its metadata) and a directory fsync (its name). */
  private async syncNewSegment(): Promise<void> {
    await this.file.sync();
    await this.o.fileLayer.syncDir(this.o.dir);
  }

  private recycle(buf: Buffer): void {
    if (buf.length === CHUNK_BYTES && this.pool.length < POOL_CHUNKS_MAX) this.pool.push(buf);
  }

  private wakeRoomWaiters(): void {
    if (!this.hasRoom() || this.roomWaiters.length === 0) return;
    for (const w of this.roomWaiters.splice(0)) w.resolve();
  }

  private fail(err: PtnError): void {
    this.failure = err;
    this.batch.reject(err); // records framed after the failing batch will never be written
    for (const w of this.roomWaiters.splice(0)) w.reject(err);
  }
}
