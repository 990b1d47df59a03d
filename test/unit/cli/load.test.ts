import test, { afterEach, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readAckLog, valueDigest } from '../../../src/cli/ack-log.js';
import { formatLoadResult, makeValue, runLoad, seededRandom } from '../../../src/cli/load.js';
import { isPtnError, ptnError } from '../../../src/errors.js';
import { FAKE_CLUSTER_ID, FAKE_SECRET, FakeNode, FakeStore } from './fake-node.js';

let dir: string;
const nodes: FakeNode[] = [];
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptn-'));
});
afterEach(async () => {
  await Promise.all(nodes.splice(0).map((n) => n.close()));
  fs.rmSync(dir, { recursive: true, force: true });
});

async function fakeNode(id: string, store: FakeStore, hooks = {}): Promise<FakeNode> {
  const n = await new FakeNode(id, store, hooks).start();
  nodes.push(n);
  return n;
}

const settings = (address: string) => ({ address, secret: FAKE_SECRET, clusterId: FAKE_CLUSTER_ID });

test('values are JSON objects {i, seq, pad} of exactly the requested size', () => {
  for (const bytes of [40, 100, 1000, 4096]) {
    const { value, json } = makeValue(123, 45678, bytes);
    assert.equal(Buffer.byteLength(json), bytes);
    assert.deepEqual(JSON.parse(json), value);
    assert.equal(value.i, 123);
    assert.equal(value.seq, 45678);
  }
  assert.equal(makeValue(1, 1, 0).json, '{"i":1,"seq":1,"pad":""}'); // smaller than the bare object: no padding
});

test('the key choice is repeatable from its seed', () => {
  const a = seededRandom(99);
  const b = seededRandom(99);
  const xs = Array.from({ length: 5 }, () => a());
  assert.deepEqual(xs, Array.from({ length: 5 }, () => b()));
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  assert.notDeepEqual(xs, Array.from({ length: 5 }, seededRandom(100)));
});

test('a fill writes every key once and logs each acknowledged write with its counter and digest', async () => {
  const store = new FakeStore();
  const node = await fakeNode('n1', store);
  const ackLogPath = path.join(dir, 'acks.log');
  const r = await runLoad({ settings: settings(node.address), entries: 300, valueBytes: 64, concurrency: 8, ackLogPath });
  assert.equal(r.mode, 'fill');
  assert.equal(r.acked, 300);
  assert.equal(r.failed, 0);
  assert.equal(r.errors, 0);
  assert.equal(store.entries.size, 300);
  const log = readAckLog(ackLogPath);
  assert.equal(log.lines, 300);
  for (let i = 0; i < 300; i++) {
    const e = store.entries.get(`k${i}`)!;
    assert.deepEqual(log.byKey.get(`k${i}`), { counter: e.counter, digest: valueDigest(JSON.stringify(e.value)) });
  }
  assert.ok(r.latencyMs.p50 > 0 && r.latencyMs.p50 <= r.latencyMs.p99 && r.latencyMs.p99 <= r.latencyMs.max);
  assert.match(formatLoadResult(r), /300 writes acknowledged/);
});

test('when its node goes away mid-request the load moves to another node and never logs the unanswered write', async () => {
  const store = new FakeStore();
  const a = await fakeNode('a', store, { beforePut: (n: number) => (n === 50 ? 'swallow' : undefined) });
  const b = await fakeNode('b', store);
  a.peers = [b]; // a's status lists b: that is how the load learns where to go
  const ackLogPath = path.join(dir, 'acks.log');
  const r = await runLoad({ settings: settings(a.address), entries: 200, valueBytes: 50, concurrency: 4, ackLogPath });
  assert.equal(r.acked, 200);
  assert.equal(r.failed, 0);
  assert.ok(r.failovers >= 1, 'moved to another node');
  assert.ok((r.errorsByCode.ERR_CONNECTION_CLOSED ?? 0) >= 1, JSON.stringify(r.errorsByCode));
  assert.equal(a.swallowed.length, 1);
  const log = readAckLog(ackLogPath);
  const loggedCounters = new Set([...fs.readFileSync(ackLogPath, 'utf8').trim().split('\n')].map((l) => Number(l.split(' ')[1])));
  assert.equal(loggedCounters.has(a.swallowed[0]!), false, 'the swallowed write is not in the ack log');
  assert.equal(log.byKey.size, 200);
  for (const [key, acked] of log.byKey) assert.equal(store.entries.get(key)!.counter, acked.counter, key);
});

test('remote errors are counted by code and retried; a write that keeps failing counts as failed, never logged', async () => {
  const store = new FakeStore();
  const node = await fakeNode('n1', store, {
    beforePut: (n: number) => {
      if (n <= 3) throw ptnError('ERR_PARTITION_NOT_OWNED', 'moving');
    },
  });
  const ackLogPath = path.join(dir, 'acks.log');
  const r = await runLoad({ settings: settings(node.address), entries: 1, valueBytes: 10, concurrency: 1, ackLogPath, attemptsMax: 3 });
  assert.equal(r.acked, 0);
  assert.equal(r.failed, 1);
  assert.deepEqual(r.errorsByCode, { ERR_PARTITION_NOT_OWNED: 3 });
  assert.equal(readAckLog(ackLogPath).lines, 0);
  const again = await runLoad({ settings: settings(node.address), entries: 1, valueBytes: 10, concurrency: 1, ackLogPath, attemptsMax: 3 });
  assert.equal(again.acked, 1); // the 4th put succeeds
  assert.equal(readAckLog(ackLogPath).lines, 1);
});

test('an error no retry can fix ends the run with its code', async () => {
  const node = await fakeNode('n1', new FakeStore(), {
    beforePut: () => {
      throw ptnError('ERR_CACHE_NOT_FOUND', 'no cache named nope');
    },
  });
  await assert.rejects(
    runLoad({ settings: settings(node.address), entries: 1000, valueBytes: 10, concurrency: 4, cache: 'nope' }),
    (err: unknown) => isPtnError(err, 'ERR_CACHE_NOT_FOUND'),
  );
});

test('a wrong secret fails at once with ERR_HANDSHAKE_AUTH', async () => {
  const node = await fakeNode('n1', new FakeStore());
  await assert.rejects(
    runLoad({ settings: { ...settings(node.address), secret: 'wrong-secret-1' }, entries: 10, valueBytes: 10 }),
    (err: unknown) => isPtnError(err, 'ERR_HANDSHAKE_AUTH'),
  );
});

test('a timed run at a capped rate writes rate × seconds (fake clock), random keys within range', async () => {
  const store = new FakeStore();
  const node = await fakeNode('n1', store);
  let now = 0;
  const r = await runLoad({
    settings: settings(node.address), entries: 20, valueBytes: 30, concurrency: 1, ratePerSec: 100, durationSec: 1, seed: 5,
    clock: () => now,
    sleep: async (ms: number) => {
      now += ms;
    },
  });
  assert.equal(r.mode, 'random');
  assert.ok(r.acked >= 99 && r.acked <= 101, `acked ${r.acked}`);
  assert.equal(r.seed, 5);
  assert.ok([...store.entries.keys()].every((k) => /^k(1?\d)$/.test(k)));
  assert.ok(store.entries.size > 10, 'random keys spread over the key space');
});

test('an aborted run stops early, lets in-flight writes finish, and says it was stopped', async () => {
  const store = new FakeStore();
  const node = await fakeNode('n1', store);
  const ac = new AbortController();
  const ackLogPath = path.join(dir, 'acks.log');
  const r = await runLoad({
    settings: settings(node.address), entries: 100_000, valueBytes: 10, concurrency: 4, ackLogPath, signal: ac.signal,
    onProgress: (p) => {
      if (p.acked > 50) ac.abort();
    },
    progressIntervalMs: 10,
  });
  assert.equal(r.aborted, true);
  assert.ok(r.acked > 50 && r.acked < 100_000);
  assert.equal(readAckLog(ackLogPath).lines, r.acked, 'every acknowledged write is logged');
  assert.equal(store.writes.length, r.acked);
});
