// Opens a temp copy of the committed v1 WAL (test/fixtures/wal-v1, made by test/fixtures/make-wal-v1.ts):
// a format change that breaks old files fails here.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { NodeWal } from '../../../src/wal/node-wal.js';
import type { WalRecord } from '../../../src/wal/record.js';
import { FIXTURE_CLUSTER, FIXTURE_WAL_CONFIG } from '../../fixtures/make-wal-v1.js';
import { collect, counters, rmDir, tempDir } from './helpers.js';

const FIXTURE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../fixtures/wal-v1');

let dir: string;
before(async () => {
  dir = await tempDir();
  await fs.cp(FIXTURE, dir, { recursive: true });
});
after(async () => {
  await rmDir(dir);
});

const open = () => NodeWal.open({ dir, clusterId: FIXTURE_CLUSTER, config: FIXTURE_WAL_CONFIG });

function describe(r: WalRecord): string {
  switch (r.type) {
    case 'put':
    case 'remove':
      return `${r.type} ${r.cacheId}/${r.partition}/${r.counter}`;
    case 'partitionDestroy':
      return `destroy ${r.cacheId}/${r.partition}`;
    case 'cacheDrop':
      return `drop ${r.cacheId}`;
    default:
      return `${r.type} ${r.checkpointId}`;
  }
}

test('the v1 fixture opens, recovers its last completed checkpoint and replays the expected records', async () => {
  assert.deepEqual((await fs.readdir(dir)).sort(), ['0000000000000002.wal', '0000000000000003.wal', '0000000000000004.wal', 'history.floors']);
  const wal = await open();
  try {
    assert.deepEqual(wal.recovery, { lastCheckpoint: { checkpointId: 1, replayFrom: { segment: 3, offset: 1016 } } });
    const replay = await collect(wal.replay());
    const expected = [
      'checkpointBegin 1',
      'put 1/1/81', 'put 1/2/82', 'put 1/0/84', 'put 1/1/85', // 83 of partition 3 is wiped by the destroy below
      'checkpointEnd 1',
      'remove 1/2/86', 'remove 1/0/88',
      'destroy 1/3', 'put 1/3/100', 'put 1/3/101',
      'drop 2', 'put 2/1/1',
      'checkpointBegin 2',
      ...Array.from({ length: 19 }, (_, i) => `put 1/${(102 + i) % 4}/${102 + i}`),
    ];
    assert.deepEqual(replay.map((x) => describe(x.record)), expected);
    assert.deepEqual(replay[0]!.pointer, { segment: 3, offset: 1016 });
    assert.deepEqual(replay[replay.length - 1]!.pointer, { segment: 4, offset: 1344 });
    const first = replay[1]!.record;
    assert.equal(first.type, 'put');
    if (first.type === 'put') {
      assert.equal(first.key, 'key-81');
      assert.equal(first.valueKind, 1);
      assert.deepEqual(JSON.parse(first.value.toString('utf8')), { id: 81, city: 'Oslo', pad: 'x'.repeat(80) });
    }
  } finally {
    await wal.close();
  }
});

test('the v1 fixture keeps its history floors and serves the history it still has', async () => {
  const wal = await open();
  try {
    assert.equal(wal.historyAvailableFrom(1, 0), 48);
    assert.equal(wal.historyAvailableFrom(1, 3), 99);
    assert.equal(wal.historyAvailableFrom(2, 0), Infinity);
    assert.equal(wal.historyAvailableFrom(2, 1), 0);
    assert.throws(() => wal.history(1, 0, 47, 200), { code: 'ERR_WAL_HISTORY_GONE' });
    const h = counters(await collect(wal.history(1, 0, 48, 200)));
    const expected = [...Array.from({ length: 8 }, (_, i) => 52 + 4 * i), 84, 88, 104, 108, 112, 116, 120];
    assert.deepEqual(h, expected);
  } finally {
    await wal.close();
  }
});

test('a copy of the v1 fixture takes new appends that survive a reopen', async () => {
  const wal = await open();
  const p = await wal.append({ type: 'put', cacheId: 1, partition: 0, counter: 121, key: 'new', valueKind: 0, value: Buffer.from('v') });
  assert.deepEqual(p, { segment: 4, offset: 1501 });
  await wal.close();
  const again = await open();
  try {
    const replay = await collect(again.replay());
    assert.deepEqual(replay[replay.length - 1], { pointer: p, record: { type: 'put', cacheId: 1, partition: 0, counter: 121, key: 'new', valueKind: 0, value: Buffer.from('v') } });
  } finally {
    await again.close();
  }
});
