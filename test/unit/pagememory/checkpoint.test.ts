import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { PageMemory } from '../../../src/pagememory/page-memory.js';
import { checkpoint, collect, eventually, ID, makeTmpDir, openPm, put, remove, removeDir, snapshot, storageConfig, tick, valueOf } from './pm-helpers.js';

let dir: string | undefined;
afterEach(async () => {
  await removeDir(dir);
  dir = undefined;
});

test('a checkpoint writes exactly the captured state while mutations go on (copy-on-write)', async () => {
  dir = await makeTmpDir();
  const pm = await openPm(dir);
  const file = path.join(dir, 'p.ptn');
  try {
    const ps = await pm.createPartition(file, ID);
    let c = 0;
    for (let i = 0; i < 400; i++) await put(pm, ps, `k${i}`, ++c, valueOf(i % 10 === 0 ? 9000 : 300, c));
    await checkpoint(pm);
    for (let i = 0; i < 400; i += 3) await put(pm, ps, `k${i}`, ++c, valueOf(i % 10 === 0 ? 7000 : 350, c));
    const atCapture = await snapshot(ps);
    const lwmAtCapture = ps.counter.lwm;
    const { checkpoint: ck } = await pm.beginCheckpoint(() => undefined);
    // Change captured pages (leaves, overflow chains), add pages, remove entries, before the write.
    for (let i = 0; i < 400; i += 2) await put(pm, ps, `k${i}`, ++c, valueOf(i % 10 === 0 ? 12000 : 500, c));
    for (let i = 1; i < 400; i += 7) await remove(pm, ps, `k${i}`, ++c);
    for (let i = 400; i < 600; i++) await put(pm, ps, `k${i}`, ++c, valueOf(100, c));
    const live = await snapshot(ps);
    await ck.write();
    const copyDir = path.join(dir, 'copy');
    await fsp.mkdir(copyDir);
    await fsp.copyFile(file, path.join(copyDir, 'p.ptn'));
    const pm2 = new PageMemory({ storage: storageConfig(), journalDir: path.join(copyDir, 'checkpoint') });
    await pm2.open();
    try {
      const copy = await pm2.openPartition(path.join(copyDir, 'p.ptn'), ID);
      assert.deepEqual(await snapshot(copy), atCapture);
      assert.equal(copy.counter.lwm, lwmAtCapture);
    } finally {
      await pm2.close();
    }
    assert.deepEqual(await snapshot(ps), live, 'the live state is untouched by the write');
  } finally {
    await pm.close();
  }
});

test('the capture waits for mutations in flight and holds new ones until it is done', async () => {
  dir = await makeTmpDir();
  const pm = await openPm(dir);
  try {
    await pm.enterMutation();
    let captured = false;
    const begun = pm.beginCheckpoint(() => {
      captured = true;
      return 42;
    });
    await tick();
    assert.equal(captured, false, 'no capture while a mutation is in flight');
    let entered = false;
    const second = pm.enterMutation().then(() => (entered = true));
    await tick();
    assert.equal(entered, false, 'the gate is closed');
    pm.exitMutation();
    const { captured: v, checkpoint: ck } = await begun;
    assert.equal(v, 42);
    await second;
    assert.equal(entered, true);
    pm.exitMutation();
    await ck.write();
  } finally {
    await pm.close();
  }
});

test('a second checkpoint waits until the first has finished writing', async () => {
  dir = await makeTmpDir();
  const pm = await openPm(dir);
  try {
    const ps = await pm.createPartition(path.join(dir, 'p.ptn'), ID);
    await put(pm, ps, 'a', 1, Buffer.from('x'));
    const first = await pm.beginCheckpoint(() => 1);
    let secondBegun = false;
    const second = pm.beginCheckpoint(() => 2).then((r) => {
      secondBegun = true;
      return r;
    });
    await put(pm, ps, 'b', 2, Buffer.from('y'));
    await tick();
    assert.equal(secondBegun, false);
    await first.checkpoint.write();
    const s = await second;
    assert.equal(s.captured, 2);
    assert.ok(s.checkpoint.checkpointId > first.checkpoint.checkpointId);
    assert.equal((await s.checkpoint.write()).files, 1);
    assert.equal(pm.stats.checkpoints, 2);
  } finally {
    await pm.close();
  }
});

test('only pages live in the committed state go through the journal', async () => {
  dir = await makeTmpDir();
  const pm = await openPm(dir);
  try {
    const ps = await pm.createPartition(path.join(dir, 'p.ptn'), ID);
    for (let c = 1; c <= 300; c++) await put(pm, ps, `k${String(c).padStart(4, '0')}`, c, valueOf(200, c));
    const first = await checkpoint(pm);
    assert.equal(first.journalPages, 1, 'a new file: only the meta page is overwritten');
    assert.ok(first.pages > 10);
    await put(pm, ps, 'k0001', 301, valueOf(200, 301));
    const second = await checkpoint(pm);
    assert.deepEqual(second, { pages: 2, bytes: 8192, journalPages: 2, files: 1 }, 'the meta page and one leaf');
    const third = await checkpoint(pm);
    assert.deepEqual(third, { pages: 0, bytes: 0, journalPages: 0, files: 0 }, 'nothing changed, nothing written');
  } finally {
    await pm.close();
  }
});

test('dirty pressure calls back, repeats while ignored, and waitForRoom waits for a checkpoint', async () => {
  dir = await makeTmpDir();
  let calls = 0;
  const pm = await openPm(dir, { pageCacheBytesMax: 1 << 20, checkpointDirtyRatio: 0.5 }, { onDirtyPressure: () => calls++ });
  try {
    const ps = await pm.createPartition(path.join(dir, 'p.ptn'), ID);
    let c = 0;
    while (pm.stats.dirtyBytes < 0.5 * (1 << 20)) {
      assert.equal(calls, 0);
      await put(pm, ps, `k${++c}`, c, valueOf(3000, c));
    }
    await tick();
    assert.equal(calls, 1);
    assert.ok(await eventually(() => calls >= 2), 'signalled again while nobody checkpoints');
    while (pm.stats.dirtyBytes < 1 << 20) {
      await pm.enterMutation();
      await ps.apply({ key: `k${++c}`, counter: c, op: 'put', value: valueOf(3000, c) });
      pm.exitMutation();
    }
    let room = false;
    const waiting = pm.waitForRoom().then(() => (room = true));
    await tick();
    assert.equal(room, false);
    await checkpoint(pm);
    await waiting;
    assert.equal(room, true);
    assert.ok(pm.stats.dirtyBytes < 1 << 20);
  } finally {
    await pm.close();
  }
});

test('write listeners run before every overwrite of an existing page, with its on-disk image', async () => {
  dir = await makeTmpDir();
  const pm = await openPm(dir);
  const file = path.join(dir, 'p.ptn');
  try {
    const ps = await pm.createPartition(file, ID);
    let c = 0;
    for (let i = 0; i < 200; i++) await put(pm, ps, `k${String(i).padStart(4, '0')}`, ++c, valueOf(i === 50 ? 20000 : 100, c));
    await checkpoint(pm);
    const calls: number[] = [];
    let before = await fsp.readFile(file);
    const off = ps.addWriteListener(async (index, readCurrentImage) => {
      const img = await readCurrentImage();
      assert.ok(img.equals(before.subarray(index * 4096, (index + 1) * 4096)), `page ${index}: the image is the one on disk before the write`);
      calls.push(index);
    });
    // Overwrites (a leaf and the meta page), a freed overflow chain reused (fresh but existing pages),
    // and appended pages (new: no call).
    await put(pm, ps, 'k0001', ++c, valueOf(100, c));
    await remove(pm, ps, 'k0050', ++c);
    await checkpoint(pm);
    const mid = await fsp.readFile(file);
    const changed = (a: Buffer, b: Buffer) => {
      const out: number[] = [];
      for (let i = 0; i < Math.max(a.length, b.length) / 4096; i++) {
        if (i * 4096 < a.length && !a.subarray(i * 4096, (i + 1) * 4096).equals(b.subarray(i * 4096, (i + 1) * 4096))) out.push(i);
      }
      return out;
    };
    assert.deepEqual([...calls].sort((a, b) => a - b), changed(before, mid));
    calls.length = 0;
    before = mid;
    await put(pm, ps, 'zz-big', ++c, valueOf(20000, c)); // reuses the freed chain pages
    for (let i = 200; i < 400; i++) await put(pm, ps, `k${String(i).padStart(4, '0')}`, ++c, valueOf(100, c));
    await checkpoint(pm);
    const after = await fsp.readFile(file);
    assert.ok(after.length > before.length, 'the file grew');
    assert.deepEqual([...calls].sort((a, b) => a - b), changed(before, after));
    assert.ok(calls.length > 3, 'freed pages that were reused count as existing pages');
    off();
    calls.length = 0;
    await put(pm, ps, 'k0002', ++c, valueOf(100, c));
    await checkpoint(pm);
    assert.deepEqual(calls, [], 'a removed listener is not called');
    assert.equal((await collect(ps.scan())).length, 400);
  } finally {
    await pm.close();
  }
});
