// The partition-aware client routes each key to its partition's primary, follows the route map
// as it changes, and falls back to the first connection (which forwards) when it cannot do better.
import test from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { PrimaryRouter } from '../../../src/cli/primary-router.js';
import { partitionOfKey } from '../../../src/cluster/affinity.js';
import type { Connection } from '../../../src/net/connection.js';

const PARTITIONS = 8;
const settings = { address: '127.0.0.1:1', clusterId: 'c', secret: 's' };

/** A connection that answers `status` with the current route map and names its address. */
class FakeConn extends EventEmitter {
  constructor(
    readonly address: string,
    private readonly map: () => unknown,
  ) {
    super();
  }
  async request(method: string): Promise<unknown> {
    if (method === 'status') return this.map();
    throw new Error(`unexpected ${method}`);
  }
  async close(): Promise<void> {
    this.emit('close');
  }
}

/** Dials fake connections (none to the addresses in `refuse`) and keeps every one it opened. */
function fakeDialer(map: () => unknown, refuse: string[] = []) {
  const opened: FakeConn[] = [];
  const connect = async (address: string) => {
    if (refuse.includes(address)) throw new Error('refused');
    const c = new FakeConn(address, map);
    opened.push(c);
    return c as unknown as Connection;
  };
  return { opened, connect };
}

function statusOf(primaries: string[]) {
  return {
    nodes: [
      { id: 'node-1', address: 'a1' },
      { id: 'node-2', address: 'a2' },
    ],
    caches: [{ name: 'c', partitions: PARTITIONS }],
    partitions: { c: primaries.map((primary) => ({ primary })) },
  };
}

test('each key goes to a connection of its partition primary, and follows the map when primaries move', async () => {
  let primaries = Array.from({ length: PARTITIONS }, () => 'node-1');
  const fallback = new FakeConn('fallback', () => statusOf(primaries));
  const { opened, connect } = fakeDialer(() => statusOf(primaries));
  const router = await PrimaryRouter.open(settings, fallback as unknown as Connection, { cache: 'c', perNode: 2, refreshMs: 0, connect });
  try {
    await router.settle();
    assert.deepEqual(opened.map((c) => c.address), ['a1', 'a1']);
    const keys = Array.from({ length: 64 }, (_, i) => `k${i}`);
    for (const k of keys) assert.equal((router.route(k) as unknown as FakeConn).address, 'a1');
    // Half the partitions move to node-2.
    primaries = primaries.map((p, i) => (i % 2 === 0 ? 'node-2' : p));
    await router.settle();
    for (const k of keys) {
      const want = partitionOfKey(k, PARTITIONS) % 2 === 0 ? 'a2' : 'a1';
      assert.equal((router.route(k) as unknown as FakeConn).address, want, k);
    }
    assert.equal(router.counts.fallback, 0);
  } finally {
    await router.close();
  }
});

test('a primary that cannot be dialed, or whose connections closed, is reached through the fallback', async () => {
  const primaries = Array.from({ length: PARTITIONS }, (_, i) => (i < 4 ? 'node-1' : 'node-2'));
  const fallback = new FakeConn('fallback', () => statusOf(primaries));
  const { opened, connect } = fakeDialer(() => statusOf(primaries), ['a2']);
  const router = await PrimaryRouter.open(settings, fallback as unknown as Connection, { cache: 'c', perNode: 1, refreshMs: 60_000, connect });
  try {
    await router.settle();
    const onNode2 = Array.from({ length: 200 }, (_, i) => `k${i}`).filter((k) => partitionOfKey(k, PARTITIONS) >= 4);
    const onNode1 = Array.from({ length: 200 }, (_, i) => `k${i}`).filter((k) => partitionOfKey(k, PARTITIONS) < 4);
    for (const k of onNode2) assert.equal((router.route(k) as unknown as FakeConn).address, 'fallback');
    for (const k of onNode1) assert.equal((router.route(k) as unknown as FakeConn).address, 'a1');
    await opened[0]!.close(); // node-1's only connection goes away
    for (const k of onNode1) assert.equal((router.route(k) as unknown as FakeConn).address, 'fallback');
  } finally {
    await router.close();
  }
});

test('close() closes every connection it opened and leaves the fallback to its owner', async () => {
  const primaries = Array.from({ length: PARTITIONS }, () => 'node-1');
  const fallback = new FakeConn('fallback', () => statusOf(primaries));
  const { opened, connect } = fakeDialer(() => statusOf(primaries));
  let fallbackClosed = false;
  fallback.on('close', () => (fallbackClosed = true));
  const router = await PrimaryRouter.open(settings, fallback as unknown as Connection, { cache: 'c', perNode: 3, connect });
  await router.settle();
  let closed = 0;
  for (const c of opened) c.on('close', () => closed++);
  await router.close();
  await router.close(); // idempotent
  assert.equal(opened.length, 3);
  assert.equal(closed, 3);
  assert.equal(fallbackClosed, false);
});
