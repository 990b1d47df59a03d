// The chunk wire format: pinned header size, raw and LZ4 encodings, strict decoding.
import test from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ErrorCode } from '../../../src/errors.js';
import { prepareFrame } from '../../../src/net/frames.js';
import { crc32 } from '../../../src/util/crc32.js';
import { CHUNK_HEADER_BYTES, ChunkFlag, decodeChunk, encodeChunk, lz4 } from '../../../src/supplier/chunk-format.js';

function frameWith(raw: Buffer) {
  const frame = prepareFrame(CHUNK_HEADER_BYTES + raw.length);
  raw.copy(frame.body, CHUNK_HEADER_BYTES);
  return frame;
}

test('the chunk header is 24 bytes, big-endian, as in the protocol doc', () => {
  assert.equal(CHUNK_HEADER_BYTES, 24);
  const raw = Buffer.alloc(4096, 7);
  const out = encodeChunk(frameWith(raw), 0x1_0000_2000, crc32(raw), false);
  const b = out.body;
  assert.equal(b.readBigUInt64BE(0), 0x1_0000_2000n);
  assert.equal(b.readUInt32BE(8), 4096);
  assert.equal(b.readUInt32BE(12), 4096);
  assert.equal(b[16], 0);
  assert.deepEqual([...b.subarray(17, 20)], [0, 0, 0]);
  assert.equal(b.readUInt32BE(20), crc32(raw));
  assert.equal(b.length, 24 + 4096);
});

test('a raw chunk is sent in the frame it was read into, without a copy', () => {
  const raw = randomBytes(8192);
  const frame = frameWith(raw);
  const out = encodeChunk(frame, 8192, crc32(raw), false);
  assert.equal(out, frame);
  const { header, raw: back } = decodeChunk(out.body);
  assert.equal(header.offset, 8192);
  assert.deepEqual(back, raw);
});

test('compressible data goes as a smaller LZ4 block and decodes to the same bytes', () => {
  const raw = Buffer.alloc(65536);
  for (let i = 0; i < raw.length; i++) raw[i] = 'abcdefgh'.charCodeAt(i % 8);
  const out = encodeChunk(frameWith(raw), 0, crc32(raw), true);
  const { header, raw: back } = decodeChunk(out.body);
  assert.equal(header.flags, ChunkFlag.LZ4);
  assert.ok(header.encodedBytes < raw.length / 10);
  assert.equal(out.body.length, CHUNK_HEADER_BYTES + header.encodedBytes);
  assert.deepEqual(back, raw);
});

test('incompressible data is sent raw even with LZ4 on', () => {
  const raw = randomBytes(65536);
  const frame = frameWith(raw);
  const out = encodeChunk(frame, 0, crc32(raw), true);
  assert.equal(out, frame);
  const { header, raw: back } = decodeChunk(out.body);
  assert.equal(header.flags, 0);
  assert.equal(header.encodedBytes, raw.length);
  assert.deepEqual(back, raw);
});

test('a damaged chunk is ERR_TRANSFER_CORRUPT', () => {
  const raw = Buffer.alloc(4096, 3);
  const good = Buffer.from(encodeChunk(frameWith(raw), 0, crc32(raw), false).body);
  const lz = Buffer.from(encodeChunk(frameWith(raw), 0, crc32(raw), true).body);
  const cases: Array<[string, Buffer]> = [
    ['short', good.subarray(0, 10)],
    ['flipped data byte', (() => { const b = Buffer.from(good); b[100] ^= 1; return b; })()],
    ['unknown flag', (() => { const b = Buffer.from(good); b[16] = 0x80; return b; })()],
    ['reserved byte set', (() => { const b = Buffer.from(good); b[18] = 1; return b; })()],
    ['encoded length off', (() => { const b = Buffer.from(good); b.writeUInt32BE(4095, 12); return b; })()],
    ['raw chunk with differing lengths', (() => { const b = Buffer.from(good); b.writeUInt32BE(8192, 8); return b; })()],
    ['LZ4 block that decodes short', (() => { const b = Buffer.from(lz); b.writeUInt32BE(8192, 8); return b; })()],
    ['LZ4 block cut', (() => { const b = Buffer.from(lz.subarray(0, lz.length - 3)); b.writeUInt32BE(lz.length - 3 - 24, 12); return b; })()],
  ];
  for (const [what, body] of cases) assert.throws(() => decodeChunk(body), { code: ErrorCode.ERR_TRANSFER_CORRUPT }, what);
});

test('the LZ4 binding is the native one', () => {
  assert.match(String(lz4.encodeBlock), /\[native code\]/);
});
