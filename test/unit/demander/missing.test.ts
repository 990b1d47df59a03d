// Missing-counter computation: what the historical step asks the supplier for.
import test from 'node:test';
import assert from 'node:assert/strict';
import { appliedRanges, coalesceRanges, intersectRanges, missingFromSupplier, rangeCount, type Range } from '../../../src/demander/missing.js';
import { UpdateCounter } from '../../../src/pagememory/update-counter.js';
import { rng, testSeed } from '../../helpers/tmp.js';

function counterOf(applied: number[]): UpdateCounter {
  const c = new UpdateCounter(200);
  for (const n of applied) c.add(n);
  return c;
}

test('missing counters are those the copy lacks and the supplier has, up to the supplier hwm', () => {
  const local = counterOf([1, 2, 3, 6, 7, 12]); // lacks 4, 5, 8..11, 13..
  const supplier = counterOf([1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14]).toJSON(); // lacks 9 itself
  const missing = missingFromSupplier(local.missing(supplier.hwm), supplier);
  assert.deepEqual(missing, [[4, 5], [8, 8], [10, 11], [13, 14]]);
  assert.equal(rangeCount(missing), 7);
});

test('nothing is missing when the copy is ahead of or equal to the supplier', () => {
  const sup = counterOf([1, 2, 3]).toJSON();
  assert.deepEqual(missingFromSupplier(counterOf([1, 2, 3, 4, 5]).missing(sup.hwm), sup), []);
  assert.deepEqual(missingFromSupplier(counterOf([1, 2, 3]).missing(sup.hwm), sup), []);
  const empty = new UpdateCounter(8).toJSON();
  assert.deepEqual(missingFromSupplier(new UpdateCounter(8).missing(empty.hwm), empty), []);
});

test('missing counters agree with a brute-force set computation (seeded)', () => {
  const seed = testSeed();
  const r = rng(seed);
  for (let round = 0; round < 200; round++) {
    const hwm = 1 + Math.floor(r() * 60);
    const localSet = new Set<number>();
    const supSet = new Set<number>();
    for (let c = 1; c <= hwm; c++) {
      if (r() < 0.7) localSet.add(c);
      if (r() < 0.85) supSet.add(c);
    }
    const local = counterOf([...localSet]);
    const sup = counterOf([...supSet]).toJSON();
    const got = missingFromSupplier(local.missing(sup.hwm), sup);
    const want: number[] = [];
    for (let c = 1; c <= sup.hwm; c++) if (!localSet.has(c) && supSet.has(c)) want.push(c);
    const flat = got.flatMap(([f, t]) => Array.from({ length: t - f + 1 }, (_, i) => f + i));
    assert.deepEqual(flat, want, `seed ${seed} round ${round}`);
  }
});

test('applied ranges, intersections and coalescing of range lists', () => {
  assert.deepEqual(appliedRanges({ lwm: 0, hwm: 0, gaps: [] }), []);
  assert.deepEqual(appliedRanges({ lwm: 4, hwm: 9, gaps: [[6, 7], [9, 9]] }), [[1, 4], [6, 7], [9, 9]]);
  const a: Range[] = [[1, 5], [8, 10], [20, 30]];
  const b: Range[] = [[3, 9], [25, 25], [29, 40]];
  assert.deepEqual(intersectRanges(a, b), [[3, 5], [8, 9], [25, 25], [29, 30]]);
  assert.deepEqual(intersectRanges(a, []), []);
  assert.deepEqual(coalesceRanges([[1, 2], [5, 6], [100, 100]], 2), [[1, 6], [100, 100]]);
  assert.deepEqual(coalesceRanges([[1, 2], [5, 6]], 1), [[1, 2], [5, 6]]);
});
