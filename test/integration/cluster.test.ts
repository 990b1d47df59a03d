/**
 * Cluster of real node processes on loopback: writes, a node SIGKILLed under load, a node joining,
 * and hostile connections refused while the node keeps serving. Every process and temp dir is
 * removed by the helper's teardown, also when a test fails.
 */
import test, { after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { runLoad } from '../../src/cli/load.js';
import { runVerify } from '../../src/cli/verify.js';
import { RawPeer, RawTcp, craftFrame } from '../helpers/hostile-peer.js';
import type { Connection } from '../../src/net/connection.js';

const clusters: TestCluster[] = [];
after(async () => {
  for (const c of clusters) await c.teardown();
});

async function cluster(nodes: number, extra: Record<string, unknown> = {}): Promise<TestCluster> {
  const c = await startTestCluster({ nodes, nodeConfig: { net: { heartbeatIntervalMs: 200, failureTimeoutMs: 2000 }, ...extra } });
  clusters.push(c);
  return c;
}

async function status(conn: Connection): Promise<Record<string, any>> {
  return (await conn.request('status', {})) as Record<string, any>;
}

async function waitRebalanced(conn: Connection, nodes: number, timeoutMs = 60_000): Promise<Record<string, any>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await status(conn);
    if (s.rebalanced && s.nodes.length === nodes && s.lostPartitions.length === 0) return s;
    if (Date.now() > deadline) throw new Error(`not rebalanced: ${JSON.stringify({ nodes: s.nodes.length, left: s.rebalance.partitionsLeft })}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test('a 3-node cluster takes writes on any node, and verify passes after a node is SIGKILLed under load', async () => {
  const c = await cluster(3);
  const conn = await c.client();
  await conn.request('cacheCreate', { name: 'default', partitions: 16, backups: 1, indexFields: ['city'] });
  for (const id of ['node-1', 'node-2', 'node-3']) {
    const n = await c.client(id);
    await n.request('put', { cache: 'default', key: `from-${id}`, value: { city: 'Oslo', id } });
  }
  for (const id of ['node-1', 'node-2', 'node-3']) {
    const got = (await conn.request('get', { cache: 'default', key: `from-${id}` })) as { found: boolean; value: unknown };
    assert.deepEqual(got.value, { city: 'Oslo', id });
  }
  assert.deepEqual(((await conn.request('query', { cache: 'default', field: 'city', value: 'Oslo' })) as { keys: string[] }).keys, ['from-node-1', 'from-node-2', 'from-node-3']);

  const ackLog = path.join(c.dir, 'acks.log');
  const settings = c.settings();
  const extra = c.nodes().map((n) => n.address);
  const load = runLoad({ settings, extraAddresses: extra, entries: 300, valueBytes: 200, durationSec: 4, ratePerSec: 400, concurrency: 4, ackLogPath: ackLog, attemptsMax: 50 });
  await new Promise((r) => setTimeout(r, 1200));
  await c.stop('node-3', { kill: true, wait: false });
  const result = await load;
  assert.ok(result.acked > 100, `only ${result.acked} writes acknowledged`);
  await waitRebalanced(conn, 2);
  const v = await runVerify({ settings, ackLogPath: ackLog, waitRebalancedMs: 30_000 });
  assert.equal(v.ok, true, v.mismatches.join('\n'));
  assert.ok(v.ackLog!.keys > 50);
});

test('a node joining while a load writes receives partition files: every partition OWNING, digests equal, acknowledged writes and index queries right, no temp files left', async () => {
  const c = await cluster(2, { rebalance: { fileMinBytes: 0 } });
  const conn = await c.client();
  await conn.request('cacheCreate', { name: 'default', partitions: 12, backups: 1, indexFields: ['city'] });
  for (let i = 0; i < 300; i++) await conn.request('put', { cache: 'default', key: `k${i}`, value: { i, city: i % 3 === 0 ? 'Oslo' : 'Rome' } });
  const ackLog = path.join(c.dir, 'acks.log');
  const load = runLoad({ settings: c.settings(), extraAddresses: c.nodes().map((n) => n.address), entries: 200, valueBytes: 300, durationSec: 3, ratePerSec: 300, concurrency: 4, ackLogPath: ackLog, attemptsMax: 50, cache: 'default' });
  const seen = new Map<string, Record<string, unknown>>();
  const watching = (async () => {
    for (let i = 0; i < 400; i++) {
      const st = await status(conn);
      for (const t of st.rebalance.tasks as Array<Record<string, unknown>>) seen.set(`${t.node}/${t.partition}`, t);
      if (st.nodes.length === 3 && st.rebalanced) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  await new Promise((r) => setTimeout(r, 500));
  await c.add();
  await load;
  await watching;
  const s = await waitRebalanced(conn, 3);
  const owned = Object.values(s.partitions.default as Array<{ copies: Record<string, string> }>).filter((p) => p.copies['node-3'] === 'OWNING');
  assert.ok(owned.length > 0, 'the new node owns some partitions');
  const onNode3 = [...seen.values()].filter((t) => t.node === 'node-3');
  assert.ok(onNode3.length > 0 && onNode3.every((t) => t.path === 'file'), `file path taken: ${JSON.stringify(onNode3.map((t) => t.path))}`);
  const d = (await conn.request('digests', { cache: 'default' })) as { partitions: Array<{ partition: number; copies: Record<string, { digest: string; state: string }> }> };
  for (const p of d.partitions) {
    const digests = new Set(Object.values(p.copies).map((x) => x.digest));
    assert.equal(digests.size, 1, `partition ${p.partition}: ${JSON.stringify(p.copies)}`);
    assert.equal(Object.keys(p.copies).length, 2);
  }
  const v = await runVerify({ settings: c.settings(), ackLogPath: ackLog, waitRebalancedMs: 30_000 });
  assert.equal(v.ok, true, v.mismatches.join('\n'));
  const oslo = ((await conn.request('query', { cache: 'default', field: 'city', value: 'Oslo' })) as { keys: string[] }).keys;
  const expected: string[] = [];
  for (let i = 0; i < 300; i++) {
    const got = (await conn.request('get', { cache: 'default', key: `k${i}` })) as { found: boolean; value?: { city?: string } };
    if (got.found && got.value?.city === 'Oslo') expected.push(`k${i}`);
  }
  assert.ok(expected.length > 0);
  assert.deepEqual([...oslo].sort(), expected.sort(), 'the index after the rebalance returns exactly the keys whose value says Oslo');
  for (const n of c.nodes()) {
    const left = fs.existsSync(path.join(n.dataDir, 'tmp', 'rebalance')) ? fs.readdirSync(path.join(n.dataDir, 'tmp', 'rebalance')) : [];
    assert.deepEqual(left, [], `temporary files left on ${n.id}`);
  }
});

test('bad handshakes and malformed frames are refused while the node keeps serving', async () => {
  const c = await cluster(1);
  const conn = await c.client();
  await conn.request('cacheCreate', { name: 'default', partitions: 4, backups: 0 });
  const address = c.address('node-1');
  const id = { nodeId: 'intruder', clusterId: 'ptn-test', secret: 'wrong-secret-123', role: 'peer' as const };
  const wrongSecret = await RawPeer.connect(address);
  const r1 = await wrongSecret.handshake({ ...id, clusterId: c.settings().clusterId });
  assert.notEqual(r1, 'ok');
  assert.equal((r1 as { reason: string }).reason, 'ERR_HANDSHAKE_AUTH');
  const wrongCluster = await RawPeer.connect(address);
  const r2 = await wrongCluster.handshake({ ...id, secret: c.settings().secret, clusterId: c.settings().clusterId }, (hello) => ({ ...hello, clusterId: 'another-cluster' }));
  assert.equal((r2 as { reason: string }).reason, 'ERR_HANDSHAKE_CLUSTER');
  const garbage = await RawPeer.connect(address);
  garbage.send(Buffer.from('definitely not a frame'));
  assert.equal((await garbage.closed).reason, 'ERR_PROTOCOL_BAD_FRAME');
  const oversized = await RawPeer.connect(address);
  assert.equal(await oversized.handshake({ nodeId: 'probe', role: 'client', secret: c.settings().secret, clusterId: c.settings().clusterId }), 'ok');
  oversized.send(craftFrame({ type: 4, method: 'put', bodyBytes: 0x7fffffff }));
  assert.equal((await oversized.closed).reason, 'ERR_PROTOCOL_FRAME_TOO_LARGE');
  const tcp = await RawTcp.connect(Number(address.split(':')[1]));
  tcp.socket.write(Buffer.from('\x00\x01\x02 junk junk junk\r\n\r\n'));
  assert.match(await tcp.received, /^HTTP\/1\.1 400/);
  for (const p of [wrongSecret, wrongCluster, garbage, oversized]) p.close();
  await conn.request('put', { cache: 'default', key: 'still', value: 'serving' });
  assert.deepEqual(((await conn.request('get', { cache: 'default', key: 'still' })) as { value: unknown }).value, 'serving');
});

test('when the coordinator is SIGKILLed the next-oldest node takes over and writes go on', async () => {
  const c = await cluster(3);
  const conn = await c.client('node-2');
  await conn.request('cacheCreate', { name: 'default', partitions: 8, backups: 1 });
  for (let i = 0; i < 100; i++) await conn.request('put', { cache: 'default', key: `k${i}`, value: i });
  assert.equal((await status(conn)).coordinator, 'node-1');
  await c.stop('node-1', { kill: true, wait: false });
  const s = await waitRebalanced(conn, 2);
  assert.equal(s.coordinator, 'node-2');
  for (let i = 100; i < 150; i++) await conn.request('put', { cache: 'default', key: `k${i}`, value: i });
  for (let i = 0; i < 150; i += 7) assert.equal(((await conn.request('get', { cache: 'default', key: `k${i}` })) as { value: unknown }).value, i);
  const admin = c.nodes().find((n) => n.id === 'node-2')!.adminAddress;
  const metrics = await (await fetch(`http://${admin}/metrics`)).text();
  assert.match(metrics, /ptn_topology_version\{node="node-2"\} \d+/);
  assert.match(metrics, /ptn_cluster_rebalanced\{node="node-2"\} 1/);
  const health = await fetch(`http://${admin}/healthz`);
  assert.equal(health.status, 200);
  const st = (await (await fetch(`http://${admin}/status`)).json()) as { coordinator: string; rebalanced: boolean };
  assert.equal(st.coordinator, 'node-2');
});
