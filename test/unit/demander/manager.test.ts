// The demander manager end to end against the real supplier (in-memory links, real stores):
// paths, concurrent writes, cuts, corruption, disk space, slots, supplier choice, cancellation.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { ErrorCode, ptnError } from '../../../src/errors.js';
import { realFileLayer, type FileLayer } from '../../../src/util/file-layer.js';
import { rng, testSeed } from '../../helpers/tmp.js';
import { CACHE, CACHE_ID, ME, load, makeWorld, waitUntil, type World } from './helpers.js';

/** Keeps writing random updates to a partition until stopped; returns the keys it touched. */
function writer(w: World, partition: number, seed: number): { stop: () => Promise<number> } {
  const r = rng(seed);
  let stopped = false;
  let n = 0;
  const run = (async () => {
    while (!stopped) {
      const k = `w${Math.floor(r() * 300)}`;
      if (r() < 0.1) await w.remove(partition, k);
      else await w.write(partition, k, { city: `wcity${Math.floor(r() * 4)}`, n });
      n++;
      if (n % 16 === 0) await new Promise((res) => setImmediate(res));
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await run;
      return n;
    },
  };
}

async function expectIndexMatches(w: World): Promise<void> {
  for (let c = 0; c < 5; c++) {
    const want = w.primary.store.query(CACHE, 'city', `city${c}`);
    assert.deepEqual(w.host.store.query(CACHE, 'city', `city${c}`), want, `index city${c}`);
  }
}

test('the file path receives a partition while writes go on: digests equal, index right, nothing left over', async (t) => {
  const seed = testSeed();
  t.diagnostic(`seed ${seed}`);
  const w = await makeWorld(t);
  await load(w, 0, 1500);
  await w.startMoving(0);
  const wr = writer(w, 0, seed);
  await w.waitOwning(0);
  const writes = await wr.stop();
  assert.ok(writes > 0);
  const d = await w.digests(0);
  assert.equal(d.demander, d.supplier, `seed ${seed}`);
  await expectIndexMatches(w);
  const task = w.manager.list().find((x) => x.partition === 0)!;
  assert.equal(task.path, 'file');
  assert.equal(task.phase, 'OWNING');
  for (const p of ['PENDING', 'STREAMING', 'SWAPPING', 'INDEXING', 'REPLAYING', 'HISTORICAL', 'OWNING'] as const) assert.ok(task.phaseTimes[p], `phase time of ${p}`);
  assert.ok(task.fenceMs !== undefined && task.fenceMs >= 0);
  assert.equal(w.manager.metrics().bytesReceived.file, task.bytesTotal);
  assert.deepEqual(await w.leftovers(), []);
  assert.equal(w.primary.supplier.list().length, 0, 'the snapshot was released');
});

test('updates that arrive while the partition is MOVING go through its temporary WAL', async (t) => {
  let held = true;
  const w = await makeWorld(t, {
    hooks: {
      onPhase: async (_x, phase) => {
        while (phase === 'STREAMING' && held) await new Promise((r) => setTimeout(r, 5));
      },
    },
  });
  await load(w, 0, 400);
  await w.startMoving(0);
  await waitUntil(() => w.manager.list()[0]?.phase === 'STREAMING', 'streaming');
  for (let i = 0; i < 50; i++) await w.write(0, `during${i}`, { city: 'during' });
  assert.equal(w.manager.metrics().updatesLogged, 50);
  assert.equal(w.manager.list()[0]!.replayLagRecords, 50, 'nothing is applied before the swap');
  assert.equal(await w.host.store.get(CACHE, 'during0'), undefined);
  held = false;
  await w.waitOwning(0);
  assert.deepEqual(w.host.store.query(CACHE, 'city', 'during').length, 50);
  const d = await w.digests(0);
  assert.equal(d.demander, d.supplier);
});

test('a cut connection resumes from the verified offset without re-sending verified bytes', async (t) => {
  let verifiedAtCut = -1;
  const w = await makeWorld(t, {
    hooks: {
      onChunkVerified: async (x, link) => {
        if (verifiedAtCut < 0 && x.verifiedOffset >= 2 * 65536) {
          verifiedAtCut = x.verifiedOffset;
          await link.close();
        }
      },
    },
  });
  const chunkOffsets: Array<{ link: unknown; offset: number }> = [];
  w.onRequest = (method, body, link) => {
    if (method === 'snapshotChunk') chunkOffsets.push({ link, offset: body.offset as number });
  };
  await load(w, 0, 1500);
  await w.startMoving(0);
  await w.waitOwning(0);
  const task = w.manager.list()[0]!;
  assert.ok(verifiedAtCut > 0 && verifiedAtCut < task.bytesTotal, `cut at ${verifiedAtCut} of ${task.bytesTotal}`);
  const links = [...new Set(chunkOffsets.map((c) => c.link))];
  assert.equal(links.length, 2, 'one new connection after the cut');
  // Answers already received when the connection closed are still verified, so the resume point is
  // at or after the cut; everything below it is not asked for again.
  const resumedAt = chunkOffsets.find((c) => c.link === links[1])!.offset;
  assert.ok(resumedAt >= verifiedAtCut && resumedAt < task.bytesTotal);
  assert.equal(task.bytesNotResent, resumedAt);
  assert.ok(chunkOffsets.filter((c) => c.link === links[1]).every((c) => c.offset >= resumedAt));
  assert.equal(w.manager.metrics().resumes, 1);
  assert.equal(w.manager.metrics().bytesReceived.file, task.bytesTotal, 'every byte verified exactly once');
  const d = await w.digests(0);
  assert.equal(d.demander, d.supplier);
  assert.equal(task.restarts, 0);
});

test('a chunk with a bad CRC is asked for again and never lands', async (t) => {
  const w = await makeWorld(t);
  let corrupted = 0;
  const asked = new Map<number, number>();
  w.onRequest = (method, body) => {
    if (method === 'snapshotChunk') asked.set(body.offset as number, (asked.get(body.offset as number) ?? 0) + 1);
  };
  w.onResponse = (method, body, res) => {
    if (method !== 'snapshotChunk' || body.offset !== 65536 || corrupted > 0) return res;
    corrupted++;
    const bad = Buffer.from(res as Buffer);
    bad[bad.length - 10]! ^= 0xff; // a data byte: the raw CRC no longer matches
    return bad;
  };
  await load(w, 0, 1500);
  await w.startMoving(0);
  await w.waitOwning(0);
  assert.equal(corrupted, 1);
  assert.equal(w.manager.metrics().corruptChunks, 1);
  assert.equal(asked.get(65536), 2, 'the corrupt chunk was requested again');
  assert.equal(asked.get(0), 1);
  assert.equal(w.manager.metrics().bytesReceived.file, w.manager.list()[0]!.bytesTotal);
  const d = await w.digests(0);
  assert.equal(d.demander, d.supplier, 'the swapped file (every page checked) holds the supplier image');
});

test('without room for the file plus the margin the task stays PENDING, says why, and starts once there is room', async (t) => {
  let free = 0;
  const fl: FileLayer = { ...realFileLayer, freeBytes: async () => free };
  const w = await makeWorld(t, { fileLayer: fl, overrides: { rebalance: { diskSpaceMarginBytes: 1 << 20 } } });
  await load(w, 0, 600);
  await w.primary.store.checkpoint();
  const fileBytes = w.primary.store.partitionOrUndefined(CACHE_ID, 0)!.fileBytes();
  assert.ok(fileBytes > 65536);
  free = fileBytes + (1 << 20) - 1;
  await w.startMoving(0);
  await waitUntil(() => (w.manager.list()[0]?.error ?? '').includes(ErrorCode.ERR_DISK_FULL), 'disk-full reason');
  const task = w.manager.list()[0]!;
  assert.equal(task.phase, 'PENDING');
  assert.match(task.error!, /retry in \d+ ms/);
  assert.equal(w.primary.supplier.counters.transfersOpened, 0, 'no snapshot was opened');
  free = 2 ** 40;
  await w.waitOwning(0);
  const d = await w.digests(0);
  assert.equal(d.demander, d.supplier);
});

test('receiveSlots bounds concurrent transfers, is read at run time, and transfers spread over suppliers', async (t) => {
  let maxRunning = 0;
  const w: World = await makeWorld(t, {
    suppliers: ['a', 'b'],
    partitions: 4,
    overrides: { rebalance: { receiveSlots: 1 } },
    hooks: {
      onPhase: async () => {
        maxRunning = Math.max(maxRunning, w.manager.metrics().running);
        await new Promise((r) => setTimeout(r, 20));
      },
    },
  });
  for (let p = 0; p < 4; p++) await load(w, p, 200, `p${p}-`);
  for (let p = 0; p < 4; p++) await w.startMoving(p);
  await waitUntil(() => w.manager.list().some((x) => x.phase === 'STREAMING' || x.phase === 'INDEXING'), 'first task running');
  assert.equal(w.manager.metrics().running, 1);
  assert.equal(w.manager.list().filter((x) => x.phase === 'PENDING').length, 3);
  w.host.config.rebalance.receiveSlots = 4; // what configSet does
  await waitUntil(() => w.manager.metrics().running >= 2, 'more slots used after the raise');
  for (let p = 0; p < 4; p++) await w.waitOwning(p);
  assert.ok(maxRunning <= 4);
  const suppliers = new Set(w.manager.list().map((x) => x.supplier));
  assert.deepEqual([...suppliers].sort(), ['a', 'b'], 'both suppliers served');
  for (let p = 0; p < 4; p++) {
    const d = await w.digests(p);
    assert.equal(d.demander, d.supplier, `partition ${p}`);
  }
});

test('a transfer cancelled mid-stream leaves no temp file, no temp WAL, no record, and releases the supplier', async (t) => {
  let cancelling: Promise<void> | undefined;
  const w: World = await makeWorld(t, {
    hooks: {
      onChunkVerified: () => {
        cancelling ??= w.manager.cancel(CACHE_ID, 0, 'copy left the topology');
      },
    },
  });
  await load(w, 0, 1500);
  await w.startMoving(0);
  await w.write(0, 'late', { city: 'x' });
  await waitUntil(() => cancelling !== undefined, 'cancel started');
  await cancelling;
  assert.equal(w.manager.list()[0]!.phase, 'CANCELLED');
  assert.deepEqual(await w.leftovers(), []);
  await waitUntil(() => w.primary.supplier.list().length === 0, 'snapshot released');
  assert.equal(w.reportedOwning(0), false);
  assert.equal(await w.manager.offer({ cacheId: CACHE_ID, partition: 0, counter: 1, key: 'k', op: 'remove' }, Buffer.alloc(0)), false, 'no log routes updates any more');
});

test('a cache dropped mid-rebalance leaves no temporary files', async (t) => {
  let dropping: Promise<void> | undefined;
  const w: World = await makeWorld(t, {
    partitions: 2,
    hooks: {
      onChunkVerified: () => {
        dropping ??= w.manager.cancelCache(CACHE_ID);
      },
    },
  });
  await load(w, 0, 1500);
  await load(w, 1, 1500, 'q');
  await w.startMoving(0);
  await w.startMoving(1);
  await waitUntil(() => dropping !== undefined, 'drop started');
  await dropping;
  assert.ok(w.manager.list().every((x) => x.phase === 'CANCELLED'));
  assert.deepEqual(await w.leftovers(), []);
});

test('a copy that comes back with its own data catches up from WAL history only', async (t) => {
  const seed = testSeed();
  t.diagnostic(`seed ${seed}`);
  const w = await makeWorld(t, { overrides: { rebalance: { historicalMaxCounterGap: 1000 } } });
  w.deliverToDemander = true; // the copy was up: it has the first updates (applied directly)
  await load(w, 0, 300);
  w.deliverToDemander = false; // then it was away
  for (let i = 0; i < 120; i++) await w.write(0, `k${i}`, { city: 'moved', i });
  await w.remove(0, 'k200');
  await w.startMoving(0);
  const wr = writer(w, 0, seed);
  await w.waitOwning(0);
  await wr.stop();
  const task = w.manager.list()[0]!;
  assert.equal(task.path, 'historical', task.reason);
  assert.match(task.reason!, /behind/);
  assert.equal(w.manager.metrics().bytesReceived.file, 0);
  assert.ok(w.manager.metrics().bytesReceived.historical > 0);
  assert.equal(task.phaseTimes.STREAMING, undefined);
  const d = await w.digests(0);
  assert.equal(d.demander, d.supplier, `seed ${seed}`);
  assert.equal(w.host.store.query(CACHE, 'city', 'moved').length, w.primary.store.query(CACHE, 'city', 'moved').length);
});

test('history gone on the historical path starts the partition over with a fresh file and says so', async (t) => {
  const w = await makeWorld(t, { overrides: { rebalance: { historicalMaxCounterGap: 1000 } } });
  w.deliverToDemander = true;
  await load(w, 0, 300);
  w.deliverToDemander = false;
  for (let i = 0; i < 50; i++) await w.write(0, `k${i}`, { city: 'moved' });
  let gone = 0;
  w.onRequest = (method) => {
    if (method === 'historyBatch' && gone++ === 0) throw ptnError(ErrorCode.ERR_WAL_HISTORY_GONE, 'history deleted');
  };
  await w.startMoving(0);
  await w.waitOwning(0);
  const task = w.manager.list()[0]!;
  assert.equal(task.path, 'file');
  assert.match(task.reason!, /history/);
  assert.equal(task.restarts, 1);
  const d = await w.digests(0);
  assert.equal(d.demander, d.supplier);
});

test('small partitions take the full path; one whose counters overflow the gap list falls back to the file', async (t) => {
  const w = await makeWorld(t, { partitions: 2, overrides: { rebalance: { fileMinBytes: 1 << 30 } } });
  await load(w, 0, 300);
  await load(w, 1, 600, 'k', 20);
  for (let i = 0; i < 600; i += 2) await w.write(1, `k${i}`, { city: 'again' }); // scattered counters left in the entries
  await w.startMoving(0);
  await w.waitOwning(0);
  const t0 = w.manager.list().find((x) => x.partition === 0)!;
  assert.equal(t0.path, 'full');
  assert.match(t0.reason!, /fileMinBytes/);
  assert.equal(t0.phaseTimes.FILLING !== undefined, true);
  assert.ok(w.manager.metrics().bytesReceived.full > 0);
  await w.startMoving(1);
  await w.waitOwning(1);
  const t1 = w.manager.list().find((x) => x.partition === 1)!;
  assert.equal(t1.path, 'file');
  assert.match(t1.reason!, /counter gaps/);
  for (const p of [0, 1]) {
    const d = await w.digests(p);
    assert.equal(d.demander, d.supplier, `partition ${p}`);
  }
});

test('when the supplier is gone the task fails over to another owner and starts the partition over', async (t) => {
  let killed: string | undefined;
  const w: World = await makeWorld(t, {
    suppliers: ['a', 'b'],
    overrides: { rebalance: { resumeRetries: 2 } },
    hooks: {
      onChunkVerified: async (x, link) => {
        if (killed === undefined && x.verifiedOffset >= 65536) {
          killed = (link as unknown as { to: string }).to;
          w.down.add(killed);
          await link.close();
        }
      },
    },
  });
  await load(w, 0, 1500);
  await w.startMoving(0);
  await w.waitOwning(0);
  const task = w.manager.list()[0]!;
  assert.ok(killed);
  assert.notEqual(task.supplier, killed);
  assert.equal(task.restarts, 1);
  assert.equal(w.suppliers.get(task.supplier!)!.supplier.counters.transfersOpened, 1, 'the other owner served a new snapshot');
  w.down.delete(killed!);
  const d = await w.digests(0);
  assert.equal(d.demander, d.supplier);
});

test('a resume that finds the snapshot gone starts the partition over', async (t) => {
  let cut = false;
  const w: World = await makeWorld(t, {
    hooks: {
      onChunkVerified: async (_x, link) => {
        if (cut) return;
        cut = true;
        const [tr] = w.primary.supplier.list();
        await w.primary.handlers.get('snapshotRelease')!({ transferId: tr!.transferId, reason: 'test' }, undefined as never);
        await link.close();
      },
    },
  });
  await load(w, 0, 1500);
  await w.startMoving(0);
  await w.waitOwning(0);
  const task = w.manager.list()[0]!;
  assert.equal(task.restarts, 1);
  assert.equal(task.bytesNotResent, 0);
  assert.equal(w.primary.supplier.counters.transfersOpened, 2);
  const d = await w.digests(0);
  assert.equal(d.demander, d.supplier);
});

test('a task whose copy is reported OWNING by the coordinator keeps its own finish', async (t) => {
  const w = await makeWorld(t);
  await load(w, 0, 200);
  await w.startMoving(0);
  await w.waitOwning(0);
  w.setCopy(0, ME, 'OWNING');
  assert.equal(w.manager.isReceiving(CACHE_ID, 0), false);
  await w.manager.onTopology(w.topo);
  assert.equal(w.manager.list().length, 0, 'settled tasks are forgotten once the copy is no longer MOVING');
  assert.deepEqual(await fs.readdir(w.manager.dir), []);
});

test('a copy made OWNING before it finished (every other copy was lost) keeps the updates it logged, and its index', async (t) => {
  let held = true;
  const w = await makeWorld(t, {
    hooks: {
      onPhase: async (_x, phase) => {
        while (phase === 'STREAMING' && held) await new Promise((r) => setTimeout(r, 5));
      },
    },
  });
  await load(w, 0, 300);
  await w.startMoving(0);
  await waitUntil(() => w.manager.list()[0]?.phase === 'STREAMING', 'streaming');
  for (let i = 0; i < 30; i++) await w.write(0, `during${i}`, { city: 'during' });
  w.setCopy(0, ME, 'OWNING');
  assert.equal(w.manager.isReceiving(CACHE_ID, 0), true);
  const cancelling = w.manager.cancel(CACHE_ID, 0, 'copy became OWNING', { applyLogged: true }); // what applyTopology does
  held = false;
  await cancelling;
  assert.equal(w.manager.list()[0]!.phase, 'CANCELLED');
  assert.ok(await w.host.store.get(CACHE, 'during29'), 'the logged updates were applied');
  assert.equal(w.host.store.query(CACHE, 'city', 'during').length, 30, 'and indexed: the part is no longer suspended');
  assert.deepEqual(await w.leftovers(), []);
  w.deliverToDemander = true;
  await w.write(0, 'after', { city: 'during' });
  assert.equal(w.host.store.query(CACHE, 'city', 'during').length, 31, 'later updates apply directly');
});
