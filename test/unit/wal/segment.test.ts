import { afterEach, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { realFileLayer } from '../../../src/util/file-layer.js';
import { crc32 } from '../../../src/util/crc32.js';
import { encodeRecordToBuffer, type WalRecord } from '../../../src/wal/record.js';
import {
  checkSegmentHeader,
  encodeSegmentHeader,
  FrameReader,
  parseSegmentFileName,
  SEGMENT_HEADER_BYTES,
  segmentFileName,
} from '../../../src/wal/segment.js';
import { put, rmDir, tempDir } from './helpers.js';

let dir: string;
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(async () => {
  await rmDir(dir);
});

test('the segment header is exactly 88 bytes and round-trips', () => {
  assert.equal(SEGMENT_HEADER_BYTES, 88);
  const h = encodeSegmentHeader(2 ** 40 + 3, 'cluster-A');
  assert.equal(h.length, 88);
  assert.equal(h.toString('latin1', 0, 4), 'PTNW');
  assert.equal(h.readUInt16LE(4), 1);
  checkSegmentHeader(h, { index: 2 ** 40 + 3, clusterId: 'cluster-A', file: 'x' });
});

test('segment file names have 16 digits and parse back', () => {
  assert.equal(segmentFileName(12), '0000000000000012.wal');
  assert.equal(parseSegmentFileName('0000000000000012.wal'), 12);
  assert.equal(parseSegmentFileName('12.wal'), undefined);
  assert.equal(parseSegmentFileName('history.floors'), undefined);
});

test('a header of another cluster is refused with ERR_FILE_WRONG_CLUSTER', () => {
  const h = encodeSegmentHeader(0, 'cluster-A');
  assert.throws(() => checkSegmentHeader(h, { index: 0, clusterId: 'cluster-B', file: 'x' }), { code: 'ERR_FILE_WRONG_CLUSTER' });
});

test('an unknown header version is ERR_WAL_VERSION, a bad CRC, magic or index is ERR_WAL_CORRUPT', () => {
  const v2 = encodeSegmentHeader(0, 'c');
  v2.writeUInt16LE(2, 4);
  v2.writeUInt32LE(crc32(v2.subarray(0, 84)), 84);
  assert.throws(() => checkSegmentHeader(v2, { index: 0, clusterId: 'c', file: 'x' }), { code: 'ERR_WAL_VERSION' });
  const flipped = encodeSegmentHeader(0, 'c');
  flipped[30] ^= 1;
  assert.throws(() => checkSegmentHeader(flipped, { index: 0, clusterId: 'c', file: 'x' }), { code: 'ERR_WAL_CORRUPT' });
  assert.throws(() => checkSegmentHeader(Buffer.alloc(88), { index: 0, clusterId: 'c', file: 'x' }), { code: 'ERR_WAL_CORRUPT' });
  assert.throws(() => checkSegmentHeader(encodeSegmentHeader(5, 'c'), { index: 6, clusterId: 'c', file: 'x' }), { code: 'ERR_WAL_CORRUPT' });
});

async function writeFrames(records: WalRecord[], tail: Buffer = Buffer.alloc(0)): Promise<{ file: string; offsets: number[]; size: number }> {
  const parts = [encodeSegmentHeader(0, 'c')];
  const offsets: number[] = [];
  let off = SEGMENT_HEADER_BYTES;
  for (const r of records) {
    const f = encodeRecordToBuffer(r);
    offsets.push(off);
    off += f.length;
    parts.push(f);
  }
  parts.push(tail);
  const file = path.join(dir, segmentFileName(0));
  await fs.writeFile(file, Buffer.concat(parts));
  return { file, offsets, size: off + tail.length };
}

async function readAll(file: string, start: number, end: number, readBytes: number, recordBytesMax = 1 << 20) {
  const f = await realFileLayer.open(file, 'r');
  try {
    const r = new FrameReader(f, start, end, recordBytesMax, readBytes);
    const offsets: number[] = [];
    let batches = 0;
    while (await r.nextBatch()) {
      batches++;
      for (let i = 0; i < r.count; i++) offsets.push(r.offsets[i]!);
    }
    return { offsets, batches, stop: r.stop, goodEnd: r.goodEnd };
  } finally {
    await f.close();
  }
}

test('the frame reader returns every frame in batches, growing its buffer for a large frame', async () => {
  const recs = [put(1, 1, 1, 100), put(1, 1, 2, 70_000), put(1, 1, 3, 10), put(1, 1, 4, 3000)];
  const { file, offsets, size } = await writeFrames(recs);
  const small = await readAll(file, SEGMENT_HEADER_BYTES, size, 256);
  assert.deepEqual(small.offsets, offsets);
  assert.equal(small.stop, undefined);
  assert.equal(small.goodEnd, size);
  assert.ok(small.batches >= 3);
  const big = await readAll(file, SEGMENT_HEADER_BYTES, size, 1 << 20);
  assert.deepEqual(big.offsets, offsets);
  assert.equal(big.batches, 1);
});

test('the frame reader stops at a torn frame, garbage, or a frame above recordBytesMax, with goodEnd at the last good frame', async () => {
  const recs = [put(1, 1, 1), put(1, 1, 2)];
  const torn = encodeRecordToBuffer(put(1, 1, 3)).subarray(0, 50);
  const a = await writeFrames(recs, torn);
  const ra = await readAll(a.file, SEGMENT_HEADER_BYTES, a.size, 64);
  assert.equal(ra.stop, 'truncated');
  assert.equal(ra.goodEnd, a.size - 50);
  assert.deepEqual(ra.offsets, a.offsets);

  const b = await writeFrames(recs, Buffer.alloc(500));
  const rb = await readAll(b.file, SEGMENT_HEADER_BYTES, b.size, 1 << 20);
  assert.equal(rb.stop, 'bad header');
  assert.equal(rb.goodEnd, b.size - 500);

  const c = await writeFrames([put(1, 1, 1, 5000)]);
  const rc = await readAll(c.file, SEGMENT_HEADER_BYTES, c.size, 1 << 20, 4096);
  assert.equal(rc.stop, 'bad header');
  assert.equal(rc.goodEnd, SEGMENT_HEADER_BYTES);
});

test('the frame reader reports a body CRC mismatch', async () => {
  const { file, offsets, size } = await writeFrames([put(1, 1, 1), put(1, 1, 2), put(1, 1, 3)]);
  const buf = await fs.readFile(file);
  buf[offsets[1]! + 40] ^= 0xff;
  await fs.writeFile(file, buf);
  const r = await readAll(file, SEGMENT_HEADER_BYTES, size, 1 << 20);
  assert.equal(r.stop, 'bad body crc');
  assert.equal(r.goodEnd, offsets[1]);
  assert.deepEqual(r.offsets, [offsets[0]]);
});
