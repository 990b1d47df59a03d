// The store hook the supplier arms snapshots with (store.snapshotCheckpoint, Checkpointer
// atNextCheckpointEnd): armed at the end of a checkpoint that captured after the request, when
// the file holds exactly the committed state; resolved once that checkpoint completed.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { ErrorCode } from '../../../src/errors.js';
import { CACHE_ID, makeFixture } from './helpers.js';

async function put(f: Awaited<ReturnType<typeof makeFixture>>, key: string, partition = 0): Promise<number> {
  const u = { cacheId: CACHE_ID, partition, counter: 0, key, op: 'put' as const, valueKind: 0, value: Buffer.alloc(300, 5) };
  await f.store.apply(u, { assign: true });
  return u.counter;
}

test('a snapshot requested while a checkpoint runs is armed by the next one, which sees later writes', async (t) => {
  const f = await makeFixture(t);
  for (let i = 0; i < 200; i++) await put(f, `a${i}`);
  const running = f.store.checkpoint('running');
  const armedAt: number[] = [];
  const snap = f.store.snapshotCheckpoint(CACHE_ID, 0, (ps) => {
    armedAt.push(f.store.stats().checkpoints);
    return ps.committed();
  });
  const last = await put(f, 'late');
  const first = await running;
  const committed = await snap;
  assert.equal(armedAt.length, 1);
  assert.ok(armedAt[0]! >= 1, 'armed after the running checkpoint completed');
  assert.ok(committed.checkpointId > first.checkpointId || committed.counterHwm === last);
  assert.equal(committed.counterHwm, last, 'the write made after the request is in the armed state');
});

test('at the arm the file on disk is exactly the committed state', async (t) => {
  const f = await makeFixture(t);
  for (let i = 0; i < 300; i++) await put(f, `k${i}`);
  const file = f.store.partitionPath(CACHE_ID, 0);
  const { committed, image } = await f.store.snapshotCheckpoint(CACHE_ID, 0, (ps) => {
    // Synchronous read on purpose: nothing may run between the checkpoint end and the arm.
    return { committed: ps.committed(), image: readFileNow(file) };
  });
  assert.equal(image.length, committed.fileBytes);
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

function readFileNow(p: string): Buffer {
  // eslint-disable-next-line no-restricted-syntax -- a synchronous read is the point of this check
  return readFileSyncImpl(p);
}

import { readFileSync as readFileSyncImpl } from 'node:fs';
