/**
 * One file chunk as the supplier answers `snapshotChunk` (docs/rebalance-protocol.md), big-endian:
 *
 * | offset | size | field                                      |
 * |--------|------|--------------------------------------------|
 * | 0      | 8    | offset of the chunk in the file            |
 * | 8      | 4    | raw length (bytes of file data)            |
 * | 12     | 4    | encoded length (bytes that follow)         |
 * | 16     | 1    | flags: bit 0 = LZ4 block                   |
 * | 17     | 3    | reserved (0)                               |
 * | 20     | 4    | CRC-32 of the raw bytes                    |
 * | 24     | …    | data (raw or LZ4)                          |
 *
 * The demander decodes and verifies every chunk before a byte of it reaches the temporary file:
 * the offset it asked for, lengths within the transfer, reserved bits zero, LZ4 output of exactly
 * the raw length, and the CRC of the raw bytes. Any failure is ERR_TRANSFER_CORRUPT (the chunk is
 * then asked for again). `encodeChunk` is the same layout written, for tests and fakes.
 */
import { createRequire } from 'node:module';
import { ErrorCode, assert, ptnError } from '../errors.js';
import { crc32 } from '../util/crc32.js';

/** Bytes of the chunk header. */
export const CHUNK_HEADER_BYTES = 24;
/** Flag bit: the data is one LZ4 block. */
export const CHUNK_FLAG_LZ4 = 0x01;

interface Lz4Block {
  encodeBlock(input: Buffer, output: Buffer): number;
  decodeBlock(input: Buffer, output: Buffer): number;
  encodeBound(n: number): number;
}
const lz4 = createRequire(import.meta.url)('lz4') as Lz4Block;

/** A verified chunk: its place in the file and its raw bytes. */
export interface Chunk {
  offset: number;
  raw: Buffer;
  /** True when it travelled LZ4-compressed. */
  compressed: boolean;
  /** Bytes on the wire (header included). */
  wireBytes: number;
}

function corrupt(msg: string, details: Record<string, unknown>): never {
  throw ptnError(ErrorCode.ERR_TRANSFER_CORRUPT, `chunk: ${msg}`, { details });
}

/**
 * Decodes and verifies a chunk answering a request for `expectOffset`; `rawBytesMax` is what that
 * request can hold (min(chunkBytes, fileBytes − offset)). ERR_TRANSFER_CORRUPT on any mismatch.
 */
export function decodeChunk(body: unknown, expectOffset: number, rawBytesMax: number): Chunk {
  if (!Buffer.isBuffer(body)) corrupt('not a binary body', { expectOffset });
  const buf = body as Buffer;
  if (buf.length < CHUNK_HEADER_BYTES) corrupt(`${buf.length} bytes, shorter than its header`, { expectOffset });
  const offset = Number(buf.readBigUInt64BE(0));
  const rawLen = buf.readUInt32BE(8);
  const encLen = buf.readUInt32BE(12);
  const flags = buf.readUInt8(16);
  const reserved = buf.readUIntBE(17, 3);
  const crc = buf.readUInt32BE(20);
  const details = { expectOffset, offset, rawLen, encLen, flags };
  if (offset !== expectOffset) corrupt(`offset ${offset}, asked for ${expectOffset}`, details);
  if (rawLen !== rawBytesMax) corrupt(`raw length ${rawLen}, expected ${rawBytesMax}`, details);
  if (encLen !== buf.length - CHUNK_HEADER_BYTES) corrupt(`encoded length ${encLen} but ${buf.length - CHUNK_HEADER_BYTES} bytes follow`, details);
  if ((flags & ~CHUNK_FLAG_LZ4) !== 0 || reserved !== 0) corrupt('unknown flags or reserved bits set', details);
  const data = buf.subarray(CHUNK_HEADER_BYTES);
  let raw: Buffer;
  const compressed = (flags & CHUNK_FLAG_LZ4) !== 0;
  if (compressed) {
    raw = Buffer.allocUnsafe(rawLen);
    let n: number;
    try {
      n = lz4.decodeBlock(data, raw);
    } catch {
      n = -1;
    }
    if (n !== rawLen) corrupt(`LZ4 block decoded to ${n} bytes, expected ${rawLen}`, details);
  } else {
    if (encLen !== rawLen) corrupt(`raw chunk of ${encLen} bytes, header says ${rawLen}`, details);
    raw = data;
  }
  if (crc32(raw) !== crc) corrupt('CRC mismatch', details);
  return { offset, raw, compressed, wireBytes: buf.length };
}

/** Encodes a chunk (LZ4 only when asked and when it shrinks the data). */
export function encodeChunk(offset: number, raw: Buffer, opts: { lz4?: boolean } = {}): Buffer {
  assert(Number.isSafeInteger(offset) && offset >= 0, 'chunk offset must be a safe integer >= 0');
  let data = raw;
  let flags = 0;
  if (opts.lz4 && raw.length > 0) {
    const out = Buffer.allocUnsafe(lz4.encodeBound(raw.length));
    const n = lz4.encodeBlock(raw, out);
    if (n > 0 && n < raw.length) {
      data = out.subarray(0, n);
      flags = CHUNK_FLAG_LZ4;
    }
  }
  const buf = Buffer.allocUnsafe(CHUNK_HEADER_BYTES + data.length);
  buf.writeBigUInt64BE(BigInt(offset), 0);
  buf.writeUInt32BE(raw.length, 8);
  buf.writeUInt32BE(data.length, 12);
  buf.writeUInt8(flags, 16);
  buf.writeUIntBE(0, 17, 3);
  buf.writeUInt32BE(crc32(raw), 20);
  data.copy(buf, CHUNK_HEADER_BYTES);
  return buf;
}
