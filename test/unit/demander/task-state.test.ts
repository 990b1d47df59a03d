// The per-partition state machine: its transition table, and persistence of task records.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { PHASES, TRANSITIONS, canTransition, isTerminal, newTaskRecord, transition, type Phase, type TaskRecord } from '../../../src/demander/task-state.js';
import { TaskStore, taskKey } from '../../../src/demander/task-store.js';
import { realFileLayer } from '../../../src/util/file-layer.js';
import { tempDir } from '../../helpers/tmp.js';

const EXPECTED: Record<Phase, Phase[]> = {
  PENDING: ['STREAMING', 'FILLING', 'HISTORICAL', 'FAILED', 'CANCELLED'],
  STREAMING: ['SWAPPING', 'PENDING', 'FAILED', 'CANCELLED'],
  SWAPPING: ['INDEXING', 'PENDING', 'FAILED', 'CANCELLED'],
  FILLING: ['INDEXING', 'PENDING', 'FAILED', 'CANCELLED'],
  INDEXING: ['REPLAYING', 'PENDING', 'FAILED', 'CANCELLED'],
  REPLAYING: ['HISTORICAL', 'PENDING', 'FAILED', 'CANCELLED'],
  HISTORICAL: ['INDEXING', 'OWNING', 'PENDING', 'FAILED', 'CANCELLED'],
  OWNING: [],
  FAILED: ['PENDING', 'CANCELLED'],
  CANCELLED: [],
};

function recordIn(phase: Phase): TaskRecord {
  const r = newTaskRecord('c', 1, 3, 5, 1000);
  r.phase = phase;
  return r;
}

test('the transition table is exactly the documented one', () => {
  assert.deepEqual(Object.keys(TRANSITIONS).sort(), [...PHASES].sort());
  for (const from of PHASES) assert.deepEqual([...TRANSITIONS[from]].sort(), [...EXPECTED[from]].sort(), from);
});

test('every transition outside the table is refused, every one in it is taken', () => {
  let refused = 0;
  for (const from of PHASES) {
    for (const to of PHASES) {
      const r = recordIn(from);
      if (EXPECTED[from].includes(to)) {
        assert.equal(canTransition(from, to), true);
        transition(r, to, 2000);
        assert.equal(r.phase, to);
        assert.equal(r.phaseTimes[to], 2000);
      } else {
        assert.equal(canTransition(from, to), false, `${from} → ${to}`);
        assert.throws(() => transition(r, to, 2000), { name: 'AssertionError' }, `${from} → ${to}`);
        assert.equal(r.phase, from, 'a refused transition changes nothing');
        refused++;
      }
    }
  }
  assert.equal(refused, PHASES.length * PHASES.length - Object.values(EXPECTED).reduce((n, l) => n + l.length, 0));
});

test('each path is a valid walk of the table ending OWNING; OWNING and CANCELLED are terminal', () => {
  const paths: Record<string, Phase[]> = {
    file: ['STREAMING', 'SWAPPING', 'INDEXING', 'REPLAYING', 'HISTORICAL', 'OWNING'],
    full: ['FILLING', 'INDEXING', 'REPLAYING', 'HISTORICAL', 'OWNING'],
    historical: ['HISTORICAL', 'INDEXING', 'REPLAYING', 'HISTORICAL', 'OWNING'],
    'failover then file': ['STREAMING', 'PENDING', 'STREAMING', 'SWAPPING', 'INDEXING', 'REPLAYING', 'HISTORICAL', 'OWNING'],
    'failed then retried': ['FILLING', 'FAILED', 'PENDING', 'FILLING', 'INDEXING', 'REPLAYING', 'HISTORICAL', 'OWNING'],
  };
  for (const [name, steps] of Object.entries(paths)) {
    const r = newTaskRecord('c', 1, 0, 1, 0);
    let now = 1;
    for (const p of steps) transition(r, p, now++);
    assert.equal(r.phase, 'OWNING', name);
  }
  assert.equal(isTerminal('OWNING'), true);
  assert.equal(isTerminal('CANCELLED'), true);
  assert.equal(PHASES.filter(isTerminal).length, 2);
});

test('going back to PENDING counts a restart and clears the attempt', () => {
  const r = newTaskRecord('c', 1, 0, 1, 0);
  transition(r, 'STREAMING', 1);
  r.transfer = { transferId: 't', tempFile: 'part-1-0-t.ptn', fileBytes: 8192, chunkBytes: 4096, pageSize: 4096, entryCount: 1, counter: { lwm: 3, hwm: 3, gaps: [] }, verifiedOffset: 4096, runningCrc: 9 };
  r.bytesDone = 4096;
  r.expectLwm = 3;
  transition(r, 'PENDING', 2);
  assert.equal(r.restarts, 1);
  assert.equal(r.transfer, undefined);
  assert.equal(r.expectLwm, undefined);
  assert.equal(r.bytesDone, 0);
  assert.deepEqual(r.phaseTimes, { PENDING: 2, STREAMING: 1 });
});

test('a record survives a save and a scan exactly, with its transfer', async (t) => {
  const dir = await tempDir(t);
  const ts = new TaskStore(path.join(dir, 'tmp', 'rebalance'), realFileLayer);
  await ts.open();
  const r = newTaskRecord('cache-a', 4, 17, 9, 123);
  transition(r, 'STREAMING', 456);
  r.path = 'file';
  r.reason = 'no local data';
  r.supplier = 'node-2';
  r.transfer = { transferId: 'abc-1', tempFile: ts.tempFileName(4, 17, 'abc-1'), fileBytes: 1 << 20, chunkBytes: 65536, pageSize: 4096, entryCount: 99, counter: { lwm: 10, hwm: 14, gaps: [[12, 14]] }, verifiedOffset: 65536, runningCrc: 0xdeadbeef };
  r.bytesNotResent = 65536;
  await ts.save(r);
  assert.deepEqual(await ts.load(4, 17), r);
  await fs.writeFile(ts.tempFilePath(r.transfer.tempFile), Buffer.alloc(10));
  await fs.mkdir(ts.tempWalDir(4, 17));
  const scan = await ts.scan();
  assert.deepEqual(scan.records, [r]);
  assert.deepEqual(scan.tempFiles, [r.transfer.tempFile]);
  assert.deepEqual([...scan.tempWals], [[taskKey(4, 17), 'twal-4-17']]);
  assert.deepEqual(scan.unreadable, []);
  r.phase = 'SWAPPING';
  await ts.save(r);
  assert.equal((await ts.load(4, 17))!.phase, 'SWAPPING', 'a save replaces the record');
  await ts.remove(4, 17);
  assert.equal(await ts.load(4, 17), undefined);
});

test('a record with a bad CRC, an unknown version or a foreign shape is reported unreadable, never trusted', async (t) => {
  const dir = await tempDir(t);
  const ts = new TaskStore(dir, realFileLayer);
  await ts.open();
  const r = newTaskRecord('c', 1, 2, 3, 4);
  await ts.save(r);
  const file = ts.recordPath(1, 2);
  const text = await fs.readFile(file, 'utf8');
  await fs.writeFile(file, text.replace('"PENDING"', '"STREAMNG"'));
  assert.equal(await ts.load(1, 2), undefined, 'CRC mismatch');
  await fs.writeFile(file, text.replace('"version":1', '"version":9'));
  assert.equal(await ts.load(1, 2), undefined, 'unknown version');
  await ts.save({ ...r, phase: 'NOPE' as Phase });
  assert.equal(await ts.load(1, 2), undefined, 'unknown phase');
  await fs.writeFile(path.join(dir, 'task-5-6.json.tmp'), 'half');
  const scan = await ts.scan();
  assert.deepEqual(scan.records, []);
  assert.deepEqual(scan.unreadable, ['task-1-2.json']);
  assert.deepEqual(scan.other, ['task-5-6.json.tmp']);
});
