/**
 * Node WAL segment files: naming, the segment header, and a batched frame reader.
 *
 * A segment is `<walDir>/<index, 16 decimal digits>.wal`: a header, then record frames
 * (src/wal/record.ts) back to back, no padding. A record never spans two segments. Segments are
 * not preallocated, so a closed segment ends exactly at its last frame. All integers little-endian.
 *
 * Segment header (SEGMENT_HEADER_BYTES = 88):
 *
 * | offset | size | field                                                  |
 * |--------|------|--------------------------------------------------------|
 * | 0      | 4    | magic "PTNW" (0x50 0x54 0x4E 0x57)                     |
 * | 4      | 2    | format version, u16 (1)                                |
 * | 6      | 2    | header length, u16 (88)                                |
 * | 8      | 8    | segment index, u64 (safe integer, matches the name)    |
 * | 16     | 1    | cluster id length n, u8 (1..64)                        |
 * | 17     | 3    | reserved, zero                                         |
 * | 20     | 64   | cluster id, ASCII, zero padded                         |
 * | 84     | 4    | CRC-32 of bytes 0..83                                  |
 *
 * Checks on read, in this order: magic (else ERR_WAL_CORRUPT), version (else ERR_WAL_VERSION: the
 * version field sits at the same place in every version, so it is read before the CRC whose place
 * may differ), CRC and layout (ERR_WAL_CORRUPT), cluster id (ERR_FILE_WRONG_CLUSTER), index.
 */
import { assert, ErrorCode, ptnError } from '../errors.js';
import { crc32 } from '../util/crc32.js';
import type { FileLike } from '../util/file-layer.js';
import { checkFrameBody, checkFrameHeader, RECORD_HEADER_BYTES } from './record.js';

/** "PTNW" read as a little-endian u32. */
export const SEGMENT_MAGIC = 0x574e5450;
/** Segment format version this build writes and reads. */
export const SEGMENT_VERSION = 1;
/** Size of the segment header. */
export const SEGMENT_HEADER_BYTES = 88;
const CLUSTER_ID_BYTES_MAX = 64;
const U32 = 0x1_0000_0000;

const SEGMENT_NAME = /^(\d{16})\.wal$/;

/** File name of segment `index`. */
export function segmentFileName(index: number): string {
  assert(Number.isSafeInteger(index) && index >= 0, `bad segment index ${index}`);
  return `${String(index).padStart(16, '0')}.wal`;
}

/** Segment index encoded in a file name, or undefined when the name is not a segment's. */
export function parseSegmentFileName(name: string): number | undefined {
  const m = SEGMENT_NAME.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** Encodes the header of segment `index` of cluster `clusterId`. */
export function encodeSegmentHeader(index: number, clusterId: string): Buffer {
  assert(Number.isSafeInteger(index) && index >= 0, `bad segment index ${index}`);
  const idBytes = Buffer.byteLength(clusterId, 'utf8');
  assert(idBytes >= 1 && idBytes <= CLUSTER_ID_BYTES_MAX, 'cluster id must be 1..64 bytes');
  const buf = Buffer.alloc(SEGMENT_HEADER_BYTES);
  buf.writeUInt32LE(SEGMENT_MAGIC, 0);
  buf.writeUInt16LE(SEGMENT_VERSION, 4);
  buf.writeUInt16LE(SEGMENT_HEADER_BYTES, 6);
  buf.writeUInt32LE(index % U32, 8);
  buf.writeUInt32LE(Math.floor(index / U32), 12);
  buf[16] = idBytes;
  buf.write(clusterId, 20, 'utf8');
  buf.writeUInt32LE(crc32(buf.subarray(0, 84)), 84);
  return buf;
}

/**
 * Checks a segment header read from `file` (at least SEGMENT_HEADER_BYTES bytes) against the
 * expected cluster and index. Throws the coded errors listed in the top comment.
 */
export function checkSegmentHeader(buf: Buffer, expect: { index: number; clusterId: string; file: string }): void {
  assert(buf.length >= SEGMENT_HEADER_BYTES, 'segment header size');
  const { file } = expect;
  const corrupt = (why: string) =>
    ptnError(ErrorCode.ERR_WAL_CORRUPT, `${file}: segment header ${why}`, { details: { file } });
  if (buf.readUInt32LE(0) !== SEGMENT_MAGIC) throw corrupt('has a bad magic');
  const version = buf.readUInt16LE(4);
  if (version !== SEGMENT_VERSION) {
    throw ptnError(ErrorCode.ERR_WAL_VERSION, `${file}: WAL segment format version ${version} is unknown (this build reads ${SEGMENT_VERSION})`, {
      details: { file, version },
    });
  }
  if (buf.readUInt32LE(84) !== crc32(buf.subarray(0, 84))) throw corrupt('fails its CRC');
  const idBytes = buf[16]!;
  if (buf.readUInt16LE(6) !== SEGMENT_HEADER_BYTES || idBytes < 1 || idBytes > CLUSTER_ID_BYTES_MAX || buf[17] || buf[18] || buf[19]) {
    throw corrupt('has a bad layout');
  }
  const clusterId = buf.toString('utf8', 20, 20 + idBytes);
  if (clusterId !== expect.clusterId) {
    throw ptnError(ErrorCode.ERR_FILE_WRONG_CLUSTER, `${file}: WAL belongs to cluster "${clusterId}", not "${expect.clusterId}"`, {
      details: { file, clusterId, expected: expect.clusterId },
    });
  }
  const index = buf.readUInt32LE(12) * U32 + buf.readUInt32LE(8);
  if (index !== expect.index) throw corrupt(`names segment ${index}, the file name says ${expect.index}`);
}

/** Why a FrameReader stopped before the end it was given. */
export type FrameReaderStop = 'truncated' | 'bad header' | 'bad body crc';

/**
 * Reads the frames of one segment from `startOffset` to `endOffset` in batches: one file read
 * per `readBytes` (grown, up to recordBytesMax, only for a frame larger than the buffer), every
 * frame's header and body CRC checked, no allocation per frame. After each `nextBatch()` the
 * arrays hold the batch's frames (valid until the next call); `buf` holds their bytes.
 *
 * With `checkBodies` false the body CRCs are left to the caller (`bodyValid(i)`), for a reader
 * that uses a few frames of many: a history read of one partition skips the others' bodies
 * (15 of 16 at 16 partitions) without paying for their CRC. Headers are always checked, so the
 * frame boundaries are sound either way.
 *
 * Stops at the end, or at the first frame that is not valid: then `stop` says why and
 * `goodEnd` is the offset just past the last valid frame (the recovery truncation point).
 */
export class FrameReader {
  buf: Buffer;
  /** Frames in the current batch. */
  count = 0;
  /** Segment offset of each frame of the batch. */
  readonly offsets: number[] = [];
  /** Type byte of each frame. */
  readonly types: number[] = [];
  /** Start and end of each frame's body in `buf`. */
  readonly bodyStarts: number[] = [];
  readonly bodyEnds: number[] = [];
  /** Offset just past the last valid frame read so far. */
  goodEnd: number;
  stop: FrameReaderStop | undefined;
  private bufFileOffset: number; // file offset of buf[0]
  private bufBytes = 0; // valid bytes in buf
  private done = false;

  constructor(
    private readonly file: FileLike,
    startOffset: number,
    private readonly endOffset: number,
    private readonly recordBytesMax: number,
    readBytes = 1 << 20,
    private readonly checkBodies = true,
  ) {
    assert(startOffset <= endOffset, 'reader start after end');
    this.buf = Buffer.allocUnsafe(Math.max(RECORD_HEADER_BYTES, Math.min(readBytes, endOffset - startOffset)));
    this.bufFileOffset = startOffset;
    this.goodEnd = startOffset;
  }

  /** Reads the next batch. False when there is nothing more (end reached or `stop` set). */
  async nextBatch(): Promise<boolean> {
    this.count = 0;
    while (!this.done) {
      this.parseBuffered();
      if (this.count > 0 || this.done) return this.count > 0;
      await this.refill();
    }
    return false;
  }

  /** Parses whole frames from the buffered bytes, starting at goodEnd. */
  private parseBuffered(): void {
    const { buf, recordBytesMax } = this;
    let pos = this.goodEnd - this.bufFileOffset;
    while (pos + RECORD_HEADER_BYTES <= this.bufBytes) {
      const bodyBytes = checkFrameHeader(buf, pos, recordBytesMax);
      if (bodyBytes < 0) return this.halt('bad header');
      const frameEnd = pos + RECORD_HEADER_BYTES + bodyBytes;
      if (frameEnd > this.bufBytes) break;
      if (this.checkBodies && !checkFrameBody(buf, pos, bodyBytes)) return this.halt('bad body crc');
      const i = this.count++;
      this.offsets[i] = this.bufFileOffset + pos;
      this.types[i] = buf[pos + 13]!;
      this.bodyStarts[i] = pos + RECORD_HEADER_BYTES;
      this.bodyEnds[i] = frameEnd;
      pos = frameEnd;
      this.goodEnd = this.bufFileOffset + pos;
    }
    if (this.goodEnd === this.endOffset) this.done = true;
  }

  /** True when frame `i` of the batch matches its body CRC (what `checkBodies` false leaves out). */
  bodyValid(i: number): boolean {
    const start = this.bodyStarts[i]!;
    return checkFrameBody(this.buf, start - RECORD_HEADER_BYTES, this.bodyEnds[i]! - start);
  }

  private halt(why: FrameReaderStop): void {
    this.stop = why;
    this.done = true;
  }

  /** Moves the unparsed tail to the front of the buffer (growing it if one frame needs it) and reads more. */
  private async refill(): Promise<void> {
    const tail = this.goodEnd - this.bufFileOffset;
    const kept = this.bufBytes - tail;
    let need = RECORD_HEADER_BYTES;
    if (kept >= RECORD_HEADER_BYTES) need = RECORD_HEADER_BYTES + this.buf.readUInt32LE(tail + 8); // header checked already
    const left = this.endOffset - this.goodEnd;
    if (need > left) return this.halt('truncated');
    if (need > this.buf.length) {
      const bigger = Buffer.allocUnsafe(Math.min(Math.max(need, this.buf.length * 2), this.recordBytesMax, left));
      this.buf.copy(bigger, 0, tail, this.bufBytes);
      this.buf = bigger;
    } else if (tail > 0) {
      this.buf.copyWithin(0, tail, this.bufBytes);
    }
    this.bufFileOffset = this.goodEnd;
    this.bufBytes = kept;
    const want = Math.min(this.buf.length - kept, this.endOffset - (this.goodEnd + kept));
    const got = await this.file.read(this.buf, kept, want, this.goodEnd + kept);
    if (got === 0) return this.halt('truncated'); // the file is shorter than the caller said
    this.bufBytes += got;
  }
}
