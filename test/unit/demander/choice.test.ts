// The per-partition choices: which supplier, which path (and why).
import test from 'node:test';
import assert from 'node:assert/strict';
import { chooseSupplier, choosePath } from '../../../src/demander/choice.js';
import type { PartitionInfo } from '../../../src/demander/protocol.js';

test('the least busy supplier is chosen, ties broken by partition number, failed ones avoided while others exist', () => {
  const owners = ['c', 'a', 'b'];
  assert.equal(chooseSupplier(owners, new Map(), 0), 'a');
  assert.equal(chooseSupplier(owners, new Map(), 1), 'b');
  assert.equal(chooseSupplier(owners, new Map(), 2), 'c');
  assert.equal(chooseSupplier(owners, new Map(), 3), 'a');
  assert.equal(chooseSupplier(owners, new Map([['a', 2], ['b', 1]]), 0), 'c');
  assert.equal(chooseSupplier(owners, new Map([['a', 1], ['b', 1], ['c', 1]]), 1), 'b');
  assert.equal(chooseSupplier(owners, new Map(), 0, new Set(['a'])), 'b');
  assert.equal(chooseSupplier(['a'], new Map(), 0, new Set(['a'])), 'a', 'the only owner is used even after a failure');
  assert.equal(chooseSupplier([], new Map(), 0), undefined);
  // Several partitions started one after the other spread over the suppliers.
  const busy = new Map<string, number>();
  for (let p = 0; p < 6; p++) {
    const s = chooseSupplier(owners, busy, p)!;
    busy.set(s, (busy.get(s) ?? 0) + 1);
  }
  assert.deepEqual([...busy.values()], [2, 2, 2]);
});

test('the path is historical for a close local copy, full for a small file, file otherwise; a forced path wins', () => {
  const info = (hwm: number, fileBytes: number, from = 0): PartitionInfo => ({ entryCount: 1, fileBytes, pageSize: 4096, counter: { lwm: hwm, hwm, gaps: [] }, historyAvailableFrom: from });
  const base = { fileMinBytes: 1 << 20, historicalMaxCounterGap: 100 };
  assert.equal(choosePath({ ...base, local: { lwm: 950, hwm: 950, entryCount: 10 }, supplier: info(1000, 1 << 30) }).path, 'historical');
  assert.equal(choosePath({ ...base, local: { lwm: 1000, hwm: 1000, entryCount: 10 }, supplier: info(1000, 1 << 30) }).path, 'historical', 'up to date');
  assert.equal(choosePath({ ...base, local: { lwm: 850, hwm: 900, entryCount: 10 }, supplier: info(1000, 1 << 30) }).path, 'file', 'too far behind');
  assert.equal(choosePath({ ...base, local: { lwm: 950, hwm: 950, entryCount: 10 }, supplier: info(1000, 1 << 30, 960) }).path, 'file', 'history starts after the local lwm');
  assert.equal(choosePath({ ...base, local: { lwm: 950, hwm: 950, entryCount: 10 }, supplier: info(1000, 1 << 30, Infinity) }).path, 'file', 'no history at all');
  assert.equal(choosePath({ ...base, local: { lwm: 0, hwm: 0, entryCount: 0 }, supplier: info(5, 4096) }).path, 'full');
  assert.equal(choosePath({ ...base, supplier: info(5, 2 << 20) }).path, 'file');
  const forced = choosePath({ ...base, local: { lwm: 950, hwm: 950, entryCount: 10 }, supplier: info(1000, 4096), forced: { path: 'file', reason: 'history gone' } });
  assert.deepEqual(forced, { path: 'file', reason: 'history gone' });
  assert.match(choosePath({ ...base, supplier: info(5, 2 << 20) }).reason, /no local data/);
});
