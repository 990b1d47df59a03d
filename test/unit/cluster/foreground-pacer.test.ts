// Rebalance steps yield to foreground work by the event-loop lag: on a fake clock and a fake lag
// source (time is counted, never measured), plus one run on the real timer.
import test from 'node:test';
import assert from 'node:assert/strict';
import { ForegroundPacer, SAMPLE_MS, type PacerClock, type PacerSettings } from '../../../src/cluster/foreground-pacer.js';

/**
 * Virtual time: sleeps resolve in deadline order, and time jumps to the next deadline only once
 * everything runnable has run (a setImmediate hop), so concurrent sleepers share one clock.
 * `onAdvance` sees each new time before the sleepers due at it wake.
 */
function fakeClock(onAdvance?: (c: { t: number }) => void): PacerClock & { t: number; slept: number } {
  let timers: Array<{ at: number; wake: () => void }> = [];
  let scheduled = false;
  const c = {
    t: 0,
    slept: 0,
    now: () => c.t,
    sleep: (ms: number) =>
      new Promise<void>((wake) => {
        c.slept += ms;
        timers.push({ at: c.t + ms, wake });
        schedule();
      }),
  };
  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      if (timers.length === 0) return;
      c.t = Math.max(c.t, Math.min(...timers.map((x) => x.at)));
      onAdvance?.(c);
      const due = timers.filter((x) => x.at <= c.t);
      timers = timers.filter((x) => x.at > c.t);
      for (const x of due) x.wake();
      schedule();
    });
  };
  return c;
}

/** A pacer with writes going on throughout (noteForeground at every turn and after every sleep). */
function busyPacer(settings: () => PacerSettings, o: ConstructorParameters<typeof ForegroundPacer>[1]): ForegroundPacer {
  const clock = o?.clock;
  const p = new ForegroundPacer(settings, clock ? { ...o, clock: { now: () => clock.now(), sleep: (ms) => clock.sleep(ms).then(() => p.noteForeground()) } } : o);
  const turn = p.turn.bind(p);
  p.turn = (signal?: AbortSignal) => {
    p.noteForeground();
    return turn(signal);
  };
  return p;
}

const settings = (yieldLagMs: number, yieldWaitMaxMs = 100, yieldUtilization = 1): (() => PacerSettings) => () => ({ yieldLagMs, yieldWaitMaxMs, yieldUtilization });

test('a turn passes at once while the lag is at or under yieldLagMs', async () => {
  const clock = fakeClock();
  const pacer = busyPacer(settings(10), { clock, lagSource: () => 10 });
  for (let i = 0; i < 50; i++) await pacer.turn();
  assert.equal(clock.slept, 0);
  assert.deepEqual(pacer.counts, { turns: 50, waits: 0, waitedMs: 0, waitMaxReached: 0 });
});

test('a turn waits while the lag is high and goes on as soon as it falls', async () => {
  let lag = 50;
  const clock = fakeClock((c) => {
    if (c.t >= 30) lag = 2; // the foreground burst is over after 30 ms
  });
  const pacer = busyPacer(settings(10), { clock, lagSource: () => lag });
  await pacer.turn();
  assert.equal(clock.t, 30);
  assert.equal(pacer.counts.waits, 1);
  assert.equal(pacer.counts.waitedMs, 30);
  assert.equal(pacer.counts.waitMaxReached, 0);
});

test('under a lag that never falls every turn still goes after yieldWaitMaxMs: the rebalance always moves', async () => {
  const clock = fakeClock();
  const pacer = busyPacer(settings(5, 40), { clock, lagSource: () => 1_000 });
  for (let i = 0; i < 3; i++) await pacer.turn();
  assert.equal(pacer.counts.waitMaxReached, 3);
  assert.ok(clock.t >= 3 * 40 && clock.t <= 3 * (40 + SAMPLE_MS), `fake time ${clock.t} ms`);
});

test('turns waiting together go one at a time, in order, one per yieldWaitMaxMs while the lag stays high', async () => {
  const clock = fakeClock();
  const pacer = busyPacer(settings(5, 50), { clock, lagSource: () => 1_000 });
  const order: Array<{ i: number; t: number }> = [];
  await Promise.all(Array.from({ length: 8 }, (_, i) => pacer.turn().then(() => order.push({ i, t: clock.t }))));
  assert.deepEqual(order.map((o) => o.i), [0, 1, 2, 3, 4, 5, 6, 7]);
  for (let k = 1; k < order.length; k++) {
    const gap = order[k]!.t - order[k - 1]!.t;
    assert.ok(gap >= 50 && gap <= 50 + SAMPLE_MS, `release ${k} came ${gap} ms after the one before`);
  }
  assert.equal(pacer.counts.waitMaxReached, 8);
});

test('a turn that finds others waiting queues behind them even when the lag is low', async () => {
  let lag = 1_000;
  const clock = fakeClock((c) => {
    if (c.t >= 20) lag = 0;
  });
  const pacer = busyPacer(settings(5, 10_000), { clock, lagSource: () => lag });
  const order: number[] = [];
  const first = pacer.turn().then(() => order.push(1));
  await new Promise((r) => setImmediate(r));
  lag = 0; // a second turn arrives with the lag low: the first one is still in line, so it waits
  const second = pacer.turn().then(() => order.push(2));
  await Promise.all([first, second]);
  assert.deepEqual(order, [1, 2]);
  assert.equal(pacer.counts.waits, 2);
});

test('when the lag falls, the first in line goes first even if a later turn samples sooner', async () => {
  let lag = 1_000;
  const clock = fakeClock((c) => {
    if (c.t >= 6) lag = 0;
  });
  const pacer = busyPacer(settings(5, 10_000), { clock, lagSource: () => lag });
  const order: Array<{ n: number; t: number }> = [];
  const first = pacer.turn().then(() => order.push({ n: 1, t: clock.t })); // samples at 5, 10, …
  await clock.sleep(3);
  const second = pacer.turn().then(() => order.push({ n: 2, t: clock.t })); // samples at 8, 13, …: the lag is low at 8
  await Promise.all([first, second]);
  assert.deepEqual(order.map((o) => o.n), [1, 2]);
  assert.equal(order[0]!.t, 10);
});

test('yieldLagMs 0 turns pacing off, read at every turn (run-time change)', async () => {
  const clock = fakeClock();
  let cfg = { yieldLagMs: 0, yieldWaitMaxMs: 100, yieldUtilization: 1 };
  const pacer = busyPacer(() => cfg, { clock, lagSource: () => 1_000 });
  await pacer.turn();
  assert.equal(clock.slept, 0);
  assert.equal(pacer.counts.turns, 0);
  cfg = { yieldLagMs: 5, yieldWaitMaxMs: 20, yieldUtilization: 1 };
  await pacer.turn();
  assert.equal(pacer.counts.waitMaxReached, 1);
  // Switched off during a wait: the wait ends at the next sample.
  const during = busyPacer(() => cfg, { clock: fakeClock(() => (cfg = { yieldLagMs: 0, yieldWaitMaxMs: 100, yieldUtilization: 1 })), lagSource: () => 1_000 });
  cfg = { yieldLagMs: 5, yieldWaitMaxMs: 100, yieldUtilization: 1 };
  await during.turn();
  assert.equal(during.counts.waitMaxReached, 0);
  assert.equal(during.counts.waitedMs, SAMPLE_MS);
});

test('a loop busy above yieldUtilization makes a turn wait though the lag is low; at 1 utilization never does', async () => {
  let busy = 0.95;
  const clock = fakeClock((c) => {
    if (c.t >= 25) busy = 0.5;
  });
  const pacer = busyPacer(settings(5, 1_000, 0.8), { clock, lagSource: () => 0, utilizationSource: () => busy });
  await pacer.turn();
  assert.equal(clock.t, 25);
  assert.equal(pacer.counts.waits, 1);
  const off = busyPacer(settings(5, 1_000, 1), { clock: fakeClock(), lagSource: () => 0, utilizationSource: () => 1 });
  await off.turn();
  assert.equal(off.counts.waits, 0);
});

test('without writes going on a busy loop is the rebalance own work: turns pass at once', async () => {
  const clock = fakeClock();
  const pacer = new ForegroundPacer(settings(5, 100, 0.5), { clock, lagSource: () => 1_000, utilizationSource: () => 1 });
  for (let i = 0; i < 10; i++) await pacer.turn();
  assert.equal(pacer.counts.waits, 0);
  pacer.noteForeground(); // a write now: the next turn waits its 100 ms
  await pacer.turn();
  assert.equal(pacer.counts.waits, 1);
  clock.t += 1_000; // no write for a second
  await pacer.turn();
  assert.equal(pacer.counts.waits, 1);
});

test('an aborted signal ends the wait at the next sample; close() lets every turn through', async () => {
  const ac = new AbortController();
  const clock = fakeClock((c) => {
    if (c.t >= 15) ac.abort();
  });
  const pacer = busyPacer(settings(5, 10_000), { clock, lagSource: () => 1_000 });
  await pacer.turn(ac.signal);
  assert.equal(clock.t, 15);
  pacer.close();
  const before = clock.t;
  await pacer.turn();
  assert.equal(clock.t, before);
});

test('on the real timer, a busy event loop is seen as lag and a turn after it waits', async () => {
  const pacer = busyPacer(settings(20, 200), {});
  try {
    await pacer.turn(); // starts the sampling
    await new Promise((r) => setTimeout(r, 3 * SAMPLE_MS));
    const end = performance.now() + 80;
    while (performance.now() < end) {
      // the loop is blocked: the sampling timer fires ~80 ms late
    }
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, 1)); // let the late timer fire
    assert.ok(pacer.lagMs() > 20, `lag ${pacer.lagMs()} ms after an 80 ms block`);
    assert.ok(pacer.utilization() > 0.5, `utilization ${pacer.utilization()} over a window that was mostly blocked`);
    await pacer.turn();
    assert.equal(pacer.counts.waits, 1);
    assert.ok(pacer.lagMs() <= 20 || pacer.counts.waitMaxReached === 1);
  } finally {
    pacer.close();
  }
});
