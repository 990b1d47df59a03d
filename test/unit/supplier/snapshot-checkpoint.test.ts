// The store hook the supplier arms snapshots with (store.snapshotCheckpoint, Checkpointer
// atNextCheckpointEnd): armed at the end of a checkpoint that captured after the request, when
// the file holds exactly the committed state; resolved once that checkpoint completed.
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import { ErrorCode } from '../../../src/errors.js';
import { decodeMetaPage } from '../../../src/pagememory/meta-page.js';
import { UpdateCounter } from '../../../src/pagememory/update-counter.js';
import { CACHE_ID, makeFixture } from './helpers.js';

async function put(f: Awaited<ReturnType<typeof makeFixture>>, key: string, partition = 0): Promise<number> {
  const u = { cacheId: CACHE_ID, partition, counter: 0, key, op: 'put' as const, valueKind: 0, value: Buffer.alloc(300, 5) };
  await f.store.apply(u, { assign: true });
  return u.counter;
}

test('a snapshot requested while a checkpoint runs is armed by the next one, which sees later writes', async (t) => {
  const f = await makeFixture(t);
  for (let i = 0; i < 200; i++) await put(f, `a${i}`);
  const before = f.store.stats().checkpoints;
  const running = f.store.checkpoint('running');
  const armedAt: number[] = [];
  const snap = f.store.snapshotCheckpoint(CACHE_ID, 0, (ps) => {
    armedAt.push(f.store.stats().checkpoints);
    return ps.committed();
  });
  const last = await put(f, 'late');
  const first = await running;
  const committed = await snap;
  assert.deepEqual(armedAt, [before + 1], 'armed by the checkpoint after the running one');
  assert.ok(committed.checkpointId > first.checkpointId);
  assert.equal(committed.counterHwm, last, 'the write made after the request is in the armed state');
  assert.ok(f.store.stats().checkpoints >= before + 2, 'resolved once that checkpoint completed');
});

test('at the arm the file on disk is exactly the committed state', async (t) => {
  const f = await makeFixture(t);
  for (let i = 0; i < 300; i++) await put(f, `k${i}`);
  const file = f.store.partitionPath(CACHE_ID, 0);
  const { committed, image } = await f.store.snapshotCheckpoint(CACHE_ID, 0, (ps) => {
    // A synchronous read on purpose: it sees the file exactly at the arm.
    return { committed: ps.committed(), image: readFileSync(file) };
  });
  assert.equal(image.length, committed.fileBytes);
  const meta = decodeMetaPage(image.subarray(0, 4096), f.config.storage.counterGapsMax);
  assert.equal(meta.pageCount * meta.pageSize, committed.fileBytes);
  assert.equal(meta.checkpointId, committed.checkpointId);
  assert.equal(UpdateCounter.decode(meta.counterState, f.config.storage.counterGapsMax).hwm, committed.counterHwm);
  assert.equal(committed.counterHwm, 300);
  for (let i = 300; i < 600; i++) await put(f, `k${i}`);
  await f.store.checkpoint('later');
  assert.notDeepEqual(await fs.readFile(file), image, 'later checkpoints change the file (the delta keeps the old pages)');
});

test('a snapshot of a partition that is not open is ERR_PARTITION_NOT_FOUND', async (t) => {
  const f = await makeFixture(t);
  await f.store.destroyPartition(CACHE_ID, 1);
  await assert.rejects(f.store.snapshotCheckpoint(CACHE_ID, 1, () => 1), { code: ErrorCode.ERR_PARTITION_NOT_FOUND });
  // The checkpointer is fine afterwards.
  assert.equal(await f.store.snapshotCheckpoint(CACHE_ID, 0, () => 'armed'), 'armed');
});

// store.snapshotCommitted (Checkpointer.atCommittedState): no new checkpoint when the updates since
// the last one are few; the file is still exactly the committed state at the arm.
test('a snapshot with few updates since the last checkpoint arms at its committed state without a checkpoint', async (t) => {
  const f = await makeFixture(t);
  for (let i = 0; i < 400; i++) await put(f, `k${i}`);
  await f.store.checkpoint('base');
  for (let i = 0; i < 10; i++) await put(f, `late${i}`);
  const before = f.store.stats().checkpoints;
  const file = f.store.partitionPath(CACHE_ID, 0);
  const { committed, image, liveHwm } = await f.store.snapshotCommitted(CACHE_ID, 0, (ps) => ({
    committed: ps.committed(),
    image: readFileSync(file),
    liveHwm: ps.counter.hwm,
  }));
  assert.equal(f.store.stats().checkpoints, before, 'no checkpoint ran');
  assert.equal(committed.counterHwm, 400, 'the image is the last checkpoint, without the 10 later writes');
  assert.equal(liveHwm, 410);
  assert.equal(image.length, committed.fileBytes);
  const meta = decodeMetaPage(image.subarray(0, 4096), f.config.storage.counterGapsMax);
  assert.equal(UpdateCounter.decode(meta.counterState, f.config.storage.counterGapsMax).hwm, 400);
});

test('a snapshot whose partition changed much since the last checkpoint, or never had one, takes a checkpoint', async (t) => {
  const f = await makeFixture(t);
  for (let i = 0; i < 100; i++) await put(f, `k${i}`);
  const never = await f.store.snapshotCommitted(CACHE_ID, 0, (ps) => ps.committed());
  assert.equal(never.counterHwm, 100, 'never checkpointed: a snapshot checkpoint holds every write');
  for (let i = 100; i < 200; i++) await put(f, `k${i}`);
  const before = f.store.stats().checkpoints;
  const much = await f.store.snapshotCommitted(CACHE_ID, 0, (ps) => ps.committed());
  assert.equal(much.counterHwm, 200, 'as many updates as entries since: a checkpoint');
  assert.ok(f.store.stats().checkpoints > before);
});

test('a committed-state snapshot asked while a checkpoint writes is armed once its pages are on disk', async (t) => {
  const f = await makeFixture(t);
  for (let i = 0; i < 300; i++) await put(f, `k${i}`);
  await f.store.checkpoint('base');
  for (let i = 0; i < 20; i++) await put(f, `w${i}`);
  const file = f.store.partitionPath(CACHE_ID, 0);
  const running = f.store.checkpoint('running'); // captures at once: its write is in progress below
  const armed = f.store.snapshotCommitted(CACHE_ID, 0, (ps) => ({ committed: ps.committed(), image: readFileSync(file) }));
  const late = await put(f, 'late');
  const first = await running;
  const { committed, image } = await armed;
  assert.equal(committed.checkpointId, first.checkpointId, 'armed at the end of the running checkpoint, not a later one');
  assert.equal(committed.counterHwm, 320);
  assert.ok(late > committed.counterHwm, 'the write after the capture is not in the image');
  const meta = decodeMetaPage(image.subarray(0, 4096), f.config.storage.counterGapsMax);
  assert.equal(meta.checkpointId, first.checkpointId, 'the file held exactly that checkpoint at the arm');
  assert.equal(image.length, committed.fileBytes);
});
