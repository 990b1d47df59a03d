// Replay, history by partition and counter, reservations, retention, history floors.
import { afterEach, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { realFileLayer } from '../../../src/util/file-layer.js';
import { NodeWal } from '../../../src/wal/node-wal.js';
import { comparePointers, RECORD_HEADER_BYTES, type WalPointer, type WalRecord } from '../../../src/wal/record.js';
import { CLUSTER, collect, counters, hookedFileLayer, openWal, prng, put, remove, rmDir, segmentPath, tempDir, testSeed, walConfig } from './helpers.js';

let dir: string;
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(async () => {
  await rmDir(dir);
});

const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

/** Appends puts 1..n of (cache 1, partition c % parts) with 1 KiB values. */
async function fill(wal: NodeWal, from: number, to: number, parts = 1): Promise<WalPointer[]> {
  const out: WalPointer[] = [];
  for (let c = from; c <= to; c++) out.push(await wal.append(put(1, c % parts, c, 1000)));
  return out;
}

async function segmentFiles(): Promise<number[]> {
  return (await fs.readdir(dir)).filter((n) => n.endsWith('.wal')).map((n) => Number(n.slice(0, 16))).sort((a, b) => a - b);
}

test('replay after reopen returns exactly the records after the last completed checkpoint (seeded)', async () => {
  const seed = testSeed();
  const rnd = prng(seed);
  const wal = await openWal(dir, { segmentBytes: 64 * 1024 });
  const log: { pointer: WalPointer; record: WalRecord }[] = [];
  let replayFrom: WalPointer | undefined;
  let counter = 0;
  for (let i = 0; i < 400; i++) {
    const x = rnd();
    let record: WalRecord;
    if (x < 0.03) {
      const rf = wal.position();
      const id = i;
      log.push({ pointer: await wal.append({ type: 'checkpointBegin', checkpointId: id, replayFrom: rf }), record: { type: 'checkpointBegin', checkpointId: id, replayFrom: rf } });
      record = { type: 'checkpointEnd', checkpointId: id };
      if (rnd() < 0.8) replayFrom = rf; // otherwise: crash mid-checkpoint, this one never completes
      else continue;
    } else if (x < 0.3) record = remove(1 + Math.floor(rnd() * 2), Math.floor(rnd() * 4), ++counter);
    else record = put(1 + Math.floor(rnd() * 2), Math.floor(rnd() * 4), ++counter, Math.floor(rnd() * 2000));
    log.push({ pointer: await wal.append(record), record });
  }
  await wal.close();
  const again = await openWal(dir, { segmentBytes: 64 * 1024 });
  const expected = replayFrom ? log.filter((e) => comparePointers(e.pointer, replayFrom!) >= 0) : log;
  assert.deepEqual(await collect(again.replay()), expected, `seed ${seed}`);
  await again.close();
});

test('history returns one partition\'s records with fromExclusive < counter <= toInclusive, in WAL order, across segments', async () => {
  const wal = await openWal(dir);
  // Partitions 0..3 of cache 1 and partition 2 of cache 9, over several segments; counters 18
  // and 22 of partition 2 arrive out of order.
  for (let c = 1; c <= 160; c++) {
    const counter = c === 18 ? 22 : c === 22 ? 18 : c;
    await wal.append(put(1, c % 4, counter, 1000));
    if (c % 10 === 0) await wal.append(put(9, 2, c, 10));
  }
  assert.ok(wal.position().segment >= 2);
  const h = counters(await collect(wal.history(1, 2, 10, 30)));
  assert.deepEqual(h, [14, 22, 18, 26, 30]);
  assert.deepEqual(counters(await collect(wal.history(1, 2, 9, 10))), [10]);
  assert.deepEqual(counters(await collect(wal.history(1, 2, 10, 13))), []);
  assert.deepEqual(counters(await collect(wal.history(1, 2, 18, 22))), [22]);
  const all = counters(await collect(wal.history(1, 3, 0, 1000)));
  assert.deepEqual(all, range(1, 160).filter((c) => c % 4 === 3));
  assert.deepEqual(counters(await collect(wal.history(9, 2, 100, 1000))), [110, 120, 130, 140, 150, 160]);
  assert.deepEqual(await collect(wal.history(1, 7, 0, 1000)), []);
  await wal.close();
});

test('history includes records still in the write buffer and only put/remove records', async () => {
  const wal = await openWal(dir, { durability: 'background', flushIntervalMs: 60_000 });
  await wal.append(put(1, 0, 1));
  await wal.append({ type: 'checkpointBegin', checkpointId: 1, replayFrom: wal.position() });
  await wal.append(remove(1, 0, 2));
  assert.ok(wal.stats().bufferedBytes > 0);
  const h = await collect(wal.history(1, 0, 0, 10));
  assert.deepEqual(h.map((r) => r.type), ['put', 'remove']);
  await wal.close();
});

test('history reads only the segments that hold the partition', async () => {
  const opened: string[] = [];
  const fileLayer = { ...realFileLayer, open: (p: string, f: string) => (opened.push(p), realFileLayer.open(p, f)) };
  const wal = await NodeWal.open({ dir, clusterId: CLUSTER, config: walConfig(), fileLayer });
  await fill(wal, 1, 60); // partition 0 only: about one segment
  await wal.append(put(1, 5, 1000, 10));
  await fill(wal, 61, 200);
  opened.length = 0;
  assert.deepEqual(counters(await collect(wal.history(1, 5, 0, 5000))), [1000]);
  assert.equal(opened.length, 1);
  await wal.close();
});

test('history from any counter equals a filter of every record, with counters logged out of order, before and after a reopen (seeded)', async () => {
  const seed = testSeed();
  const rnd = prng(seed);
  // 64 KiB segments: a skip point about every 4 KiB, so most reads start inside a segment.
  const wal = await openWal(dir, { segmentBytes: 64 * 1024 });
  const parts = 4;
  const logged: WalRecord[] = [];
  const next = Array.from({ length: parts }, () => 1);
  for (let i = 0; i < 1200; i++) {
    const p = Math.floor(rnd() * parts);
    // Counters of a partition go up, but one in five is logged early (out of order) by up to 30.
    const c = rnd() < 0.2 ? next[p]! + Math.floor(rnd() * 30) : next[p]!++;
    const r = rnd() < 0.1 ? remove(1, p, c) : put(1, p, c, 100 + Math.floor(rnd() * 400));
    logged.push(r);
    await wal.append(r);
  }
  const expected = (p: number, from: number, to: number) =>
    counters(logged.filter((r) => (r.type === 'put' || r.type === 'remove') && r.partition === p && r.counter > from && r.counter <= to));
  const queries = Array.from({ length: 60 }, () => {
    const p = Math.floor(rnd() * parts);
    const from = Math.floor(rnd() * next[p]!);
    return { p, from, to: rnd() < 0.5 ? Infinity : from + Math.floor(rnd() * 100) };
  });
  // With a bound the read may stop early, and may yield records above it, never miss one below.
  const bounded = async (w: NodeWal, q: { p: number; from: number; to: number }) => {
    const bound = { upTo: q.from + 1 + Math.floor(rnd() * 60) };
    const got = counters(await collect(w.history(1, q.p, q.from, Math.min(q.to, 1e9), bound))).filter((c) => c <= bound.upTo);
    return { got, want: expected(q.p, q.from, Math.min(q.to, bound.upTo)), upTo: bound.upTo };
  };
  for (const q of queries) {
    assert.deepEqual(counters(await collect(wal.history(1, q.p, q.from, Math.min(q.to, 1e9)))), expected(q.p, q.from, q.to), `seed ${seed} ${JSON.stringify(q)}`);
    const b = await bounded(wal, q);
    assert.deepEqual(b.got, b.want, `seed ${seed} bounded at ${b.upTo} ${JSON.stringify(q)}`);
  }
  await wal.close();
  const again = await openWal(dir, { segmentBytes: 64 * 1024 }); // skip points and lags rebuilt by recovery
  for (const q of queries) {
    assert.deepEqual(counters(await collect(again.history(1, q.p, q.from, Math.min(q.to, 1e9)))), expected(q.p, q.from, q.to), `seed ${seed} after reopen ${JSON.stringify(q)}`);
    const b = await bounded(again, q);
    assert.deepEqual(b.got, b.want, `seed ${seed} bounded at ${b.upTo} after reopen ${JSON.stringify(q)}`);
  }
  await again.close();
});

test('a history read of a partition\'s last counters reads the end of a segment, not all of it, also after a reopen', async () => {
  let bytesRead = 0;
  const fileLayer = hookedFileLayer({ afterRead: (_file, n) => void (bytesRead += n) });
  const config = walConfig({ segmentBytes: 4 * 1024 * 1024 }); // skip points every 64 KiB
  let wal = await NodeWal.open({ dir, clusterId: CLUSTER, config, fileLayer });
  await fill(wal, 1, 3600, 4); // 4 partitions interleaved, 1 KiB each: one segment of ~3.6 MiB
  assert.deepEqual(await segmentFiles(), [0]);
  for (let round = 0; round < 2; round++) {
    bytesRead = 0;
    assert.deepEqual(counters(await collect(wal.history(1, 2, 3400, 5000))), range(3401, 3600).filter((c) => c % 4 === 2));
    assert.ok(bytesRead < 600 * 1024, `read ${bytesRead} bytes of a 3.6 MiB segment for its last 200 KiB (round ${round})`);
    bytesRead = 0;
    assert.equal((await collect(wal.history(1, 2, 0, 5000))).length, 900); // from the start: the whole segment
    assert.ok(bytesRead > 3.5 * 1024 * 1024, `read ${bytesRead} bytes for the whole history`);
    await wal.close();
    wal = await NodeWal.open({ dir, clusterId: CLUSTER, config, fileLayer });
  }
  await wal.close();
});

test('a bounded history read stops where no record at or below its bound can follow, also after a reopen', async () => {
  let bytesRead = 0;
  const fileLayer = hookedFileLayer({ afterRead: (_file, n) => void (bytesRead += n) });
  const config = walConfig({ segmentBytes: 4 * 1024 * 1024 });
  let wal = await NodeWal.open({ dir, clusterId: CLUSTER, config, fileLayer });
  await fill(wal, 1, 3600, 4); // ~3.6 MiB in one segment, counters in ascending order
  // A counter of partition 2 logged late, 7 below the highest before it: reads of (…, c] now go
  // on until 7 past c in this segment.
  await wal.append(put(1, 2, 3591, 1000));
  for (let round = 0; round < 2; round++) {
    bytesRead = 0;
    const early = counters(await collect(wal.history(1, 2, 200, 5000, { upTo: 400 }))).filter((c) => c <= 400);
    assert.deepEqual(early, range(201, 400).filter((c) => c % 4 === 2));
    const boundedBytes = bytesRead;
    bytesRead = 0;
    assert.equal(counters(await collect(wal.history(1, 2, 200, 5000))).length, 851); // 850 in order + the late one
    assert.ok(boundedBytes < 1.5 * 1024 * 1024 && bytesRead > 3 * 1024 * 1024, `read ${boundedBytes} bytes bounded, ${bytesRead} unbounded of a 3.6 MiB segment (round ${round})`);
    // The late record is found by a read bounded below it: the early stop misses nothing.
    assert.deepEqual(counters(await collect(wal.history(1, 2, 3588, 5000, { upTo: 3593 }))).filter((c) => c <= 3593), [3590, 3591]);
    await wal.close();
    wal = await NodeWal.open({ dir, clusterId: CLUSTER, config, fileLayer });
  }
  await wal.close();
});

test('a history read whose skip point lands past what was written when it began reads nothing there', async () => {
  // The read opens segment 0 first; while it waits there, records are appended to the active
  // segment: a skip point past the read's end (counters below fromExclusive), then one above it.
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let hold = false;
  const fileLayer = { ...realFileLayer, open: async (p: string, f: string) => (hold && p.endsWith('0000000000000000.wal') ? await gate : undefined, realFileLayer.open(p, f)) };
  const wal = await NodeWal.open({ dir, clusterId: CLUSTER, config: walConfig(), fileLayer });
  await wal.append(put(1, 0, 600, 10)); // segment 0 holds one counter above 500: the read opens it
  for (let c = 1; c <= 70; c++) await wal.append(put(1, 0, c, 1000)); // segment 0 full, segment 1 begun
  assert.deepEqual(await segmentFiles(), [0, 1]);
  hold = true;
  const reading = collect(wal.history(1, 0, 500, 10_000));
  await new Promise((r) => setTimeout(r, 20)); // the read has flushed and waits to open segment 0
  for (let c = 71; c <= 80; c++) wal.appendNoWait(put(1, 0, c, 1000)); // > 4 KiB: a skip point with max <= 500
  wal.appendNoWait(put(1, 0, 1000, 10));
  release();
  assert.deepEqual(counters(await reading), [600]); // what was appended after the read began is not part of it
  hold = false;
  assert.deepEqual(counters(await collect(wal.history(1, 0, 500, 10_000))), [600, 1000]);
  await wal.close();
});

test('a history read serves no record with a bad body CRC and is not stopped by one of another partition', async () => {
  const wal = await openWal(dir);
  const pointers = await fill(wal, 1, 40, 2); // counters 2, 4 … in partition 0; 1, 3 … in partition 1
  await wal.flush();
  // Flip a value byte of counter 10 (partition 0): its length and header stay valid, its body CRC does not.
  const at = pointers[9]!;
  const fh = await fs.open(segmentPath(dir, at.segment), 'r+');
  const b = Buffer.alloc(1);
  await fh.read(b, 0, 1, at.offset + RECORD_HEADER_BYTES + 200);
  b[0] = b[0]! ^ 0xff;
  await fh.write(b, 0, 1, at.offset + RECORD_HEADER_BYTES + 200);
  await fh.close();
  assert.deepEqual(counters(await collect(wal.history(1, 1, 0, 100))), range(1, 40).filter((c) => c % 2 === 1));
  assert.deepEqual(counters(await collect(wal.history(1, 0, 10, 100))), range(11, 40).filter((c) => c % 2 === 0));
  await assert.rejects(collect(wal.history(1, 0, 0, 100)), (err: Error & { code?: string }) => err.code === 'ERR_WAL_CORRUPT' && /bad body crc/.test(err.message));
  await wal.close();
});

test('retention deletes the oldest segments before replayFrom while history exceeds historyBytesMax', async () => {
  const segmentBytes = 64 * 1024;
  const wal = await openWal(dir, { segmentBytes, historyBytesMax: 2 * segmentBytes });
  await fill(wal, 1, 400);
  const end = wal.position();
  assert.ok(end.segment >= 5);
  const replayFrom = { segment: end.segment - 1, offset: 1000 };
  await wal.checkpointCompleted(replayFrom);
  const files = await segmentFiles();
  const kept = files.filter((s) => s < replayFrom.segment);
  const keptBytes = (await Promise.all(kept.map((s) => fs.stat(segmentPath(dir, s))))).reduce((n, st) => n + st.size, 0);
  assert.ok(keptBytes <= 2 * segmentBytes, `${keptBytes} bytes of history kept`);
  assert.ok(keptBytes > segmentBytes, 'no more than needed was deleted');
  assert.equal(files[files.length - 1], end.segment);
  assert.equal(wal.stats().oldestSegment, files[0]);
  assert.equal(wal.stats().segments, files.length);
  await wal.close();
});

test('with historyBytesMax 0 only what recovery needs is kept, and never the active segment', async () => {
  const wal = await openWal(dir, { historyBytesMax: 0 });
  await fill(wal, 1, 300);
  const end = wal.position();
  await wal.checkpointCompleted(end);
  assert.deepEqual(await segmentFiles(), [end.segment]);
  await wal.checkpointCompleted(end);
  assert.deepEqual(await segmentFiles(), [end.segment]);
  await wal.close();
  const again = await openWal(dir, { historyBytesMax: 0 });
  assert.equal(again.stats().oldestSegment, end.segment);
  await again.close();
});

test('history that retention deleted is ERR_WAL_HISTORY_GONE for history() and reserve(), before and after a restart', async () => {
  const wal = await openWal(dir, { historyBytesMax: 0 });
  await fill(wal, 1, 300, 2);
  const end = wal.position();
  await wal.checkpointCompleted(end);
  const availableFrom = wal.historyAvailableFrom(1, 0);
  assert.ok(availableFrom > 0);
  assert.equal(availableFrom % 2, 0, 'the floor is the highest deleted counter of partition 0');
  assert.equal(wal.historyAvailableFrom(1, 7), 0, 'a partition never seen lost nothing');
  assert.throws(() => wal.history(1, 0, availableFrom - 1, 1000), { code: 'ERR_WAL_HISTORY_GONE' });
  assert.throws(() => wal.reserve(1, 0, 0), { code: 'ERR_WAL_HISTORY_GONE' });
  const rest = counters(await collect(wal.history(1, 0, availableFrom, 1000)));
  assert.deepEqual(rest, range(availableFrom + 1, 300).filter((c) => c % 2 === 0));
  await wal.close();
  const again = await openWal(dir, { historyBytesMax: 0 });
  assert.equal(again.historyAvailableFrom(1, 0), availableFrom);
  assert.throws(() => again.history(1, 0, availableFrom - 1, 1000), { code: 'ERR_WAL_HISTORY_GONE' });
  assert.deepEqual(counters(await collect(again.history(1, 0, availableFrom, 1000))), rest);
  await again.close();
});

test('a reservation pins its segments across checkpointCompleted and release lets them go', async () => {
  const wal = await openWal(dir, { historyBytesMax: 0 });
  await fill(wal, 1, 100, 2); // partitions 0 and 1 interleaved
  await wal.append(put(1, 7, 500, 100)); // partition 7 only in a later segment
  await fill(wal, 101, 300, 2);
  const firstOf7 = wal.position().segment;
  const r = wal.reserve(1, 0, 50);
  const other = wal.reserve(1, 7, 0);
  const idle = wal.reserve(1, 1, 10_000); // nothing above 10000: pins nothing
  assert.equal(wal.stats().reservations, 3);
  await wal.checkpointCompleted(wal.position());
  const afterPin = await segmentFiles();
  assert.ok(afterPin[0]! <= 1, 'the segments with counters > 50 of partition 0 stay');
  assert.deepEqual(counters(await collect(wal.history(1, 0, 50, 60))), [52, 54, 56, 58, 60]);
  r.release();
  r.release(); // idempotent
  await wal.checkpointCompleted(wal.position());
  const afterRelease = await segmentFiles();
  assert.ok(afterRelease[0]! > afterPin[0]!, 'released segments were deleted');
  assert.ok(afterRelease[0]! <= firstOf7, 'partition 7\'s reservation still pins its segment');
  other.release();
  idle.release();
  assert.equal(wal.stats().reservations, 0);
  await wal.checkpointCompleted(wal.position());
  assert.deepEqual(await segmentFiles(), [wal.position().segment]);
  await wal.close();
});

test('a history read in progress pins the segments it still has to read', async () => {
  const wal = await openWal(dir, { historyBytesMax: 0 });
  await fill(wal, 1, 300);
  const it = wal.history(1, 0, 0, 1000)[Symbol.asyncIterator]();
  const first = await it.next();
  assert.equal((first.value as WalRecord & { counter: number }).counter, 1);
  await wal.checkpointCompleted(wal.position());
  const rest: number[] = [];
  for (let r = await it.next(); !r.done; r = await it.next()) rest.push((r.value as { counter: number }).counter);
  assert.deepEqual(rest, range(2, 300));
  await wal.checkpointCompleted(wal.position());
  assert.deepEqual(await segmentFiles(), [wal.position().segment]);
  await wal.close();
});

test('after partitionDestroy the partition has no history until its next record, and replay skips what it wiped', async () => {
  const wal = await openWal(dir);
  await wal.append(put(1, 3, 1));
  await wal.append(put(1, 4, 2));
  await wal.append(put(1, 3, 3));
  await wal.append({ type: 'partitionDestroy', cacheId: 1, partition: 3 });
  assert.equal(wal.historyAvailableFrom(1, 3), Infinity);
  assert.throws(() => wal.history(1, 3, 0, 100), { code: 'ERR_WAL_HISTORY_GONE' });
  assert.equal(wal.historyAvailableFrom(1, 4), 0);
  await wal.append(put(1, 3, 50)); // e.g. received as a file holding counters up to 49
  await wal.append(put(1, 3, 51));
  assert.equal(wal.historyAvailableFrom(1, 3), 49);
  assert.deepEqual(counters(await collect(wal.history(1, 3, 49, 100))), [50, 51]);
  await wal.close();
  const again = await openWal(dir);
  assert.equal(again.historyAvailableFrom(1, 3), 49);
  const replay = (await collect(again.replay())).map((x) => x.record);
  assert.deepEqual(replay.map((r) => (r.type === 'put' ? `${r.partition}:${r.counter}` : r.type)), ['4:2', 'partitionDestroy', '3:50', '3:51']);
  await again.close();
});

test('after cacheDrop no partition of the cache has history until its next record, also after retention and a restart', async () => {
  const wal = await openWal(dir, { historyBytesMax: 0 });
  await fill(wal, 1, 100, 4);
  await wal.append({ type: 'cacheDrop', cacheId: 1 });
  assert.equal(wal.historyAvailableFrom(1, 0), Infinity);
  assert.equal(wal.historyAvailableFrom(1, 9), Infinity);
  assert.throws(() => wal.reserve(1, 2, 0), { code: 'ERR_WAL_HISTORY_GONE' });
  await fill(wal, 200, 300, 1); // the cache is back (same id), partition 0 only
  assert.equal(wal.historyAvailableFrom(1, 0), 199);
  assert.equal(wal.historyAvailableFrom(1, 1), Infinity);
  await wal.checkpointCompleted(wal.position()); // deletes the drop's segment
  const floor = wal.historyAvailableFrom(1, 0);
  assert.ok(floor >= 199);
  await wal.close();
  const again = await openWal(dir, { historyBytesMax: 0 });
  assert.equal(again.historyAvailableFrom(1, 0), floor);
  assert.equal(again.historyAvailableFrom(1, 1), Infinity);
  assert.equal(again.historyAvailableFrom(2, 0), 0);
  await again.close();
});

test('replay skips puts of a dropped cache that came before the drop', async () => {
  const wal = await openWal(dir);
  await wal.append(put(1, 0, 1));
  await wal.append(put(2, 0, 1));
  await wal.append({ type: 'cacheDrop', cacheId: 1 });
  await wal.append(put(1, 0, 1));
  await wal.close();
  const again = await openWal(dir);
  const replay = (await collect(again.replay())).map((x) => x.record);
  assert.deepEqual(replay.map((r) => (r.type === 'put' ? `${r.cacheId}:${r.counter}` : r.type)), ['2:1', 'cacheDrop', '1:1']);
  await again.close();
});
