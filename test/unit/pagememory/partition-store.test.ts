import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { checkpoint, collect, ID, makeTmpDir, openPm, purge, put, remove, removeDir, valueOf } from './pm-helpers.js';

let dir: string | undefined;
afterEach(async () => {
  await removeDir(dir);
  dir = undefined;
});

async function setup(overrides = {}) {
  dir = await makeTmpDir();
  const pm = await openPm(dir, overrides);
  const file = path.join(dir, 'p.ptn');
  const ps = await pm.createPartition(file, ID);
  return { pm, ps, file };
}

test('apply-if-newer: applied, then duplicate for a known counter, stale for an older counter', async () => {
  const { pm, ps } = await setup();
  try {
    assert.equal(await put(pm, ps, 'a', 5, Buffer.from('five')), 'applied');
    assert.equal(await put(pm, ps, 'a', 5, Buffer.from('again')), 'duplicate');
    assert.equal(await put(pm, ps, 'a', 3, Buffer.from('three')), 'stale');
    assert.ok(ps.counter.has(3), 'a stale update still counts as applied');
    assert.equal(await put(pm, ps, 'a', 3, Buffer.from('three')), 'duplicate');
    assert.deepEqual(await ps.get('a'), { key: 'a', counter: 5, tombstone: false, valueKind: 1, value: Buffer.from('five') });
    assert.equal(await put(pm, ps, 'a', 8, Buffer.from('eight'), 4), 'applied');
    assert.deepEqual(await ps.get('a'), { key: 'a', counter: 8, tombstone: false, valueKind: 4, value: Buffer.from('eight') });
    assert.deepEqual(ps.counter.gaps(), [[3, 3], [5, 5], [8, 8]]);
    assert.equal(ps.entryCount, 1);
  } finally {
    await pm.close();
  }
});

test('remove writes a tombstone that get returns and that rejects older puts', async () => {
  const { pm, ps } = await setup();
  try {
    await put(pm, ps, 'k', 1, Buffer.from('v'));
    assert.equal(await remove(pm, ps, 'k', 4), 'applied');
    assert.deepEqual(await ps.get('k'), { key: 'k', counter: 4, tombstone: true, valueKind: 0, value: Buffer.alloc(0) });
    assert.equal(ps.entryCount, 0);
    assert.equal(await put(pm, ps, 'k', 3, Buffer.from('old')), 'stale');
    assert.equal(await remove(pm, ps, 'never-written', 5), 'applied');
    assert.equal((await ps.get('never-written'))?.tombstone, true);
    assert.equal(await put(pm, ps, 'k', 6, Buffer.from('new')), 'applied');
    assert.equal(ps.entryCount, 1);
    assert.deepEqual((await collect(ps.scan())).map((e) => e.key), ['k']);
    assert.deepEqual((await collect(ps.scan({ includeTombstones: true }))).map((e) => e.key), ['k', 'never-written']);
  } finally {
    await pm.close();
  }
});

test('a counter-gap overflow changes neither the tree nor the counter', async () => {
  const { pm, ps } = await setup({ counterGapsMax: 2 });
  try {
    await put(pm, ps, 'a', 10, Buffer.from('x'));
    await put(pm, ps, 'b', 20, Buffer.from('y'));
    await assert.rejects(put(pm, ps, 'c', 30, Buffer.from('z')), (e: { code?: string }) => e.code === 'ERR_COUNTER_GAPS_OVERFLOW');
    await assert.rejects(put(pm, ps, 'a', 30, Buffer.from('z')), (e: { code?: string }) => e.code === 'ERR_COUNTER_GAPS_OVERFLOW');
    assert.equal(await ps.get('c'), undefined);
    assert.equal((await ps.get('a'))!.counter, 10);
    assert.deepEqual(ps.counter.gaps(), [[10, 10], [20, 20]]);
    assert.equal(ps.entryCount, 2);
  } finally {
    await pm.close();
  }
});

test('oversized keys and values are refused with coded errors before anything else', async () => {
  const { pm, ps } = await setup({ keyBytesMax: 64, valueBytesMax: 1000 });
  try {
    await put(pm, ps, 'a', 1, Buffer.from('x'));
    await assert.rejects(put(pm, ps, 'é'.repeat(33), 2, Buffer.from('x')), (e: { code?: string }) => e.code === 'ERR_KEY_TOO_LARGE');
    await assert.rejects(put(pm, ps, 'a', 1, Buffer.alloc(1001)), (e: { code?: string }) => e.code === 'ERR_VALUE_TOO_LARGE');
    assert.equal(await put(pm, ps, 'k'.repeat(64), 3, Buffer.alloc(1000)), 'applied');
    assert.ok(!ps.counter.has(2));
  } finally {
    await pm.close();
  }
});

test('apply outside the mutation gate is a programmer error', async () => {
  const { pm, ps } = await setup();
  try {
    await assert.rejects(ps.apply({ key: 'a', counter: 1, op: 'put', value: Buffer.from('x') }), /mutation gate/);
  } finally {
    await pm.close();
  }
});

test('purgeTombstones removes tombstones up to the counter, keeps newer ones and live entries', async () => {
  const { pm, ps } = await setup();
  try {
    for (let c = 1; c <= 30; c++) await put(pm, ps, `k${c}`, c, Buffer.from(`v${c}`));
    for (let c = 31; c <= 40; c++) await remove(pm, ps, `k${c - 30}`, c);
    assert.equal(ps.tombstoneCount, 10);
    assert.equal(await purge(pm, ps, 35), 5);
    assert.equal(ps.tombstoneCount, 5);
    for (let i = 1; i <= 5; i++) assert.equal(await ps.get(`k${i}`), undefined);
    for (let i = 6; i <= 10; i++) assert.equal((await ps.get(`k${i}`))?.tombstone, true);
    assert.equal(ps.entryCount, 20);
    assert.equal(await purge(pm, ps, 35), 0);
    assert.equal(await purge(pm, ps, 40), 5);
    assert.equal((await collect(ps.scan({ includeTombstones: true }))).length, 20);
  } finally {
    await pm.close();
  }
});

test('after a reopen, purgeTombstones finds the tombstones the file holds', async () => {
  const { pm, ps, file } = await setup();
  try {
    for (let c = 1; c <= 600; c++) await put(pm, ps, `k${c}`, c, valueOf(100, c));
    for (let c = 601; c <= 700; c++) await remove(pm, ps, `k${(c - 600) * 5}`, c);
    await checkpoint(pm);
  } finally {
    await pm.close();
  }
  const pm2 = await openPm(dir!);
  try {
    const ps2 = await pm2.openPartition(file, ID);
    assert.equal(ps2.tombstoneCount, 100);
    await remove(pm2, ps2, 'k1', 701);
    assert.equal(await purge(pm2, ps2, 650), 50);
    assert.equal(ps2.tombstoneCount, 51);
    assert.equal(await purge(pm2, ps2, 701), 51);
    assert.equal((await collect(ps2.scan({ includeTombstones: true }))).length, 499);
    assert.equal(ps2.entryCount, 499);
  } finally {
    await pm2.close();
  }
});

test('a scan keeps key order without repeats while mutations go on between batches', async () => {
  const { pm, ps } = await setup();
  try {
    let c = 0;
    for (let i = 0; i < 2000; i += 2) await put(pm, ps, `k${String(i).padStart(5, '0')}`, ++c, valueOf(50, i));
    const seen: string[] = [];
    let i = 1;
    for await (const e of ps.scan()) {
      seen.push(e.key);
      // Insert odd keys behind and ahead of the cursor while the scan is under way.
      if (i < 2000) await put(pm, ps, `k${String(i).padStart(5, '0')}`, ++c, valueOf(50, i));
      i += 2;
    }
    const sorted = [...seen].sort();
    assert.deepEqual(seen, sorted);
    assert.equal(new Set(seen).size, seen.length);
    for (let k = 0; k < 2000; k += 2) assert.ok(seen.includes(`k${String(k).padStart(5, '0')}`), `key ${k}, present from the start, is seen`);
  } finally {
    await pm.close();
  }
});

test('committed() changes only when a checkpoint completes', async () => {
  const { pm, ps } = await setup();
  try {
    assert.deepEqual(ps.committed(), { fileBytes: 4096, counterLwm: 0, counterHwm: 0, entryCount: 0, checkpointId: 0 });
    for (let c = 1; c <= 100; c++) await put(pm, ps, `k${c}`, c, valueOf(200, c));
    await put(pm, ps, 'gap', 102, Buffer.from('x'));
    assert.equal(ps.committed().entryCount, 0);
    await checkpoint(pm);
    const after = ps.committed();
    assert.equal(after.entryCount, 101);
    assert.equal(after.counterLwm, 100);
    assert.equal(after.counterHwm, 102);
    assert.equal(after.fileBytes, ps.fileBytes());
    assert.ok(after.checkpointId >= 1);
  } finally {
    await pm.close();
  }
});

test('a destroyed partition refuses operations with ERR_CLOSED', async () => {
  const { pm, ps } = await setup();
  try {
    await put(pm, ps, 'a', 1, Buffer.from('x'));
    await pm.destroyPartition(ps, { deleteFile: true });
    await assert.rejects(ps.get('a'), (e: { code?: string }) => e.code === 'ERR_CLOSED');
    await assert.rejects(put(pm, ps, 'b', 2, Buffer.from('y')), (e: { code?: string }) => e.code === 'ERR_CLOSED');
  } finally {
    await pm.close();
  }
});
