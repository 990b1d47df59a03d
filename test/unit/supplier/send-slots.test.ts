// Send slots: FIFO queueing, a limit changed at run time, ERR_BUSY — alone and through snapshotOpen.
import test from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCode } from '../../../src/errors.js';
import { SendSlots } from '../../../src/supplier/send-slots.js';
import { makeFixture, openSnapshot, waitUntil } from './helpers.js';

const LONG_MS = 60_000;

test('waiters are admitted in FIFO order as slots free up', async (t) => {
  const slots = new SendSlots(() => 1);
  t.after(() => slots.close());
  const first = await slots.acquire(LONG_MS);
  const order: number[] = [];
  const waiters = [1, 2, 3].map((i) => slots.acquire(LONG_MS).then((rel) => (order.push(i), rel)));
  await new Promise((r) => setImmediate(r));
  assert.equal(slots.waiting, 3);
  assert.equal(slots.running, 1);
  first();
  first(); // idempotent
  const r1 = await waiters[0]!;
  assert.equal(slots.running, 1);
  r1();
  (await waiters[1]!)();
  (await waiters[2]!)();
  assert.deepEqual(order, [1, 2, 3]);
  assert.equal(slots.running, 0);
});

test('raising the limit at run time admits waiters without any release', async (t) => {
  let limit = 1;
  const slots = new SendSlots(() => limit, { pollMs: 5 });
  t.after(() => slots.close());
  await slots.acquire(LONG_MS);
  const a = slots.acquire(LONG_MS);
  const b = slots.acquire(LONG_MS);
  await new Promise((r) => setImmediate(r));
  assert.equal(slots.waiting, 2);
  limit = 3;
  await Promise.all([a, b]);
  assert.equal(slots.running, 3);
  assert.equal(slots.waiting, 0);
});

test('lowering the limit lets running transfers finish and admits nobody above it', async (t) => {
  let limit = 2;
  const slots = new SendSlots(() => limit, { pollMs: 5 });
  t.after(() => slots.close());
  const r1 = await slots.acquire(LONG_MS);
  const r2 = await slots.acquire(LONG_MS);
  limit = 1;
  let admitted = false;
  const w = slots.acquire(LONG_MS).then((rel) => ((admitted = true), rel));
  r1();
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(admitted, false, 'one still running = the new limit: nobody admitted');
  assert.equal(slots.running, 1);
  r2();
  (await w)();
  assert.equal(admitted, true);
});

test('a waiter that gets no slot in time is refused with ERR_BUSY', async (t) => {
  const slots = new SendSlots(() => 1);
  t.after(() => slots.close());
  await slots.acquire(LONG_MS);
  await assert.rejects(slots.acquire(20), { code: ErrorCode.ERR_BUSY });
  assert.equal(slots.waiting, 0);
  const late = slots.acquire(LONG_MS);
  slots.close();
  await assert.rejects(late, { code: ErrorCode.ERR_CLOSED });
});

test('snapshotOpen waits for a send slot, answers ERR_BUSY when none frees in time, and gets one after a release', async (t) => {
  const f = await makeFixture(t, { rebalance: { sendSlots: 1 } }, { slotWaitMs: 50 });
  await openSnapshot(f, 'one');
  await assert.rejects(openSnapshot(f, 'two', 1), { code: ErrorCode.ERR_BUSY });
  assert.equal(f.supplier.counters.busyRefusals, 1);
  const waiting = openSnapshot(f, 'three', 1);
  await f.call('snapshotRelease', { transferId: 'one', reason: 'done' });
  const open = await waiting;
  assert.equal(open.transferId, 'three');
  f.config.rebalance.sendSlots = 2; // configSet at run time
  await openSnapshot(f, 'four', 0);
  assert.equal(f.supplier.slots.running, 2);
  assert.deepEqual(f.supplier.list().map((x) => x.transferId).sort(), ['four', 'three']);
  await waitUntil(() => f.supplier.slots.waiting === 0, 'no waiters');
});
