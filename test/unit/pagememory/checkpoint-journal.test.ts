import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { JOURNAL_HEADER_BYTES, JOURNAL_TRAILER_BYTES } from '../../../src/pagememory/checkpoint-journal.js';
import { crc32 } from '../../../src/util/crc32.js';
import { checkpoint, HookFileLayer, ID, makeTmpDir, openPm, put, removeDir, snapshot, valueOf } from './pm-helpers.js';

let dir: string | undefined;
afterEach(async () => {
  await removeDir(dir);
  dir = undefined;
});

type Snap = Awaited<ReturnType<typeof snapshot>>;
const IDS = [ID, { ...ID, partition: 4 }];

/**
 * Two partitions with a committed old state; a checkpoint of a new state that fails exactly when
 * step 4 starts (the first in-place overwrite), so a complete journal is left behind.
 */
async function leaveCompleteJournal(): Promise<{ files: string[]; old: Snap[]; next: Snap[]; journal: string }> {
  dir = await makeTmpDir();
  const fl = new HookFileLayer();
  const pm = await openPm(dir, {}, { fileLayer: fl });
  const files = [path.join(dir, 'data', 'a.ptn'), path.join(dir, 'data', 'b.ptn')];
  await fsp.mkdir(path.join(dir, 'data'));
  const stores = [await pm.createPartition(files[0]!, IDS[0]!), await pm.createPartition(files[1]!, IDS[1]!)];
  let c = 0; // the same counters in both partitions (each has its own counter)
  for (let i = 0; i < 150; i++, c++) for (const ps of stores) await put(pm, ps, `k${i}`, c + 1, valueOf(i % 20 === 0 ? 9000 : 200, c));
  await checkpoint(pm);
  const old = [await snapshot(stores[0]!), await snapshot(stores[1]!)];
  for (let i = 0; i < 150; i += 2, c++) for (const ps of stores) await put(pm, ps, `k${i}`, c + 1, valueOf(i % 20 === 0 ? 15000 : 300, c));
  for (let i = 150; i < 250; i++, c++) for (const ps of stores) await put(pm, ps, `k${i}`, c + 1, valueOf(200, c));
  const next = [await snapshot(stores[0]!), await snapshot(stores[1]!)];
  fl.beforeWrite = (p, pos) => {
    if (p.endsWith('.ptn') && pos === 0) throw Object.assign(new Error('injected EIO'), { code: 'EIO' });
  };
  await assert.rejects(checkpoint(pm), (e: { code?: string }) => e.code === 'ERR_IO');
  await assert.rejects(pm.enterMutation(), (e: { code?: string }) => e.code === 'ERR_IO', 'a failed page memory refuses mutations');
  await pm.close();
  const names = await fsp.readdir(path.join(dir, 'checkpoint'));
  assert.equal(names.length, 1);
  return { files, old, next, journal: path.join(dir, 'checkpoint', names[0]!) };
}

async function reopen(files: string[]) {
  const pm = await openPm(dir!);
  const snaps: Snap[] = [];
  for (const [i, f] of files.entries()) {
    if (!(await fsp.access(f).then(() => true, () => false))) continue;
    const ps = await pm.openPartition(f, IDS[i]!);
    snaps[i] = await snapshot(ps);
  }
  const recovery = pm.recovery;
  await pm.close();
  return { snaps, recovery, left: await fsp.readdir(path.join(dir!, 'checkpoint')) };
}

test('recovery, no journal: nothing to do', async () => {
  dir = await makeTmpDir();
  const pm = await openPm(dir);
  assert.deepEqual(pm.recovery, []);
  await pm.close();
});

test('recovery, complete journal: every page is redone and the files hold the new state', async () => {
  const { files, old, next } = await leaveCompleteJournal();
  assert.notDeepEqual(old[0], next[0]);
  const { snaps, recovery, left } = await reopen(files);
  assert.equal(recovery.length, 1);
  assert.equal(recovery[0]!.outcome, 'redone');
  assert.ok(recovery[0]!.pagesRedone >= 4);
  assert.deepEqual(snaps, next);
  assert.deepEqual(left, [], 'the journal is deleted');
});

test('recovery, truncated journal: deleted, the files hold the old state', async () => {
  for (const keep of [10, JOURNAL_HEADER_BYTES + 5, -1]) {
    const { files, old, journal } = await leaveCompleteJournal();
    const size = (await fsp.stat(journal)).size;
    await fsp.truncate(journal, keep >= 0 ? keep : size - 1);
    const { snaps, recovery, left } = await reopen(files);
    assert.equal(recovery[0]!.outcome, 'truncated', `cut to ${keep}`);
    assert.deepEqual(snaps, old);
    assert.deepEqual(left, []);
    await removeDir(dir);
  }
});

test('recovery, journal with a bad CRC: deleted, the files hold the old state', async () => {
  for (const where of ['header', 'body', 'trailer']) {
    const { files, old, journal } = await leaveCompleteJournal();
    const bytes = await fsp.readFile(journal);
    const at = where === 'header' ? 20 : where === 'body' ? Math.floor(bytes.length / 2) : bytes.length - 6;
    bytes[at]! ^= 0x01;
    await fsp.writeFile(journal, bytes);
    const { snaps, recovery, left } = await reopen(files);
    assert.equal(recovery[0]!.outcome, 'bad-crc', where);
    assert.deepEqual(snaps, old);
    assert.deepEqual(left, []);
    await removeDir(dir);
  }
});

test('recovery, journal naming a file that no longer exists: that file is skipped, the others redone', async () => {
  const { files, next } = await leaveCompleteJournal();
  await fsp.unlink(files[0]!);
  const { snaps, recovery, left } = await reopen(files);
  assert.equal(recovery[0]!.outcome, 'redone');
  assert.deepEqual(recovery[0]!.skippedFiles, [files[0]]);
  assert.equal(snaps[0], undefined);
  assert.deepEqual(snaps[1], next[1]);
  assert.deepEqual(left, []);
});

/** Recomputes the body and trailer CRCs of a journal after an edit. */
function reseal(bytes: Buffer): void {
  const t = bytes.length - JOURNAL_TRAILER_BYTES;
  bytes.writeUInt32LE(crc32(bytes.subarray(0, 40)), 40);
  bytes.writeUInt32LE(crc32(bytes.subarray(0, t)), t + 8);
  bytes.writeUInt32LE(crc32(bytes.subarray(t, t + 12)), t + 12);
}

test('recovery, complete journal that fails its checks: ERR_CHECKPOINT_JOURNAL_CORRUPT and nothing is written', async () => {
  for (const what of ['version', 'image']) {
    const { files, journal } = await leaveCompleteJournal();
    const before = await Promise.all(files.map((f) => fsp.readFile(f)));
    const bytes = await fsp.readFile(journal);
    if (what === 'version') bytes.writeUInt16LE(9, 4);
    else bytes[bytes.length - JOURNAL_TRAILER_BYTES - 100]! ^= 0xff; // inside the last page image
    reseal(bytes);
    await fsp.writeFile(journal, bytes);
    await assert.rejects(openPm(dir!), (e: { code?: string }) => e.code === 'ERR_CHECKPOINT_JOURNAL_CORRUPT', what);
    assert.ok(await fsp.access(journal).then(() => true, () => false), 'the journal is kept');
    const after = await Promise.all(files.map((f) => fsp.readFile(f)));
    assert.deepEqual(after, before, 'no page was written');
    await removeDir(dir);
  }
});

test('recovery can itself be interrupted and run again', async () => {
  const { files, next } = await leaveCompleteJournal();
  const fl = new HookFileLayer();
  let writes = 0;
  fl.beforeWrite = () => {
    if (++writes === 3) throw new Error('crash during redo');
  };
  await assert.rejects(openPm(dir!, {}, { fileLayer: fl }));
  const { snaps, recovery } = await reopen(files);
  assert.equal(recovery[0]!.outcome, 'redone');
  assert.deepEqual(snaps, next);
});
