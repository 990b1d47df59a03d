// The node-wide byte throttle, on a fake clock: time is counted, never measured.
import test from 'node:test';
import assert from 'node:assert/strict';
import { ByteThrottle, type Clock } from '../../../src/supplier/byte-throttle.js';
import { ErrorCode } from '../../../src/errors.js';

/** A clock whose sleep advances fake time at once (after letting other tasks run). */
function fakeClock(): Clock & { t: number; slept: number } {
  const c = {
    t: 0,
    slept: 0,
    now: () => c.t,
    sleep: async (ms: number) => {
      await new Promise((r) => setImmediate(r));
      c.t += ms;
      c.slept += ms;
    },
  };
  return c;
}

test('sending N bytes at R bytes/s takes N/R seconds of (fake) time, burst excepted', async () => {
  const clock = fakeClock();
  const rate = 1_000_000;
  const th = new ByteThrottle(() => rate, { clock, burstMs: 100 });
  const chunk = 65536;
  for (let i = 0; i < 100; i++) await th.take(chunk);
  // The first chunk goes at once (into debt); the rest waits for the debt to be paid.
  const expectedMs = ((100 - 1) * chunk * 1000) / rate;
  assert.ok(clock.t >= expectedMs - 1 && clock.t <= expectedMs + 100 + 1, `fake time ${clock.t} ms, expected ≈ ${expectedMs}`);
  assert.ok(th.waits >= 98);
});

test('a rate of 0 never waits', async () => {
  const clock = fakeClock();
  const th = new ByteThrottle(() => 0, { clock });
  for (let i = 0; i < 1000; i++) assert.equal(await th.take(1 << 20), false);
  assert.equal(clock.slept, 0);
});

test('the bucket is shared: two senders together get the one rate, in FIFO order', async () => {
  const clock = fakeClock();
  const rate = 500_000;
  const th = new ByteThrottle(() => rate, { clock, burstMs: 0 });
  const order: string[] = [];
  const sender = async (name: string) => {
    for (let i = 0; i < 20; i++) {
      await th.take(50_000);
      order.push(name);
    }
  };
  await Promise.all([sender('a'), sender('b')]);
  const expectedMs = ((40 - 1) * 50_000 * 1000) / rate;
  assert.ok(clock.t >= expectedMs - 1 && clock.t <= expectedMs + 1, `fake time ${clock.t}, expected ≈ ${expectedMs}`);
  // FIFO: once both wait, they alternate.
  assert.deepEqual(order.slice(2, 12), ['a', 'b', 'a', 'b', 'a', 'b', 'a', 'b', 'a', 'b']);
});

test('the rate is read live: raising it shortens the wait, 0 releases every waiter', async () => {
  const clock = fakeClock();
  let rate = 1000;
  const th = new ByteThrottle(() => rate, { clock, burstMs: 0, sleepStepMsMax: 50 });
  await th.take(1_000_000); // a debt of 1000 s at 1000 B/s
  const waiting = th.take(1);
  await new Promise((r) => setImmediate(r));
  assert.equal(th.waiting, 1);
  rate = 1_000_000_000; // the debt is now 1 ms
  await waiting;
  assert.ok(clock.t < 200, `waited ${clock.t} fake ms after the raise`);
  rate = 10;
  await th.take(1_000_000);
  const a = th.take(1);
  const b = th.take(1);
  await new Promise((r) => setImmediate(r));
  rate = 0;
  await Promise.all([a, b]);
  assert.equal(th.waiting, 0);
});

test('an aborted wait rejects with the signal reason and leaves the queue', async () => {
  const clock = fakeClock();
  const th = new ByteThrottle(() => 1, { clock, sleepStepMsMax: 1 });
  await th.take(1_000_000_000);
  const ac = new AbortController();
  const p = th.take(10, ac.signal);
  ac.abort(new Error('released'));
  await assert.rejects(p, /released/);
  assert.equal(th.waiting, 0);
  th.close();
  await assert.rejects(th.take(1), { code: ErrorCode.ERR_CLOSED });
});
