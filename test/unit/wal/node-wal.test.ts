// Appending: segments, group commit, durability modes, backpressure, errors, lifecycle.
import { afterEach, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { comparePointers, recordFrameBytes, type WalPointer } from '../../../src/wal/record.js';
import { SEGMENT_HEADER_BYTES } from '../../../src/wal/segment.js';
import { collect, counters, hookedFileLayer, openWal, put, rmDir, segmentPath, tempDir } from './helpers.js';

let dir: string;
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(async () => {
  await rmDir(dir);
});

const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

test('appends roll over to a new segment before one would exceed segmentBytes', async () => {
  const segmentBytes = 64 * 1024;
  const wal = await openWal(dir, { segmentBytes });
  const pointers: WalPointer[] = [];
  for (let c = 1; c <= 150; c++) pointers.push(await wal.append(put(1, 0, c, 1000)));
  for (let i = 1; i < pointers.length; i++) assert.ok(comparePointers(pointers[i - 1]!, pointers[i]!) < 0);
  const last = wal.position().segment;
  assert.ok(last >= 2);
  for (let s = 0; s <= last; s++) {
    const size = (await fs.stat(segmentPath(dir, s))).size;
    assert.ok(size <= segmentBytes, `segment ${s} is ${size} bytes`);
    if (s < last) assert.ok(size > segmentBytes - recordFrameBytes(put(1, 0, 1, 1000)), `segment ${s} was closed early`);
  }
  // A segment starts with the first record right after its header.
  assert.ok(pointers.some((p) => p.segment === 1 && p.offset === SEGMENT_HEADER_BYTES));
  assert.equal(wal.stats().segments, last + 1);
  await wal.close();
});

test('a record larger than segmentBytes gets a segment of its own', async () => {
  const wal = await openWal(dir, { segmentBytes: 65536, recordBytesMax: 1 << 20 });
  await wal.append(put(1, 0, 1, 100));
  const big = await wal.append(put(1, 0, 2, 200_000));
  const after = await wal.append(put(1, 0, 3, 100));
  assert.deepEqual(big, { segment: 1, offset: SEGMENT_HEADER_BYTES });
  assert.deepEqual(after, { segment: 2, offset: SEGMENT_HEADER_BYTES });
  await wal.close();
  const again = await openWal(dir, { segmentBytes: 65536, recordBytesMax: 1 << 20 });
  assert.deepEqual(counters((await collect(again.replay())).map((x) => x.record)), [1, 2, 3]);
  await again.close();
});

test('group commit: many concurrent appends all resolve with far fewer fsyncs than appends', async () => {
  const wal = await openWal(dir, { segmentBytes: 1 << 20 });
  const before = wal.stats().fsyncs;
  const pointers = await Promise.all(range(1, 300).map((c) => wal.append(put(1, c % 8, c, 200))));
  for (let i = 1; i < pointers.length; i++) assert.ok(comparePointers(pointers[i - 1]!, pointers[i]!) < 0, 'pointers follow call order');
  const s = wal.stats();
  assert.equal(s.appends, 300);
  assert.ok(s.fsyncs - before <= 3, `${s.fsyncs - before} fsyncs for 300 concurrent appends`);
  await wal.close();
});

test('group commit: 64 writers appending in loops share fsyncs', async () => {
  const wal = await openWal(dir, { segmentBytes: 1 << 20 });
  let counter = 0;
  const writer = async () => {
    for (let i = 0; i < 10; i++) await wal.append(put(1, 0, ++counter, 100));
  };
  await Promise.all(range(1, 64).map(writer));
  const s = wal.stats();
  assert.equal(s.appends, 640);
  assert.ok(s.fsyncs <= 640 / 8, `${s.fsyncs} fsyncs for 640 appends by 64 writers`);
  await wal.close();
});

test('fsync mode: append resolves only after an fsync covering the record', async () => {
  let syncs = 0;
  const wal = await openWal(dir, {}, { fileLayer: hookedFileLayer({ afterSync: () => syncs++ }) });
  const before = syncs;
  const { pointer, durable } = wal.appendNoWait(put(1, 0, 1));
  assert.deepEqual(pointer, { segment: 0, offset: SEGMENT_HEADER_BYTES });
  assert.deepEqual(wal.position(), { segment: 0, offset: SEGMENT_HEADER_BYTES + recordFrameBytes(put(1, 0, 1)) });
  assert.equal(syncs, before);
  await durable;
  assert.equal(syncs, before + 1);
  await wal.append(put(1, 0, 2));
  assert.equal(syncs, before + 2);
  await wal.close();
});

test('background mode: append resolves from the buffer, flush() makes it durable', async () => {
  const wal = await openWal(dir, { durability: 'background', flushIntervalMs: 60_000 });
  await wal.append(put(1, 0, 1));
  await wal.appendNoWait(put(1, 0, 2)).durable;
  assert.equal(wal.stats().fsyncs, 0);
  assert.equal(wal.stats().bufferedBytes, 2 * recordFrameBytes(put(1, 0, 1)));
  await wal.flush();
  assert.equal(wal.stats().fsyncs, 1);
  assert.equal(wal.stats().bufferedBytes, 0);
  await wal.close();
  const again = await openWal(dir);
  assert.deepEqual(counters((await collect(again.replay())).map((x) => x.record)), [1, 2]);
  await again.close();
});

test('background mode: the flusher writes and fsyncs on its own after flushIntervalMs', async () => {
  let onSync: (() => void) | undefined;
  const synced = new Promise<void>((resolve) => (onSync = resolve));
  let armed = false;
  const fileLayer = hookedFileLayer({ afterSync: () => armed && onSync?.() });
  const wal = await openWal(dir, { durability: 'background', flushIntervalMs: 5 }, { fileLayer });
  armed = true; // the segment created by open() was synced already
  try {
    await wal.append(put(1, 0, 1));
    assert.equal(wal.stats().bufferedBytes, recordFrameBytes(put(1, 0, 1)));
    await synced; // no flush() call: only the timer can get here
    assert.equal(wal.stats().bufferedBytes, 0);
    assert.equal((await fs.stat(segmentPath(dir, 0))).size, wal.position().offset);
  } finally {
    await wal.close();
  }
});

for (const durability of ['fsync', 'background'] as const) {
  test(`backpressure (${durability}): unwritten bytes stay within bufferBytesMax plus one record`, async () => {
    const bufferBytesMax = 64 * 1024;
    const fileLayer = hookedFileLayer({ beforeWrite: () => sleep(2) }); // slow disk, so appends pile up
    const wal = await openWal(dir, { durability, bufferBytesMax, flushIntervalMs: 60_000, segmentBytes: 1 << 20 }, { fileLayer });
    const frame = recordFrameBytes(put(1, 0, 1, 1000));
    await Promise.all(range(1, 400).map((c) => wal.append(put(1, 0, c, 1000))));
    const s = wal.stats();
    assert.ok(s.bufferedBytesPeak >= bufferBytesMax - frame, `the buffer did fill (${s.bufferedBytesPeak})`);
    assert.ok(s.bufferedBytesPeak < bufferBytesMax + frame, `peak ${s.bufferedBytesPeak} exceeds ${bufferBytesMax} + ${frame}`);
    await wal.close();
    const again = await openWal(dir, { segmentBytes: 1 << 20 });
    assert.deepEqual(counters((await collect(again.replay())).map((x) => x.record)), range(1, 400));
    await again.close();
  });
}

test('background mode: appendNoWait never waits, but its durable promise holds back a caller while the buffer is full', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let armed = false;
  const fileLayer = hookedFileLayer({ beforeWrite: () => (armed ? gate : undefined) });
  const wal = await openWal(dir, { durability: 'background', bufferBytesMax: 8192, flushIntervalMs: 60_000 }, { fileLayer });
  armed = true;
  const first = wal.appendNoWait(put(1, 0, 1, 4000));
  await first.durable; // below the limit: in the buffer is enough
  const second = wal.appendNoWait(put(1, 0, 2, 5000)); // framed at once, the buffer is now over the limit
  assert.deepEqual(second.pointer, { segment: 0, offset: first.pointer.offset + recordFrameBytes(put(1, 0, 1, 4000)) });
  let released = false;
  void second.durable.then(() => (released = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(released, false, 'durable waits for room');
  release();
  await second.durable;
  assert.ok(wal.stats().bufferedBytes < 8192);
  await wal.close();
});

test('a record above recordBytesMax is refused with ERR_WAL_RECORD_TOO_LARGE and nothing is framed', async () => {
  const wal = await openWal(dir, { recordBytesMax: 4096 });
  const pos = wal.position();
  assert.throws(() => wal.appendNoWait(put(1, 0, 1, 5000)), { code: 'ERR_WAL_RECORD_TOO_LARGE' });
  await assert.rejects(wal.append(put(1, 0, 1, 5000)), { code: 'ERR_WAL_RECORD_TOO_LARGE' });
  assert.deepEqual(wal.position(), pos);
  const fits = put(1, 0, 1, 4096 - recordFrameBytes(put(1, 0, 1, 0)));
  assert.equal(recordFrameBytes(fits), 4096);
  await wal.append(fits);
  await wal.close();
});

test('close flushes, is idempotent, and later appends fail with ERR_CLOSED', async () => {
  const wal = await openWal(dir, { durability: 'background', flushIntervalMs: 60_000 });
  await wal.append(put(1, 0, 1));
  const p1 = wal.close();
  const p2 = wal.close();
  await Promise.all([p1, p2]);
  await wal.close();
  await assert.rejects(wal.append(put(1, 0, 2)), { code: 'ERR_CLOSED' });
  assert.throws(() => wal.appendNoWait(put(1, 0, 2)), { code: 'ERR_CLOSED' });
  await assert.rejects(wal.flush(), { code: 'ERR_CLOSED' });
  assert.throws(() => wal.reserve(1, 0, 0), { code: 'ERR_CLOSED' });
  const again = await openWal(dir);
  assert.deepEqual(counters((await collect(again.replay())).map((x) => x.record)), [1]);
  await again.close();
});

test('appends waiting for buffer room are rejected with ERR_CLOSED when the WAL closes', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let writes = 0;
  const fileLayer = hookedFileLayer({ beforeWrite: async () => (writes++ > 0 ? gate : undefined) });
  const wal = await openWal(dir, { bufferBytesMax: 8 * 1024, segmentBytes: 1 << 20 }, { fileLayer });
  const appends = range(1, 40).map((c) => wal.append(put(1, 0, c, 1000)));
  await sleep(20); // the first batch is stuck in its write; the rest wait for room
  const closing = wal.close();
  release();
  const results = await Promise.allSettled(appends);
  await closing;
  const rejected = results.filter((r) => r.status === 'rejected');
  assert.ok(rejected.length > 0);
  for (const r of rejected) assert.equal((r as PromiseRejectedResult).reason.code, 'ERR_CLOSED');
  const done = results.length - rejected.length;
  const again = await openWal(dir, { segmentBytes: 1 << 20 });
  assert.equal((await collect(again.replay())).length, done, 'every resolved append is durable, no rejected one is');
  await again.close();
});

test('a failed write fails the WAL for good with a coded error', async () => {
  let failNext = false;
  const fileLayer = hookedFileLayer({
    beforeWrite: () => {
      if (failNext) throw Object.assign(new Error('no space'), { code: 'ENOSPC' });
    },
  });
  const wal = await openWal(dir, {}, { fileLayer });
  await wal.append(put(1, 0, 1));
  failNext = true;
  await assert.rejects(wal.append(put(1, 0, 2)), { code: 'ERR_DISK_FULL' });
  failNext = false;
  await assert.rejects(wal.append(put(1, 0, 3)), { code: 'ERR_DISK_FULL' });
  await assert.rejects(wal.flush(), { code: 'ERR_DISK_FULL' });
  await wal.close();
  const again = await openWal(dir);
  assert.deepEqual(counters((await collect(again.replay())).map((x) => x.record)), [1]);
  await again.close();
});

test('stats count segments, bytes, appends and fsyncs', async () => {
  const wal = await openWal(dir);
  const s0 = wal.stats();
  assert.deepEqual({ ...s0, fsyncs: 0 }, { segments: 1, bytes: SEGMENT_HEADER_BYTES, oldestSegment: 0, reservations: 0, fsyncs: 0, appends: 0, bufferedBytes: 0, bufferedBytesPeak: 0 });
  await wal.append(put(1, 0, 1));
  const s1 = wal.stats();
  assert.equal(s1.appends, 1);
  assert.equal(s1.bytes, SEGMENT_HEADER_BYTES + recordFrameBytes(put(1, 0, 1)));
  assert.equal(s1.fsyncs, 1);
  await wal.close();
});
