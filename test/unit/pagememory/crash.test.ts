import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { PageMemory, PartitionStore } from '../../../src/pagememory/page-memory.js';
import { checkpoint, CrashFileLayer, ID, makeTmpDir, openPm, purge, put, remove, removeDir, rng, snapshot, valueOf } from './pm-helpers.js';

let dir: string | undefined;
afterEach(async () => {
  await removeDir(dir);
  dir = undefined;
});

const IDS = [ID, { ...ID, partition: 4 }];
const NAMES = ['a.ptn', 'b.ptn'];
type Snap = Awaited<ReturnType<typeof snapshot>>;
const same = (a: Snap[], b: Snap[]) => JSON.stringify(a.map((m) => [...m])) === JSON.stringify(b.map((m) => [...m]));

/** The committed old state: two files, some overflow values. */
async function makeOldState(root: string): Promise<void> {
  const pm = await openPm(root);
  const stores = [await pm.createPartition(path.join(root, NAMES[0]!), IDS[0]!), await pm.createPartition(path.join(root, NAMES[1]!), IDS[1]!)];
  for (const ps of stores) for (let c = 1; c <= 120; c++) await put(pm, ps, `k${c}`, c, valueOf(c % 15 === 0 ? 11000 : 250, c));
  await checkpoint(pm);
  for (const ps of stores) for (let c = 121; c <= 140; c++) await remove(pm, ps, `k${c - 100}`, c);
  await checkpoint(pm); // a second state so the old one has a free list and pending pages behind it
  await pm.close();
}

/** The changes of the checkpoint under test: overwrites, splits, freed and reused chains, tombstones, purges and merges. */
async function applyChanges(pm: PageMemory, stores: PartitionStore[]): Promise<void> {
  for (const ps of stores) {
    let c = 140;
    for (let i = 1; i <= 120; i += 3) await put(pm, ps, `k${i}`, ++c, valueOf(i % 15 === 0 ? 3000 : 400, c));
    for (let i = 121; i <= 200; i++) await put(pm, ps, `k${i}`, ++c, valueOf(i % 25 === 0 ? 16000 : 150, c));
    for (let i = 2; i <= 120; i += 9) await remove(pm, ps, `k${i}`, ++c);
    for (let i = 60; i <= 110; i++) await remove(pm, ps, `k${i}`, ++c);
    await purge(pm, ps, c); // leaves shrink: merges, separators removed, pages freed
  }
}

async function openStores(pm: PageMemory, root: string): Promise<PartitionStore[]> {
  return [await pm.openPartition(path.join(root, NAMES[0]!), IDS[0]!), await pm.openPartition(path.join(root, NAMES[1]!), IDS[1]!)];
}

/** Every page in use of every file passes its check (a full swap-in verification of a copy). */
async function verifyAllPages(root: string): Promise<void> {
  const pm = await openPm(root);
  try {
    for (const [i, name] of NAMES.entries()) {
      const copy = path.join(root, `verify-${name}`);
      await fsp.copyFile(path.join(root, name), copy);
      const ps = await pm.restorePartition(copy, path.join(root, `verified-${name}`), IDS[i]!, 'full');
      await pm.destroyPartition(ps, { deleteFile: true });
    }
  } finally {
    await pm.close();
  }
}

test('a crash at any I/O step of a checkpoint leaves the old or the new state, never a mix, and every page checks', async () => {
  dir = await makeTmpDir();
  const template = path.join(dir, 'template');
  await fsp.mkdir(template);
  await makeOldState(template);
  const states = async (root: string): Promise<Snap[]> => {
    const pm = await openPm(root);
    try {
      return await Promise.all((await openStores(pm, root)).map((ps) => snapshot(ps)));
    } finally {
      await pm.close();
    }
  };
  const oldState = await states(template);

  // Dry run: count the operations before and during the checkpoint, and learn the new state.
  const dry = path.join(dir, 'dry');
  await fsp.cp(template, dry, { recursive: true });
  const counter = new CrashFileLayer();
  const pmDry = await openPm(dry, {}, { fileLayer: counter });
  await applyChanges(pmDry, await openStores(pmDry, dry));
  const opsBefore = counter.ops;
  await checkpoint(pmDry);
  const opsInCheckpoint = counter.ops - opsBefore;
  await pmDry.close();
  const newState = await states(dry);
  assert.ok(!same(newState, oldState));
  assert.ok(opsInCheckpoint >= 10, `${opsInCheckpoint} operations in a checkpoint`);

  const seed = Number(process.env.PTN_SEED ?? 1234);
  const r = rng(seed);
  const outcomes: string[] = [];
  for (let k = 1; k <= opsInCheckpoint; k++) {
    const root = path.join(dir, `run-${k}`);
    await fsp.cp(template, root, { recursive: true });
    const fl = new CrashFileLayer(opsBefore + k);
    const pm = await openPm(root, {}, { fileLayer: fl });
    await applyChanges(pm, await openStores(pm, root));
    await assert.rejects(checkpoint(pm), `crash point ${k}: the checkpoint fails`);
    await fl.crash(r);
    const got = await states(root);
    const which = same(got, oldState) ? 'old' : same(got, newState) ? 'new' : 'MIXED';
    outcomes.push(which);
    assert.notEqual(which, 'MIXED', `seed ${seed}, crash at checkpoint operation ${k}: the files hold neither the old nor the new state`);
    await verifyAllPages(root);
    // The recovered files keep working.
    const pm2 = await openPm(root);
    const stores = await openStores(pm2, root);
    for (const ps of stores) await put(pm2, ps, 'after-crash', ps.counter.hwm + 1, valueOf(5000, k));
    await checkpoint(pm2);
    await pm2.close();
    await verifyAllPages(root);
    await removeDir(root);
  }
  assert.ok(outcomes.includes('old') && outcomes.includes('new'), `both outcomes occur: ${outcomes.join(' ')}`);
  assert.equal(outcomes[outcomes.length - 1], 'new', 'a crash at the last step (after the overwrites were fsynced) keeps the new state');
});
