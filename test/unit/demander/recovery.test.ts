// The demander's recovery table (src/demander/recovery.ts): one test per row of the planner, then
// restarts from real crash images taken in each phase (the data directory copied at that instant,
// the node stopped without a checkpoint) against the real supplier, each ending OWNING with equal digests.
import test, { type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { planRecovery, type RecoveryFacts } from '../../../src/demander/recovery.js';
import { newTaskRecord, type Phase, type TaskRecord } from '../../../src/demander/task-state.js';
import { TaskStore } from '../../../src/demander/task-store.js';
import type { DemanderHooks } from '../../../src/demander/manager.js';
import { realFileLayer, type FileLayer } from '../../../src/util/file-layer.js';
import { CACHE, CACHE_ID, ME, load, makeWorld, waitUntil, type World, type WorldOptions } from './helpers.js';

// ------------------------------------------------------------------ the planner, row by row

function rec(phase: Phase, patch: Partial<TaskRecord> = {}): TaskRecord {
  const r = newTaskRecord('c', 1, 0, 3, 0);
  r.phase = phase;
  return { ...r, ...patch };
}
const transfer = (verifiedOffset: number, fileBytes = 4 * 65536) => ({
  transferId: 't1', tempFile: 'part-1-0-t1.ptn', fileBytes, chunkBytes: 65536, pageSize: 4096, entryCount: 10,
  counter: { lwm: 50, hwm: 50, gaps: [] as Array<[number, number]> }, verifiedOffset, runningCrc: 1,
});
const facts = (f: Partial<RecoveryFacts> = {}): RecoveryFacts => ({ moving: true, tempFileBytes: undefined, localLwm: 0, ...f });

test('row 1: a task whose copy is no longer MOVING is removed, whatever its phase', () => {
  for (const phase of ['PENDING', 'STREAMING', 'REPLAYING', 'OWNING'] as Phase[]) {
    assert.deepEqual(planRecovery(rec(phase), facts({ moving: false })).kind, 'remove');
  }
});
test('row 2: PENDING starts over', () => {
  assert.equal(planRecovery(rec('PENDING'), facts()).row, 2);
  assert.equal(planRecovery(rec('PENDING'), facts()).kind, 'startOver');
});
test('row 3: STREAMING with the verified bytes on disk resumes the stream', () => {
  const a = planRecovery(rec('STREAMING', { transfer: transfer(131072) }), facts({ tempFileBytes: 140000 }));
  assert.deepEqual([a.kind, a.row], ['resumeStream', 3]);
});
test('row 4: STREAMING with the temp file missing or short starts over', () => {
  assert.deepEqual(planRecovery(rec('STREAMING', { transfer: transfer(131072) }), facts()).row, 4);
  assert.deepEqual(planRecovery(rec('STREAMING', { transfer: transfer(131072) }), facts({ tempFileBytes: 65536 })).kind, 'startOver');
});
test('row 5: SWAPPING with the complete verified file redoes the swap', () => {
  const a = planRecovery(rec('SWAPPING', { transfer: transfer(262144) }), facts({ tempFileBytes: 262144 }));
  assert.deepEqual([a.kind, a.row], ['redoSwap', 5]);
});
test('row 6: SWAPPING without the temp file starts over', () => {
  const a = planRecovery(rec('SWAPPING', { transfer: transfer(262144) }), facts());
  assert.deepEqual([a.kind, a.row], ['startOver', 6]);
});
test('row 7: FILLING starts over', () => {
  assert.deepEqual(planRecovery(rec('FILLING'), facts({ localLwm: 99 })).row, 7);
});
test('row 8: INDEXING, REPLAYING, HISTORICAL and OWNING resume at INDEXING when the local data reached its lwm', () => {
  for (const phase of ['INDEXING', 'REPLAYING', 'HISTORICAL', 'OWNING'] as Phase[]) {
    const a = planRecovery(rec(phase, { expectLwm: 50 }), facts({ localLwm: 50 }));
    assert.deepEqual([a.kind, a.row], ['resumeIndexing', 8], phase);
  }
});
test('row 9: the same phases start over when the local lwm is below what the data phase reached', () => {
  for (const phase of ['INDEXING', 'REPLAYING', 'HISTORICAL', 'OWNING'] as Phase[]) {
    assert.deepEqual(planRecovery(rec(phase, { expectLwm: 50 }), facts({ localLwm: 49 })).row, 9, phase);
  }
});
test('row 10: FAILED and CANCELLED start over', () => {
  assert.equal(planRecovery(rec('FAILED'), facts()).row, 10);
  assert.equal(planRecovery(rec('CANCELLED'), facts()).row, 10);
});

// ------------------------------------------------------------------ restarts from crash images

interface Crash {
  phase?: Phase;
  verifiedAtLeast?: number;
  taking?: boolean;
  image?: string;
  closing?: Promise<void>;
}

/** Hooks that copy the demander's data dir at the named point, then stop that node. */
function crashHooks(getW: () => World, crash: Crash): DemanderHooks {
  const take = async () => {
    if (crash.taking) return;
    crash.taking = true;
    crash.image = await getW().crashImage();
    crash.closing = getW().manager.close();
  };
  return {
    onPhase: async (_t, phase) => {
      if (crash.phase === phase) await take();
    },
    onChunkVerified: async (x) => {
      if (crash.verifiedAtLeast === undefined || x.verifiedOffset < crash.verifiedAtLeast || crash.taking) return;
      // Persists run in the background: crash once one has recorded a verified offset, as a
      // crash a moment later would find it.
      const store = new TaskStore(path.join(getW().host.store.dataDir, 'tmp', 'rebalance'), realFileLayer);
      for (let i = 0; ((await store.load(CACHE_ID, 0))?.transfer?.verifiedOffset ?? 0) === 0; i++) {
        if (i > 2000) throw new Error('no verified offset was persisted');
        await new Promise((r) => setTimeout(r, 5));
      }
      await take();
    },
  };
}

/** A world loaded with data, receiving partition 0 until the crash point; returns the crash image. */
async function crashedWorld(t: TestContext, crash: Crash, opts: WorldOptions = {}): Promise<World> {
  let w!: World;
  w = await makeWorld(t, { ...opts, persistEveryBytes: 65536, hooks: crashHooks(() => w, crash) });
  await load(w, 0, 1500);
  await w.startMoving(0);
  for (let i = 0; i < 40; i++) await w.write(0, `during${i}`, { city: 'during' }); // acknowledged into the temp WAL
  await waitUntil(() => crash.closing !== undefined, `crash at ${crash.phase ?? crash.verifiedAtLeast}`, 20_000);
  await crash.closing;
  return w;
}

async function recordIn(image: string): Promise<TaskRecord> {
  const r = await new TaskStore(path.join(image, 'tmp', 'rebalance'), realFileLayer).load(CACHE_ID, 0);
  assert.ok(r, 'the crash image holds the task record');
  return r;
}

/** Restarts on the image, receives again, and checks the end state. */
async function restartAndFinish(w: World, image: string): Promise<void> {
  await w.restartDemander(image);
  for (let i = 0; i < 20; i++) await w.write(0, `after${i}`, { city: 'after' });
  await w.startMoving(0);
  await w.waitOwning(0);
  const d = await w.digests(0);
  assert.equal(d.demander, d.supplier);
  for (const city of ['during', 'after', 'city1']) assert.deepEqual(w.host.store.query(CACHE, 'city', city), w.primary.store.query(CACHE, 'city', city), city);
  assert.deepEqual(await w.leftovers(), []);
}

test('restart, row 2: a crash in PENDING keeps the acknowledged updates of the temp WAL and starts the transfer', async (t) => {
  let free = 0;
  const fl: FileLayer = { ...realFileLayer, freeBytes: async () => free };
  const w = await makeWorld(t, { fileLayer: fl });
  await load(w, 0, 800);
  await w.startMoving(0);
  for (let i = 0; i < 40; i++) await w.write(0, `during${i}`, { city: 'during' });
  await waitUntil(() => (w.manager.list()[0]?.error ?? '').includes('ERR_DISK_FULL'), 'PENDING for lack of space');
  const image = await w.crashImage();
  assert.equal((await recordIn(image)).phase, 'PENDING');
  free = 2 ** 40;
  await restartAndFinish(w, image);
  assert.equal(w.manager.list()[0]!.restarts, 0);
});

test('restart, row 3: a crash in STREAMING resumes from the persisted verified offset when the supplier still has the snapshot', async (t) => {
  const crash: Crash = { verifiedAtLeast: 2 * 65536 };
  const w = await crashedWorld(t, crash);
  const r = await recordIn(crash.image!);
  assert.equal(r.phase, 'STREAMING');
  const verified = r.transfer!.verifiedOffset;
  assert.ok(verified >= 65536 && verified < r.transfer!.fileBytes, "a persisted offset, covered by an fsync");
  const offsets: number[] = [];
  w.onRequest = (method, body) => {
    if (method === 'snapshotChunk') offsets.push(body.offset as number);
  };
  await restartAndFinish(w, crash.image!);
  assert.equal(offsets[0], verified, 'the first chunk asked after the restart is the one after the verified offset');
  const task = w.manager.list()[0]!;
  assert.equal(task.bytesNotResent, verified);
  assert.equal(task.restarts, 0);
  assert.equal(w.primary.supplier.counters.transfersOpened, 1, 'the same snapshot');
});

test('restart, row 3 then 4: when the supplier no longer has the snapshot the resumed stream starts over', async (t) => {
  const crash: Crash = { verifiedAtLeast: 65536 };
  const w = await crashedWorld(t, crash);
  const r = await recordIn(crash.image!);
  await w.primary.handlers.get('snapshotRelease')!({ transferId: r.transfer!.transferId, reason: 'supplier restarted' }, undefined as never);
  await restartAndFinish(w, crash.image!);
  const task = w.manager.list()[0]!;
  assert.equal(task.restarts, 1);
  assert.equal(task.bytesNotResent, 0);
  assert.equal(w.primary.supplier.counters.transfersOpened, 2);
});

test('restart, row 4: a crash in STREAMING whose temp file is gone starts over', async (t) => {
  const crash: Crash = { verifiedAtLeast: 65536 };
  const w = await crashedWorld(t, crash);
  const r = await recordIn(crash.image!);
  await fs.rm(path.join(crash.image!, 'tmp', 'rebalance', r.transfer!.tempFile));
  await restartAndFinish(w, crash.image!);
  assert.equal(w.manager.list()[0]!.restarts, 1);
});

test('restart, row 5: a crash in SWAPPING redoes the swap from the verified file', async (t) => {
  const crash: Crash = { phase: 'SWAPPING' };
  const w = await crashedWorld(t, crash);
  const r = await recordIn(crash.image!);
  assert.equal(r.phase, 'SWAPPING');
  await restartAndFinish(w, crash.image!);
  const task = w.manager.list()[0]!;
  assert.equal(task.restarts, 0);
  assert.equal(w.primary.supplier.counters.transfersOpened, 1, 'no second transfer');
});

test('restart, row 6: a crash in SWAPPING after the file was moved starts over', async (t) => {
  const crash: Crash = { phase: 'SWAPPING' };
  const w = await crashedWorld(t, crash);
  const r = await recordIn(crash.image!);
  await fs.rm(path.join(crash.image!, 'tmp', 'rebalance', r.transfer!.tempFile));
  await restartAndFinish(w, crash.image!);
  assert.equal(w.manager.list()[0]!.restarts, 1);
  assert.equal(w.primary.supplier.counters.transfersOpened, 2);
});

test('restart, row 7: a crash in FILLING starts the full path over', async (t) => {
  const crash: Crash = { phase: 'FILLING' };
  const w = await crashedWorld(t, crash, { overrides: { rebalance: { fileMinBytes: 2 ** 40 } } });
  assert.equal((await recordIn(crash.image!)).phase, 'FILLING');
  await restartAndFinish(w, crash.image!);
  const task = w.manager.list()[0]!;
  assert.equal(task.path, 'full');
  assert.equal(task.restarts, 1);
});

for (const phase of ['INDEXING', 'REPLAYING', 'HISTORICAL'] as Phase[]) {
  test(`restart, row 8: a crash in ${phase} redoes index, replay and history from the swapped file`, async (t) => {
    const crash: Crash = { phase };
    const w = await crashedWorld(t, crash);
    assert.equal((await recordIn(crash.image!)).phase, phase);
    await restartAndFinish(w, crash.image!);
    const task = w.manager.list()[0]!;
    assert.equal(task.restarts, 0);
    assert.equal(task.phaseTimes.STREAMING !== undefined, true, 'the phase times before the crash are kept');
    assert.equal(w.primary.supplier.counters.transfersOpened, 1, 'no second transfer');
  });
}

test('restart, row 9: a crash in REPLAYING whose swapped file was lost starts over', async (t) => {
  const crash: Crash = { phase: 'REPLAYING' };
  const w = await crashedWorld(t, crash);
  await fs.rm(path.join(crash.image!, 'caches', String(CACHE_ID), 'part-0.ptn'));
  await restartAndFinish(w, crash.image!);
  assert.equal(w.manager.list()[0]!.restarts, 1);
});

test('restart, row 1: a task whose copy is no longer MOVING after the restart is removed with its files', async (t) => {
  const crash: Crash = { verifiedAtLeast: 65536 };
  const w = await crashedWorld(t, crash);
  const names = await fs.readdir(path.join(crash.image!, 'tmp', 'rebalance'));
  assert.ok(names.some((n) => n.startsWith('part-')) && names.some((n) => n.startsWith('twal-')) && names.some((n) => n.startsWith('task-')), names.join());
  await w.restartDemander(crash.image!);
  w.setCopy(0, ME, undefined);
  await w.manager.onTopology(w.topo); // the first topology: the copy is gone
  assert.deepEqual(await w.leftovers(), []);
  assert.equal(w.manager.list().length, 0);
});

test('restart, rows 11 and 12: an unreadable record and files no record names are removed at start-up', async (t) => {
  const crash: Crash = { verifiedAtLeast: 65536 };
  const w = await crashedWorld(t, crash);
  const dir = path.join(crash.image!, 'tmp', 'rebalance');
  const rp = path.join(dir, `task-${CACHE_ID}-0.json`);
  await fs.writeFile(rp, (await fs.readFile(rp, 'utf8')).replace('STREAMING', 'STREAMINX'));
  await fs.writeFile(path.join(dir, 'part-9-9-orphan.ptn'), 'x');
  await fs.mkdir(path.join(dir, 'twal-9-9'));
  await fs.writeFile(path.join(dir, 'task-9-9.json.tmp'), 'half a write');
  await w.restartDemander(crash.image!);
  assert.deepEqual(await w.leftovers(), [], 'everything unreadable or unnamed is gone before the first topology');
  await w.startMoving(0);
  await w.waitOwning(0);
  const d = await w.digests(0);
  assert.equal(d.demander, d.supplier);
  assert.equal(w.manager.list()[0]!.bytesNotResent, 0, 'without a readable record nothing is resumed');
});
