import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { defaultConfig, type NodeConfig } from '../../../src/config.js';
import { Store, type Update } from '../../../src/store/store.js';
import { decodeValue, encodeValue } from '../../../src/store/value.js';
import { rng, tempDir } from '../../helpers/tmp.js';

function config(dataDir: string, overrides: Record<string, unknown> = {}): NodeConfig {
  return defaultConfig({ dataDir, storage: { pageCacheBytesMax: 8 * 1024 * 1024, checkpointIntervalMs: 3_600_000 }, ...overrides });
}

async function openStore(dataDir: string, overrides: Record<string, unknown> = {}): Promise<Store> {
  return Store.open({ config: config(dataDir, overrides), periodicCheckpoints: false });
}

test('put, get, remove and batch round trip JSON and byte values', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(dir);
  t.after(() => store.close());
  await store.createCache({ name: 'c', partitions: 8, backups: 0 });
  const a = await store.put('c', 'a', encodeValue({ x: 1 }));
  assert.ok(a.counter >= 1);
  await store.put('c', 'b', encodeValue(Buffer.from([1, 2, 3])));
  assert.deepEqual(decodeValue((await store.get('c', 'a'))!), { x: 1 });
  assert.deepEqual(decodeValue((await store.get('c', 'b'))!), Buffer.from([1, 2, 3]));
  await store.remove('c', 'a');
  assert.equal(await store.get('c', 'a'), undefined);
  const counters = await store.batch('c', [
    { op: 'put', key: 'x', value: encodeValue('1') },
    { op: 'put', key: 'y', value: encodeValue('2') },
    { op: 'remove', key: 'b' },
  ]);
  assert.equal(counters.length, 3);
  assert.equal(await store.get('c', 'b'), undefined);
  assert.equal(decodeValue((await store.get('c', 'y'))!), '2');
});

test('replaying an update twice or out of order is harmless (apply-if-newer)', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(dir);
  t.after(() => store.close());
  const def = await store.createCache({ name: 'c', partitions: 1, backups: 0 });
  const u = (counter: number, op: 'put' | 'remove', v = ''): Update => ({ cacheId: def.cacheId, partition: 0, counter, key: 'k', op, valueKind: 1, value: Buffer.from(JSON.stringify(v)) });
  assert.equal(await store.apply(u(2, 'put', 'two')), 'applied');
  assert.equal(await store.apply(u(2, 'put', 'two')), 'duplicate');
  assert.equal(await store.apply(u(1, 'put', 'one')), 'stale');
  assert.equal(decodeValue((await store.get('c', 'k'))!), 'two');
  assert.equal(await store.apply(u(4, 'remove')), 'applied');
  assert.equal(await store.apply(u(3, 'put', 'three')), 'stale', 'a tombstone keeps an older put out');
  assert.equal(await store.get('c', 'k'), undefined);
  const ps = store.partitionOrUndefined(def.cacheId, 0)!;
  assert.equal(ps.counter.lwm, 4);
});

test('replicas that applied the same updates in different orders have equal digests', async (t) => {
  const seed = 1234;
  const r = rng(seed);
  const updates: Update[] = [];
  for (let c = 1; c <= 300; c++) {
    const key = `k${Math.floor(r() * 40)}`;
    updates.push(r() < 0.2
      ? { cacheId: 1, partition: 0, counter: c, key, op: 'remove' }
      : { cacheId: 1, partition: 0, counter: c, key, op: 'put', valueKind: 0, value: Buffer.from(`v${c}`) });
  }
  const shuffled = [...updates].sort(() => r() - 0.5);
  const digests: string[] = [];
  for (const list of [updates, shuffled]) {
    const dir = await tempDir(t);
    const store = await openStore(dir);
    await store.createCache({ name: 'c', partitions: 1, backups: 0, cacheId: 1 });
    for (const u of list) await store.apply({ ...u });
    digests.push((await store.digest(1, 0)).digest);
    const keys: string[] = [];
    for await (const e of store.scan(1, 0)) keys.push(e.key);
    assert.deepEqual(keys, [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
    await store.close();
  }
  assert.equal(digests[0], digests[1], `seed ${seed}`);
});

test('a store reopened after a crash (no final checkpoint) recovers every write from the WAL', async (t) => {
  const dir = await tempDir(t);
  let store = await openStore(dir);
  await store.createCache({ name: 'c', partitions: 4, backups: 0 });
  for (let i = 0; i < 500; i++) await store.put('c', `key-${i}`, encodeValue({ i }));
  await store.checkpoint();
  for (let i = 500; i < 1000; i++) await store.put('c', `key-${i}`, encodeValue({ i }));
  for (let i = 0; i < 100; i++) await store.remove('c', `key-${i}`);
  await store.close({ checkpoint: false });
  store = await openStore(dir);
  t.after(() => store.close());
  assert.ok(store.recoveryStats.replayedRecords >= 600);
  for (let i = 0; i < 1000; i++) {
    const v = await store.get('c', `key-${i}`);
    if (i < 100) assert.equal(v, undefined);
    else assert.deepEqual(decodeValue(v!), { i });
  }
});

test('data larger than the page cache budget works and survives a reopen', async (t) => {
  const dir = await tempDir(t);
  const small = { storage: { pageCacheBytesMax: 1024 * 1024, checkpointIntervalMs: 3_600_000 } };
  let store = await openStore(dir, small);
  await store.createCache({ name: 'c', partitions: 2, backups: 0 });
  const value = (i: number) => Buffer.alloc(1000, i % 251);
  for (let i = 0; i < 5000; i++) await store.put('c', `k${i}`, encodeValue(value(i)));
  for (let i = 0; i < 5000; i += 97) assert.deepEqual((await store.get('c', `k${i}`))!.value, value(i));
  await store.close();
  store = await openStore(dir, small);
  t.after(() => store.close());
  for (let i = 0; i < 5000; i += 13) assert.deepEqual((await store.get('c', `k${i}`))!.value, value(i));
  assert.ok(store.stats().pageMemory.cachedBytes <= 1024 * 1024 * 1.5);
});

test('the secondary index answers queries and a partition part can be rebuilt from pages', async (t) => {
  const dir = await tempDir(t);
  let store = await openStore(dir);
  const def = await store.createCache({ name: 'people', partitions: 4, backups: 0, indexFields: ['city'] });
  for (let i = 0; i < 200; i++) await store.put('people', `p${i}`, encodeValue({ city: i % 3 === 0 ? 'Oslo' : 'Rome', i }));
  await store.remove('people', 'p0');
  const expected = Array.from({ length: 200 }, (_, i) => i).filter((i) => i % 3 === 0 && i !== 0).map((i) => `p${i}`).sort();
  assert.deepEqual(store.query('people', 'city', 'Oslo'), expected);
  const idx = store.indexesOf(def.cacheId).get('city')!;
  idx.suspend(1);
  assert.ok(store.query('people', 'city', 'Oslo').length < expected.length);
  await store.rebuildIndexes(def.cacheId, 1);
  assert.deepEqual(store.query('people', 'city', 'Oslo'), expected);
  assert.throws(() => store.query('people', 'age', 1), { code: 'ERR_INDEX_NOT_FOUND' });
  await store.close();
  store = await openStore(dir);
  t.after(() => store.close());
  assert.deepEqual(store.query('people', 'city', 'Oslo'), expected, 'indexes are rebuilt at open');
});

test('dropping a cache and destroying a partition remove their files, also after recovery', async (t) => {
  const dir = await tempDir(t);
  let store = await openStore(dir);
  const a = await store.createCache({ name: 'a', partitions: 2, backups: 0 });
  const b = await store.createCache({ name: 'b', partitions: 2, backups: 0 });
  for (let i = 0; i < 50; i++) {
    await store.put('a', `k${i}`, encodeValue(i));
    await store.put('b', `k${i}`, encodeValue(i));
  }
  await store.destroyPartition(b.cacheId, 0);
  await store.dropCache('a');
  await store.close({ checkpoint: false });
  store = await openStore(dir);
  t.after(() => store.close());
  assert.equal(store.hasCache('a'), false);
  await assert.rejects(fs.access(path.join(dir, 'caches', String(a.cacheId))));
  assert.equal(store.hasPartition(b.cacheId, 0), false);
  assert.equal(store.hasPartition(b.cacheId, 1), true);
});

test('oversized keys and values are refused with coded errors', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(dir, { storage: { keyBytesMax: 32, valueBytesMax: 1024, checkpointIntervalMs: 3_600_000 } });
  t.after(() => store.close());
  await store.createCache({ name: 'c', partitions: 1, backups: 0 });
  await assert.rejects(store.put('c', 'k'.repeat(33), encodeValue(1)), { code: 'ERR_KEY_TOO_LARGE' });
  await assert.rejects(store.put('c', 'k', encodeValue(Buffer.alloc(1025))), { code: 'ERR_VALUE_TOO_LARGE' });
  await assert.rejects(store.put('nope', 'k', encodeValue(1)), { code: 'ERR_CACHE_NOT_FOUND' });
  await assert.rejects(store.createCache({ name: 'c' }), { code: 'ERR_CACHE_EXISTS' });
});
