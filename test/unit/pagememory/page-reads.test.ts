// Page reads: synchronous while fast, the thread pool for a while after a slow one.
import { afterEach, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { realFileLayer, type FileLike } from '../../../src/util/file-layer.js';
import { PageReads, SLOW_SCORE_HOLD } from '../../../src/pagememory/page-reads.js';
import { checkpoint, ID, openPm, put } from './pm-helpers.js';

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ptn-'));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

/** A file whose synchronous reads take `syncMs[i]` of a fake clock each (the i-th read), recording how each read went. */
function fakeFile(clock: { t: number }, syncMs: number[]): FileLike & { log: string[] } {
  const log: string[] = [];
  let i = 0;
  const fill = (b: Uint8Array, o: number, l: number, p: number) => {
    for (let k = 0; k < l; k++) b[o + k] = (p + k) & 0xff;
    return l;
  };
  return {
    log,
    path: 'fake',
    read: async (b, o, l, p) => {
      log.push('async');
      await new Promise((r) => setImmediate(r)); // a thread-pool read completes in a later turn of the loop
      return fill(b, o, l, p);
    },
    readSync: (b, o, l, p) => {
      clock.t += syncMs[i++] ?? 0;
      log.push('sync');
      return fill(b, o, l, p);
    },
    write: async () => {},
    writev: async () => {},
    sync: async () => {},
    datasync: async () => {},
    truncate: async () => {},
    size: async () => 0,
    close: async () => {},
  };
}

test('reads are synchronous while they are fast, and return the same bytes as the thread pool', async () => {
  const clock = { t: 0 };
  const reads = new PageReads({ sync: true, sliceMs: Infinity, now: () => clock.t });
  const f = fakeFile(clock, [0.01, 0.02, 0.01]);
  const a = Buffer.alloc(8);
  const b = Buffer.alloc(8);
  for (let i = 0; i < 3; i++) assert.equal(await reads.read(f, a, 0, 8, 100), 8);
  await f.read(b, 0, 8, 100);
  assert.deepEqual(a, b);
  assert.deepEqual(f.log, ['sync', 'sync', 'sync', 'async']);
  assert.deepEqual(reads.counts, { sync: 3, async: 0, slow: 0, holds: 0, yields: 0 });
});

test('a slow synchronous read now and then keeps reads synchronous (a preempted read from memory)', async () => {
  const clock = { t: 0 };
  const reads = new PageReads({ sync: true, slowUs: 250, holdMs: 1000, sliceMs: Infinity, now: () => clock.t });
  const f = fakeFile(clock, Array.from({ length: 400 }, (_, i) => (i % 8 === 0 ? 5 : 0.01))); // one in 8 takes 5 ms
  for (let i = 0; i < 400; i++) await reads.read(f, Buffer.alloc(4), 0, 4, 0);
  assert.equal(reads.holding, false);
  assert.deepEqual(reads.counts, { sync: 400, async: 0, slow: 50, holds: 0, yields: 0 });
});

test('when most synchronous reads are slow (the device), reads go to the thread pool for holdMs, then one slow read holds again', async () => {
  const clock = { t: 0 };
  const reads = new PageReads({ sync: true, slowUs: 250, holdMs: 1000, sliceMs: Infinity, now: () => clock.t });
  const f = fakeFile(clock, Array.from({ length: 100 }, () => 2)); // every read takes 2 ms
  const buf = Buffer.alloc(4);
  let firstHold = -1;
  for (let i = 0; i < 20 && firstHold < 0; i++) {
    await reads.read(f, buf, 0, 4, 0);
    if (reads.holding) firstHold = i;
  }
  assert.ok(firstHold >= SLOW_SCORE_HOLD && firstHold < 12, `held after ${firstHold + 1} slow reads`);
  await reads.read(f, buf, 0, 4, 0);
  assert.equal(f.log.at(-1), 'async');
  clock.t += 1001;
  assert.equal(reads.holding, false);
  await reads.read(f, buf, 0, 4, 0); // tried synchronously: slow again, so held again at once
  assert.equal(f.log.at(-1), 'sync');
  assert.equal(reads.holding, true);
  assert.deepEqual(reads.counts, { sync: firstHold + 2, async: 1, slow: firstHold + 2, holds: 2, yields: 0 });
});

test('synchronous reads hand the loop back after sliceMs without a turn: the next reads go to the thread pool until it turns', async () => {
  const clock = { t: 0 };
  const reads = new PageReads({ sync: true, sliceMs: 4, now: () => clock.t });
  const f = fakeFile(clock, Array.from({ length: 100 }, () => 0.1)); // 0.1 ms each: 40 fit a slice
  let timerRan = 0;
  const timer = setImmediate(() => timerRan++);
  for (let i = 0; i < 100; i++) await reads.read(f, Buffer.alloc(4), 0, 4, 0);
  clearImmediate(timer);
  // About 40 synchronous reads (4 ms), then a pool read, during which the loop turns: a new slice.
  const k = f.log.indexOf('async');
  assert.ok(k >= 39 && k <= 41 && f.log.slice(0, k).every((x) => x === 'sync'), f.log.join(','));
  assert.equal(f.log[k + 1], 'sync', 'the loop turned during the pool read: a new slice');
  assert.ok(reads.counts.yields >= 2 && reads.counts.sync + reads.counts.async === 100, JSON.stringify(reads.counts));
  assert.equal(timerRan, 1, 'a callback waiting for the loop ran while the reads went on');
});

test('with sync off, or a file without readSync, every read goes to the thread pool', async () => {
  const clock = { t: 0 };
  const off = new PageReads({ sync: false, sliceMs: Infinity, now: () => clock.t });
  const f = fakeFile(clock, []);
  await off.read(f, Buffer.alloc(4), 0, 4, 0);
  const on = new PageReads({ sync: true, sliceMs: Infinity, now: () => clock.t });
  const noSync: FileLike = { ...fakeFile(clock, []), readSync: undefined };
  await on.read(noSync, Buffer.alloc(4), 0, 4, 0);
  assert.deepEqual(f.log, ['async']);
  assert.deepEqual([off.counts, on.counts], [{ sync: 0, async: 1, slow: 0, holds: 0, yields: 0 }, { sync: 0, async: 1, slow: 0, holds: 0, yields: 0 }]);
});

test('the real file layer reads synchronously what it reads asynchronously, short at the end of the file', async () => {
  const file = path.join(dir, 'f');
  await fs.writeFile(file, Buffer.from('0123456789'));
  const fh = await realFileLayer.open(file, 'r');
  try {
    const a = Buffer.alloc(6);
    const b = Buffer.alloc(6);
    assert.equal(fh.readSync!(a, 0, 6, 6), 4);
    assert.equal(await fh.read(b, 0, 6, 6), 4);
    assert.deepEqual(a, b);
  } finally {
    await fh.close();
  }
});

test('a page memory reads missed pages synchronously by default, through the thread pool with syncPageReads false', async () => {
  for (const syncPageReads of [true, false]) {
    const sub = path.join(dir, String(syncPageReads));
    const pm = await openPm(sub, { syncPageReads, pageCacheBytesMax: 1 << 20 });
    const ps = await pm.createPartition(path.join(sub, 'p.bin'), ID);
    for (let i = 0; i < 2000; i++) {
      await put(pm, ps, `k${i}`, i + 1, Buffer.alloc(900, i & 0xff), 0);
      if (i % 200 === 199) await checkpoint(pm); // dirty pages stay within the small cache
    }
    const readsBefore = pm.stats.pageReads;
    // 2000 × ~1 KiB over a 1 MiB cache: reading every key back misses pages.
    for (let i = 0; i < 2000; i++) assert.equal((await ps.get(`k${i}`))?.value[0], i & 0xff);
    const s = pm.stats;
    assert.ok(s.pageReads > readsBefore, 'pages were read from the file');
    if (syncPageReads) assert.ok(s.pageReadsSync > 0 && s.pageReadsSync <= s.pageReads, JSON.stringify(s));
    else assert.equal(s.pageReadsSync, 0);
    await pm.close();
  }
});
