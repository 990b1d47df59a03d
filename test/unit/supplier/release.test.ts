// Everything a transfer holds is freed on release, idle timeout, cache drop, lost ownership and
// close: the page-write listener, the delta file, the WAL reservation (segments deletable again),
// the send slot.
import test from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { ErrorCode } from '../../../src/errors.js';
import { Supplier } from '../../../src/supplier/supplier.js';
import { type FileLayer, realFileLayer } from '../../../src/util/file-layer.js';
import { CACHE_ID, type Fixture, makeFixture, openSnapshot, pullChunk, waitUntil } from './helpers.js';

async function write(f: Fixture, n: number, from = 0, valueBytes = 400): Promise<void> {
  for (let i = from; i < from + n; i++) {
    await f.store.apply({ cacheId: CACHE_ID, partition: 0, counter: 0, key: `k${i % 700}`, op: 'put', valueKind: 0, value: Buffer.alloc(valueBytes, 97 + (i % 26)) }, { assign: true });
  }
}

const tmpFiles = (f: Fixture) => fs.readdir(path.join(f.dir, 'tmp', 'supplier'));

test('release frees the reservation, the delta file, the listener and the slot', async (t) => {
  const f = await makeFixture(t);
  await write(f, 1500);
  const open = await openSnapshot(f, 'rel');
  assert.equal(f.store.nodeWal.stats().reservations, 1);
  assert.equal(f.supplier.slots.running, 1);
  await write(f, 1500, 1500);
  await f.store.checkpoint('test');
  const saved = f.supplier.counters.deltaPages;
  assert.ok(saved > 0, 'pages were saved to the delta');
  assert.equal(f.supplier.list()[0]!.deltaPages, saved);
  assert.equal((await tmpFiles(f)).length, 1);
  assert.deepEqual(await f.call('snapshotRelease', { transferId: 'rel', reason: 'done' }), {});
  assert.equal(f.store.nodeWal.stats().reservations, 0);
  assert.deepEqual(await tmpFiles(f), []);
  assert.equal(f.supplier.slots.running, 0);
  assert.deepEqual(f.supplier.list(), []);
  await write(f, 1500, 3000);
  await f.store.checkpoint('test');
  assert.equal(f.supplier.counters.deltaPages, saved, 'the listener is gone');
  await assert.rejects(pullChunk(f, 'rel', 0, 0), { code: ErrorCode.ERR_SNAPSHOT_GONE });
  await assert.rejects(openSnapshot(f, 'rel', 0, true), { code: ErrorCode.ERR_SNAPSHOT_GONE });
  assert.deepEqual(await f.call('snapshotRelease', { transferId: 'rel', reason: 'again' }), {}, 'release is idempotent');
  assert.ok(open.fileBytes > 0);
});

test('WAL segments a reservation pinned can be deleted again after release', async (t) => {
  const f = await makeFixture(t, { wal: { segmentBytes: 65536, historyBytesMax: 0 } });
  await write(f, 50);
  const open = await openSnapshot(f, 'pin');
  assert.equal(open.historyReservedFrom, open.counter.lwm, 'history reserved from the snapshot counter');
  await write(f, 1000, 50);
  await f.store.checkpoint('test');
  await f.store.checkpoint('test');
  const pinned = f.store.nodeWal.stats().segments;
  assert.ok(pinned >= 5, `${pinned} segments kept for the reservation`);
  await f.call('snapshotRelease', { transferId: 'pin', reason: 'done' });
  await f.store.checkpoint('test');
  const after = f.store.nodeWal.stats().segments;
  assert.ok(after <= 2, `${after} segments left once released`);
});

test('an idle snapshot is released after snapshotIdleTimeoutMs, a busy one is not', async (t) => {
  const f = await makeFixture(t);
  await write(f, 1500);
  f.config.rebalance.snapshotIdleTimeoutMs = 40;
  f.config.rebalance.throttleBytesPerSec = 4 * 65536; // each chunk after the first waits ~250 ms: a request in progress
  const open = await openSnapshot(f, 'idle');
  await pullChunk(f, 'idle', 0, 0);
  const slow = await pullChunk(f, 'idle', open.chunkBytes, 0);
  assert.equal(slow.raw.length, open.chunkBytes, 'served although the wait was longer than the idle timeout');
  assert.ok(f.supplier.list()[0]!.throttleWaits >= 1);
  await waitUntil(() => f.supplier.list().length === 0, 'the idle release');
  await waitUntil(() => f.store.nodeWal.stats().reservations === 0, 'the reservation released'); // release finishes asynchronously
  assert.deepEqual(await tmpFiles(f), []);
  await assert.rejects(pullChunk(f, 'idle', 2 * open.chunkBytes, 0), { code: ErrorCode.ERR_SNAPSHOT_GONE });
});

test('a dropped cache or a copy no longer OWNING here releases its transfers', async (t) => {
  const f = await makeFixture(t);
  await write(f, 300);
  await openSnapshot(f, 'p0', 0);
  await openSnapshot(f, 'p1', 1);
  f.host.publish((topo) => (topo.partitions.c![1]!.copies.self = 'RENTING'));
  await waitUntil(() => f.supplier.list().length === 1, 'the RENTING copy released');
  assert.equal(f.supplier.list()[0]!.transferId, 'p0');
  f.host.publish((topo) => {
    topo.caches = [];
    topo.partitions = {};
  });
  await waitUntil(() => f.supplier.list().length === 0, 'the dropped cache released');
  await waitUntil(() => f.store.nodeWal.stats().reservations === 0, 'reservations released');
  assert.deepEqual(await tmpFiles(f), []);
});

test('close releases every transfer and refuses new requests', async (t) => {
  const f = await makeFixture(t);
  await write(f, 300);
  await openSnapshot(f, 'a', 0);
  await openSnapshot(f, 'b', 1);
  await f.supplier.close();
  await f.supplier.close();
  assert.deepEqual(f.supplier.list(), []);
  assert.equal(f.store.nodeWal.stats().reservations, 0);
  assert.deepEqual(await tmpFiles(f), []);
  await assert.rejects(openSnapshot(f, 'c', 0), { code: ErrorCode.ERR_CLOSED });
});

test('opening a transferId again replaces its snapshot', async (t) => {
  const f = await makeFixture(t);
  await write(f, 300);
  const first = await openSnapshot(f, 'same');
  await write(f, 300, 300);
  const second = await openSnapshot(f, 'same');
  assert.ok(second.counter.hwm > first.counter.hwm);
  assert.equal(f.supplier.list().length, 1);
  assert.equal(f.store.nodeWal.stats().reservations, 1);
  assert.equal((await tmpFiles(f)).length, 1);
});

test('delta files left by a crashed run are removed when the supplier starts', async (t) => {
  const f = await makeFixture(t);
  await f.supplier.close();
  const stale = path.join(f.dir, 'tmp', 'supplier', '7-old.delta');
  await fs.writeFile(stale, Buffer.alloc(8192));
  const again = new Supplier(f.host);
  t.after(() => again.close());
  await waitUntil(() => !existsSync(stale), 'the leftover delta removed');
});

test('at most chunkWindow chunks of a transfer are read at once, and a release waits for them', async (t) => {
  let inFlight = 0;
  let peak = 0;
  const gate: Array<() => void> = [];
  const slowReads: FileLayer = {
    ...realFileLayer,
    async open(p, flags) {
      const file = await realFileLayer.open(p, flags);
      if (!p.endsWith('.ptn')) return file;
      return {
        ...file,
        path: file.path,
        read: async (buf, off, len, pos) => {
          inFlight++;
          peak = Math.max(peak, inFlight);
          await new Promise<void>((r) => gate.push(r));
          try {
            return await file.read(buf, off, len, pos);
          } finally {
            inFlight--;
          }
        },
        write: file.write.bind(file), writev: file.writev.bind(file), sync: file.sync.bind(file), datasync: file.datasync.bind(file),
        truncate: file.truncate.bind(file), size: file.size.bind(file), close: file.close.bind(file),
      };
    },
  };
  const f = await makeFixture(t, { rebalance: { chunkWindow: 3 } }, { fileLayer: slowReads });
  await write(f, 1500);
  const pump = setInterval(() => gate.splice(0).forEach((r) => r()), 2);
  t.after(() => clearInterval(pump));
  const open = await openSnapshot(f, 'win');
  clearInterval(pump);
  const n = Math.min(10, Math.floor(open.fileBytes / open.chunkBytes));
  const settled = Promise.allSettled(Array.from({ length: n }, (_, i) => pullChunk(f, 'win', i * open.chunkBytes, 0)));
  await waitUntil(() => inFlight === 3, 'three reads in flight');
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(inFlight, 3, 'the fourth waits for a slot');
  const released = f.call('snapshotRelease', { transferId: 'win', reason: 'test' });
  let releasedDone = false;
  void released.then(() => (releasedDone = true));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(releasedDone, false, 'the release waits for the reads in progress');
  gate.splice(0).forEach((r) => r());
  await released;
  const results = await settled;
  assert.equal(peak, 3);
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 3);
  for (const r of results.filter((x) => x.status === 'rejected')) assert.equal((r as PromiseRejectedResult).reason.code, ErrorCode.ERR_SNAPSHOT_GONE);
  assert.deepEqual(await tmpFiles(f), []);
});
