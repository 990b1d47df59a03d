// One test per row of the recovery table at the top of src/wal/node-wal.ts.
import { afterEach, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { crc32 } from '../../../src/util/crc32.js';
import { encodeRecordToBuffer, type WalPointer, type WalRecord } from '../../../src/wal/record.js';
import { SEGMENT_HEADER_BYTES } from '../../../src/wal/segment.js';
import { NodeWal } from '../../../src/wal/node-wal.js';
import { CLUSTER, collect, counters, openWal, prng, put, rmDir, segmentPath, tempDir, testSeed, walConfig } from './helpers.js';

let dir: string;
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(async () => {
  await rmDir(dir);
});

/** Appends puts with counters from..to (1 KiB values), closes; returns each record's pointer and the end. */
async function writeRecords(from: number, to: number, valueBytes = 1000): Promise<{ pointers: WalPointer[]; end: WalPointer }> {
  const wal = await openWal(dir);
  const pointers: WalPointer[] = [];
  for (let c = from; c <= to; c++) pointers.push(await wal.append(put(1, c % 3, c, valueBytes)));
  const end = wal.position();
  await wal.close();
  return { pointers, end };
}

async function replayed(wal: NodeWal): Promise<number[]> {
  return counters((await collect(wal.replay())).map((x) => x.record));
}

async function flipByte(file: string, offset: number): Promise<void> {
  const buf = await fs.readFile(file);
  buf[offset] ^= 0x5a;
  await fs.writeFile(file, buf);
}

const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

test('row 1: an empty directory becomes a new WAL with segment 0', async () => {
  const walDir = path.join(dir, 'not-yet', 'wal');
  const wal = await NodeWal.open({ dir: walDir, clusterId: CLUSTER, config: walConfig() });
  assert.deepEqual(wal.recovery, {});
  assert.deepEqual(wal.position(), { segment: 0, offset: SEGMENT_HEADER_BYTES });
  assert.equal((await fs.stat(path.join(walDir, '0000000000000000.wal'))).size, SEGMENT_HEADER_BYTES);
  assert.deepEqual(await replayed(wal), []);
  await wal.close();
});

test('row 2: after a clean shutdown nothing is cut and appends continue at the end', async () => {
  const { end } = await writeRecords(1, 100);
  const wal = await openWal(dir);
  assert.equal(wal.recovery.truncatedTail, undefined);
  assert.deepEqual(wal.position(), end);
  assert.deepEqual(await replayed(wal), range(1, 100));
  assert.deepEqual(await wal.append(put(1, 0, 101)), end);
  await wal.close();
});

test('row 3: a torn tail is truncated, reported, and appends continue there', async () => {
  const { end } = await writeRecords(1, 10);
  const partial = encodeRecordToBuffer(put(1, 1, 11, 1000)).subarray(0, 300);
  await fs.appendFile(segmentPath(dir, end.segment), partial);
  const wal = await openWal(dir);
  assert.deepEqual(wal.recovery.truncatedTail, { segment: end.segment, offset: end.offset, bytesDropped: 300 });
  assert.equal((await fs.stat(segmentPath(dir, end.segment))).size, end.offset);
  assert.deepEqual(await replayed(wal), range(1, 10));
  assert.deepEqual(await wal.append(put(1, 1, 11)), end);
  await wal.close();
  const again = await openWal(dir);
  assert.equal(again.recovery.truncatedTail, undefined);
  assert.deepEqual(await replayed(again), range(1, 11));
  await again.close();
});

test('row 4: zeros or random garbage after the last good record are truncated', async () => {
  const seed = testSeed();
  const rnd = prng(seed);
  const { end } = await writeRecords(1, 10);
  const file = segmentPath(dir, end.segment);
  for (const garbage of [Buffer.alloc(4096), Buffer.from(Array.from({ length: 3000 }, () => Math.floor(rnd() * 256)))]) {
    await fs.appendFile(file, garbage);
    const wal = await openWal(dir);
    assert.deepEqual(wal.recovery.truncatedTail, { segment: end.segment, offset: end.offset, bytesDropped: garbage.length }, `seed ${seed}`);
    assert.deepEqual(await replayed(wal), range(1, 10));
    await wal.close();
  }
});

test('row 5: a bad CRC in the middle of the last segment cuts the tail there, and is logged', async () => {
  const { pointers, end } = await writeRecords(1, 10);
  assert.equal(pointers[4]!.segment, end.segment);
  await flipByte(segmentPath(dir, end.segment), pointers[4]!.offset + 100);
  const logs: string[] = [];
  const wal = await openWal(dir, {}, { log: (msg) => logs.push(msg) });
  assert.deepEqual(wal.recovery.truncatedTail, { segment: end.segment, offset: pointers[4]!.offset, bytesDropped: end.offset - pointers[4]!.offset });
  assert.ok(logs.some((m) => m.includes('truncating')));
  assert.deepEqual(await replayed(wal), range(1, 4));
  await wal.close();
});

test('row 6: a bad or torn record in an older segment is ERR_WAL_CORRUPT', async () => {
  const { pointers, end } = await writeRecords(1, 200);
  assert.ok(end.segment >= 2);
  const inFirst = pointers.filter((p) => p.segment === 0);
  await flipByte(segmentPath(dir, 0), inFirst[3]!.offset + 50);
  await assert.rejects(openWal(dir), { code: 'ERR_WAL_CORRUPT' });
  await flipByte(segmentPath(dir, 0), inFirst[3]!.offset + 50); // repair, then tear the end of segment 1
  const seg1 = segmentPath(dir, 1);
  await fs.truncate(seg1, (await fs.stat(seg1)).size - 10);
  await assert.rejects(openWal(dir), { code: 'ERR_WAL_CORRUPT' });
});

test('row 7: a segment header with an unknown version is ERR_WAL_VERSION', async () => {
  await writeRecords(1, 3);
  const file = segmentPath(dir, 0);
  const buf = await fs.readFile(file);
  buf.writeUInt16LE(2, 4);
  buf.writeUInt32LE(crc32(buf.subarray(0, 84)), 84);
  await fs.writeFile(file, buf);
  await assert.rejects(openWal(dir), { code: 'ERR_WAL_VERSION' });
});

test('row 8: a WAL of another cluster is ERR_FILE_WRONG_CLUSTER', async () => {
  await writeRecords(1, 3);
  await assert.rejects(NodeWal.open({ dir, clusterId: 'other-cluster', config: walConfig() }), { code: 'ERR_FILE_WRONG_CLUSTER' });
});

test('row 9: a missing segment in the middle is ERR_WAL_CORRUPT', async () => {
  const { end } = await writeRecords(1, 200);
  assert.ok(end.segment >= 2);
  await fs.unlink(segmentPath(dir, 1));
  await assert.rejects(openWal(dir), { code: 'ERR_WAL_CORRUPT' });
});

test('row 10: a checkpointBegin without its end leaves the previous completed checkpoint', async () => {
  const wal = await openWal(dir);
  for (let c = 1; c <= 5; c++) await wal.append(put(1, 0, c));
  const rf1 = wal.position();
  await wal.append({ type: 'checkpointBegin', checkpointId: 1, replayFrom: rf1 });
  for (let c = 6; c <= 8; c++) await wal.append(put(1, 0, c));
  await wal.append({ type: 'checkpointEnd', checkpointId: 1 });
  const rf2 = wal.position();
  await wal.append({ type: 'checkpointBegin', checkpointId: 2, replayFrom: rf2 });
  await wal.append(put(1, 0, 9));
  await wal.close();
  const again = await openWal(dir);
  assert.deepEqual(again.recovery.lastCheckpoint, { checkpointId: 1, replayFrom: rf1 });
  const recs = (await collect(again.replay())).map((x) => x.record);
  assert.deepEqual(recs.map((r) => r.type), ['checkpointBegin', 'put', 'put', 'put', 'checkpointEnd', 'checkpointBegin', 'put']);
  await again.close();
});

test('row 11: an empty last segment (zero-length, short, or a torn header) gets its header back', async () => {
  const { end } = await writeRecords(1, 5);
  const next = segmentPath(dir, end.segment + 1);
  for (const content of [Buffer.alloc(0), Buffer.alloc(40, 7), Buffer.alloc(SEGMENT_HEADER_BYTES), Buffer.alloc(SEGMENT_HEADER_BYTES + 500)]) {
    await fs.writeFile(next, content);
    const wal = await openWal(dir);
    assert.deepEqual(wal.position(), { segment: end.segment + 1, offset: SEGMENT_HEADER_BYTES });
    assert.equal((await fs.stat(next)).size, SEGMENT_HEADER_BYTES);
    assert.deepEqual(await replayed(wal), range(1, 5));
    assert.deepEqual(await wal.append(put(1, 0, 6)), { segment: end.segment + 1, offset: SEGMENT_HEADER_BYTES });
    await wal.close();
    const again = await openWal(dir);
    assert.deepEqual(await replayed(again), range(1, 6));
    await again.close();
    await fs.unlink(next);
  }
});

test('row 12: a bad header on an older segment, or on a last segment with records, is ERR_WAL_CORRUPT', async () => {
  const { end } = await writeRecords(1, 200);
  await flipByte(segmentPath(dir, 0), 30);
  await assert.rejects(openWal(dir), { code: 'ERR_WAL_CORRUPT' });
  await flipByte(segmentPath(dir, 0), 30);
  await flipByte(segmentPath(dir, end.segment), 30);
  await assert.rejects(openWal(dir), { code: 'ERR_WAL_CORRUPT' });
  await fs.truncate(segmentPath(dir, 0), 50); // an older segment shorter than its header
  await assert.rejects(openWal(dir), { code: 'ERR_WAL_CORRUPT' });
});

test('row 13: deleted segments without history.floors, or a corrupt floors file, are ERR_WAL_CORRUPT', async () => {
  const wal = await openWal(dir, { historyBytesMax: 0 });
  for (let c = 1; c <= 200; c++) await wal.append(put(1, 0, c, 1000));
  await wal.checkpointCompleted(wal.position());
  assert.ok(wal.stats().oldestSegment > 0);
  await wal.close();
  const floors = path.join(dir, 'history.floors');
  await flipByte(floors, 14);
  await assert.rejects(openWal(dir), { code: 'ERR_WAL_CORRUPT' });
  await fs.unlink(floors);
  await assert.rejects(openWal(dir), { code: 'ERR_WAL_CORRUPT' });
});

test('row 14: a last checkpoint replaying from outside the retained WAL is ERR_WAL_CORRUPT', async () => {
  const wal = await openWal(dir);
  await wal.append(put(1, 0, 1));
  await wal.append({ type: 'checkpointBegin', checkpointId: 1, replayFrom: { segment: 7, offset: SEGMENT_HEADER_BYTES } });
  await wal.append({ type: 'checkpointEnd', checkpointId: 1 });
  await wal.close();
  await assert.rejects(openWal(dir), { code: 'ERR_WAL_CORRUPT' });
});

test('row 15: a CRC-valid record with an unknown type is ERR_WAL_CORRUPT, not a torn tail', async () => {
  const { end } = await writeRecords(1, 3);
  const frame = encodeRecordToBuffer({ type: 'cacheDrop', cacheId: 1 } as WalRecord);
  frame[13] = 77;
  frame.writeUInt32LE(crc32(frame.subarray(4, 16)), 0);
  await fs.appendFile(segmentPath(dir, end.segment), frame);
  await assert.rejects(openWal(dir), { code: 'ERR_WAL_CORRUPT' });
});

test('row 16: a leftover history.floors.tmp is deleted', async () => {
  await writeRecords(1, 3);
  await fs.writeFile(path.join(dir, 'history.floors.tmp'), 'half written');
  const wal = await openWal(dir);
  await assert.rejects(fs.stat(path.join(dir, 'history.floors.tmp')), { code: 'ENOENT' });
  assert.deepEqual(await replayed(wal), range(1, 3));
  await wal.close();
});
