import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import type { PageMemory, PartitionStore } from '../../../src/pagememory/page-memory.js';
import { checkpoint, collect, ID, makeTmpDir, openPm, put, randInt, remove, removeDir, rng, snapshot, valueOf } from './pm-helpers.js';

let dir: string | undefined;
afterEach(async () => {
  await removeDir(dir);
  dir = undefined;
});

test('concurrent applies on several partitions, a tiny cache and checkpoints running alongside keep every model', async () => {
  dir = await makeTmpDir();
  const seed = 8080;
  const budget = 192 << 10;
  let pm!: PageMemory;
  let running: Promise<unknown> | undefined;
  pm = await openPm(dir, { pageCacheBytesMax: budget }, { onDirtyPressure: () => (running ??= checkpoint(pm).finally(() => (running = undefined))) });
  const stores: PartitionStore[] = [];
  const models: Array<Map<string, { counter: number; tombstone: boolean; value: string }>> = [];
  try {
    for (let p = 0; p < 4; p++) {
      stores.push(await pm.createPartition(path.join(dir, `p${p}.ptn`), { ...ID, partition: p }));
      models.push(new Map());
    }
    const counters = [0, 0, 0, 0];
    // 8 writers, two per partition, interleaving freely; counters are taken in program order.
    const writer = async (w: number) => {
      const r = rng(seed + w);
      const p = w % 4;
      for (let i = 0; i < 500; i++) {
        const key = `w${w}-${randInt(r, 0, 150)}`;
        const c = ++counters[p]!;
        if (r() < 0.1) {
          await remove(pm, stores[p]!, key, c);
          models[p]!.set(key, { counter: c, tombstone: true, value: '' });
        } else {
          const value = valueOf(r() < 0.05 ? randInt(r, 5000, 15000) : randInt(r, 10, 700), c);
          await put(pm, stores[p]!, key, c, value);
          models[p]!.set(key, { counter: c, tombstone: false, value: value.toString('hex') });
        }
      }
    };
    // Readers scan while writers run.
    const reader = async () => {
      for (let i = 0; i < 10; i++) for (const ps of stores) await collect(ps.scan({ includeTombstones: true }));
    };
    await Promise.all([...Array.from({ length: 8 }, (_, w) => writer(w)), reader()]);
    await running;
    assert.ok(pm.stats.evictions > 0 && pm.stats.checkpoints > 0);
    for (let p = 0; p < 4; p++) {
      assert.deepEqual(await snapshot(stores[p]!), new Map([...models[p]!].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))), `seed ${seed}: partition ${p}`);
      assert.equal(stores[p]!.counter.lwm, counters[p]);
    }
    await checkpoint(pm);
  } finally {
    await running;
    await pm.close();
  }
  const pm2 = await openPm(dir);
  try {
    for (let p = 0; p < 4; p++) {
      const ps = await pm2.openPartition(path.join(dir, `p${p}.ptn`), { ...ID, partition: p });
      assert.equal((await snapshot(ps)).size, models[p]!.size);
    }
  } finally {
    await pm2.close();
  }
});
