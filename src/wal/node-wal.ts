/**
 * The node WAL: every update a node applies is appended here first; partition pages are written
 * only at checkpoints, so after a crash the node replays the records after the last completed
 * checkpoint. The WAL also keeps history (records of one partition by counter range) for
 * historical rebalance, and reservations pin the segments a reader still needs.
 *
 * Pieces: record.ts (frames), segment.ts (files, header, frame reader), group-commit.ts (framing,
 * batching, fsync), history.ts (per-segment counter ranges, floors, resets), history-floors.ts
 * (what survives deleted segments), recovery.ts (the table below). This file: the API, replay,
 * history reads, reservations, retention, lifecycle.
 *
 * Invariants: segment indexes are contiguous; only the last segment may end in a torn frame;
 * retention deletes a prefix of the segments (never the active one, never one a reservation or
 * a reader pins), and writes history.floors before unlinking anything.
 *
 * Recovery (NodeWal.open → recovery.ts), one test per row in test/unit/wal/node-wal-recovery.test.ts:
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
import { assert, ErrorCode, fsError, ptnError } from '../errors.js';
import type { WalConfig } from '../config.js';
import { realFileLayer, type FileLayer, type FileLike } from '../util/file-layer.js';
import { WalWriter } from './group-commit.js';
import { writeFloorsFile } from './history-floors.js';
import { partitionKey, skipBytesFor, type HistoryIndex } from './history.js';
import { comparePointers, decodeRecordBody, peekRecordBody, recordFrameBytes, RecordType, type RecordKeyFields, type WalPointer, type WalRecord } from './record.js';
import { recoverWal, type RecoveredWal, type RecoveryInfo, type SegmentInfo } from './recovery.js';
import { FrameReader, SEGMENT_HEADER_BYTES, segmentFileName } from './segment.js';

export type { RecoveryInfo } from './recovery.js';

/** Options of NodeWal.open(). */
export interface NodeWalOptions {
  /** The WAL directory (created if missing); holds only this WAL's segments and history.floors. */
  dir: string;
  /** Written into every segment header; a WAL of another cluster is refused. */
  clusterId: string;
  config: WalConfig;
  /** Defaults to realFileLayer; tests inject faults here. */
  fileLayer?: FileLayer;
  /** Recovery and retention events worth a line (torn tail cut, segments deleted …). */
  log?: (msg: string, extra?: object) => void;
}

/** A pin on segments: a reservation (partition, counter) or a reader (every segment from one on). */
type Pin = { key: number; fromExclusive: number } | { fromSegment: number };

type Status = 'open' | 'closing' | 'closed';

/** The node WAL. Open with NodeWal.open(); see the top comment. */
export class NodeWal {
  readonly recovery: RecoveryInfo;
  private status: Status = 'open';
  private readonly cfg: WalConfig;
  private readonly segments: SegmentInfo[];
  private readonly historyIndex: HistoryIndex;
  private readonly writer: WalWriter;
  private readonly reservations = new Set<Pin>();
  private readonly readerPins = new Set<Pin>();
  private retention: Promise<void> = Promise.resolve();
  private closing: Promise<void> | undefined;
  /** End of the recovered WAL: replay() stops here. */
  private readonly recoveredEnd: WalPointer;

  private constructor(
    private readonly opts: NodeWalOptions,
    private readonly fl: FileLayer,
    private readonly log: (msg: string, extra?: object) => void,
    r: RecoveredWal,
  ) {
    this.cfg = opts.config;
    this.recovery = r.recovery;
    this.historyIndex = r.history;
    this.segments = r.segments;
    this.recoveredEnd = { segment: r.active.index, offset: r.active.bytes };
    this.writer = new WalWriter({
      dir: opts.dir,
      clusterId: opts.clusterId,
      fileLayer: fl,
      durability: this.cfg.durability,
      flushIntervalMs: this.cfg.flushIntervalMs,
      segmentBytes: this.cfg.segmentBytes,
      bufferBytesMax: this.cfg.bufferBytesMax,
      active: r.active,
    });
  }

  /** Opens the WAL in `opts.dir` (created if missing) and runs recovery (table above). */
  static async open(opts: NodeWalOptions): Promise<NodeWal> {
    const fileLayer = opts.fileLayer ?? realFileLayer;
    const log = opts.log ?? (() => {});
    const r = await recoverWal({ dir: opts.dir, clusterId: opts.clusterId, fileLayer, recordBytesMax: opts.config.recordBytesMax, skipBytes: skipBytesFor(opts.config.segmentBytes), log });
    return new NodeWal(opts, fileLayer, log, r);
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
        this.historyIndex.onRecord(seg.summary, record.cacheId, record.partition, record.counter, pointer.offset);
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
   *
   * `bound`, when given, is the caller's upper end as it lowers it while reading (a batch that
   * filled up needs nothing above its last counter): the read stops as soon as no record at or
   * below `bound.upTo` can follow (HistoryIndex.readEnds, segmentMayHold), instead of at the end
   * of the WAL. Records above it may still be yielded (the caller drops them).
   */
  history(cacheId: number, partition: number, fromExclusive: number, toInclusive: number, bound?: { upTo: number }): AsyncIterable<WalRecord> {
    this.checkOpen();
    assert(Number.isSafeInteger(fromExclusive) && Number.isSafeInteger(toInclusive), 'history range must be safe integers');
    this.checkHistory(cacheId, partition, fromExclusive);
    return this.readHistory(cacheId, partition, fromExclusive, toInclusive, bound ?? { upTo: toInclusive });
  }

  private async *readHistory(cacheId: number, partition: number, fromExclusive: number, toInclusive: number, bound: { upTo: number }): AsyncIterable<WalRecord> {
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
        if (!this.historyIndex.segmentMayHold(seg.index, key, fromExclusive, Math.min(toInclusive, bound.upTo))) continue;
        // Past the records of a wiped incarnation, and past those the skip points say are ≤ fromExclusive.
        const from = Math.max(reset && seg.index === reset.segment ? reset.offset : SEGMENT_HEADER_BYTES, this.historyIndex.scanStart(seg.index, key, fromExclusive)!);
        const to = seg.index === written.segment ? written.offset : seg.bytes;
        // A skip point may lie past `to` (appended after the flush): nothing below it is served.
        if (from >= to) continue;
        // Bodies unchecked but for the records served: the others' key fields are read from bytes
        // no CRC vouched for, so a corrupt one may be skipped (its partition's counters then show
        // the gap: the demander asks again, then starts over from a file) but never served.
        let seenMax = 0; // highest counter of the partition read in this segment
        segment: for await (const r of this.readSegment(seg.index, from, to, false)) {
          for (let i = 0; i < r.count; i++) {
            const type = r.types[i]!;
            if (type !== RecordType.put && type !== RecordType.remove) continue;
            peekRecordBody(type, r.buf, r.bodyStarts[i]!, r.bodyEnds[i]!, f);
            if (f.partition !== partition || f.cacheId !== cacheId) continue;
            if (f.counter > seenMax) {
              seenMax = f.counter;
              if (this.historyIndex.readEnds(seg.index, key, seenMax, Math.min(toInclusive, bound.upTo))) break segment;
            }
            if (f.counter <= fromExclusive || f.counter > toInclusive) continue;
            if (!r.bodyValid(i)) throw this.corrupt(`${this.segmentPath(seg.index)}: bad body crc at offset ${r.offsets[i]}`, { file: this.segmentPath(seg.index), offset: r.offsets[i] });
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

  /** Reads the valid frames of segment `index` in [from, to); any bad frame is corruption here (body CRCs: see FrameReader). */
  private async *readSegment(index: number, from: number, to: number, checkBodies = true): AsyncGenerator<FrameReader> {
    const file = this.segmentPath(index);
    let f: FileLike;
    try {
      f = await this.fl.open(file, 'r');
    } catch (err) {
      throw fsError(err, `opening ${file}`);
    }
    try {
      const reader = new FrameReader(f, from, to, this.cfg.recordBytesMax, undefined, checkBodies);
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

  /**
   * Counters for status and tests. Beyond the brief's fields: bufferedBytes (framed, not yet
   * written) and bufferedBytesPeak (its high-water mark, the backpressure bound in practice).
   */
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
