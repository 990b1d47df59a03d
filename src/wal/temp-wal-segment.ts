/**
 * On-disk format of a temporary (catch-up) WAL segment: a header, then framed records back to back.
 * One record never spans two segments. All integers little-endian.
 *
 * Segment header (TEMP_WAL_HEADER_BYTES = 20):
 *
 * | offset | size | field                                             |
 * |--------|------|---------------------------------------------------|
 * | 0      | 4    | magic "PTTW" (0x50 0x54 0x54 0x57)                |
 * | 4      | 1    | format version (1)                                |
 * | 5      | 3    | reserved, zero                                    |
 * | 8      | 8    | segment index, u64 (safe integer ≥ 1)             |
 * | 16     | 4    | CRC-32 of bytes 0..15                             |
 *
 * Record frame (TEMP_WAL_FRAME_HEADER_BYTES = 8, then the payload):
 *
 * | offset | size | field                                                    |
 * |--------|------|----------------------------------------------------------|
 * | 0      | 4    | payload length n, u32 (≤ recordBytesMax)                 |
 * | 4      | 4    | CRC-32 of bytes 0..3 (the length) followed by the payload |
 * | 8      | n    | payload (opaque bytes; the demander encodes them)        |
 *
 * The CRC covers the length too, so a torn or garbage length field is caught as well; an all-zero
 * tail never passes (the CRC of four zero bytes is not zero). Payloads may be empty.
 *
 * Segment files are named `<index, 16 decimal digits>.twal` so that names sort like indexes.
 */
import { assert, ErrorCode, ptnError, type PtnError } from '../errors.js';
import { crc32 } from '../util/crc32.js';
import type { FileLayer, FileLike } from '../util/file-layer.js';

/** "PTTW" read as a little-endian u32. */
export const TEMP_WAL_MAGIC = 0x57545450;
/** Segment format version this build writes and reads. */
export const TEMP_WAL_VERSION = 1;
/** Size of the segment header. */
export const TEMP_WAL_HEADER_BYTES = 20;
/** Size of a record frame before its payload. */
export const TEMP_WAL_FRAME_HEADER_BYTES = 8;
/** Largest payload the u32 length field can describe. */
export const TEMP_WAL_PAYLOAD_BYTES_LIMIT = 0xffff_ffff;

const SEGMENT_NAME = /^(\d{16})\.twal$/;

/** File name of segment `index`. */
export function segmentFileName(index: number): string {
  assert(Number.isSafeInteger(index) && index >= 1, `bad segment index ${index}`);
  return `${String(index).padStart(16, '0')}.twal`;
}

/** Segment index encoded in a file name, or undefined when the name is not a segment's. */
export function parseSegmentFileName(name: string): number | undefined {
  const m = SEGMENT_NAME.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** Encodes a segment header. */
export function encodeSegmentHeader(index: number): Buffer {
  assert(Number.isSafeInteger(index) && index >= 1, `bad segment index ${index}`);
  const buf = Buffer.alloc(TEMP_WAL_HEADER_BYTES);
  buf.writeUInt32LE(TEMP_WAL_MAGIC, 0);
  buf.writeUInt8(TEMP_WAL_VERSION, 4);
  buf.writeUInt32LE(index % 0x1_0000_0000, 8);
  buf.writeUInt32LE(Math.floor(index / 0x1_0000_0000), 12);
  buf.writeUInt32LE(crc32(buf.subarray(0, 16)), 16);
  return buf;
}

/**
 * Decodes and checks a segment header (exactly TEMP_WAL_HEADER_BYTES bytes). Returns the segment
 * index. Bad magic, bad CRC, unknown version or non-zero reserved bytes → ERR_TEMP_WAL_CORRUPT.
 */
export function decodeSegmentHeader(buf: Buffer, file: string): number {
  assert(buf.length === TEMP_WAL_HEADER_BYTES, 'segment header size');
  const bad = (why: string, details: Record<string, unknown> = {}) =>
    ptnError(ErrorCode.ERR_TEMP_WAL_CORRUPT, `${file}: segment header ${why}`, { details: { file, ...details } });
  if (buf.readUInt32LE(0) !== TEMP_WAL_MAGIC) throw bad('has a bad magic');
  if (buf.readUInt32LE(16) !== crc32(buf.subarray(0, 16))) throw bad('fails its CRC');
  const version = buf.readUInt8(4);
  if (version !== TEMP_WAL_VERSION) throw bad(`has unknown version ${version}`, { version });
  if (buf[5] !== 0 || buf[6] !== 0 || buf[7] !== 0) throw bad('has non-zero reserved bytes');
  const high = buf.readUInt32LE(12);
  if (high > 0x1f_ffff) throw bad('has a segment index above 2^53');
  const index = high * 0x1_0000_0000 + buf.readUInt32LE(8);
  if (index < 1) throw bad('has segment index 0');
  return index;
}

/** Total frame size of a payload of `payloadBytes`. */
export function frameBytes(payloadBytes: number): number {
  return TEMP_WAL_FRAME_HEADER_BYTES + payloadBytes;
}

/** Encodes one record frame into a fresh buffer (one allocation, payload copied). */
export function encodeFrame(payload: Uint8Array): Buffer {
  assert(payload.byteLength <= TEMP_WAL_PAYLOAD_BYTES_LIMIT, 'payload above the u32 length limit');
  const buf = Buffer.allocUnsafe(TEMP_WAL_FRAME_HEADER_BYTES + payload.byteLength);
  buf.writeUInt32LE(payload.byteLength, 0);
  buf.set(payload, TEMP_WAL_FRAME_HEADER_BYTES);
  buf.writeUInt32LE(crc32(buf.subarray(TEMP_WAL_FRAME_HEADER_BYTES), crc32(buf.subarray(0, 4))), 4);
  return buf;
}

/** Result of looking at the bytes at one frame position. */
export type FrameProbe =
  | { kind: 'record'; payload: Buffer; frameBytes: number }
  /** The buffer ends before the frame does; `frameBytes` is known once the header is there. */
  | { kind: 'short'; frameBytes: number | undefined }
  /** The length is above recordBytesMax or the CRC fails. */
  | { kind: 'bad'; why: string };

/**
 * Decodes the frame starting at `buf[off]`. The payload returned is a view into `buf` (no copy).
 * A length above `recordBytesMax` is reported as bad before anything is read or allocated for it.
 */
export function probeFrame(buf: Buffer, off: number, recordBytesMax: number): FrameProbe {
  const avail = buf.length - off;
  if (avail < TEMP_WAL_FRAME_HEADER_BYTES) return { kind: 'short', frameBytes: undefined };
  const length = buf.readUInt32LE(off);
  if (length > recordBytesMax) return { kind: 'bad', why: `length ${length} above recordBytesMax ${recordBytesMax}` };
  const total = TEMP_WAL_FRAME_HEADER_BYTES + length;
  if (avail < total) return { kind: 'short', frameBytes: total };
  const payload = buf.subarray(off + TEMP_WAL_FRAME_HEADER_BYTES, off + total);
  const crc = crc32(payload, crc32(buf.subarray(off, off + 4)));
  if (crc !== buf.readUInt32LE(off + 4)) return { kind: 'bad', why: 'CRC mismatch' };
  return { kind: 'record', payload, frameBytes: total };
}

/** Bytes read at a time while recovering. */
const RECOVERY_CHUNK_BYTES = 1024 * 1024;

/** What recovery found in one segment file. */
export interface RecoveredSegment {
  /** End of the last good record (the header's end when none). */
  bytes: number;
  records: number;
  payloadBytes: number;
  /** Bytes cut from the file's tail (last segment only). */
  truncatedBytes: number;
}

/**
 * Checks an existing segment file: header, then every frame. The last segment gets a torn or bad
 * tail truncated (and a header shorter than 20 bytes rewritten); any damage in an earlier segment is
 * ERR_TEMP_WAL_CORRUPT. The table of cases is at the top of temp-wal.ts.
 */
export async function recoverSegmentFile(
  fl: FileLayer,
  file: string,
  index: number,
  isLast: boolean,
  recordBytesMax: number,
): Promise<RecoveredSegment> {
  const f = await fl.open(file, isLast ? 'r+' : 'r');
  try {
    const size = await f.size();
    if (size < TEMP_WAL_HEADER_BYTES) {
      if (!isLast) throw corruptAt(file, 0, `${size} bytes, shorter than the segment header`);
      await f.truncate(0);
      await f.write(encodeSegmentHeader(index), 0, TEMP_WAL_HEADER_BYTES, 0);
      await f.sync();
      return { bytes: TEMP_WAL_HEADER_BYTES, records: 0, payloadBytes: 0, truncatedBytes: size };
    }
    const header = Buffer.alloc(TEMP_WAL_HEADER_BYTES);
    await readFully(f, header, 0);
    const headerIndex = decodeSegmentHeader(header, file);
    if (headerIndex !== index) throw corruptAt(file, 8, `header says segment ${headerIndex}`);
    const scan = await scanFrames(f, size, recordBytesMax);
    if (scan.badWhy !== undefined) {
      if (!isLast) throw corruptAt(file, scan.end, scan.badWhy);
      await f.truncate(scan.end);
      await f.sync();
    }
    return { bytes: scan.end, records: scan.records, payloadBytes: scan.payloadBytes, truncatedBytes: size - scan.end };
  } finally {
    await f.close();
  }
}

/** ERR_TEMP_WAL_CORRUPT naming the file and the byte offset. */
export function corruptAt(file: string, offset: number, why: string): PtnError {
  return ptnError(ErrorCode.ERR_TEMP_WAL_CORRUPT, `${file}: ${why} at byte ${offset}`, { details: { file, offset } });
}

export async function readFully(file: FileLike, buf: Buffer, position: number): Promise<void> {
  const n = await file.read(buf, 0, buf.length, position);
  if (n !== buf.length) throw corruptAt(file.path, position + n, `file ends early (${n} of ${buf.length} bytes read)`);
}

/**
 * Walks the frames of a segment from the header's end. `end` is the end of the last good frame;
 * `badWhy` says why the walk stopped early (undefined when it reached the end of the file cleanly).
 */
async function scanFrames(
  file: FileLike,
  size: number,
  recordBytesMax: number,
): Promise<{ end: number; records: number; payloadBytes: number; badWhy: string | undefined }> {
  let pos = TEMP_WAL_HEADER_BYTES;
  let records = 0;
  let payloadBytes = 0;
  while (pos < size) {
    let chunk = Buffer.allocUnsafe(Math.min(size - pos, RECOVERY_CHUNK_BYTES));
    await readFully(file, chunk, pos);
    let off = 0;
    for (;;) {
      const probe = probeFrame(chunk, off, recordBytesMax);
      if (probe.kind === 'bad') return { end: pos + off, records, payloadBytes, badWhy: probe.why };
      if (probe.kind === 'record') {
        records++;
        payloadBytes += probe.payload.length;
        off += probe.frameBytes;
        if (off === chunk.length) break;
        continue;
      }
      const need = probe.frameBytes ?? TEMP_WAL_FRAME_HEADER_BYTES;
      if (pos + off + need > size) return { end: pos + off, records, payloadBytes, badWhy: 'torn record at the end of the file' };
      if (off > 0) break; // continue with a fresh chunk at this frame
      chunk = Buffer.allocUnsafe(need); // one record larger than the chunk: read it whole
      await readFully(file, chunk, pos);
    }
    pos += off;
  }
  return { end: pos, records, payloadBytes, badWhy: undefined };
}
