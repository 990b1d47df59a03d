// End to end through the `ptn` executable: a 3-node local cluster on free ports, data commands,
// status, a crash and restart of one node, verify with an ack log, and a clean `cluster down`.
// Cleanup runs in `after` even when a step fails: every pid of cluster.json is killed, the dir removed.
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { binPtnPath } from '../../src/cli/paths.js';
import { findFreeBasePort, isProcessAlive } from '../../src/cli/processes.js';
import { type ClusterFile, readClusterFile } from '../../src/cli/cluster-file.js';
import { startTestCluster } from '../helpers/cluster.js';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function ptn(args: string[], timeoutMs = 120_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [binPtnPath(), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

async function ok(args: string[]): Promise<string> {
  const r = await ptn(args);
  assert.equal(r.code, 0, `ptn ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

function manifest(dir: string): ClusterFile {
  const cf = readClusterFile(dir);
  assert.ok(cf, 'cluster.json exists');
  return cf;
}

let dir: string;
const seenPids = new Map<number, string>();

function remember(cf: ClusterFile): void {
  for (const n of cf.nodes) if (n.pid !== null) seenPids.set(n.pid, n.configPath);
}

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptn-'));
});

after(() => {
  try {
    const cf = readClusterFile(dir);
    if (cf) remember(cf);
  } catch {
    /* a broken manifest: the pids seen so far are still known */
  }
  for (const [pid, marker] of seenPids) {
    if (isProcessAlive(pid, marker)) process.kill(pid, 'SIGKILL');
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

test('ptn drives a local cluster end to end: up, data, status, crash and restart, verify, down', async () => {
  const basePort = await findFreeBasePort(4);
  const dirArgs = ['--dir', dir];
  const up = await ok(['cluster', 'up', '--nodes', '3', ...dirArgs, '--base-port', String(basePort)]);
  remember(manifest(dir));
  assert.match(up, /cluster ready: 3 nodes, rebalanced/);
  const cf = manifest(dir);
  assert.deepEqual(cf.nodes.map((n) => [n.id, n.address, n.adminAddress, n.running]), [1, 2, 3].map((i) => [`node-${i}`, `127.0.0.1:${basePort + i}`, `127.0.0.1:${basePort + 100 + i}`, true]));
  for (const n of cf.nodes) {
    assert.ok(isProcessAlive(n.pid, n.configPath), `${n.id} runs`);
    assert.ok(fs.existsSync(n.configPath) && fs.existsSync(n.dataDir) && fs.existsSync(n.logPath));
  }

  // data commands, half through --dir, half through --node
  const node2 = ['--node', cf.nodes[1]!.address];
  assert.match(await ok(['cache', 'create', 'default', '--index', 'color', '--partitions', '16', ...dirArgs]), /created cache default/);
  assert.match(await ok(['cache', 'list', ...dirArgs]), /^default\s+\d+\s+16\s+1\s+color$/m);
  assert.match(await ok(['put', 'k1', '{"color":"red","n":1}', ...dirArgs]), /^OK partition \d+ counter \d+/);
  await ok(['put', 'k2', '{"color":"blue"}', ...node2]);
  await ok(['put', 'k3', 'hello', ...dirArgs]);
  await ok(['put', 'k4', '{"color":"red"}', ...node2]);
  assert.equal(await ok(['get', 'k1', ...node2]), '{"color":"red","n":1}\n');
  assert.equal(await ok(['get', 'k3', ...dirArgs]), '"hello"\n');
  assert.equal(await ok(['query', 'color', 'red', ...dirArgs]), 'k1\nk4\n');
  await ok(['del', 'k1', ...dirArgs]);
  const missing = await ptn(['get', 'k1', ...node2]);
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr, 'not found\n');
  assert.equal(await ok(['query', 'color', 'red', ...node2]), 'k4\n');

  const status = JSON.parse(await ok(['status', '--json', ...dirArgs]));
  assert.equal(status.nodes.length, 3);
  assert.equal(status.rebalanced, true);
  assert.match(await ok(['status', ...dirArgs]), /topology v\d+ .* rebalanced/);

  const ackLog = path.join(dir, 'acks.log');
  const load = JSON.parse(await ok(['load', ...dirArgs, '--entries', '300', '--value-bytes', '100', '--ack-log', ackLog, '--json']));
  assert.equal(load.acked, 300);
  assert.equal(fs.readFileSync(ackLog, 'utf8').trim().split('\n').length, 300);

  // crash node-2, then restart it on its own data
  const killedPid = cf.nodes[1]!.pid!;
  await ok(['cluster', 'stop', ...dirArgs, '--node', 'node-2', '--kill']);
  assert.equal(isProcessAlive(killedPid, cf.nodes[1]!.configPath), false);
  assert.match(await ok(['cluster', 'ls', ...dirArgs]), /^node-2\s+stopped\s+-/m);
  await ok(['put', 'k5', '{"color":"green"}', ...dirArgs]);
  await ok(['cluster', 'start', ...dirArgs, '--node', 'node-2']);
  remember(manifest(dir));
  assert.notEqual(manifest(dir).nodes[1]!.pid, killedPid);
  assert.match(await ok(['cluster', 'ls', ...dirArgs]), /^node-2\s+running\s+\d+/m);

  const verify = await ok(['verify', ...dirArgs, '--ack-log', ackLog]);
  assert.match(verify, /OK: every copy agrees and every acknowledged write is readable/);
  assert.equal(await ok(['get', 'k5', ...node2]), '{"color":"green"}\n');

  const before = manifest(dir);
  await ok(['cluster', 'down', ...dirArgs]);
  const downed = manifest(dir);
  for (const n of before.nodes) assert.equal(isProcessAlive(n.pid, n.configPath), false, `${n.id} pid ${n.pid} gone`);
  assert.ok(downed.nodes.every((n) => !n.running));
  for (const n of downed.nodes) assert.match(fs.readFileSync(n.logPath, 'utf8'), /closed cleanly on signal/, `${n.id} closed cleanly on SIGTERM`);
  assert.match(await ok(['cluster', 'ls', ...dirArgs]), /^node-1\s+stopped/m);

  // `up` on the stopped cluster restarts every node on its own data dir and config
  const stopped = manifest(dir);
  assert.match(await ok(['cluster', 'up', '--nodes', '3', ...dirArgs]), /restarting the stopped cluster/);
  const restarted = manifest(dir);
  remember(restarted);
  assert.deepEqual(restarted.nodes.map((n) => [n.id, n.address, n.dataDir, n.running]), stopped.nodes.map((n) => [n.id, n.address, n.dataDir, true]));
  assert.match(await ok(['cache', 'list', ...dirArgs]), /^default\s/m);
  const again = JSON.parse(await ok(['status', '--json', ...dirArgs]));
  assert.deepEqual([again.nodes.length, again.rebalanced], [3, true]);
  await ok(['cluster', 'down', ...dirArgs]);
  for (const n of manifest(dir).nodes) assert.equal(isProcessAlive(n.pid, n.configPath), false);
});

test('the test helper starts nodes through the library, adds and kills one, and tears down without leaving a process', async () => {
  const c = await startTestCluster({ nodes: 2 });
  let pids: { pid: number | null; configPath: string }[] = [];
  try {
    const conn = await c.client();
    await conn.request('cacheCreate', { name: 'default', partitions: 8 });
    await conn.request('put', { cache: 'default', key: 'a', value: 1 });
    const added = await c.add();
    assert.equal(added.id, 'node-3');
    assert.equal(c.address('node-3'), `127.0.0.1:${c.basePort + 3}`);
    await c.stop('node-1', { kill: true });
    const conn3 = await c.client('node-3');
    const got = (await conn3.request('get', { cache: 'default', key: 'a' })) as { found: boolean; value: unknown };
    assert.deepEqual([got.found, got.value], [true, 1]);
    pids = c.nodes().map((n) => ({ pid: n.pid, configPath: n.configPath }));
  } finally {
    await c.teardown();
  }
  assert.ok(pids.length === 3);
  for (const p of pids) assert.equal(isProcessAlive(p.pid, p.configPath), false);
  assert.equal(fs.existsSync(c.dir), false);
});
