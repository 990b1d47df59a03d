// Failure paths of the cluster manager with a fake node process (the happy path runs real nodes
// in test/integration/cli-cluster.test.ts): whatever fails, the nodes it started are stopped
// and the manifest says so.
import test, { afterEach, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClusterManager } from '../../../src/cli/cluster-manager.js';
import { readClusterFile } from '../../../src/cli/cluster-file.js';
import { findFreeBasePort, isProcessAlive } from '../../../src/cli/processes.js';
import { isPtnError } from '../../../src/errors.js';

const FAKE = fileURLToPath(new URL('./fake-node-process.mjs', import.meta.url));
let dir: string;
let manager: ClusterManager;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptn-'));
  manager = new ClusterManager({ dir, nodeCommand: [process.execPath, FAKE] });
});
afterEach(async () => {
  delete process.env.FAKE_MODE;
  await manager.killAll();
  fs.rmSync(dir, { recursive: true, force: true });
});

function assertAllStopped(): void {
  const cf = readClusterFile(dir)!;
  for (const n of cf.nodes) {
    assert.equal(n.running, false, `${n.id} marked stopped`);
    assert.equal(isProcessAlive(n.pid, n.configPath), false, `${n.id} pid ${n.pid} gone`);
  }
}

test('a node that exits at start fails `up` with its exit code and last log line; the others are stopped', async () => {
  process.env.FAKE_MODE = 'exit-node-2';
  const basePort = await findFreeBasePort(3);
  await assert.rejects(manager.up({ nodes: 3, basePort, timeoutMs: 20_000 }), (err: unknown) => {
    assert.ok(isPtnError(err, 'ERR_CLUSTER_NOT_READY'), String(err));
    assert.match(err.message, /^node-2 exited with code 3: cannot open .*boom \(log: .*node-2\/node\.log\)$/);
    return true;
  });
  const cf = readClusterFile(dir)!;
  assert.deepEqual(cf.nodes.map((n) => n.id), ['node-1', 'node-2', 'node-3']);
  assert.equal(cf.nodes[2]!.pid, null, 'node-3 was never started');
  assertAllStopped();
  assert.match(fs.readFileSync(cf.nodes[0]!.logPath, 'utf8'), /node stopped/, 'node-1 got SIGTERM');
});

test('a node that never answers /healthz fails `up` after the timeout and is killed', async () => {
  process.env.FAKE_MODE = 'no-health';
  const basePort = await findFreeBasePort(1);
  await assert.rejects(manager.up({ nodes: 1, basePort, timeoutMs: 800 }), (err: unknown) => isPtnError(err, 'ERR_CLUSTER_NOT_READY') && /healthz/.test(err.message));
  assertAllStopped();
});

test('healthy nodes that never form a cluster fail `up` with the reason, and are stopped', async () => {
  const basePort = await findFreeBasePort(2);
  await assert.rejects(manager.up({ nodes: 2, basePort, timeoutMs: 1_500 }), (err: unknown) => isPtnError(err, 'ERR_CLUSTER_NOT_READY') && /not ready in time: node-1: cannot connect/.test(err.message));
  assertAllStopped();
  const cfg = JSON.parse(fs.readFileSync(readClusterFile(dir)!.nodes[1]!.configPath, 'utf8'));
  assert.deepEqual(cfg.seeds, [`127.0.0.1:${basePort + 1}`], 'node-2 seeds node-1');
});

test('`up` refuses busy ports before starting anything', async () => {
  const basePort = await findFreeBasePort(2);
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(basePort + 102, '127.0.0.1', resolve));
  try {
    await assert.rejects(manager.up({ nodes: 2, basePort }), (err: unknown) => isPtnError(err, 'ERR_USAGE') && err.message.includes(String(basePort + 102)));
  } finally {
    await new Promise((resolve) => srv.close(resolve));
  }
  assert.equal(readClusterFile(dir), undefined);
});

test('`up` on a stopped cluster with another node count, or on stray node folders, is a usage error', async () => {
  process.env.FAKE_MODE = 'no-health';
  const basePort = await findFreeBasePort(1);
  await assert.rejects(manager.up({ nodes: 1, basePort, timeoutMs: 300 }));
  await assert.rejects(manager.up({ nodes: 2, basePort }), (err: unknown) => isPtnError(err, 'ERR_USAGE') && /stopped cluster of 1 nodes/.test(err.message));
  const other = fs.mkdtempSync(path.join(os.tmpdir(), 'ptn-'));
  try {
    fs.mkdirSync(path.join(other, 'node-1'));
    await assert.rejects(new ClusterManager({ dir: other }).up({ nodes: 1 }), (err: unknown) => isPtnError(err, 'ERR_USAGE') && /no cluster\.json/.test(err.message));
  } finally {
    fs.rmSync(other, { recursive: true, force: true });
  }
});

test('commands on an unknown node or a missing cluster are usage errors', async () => {
  await assert.rejects(manager.stop('node-1'), (err: unknown) => isPtnError(err, 'ERR_USAGE') && /no cluster in/.test(err.message));
  process.env.FAKE_MODE = 'no-health';
  await assert.rejects(manager.up({ nodes: 1, basePort: await findFreeBasePort(1), timeoutMs: 300 }));
  await assert.rejects(manager.start('node-9'), (err: unknown) => isPtnError(err, 'ERR_USAGE') && /no node node-9/.test(err.message));
  await assert.rejects(manager.add(), (err: unknown) => isPtnError(err, 'ERR_USAGE') && /no node .* is running/.test(err.message));
});
