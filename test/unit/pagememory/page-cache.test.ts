import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PageCache, PRESSURE_REPEAT_MS } from '../../../src/pagememory/page-cache.js';
import { eventually, tick } from './pm-helpers.js';

const PAGE = 4096;
const page = (fill: number) => Buffer.alloc(PAGE, fill);

function cacheOf(pages: number, opts: { ratio?: number; onDirtyPressure?: () => void } = {}) {
  return new PageCache({ budgetBytes: pages * PAGE, dirtyRatio: opts.ratio ?? 0.5, onDirtyPressure: opts.onDirtyPressure });
}

test('clean pages are evicted least recently used first, down to the budget', () => {
  const cache = cacheOf(3);
  const seg = cache.segment();
  for (let i = 1; i <= 3; i++) seg.unpin(seg.insertPinned(i, page(i), false));
  // Touch page 1: it becomes the most recently used.
  const e1 = seg.get(1)!;
  seg.pin(e1);
  seg.unpin(e1);
  seg.unpin(seg.insertPinned(4, page(4), false));
  seg.unpin(seg.insertPinned(5, page(5), false));
  cache.trim();
  assert.deepEqual([...seg.entries.keys()].sort(), [1, 4, 5]);
  assert.equal(cache.cachedBytes, 3 * PAGE);
  assert.equal(cache.evictions, 2);
});

test('dirty, pinned and captured pages are never evicted; the cache may exceed its budget with them', () => {
  const cache = cacheOf(2);
  const seg = cache.segment();
  const dirty = seg.insertPinned(1, page(1), true);
  seg.unpin(dirty);
  const pinned = seg.insertPinned(2, page(2), false);
  const captured = seg.insertPinned(3, page(3), true);
  seg.unpin(captured);
  seg.captureDirty();
  seg.unpin(seg.insertPinned(4, page(4), false));
  cache.trim();
  assert.deepEqual([...seg.entries.keys()].sort(), [1, 2, 3]);
  assert.ok(cache.cachedBytes > cache.budgetBytes);
  seg.unpin(pinned);
  cache.trim();
  assert.deepEqual([...seg.entries.keys()].sort(), [1, 3]);
});

test('modifying a captured page copies it first; the capture keeps the captured bytes', () => {
  const cache = cacheOf(10);
  const seg = cache.segment();
  const e = seg.insertPinned(7, page(1), true);
  assert.equal(cache.dirtyBytes, PAGE);
  const [captured] = seg.captureDirty();
  const image = captured!.buf;
  assert.equal(cache.dirtyPageBytes, 0);
  assert.equal(cache.pendingWriteBytes, PAGE);
  const buf = seg.writable(e);
  buf.fill(2);
  assert.notEqual(buf, image);
  assert.equal(image[100], 1, 'the captured image is unchanged');
  assert.equal(cache.dirtyBytes, 2 * PAGE, 'the captured image and the new dirty page both count');
  seg.written(7, image);
  assert.equal(cache.pendingWriteBytes, 0);
  assert.equal(e.dirty, true, 'the newer change is still dirty');
  seg.unpin(e);
});

test('a written captured page becomes evictable again', () => {
  const cache = cacheOf(1);
  const seg = cache.segment();
  const e = seg.insertPinned(1, page(1), true);
  seg.unpin(e);
  seg.captureDirty();
  seg.unpin(seg.insertPinned(2, page(2), false));
  cache.trim();
  assert.ok(seg.get(1), 'not evicted while captured');
  seg.written(1, e.buf);
  seg.unpin(seg.insertPinned(3, page(3), false));
  cache.trim();
  assert.equal(seg.get(1), undefined, 'evicted as the least recently used');
  assert.ok(seg.get(3));
});

test('freed and dropped pages leave the counts; their dirty bytes too', () => {
  const cache = cacheOf(10);
  const seg = cache.segment();
  seg.unpin(seg.insertPinned(1, page(1), true));
  seg.unpin(seg.insertPinned(2, page(2), false));
  seg.drop(1);
  assert.equal(cache.dirtyBytes, 0);
  assert.equal(cache.cachedBytes, PAGE);
  seg.dropAll();
  assert.equal(cache.cachedBytes, 0);
});

test('dirty pressure fires at the ratio, never while a checkpoint is active, and repeats while it lasts', async () => {
  let calls = 0;
  const cache = cacheOf(10, { ratio: 0.3, onDirtyPressure: () => calls++ });
  const seg = cache.segment();
  seg.unpin(seg.insertPinned(1, page(1), true));
  seg.unpin(seg.insertPinned(2, page(2), true));
  await tick();
  assert.equal(calls, 0);
  cache.checkpointStarted();
  seg.unpin(seg.insertPinned(3, page(3), true));
  await new Promise((r) => setTimeout(r, PRESSURE_REPEAT_MS * 2));
  assert.equal(calls, 0, 'a checkpoint is active');
  cache.checkpointFinished();
  assert.ok(await eventually(() => calls === 1), 'signalled once the checkpoint finished');
  assert.ok(await eventually(() => calls >= 2), 'repeats while nobody checkpoints');
  cache.close();
  const after = calls;
  await new Promise((r) => setTimeout(r, PRESSURE_REPEAT_MS * 2));
  assert.equal(calls, after, 'no signal after close');
});

test('waitForRoom resolves once dirty bytes are below the budget', async () => {
  const cache = cacheOf(2);
  const seg = cache.segment();
  const a = seg.insertPinned(1, page(1), true);
  const b = seg.insertPinned(2, page(2), true);
  let room = false;
  const w = cache.waitForRoom().then(() => (room = true));
  await tick();
  assert.equal(room, false);
  seg.captureDirty();
  seg.written(1, a.buf);
  await w;
  assert.equal(room, true);
  seg.written(2, b.buf);
  cache.close();
});
