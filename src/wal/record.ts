/**
 * Node WAL record: the logical record types and their framing (tigerbeetle style: a header
 * checksum separate from the body checksum). All integers little-endian.
 *
 * Frame header (RECORD_HEADER_BYTES = 16), then the body:
 *
 * | offset | size | field                                                        |
 * |--------|------|--------------------------------------------------------------|
 * | 0      | 4    | header CRC-32 of bytes 4..15                                 |
 * | 4      | 4    | body CRC-32                                                  |
 * | 8      | 4    | body length n, u32 (frame = 16 + n ≤ recordBytesMax)         |
 * | 12     | 1    | magic 0xA7                                                   |
 * | 13     | 1    | record type (table below)                                    |
 * | 14     | 2    | reserved, zero                                               |
 * | 16     | n    | body                                                         |
 *
 * Why a separate header CRC: the length is trusted only after its own CRC passed, so a torn or
 * garbage length is never used to size a read or an allocation; a zeroed tail never passes (the
 * CRC of twelve zero bytes is not zero, and the magic is not zero).
 *
 * Bodies (u64 fields hold JS safe integers, stored as two u32 halves, low half first):
 *
 * | type | record           | body layout                                                                    |
 * |------|------------------|--------------------------------------------------------------------------------|
 * | 1    | put              | cacheId u32, partition u16, counter u64, keyBytes u16, key, valueKind u8, valueBytes u32, value |
 * | 2    | remove           | cacheId u32, partition u16, counter u64, keyBytes u16, key                     |
 * | 3    | checkpointBegin  | checkpointId u64, replayFrom.segment u64, replayFrom.offset u64                |
 * | 4    | checkpointEnd    | checkpointId u64                                                               |
 * | 5    | partitionDestroy | cacheId u32, partition u16                                                     |
 * | 6    | cacheDrop        | cacheId u32                                                                    |
 *
 * The body length must match the body's own fields exactly; a CRC-valid frame whose body does not
 * parse, or with an unknown type, is corruption (ERR_WAL_CORRUPT), never a torn tail.
 * Encoding is a size/encode/decode triple: the writer sizes a record, reserves that many bytes in
 * its batch buffer and encodes in place (no allocation per record).
 */
import { assert, ErrorCode, ptnError } from '../errors.js';
import { crc32 } from '../util/crc32.js';

/** Position of a record: segment index and byte offset of the record start in that segment. */
export interface WalPointer {
  segment: number;
  offset: number;
}

/** The logical records of the node WAL. */
export type WalRecord =
  | { type: 'put'; cacheId: number; partition: number; counter: number; key: string; valueKind: number; value: Buffer }
  | { type: 'remove'; cacheId: number; partition: number; counter: number; key: string }
  | { type: 'checkpointBegin'; checkpointId: number; replayFrom: WalPointer }
  | { type: 'checkpointEnd'; checkpointId: number }
  | { type: 'partitionDestroy'; cacheId: number; partition: number } // records before it for that partition must not be replayed
  | { type: 'cacheDrop'; cacheId: number };

/** Orders pointers: negative when a is before b, 0 when equal, positive when after. */
export function comparePointers(a: WalPointer, b: WalPointer): number {
  return a.segment !== b.segment ? a.segment - b.segment : a.offset - b.offset;
}

/** Size of a frame header. */
export const RECORD_HEADER_BYTES = 16;
/** Magic byte at offset 12 of every frame header. */
export const RECORD_MAGIC = 0xa7;

/** Type bytes. */
export const RecordType = {
  put: 1,
  remove: 2,
  checkpointBegin: 3,
  checkpointEnd: 4,
  partitionDestroy: 5,
  cacheDrop: 6,
} as const;

const U32 = 0x1_0000_0000;
const PUT_FIXED_BYTES = 21; // cacheId 4 + partition 2 + counter 8 + keyBytes 2 + valueKind 1 + valueBytes 4
const REMOVE_FIXED_BYTES = 16;

function writeU64(buf: Buffer, n: number, off: number): void {
  buf.writeUInt32LE(n % U32, off);
  buf.writeUInt32LE(Math.floor(n / U32), off + 4);
}

/** Reads a u64 that must be a safe integer; NaN when the high half is out of range. */
function readU64(buf: Buffer, off: number): number {
  const hi = buf.readUInt32LE(off + 4);
  if (hi > 0x1f_ffff) return NaN;
  return hi * U32 + buf.readUInt32LE(off);
}

function checkKeyed(r: { cacheId: number; partition: number }): void {
  assert(Number.isInteger(r.cacheId) && r.cacheId >= 0 && r.cacheId < U32, `cacheId ${r.cacheId} is not a u32`);
  assert(Number.isInteger(r.partition) && r.partition >= 0 && r.partition <= 0xffff, `partition ${r.partition} is not a u16`);
}

function checkU64(n: number, what: string): void {
  assert(Number.isSafeInteger(n) && n >= 0, `${what} ${n} is not a non-negative safe integer`);
}

/**
 * Frame size of `record` in bytes (header + body). Asserts field ranges (programmer errors):
 * ids and counters in range, key ≤ 65535 UTF-8 bytes, valueKind a u8.
 */
export function recordFrameBytes(record: WalRecord): number {
  switch (record.type) {
    case 'put': {
      checkKeyed(record);
      checkU64(record.counter, 'counter');
      assert(Number.isInteger(record.valueKind) && record.valueKind >= 0 && record.valueKind <= 0xff, 'valueKind is not a u8');
      const keyBytes = Buffer.byteLength(record.key, 'utf8');
      assert(keyBytes <= 0xffff, 'key longer than 65535 bytes');
      return RECORD_HEADER_BYTES + PUT_FIXED_BYTES + keyBytes + record.value.length;
    }
    case 'remove': {
      checkKeyed(record);
      checkU64(record.counter, 'counter');
      const keyBytes = Buffer.byteLength(record.key, 'utf8');
      assert(keyBytes <= 0xffff, 'key longer than 65535 bytes');
      return RECORD_HEADER_BYTES + REMOVE_FIXED_BYTES + keyBytes;
    }
    case 'checkpointBegin':
      checkU64(record.checkpointId, 'checkpointId');
      checkU64(record.replayFrom.segment, 'replayFrom.segment');
      checkU64(record.replayFrom.offset, 'replayFrom.offset');
      return RECORD_HEADER_BYTES + 24;
    case 'checkpointEnd':
      checkU64(record.checkpointId, 'checkpointId');
      return RECORD_HEADER_BYTES + 8;
    case 'partitionDestroy':
      checkKeyed(record);
      return RECORD_HEADER_BYTES + 6;
    case 'cacheDrop':
      checkKeyed({ cacheId: record.cacheId, partition: 0 });
      return RECORD_HEADER_BYTES + 4;
  }
}

/**
 * Encodes `record` as one frame at `buf[offset..offset+frameBytes)`, where `frameBytes` is
 * `recordFrameBytes(record)` (passed in so the key is measured once).
 */
export function encodeRecord(record: WalRecord, buf: Buffer, offset: number, frameBytes: number): void {
  assert(offset + frameBytes <= buf.length, 'frame does not fit the buffer');
  const b = offset + RECORD_HEADER_BYTES; // body start
  switch (record.type) {
    case 'put':
    case 'remove': {
      buf.writeUInt32LE(record.cacheId, b);
      buf.writeUInt16LE(record.partition, b + 4);
      writeU64(buf, record.counter, b + 6);
      const keyEnd = b + 16 + buf.write(record.key, b + 16, 'utf8');
      buf.writeUInt16LE(keyEnd - b - 16, b + 14);
      if (record.type === 'put') {
        buf[keyEnd] = record.valueKind;
        buf.writeUInt32LE(record.value.length, keyEnd + 1);
        record.value.copy(buf, keyEnd + 5);
      }
      break;
    }
    case 'checkpointBegin':
      writeU64(buf, record.checkpointId, b);
      writeU64(buf, record.replayFrom.segment, b + 8);
      writeU64(buf, record.replayFrom.offset, b + 16);
      break;
    case 'checkpointEnd':
      writeU64(buf, record.checkpointId, b);
      break;
    case 'partitionDestroy':
      buf.writeUInt32LE(record.cacheId, b);
      buf.writeUInt16LE(record.partition, b + 4);
      break;
    case 'cacheDrop':
      buf.writeUInt32LE(record.cacheId, b);
      break;
  }
  const end = offset + frameBytes;
  buf.writeUInt32LE(crc32(buf.subarray(b, end)), offset + 4);
  buf.writeUInt32LE(frameBytes - RECORD_HEADER_BYTES, offset + 8);
  buf[offset + 12] = RECORD_MAGIC;
  buf[offset + 13] = RecordType[record.type];
  buf.writeUInt16LE(0, offset + 14);
  buf.writeUInt32LE(crc32(buf.subarray(offset + 4, b)), offset);
}

/**
 * Checks the frame header at `buf[offset..offset+16)`. Returns the body length, or -1 when the
 * header is not a valid frame header (bad magic, bad header CRC, non-zero reserved bytes, or a
 * frame larger than `recordBytesMax`): a reader never trusts a length that did not pass this.
 */
export function checkFrameHeader(buf: Buffer, offset: number, recordBytesMax: number): number {
  if (buf[offset + 12] !== RECORD_MAGIC || buf[offset + 14] !== 0 || buf[offset + 15] !== 0) return -1;
  if (buf.readUInt32LE(offset) !== crc32(buf.subarray(offset + 4, offset + RECORD_HEADER_BYTES))) return -1;
  const bodyBytes = buf.readUInt32LE(offset + 8);
  return RECORD_HEADER_BYTES + bodyBytes > recordBytesMax ? -1 : bodyBytes;
}

/** True when the body of the frame at `offset` (header already checked) matches its body CRC. */
export function checkFrameBody(buf: Buffer, offset: number, bodyBytes: number): boolean {
  const b = offset + RECORD_HEADER_BYTES;
  return buf.readUInt32LE(offset + 4) === crc32(buf.subarray(b, b + bodyBytes));
}

/** Type byte of the frame at `offset`. */
export function frameType(buf: Buffer, offset: number): number {
  return buf[offset + 13]!;
}

function malformed(why: string, type: number): never {
  throw ptnError(ErrorCode.ERR_WAL_CORRUPT, `WAL record of type ${type} is malformed: ${why}`, { details: { type } });
}

/**
 * The fields needed to index a record without decoding it (key, value and checkpoint fields
 * are not read). `counter` is -1 for types without one, `partition` is -1 for cacheDrop.
 */
export interface RecordKeyFields {
  cacheId: number;
  partition: number;
  counter: number;
}

/**
 * Checks that a CRC-valid body parses for its type and fills `out` with its cacheId / partition /
 * counter (for put, remove, partitionDestroy, cacheDrop). Malformed body or unknown type →
 * ERR_WAL_CORRUPT. No allocation: used on every record when scanning.
 */
export function peekRecordBody(type: number, buf: Buffer, start: number, end: number, out: RecordKeyFields): void {
  const n = end - start;
  out.counter = -1;
  out.partition = -1;
  out.cacheId = -1;
  switch (type) {
    case RecordType.put:
    case RecordType.remove: {
      const fixed = type === RecordType.put ? PUT_FIXED_BYTES : REMOVE_FIXED_BYTES;
      if (n < fixed) malformed('too short', type);
      const keyBytes = buf.readUInt16LE(start + 14);
      if (type === RecordType.put) {
        if (n < fixed + keyBytes) malformed('key overruns the body', type);
        const valueBytes = buf.readUInt32LE(start + 16 + keyBytes + 1);
        if (n !== fixed + keyBytes + valueBytes) malformed('length does not match its fields', type);
      } else if (n !== fixed + keyBytes) malformed('length does not match its fields', type);
      out.counter = readU64(buf, start + 6);
      if (Number.isNaN(out.counter)) malformed('counter is not a safe integer', type);
      out.partition = buf.readUInt16LE(start + 4);
      out.cacheId = buf.readUInt32LE(start);
      return;
    }
    case RecordType.checkpointBegin:
      if (n !== 24) malformed('length does not match its fields', type);
      if (Number.isNaN(readU64(buf, start)) || Number.isNaN(readU64(buf, start + 8)) || Number.isNaN(readU64(buf, start + 16))) {
        malformed('field is not a safe integer', type);
      }
      return;
    case RecordType.checkpointEnd:
      if (n !== 8) malformed('length does not match its fields', type);
      if (Number.isNaN(readU64(buf, start))) malformed('checkpointId is not a safe integer', type);
      return;
    case RecordType.partitionDestroy:
      if (n !== 6) malformed('length does not match its fields', type);
      out.partition = buf.readUInt16LE(start + 4);
      out.cacheId = buf.readUInt32LE(start);
      return;
    case RecordType.cacheDrop:
      if (n !== 4) malformed('length does not match its fields', type);
      out.cacheId = buf.readUInt32LE(start);
      return;
    default:
      malformed('unknown record type', type);
  }
}

/**
 * Decodes a CRC-valid body into a record. The value of a put is copied out of `buf`, so the
 * caller may reuse its read buffer. Malformed body or unknown type → ERR_WAL_CORRUPT.
 */
export function decodeRecordBody(type: number, buf: Buffer, start: number, end: number): WalRecord {
  const f: RecordKeyFields = { cacheId: 0, partition: 0, counter: 0 };
  peekRecordBody(type, buf, start, end, f);
  switch (type) {
    case RecordType.put: {
      const keyEnd = start + 16 + buf.readUInt16LE(start + 14);
      const key = buf.toString('utf8', start + 16, keyEnd);
      const value = Buffer.from(buf.subarray(keyEnd + 5, end));
      return { type: 'put', cacheId: f.cacheId, partition: f.partition, counter: f.counter, key, valueKind: buf[keyEnd]!, value };
    }
    case RecordType.remove: {
      const key = buf.toString('utf8', start + 16, end);
      return { type: 'remove', cacheId: f.cacheId, partition: f.partition, counter: f.counter, key };
    }
    case RecordType.checkpointBegin:
      return {
        type: 'checkpointBegin',
        checkpointId: readU64(buf, start),
        replayFrom: { segment: readU64(buf, start + 8), offset: readU64(buf, start + 16) },
      };
    case RecordType.checkpointEnd:
      return { type: 'checkpointEnd', checkpointId: readU64(buf, start) };
    case RecordType.partitionDestroy:
      return { type: 'partitionDestroy', cacheId: f.cacheId, partition: f.partition };
    default:
      return { type: 'cacheDrop', cacheId: f.cacheId };
  }
}

/**
 * Decodes one whole frame at `buf[offset..]` (header and body checked). For tests and tools; the
 * readers use the split calls above on their batch buffers. Any failure → ERR_WAL_CORRUPT.
 */
export function decodeRecord(buf: Buffer, offset: number, recordBytesMax: number): { record: WalRecord; frameBytes: number } {
  if (buf.length - offset < RECORD_HEADER_BYTES) malformed('truncated header', -1);
  const bodyBytes = checkFrameHeader(buf, offset, recordBytesMax);
  if (bodyBytes < 0) malformed('bad frame header', -1);
  const frameBytes = RECORD_HEADER_BYTES + bodyBytes;
  if (buf.length - offset < frameBytes) malformed('truncated body', frameType(buf, offset));
  if (!checkFrameBody(buf, offset, bodyBytes)) malformed('body CRC mismatch', frameType(buf, offset));
  const b = offset + RECORD_HEADER_BYTES;
  return { record: decodeRecordBody(frameType(buf, offset), buf, b, b + bodyBytes), frameBytes };
}

/** Encodes one record into a new buffer (tests, tools and the fixture generator). */
export function encodeRecordToBuffer(record: WalRecord): Buffer {
  const frameBytes = recordFrameBytes(record);
  const buf = Buffer.allocUnsafe(frameBytes);
  encodeRecord(record, buf, 0, frameBytes);
  return buf;
}
