import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { checkpoint, ID, makeTmpDir, openPm, put, randInt, removeDir, rng, valueOf } from './pm-helpers.js';

let dir: string | undefined;
afterEach(async () => {
  await removeDir(dir);
  dir = undefined;
});

test('overwriting the same 10k keys 20 times keeps the file within twice the live data', async () => {
  dir = await makeTmpDir();
  const seed = 31337;
  const r = rng(seed);
  const pm = await openPm(dir, { pageCacheBytesMax: 64 << 20 });
  try {
    const ps = await pm.createPartition(path.join(dir, 'p.ptn'), ID);
    const keys = Array.from({ length: 10_000 }, (_, i) => `user:${(i * 7919) % 100_003}`);
    // Each key keeps its kind of value (2% large ones in overflow chains), but every round writes a
    // new value whose size varies by ±25%: in-place rewrites, growth (splits), shrinking (merges),
    // chains that grow and shrink.
    const base = new Map(keys.map((k) => [k, r() < 0.02 ? randInt(r, 3000, 9000) : randInt(r, 20, 600)]));
    const sizes = new Map<string, number>();
    let c = 0;
    const ratios: number[] = [];
    for (let round = 0; round < 20; round++) {
      for (const k of keys) {
        const n = Math.round(base.get(k)! * (0.75 + 0.5 * r()));
        sizes.set(k, n);
        await put(pm, ps, k, ++c, valueOf(n, c));
      }
      await checkpoint(pm);
      const live = keys.reduce((sum, k) => sum + Buffer.byteLength(k) + sizes.get(k)!, 0);
      ratios.push(ps.fileBytes() / live);
    }
    console.log(`file / live data after each round (seed ${seed}): ${ratios.map((x) => x.toFixed(2)).join(' ')}`);
    assert.ok(ratios[ratios.length - 1]! <= 2, `seed ${seed}: file is ${ratios[ratios.length - 1]!.toFixed(2)}× the live data`);
    assert.ok(Math.max(...ratios) <= 2, `seed ${seed}: never above 2×`);
    assert.equal(ps.entryCount, 10_000);
  } finally {
    await pm.close();
  }
});

test('opening a partition reads only its meta page, whatever its size', async () => {
  dir = await makeTmpDir();
  const readsPerOpen: number[] = [];
  for (const n of [10_000, 40_000]) {
    const file = path.join(dir, `p${n}.ptn`);
    const pm = await openPm(dir, { pageCacheBytesMax: 64 << 20 });
    try {
      const ps = await pm.createPartition(file, ID);
      for (let c = 1; c <= n; c++) await put(pm, ps, `key-${c}`, c, valueOf(c % 1000 === 0 ? 20000 : 40, c));
      for (let c = n + 1; c <= n + 100; c++) await put(pm, ps, `key-${c - n}`, c, valueOf(10, c)); // some free pages too
      await checkpoint(pm);
    } finally {
      await pm.close();
    }
    const pm2 = await openPm(dir);
    try {
      const before = pm2.stats.pageReads;
      const ps = await pm2.openPartition(file, ID);
      readsPerOpen.push(pm2.stats.pageReads - before);
      assert.equal(ps.entryCount, n);
      assert.equal(ps.counter.lwm, n + 100);
      assert.equal((await ps.get('key-5'))!.value.length, 10);
    } finally {
      await pm2.close();
    }
  }
  assert.deepEqual(readsPerOpen, [1, 1]);
});
