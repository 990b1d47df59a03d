import test, { afterEach, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { formatAckLine, valueDigest } from '../../../src/cli/ack-log.js';
import { runVerify } from '../../../src/cli/verify.js';
import { isPtnError } from '../../../src/errors.js';
import { FAKE_CLUSTER_ID, FAKE_SECRET, FakeNode, FakeStore } from './fake-node.js';

let dir: string;
let node: FakeNode;
let store: FakeStore;
beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptn-'));
  store = new FakeStore();
  node = await new FakeNode('n1', store).start();
  node.digests = {
    0: { n1: { state: 'OWNING', digest: 'aa', entries: 2 }, n2: { state: 'OWNING', digest: 'aa', entries: 2 } },
    1: { n1: { state: 'OWNING', digest: 'bb', entries: 1 }, n2: { state: 'OWNING', digest: 'bb', entries: 1 } },
  };
  node.peers = [Object.assign(Object.create(FakeNode.prototype) as FakeNode, { id: 'n2', address: '127.0.0.1:1' })];
});
afterEach(async () => {
  await node.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const settings = () => ({ address: node.address, secret: FAKE_SECRET, clusterId: FAKE_CLUSTER_ID });

/** Writes an ack log claiming the store's current writes (plus `extra` lines). */
function ackLog(extra = ''): string {
  const file = path.join(dir, 'acks.log');
  const lines = store.writes.map((w) => formatAckLine(w.key, w.counter, valueDigest(JSON.stringify(w.value)))).join('');
  fs.writeFileSync(file, lines + extra);
  return file;
}

test('equal copies and every acknowledged write readable: ok', async () => {
  store.put('k1', { i: 1 });
  store.put('k2', { i: 2 });
  store.put('k1', { i: 1, again: true });
  const r = await runVerify({ settings: settings(), ackLogPath: ackLog() });
  assert.deepEqual(r.mismatches, []);
  assert.equal(r.ok, true);
  assert.equal(r.partitions, 2);
  assert.equal(r.copiesCompared, 4);
  assert.deepEqual(r.ackLog, { file: path.join(dir, 'acks.log'), lines: 3, keys: 2, tornTail: false });
});

test('a stored counter above the acknowledged one passes: a later (unacknowledged) write won', async () => {
  store.put('k1', 'acked');
  const file = ackLog();
  store.put('k1', 'later, maybe never acknowledged');
  assert.equal((await runVerify({ settings: settings(), ackLogPath: file })).ok, true);
});

test('a lost write, a missing key and a changed value are each reported', async () => {
  store.put('lost', 1);
  store.put('gone', 2);
  store.put('changed', 3);
  const file = ackLog(formatAckLine('lost', 99, valueDigest('1')));
  store.entries.delete('gone');
  store.entries.get('changed')!.value = 4;
  const r = await runVerify({ settings: settings(), ackLogPath: file });
  assert.equal(r.ok, false);
  assert.equal(r.mismatchCount, 3);
  assert.ok(r.mismatches.some((m) => /^lost: stored counter 1 < acknowledged counter 99/.test(m)));
  assert.ok(r.mismatches.some((m) => /^gone: acknowledged at counter \d+ but not found/.test(m)));
  assert.ok(r.mismatches.some((m) => /^changed: the value at counter \d+ differs/.test(m)));
});

test('copies that differ fail the check even without an ack log', async () => {
  node.digests[1]!.n2!.digest = 'cc';
  const r = await runVerify({ settings: settings() });
  assert.equal(r.ok, false);
  assert.match(r.mismatches[0]!, /^default\/1: copies differ: n1=bb\(1 entries\) n2=cc\(1 entries\)/);
});

test('an unknown cache is ERR_CACHE_NOT_FOUND', async () => {
  await assert.rejects(runVerify({ settings: settings(), caches: ['nope'] }), (err: unknown) => isPtnError(err, 'ERR_CACHE_NOT_FOUND'));
});
