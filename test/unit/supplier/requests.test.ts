// Bad requests get coded errors (the connection stays usable): malformed bodies, unknown
// transfers, offsets the snapshot cannot serve, partitions this node does not own.
import test from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCode } from '../../../src/errors.js';
import { CACHE_ID, makeFixture, openSnapshot, pullChunk } from './helpers.js';

const BAD = ErrorCode.ERR_PROTOCOL_BAD_FRAME;

test('malformed bodies are ERR_PROTOCOL_BAD_FRAME for every method', async (t) => {
  const f = await makeFixture(t);
  const cases: Array<[string, unknown]> = [
    ['partitionInfo', null],
    ['partitionInfo', Buffer.from('x')],
    ['partitionInfo', { cacheId: 'one', partition: 0 }],
    ['partitionInfo', { cacheId: CACHE_ID, partition: -1 }],
    ['partitionInfo', { cacheId: CACHE_ID, partition: 1.5 }],
    ['snapshotOpen', []],
    ['snapshotOpen', { cacheId: CACHE_ID, partition: 0 }],
    ['snapshotOpen', { cacheId: CACHE_ID, partition: 0, transferId: '../../etc/passwd' }],
    ['snapshotOpen', { cacheId: CACHE_ID, partition: 0, transferId: 'x'.repeat(129) }],
    ['snapshotOpen', { cacheId: CACHE_ID, partition: 0, transferId: 'ok', resume: 'yes' }],
    ['snapshotChunk', { transferId: 'ok', offset: 0 }],
    ['snapshotChunk', { transferId: 'ok', offset: 4096, ackedBytes: 8192 }],
    ['snapshotChunk', { transferId: 'ok', offset: 2 ** 60, ackedBytes: 0 }],
    ['snapshotTrailer', 'ok'],
    ['snapshotRelease', { transferId: 'ok', reason: 42 }],
    ['historyBatch', { cacheId: CACHE_ID, partition: 0, fromExclusive: 10, toInclusive: 5, maxBytes: 100 }],
    ['historyBatch', { cacheId: CACHE_ID, partition: 0, fromExclusive: 0, toInclusive: 5, maxBytes: 0 }],
    ['historyBatch', { cacheId: CACHE_ID, partition: 0, fromExclusive: -1, toInclusive: 5, maxBytes: 10 }],
  ];
  for (const [method, body] of cases) {
    await assert.rejects(f.call(method, body as never), { code: BAD }, `${method} ${JSON.stringify(body)}`);
  }
});

test('chunk requests the snapshot cannot serve are refused with a code', async (t) => {
  const f = await makeFixture(t);
  for (let i = 0; i < 500; i++) {
    await f.store.apply({ cacheId: CACHE_ID, partition: 0, counter: 0, key: `k${i}`, op: 'put', valueKind: 0, value: Buffer.alloc(500, 1) }, { assign: true });
  }
  const open = await openSnapshot(f, 'ok');
  await assert.rejects(pullChunk(f, 'nope', 0, 0), { code: ErrorCode.ERR_SNAPSHOT_GONE }, 'unknown transfer');
  await assert.rejects(pullChunk(f, 'ok', 100, 0), { code: BAD }, 'not page aligned');
  await assert.rejects(pullChunk(f, 'ok', open.fileBytes, 0), { code: BAD }, 'at the end');
  await assert.rejects(pullChunk(f, 'ok', open.chunkBytes * 2, open.chunkBytes), { code: BAD }, 'acknowledging bytes never served');
  await assert.rejects(openSnapshot(f, 'nope', 0, true), { code: ErrorCode.ERR_SNAPSHOT_GONE }, 'resume of an unknown transfer');
  await assert.rejects(openSnapshot(f, 'ok', 1, true), { code: BAD }, 'resume naming another partition');
  await assert.rejects(f.call('snapshotTrailer', { transferId: 'nope' }), { code: ErrorCode.ERR_SNAPSHOT_GONE });
  // After all that the transfer still works.
  const c = await pullChunk(f, 'ok', 0, 0);
  assert.equal(c.raw.length, Math.min(open.chunkBytes, open.fileBytes));
});

test('a partition this node does not own is ERR_PARTITION_NOT_OWNED; one that does not exist is ERR_PARTITION_NOT_FOUND', async (t) => {
  const f = await makeFixture(t);
  f.host.publish((topo) => (topo.partitions.c![0]!.copies.self = 'MOVING'));
  const ref = { cacheId: CACHE_ID, partition: 0 };
  await assert.rejects(f.call('partitionInfo', ref), { code: ErrorCode.ERR_PARTITION_NOT_OWNED });
  await assert.rejects(openSnapshot(f, 'x', 0), { code: ErrorCode.ERR_PARTITION_NOT_OWNED });
  await assert.rejects(f.call('historyBatch', { ...ref, fromExclusive: 0, toInclusive: 1, maxBytes: 100 }), { code: ErrorCode.ERR_PARTITION_NOT_OWNED });
  await assert.rejects(f.call('partitionInfo', { cacheId: 99, partition: 0 }), { code: ErrorCode.ERR_PARTITION_NOT_OWNED });
  await assert.rejects(f.call('partitionInfo', { cacheId: CACHE_ID, partition: 2 }), { code: ErrorCode.ERR_PARTITION_NOT_FOUND });
  assert.equal(f.supplier.slots.running, 0, 'a refused open holds no slot');
});

test('partitionInfo describes the OWNING copy', async (t) => {
  const f = await makeFixture(t);
  for (let i = 0; i < 20; i++) await f.store.apply({ cacheId: CACHE_ID, partition: 1, counter: 0, key: `k${i}`, op: 'put', valueKind: 0, value: Buffer.from('v') }, { assign: true });
  await f.store.checkpoint('test');
  const info = (await f.call('partitionInfo', { cacheId: CACHE_ID, partition: 1 })) as Record<string, unknown>;
  assert.deepEqual(info, {
    entryCount: 20,
    fileBytes: f.store.partitionOrUndefined(CACHE_ID, 1)!.fileBytes(),
    pageSize: 4096,
    counter: { lwm: 20, hwm: 20, gaps: [] },
    historyAvailableFrom: 0,
  });
});
