import test from 'node:test';
import assert from 'node:assert/strict';
import {
  UpdateCounter,
  UPDATE_COUNTER_HEADER_BYTES,
  UPDATE_COUNTER_RANGE_BYTES,
} from '../../../src/pagememory/update-counter.js';
import { ErrorCode, isPtnError } from '../../../src/errors.js';
import { seededRandom } from '../../../src/util/seeded-random.js';

const prng = seededRandom;

function throwsCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => isPtnError(err) && err.code === code);
}

function rawState(lwm: number, hwm: number, ranges: Array<[number, number]>, version = 1): Buffer {
  const buf = Buffer.alloc(UPDATE_COUNTER_HEADER_BYTES + UPDATE_COUNTER_RANGE_BYTES * ranges.length);
  buf.writeUInt8(version, 0);
  buf.writeBigUInt64LE(BigInt(lwm), 1);
  buf.writeBigUInt64LE(BigInt(hwm), 9);
  buf.writeUInt16LE(ranges.length, 17);
  ranges.forEach(([f, t], i) => {
    buf.writeBigUInt64LE(BigInt(f), 19 + 16 * i);
    buf.writeBigUInt64LE(BigInt(t), 27 + 16 * i);
  });
  return buf;
}

test('a fresh counter has lwm 0, hwm 0 and no gaps', () => {
  const c = new UpdateCounter(4);
  assert.equal(c.lwm, 0);
  assert.equal(c.hwm, 0);
  assert.deepEqual(c.gaps(), []);
  assert.equal(c.has(1), false);
  assert.deepEqual(c.missing(3), [[1, 3]]);
  assert.deepEqual(c.toJSON(), { lwm: 0, hwm: 0, gaps: [] });
});

test('in-order adds advance lwm and keep no ranges', () => {
  const c = new UpdateCounter(2);
  for (let i = 1; i <= 100; i++) assert.equal(c.add(i), true);
  assert.equal(c.lwm, 100);
  assert.equal(c.hwm, 100);
  assert.deepEqual(c.gaps(), []);
  assert.equal(c.has(100), true);
  assert.equal(c.has(101), false);
});

test('out-of-order adds make ranges and filling the first gap advances lwm over them', () => {
  const c = new UpdateCounter(8);
  c.add(3);
  c.add(5);
  c.add(6);
  assert.equal(c.lwm, 0);
  assert.equal(c.hwm, 6);
  assert.deepEqual(c.gaps(), [[3, 3], [5, 6]]);
  assert.equal(c.has(4), false);
  assert.equal(c.has(5), true);
  c.add(1);
  assert.equal(c.lwm, 1);
  c.add(2); // lwm 2 touches [3,3] → lwm 3
  assert.equal(c.lwm, 3);
  assert.deepEqual(c.gaps(), [[5, 6]]);
  c.add(4); // lwm 4 touches [5,6] → lwm 6
  assert.equal(c.lwm, 6);
  assert.equal(c.hwm, 6);
  assert.deepEqual(c.gaps(), []);
});

test('an add merges with the range on its left, on its right, or both', () => {
  const c = new UpdateCounter(8);
  c.add(10);
  c.add(11); // extends left neighbour [10,10]
  assert.deepEqual(c.gaps(), [[10, 11]]);
  c.add(9); // extends right neighbour [10,11]
  assert.deepEqual(c.gaps(), [[9, 11]]);
  c.add(13);
  assert.deepEqual(c.gaps(), [[9, 11], [13, 13]]);
  c.add(12); // bridges both
  assert.deepEqual(c.gaps(), [[9, 13]]);
  assert.equal(c.lwm, 0);
  assert.equal(c.hwm, 13);
});

test('a duplicate add returns false and changes nothing', () => {
  const c = new UpdateCounter(8);
  c.add(1);
  c.add(5);
  c.add(6);
  const before = c.toJSON();
  assert.equal(c.add(1), false); // at or below lwm
  assert.equal(c.add(5), false); // range start
  assert.equal(c.add(6), false); // range end
  assert.deepEqual(c.toJSON(), before);
});

test('going over gapsMax throws ERR_COUNTER_GAPS_OVERFLOW and leaves the state unchanged', () => {
  const c = new UpdateCounter(3);
  c.add(3);
  c.add(5);
  c.add(7);
  const before = c.toJSON();
  throwsCode(() => c.add(9), ErrorCode.ERR_COUNTER_GAPS_OVERFLOW);
  assert.deepEqual(c.toJSON(), before);
  assert.equal(c.has(9), false);
  throwsCode(() => c.addRange(20, 30), ErrorCode.ERR_COUNTER_GAPS_OVERFLOW);
  assert.deepEqual(c.toJSON(), before);
  // Adds that merge still work at the limit.
  assert.equal(c.add(8), true);
  assert.equal(c.add(4), true);
  assert.deepEqual(c.gaps(), [[3, 5], [7, 8]]);
  assert.equal(c.add(9), true); // joins [7,8]
  c.add(1);
  c.add(2);
  assert.equal(c.lwm, 5);
  assert.deepEqual(c.gaps(), [[7, 9]]);
});

test('addRange merges overlapping and touching ranges and folds into lwm', () => {
  const c = new UpdateCounter(8);
  c.add(5);
  c.add(10);
  c.add(20);
  c.addRange(6, 9); // touches [5,5] and [10,10]
  assert.deepEqual(c.gaps(), [[5, 10], [20, 20]]);
  c.addRange(15, 25); // overlaps [20,20]
  assert.deepEqual(c.gaps(), [[5, 10], [15, 25]]);
  c.addRange(3, 3);
  assert.deepEqual(c.gaps(), [[3, 3], [5, 10], [15, 25]]);
  c.addRange(1, 12); // from lwm+1 over two ranges: lwm jumps
  assert.equal(c.lwm, 12);
  assert.deepEqual(c.gaps(), [[15, 25]]);
  c.addRange(2, 8); // entirely at or below lwm: no-op
  assert.equal(c.lwm, 12);
  c.addRange(10, 14); // starts below lwm, reaches the next range
  assert.equal(c.lwm, 25);
  assert.deepEqual(c.gaps(), []);
  c.addRange(30, 30);
  c.addRange(26, 29);
  assert.equal(c.lwm, 30);
});

test('missing lists the holes up to a bound', () => {
  const c = new UpdateCounter(8);
  c.add(1);
  c.add(2);
  c.add(4);
  c.addRange(7, 9);
  assert.deepEqual(c.missing(12), [[3, 3], [5, 6], [10, 12]]);
  assert.deepEqual(c.missing(9), [[3, 3], [5, 6]]);
  assert.deepEqual(c.missing(5), [[3, 3], [5, 5]]);
  assert.deepEqual(c.missing(2), []);
  assert.deepEqual(c.missing(0), []);
  assert.deepEqual(c.missing(8), [[3, 3], [5, 6]]);
});

test('encode/decode round-trips the state and the size matches the layout', () => {
  const c = new UpdateCounter(5);
  c.addRange(1, 41);
  c.add(50);
  c.addRange(60, 2 ** 40);
  c.add(Number.MAX_SAFE_INTEGER);
  const buf = c.encode();
  assert.equal(buf.length, UPDATE_COUNTER_HEADER_BYTES + 3 * UPDATE_COUNTER_RANGE_BYTES);
  assert.equal(UPDATE_COUNTER_HEADER_BYTES, 19);
  assert.equal(UpdateCounter.encodedBytesMax(5), 19 + 5 * 16);
  const d = UpdateCounter.decode(buf, 5);
  assert.deepEqual(d.toJSON(), c.toJSON());
  assert.equal(d.hwm, Number.MAX_SAFE_INTEGER);
  assert.deepEqual(new UpdateCounter(3).encode(), rawState(0, 0, []));
  assert.deepEqual(buf, rawState(41, Number.MAX_SAFE_INTEGER, [[50, 50], [60, 2 ** 40], [Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER]]));
});

test('decode refuses every inconsistency with ERR_META_CORRUPT', () => {
  const bad: Array<[string, Buffer]> = [
    ['shorter than the header', Buffer.alloc(10)],
    ['unknown version', rawState(0, 0, [], 2)],
    ['version 0', rawState(0, 0, [], 0)],
    ['more ranges than gapsMax', rawState(0, 9, [[3, 3], [5, 5], [7, 7], [9, 9]])],
    ['truncated ranges', rawState(0, 5, [[3, 3], [5, 5]]).subarray(0, 19 + 20)],
    ['trailing bytes', Buffer.concat([rawState(0, 3, [[3, 3]]), Buffer.alloc(1)])],
    ['reversed range', rawState(0, 5, [[5, 4]])],
    ['range adjacent to lwm', rawState(4, 7, [[5, 7]])],
    ['range at or below lwm', rawState(4, 7, [[3, 7]])],
    ['unsorted ranges', rawState(0, 5, [[8, 9], [3, 5]])],
    ['overlapping ranges', rawState(0, 9, [[3, 6], [5, 9]])],
    ['adjacent ranges', rawState(0, 9, [[3, 5], [6, 9]])],
    ['hwm above the last range', rawState(0, 10, [[3, 5]])],
    ['hwm below the last range', rawState(0, 4, [[3, 5]])],
    ['hwm differs from lwm without ranges', rawState(7, 8, [])],
  ];
  for (const [name, buf] of bad) {
    assert.throws(
      () => UpdateCounter.decode(buf, 3),
      (err: unknown) => isPtnError(err) && err.code === ErrorCode.ERR_META_CORRUPT,
      name,
    );
  }
  const big = rawState(0, 0, []);
  big.writeUInt32LE(0x20_0000, 5); // lwm high word → 2^53
  big.writeUInt32LE(0x20_0000, 13);
  throwsCode(() => UpdateCounter.decode(big, 3), ErrorCode.ERR_META_CORRUPT);
  // The same bytes with valid fields decode fine (the table above fails for its own reason only).
  assert.equal(UpdateCounter.decode(rawState(4, 9, [[6, 6], [8, 9]]), 3).lwm, 4);
});

test('clone is independent of the original', () => {
  const c = new UpdateCounter(4);
  c.add(2);
  const d = c.clone();
  d.add(1);
  d.add(5);
  assert.deepEqual(c.toJSON(), { lwm: 0, hwm: 2, gaps: [[2, 2]] });
  assert.deepEqual(d.toJSON(), { lwm: 2, hwm: 5, gaps: [[5, 5]] });
});

test('non-positive or unsafe counters are programmer errors', () => {
  const c = new UpdateCounter(4);
  for (const bad of [0, -1, 1.5, Number.MAX_SAFE_INTEGER + 1, NaN]) {
    assert.throws(() => c.add(bad), { name: 'AssertionError' });
    assert.throws(() => c.has(bad), { name: 'AssertionError' });
  }
  assert.throws(() => c.addRange(5, 4), { name: 'AssertionError' });
  assert.throws(() => new UpdateCounter(0), { name: 'AssertionError' });
});

test('random adds and addRanges agree with a Set model (seeded)', () => {
  const seed = Number(process.env.PTN_SEED ?? Date.now() % 1_000_000);
  const rnd = prng(seed);
  try {
    for (let round = 0; round < 30; round++) {
      const gapsMax = 1 + Math.floor(rnd() * 12);
      const space = 20 + Math.floor(rnd() * 300);
      const c = new UpdateCounter(gapsMax);
      const model = new Set<number>();
      for (let op = 0; op < 400; op++) {
        const snapshot = c.toJSON();
        if (rnd() < 0.8) {
          const x = 1 + Math.floor(rnd() * space);
          try {
            const added = c.add(x);
            assert.equal(added, !model.has(x), `add(${x}) result`);
            model.add(x);
          } catch (err) {
            if (!isPtnError(err, ErrorCode.ERR_COUNTER_GAPS_OVERFLOW)) throw err;
            assert.deepEqual(c.toJSON(), snapshot, 'overflow changed the state');
          }
        } else {
          const from = 1 + Math.floor(rnd() * space);
          const to = from + Math.floor(rnd() * 10);
          try {
            c.addRange(from, to);
            for (let x = from; x <= to; x++) model.add(x);
          } catch (err) {
            if (!isPtnError(err, ErrorCode.ERR_COUNTER_GAPS_OVERFLOW)) throw err;
            assert.deepEqual(c.toJSON(), snapshot, 'overflow changed the state');
          }
        }
        checkAgainstModel(c, model, space + 12, gapsMax);
      }
      const back = UpdateCounter.decode(c.encode(), gapsMax);
      assert.deepEqual(back.toJSON(), c.toJSON());
    }
  } catch (err) {
    console.error(`update-counter random test failed with seed ${seed} (rerun with PTN_SEED=${seed})`);
    throw err;
  }
});

function checkAgainstModel(c: UpdateCounter, model: Set<number>, upTo: number, gapsMax: number): void {
  let lwm = 0;
  while (model.has(lwm + 1)) lwm++;
  assert.equal(c.lwm, lwm, 'lwm');
  assert.equal(c.hwm, model.size === 0 ? 0 : Math.max(...model), 'hwm');
  for (let x = 1; x <= upTo; x++) assert.equal(c.has(x), model.has(x), `has(${x})`);
  const ranges: Array<[number, number]> = [];
  for (let x = lwm + 1; x <= upTo; x++) {
    if (!model.has(x)) continue;
    const last = ranges[ranges.length - 1];
    if (last && last[1] === x - 1) last[1] = x;
    else ranges.push([x, x]);
  }
  assert.deepEqual(c.gaps(), ranges, 'gaps');
  assert.ok(ranges.length <= gapsMax);
  const missing: Array<[number, number]> = [];
  for (let x = lwm + 1; x <= upTo; x++) {
    if (model.has(x)) continue;
    const last = missing[missing.length - 1];
    if (last && last[1] === x - 1) last[1] = x;
    else missing.push([x, x]);
  }
  assert.deepEqual(c.missing(upTo), missing, 'missing');
}
