import test from 'node:test';
import assert from 'node:assert/strict';
import { TokenBucket } from '../../../src/cli/token-bucket.js';

/** A fake clock: sleeping advances it exactly by the requested time. */
function fakeTime() {
  let now = 1_000;
  return {
    clock: () => now,
    sleep: async (ms: number) => {
      now += ms;
    },
    advance: (ms: number) => {
      now += ms;
    },
    get now() {
      return now;
    },
  };
}

test('a full bucket gives its burst at once, then one token per 1/rate seconds', () => {
  const t = fakeTime();
  const b = new TokenBucket(100, 5, t.clock, t.sleep);
  for (let i = 0; i < 5; i++) assert.equal(b.tryTake(), 0);
  assert.equal(b.tryTake(), 10); // 100/s → 10 ms for the next token
  t.advance(4);
  assert.ok(Math.abs(b.tryTake() - 6) < 1e-9);
  t.advance(6);
  assert.equal(b.tryTake(), 0);
  assert.equal(b.tryTake(), 10);
});

test('take() paces to the rate: over 2 simulated seconds exactly rate*2 + burst operations pass', async () => {
  const t = fakeTime();
  const rate = 250;
  const burst = 10;
  const b = new TokenBucket(rate, burst, t.clock, t.sleep);
  const start = t.now;
  let ops = 0;
  while (t.now - start <= 2_000) {
    assert.equal(await b.take(), true);
    if (t.now - start <= 2_000) ops++;
  }
  assert.equal(ops, rate * 2 + burst);
});

test('idle time refills no more than the burst', () => {
  const t = fakeTime();
  const b = new TokenBucket(1_000, 3, t.clock, t.sleep);
  for (let i = 0; i < 3; i++) b.tryTake();
  t.advance(60_000);
  let free = 0;
  while (b.tryTake() === 0) free++;
  assert.equal(free, 3);
});

test('a fractional rate waits the right time (0.5 ops/s → 2000 ms)', () => {
  const t = fakeTime();
  const b = new TokenBucket(0.5, 1, t.clock, t.sleep);
  assert.equal(b.tryTake(), 0);
  assert.equal(b.tryTake(), 2_000);
});

test('take() resolves false without a token once the signal aborts', async () => {
  const t = fakeTime();
  const b = new TokenBucket(1, 1, t.clock, async (ms) => {
    t.advance(ms / 2);
    ac.abort();
  });
  const ac = new AbortController();
  assert.equal(await b.take(ac.signal), true);
  assert.equal(await b.take(ac.signal), false);
});

test('a clock that steps backwards never adds tokens', () => {
  let now = 5_000;
  const b = new TokenBucket(10, 1, () => now, async () => {});
  assert.equal(b.tryTake(), 0);
  now = 1_000;
  assert.ok(b.tryTake() > 0);
});

test('bad parameters are rejected', () => {
  assert.throws(() => new TokenBucket(0, 1), RangeError);
  assert.throws(() => new TokenBucket(10, 0.5), RangeError);
});
