import test from 'node:test';
import assert from 'node:assert/strict';
import { Mismatches, checkDigests, formatVerifyResult } from '../../../src/cli/verify.js';

const copy = (state: string, digest: string, entries = 10) => ({ state, digest, entries });

test('equal OWNING copies pass, RENTING copies are not compared', () => {
  const mm = new Mismatches(10);
  const [parts, copies] = checkDigests(
    {
      cache: 'c',
      partitions: [
        { partition: 0, copies: { a: copy('OWNING', 'd0'), b: copy('OWNING', 'd0'), c: copy('RENTING', 'old', 3) } },
        { partition: 1, copies: { a: copy('OWNING', 'd1'), b: copy('OWNING', 'd1') } },
      ],
    },
    2,
    mm,
  );
  assert.deepEqual([parts, copies, mm.count], [2, 4, 0]);
});

test('different digests, different entry counts, MOVING copies and missing copies are mismatches', () => {
  const mm = new Mismatches(10);
  checkDigests(
    {
      cache: 'c',
      partitions: [
        { partition: 0, copies: { a: copy('OWNING', 'd0'), b: copy('OWNING', 'dX') } },
        { partition: 1, copies: { a: copy('OWNING', 'd1', 10), b: copy('OWNING', 'd1', 11) } },
        { partition: 2, copies: { a: copy('OWNING', 'd2'), b: copy('MOVING', 'd2') } },
        { partition: 3, copies: { a: copy('OWNING', 'd3') } },
      ],
    },
    2,
    mm,
  );
  assert.equal(mm.count, 5); // p0 differ, p1 differ, p2 MOVING + too few OWNING, p3 too few
  assert.match(mm.first[0]!, /^c\/0: copies differ/);
  assert.match(mm.first[2]!, /^c\/2: the copy on b is still MOVING/);
});

test('only the first mismatches are kept, all are counted, and the summary says so', () => {
  const mm = new Mismatches(2);
  for (let i = 0; i < 5; i++) mm.add(`m${i}`);
  assert.equal(mm.count, 5);
  assert.deepEqual(mm.first, ['m0', 'm1']);
  const text = formatVerifyResult({ ok: false, caches: 1, partitions: 4, copiesCompared: 8, mismatchCount: 5, mismatches: mm.first });
  assert.match(text, /FAILED: 5 mismatches \(first 2\):\n  m0\n  m1\n$/);
  assert.match(formatVerifyResult({ ok: true, caches: 1, partitions: 4, copiesCompared: 8, mismatchCount: 0, mismatches: [] }), /OK: every copy agrees/);
});
