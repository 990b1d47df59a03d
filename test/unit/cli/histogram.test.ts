import test from 'node:test';
import assert from 'node:assert/strict';
import { BUCKET_COUNT, Histogram, SUB_BUCKETS, VALUE_MAX, bucketOf, bucketRange } from '../../../src/cli/histogram.js';
import { seededRandom } from '../../../src/cli/load.js';

test('every value falls inside the range of its bucket, and buckets are at most ~3 % wide', () => {
  const rnd = seededRandom(7);
  const samples = [0, 1, 63, 64, 65, 127, 128, 129, 1000, 65535, 65536, 2 ** 31 - 1, 2 ** 31, 2 ** 33 + 5, VALUE_MAX];
  for (let i = 0; i < 2000; i++) samples.push(Math.floor(rnd() * 2 ** (1 + Math.floor(rnd() * 35))));
  for (const v of samples) {
    const b = bucketOf(v);
    assert.ok(b >= 0 && b < BUCKET_COUNT, `bucket of ${v} in range`);
    const { low, high } = bucketRange(b);
    assert.ok(low <= v && v <= high, `${v} in [${low}, ${high}]`);
    if (v >= SUB_BUCKETS) assert.ok((high - low + 1) / low <= 1 / 32 + 1e-12, `bucket of ${v} narrow enough`);
  }
  assert.equal(bucketOf(VALUE_MAX), BUCKET_COUNT - 1);
});

test('buckets are contiguous: each starts right after the previous one ends', () => {
  for (let b = 1; b < BUCKET_COUNT; b++) assert.equal(bucketRange(b).low, bucketRange(b - 1).high + 1);
});

test('small values are exact: percentiles of 1..50 are the values themselves', () => {
  const h = new Histogram();
  for (let v = 1; v <= 50; v++) h.record(v);
  assert.equal(h.percentile(50), 25);
  assert.equal(h.percentile(2), 1);
  assert.equal(h.percentile(100), 50);
  assert.equal(h.min, 1);
  assert.equal(h.max, 50);
  assert.equal(h.mean, 25.5);
});

test('percentiles of a uniform 1..100000 are within one bucket (3.2 %) above the truth', () => {
  const h = new Histogram();
  for (let v = 1; v <= 100_000; v++) h.record(v);
  for (const [p, truth] of [[50, 50_000], [90, 90_000], [99, 99_000], [99.9, 99_900]] as const) {
    const got = h.percentile(p);
    assert.ok(got >= truth && got <= truth * (1 + 1 / 31), `p${p} = ${got}, truth ${truth}`);
  }
  assert.equal(h.percentile(100), 100_000);
  assert.equal(h.count, 100_000);
});

test('a skewed distribution: p50 low, p99 catches the slow tail', () => {
  const h = new Histogram();
  for (let i = 0; i < 980; i++) h.record(1_000);
  for (let i = 0; i < 20; i++) h.record(250_000);
  assert.ok(h.percentile(50) >= 1_000 && h.percentile(50) < 1_040);
  assert.ok(h.percentile(99) >= 250_000 && h.percentile(99) <= 250_000 * 1.04);
  assert.equal(h.max, 250_000);
});

test('an empty histogram answers 0, values above VALUE_MAX count in the last bucket with their max kept', () => {
  const h = new Histogram();
  assert.equal(h.percentile(99), 0);
  assert.equal(h.mean, 0);
  assert.equal(h.min, 0);
  h.record(VALUE_MAX * 4);
  assert.equal(h.max, VALUE_MAX * 4);
  assert.equal(h.percentile(50), VALUE_MAX * 4);
  h.record(-5);
  assert.equal(h.min, 0);
});

test('merging two histograms equals recording everything in one', () => {
  const a = new Histogram();
  const b = new Histogram();
  const all = new Histogram();
  const rnd = seededRandom(42);
  for (let i = 0; i < 5000; i++) {
    const v = Math.floor(rnd() * 1e6);
    (i % 2 ? a : b).record(v);
    all.record(v);
  }
  a.merge(b);
  for (const p of [1, 50, 90, 99, 100]) assert.equal(a.percentile(p), all.percentile(p));
  assert.equal(a.count, all.count);
  assert.equal(a.max, all.max);
  assert.equal(a.min, all.min);
});
