// `ptn rebalance watch` against real node processes: 2 nodes with data, a 3rd node added, the
// watch spawned (stdout is a pipe: plain lines) until it exits 0, its lines showing partitions
// of the new node progressing.
//
// The rebalance is held back by a low throttle (full-path pulls of the new node) until the watch
// has printed a line with a running task, then the throttle is lifted on every node: the watch
// sees work in progress whatever the speed of the machine, and the test stays short.
import test, { after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { binPtnPath } from '../../src/cli/paths.js';
import { asClusterStatus } from '../../src/cli/status-format.js';
import { type TestCluster, startTestCluster } from '../helpers/cluster.js';

let c: TestCluster | undefined;
after(() => c?.teardown());

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

test('ptn rebalance watch follows a node joining until the cluster is rebalanced (exit 0)', async () => {
  c = await startTestCluster({ nodes: 2, spareNodes: 1, nodeConfig: { rebalance: { throttleBytesPerSec: 10_000, fullBatchBytesMax: 4096 } } });
  const conn = await c.client();
  await conn.request('cacheCreate', { name: 'default', partitions: 8, backups: 1 });
  const value = { pad: 'v'.repeat(2000) };
  for (let i = 0; i < 200; i += 20) {
    await Promise.all(Array.from({ length: 20 }, (_, j) => conn.request('put', { cache: 'default', key: `k${i + j}`, value })));
  }

  await c.add({ wait: 'healthy' });
  const deadline = Date.now() + 30_000;
  for (;;) {
    const s = asClusterStatus(await conn.request('status', {}));
    if (s.nodes.length === 3 && !s.rebalanced) break;
    assert.ok(Date.now() < deadline, `node-3 never started rebalancing: ${JSON.stringify(s.rebalance)}`);
    await new Promise((r) => setTimeout(r, 100));
  }

  const settings = c.settings();
  let lifted: Promise<unknown> | undefined;
  const liftThrottle = () =>
    Promise.all(['node-1', 'node-2', 'node-3'].map(async (id) => (await c!.client(id)).request('configSet', { key: 'rebalance.throttleBytesPerSec', value: 0 })));
  const run = await new Promise<Run>((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [binPtnPath(), 'rebalance', 'watch', '--node', settings.address, '--interval-ms', '200', '--timeout-ms', '90000'],
      { env: { ...process.env, PTN_SECRET: settings.secret, PTN_CLUSTER_ID: settings.clusterId }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    const kill = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.stdout.on('data', (d) => {
      stdout += d;
      if (lifted === undefined && /tasks: default\/\d+@node-3 /.test(stdout)) lifted = liftThrottle();
    });
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(kill);
      resolve({ code, stdout, stderr });
    });
  });
  await lifted;

  assert.equal(run.code, 0, `stdout:\n${run.stdout}\nstderr:\n${run.stderr}`);
  assert.doesNotMatch(run.stdout, /\x1b/, 'plain lines on a pipe');
  const lines = run.stdout.trimEnd().split('\n');
  const progress = lines.filter((l) => /^\[[^\]]+\] partitions \d+\/\d+ done/.test(l)).map((l) => {
    const m = /partitions (\d+)\/(\d+) done, (\d+) left/.exec(l)!;
    return { done: Number(m[1]), total: Number(m[2]), left: Number(m[3]), line: l };
  });
  assert.ok(progress.length >= 2, `several refreshes: ${run.stdout}`);
  assert.ok(progress[0]!.left > 0, `the first refresh saw work left: ${progress[0]!.line}`);
  assert.ok(lines.some((l) => /tasks: .*default\/\d+@node-3 (FILLING|STREAMING|PENDING|running|queued)/.test(l)), 'a task of node-3 was shown running');
  for (let i = 1; i < progress.length; i++) assert.ok(progress[i]!.done >= progress[i - 1]!.done, `done never goes back: ${progress[i]!.line}`);
  const last = progress.at(-1)!;
  assert.deepEqual([last.done, last.left], [last.total, 0]);
  assert.match(lines.at(-1)!, new RegExp(`^rebalanced: ${last.total}/${last.total} copies, `));
  assert.equal(run.stderr, '');
});
