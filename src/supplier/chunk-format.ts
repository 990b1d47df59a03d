/**
 * Wire format of one snapshot chunk: the raw body of the response to `snapshotChunk`
 * (docs/rebalance-protocol.md). The frame around it (src/net/frames.ts) carries magic, protocol
 * version, length and a CRC of the whole body; this header adds where the bytes belong, how they
 * are encoded, and a CRC of the RAW (decoded) bytes, so the demander checks what it will write.
 *
 * | offset | size | field                                        |
 * |-------:|-----:|----------------------------------------------|
 * |      0 |    8 | offset of the chunk in the file (u64 BE)     |
 * |      8 |    4 | raw length: bytes of file data (u32 BE)      |
 * |     12 |    4 | encoded length: bytes that follow (u32 BE)   |
 * |     16 |    1 | flags: bit 0 = LZ4 block                     |
 * |     17 |    3 | reserved (0)                                 |
 * |     20 |    4 | CRC-32 of the raw bytes (u32 BE)             |
 * |     24 |    n | data (raw, or one LZ4 block)                 |
 *
 * Decoding is strict: unknown flags, non-zero reserved bytes, lengths that disagree with the body,
 * a raw chunk whose lengths differ, an LZ4 block that does not decode to exactly the raw length,
 * or a CRC mismatch → ERR_TRANSFER_CORRUPT.
 */
import { createRequire } from 'node:module';
import { ErrorCode, assert, ptnError } from '../errors.js';
import { prepareFrame, type PreparedFrame } from '../net/frames.js';
import { crc32 } from '../util/crc32.js';

/** Bytes of the chunk header. */
export const CHUNK_HEADER_BYTES = 24;
/** Flag bits of byte 16. */
export const ChunkFlag = { LZ4: 0x01 } as const;
const KNOWN_FLAGS = ChunkFlag.LZ4;

/** The native LZ4 block API of the `lz4` package (its binding must be built; see the native-bindings test). */
export interface Lz4Block {
  encodeBound(rawBytes: number): number;
  /** Compresses `input` into `output`; returns the compressed size (0 when it does not fit). */
  encodeBlock(input: Buffer, output: Buffer): number;
  /** Decompresses into `output`; returns the decoded size (negative on malformed input). */
  decodeBlock(input: Buffer, output: Buffer): number;
}

/** The `lz4` package (CommonJS, no type declarations). */
export const lz4: Lz4Block = createRequire(import.meta.url)('lz4') as Lz4Block;

/** A chunk header. */
export interface ChunkHeader {
  offset: number;
  rawBytes: number;
  encodedBytes: number;
  flags: number;
  crc: number;
}

/** Writes the header into `buf[0..24)`. */
export function writeChunkHeader(buf: Buffer, h: ChunkHeader): void {
  assert(buf.length >= CHUNK_HEADER_BYTES, 'chunk buffer shorter than its header');
  assert(Number.isSafeInteger(h.offset) && h.offset >= 0, 'chunk offset must be a safe integer >= 0');
  assert((h.flags & ~KNOWN_FLAGS) === 0, `unknown chunk flags ${h.flags}`);
  buf.writeBigUInt64BE(BigInt(h.offset), 0);
  buf.writeUInt32BE(h.rawBytes, 8);
  buf.writeUInt32BE(h.encodedBytes, 12);
  buf.writeUInt8(h.flags, 16);
  buf.writeUIntBE(0, 17, 3);
  buf.writeUInt32BE(h.crc >>> 0, 20);
}

/** LZ4 output scratch: compression is synchronous, so one per process is enough. */
let lz4Scratch = Buffer.alloc(0);

/**
 * Finishes a chunk response whose raw bytes were read into `frame.body` after the header (so a raw
 * chunk costs no copy): writes the header, or — with `useLz4` and when the LZ4 block is smaller —
 * returns a new, smaller frame holding the block instead (and releases `frame`).
 */
export function encodeChunk(frame: PreparedFrame, offset: number, crc: number, useLz4: boolean): PreparedFrame {
  const raw = frame.body.subarray(CHUNK_HEADER_BYTES);
  if (useLz4 && raw.length > 1) {
    if (lz4Scratch.length < raw.length) lz4Scratch = Buffer.allocUnsafe(raw.length);
    // Output room below the raw length: LZ4 gives up (0) as soon as the block would not be smaller.
    const n = lz4.encodeBlock(raw, lz4Scratch.subarray(0, raw.length - 1));
    if (n > 0 && n < raw.length) {
      const small = prepareFrame(CHUNK_HEADER_BYTES + n, '', { bodyCrc: false });
      lz4Scratch.copy(small.body, CHUNK_HEADER_BYTES, 0, n);
      writeChunkHeader(small.body, { offset, rawBytes: raw.length, encodedBytes: n, flags: ChunkFlag.LZ4, crc });
      frame.release(); // the raw bytes are not sent: its buffer may serve the next chunk
      return small;
    }
  }
  writeChunkHeader(frame.body, { offset, rawBytes: raw.length, encodedBytes: raw.length, flags: 0, crc });
  return frame;
}

function corrupt(message: string, details: Record<string, unknown> = {}): never {
  throw ptnError(ErrorCode.ERR_TRANSFER_CORRUPT, `snapshot chunk: ${message}`, { details });
}

/** Reads and checks a header against the body it came with; `data` is a view of the encoded bytes. */
export function decodeChunkHeader(body: Buffer): ChunkHeader & { data: Buffer } {
  if (body.length < CHUNK_HEADER_BYTES) corrupt(`${body.length} bytes is shorter than the header`);
  const offset = Number(body.readBigUInt64BE(0));
  if (!Number.isSafeInteger(offset)) corrupt('offset out of range');
  const rawBytes = body.readUInt32BE(8);
  const encodedBytes = body.readUInt32BE(12);
  const flags = body.readUInt8(16);
  if ((flags & ~KNOWN_FLAGS) !== 0) corrupt(`unknown flags 0x${flags.toString(16)}`);
  if (body.readUIntBE(17, 3) !== 0) corrupt('reserved bytes are not zero');
  if (CHUNK_HEADER_BYTES + encodedBytes !== body.length) corrupt(`encoded length ${encodedBytes} disagrees with a body of ${body.length} bytes`);
  if ((flags & ChunkFlag.LZ4) === 0 && encodedBytes !== rawBytes) corrupt('raw chunk whose encoded and raw lengths differ');
  return { offset, rawBytes, encodedBytes, flags, crc: body.readUInt32BE(20), data: body.subarray(CHUNK_HEADER_BYTES) };
}

/**
 * Decodes a chunk body into its raw bytes (a view of `body` when not compressed, else `into` or a
 * new buffer) and checks its CRC. ERR_TRANSFER_CORRUPT on any mismatch.
 */
export function decodeChunk(body: Buffer, into?: Buffer): { header: ChunkHeader; raw: Buffer } {
  const h = decodeChunkHeader(body);
  let raw = h.data;
  if ((h.flags & ChunkFlag.LZ4) !== 0) {
    raw = into && into.length >= h.rawBytes ? into.subarray(0, h.rawBytes) : Buffer.allocUnsafe(h.rawBytes);
    let n: number;
    try {
      n = lz4.decodeBlock(h.data, raw);
    } catch (err) {
      return corrupt(`LZ4 block does not decode: ${(err as Error).message}`, { offset: h.offset });
    }
    if (n !== h.rawBytes) corrupt(`LZ4 block decodes to ${n} bytes, expected ${h.rawBytes}`, { offset: h.offset });
  }
  if (crc32(raw) !== h.crc) corrupt(`CRC mismatch at offset ${h.offset}`, { offset: h.offset });
  const { data: _data, ...header } = h;
  return { header, raw };
}
