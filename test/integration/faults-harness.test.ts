/**
 * The fault-injection harness on real node processes: a node with test faults (only with
 * PTN_ENABLE_TEST_FAULTS=1), its admin `/faults`, a WAL that runs out of space at run time, two
 * nodes that reach each other only through TCP proxies, and a test cluster whose nodes are paused,
 * resumed and killed by id.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TEST_FAULTS_ENV } from '../../src/config.js';
import { connectClient } from '../../src/cli/client.js';
import { notReadyReason, requestStatus } from '../../src/cli/health.js';
import { defaultNodeCommand } from '../../src/cli/node-launcher.js';
import { nodeConfigObject, nodeEntry } from '../../src/cli/node-config-gen.js';
import { findFreeBasePort } from '../../src/cli/processes.js';
import type { Connection } from '../../src/net/connection.js';
import type { ClusterStatus } from '../../src/cli/status-format.js';
import { startTestCluster } from '../helpers/cluster.js';
import {
  type LoneNode,
  adminRequest,
  enableTestFaultsEnv,
  getFaults,
  killNodeNow,
  nodeState,
  pauseNode,
  postFaults,
  resumeNode,
  startLoneNode,
  waitNodeState,
} from '../helpers/node-faults.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

const SECRET = 'fault-suite-secret';
const CLUSTER_ID = 'ptn-faults';

/** A temp dir, and every node and connection of the test, cleaned up even on failure. */
function harness(t: test.TestContext) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptn-'));
  const nodes: LoneNode[] = [];
  const conns: Connection[] = [];
  t.after(async () => {
    await Promise.all(conns.map((c) => c.close().catch(() => {})));
    await Promise.all(nodes.map((n) => n.stop({ kill: true })));
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return {
    dir,
    register: (n: LoneNode) => nodes.push(n),
    async client(address: string): Promise<Connection> {
      const conn = await connectClient({ address, secret: SECRET, clusterId: CLUSTER_ID, requestTimeoutMs: 15_000 }, { retries: 3 });
      conns.push(conn);
      return conn;
    },
  };
}

async function waitReady(conn: Connection, ids: string[], timeoutMs = 60_000): Promise<ClusterStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await requestStatus(conn);
    const reason = notReadyReason(s, ids);
    if (!reason) return s;
    if (Date.now() > deadline) throw new Error(`cluster not ready: ${reason}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function healthStatus(adminAddress: string): Promise<number> {
  return (await adminRequest(adminAddress, 'GET', '/healthz')).status;
}

test('a node with test faults: refused in a normal start, live with PTN_ENABLE_TEST_FAULTS=1, a full WAL fails puts while the node serves', async (t) => {
  const h = harness(t);
  const basePort = await findFreeBasePort(1);
  const testFaults = { enabled: true, points: [{ name: 'suite.never-hit', action: 'throw' }] };
  // Frequent checkpoints: they too must survive a WAL that can no longer be written.
  const config = { testFaults, storage: { checkpointIntervalMs: 200 } };

  // Refused without the variable: one line, ERR_CONFIG_INVALID, exit 2, nothing started.
  await t.test('a normal start refuses the config with one line', async () => {
    const dir = path.join(h.dir, 'refused');
    const params = { dir, host: '127.0.0.1', basePort, clusterId: CLUSTER_ID, secret: SECRET, nodeConfig: config };
    const entry = nodeEntry(params, 1);
    fs.mkdirSync(path.dirname(entry.configPath), { recursive: true });
    fs.writeFileSync(entry.configPath, JSON.stringify(nodeConfigObject(params, entry, [])));
    const env = { ...process.env };
    delete env[TEST_FAULTS_ENV];
    delete env.NODE_TEST_CONTEXT;
    const [cmd, ...args] = defaultNodeCommand();
    const r = spawnSync(cmd!, [...args, 'node', 'start', '--config', entry.configPath], { env, encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 2, `exit status (stderr: ${r.stderr})`);
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /^error ERR_CONFIG_INVALID: .*testFaults\.enabled/);
    assert.equal(r.stdout, '', 'nothing was started');
    assert.equal(fs.existsSync(entry.dataDir) && fs.readdirSync(entry.dataDir).length > 0, false, 'no data written');
  });

  const node = await startLoneNode({ dir: h.dir, index: 1, basePort, secret: SECRET, clusterId: CLUSTER_ID, config, testFaultsEnv: true, register: h.register });
  const conn = await h.client(node.address);
  await waitReady(conn, ['node-1']);

  await t.test('GET /faults shows the configured rules', async () => {
    const r = await getFaults(node.adminAddress);
    assert.equal(r.status, 200);
    assert.deepEqual(
      r.body.points.map((p: { name: string; action: string }) => [p.name, p.action]),
      [['suite.never-hit', 'throw']],
    );
    assert.deepEqual(r.body.fileRules, []);
  });

  await t.test('an ENOSPC rule on the WAL makes put fail with ERR_DISK_FULL; the node stays up and reads work', async () => {
    await conn.request('cacheCreate', { name: 'c', partitions: 4, backups: 0 });
    for (let i = 0; i < 20; i++) await conn.request('put', { cache: 'c', key: `k${i}`, value: { i } });
    const bad = await postFaults(node.adminAddress, { fileRules: [{ pathIncludes: '/wal/', op: 'write', nth: 0 }] });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error, 'ERR_CONFIG_INVALID');
    const ok = await postFaults(node.adminAddress, { fileRules: [{ pathIncludes: `${path.sep}wal${path.sep}`, op: 'write', error: 'ENOSPC' }] });
    assert.equal(ok.status, 200);
    assert.equal(ok.body.fileRules.length, 1);
    assert.equal(ok.body.points.length, 1, 'points were not part of the update and stay');
    await assert.rejects(conn.request('put', { cache: 'c', key: 'after-full', value: 1 }), { code: 'ERR_DISK_FULL' });
    await assert.rejects(conn.request('put', { cache: 'c', key: 'after-full-2', value: 2 }), { code: 'ERR_DISK_FULL' });
    // Let a few periodic checkpoints run into the dead WAL: the process must stay up.
    await new Promise((r) => setTimeout(r, 1_000));
    assert.equal(await healthStatus(node.adminAddress), 200);
    assert.equal(nodeState(node), 'running', `node log: ${node.lastLog()}`);
    for (let i = 0; i < 20; i += 3) {
      const got = (await conn.request('get', { cache: 'c', key: `k${i}` })) as { found: boolean; value: unknown };
      assert.deepEqual(got, { ...got, found: true, value: { i } });
    }
    const f = await getFaults(node.adminAddress);
    assert.ok(f.body.fileFaultsInjected >= 1);
    assert.ok(f.body.injected.every((i: { path: string; code: string }) => i.path.includes(`${path.sep}wal${path.sep}`) && i.code === 'ENOSPC'));
  });
});

test('two nodes reach each other only through TCP proxies named by advertiseAddress, and survive a cut', async (t) => {
  const h = harness(t);
  const basePort = await findFreeBasePort(2);
  const proxies = await Promise.all([1, 2].map((i) => TcpProxy.start({ target: `127.0.0.1:${basePort + i}` })));
  t.after(() => Promise.all(proxies.map((p) => p.close())));
  const [p1, p2] = proxies as [TcpProxy, TcpProxy];
  const common = { secret: SECRET, clusterId: CLUSTER_ID, register: h.register, dir: h.dir, basePort };
  const n1 = await startLoneNode({ ...common, index: 1, config: { advertiseAddress: p1.address } });
  const n2 = await startLoneNode({ ...common, index: 2, seeds: [p1.address], config: { advertiseAddress: p2.address } });
  const conn = await h.client(n1.address);
  const s = await waitReady(conn, ['node-1', 'node-2']);
  assert.deepEqual(
    s.nodes.map((n) => [n.id, n.address]).sort(),
    [
      ['node-1', p1.address],
      ['node-2', p2.address],
    ],
  );
  await t.test('the nodes talk through the proxies', async () => {
    await conn.request('cacheCreate', { name: 'c', partitions: 8, backups: 1 });
    await waitReady(conn, ['node-1', 'node-2']);
    for (let i = 0; i < 40; i++) await conn.request('put', { cache: 'c', key: `k${i}`, value: i });
    const through = p1.stats.bytesUp + p1.stats.bytesDown + p2.stats.bytesUp + p2.stats.bytesDown;
    assert.ok(through > 0 && p1.stats.connectionsAccepted >= 1, `proxy traffic: ${JSON.stringify([p1.stats, p2.stats])}`);
    const digests = (await conn.request('digests', { cache: 'c' })) as { partitions: Array<{ copies: Record<string, { digest: string }> }> };
    for (const p of digests.partitions) {
      assert.equal(Object.keys(p.copies).length, 2);
      assert.equal(new Set(Object.values(p.copies).map((c) => c.digest)).size, 1, 'both copies hold the same data');
    }
  });
  await t.test('after every proxied connection is cut, the nodes reconnect through the proxies and writes go on', async () => {
    const accepted = p1.stats.connectionsAccepted + p2.stats.connectionsAccepted;
    const cut = p1.cut() + p2.cut();
    assert.ok(cut >= 1);
    for (let i = 40; i < 60; i++) await conn.request('put', { cache: 'c', key: `k${i}`, value: i });
    await waitReady(conn, ['node-1', 'node-2']);
    assert.ok(p1.stats.connectionsAccepted + p2.stats.connectionsAccepted > accepted, 'new connections went through the proxies');
    for (let i = 0; i < 60; i += 5) {
      assert.equal(((await conn.request('get', { cache: 'c', key: `k${i}` })) as { value: unknown }).value, i);
    }
  });
  await t.test('a node without test faults has no /faults', async () => {
    assert.equal((await postFaults(n2.adminAddress, { points: [] })).status, 404);
    assert.equal((await getFaults(n1.adminAddress)).status, 404);
  });
});

test('a test cluster passes PTN_ENABLE_TEST_FAULTS to its nodes, which are paused, resumed and killed by id', async (t) => {
  enableTestFaultsEnv(t);
  const c = await startTestCluster({ nodes: 2, nodeConfig: { testFaults: { enabled: true } } });
  t.after(() => c.teardown());
  const node2 = () => c.nodes().find((n) => n.id === 'node-2')!;
  const admin2 = node2().adminAddress;
  assert.equal((await getFaults(admin2)).status, 200);
  assert.equal(pauseNode(c, 'node-2'), true);
  await waitNodeState(node2(), 'stopped');
  await assert.rejects(adminRequest(admin2, 'GET', '/healthz', undefined, 300), 'a stopped node does not answer');
  assert.equal(resumeNode(c, 'node-2'), true);
  await waitNodeState(node2(), 'running');
  assert.equal(await healthStatus(admin2), 200);
  await c.waitReady(30_000);
  assert.equal(killNodeNow(c, 'node-2'), true);
  await waitNodeState(node2(), 'gone');
  assert.equal(nodeState(c.nodes().find((n) => n.id === 'node-1')!), 'running');
});
