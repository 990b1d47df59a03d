import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { PageMemory, PartitionStore } from '../../../src/pagememory/page-memory.js';
import { crc32 } from '../../../src/util/crc32.js';
import { checkpoint, deferred, HookFileLayer, ID, makeTmpDir, openPm, put, removeDir, snapshot, tick, valueOf } from './pm-helpers.js';

let dir: string | undefined;
afterEach(async () => {
  await removeDir(dir);
  dir = undefined;
});

/** A committed partition file at `file` with `n` entries (one overflow value), closed. */
async function makeFile(pm: PageMemory, file: string, n: number, id = ID): Promise<Map<string, unknown>> {
  const ps = await pm.createPartition(file, id);
  for (let c = 1; c <= n; c++) await put(pm, ps, `k${c}`, c, valueOf(c === 7 ? 30000 : 120, c));
  await checkpoint(pm);
  const snap = await snapshot(ps);
  await pm.destroyPartition(ps, { deleteFile: false });
  return snap;
}

const codeIs = (code: string) => (e: { code?: string }) => e.code === code;

test('restorePartition swaps a validated file in over the old one and opens it', async () => {
  dir = await makeTmpDir();
  const pm = await openPm(dir);
  try {
    const dest = path.join(dir, 'part.ptn');
    const incoming = path.join(dir, 'incoming.tmp');
    const expected = await makeFile(pm, incoming, 300);
    const old = await pm.createPartition(dest, ID);
    await put(pm, old, 'old-key', 1, Buffer.from('old'));
    await checkpoint(pm);
    await pm.destroyPartition(old, { deleteFile: false });
    const ps = await pm.restorePartition(incoming, dest, ID, 'full');
    assert.deepEqual(await snapshot(ps), expected);
    assert.equal(ps.counter.lwm, 300);
    assert.equal(await fsp.access(incoming).then(() => true, () => false), false, 'the source was renamed');
    await put(pm, ps, 'k1', 301, Buffer.from('new'));
    await checkpoint(pm);
    assert.equal((await ps.get('k1'))!.value.toString(), 'new');
  } finally {
    await pm.close();
  }
});

test('restorePartition refuses a file of another cluster, cache, partition or version and leaves it untouched', async () => {
  dir = await makeTmpDir();
  const pm = await openPm(dir);
  try {
    const dest = path.join(dir, 'part.ptn');
    const src = path.join(dir, 'incoming.tmp');
    await makeFile(pm, src, 50);
    const original = await fsp.readFile(src);
    const cases: Array<[typeof ID, string]> = [
      [{ ...ID, clusterId: 'other' }, 'ERR_FILE_WRONG_CLUSTER'],
      [{ ...ID, cacheId: 99 }, 'ERR_FILE_WRONG_PARTITION'],
      [{ ...ID, partition: 0 }, 'ERR_FILE_WRONG_PARTITION'],
    ];
    for (const [id, code] of cases) {
      await assert.rejects(pm.restorePartition(src, dest, id), codeIs(code));
      assert.ok((await fsp.readFile(src)).equals(original), `${code}: source untouched`);
      assert.equal(await fsp.access(dest).then(() => true, () => false), false, `${code}: nothing at the destination`);
    }
    const future = Buffer.from(original);
    future.writeUInt16LE(2, 20);
    future.writeUInt32LE(crc32(future.subarray(4, 4096)), 0);
    await fsp.writeFile(src, future);
    await assert.rejects(pm.restorePartition(src, dest, ID), codeIs('ERR_FILE_VERSION'));
    assert.ok((await fsp.readFile(src)).equals(future));
  } finally {
    await pm.close();
  }
});

test('full verification finds a corrupt page in use; meta verification reads only the meta page', async () => {
  dir = await makeTmpDir();
  const pm = await openPm(dir);
  try {
    const src = path.join(dir, 'incoming.tmp');
    await makeFile(pm, src, 300);
    const bytes = await fsp.readFile(src);
    const victim = Math.floor(bytes.length / 4096 / 2);
    bytes[victim * 4096 + 2000]! ^= 0xff;
    await fsp.writeFile(src, bytes);
    await assert.rejects(pm.restorePartition(src, path.join(dir, 'a.ptn'), ID, 'full'), (e: { code?: string; details?: { pageIndex?: number } }) => {
      return e.code === 'ERR_PAGE_CORRUPT' && e.details?.pageIndex === victim;
    });
    assert.ok((await fsp.readFile(src)).equals(bytes), 'source untouched');
    const reads = pm.stats.pageReads;
    const ps = await pm.restorePartition(src, path.join(dir, 'b.ptn'), ID, 'meta');
    assert.equal(pm.stats.pageReads - reads, 2, 'the meta page of the source, then of the destination');
    await pm.destroyPartition(ps, { deleteFile: true });
  } finally {
    await pm.close();
  }
});

test('full verification ignores whatever free pages hold', async () => {
  dir = await makeTmpDir();
  const pm = await openPm(dir);
  const src = path.join(dir, 'incoming.tmp');
  try {
    const ps = await pm.createPartition(src, ID);
    await put(pm, ps, 'big', 1, valueOf(100000, 1));
    await put(pm, ps, 'small', 2, valueOf(10, 2));
    await checkpoint(pm);
    await put(pm, ps, 'big', 3, Buffer.from('now small'));
    await checkpoint(pm); // the chain is pending-free in this state…
    await put(pm, ps, 'other', 4, Buffer.from('x'));
    await checkpoint(pm); // …and listed as free in this one
    assert.ok(ps.spaceStats().freePages >= 20);
    await pm.destroyPartition(ps, { deleteFile: false });
    const bytes = await fsp.readFile(src);
    // Scribble over every page that is not the meta page, a leaf or a free-list page.
    let scribbled = 0;
    for (let i = 1; i < bytes.length / 4096; i++) {
      if (bytes[i * 4096 + 4] === 4 /* OVERFLOW */) {
        bytes.fill(0x5a, i * 4096, (i + 1) * 4096);
        scribbled++;
      }
    }
    assert.ok(scribbled >= 20);
    await fsp.writeFile(src, bytes);
    const restored = await pm.restorePartition(src, path.join(dir, 'p.ptn'), ID, 'full');
    assert.equal((await restored.get('big'))!.value.toString(), 'now small');
  } finally {
    await pm.close();
  }
});

test('restoring over an open partition is a programmer error', async () => {
  dir = await makeTmpDir();
  const pm = await openPm(dir);
  try {
    const src = path.join(dir, 'incoming.tmp');
    await makeFile(pm, src, 5);
    const dest = path.join(dir, 'p.ptn');
    await pm.createPartition(dest, ID);
    await assert.rejects(pm.restorePartition(src, dest, ID), /destroy the open partition/);
  } finally {
    await pm.close();
  }
});

test('destroyPartition discards dirty pages, frees the cache and deletes the file when asked', async () => {
  dir = await makeTmpDir();
  const pm = await openPm(dir);
  try {
    const file = path.join(dir, 'p.ptn');
    const ps = await pm.createPartition(file, ID);
    for (let c = 1; c <= 200; c++) await put(pm, ps, `k${c}`, c, valueOf(500, c));
    assert.ok(pm.stats.dirtyBytes > 0);
    await pm.destroyPartition(ps, { deleteFile: false });
    assert.equal(pm.stats.dirtyBytes, 0);
    assert.equal(pm.stats.cachedBytes, 0);
    const again = await pm.openPartition(file, ID);
    assert.equal(again.entryCount, 0, 'nothing of the discarded changes reached the file');
    await pm.destroyPartition(again, { deleteFile: true });
    assert.equal(await fsp.access(file).then(() => true, () => false), false);
    assert.equal((await checkpoint(pm)).files, 0);
  } finally {
    await pm.close();
  }
});

/** Two partitions with committed state and new changes; a page memory over a hook layer. */
async function twoPartitions(): Promise<{ pm: PageMemory; fl: HookFileLayer; a: PartitionStore; b: PartitionStore; aOld: Map<string, unknown>; aNew: Map<string, unknown>; bNew: Map<string, unknown> }> {
  dir = await makeTmpDir();
  const fl = new HookFileLayer();
  const pm = await openPm(dir, {}, { fileLayer: fl });
  const a = await pm.createPartition(path.join(dir, 'a.ptn'), ID);
  const b = await pm.createPartition(path.join(dir, 'b.ptn'), { ...ID, partition: 4 });
  for (let c = 1; c <= 100; c++) {
    await put(pm, a, `a${c}`, c, valueOf(300, c));
    await put(pm, b, `b${c}`, c, valueOf(300, c));
  }
  await checkpoint(pm);
  const aOld = await snapshot(a);
  for (let c = 101; c <= 200; c++) {
    await put(pm, a, `a${c}`, c, valueOf(300, c));
    await put(pm, b, `b${c}`, c, valueOf(300, c));
  }
  return { pm, fl, a, b, aOld, aNew: await snapshot(a), bNew: await snapshot(b) };
}

test('a partition destroyed while the checkpoint writes fresh pages is left out; the others commit', async () => {
  const { pm, fl, a, b, aOld, bNew } = await twoPartitions();
  try {
    const paused = deferred();
    const reached = deferred();
    fl.beforeWrite = async (p, pos) => {
      if (p.endsWith('a.ptn') && pos > 0) {
        fl.beforeWrite = undefined;
        reached.resolve();
        await paused.promise;
      }
    };
    const { checkpoint: ck } = await pm.beginCheckpoint(() => undefined);
    const writing = ck.write();
    await reached.promise;
    let destroyed = false;
    const destroying = pm.destroyPartition(a, { deleteFile: false }).then(() => (destroyed = true));
    await tick();
    assert.equal(destroyed, false, 'destroy waits for the write in progress on its file');
    paused.resolve();
    await destroying;
    const stats = await writing;
    assert.equal(stats.files, 1);
    assert.deepEqual(await snapshot(b), bNew);
    assert.equal(b.committed().entryCount, 200);
    const reopened = await pm.openPartition(path.join(dir!, 'a.ptn'), ID);
    assert.deepEqual(await snapshot(reopened), aOld, 'the destroyed file still holds its committed state');
  } finally {
    await pm.close();
  }
});

test('a partition destroyed after the journal started waits for the checkpoint, which completes it', async () => {
  const { pm, fl, a, aNew } = await twoPartitions();
  try {
    const paused = deferred();
    const reached = deferred();
    fl.beforeWrite = async (p, pos) => {
      if (p.endsWith('a.ptn') && pos === 0) {
        // position 0 is the meta page: the first overwrite, after the journal is durable
        fl.beforeWrite = undefined;
        reached.resolve();
        await paused.promise;
      }
    };
    const { checkpoint: ck } = await pm.beginCheckpoint(() => undefined);
    const writing = ck.write();
    await reached.promise;
    let destroyed = false;
    const destroying = pm.destroyPartition(a, { deleteFile: false }).then(() => (destroyed = true));
    await tick();
    assert.equal(destroyed, false);
    paused.resolve();
    assert.equal((await writing).files, 2);
    await destroying;
    const reopened = await pm.openPartition(path.join(dir!, 'a.ptn'), ID);
    assert.deepEqual(await snapshot(reopened), aNew);
  } finally {
    await pm.close();
  }
});
