// historyBatch: WAL history of one partition over several segments, in batches bounded by
// maxBytes that each cover a counter range completely, the edges of (from, to], and
// ERR_WAL_HISTORY_GONE once retention deleted the range.
import test from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCode } from '../../../src/errors.js';
import type { Update } from '../../../src/store/store.js';
import { decodeHistoryBatch, encodeHistoryBatch } from '../../../src/supplier/history-batch.js';
import { rng, testSeed } from '../../helpers/tmp.js';
import { CACHE_ID, type Fixture, makeFixture } from './helpers.js';

async function batch(f: Fixture, fromExclusive: number, toInclusive: number, maxBytes: number, partition = 0) {
  const body = (await f.call('historyBatch', { cacheId: CACHE_ID, partition, fromExclusive, toInclusive, maxBytes })) as Buffer;
  return decodeHistoryBatch(body);
}

/** Pulls (from, to] in batches; returns the counters in order received and the batch count. */
async function pullHistory(f: Fixture, from: number, to: number, maxBytes: number) {
  const counters: number[] = [];
  let batches = 0;
  for (let at = from; ; ) {
    const { head, updates } = await batch(f, at, to, maxBytes);
    batches++;
    for (const u of updates) {
      assert.equal(u.partition, 0);
      assert.ok(u.counter > at && u.counter <= head.lastCounter, `counter ${u.counter} outside (${at}, ${head.lastCounter}]`);
      counters.push(u.counter);
    }
    assert.ok(head.lastCounter > at || head.done, 'every batch makes progress');
    if (head.done) {
      assert.equal(head.lastCounter, to);
      break;
    }
    at = head.lastCounter;
  }
  return { counters, batches };
}

/** Updates with the given counters (any order) on partitions 0 and 1, through the WAL. */
async function applyCounters(f: Fixture, counters: number[], partition = 0): Promise<void> {
  for (const c of counters) {
    const u: Update = { cacheId: CACHE_ID, partition, counter: c, key: `k${c % 300}`, op: c % 7 === 0 ? 'remove' : 'put', valueKind: 0, value: Buffer.alloc(300, c % 251) };
    await f.store.apply(u);
  }
}

test('history over several segments comes in bounded batches, each range complete, even out of counter order', async (t) => {
  const seed = testSeed();
  const r = rng(seed);
  const f = await makeFixture(t, { wal: { segmentBytes: 65536 } });
  const counters = Array.from({ length: 1200 }, (_, i) => i + 1);
  // Backups apply out of order: shuffle within windows of 40 counters.
  for (let i = 0; i < counters.length; i += 40) {
    const w = counters.slice(i, i + 40).sort(() => r() - 0.5);
    counters.splice(i, w.length, ...w);
  }
  await applyCounters(f, counters);
  await applyCounters(f, Array.from({ length: 300 }, (_, i) => i + 1), 1); // another partition interleaves nothing into ours
  assert.ok(f.store.nodeWal.stats().segments >= 5, 'the history spans several segments');
  const { counters: got, batches } = await pullHistory(f, 100, 1100, 16 * 1024);
  assert.ok(batches >= 10, `seed ${seed}: ${batches} batches of at most ~16 KiB`);
  assert.deepEqual([...got].sort((a, b) => a - b), Array.from({ length: 1000 }, (_, i) => i + 101), `seed ${seed}`);
  assert.equal(new Set(got).size, got.length, 'no counter twice');
});

test('the edges of (from, to]: from excluded, to included, empty when equal, beyond the end is fine', async (t) => {
  const f = await makeFixture(t);
  await applyCounters(f, Array.from({ length: 50 }, (_, i) => i + 1));
  const one = await batch(f, 9, 10, 1 << 20);
  assert.deepEqual(one.updates.map((u) => u.counter), [10]);
  const none = await batch(f, 10, 10, 1 << 20);
  assert.deepEqual(none.updates, []);
  assert.deepEqual(none.head, { done: true, lastCounter: 10 });
  const all = await batch(f, 0, 1000, 1 << 20);
  assert.deepEqual(all.updates.map((u) => u.counter), Array.from({ length: 50 }, (_, i) => i + 1));
  assert.equal(all.head.done, true);
  const removed = all.updates.find((u) => u.counter === 7)!;
  assert.equal(removed.op, 'remove');
  assert.equal(all.updates.find((u) => u.counter === 8)!.value!.length, 300);
});

test('a record larger than maxBytes still comes, alone', async (t) => {
  const f = await makeFixture(t);
  await applyCounters(f, [1, 2, 3]);
  const b = await batch(f, 0, 3, 10);
  assert.deepEqual(b.updates.map((u) => u.counter), [1]);
  assert.deepEqual(b.head, { done: false, lastCounter: 1 });
});

test('history deleted by retention is ERR_WAL_HISTORY_GONE', async (t) => {
  const f = await makeFixture(t, { wal: { segmentBytes: 65536, historyBytesMax: 0 } });
  await applyCounters(f, Array.from({ length: 800 }, (_, i) => i + 1));
  await f.store.checkpoint('test');
  await assert.rejects(batch(f, 0, 800, 1 << 20), { code: ErrorCode.ERR_WAL_HISTORY_GONE });
  const info = (await f.call('partitionInfo', { cacheId: CACHE_ID, partition: 0 })) as { historyAvailableFrom: number; counter: { lwm: number } };
  assert.ok(info.historyAvailableFrom > 0);
  assert.equal(info.counter.lwm, 800);
  const tail = await batch(f, info.historyAvailableFrom, 800, 1 << 20);
  assert.equal(tail.head.done, true);
});

test('the batch format round trips and a malformed one is ERR_PROTOCOL_BAD_FRAME', () => {
  const u: Update = { cacheId: 1, partition: 0, counter: 5, key: 'k', op: 'put', valueKind: 1, value: Buffer.from('"v"') };
  const buf = encodeHistoryBatch({ done: false, lastCounter: 9 }, [u]);
  const back = decodeHistoryBatch(buf);
  assert.deepEqual(back.head, { done: false, lastCounter: 9 });
  assert.deepEqual(back.updates, [u]);
  for (const bad of [buf.subarray(0, 3), Buffer.concat([Buffer.from([0, 0, 1, 0]), buf.subarray(4)]), (() => { const b = Buffer.from(buf); b[5] = 0x7b; b[6] = 0x7d; return b; })()]) {
    assert.throws(() => decodeHistoryBatch(bad), { code: ErrorCode.ERR_PROTOCOL_BAD_FRAME });
  }
});
