import test from 'node:test';
import assert from 'node:assert/strict';
import {
  checkFrameBody,
  checkFrameHeader,
  comparePointers,
  decodeRecord,
  encodeRecord,
  encodeRecordToBuffer,
  RECORD_HEADER_BYTES,
  recordFrameBytes,
  type WalRecord,
} from '../../../src/wal/record.js';
import { crc32 } from '../../../src/util/crc32.js';

const MAX = 1 << 20;

const samples: WalRecord[] = [
  { type: 'put', cacheId: 7, partition: 65535, counter: 2 ** 53 - 1, key: 'ключ-🔑', valueKind: 1, value: Buffer.from('{"a":1}') },
  { type: 'put', cacheId: 0xffff_ffff, partition: 0, counter: 0, key: '', valueKind: 255, value: Buffer.alloc(0) },
  { type: 'put', cacheId: 1, partition: 2, counter: 2 ** 32 + 5, key: 'k', valueKind: 0, value: Buffer.alloc(5000, 9) },
  { type: 'remove', cacheId: 3, partition: 4, counter: 123456789012, key: 'gone' },
  { type: 'remove', cacheId: 3, partition: 4, counter: 1, key: '' },
  { type: 'checkpointBegin', checkpointId: 42, replayFrom: { segment: 2 ** 40, offset: 4_000_000_000 } },
  { type: 'checkpointEnd', checkpointId: 2 ** 53 - 1 },
  { type: 'partitionDestroy', cacheId: 9, partition: 31 },
  { type: 'cacheDrop', cacheId: 0xffff_fffe },
];

test('every record type round-trips through encode and decode', () => {
  for (const rec of samples) {
    const frame = encodeRecordToBuffer(rec);
    assert.equal(frame.length, recordFrameBytes(rec));
    const { record, frameBytes } = decodeRecord(frame, 0, MAX);
    assert.equal(frameBytes, frame.length);
    assert.deepEqual(record, rec);
  }
});

test('the frame header is exactly 16 bytes and the body sizes are pinned', () => {
  assert.equal(RECORD_HEADER_BYTES, 16);
  assert.equal(recordFrameBytes({ type: 'checkpointEnd', checkpointId: 1 }), 16 + 8);
  assert.equal(recordFrameBytes({ type: 'checkpointBegin', checkpointId: 1, replayFrom: { segment: 0, offset: 88 } }), 16 + 24);
  assert.equal(recordFrameBytes({ type: 'partitionDestroy', cacheId: 1, partition: 1 }), 16 + 6);
  assert.equal(recordFrameBytes({ type: 'cacheDrop', cacheId: 1 }), 16 + 4);
  assert.equal(recordFrameBytes({ type: 'remove', cacheId: 1, partition: 1, counter: 1, key: 'abc' }), 16 + 16 + 3);
  assert.equal(recordFrameBytes({ type: 'put', cacheId: 1, partition: 1, counter: 1, key: 'abc', valueKind: 0, value: Buffer.alloc(10) }), 16 + 21 + 3 + 10);
});

test('the header layout: header CRC, body CRC, length, magic, type', () => {
  const rec: WalRecord = { type: 'cacheDrop', cacheId: 0x01020304 };
  const f = encodeRecordToBuffer(rec);
  assert.equal(f.readUInt32LE(0), crc32(f.subarray(4, 16)));
  assert.equal(f.readUInt32LE(4), crc32(f.subarray(16)));
  assert.equal(f.readUInt32LE(8), 4);
  assert.equal(f[12], 0xa7);
  assert.equal(f[13], 6);
  assert.equal(f.readUInt16LE(14), 0);
  assert.equal(f.readUInt32LE(16), 0x01020304);
});

test('encoding into a shared buffer at an offset writes only the frame', () => {
  const rec = samples[0]!;
  const n = recordFrameBytes(rec);
  const buf = Buffer.alloc(n + 20, 0xee);
  encodeRecord(rec, buf, 10, n);
  assert.equal(buf[9], 0xee);
  assert.equal(buf[10 + n], 0xee);
  assert.deepEqual(decodeRecord(buf, 10, MAX).record, rec);
});

test('flipping any single byte of a frame is detected', () => {
  for (const rec of samples.slice(0, 4)) {
    const frame = encodeRecordToBuffer(rec);
    for (let i = 0; i < frame.length; i++) {
      const bad = Buffer.from(frame);
      bad[i] ^= 0x40;
      const bodyBytes = checkFrameHeader(bad, 0, MAX);
      const detected = bodyBytes < 0 || bodyBytes + RECORD_HEADER_BYTES > bad.length || !checkFrameBody(bad, 0, bodyBytes);
      assert.ok(detected, `flip at byte ${i} of a ${rec.type} frame went unnoticed`);
      assert.throws(() => decodeRecord(bad, 0, MAX), { code: 'ERR_WAL_CORRUPT' });
    }
  }
});

test('a zeroed header is never a valid frame header', () => {
  assert.equal(checkFrameHeader(Buffer.alloc(16), 0, MAX), -1);
});

test('a length above recordBytesMax is refused before anything is read or allocated', () => {
  const rec: WalRecord = { type: 'put', cacheId: 1, partition: 1, counter: 1, key: 'k', valueKind: 0, value: Buffer.alloc(1000) };
  const frame = encodeRecordToBuffer(rec);
  assert.equal(checkFrameHeader(frame, 0, frame.length), 1000 + 22);
  assert.equal(checkFrameHeader(frame, 0, frame.length - 1), -1);
  // A header claiming 4 GiB with a valid header CRC is still refused by the limit.
  const huge = Buffer.from(frame.subarray(0, 16));
  huge.writeUInt32LE(0xffff_ffff, 8);
  huge.writeUInt32LE(crc32(huge.subarray(4, 16)), 0);
  assert.equal(checkFrameHeader(huge, 0, MAX), -1);
});

test('a CRC-valid frame with an unknown type or a body that does not parse is corruption', () => {
  const frame = encodeRecordToBuffer({ type: 'cacheDrop', cacheId: 1 });
  const unknown = Buffer.from(frame);
  unknown[13] = 99;
  unknown.writeUInt32LE(crc32(unknown.subarray(4, 16)), 0);
  assert.throws(() => decodeRecord(unknown, 0, MAX), { code: 'ERR_WAL_CORRUPT' });
  // A remove whose key length field overruns the body, with both CRCs fixed up.
  const rm = encodeRecordToBuffer({ type: 'remove', cacheId: 1, partition: 1, counter: 1, key: 'abc' });
  rm.writeUInt16LE(50, 16 + 14);
  rm.writeUInt32LE(crc32(rm.subarray(16)), 4);
  rm.writeUInt32LE(crc32(rm.subarray(4, 16)), 0);
  assert.throws(() => decodeRecord(rm, 0, MAX), { code: 'ERR_WAL_CORRUPT' });
  // A counter whose high half is beyond 2^53.
  const big = encodeRecordToBuffer({ type: 'remove', cacheId: 1, partition: 1, counter: 1, key: 'a' });
  big.writeUInt32LE(0x0020_0000, 16 + 10);
  big.writeUInt32LE(crc32(big.subarray(16)), 4);
  big.writeUInt32LE(crc32(big.subarray(4, 16)), 0);
  assert.throws(() => decodeRecord(big, 0, MAX), { code: 'ERR_WAL_CORRUPT' });
});

test('out-of-range fields are programmer errors (assertions)', () => {
  const bad: WalRecord[] = [
    { type: 'put', cacheId: 1, partition: 65536, counter: 1, key: 'k', valueKind: 0, value: Buffer.alloc(0) },
    { type: 'put', cacheId: 1, partition: 1, counter: 2 ** 53, key: 'k', valueKind: 0, value: Buffer.alloc(0) },
    { type: 'put', cacheId: 1, partition: 1, counter: 1, key: 'k', valueKind: 256, value: Buffer.alloc(0) },
    { type: 'remove', cacheId: -1, partition: 1, counter: 1, key: 'k' },
    { type: 'remove', cacheId: 1, partition: 1, counter: 1.5, key: 'k' },
    { type: 'remove', cacheId: 1, partition: 1, counter: 1, key: 'x'.repeat(65536) },
  ];
  for (const r of bad) assert.throws(() => recordFrameBytes(r), { name: 'AssertionError' });
});

test('comparePointers orders by segment, then offset', () => {
  assert.ok(comparePointers({ segment: 1, offset: 500 }, { segment: 2, offset: 88 }) < 0);
  assert.ok(comparePointers({ segment: 2, offset: 100 }, { segment: 2, offset: 88 }) > 0);
  assert.equal(comparePointers({ segment: 3, offset: 88 }, { segment: 3, offset: 88 }), 0);
});
