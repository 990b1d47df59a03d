/**
 * The node WAL: every update a node applies is appended here first; partition pages are written
 * only at checkpoints, so after a crash the node replays the records after the last completed
 * checkpoint. The WAL also keeps history (records of one partition by counter range) for
 * historical rebalance, and reservations pin the segments a reader still needs.
 *
 * Pieces: record.ts (frames), segment.ts (files, header, frame reader), group-commit.ts (framing,
 * batching, fsync), history.ts (per-segment counter ranges, floors, resets), history-floors.ts
 * (what survives deleted segments). This file: recovery, replay, history reads, reservations,
 * retention, lifecycle.
 *
 * Invariants: segment indexes are contiguous; only the last segment may end in a torn frame;
 * retention deletes a prefix of the segments (never the active one, never one a reservation or
 * a reader pins), and writes history.floors before unlinking anything.
 *
 * Recovery (NodeWal.open), one test per row in test/unit/wal/node-wal-recovery.test.ts:
 *
 * | #  | case                                                          | outcome                                                              |
 * |----|---------------------------------------------------------------|----------------------------------------------------------------------|
 * | 1  | empty (or missing) directory                                  | new WAL: segment 0 created (header, fsync, dir fsync); recovery = {} |
 * | 2  | clean shutdown                                                | every frame valid up to EOF; nothing cut; appends continue at the end |
 * | 3  | torn tail: partial frame at the end of the last segment       | truncated to the last good frame, truncatedTail reported, appends continue there |
 * | 4  | garbage (zeros / random) after the last good frame, last seg. | same as 3                                                            |
 * | 5  | bad CRC mid last segment, valid-looking frames after it       | same as 3: it is the tail; logged with the bytes dropped             |
 * | 6  | bad or torn frame in an older (non-last) segment              | ERR_WAL_CORRUPT: history is damaged, never silently dropped          |
 * | 7  | segment header with an unknown version                        | ERR_WAL_VERSION                                                      |
 * | 8  | segment of another cluster                                    | ERR_FILE_WRONG_CLUSTER                                               |
 * | 9  | missing segment in the middle of the sequence                 | ERR_WAL_CORRUPT                                                      |
 * | 10 | checkpointBegin without checkpointEnd (crash mid-checkpoint)  | lastCheckpoint = the previous completed one (begin and end seen)     |
 * | 11 | empty last segment: zero-length, shorter than its header, or a torn header with no valid frame after it | header rewritten (file cut to it) and fsynced; appends continue there |
 * | 12 | bad header on an older segment, or on a last one with frames  | ERR_WAL_CORRUPT                                                      |
 * | 13 | segments were deleted (first index > 0) but history.floors is missing; floors file corrupt | ERR_WAL_CORRUPT (unknown version: ERR_WAL_VERSION) |
 * | 14 | lastCheckpoint.replayFrom outside the retained segments       | ERR_WAL_CORRUPT                                                      |
 * | 15 | CRC-valid frame whose body does not parse / unknown type      | ERR_WAL_CORRUPT (a format problem, not a torn write)                 |
 * | 16 | leftover history.floors.tmp (crash while writing it)          | deleted; the previous floors file stands                             |
 */
import path from 'node:path';
import { assert, ErrorCode, fsError, isPtnError, ptnError } from '../errors.js';
import type { WalConfig } from '../config.js';
import { realFileLayer, type FileLayer, type FileLike } from '../util/file-layer.js';
import { WalWriter } from './group-commit.js';
import { FLOORS_FILE_NAME, readFloorsFile, writeFloorsFile } from './history-floors.js';
import { HistoryIndex, partitionKey, type SegmentSummary } from './history.js';
import {
  checkFrameHeader,
  comparePointers,
  decodeRecordBody,
  peekRecordBody,
  RECORD_HEADER_BYTES,
  recordFrameBytes,
  RecordType,
  type RecordKeyFields,
  type WalPointer,
  type WalRecord,
} from './record.js';
import {
  checkSegmentHeader,
  encodeSegmentHeader,
  FrameReader,
  parseSegmentFileName,
  SEGMENT_HEADER_BYTES,
  segmentFileName,
} from './segment.js';

export interface NodeWalOptions {
  dir: string;
  clusterId: string;
  config: WalConfig;
  fileLayer?: FileLayer;
  log?: (msg: string, extra?: object) => void;
}

export interface RecoveryInfo {
  /** Last checkpoint with both begin and end. */
  lastCheckpoint?: { checkpointId: number; replayFrom: WalPointer };
  /** When a torn tail was cut. */
  truncatedTail?: { segment: number; offset: number; bytesDropped: number };
}

interface SegmentInfo {
  index: number;
  /** Logical length (framed bytes, written or not). */
  bytes: number;
  summary: SegmentSummary;
}

/** A pin on segments: a reservation (partition, counter) or a reader (every segment from one on). */
type Pin = { key: number; fromExclusive: number } | { fromSegment: number };

type Status = 'open' | 'closing' | 'closed';

/** The node WAL. Open with NodeWal.open(); see the top comment. */
export class NodeWal {
  readonly recovery: RecoveryInfo = {};
  private status: Status = 'open';
  private readonly fl: FileLayer;
  private readonly log: (msg: string, extra?: object) => void;
  private readonly cfg: WalConfig;
  private readonly segments: SegmentInfo[] = [];
  private historyIndex = new HistoryIndex();
  private writer!: WalWriter;
  private readonly reservations = new Set<Pin>();
  private readonly readerPins = new Set<Pin>();
  private retention: Promise<void> = Promise.resolve();
  private closing: Promise<void> | undefined;
  /** End of the recovered WAL: replay() stops here. */
  private recoveredEnd: WalPointer = { segment: 0, offset: 0 };
  // recovery scan state
  private readonly openBegins = new Map<number, WalPointer>();
  private readonly peeked: RecordKeyFields = { cacheId: 0, partition: 0, counter: 0 };

  private constructor(private readonly opts: NodeWalOptions) {
    this.fl = opts.fileLayer ?? realFileLayer;
    this.log = opts.log ?? (() => {});
    this.cfg = opts.config;
  }

  /** Opens the WAL in `opts.dir` (created if missing) and runs recovery (table above). */
  static async open(opts: NodeWalOptions): Promise<NodeWal> {
    const wal = new NodeWal(opts);
    await wal.recover();
    return wal;
  }

  // ---------------------------------------------------------------- recovery

  private async recover(): Promise<void> {
    const { dir } = this.opts;
    let names: string[];
    try {
      await this.fl.mkdir(dir);
      names = await this.fl.readdir(dir);
      if (names.includes(`${FLOORS_FILE_NAME}.tmp`)) await this.fl.unlink(path.join(dir, `${FLOORS_FILE_NAME}.tmp`));
    } catch (err) {
      throw fsError(err, `opening WAL directory ${dir}`);
    }
    const indexes = names.map(parseSegmentFileName).filter((i): i is number => i !== undefined).sort((a, b) => a - b);
    for (let i = 1; i < indexes.length; i++) {
      if (indexes[i] !== indexes[i - 1]! + 1) throw this.corrupt(`segment ${indexes[i - 1]! + 1} is missing`, { segment: indexes[i - 1]! + 1 });
    }
    const floors = await readFloorsFile(this.fl, dir);
    if (floors && indexes.length === 0) throw this.corrupt('history.floors exists but every segment is gone');
    if (!floors && indexes.length > 0 && indexes[0]! > 0) throw this.corrupt(`segments before ${indexes[0]} were deleted but history.floors is missing`);
    this.historyIndex = new HistoryIndex(floors);
    let active: { index: number; file: FileLike; bytes: number };
    if (indexes.length === 0) active = await this.createFirstSegment();
    else {
      for (let i = 0; i < indexes.length - 1; i++) await this.recoverSegment(indexes[i]!, false);
      active = await this.recoverSegment(indexes[indexes.length - 1]!, true);
    }
    try {
      this.checkReplayFrom();
    } catch (err) {
      await active.file.close().catch(() => {});
      throw err;
    }
    this.recoveredEnd = { segment: active.index, offset: active.bytes };
    this.openBegins.clear();
    this.writer = new WalWriter({
      dir,
      clusterId: this.opts.clusterId,
      fileLayer: this.fl,
      durability: this.cfg.durability,
      flushIntervalMs: this.cfg.flushIntervalMs,
      segmentBytes: this.cfg.segmentBytes,
      bufferBytesMax: this.cfg.bufferBytesMax,
      active,
    });
  }

  private async createFirstSegment(): Promise<{ index: number; file: FileLike; bytes: number }> {
    const file = this.segmentPath(0);
    try {
      const f = await this.fl.open(file, 'wx+');
      await f.write(encodeSegmentHeader(0, this.opts.clusterId), 0, SEGMENT_HEADER_BYTES, 0);
      await f.sync();
      await this.fl.syncDir(this.opts.dir);
      this.segments.push({ index: 0, bytes: SEGMENT_HEADER_BYTES, summary: this.historyIndex.summary(0) });
      return { index: 0, file: f, bytes: SEGMENT_HEADER_BYTES };
    } catch (err) {
      throw fsError(err, `creating ${file}`);
    }
  }

  /** Checks one segment's header and frames, indexing them; cuts the torn tail of the last one. */
  private async recoverSegment(index: number, last: boolean): Promise<{ index: number; file: FileLike; bytes: number }> {
    const file = this.segmentPath(index);
    let f: FileLike;
    try {
      f = await this.fl.open(file, last ? 'r+' : 'r');
    } catch (err) {
      throw fsError(err, `opening ${file}`);
    }
    try {
      const size = await f.size();
      const headerOk = await this.checkHeader(f, index, size, last);
      const start = SEGMENT_HEADER_BYTES;
      const end = headerOk ? size : start;
      const reader = new FrameReader(f, start, end, this.cfg.recordBytesMax);
      while (await reader.nextBatch()) this.indexBatch(index, reader);
      if (reader.stop !== undefined) {
        if (!last) throw this.corrupt(`${file}: ${reader.stop} at offset ${reader.goodEnd} in an older segment`, { file, offset: reader.goodEnd });
        await this.cutTail(f, index, reader.goodEnd, size, reader.stop);
      }
      this.segments.push({ index, bytes: reader.goodEnd, summary: this.historyIndex.summary(index) });
      if (!last) await f.close();
      return { index, file: f, bytes: reader.goodEnd };
    } catch (err) {
      await f.close().catch(() => {});
      throw fsError(err, `recovering ${file}`);
    }
  }

  /**
   * Validates the header; on the last segment a missing or torn header with nothing after it
   * (crash right after creation) is rewritten. Returns false when the header was rewritten.
   */
  private async checkHeader(f: FileLike, index: number, size: number, last: boolean): Promise<boolean> {
    const file = f.path;
    if (size >= SEGMENT_HEADER_BYTES) {
      const buf = Buffer.alloc(SEGMENT_HEADER_BYTES);
      if ((await f.read(buf, 0, SEGMENT_HEADER_BYTES, 0)) !== SEGMENT_HEADER_BYTES) throw this.corrupt(`${file}: short header read`);
      try {
        checkSegmentHeader(buf, { index, clusterId: this.opts.clusterId, file });
        return true;
      } catch (err) {
        // A torn header is only believable when no valid frame follows it (nothing was acknowledged).
        if (!(last && isPtnError(err, ErrorCode.ERR_WAL_CORRUPT) && !(await this.firstFrameValid(f, size)))) throw err;
      }
    } else if (!last) {
      throw this.corrupt(`${file}: ${size} bytes is shorter than a segment header`, { file });
    }
    this.log('WAL: rewriting the header of an empty last segment (crash right after it was created)', { file, size });
    await f.truncate(0);
    await f.write(encodeSegmentHeader(index, this.opts.clusterId), 0, SEGMENT_HEADER_BYTES, 0);
    await f.sync();
    return false;
  }

  private async firstFrameValid(f: FileLike, size: number): Promise<boolean> {
    if (size < SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES) return false;
    const buf = Buffer.alloc(RECORD_HEADER_BYTES);
    await f.read(buf, 0, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES);
    return checkFrameHeader(buf, 0, this.cfg.recordBytesMax) >= 0;
  }

  private async cutTail(f: FileLike, index: number, goodEnd: number, size: number, why: string): Promise<void> {
    const bytesDropped = size - goodEnd;
    this.log('WAL: truncating the tail of the last segment', { file: f.path, offset: goodEnd, bytesDropped, reason: why });
    await f.truncate(goodEnd);
    await f.datasync();
    this.recovery.truncatedTail = { segment: index, offset: goodEnd, bytesDropped };
  }

  /** Folds a batch of recovered frames into the history index and the checkpoint state. */
  private indexBatch(segment: number, r: FrameReader): void {
    const summary = this.historyIndex.summary(segment);
    const f = this.peeked;
    for (let i = 0; i < r.count; i++) {
      const type = r.types[i]!;
      if (type === RecordType.checkpointBegin || type === RecordType.checkpointEnd) {
        this.noteCheckpoint(decodeRecordBody(type, r.buf, r.bodyStarts[i]!, r.bodyEnds[i]!));
        continue;
      }
      peekRecordBody(type, r.buf, r.bodyStarts[i]!, r.bodyEnds[i]!, f);
      if (type === RecordType.put || type === RecordType.remove) this.historyIndex.onRecord(summary, f.cacheId, f.partition, f.counter);
      else if (type === RecordType.partitionDestroy) this.historyIndex.onPartitionDestroy(f.cacheId, f.partition, { segment, offset: r.offsets[i]! });
      else this.historyIndex.onCacheDrop(f.cacheId, { segment, offset: r.offsets[i]! });
    }
  }

  private noteCheckpoint(rec: WalRecord): void {
    if (rec.type === 'checkpointBegin') this.openBegins.set(rec.checkpointId, rec.replayFrom);
    else if (rec.type === 'checkpointEnd') {
      const replayFrom = this.openBegins.get(rec.checkpointId);
      if (replayFrom === undefined) {
        this.log('WAL: checkpointEnd without its begin ignored', { checkpointId: rec.checkpointId });
        return;
      }
      this.recovery.lastCheckpoint = { checkpointId: rec.checkpointId, replayFrom };
      this.openBegins.clear(); // checkpoints run one at a time: older unfinished ones are moot
    }
  }

  private checkReplayFrom(): void {
    const rf = this.recovery.lastCheckpoint?.replayFrom;
    if (!rf) return;
    const seg = this.segments.find((s) => s.index === rf.segment);
    if (!seg || rf.offset < SEGMENT_HEADER_BYTES || rf.offset > seg.bytes) {
      throw this.corrupt(`the last checkpoint replays from ${rf.segment}:${rf.offset}, outside the retained WAL`, { replayFrom: rf });
    }
  }

  // ---------------------------------------------------------------- appending

  /**
   * Frames the record (pointer final) and resolves when durable per the mode: fsync — after the
   * group commit fsync that covers it; background — once it is in the buffer. Waits first while
   * bufferBytesMax of unwritten bytes are pending.
   */
  async append(record: WalRecord): Promise<WalPointer> {
    const frameBytes = this.measure(record);
    while (!this.writer.hasRoom()) {
      this.checkWritable();
      await this.writer.waitForRoom();
    }
    const { pointer, durable } = this.appendMeasured(record, frameBytes);
    await durable;
    return pointer;
  }

  /**
   * Like append() but returns the pointer synchronously and durability separately. Never waits
   * to frame; `durable` carries the backpressure (in background mode it resolves once the buffer
   * is below bufferBytesMax), so a caller that awaits it before its next append stays bounded.
   * Throws ERR_WAL_RECORD_TOO_LARGE / ERR_CLOSED synchronously.
   */
  appendNoWait(record: WalRecord): { pointer: WalPointer; durable: Promise<void> } {
    return this.appendMeasured(record, this.measure(record));
  }

  private measure(record: WalRecord): number {
    this.checkWritable();
    const frameBytes = recordFrameBytes(record);
    if (frameBytes > this.cfg.recordBytesMax) {
      throw ptnError(ErrorCode.ERR_WAL_RECORD_TOO_LARGE, `WAL record of ${frameBytes} bytes exceeds wal.recordBytesMax ${this.cfg.recordBytesMax}`, {
        details: { frameBytes, recordBytesMax: this.cfg.recordBytesMax },
      });
    }
    return frameBytes;
  }

  private appendMeasured(record: WalRecord, frameBytes: number): { pointer: WalPointer; durable: Promise<void> } {
    this.checkWritable();
    const pointer = this.writer.frame(record, frameBytes);
    let seg = this.segments[this.segments.length - 1]!;
    if (pointer.segment !== seg.index) {
      seg = { index: pointer.segment, bytes: SEGMENT_HEADER_BYTES, summary: this.historyIndex.summary(pointer.segment) };
      this.segments.push(seg);
    }
    seg.bytes = pointer.offset + frameBytes;
    switch (record.type) {
      case 'put':
      case 'remove':
        this.historyIndex.onRecord(seg.summary, record.cacheId, record.partition, record.counter);
        break;
      case 'partitionDestroy':
        this.historyIndex.onPartitionDestroy(record.cacheId, record.partition, pointer);
        break;
      case 'cacheDrop':
        this.historyIndex.onCacheDrop(record.cacheId, pointer);
        break;
    }
    return { pointer, durable: this.writer.durable() };
  }

  private checkWritable(): void {
    if (this.status !== 'open') throw ptnError(ErrorCode.ERR_CLOSED, 'WAL is closed');
    const failed = this.writer.failed;
    if (failed) throw failed;
  }

  /** Pointer just past the last appended record (where the next record will start). */
  position(): WalPointer {
    return this.writer.position();
  }

  /** Makes everything appended so far durable. */
  flush(): Promise<void> {
    if (this.status === 'closed') return Promise.reject(ptnError(ErrorCode.ERR_CLOSED, 'WAL is closed'));
    return this.writer.flush();
  }

  // ---------------------------------------------------------------- reading

  /**
   * Records to replay after a crash: every record from lastCheckpoint.replayFrom (or the start
   * of the WAL) to the end of the recovered WAL, in order — except put/remove records of a
   * partition that a later partitionDestroy / cacheDrop in the WAL wipes out.
   */
  async *replay(): AsyncIterable<{ pointer: WalPointer; record: WalRecord }> {
    this.checkOpen();
    const start = this.recovery.lastCheckpoint?.replayFrom ?? { segment: this.segments[0]!.index, offset: SEGMENT_HEADER_BYTES };
    const end = this.recoveredEnd;
    const pin: Pin = { fromSegment: start.segment };
    this.readerPins.add(pin);
    try {
      for (let s = start.segment; s <= end.segment; s++) {
        const from = s === start.segment ? start.offset : SEGMENT_HEADER_BYTES;
        const to = s === end.segment ? end.offset : this.segmentBytes(s);
        for await (const r of this.readSegment(s, from, to)) {
          for (let i = 0; i < r.count; i++) {
            const record = decodeRecordBody(r.types[i]!, r.buf, r.bodyStarts[i]!, r.bodyEnds[i]!);
            const pointer = { segment: s, offset: r.offsets[i]! };
            if ((record.type === 'put' || record.type === 'remove') && this.wipedLater(record, pointer)) continue;
            yield { pointer, record };
          }
        }
      }
    } finally {
      this.readerPins.delete(pin);
    }
  }

  private wipedLater(r: { cacheId: number; partition: number }, at: WalPointer): boolean {
    const reset = this.historyIndex.resetPointer(r.cacheId, r.partition);
    return reset !== undefined && comparePointers(at, reset) < 0;
  }

  /**
   * Records ('put'/'remove') of one partition with fromExclusive < counter ≤ toInclusive, in WAL
   * order, including records appended but not yet written (they are flushed first). Throws
   * ERR_WAL_HISTORY_GONE when records in that range may have been deleted.
   */
  history(cacheId: number, partition: number, fromExclusive: number, toInclusive: number): AsyncIterable<WalRecord> {
    this.checkOpen();
    assert(Number.isSafeInteger(fromExclusive) && Number.isSafeInteger(toInclusive), 'history range must be safe integers');
    this.checkHistory(cacheId, partition, fromExclusive);
    return this.readHistory(cacheId, partition, fromExclusive, toInclusive);
  }

  private async *readHistory(cacheId: number, partition: number, fromExclusive: number, toInclusive: number): AsyncIterable<WalRecord> {
    const key = partitionKey(cacheId, partition);
    const pin: Pin = { key, fromExclusive };
    this.readerPins.add(pin);
    try {
      this.checkHistory(cacheId, partition, fromExclusive); // retention may have run before the pin
      await this.writer.flush();
      const written = this.writer.writtenEnd();
      const reset = this.historyIndex.resetPointer(cacheId, partition);
      const f: RecordKeyFields = { cacheId: 0, partition: 0, counter: 0 };
      for (const seg of this.segments.slice()) {
        if (seg.index > written.segment || (reset && seg.index < reset.segment)) continue;
        if (!this.historyIndex.segmentMayHold(seg.index, key, fromExclusive, toInclusive)) continue;
        const from = reset && seg.index === reset.segment ? reset.offset : SEGMENT_HEADER_BYTES;
        const to = seg.index === written.segment ? written.offset : seg.bytes;
        for await (const r of this.readSegment(seg.index, from, to)) {
          for (let i = 0; i < r.count; i++) {
            const type = r.types[i]!;
            if (type !== RecordType.put && type !== RecordType.remove) continue;
            peekRecordBody(type, r.buf, r.bodyStarts[i]!, r.bodyEnds[i]!, f);
            if (f.partition !== partition || f.cacheId !== cacheId || f.counter <= fromExclusive || f.counter > toInclusive) continue;
            yield decodeRecordBody(type, r.buf, r.bodyStarts[i]!, r.bodyEnds[i]!);
          }
        }
      }
    } finally {
      this.readerPins.delete(pin);
    }
  }

  private checkHistory(cacheId: number, partition: number, fromExclusive: number): void {
    const availableFrom = this.historyIndex.availableFrom(cacheId, partition);
    if (fromExclusive < availableFrom) {
      throw ptnError(ErrorCode.ERR_WAL_HISTORY_GONE, `WAL history of cache ${cacheId} partition ${partition} after counter ${fromExclusive} is gone (available from ${availableFrom})`, {
        details: { cacheId, partition, fromExclusive, availableFrom },
      });
    }
  }

  /** Lowest counter c such that history(cacheId, partition, c, x) is complete (0 if nothing was ever deleted; Infinity when none is). */
  historyAvailableFrom(cacheId: number, partition: number): number {
    return this.historyIndex.availableFrom(cacheId, partition);
  }

  /** Reads the valid frames of segment `index` in [from, to); any bad frame is corruption here. */
  private async *readSegment(index: number, from: number, to: number): AsyncGenerator<FrameReader> {
    const file = this.segmentPath(index);
    let f: FileLike;
    try {
      f = await this.fl.open(file, 'r');
    } catch (err) {
      throw fsError(err, `opening ${file}`);
    }
    try {
      const reader = new FrameReader(f, from, to, this.cfg.recordBytesMax);
      while (await reader.nextBatch()) yield reader;
      if (reader.stop !== undefined) throw this.corrupt(`${file}: ${reader.stop} at offset ${reader.goodEnd}`, { file, offset: reader.goodEnd });
    } catch (err) {
      throw fsError(err, `reading ${file}`);
    } finally {
      await f.close();
    }
  }

  // ---------------------------------------------------------------- reservations and retention

  /**
   * Pins every segment that may hold records of (cacheId, partition) with counter > fromExclusive
   * until release() (idempotent). Throws ERR_WAL_HISTORY_GONE if that history is already gone.
   */
  reserve(cacheId: number, partition: number, fromExclusive: number): { release(): void } {
    this.checkOpen();
    this.checkHistory(cacheId, partition, fromExclusive);
    const pin: Pin = { key: partitionKey(cacheId, partition), fromExclusive };
    this.reservations.add(pin);
    return { release: () => void this.reservations.delete(pin) };
  }

  /**
   * After a checkpoint END is durable: deletes segments wholly before `replayFrom`, oldest first,
   * while they exceed historyBytesMax, stopping at the first pinned one (deletion stays a prefix).
   */
  checkpointCompleted(replayFrom: WalPointer): Promise<void> {
    this.checkOpen();
    assert(comparePointers(replayFrom, this.position()) <= 0, 'replayFrom is after the end of the WAL');
    const run = this.retention.then(() => this.applyRetention(replayFrom));
    this.retention = run.catch(() => {});
    return run;
  }

  private async applyRetention(replayFrom: WalPointer): Promise<void> {
    const candidates = this.segments.filter((s) => s.index < replayFrom.segment);
    let historyBytes = candidates.reduce((n, s) => n + s.bytes, 0);
    const doomed: SegmentInfo[] = [];
    for (const s of candidates) {
      if (historyBytes <= this.cfg.historyBytesMax || this.isPinned(s.index)) break;
      doomed.push(s);
      historyBytes -= s.bytes;
    }
    if (doomed.length === 0) return;
    assert(doomed[doomed.length - 1]!.index < this.writer.position().segment, 'retention never deletes the active segment');
    for (const s of doomed) this.historyIndex.onSegmentDeleted(s.index);
    await writeFloorsFile(this.fl, this.opts.dir, this.historyIndex.floors());
    this.segments.splice(0, doomed.length);
    try {
      for (const s of doomed) await this.fl.unlink(this.segmentPath(s.index));
      await this.fl.syncDir(this.opts.dir);
    } catch (err) {
      throw fsError(err, 'deleting WAL segments');
    }
    this.log('WAL: deleted old segments', { first: doomed[0]!.index, last: doomed[doomed.length - 1]!.index });
  }

  private isPinned(segment: number): boolean {
    for (const set of [this.reservations, this.readerPins]) {
      for (const p of set) {
        if ('fromSegment' in p ? segment >= p.fromSegment : this.historyIndex.segmentMayHold(segment, p.key, p.fromExclusive, Infinity)) return true;
      }
    }
    return false;
  }

  // ---------------------------------------------------------------- stats and lifecycle

  stats(): { segments: number; bytes: number; oldestSegment: number; reservations: number; fsyncs: number; appends: number; bufferedBytes: number; bufferedBytesPeak: number } {
    let bytes = 0;
    for (const s of this.segments) bytes += s.bytes;
    const w = this.writer;
    return {
      segments: this.segments.length,
      bytes,
      oldestSegment: this.segments[0]!.index,
      reservations: this.reservations.size,
      fsyncs: w.fsyncs,
      appends: w.appends,
      bufferedBytes: w.pendingBytes,
      bufferedBytesPeak: w.pendingBytesPeak,
    };
  }

  /** Flushes and closes; idempotent. Appends after close → ERR_CLOSED. */
  close(): Promise<void> {
    if (!this.closing) {
      this.status = 'closing';
      this.closing = (async () => {
        try {
          await this.writer.close();
        } finally {
          await this.retention;
          this.status = 'closed';
        }
      })();
    }
    return this.closing;
  }

  private checkOpen(): void {
    if (this.status !== 'open') throw ptnError(ErrorCode.ERR_CLOSED, 'WAL is closed');
  }

  private segmentBytes(index: number): number {
    const s = this.segments.find((x) => x.index === index);
    if (!s) throw this.corrupt(`segment ${index} is not retained`);
    return s.bytes;
  }

  private segmentPath(index: number): string {
    return path.join(this.opts.dir, segmentFileName(index));
  }

  private corrupt(msg: string, details: Record<string, unknown> = {}) {
    return ptnError(ErrorCode.ERR_WAL_CORRUPT, `WAL ${this.opts.dir}: ${msg}`, { details: { dir: this.opts.dir, ...details } });
  }
}
