/**
 * Recovery of the node WAL directory: the cases and their outcomes are the table at the top of
 * node-wal.ts (one test per row in test/unit/wal/node-wal-recovery.test.ts). This scans every
 * segment once, checks headers and frames, cuts the torn tail of the last segment, and folds the
 * records into what NodeWal needs: per-segment summaries and floors (HistoryIndex), the last
 * completed checkpoint, and the active segment open for appending.
 */
import path from 'node:path';
import { ErrorCode, fsError, isPtnError, ptnError } from '../errors.js';
import type { FileLayer, FileLike } from '../util/file-layer.js';
import { FLOORS_FILE_NAME, readFloorsFile } from './history-floors.js';
import { HistoryIndex, type SegmentSummary } from './history.js';
import {
  checkFrameHeader,
  decodeRecordBody,
  peekRecordBody,
  RECORD_HEADER_BYTES,
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

/** What recovery found (NodeWal.recovery). */
export interface RecoveryInfo {
  /** Last checkpoint with both begin and end. */
  lastCheckpoint?: { checkpointId: number; replayFrom: WalPointer };
  /** When a torn tail was cut. */
  truncatedTail?: { segment: number; offset: number; bytesDropped: number };
}

/** A retained segment. */
export interface SegmentInfo {
  index: number;
  /** Logical length (framed bytes, written or not). */
  bytes: number;
  summary: SegmentSummary;
}

/** The active (last) segment, open for appending at `bytes`. */
export interface ActiveSegment {
  index: number;
  file: FileLike;
  bytes: number;
}

export interface RecoveredWal {
  recovery: RecoveryInfo;
  history: HistoryIndex;
  /** Oldest first, contiguous. */
  segments: SegmentInfo[];
  active: ActiveSegment;
}

export interface RecoverOptions {
  dir: string;
  clusterId: string;
  fileLayer: FileLayer;
  recordBytesMax: number;
  /** Spacing of the history index's skip points (history.ts skipBytesFor). */
  skipBytes: number;
  log: (msg: string, extra?: object) => void;
}

/** Opens (or creates) the WAL in `o.dir` and recovers it. */
export function recoverWal(o: RecoverOptions): Promise<RecoveredWal> {
  return new WalRecovery(o).run();
}

class WalRecovery {
  private readonly recovery: RecoveryInfo = {};
  private history = new HistoryIndex();
  private readonly segments: SegmentInfo[] = [];
  private readonly openBegins = new Map<number, WalPointer>();
  private readonly peeked: RecordKeyFields = { cacheId: 0, partition: 0, counter: 0 };

  constructor(private readonly o: RecoverOptions) {}

  async run(): Promise<RecoveredWal> {
    const indexes = await this.listSegments();
    const floors = await readFloorsFile(this.o.fileLayer, this.o.dir);
    if (floors && indexes.length === 0) throw this.corrupt('history.floors exists but every segment is gone');
    if (!floors && indexes.length > 0 && indexes[0]! > 0) throw this.corrupt(`segments before ${indexes[0]} were deleted but history.floors is missing`);
    this.history = new HistoryIndex(floors, this.o.skipBytes);
    let active: ActiveSegment;
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
    return { recovery: this.recovery, history: this.history, segments: this.segments, active };
  }

  /** Segment indexes, sorted and checked contiguous; removes a leftover floors tmp file. */
  private async listSegments(): Promise<number[]> {
    const { dir, fileLayer } = this.o;
    let names: string[];
    try {
      await fileLayer.mkdir(dir);
      names = await fileLayer.readdir(dir);
      if (names.includes(`${FLOORS_FILE_NAME}.tmp`)) await fileLayer.unlink(path.join(dir, `${FLOORS_FILE_NAME}.tmp`));
    } catch (err) {
      throw fsError(err, `opening WAL directory ${dir}`);
    }
    const indexes = names.map(parseSegmentFileName).filter((i): i is number => i !== undefined).sort((a, b) => a - b);
    for (let i = 1; i < indexes.length; i++) {
      if (indexes[i] !== indexes[i - 1]! + 1) throw this.corrupt(`segment ${indexes[i - 1]! + 1} is missing`, { segment: indexes[i - 1]! + 1 });
    }
    return indexes;
  }

  private async createFirstSegment(): Promise<ActiveSegment> {
    const file = this.segmentPath(0);
    try {
      const f = await this.o.fileLayer.open(file, 'wx+');
      await f.write(encodeSegmentHeader(0, this.o.clusterId), 0, SEGMENT_HEADER_BYTES, 0);
      await f.sync();
      await this.o.fileLayer.syncDir(this.o.dir);
      this.segments.push({ index: 0, bytes: SEGMENT_HEADER_BYTES, summary: this.history.summary(0) });
      return { index: 0, file: f, bytes: SEGMENT_HEADER_BYTES };
    } catch (err) {
      throw fsError(err, `creating ${file}`);
    }
  }

  /** Checks one segment's header and frames, indexing them; cuts the torn tail of the last one. */
  private async recoverSegment(index: number, last: boolean): Promise<ActiveSegment> {
    const file = this.segmentPath(index);
    let f: FileLike;
    try {
      f = await this.o.fileLayer.open(file, last ? 'r+' : 'r');
    } catch (err) {
      throw fsError(err, `opening ${file}`);
    }
    try {
      const size = await f.size();
      const headerOk = await this.checkHeader(f, index, size, last);
      const start = SEGMENT_HEADER_BYTES;
      const end = headerOk ? size : start;
      const reader = new FrameReader(f, start, end, this.o.recordBytesMax);
      while (await reader.nextBatch()) this.indexBatch(index, reader);
      if (reader.stop !== undefined) {
        if (!last) throw this.corrupt(`${file}: ${reader.stop} at offset ${reader.goodEnd} in an older segment`, { file, offset: reader.goodEnd });
        await this.cutTail(f, index, reader.goodEnd, size, reader.stop);
      }
      this.segments.push({ index, bytes: reader.goodEnd, summary: this.history.summary(index) });
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
        checkSegmentHeader(buf, { index, clusterId: this.o.clusterId, file });
        return true;
      } catch (err) {
        // A torn header is only believable when no valid frame follows it (nothing was acknowledged).
        if (!(last && isPtnError(err, ErrorCode.ERR_WAL_CORRUPT) && !(await this.firstFrameValid(f, size)))) throw err;
      }
    } else if (!last) {
      throw this.corrupt(`${file}: ${size} bytes is shorter than a segment header`, { file });
    }
    this.o.log('WAL: rewriting the header of an empty last segment (crash right after it was created)', { file, size });
    await f.truncate(0);
    await f.write(encodeSegmentHeader(index, this.o.clusterId), 0, SEGMENT_HEADER_BYTES, 0);
    await f.sync();
    return false;
  }

  private async firstFrameValid(f: FileLike, size: number): Promise<boolean> {
    if (size < SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES) return false;
    const buf = Buffer.alloc(RECORD_HEADER_BYTES);
    await f.read(buf, 0, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES);
    return checkFrameHeader(buf, 0, this.o.recordBytesMax) >= 0;
  }

  private async cutTail(f: FileLike, index: number, goodEnd: number, size: number, why: string): Promise<void> {
    const bytesDropped = size - goodEnd;
    this.o.log('WAL: truncating the tail of the last segment', { file: f.path, offset: goodEnd, bytesDropped, reason: why });
    await f.truncate(goodEnd);
    await f.datasync();
    this.recovery.truncatedTail = { segment: index, offset: goodEnd, bytesDropped };
  }

  /** Folds a batch of recovered frames into the history index and the checkpoint state. */
  private indexBatch(segment: number, r: FrameReader): void {
    const summary = this.history.summary(segment);
    const f = this.peeked;
    for (let i = 0; i < r.count; i++) {
      const type = r.types[i]!;
      if (type === RecordType.checkpointBegin || type === RecordType.checkpointEnd) {
        this.noteCheckpoint(decodeRecordBody(type, r.buf, r.bodyStarts[i]!, r.bodyEnds[i]!));
        continue;
      }
      peekRecordBody(type, r.buf, r.bodyStarts[i]!, r.bodyEnds[i]!, f);
      if (type === RecordType.put || type === RecordType.remove) this.history.onRecord(summary, f.cacheId, f.partition, f.counter, r.offsets[i]!);
      else if (type === RecordType.partitionDestroy) this.history.onPartitionDestroy(f.cacheId, f.partition, { segment, offset: r.offsets[i]! });
      else this.history.onCacheDrop(f.cacheId, { segment, offset: r.offsets[i]! });
    }
  }

  private noteCheckpoint(rec: WalRecord): void {
    if (rec.type === 'checkpointBegin') this.openBegins.set(rec.checkpointId, rec.replayFrom);
    else if (rec.type === 'checkpointEnd') {
      const replayFrom = this.openBegins.get(rec.checkpointId);
      if (replayFrom === undefined) {
        this.o.log('WAL: checkpointEnd without its begin ignored', { checkpointId: rec.checkpointId });
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

  private segmentPath(index: number): string {
    return path.join(this.o.dir, segmentFileName(index));
  }

  private corrupt(msg: string, details: Record<string, unknown> = {}) {
    return ptnError(ErrorCode.ERR_WAL_CORRUPT, `WAL ${this.o.dir}: ${msg}`, { details: { dir: this.o.dir, ...details } });
  }
}
