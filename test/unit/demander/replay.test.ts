// The catch-up log and its replay: routing by mode, fence, brake, and a concurrent writer.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { ErrorCode } from '../../../src/errors.js';
import type { Update } from '../../../src/store/store.js';
import { decodeUpdate, encodeUpdate } from '../../../src/cluster/update-codec.js';
import { CatchUpLog } from '../../../src/demander/catch-up-log.js';
import { replayCatchUpLog } from '../../../src/demander/replay.js';
import { rng, tempDir, testSeed } from '../../helpers/tmp.js';

async function openLog(t: Parameters<typeof tempDir>[0]): Promise<CatchUpLog> {
  const dir = await tempDir(t);
  const log = await CatchUpLog.open({ dir: path.join(dir, 'twal'), segmentBytes: 16 * 1024, recordBytesMax: 64 * 1024 });
  t.after(() => log.destroy().catch(() => undefined));
  return log;
}

/** A toy partition with apply-if-newer by counter, as the store does it. */
class Copy {
  readonly entries = new Map<string, { counter: number; value?: string }>();
  readonly applied = new Set<number>();
  apply(u: Update): void {
    if (this.applied.has(u.counter)) return;
    this.applied.add(u.counter);
    const cur = this.entries.get(u.key);
    if (cur && cur.counter >= u.counter) return;
    this.entries.set(u.key, { counter: u.counter, value: u.op === 'put' ? u.value!.toString() : undefined });
  }
}

function upd(counter: number, key: string, value?: string): Update {
  return value === undefined
    ? { cacheId: 1, partition: 0, counter, key, op: 'remove' }
    : { cacheId: 1, partition: 0, counter, key, op: 'put', valueKind: 0, value: Buffer.from(value) };
}

test('offers are logged in log mode, wait at the fence, and go direct after it', async (t) => {
  const log = await openLog(t);
  assert.equal(await log.offer(encodeUpdate(upd(1, 'a', 'x'))), true);
  assert.equal(log.stats.appendedRecords, 1);
  log.raiseFence();
  let settled: boolean | undefined;
  const held = log.offer(encodeUpdate(upd(2, 'b', 'y'))).then((r) => (settled = r));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(settled, undefined, 'the offer waits while the fence is up');
  log.lift('direct');
  assert.equal(await held, false, 'after the fence the caller applies it itself');
  assert.equal(log.stats.appendedRecords, 1, 'nothing was logged during the fence');
  assert.equal(await log.offer(encodeUpdate(upd(3, 'c', 'z'))), false);
});

test('a closed log refuses offers with ERR_PARTITION_NOT_OWNED, but one that went direct keeps saying "apply it yourself"', async (t) => {
  const a = await openLog(t);
  await a.close();
  await assert.rejects(a.offer(encodeUpdate(upd(1, 'a', 'x'))), { code: ErrorCode.ERR_PARTITION_NOT_OWNED });
  const b = await openLog(t);
  b.raiseFence();
  b.lift('direct');
  await b.destroy();
  assert.equal(await b.offer(encodeUpdate(upd(1, 'a', 'x'))), false);
  await assert.rejects(fs.access(b.wal.dir));
});

test('replay with a concurrent writer applies every update, fences at the lag threshold and ends in direct mode (seeded)', async (t) => {
  const seed = testSeed();
  const r = rng(seed);
  const log = await openLog(t);
  const copy = new Copy();
  const truth = new Copy();
  let counter = 0;
  const offer = async () => {
    const c = ++counter;
    const key = `k${Math.floor(r() * 50)}`;
    const u = r() < 0.15 ? upd(c, key) : upd(c, key, `v${c}`);
    truth.apply(u);
    if (!(await log.offer(encodeUpdate(u)))) copy.apply(u);
  };
  for (let i = 0; i < 3000; i++) await offer(); // logged while the "file" was in flight
  let lagAtFence = -1;
  const raise = log.raiseFence.bind(log);
  log.raiseFence = () => {
    lagAtFence = log.stats.lagRecords;
    raise();
  };
  let writing = true;
  const writer = (async () => {
    while (writing) {
      const burst = 1 + Math.floor(r() * 8);
      await Promise.all(Array.from({ length: burst }, offer));
      await new Promise((res) => setImmediate(res));
    }
  })();
  const res = await replayCatchUpLog(
    log,
    async (batch) => {
      for (const b of batch) copy.apply(decodeUpdate(b));
      await new Promise((res2) => setImmediate(res2));
    },
    { fenceLagRecords: 32, batchRecordsMax: 256 },
  );
  for (let i = 0; i < 200; i++) await offer(); // after the switch: direct
  writing = false;
  await writer;
  assert.equal(log.mode, 'direct', `seed ${seed}`);
  assert.ok(lagAtFence >= 0 && lagAtFence <= 32, `lag ${lagAtFence} at the fence (seed ${seed})`);
  assert.ok(res.records >= 3000);
  assert.ok(res.fenceRecords <= 32);
  assert.ok(res.fenceMs >= 0);
  assert.equal(log.stats.lagRecords, 0);
  assert.deepEqual([...copy.applied].sort((a, b) => a - b), [...truth.applied].sort((a, b) => a - b), `seed ${seed}`);
  assert.deepEqual(new Map([...copy.entries].sort()), new Map([...truth.entries].sort()), `seed ${seed}`);
});

test('the brake holds appends while the log is brakeLagRecords ahead of a slow reader, so the drain ends', async (t) => {
  const seed = testSeed();
  const r = rng(seed);
  const log = await openLog(t);
  let counter = 0;
  let braked = 0;
  let overBrake = 0;
  let writing = true;
  const applied = new Set<number>();
  const writer = (async () => {
    while (writing) {
      const c = ++counter;
      const u = upd(c, `k${Math.floor(r() * 10)}`, 'v');
      const brake = log.brakeLagRecords; // set before the offer decides: the append obeys it
      if (!(await log.offer(encodeUpdate(u)))) applied.add(c);
      else if (brake !== undefined) {
        braked++;
        if (log.stats.lagRecords > brake) overBrake++;
      }
    }
  })();
  await new Promise((res) => setTimeout(res, 10));
  const res = await replayCatchUpLog(
    log,
    async (batch) => {
      for (const b of batch) applied.add(decodeUpdate(b).counter);
      await new Promise((res2) => setTimeout(res2, 2)); // a slow disk
    },
    { fenceLagRecords: 8, brakeLagRecords: 64, batchRecordsMax: 16 },
  );
  writing = false;
  await writer;
  assert.ok(braked > 0, `seed ${seed}`);
  assert.equal(overBrake, 0, `no append while the replay ran left the log more than 64 records ahead (seed ${seed})`);
  assert.ok(log.waits > 0, 'the writer was held at least once');
  assert.ok(res.records > 0);
  assert.equal(log.mode, 'direct');
  assert.equal(applied.size, counter, 'every update applied exactly once, logged or direct');
});

test('a drain that fails lowers the fence in log mode: nothing is lost, the replay can run again', async (t) => {
  const log = await openLog(t);
  for (let c = 1; c <= 100; c++) await log.offer(encodeUpdate(upd(c, `k${c}`, 'v')));
  let calls = 0;
  await assert.rejects(
    replayCatchUpLog(
      log,
      async () => {
        if (++calls === 2) throw new Error('disk');
      },
      { fenceLagRecords: 1000, batchRecordsMax: 10 },
    ),
    /disk/,
  );
  assert.equal(log.mode, 'log');
  assert.equal(await log.offer(encodeUpdate(upd(101, 'x', 'v'))), true, 'updates go to the log again');
  const seen = new Set<number>();
  await replayCatchUpLog(log, async (batch) => batch.forEach((b) => seen.add(decodeUpdate(b).counter)), { fenceLagRecords: 1000 });
  assert.ok(seen.has(101) && seen.has(100), 'the rest is replayed by the next run');
  assert.equal(log.mode, 'direct');
});

test('an aborted replay stops with ERR_REBALANCE_CANCELLED and leaves the log in log mode', async (t) => {
  const log = await openLog(t);
  for (let c = 1; c <= 10; c++) await log.offer(encodeUpdate(upd(c, `k${c}`, 'v')));
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(replayCatchUpLog(log, async () => {}, { fenceLagRecords: 1, signal: ac.signal }), { code: ErrorCode.ERR_REBALANCE_CANCELLED });
  assert.equal(log.mode, 'log');
  assert.equal(log.brakeLagRecords, undefined);
});

test('a replay that outpaces the writer closes in below fenceLagRecords before raising the fence, so the fence drains a handful', async (t) => {
  const log = await openLog(t);
  let counter = 0;
  for (let i = 0; i < 600; i++) await log.offer(encodeUpdate(upd(++counter, `k${i % 50}`, `v${counter}`)));
  // Each applied record costs 1 ms; meanwhile the writer adds one record every 2 ms: every batch
  // lets in about half as many records as it applied.
  let writing = true;
  const writer = (async () => {
    while (writing) {
      await log.offer(encodeUpdate(upd(++counter, `k${counter % 50}`, `v${counter}`)));
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  const applied = new Set<number>();
  const res = await replayCatchUpLog(
    log,
    async (batch) => {
      for (const b of batch) applied.add(decodeUpdate(b).counter);
      await new Promise((r) => setTimeout(r, batch.length));
    },
    { fenceLagRecords: 400 },
  );
  writing = false;
  await writer;
  assert.equal(log.mode, 'direct');
  assert.ok(res.fenceRecords <= 16, `the fence drained ${res.fenceRecords} records (fenceLagRecords 400)`);
  for (let c = 1; c <= res.records; c++) assert.ok(applied.has(c), `counter ${c} applied`);
});
