import test, { afterEach, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import {
  type ClusterFile,
  clusterFilePath,
  readClusterFile,
  requireClusterFile,
  validateClusterFile,
  withClusterLock,
  writeClusterFile,
} from '../../../src/cli/cluster-file.js';
import { isPtnError } from '../../../src/errors.js';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptn-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function sample(): ClusterFile {
  return {
    kind: 'ptn-cluster',
    version: 1,
    clusterId: 'ptn-local',
    secret: 'change-me-please',
    host: '127.0.0.1',
    basePort: 7400,
    nodes: [1, 2].map((i) => ({
      id: `node-${i}`,
      index: i,
      pid: 1000 + i,
      address: `127.0.0.1:${7400 + i}`,
      adminAddress: `127.0.0.1:${7500 + i}`,
      dataDir: path.join(dir, `node-${i}`, 'data'),
      configPath: path.join(dir, `node-${i}`, 'config.json'),
      logPath: path.join(dir, `node-${i}`, 'node.log'),
      running: i === 1,
    })),
  };
}

test('cluster.json round-trips and is readable as plain JSON with the documented fields', () => {
  writeClusterFile(dir, sample());
  assert.deepEqual(readClusterFile(dir), sample());
  const raw = JSON.parse(fs.readFileSync(clusterFilePath(dir), 'utf8'));
  for (const k of ['id', 'pid', 'address', 'adminAddress', 'dataDir', 'running']) assert.ok(k in raw.nodes[0], k);
});

test('cluster.json is private (mode 0600: it holds the secret) and leaves no temp file', () => {
  writeClusterFile(dir, sample());
  assert.equal(fs.statSync(clusterFilePath(dir)).mode & 0o777, 0o600);
  assert.deepEqual(fs.readdirSync(dir), ['cluster.json']);
});

test('a rewrite replaces the whole document (no mix of old and new)', () => {
  writeClusterFile(dir, sample());
  const next = sample();
  next.nodes = next.nodes.slice(0, 1);
  next.nodes[0]!.running = false;
  writeClusterFile(dir, next);
  assert.deepEqual(readClusterFile(dir), next);
});

test('a missing cluster.json reads as undefined, and requireClusterFile says ERR_USAGE', () => {
  assert.equal(readClusterFile(dir), undefined);
  assert.throws(() => requireClusterFile(dir), (err: unknown) => isPtnError(err, 'ERR_USAGE'));
});

test('a malformed or unknown-version cluster.json is ERR_FILE_FORMAT', () => {
  const cases: unknown[] = [
    '{not json',
    [],
    { ...sample(), kind: 'other' },
    { ...sample(), version: 2 },
    { ...sample(), nodes: 'x' },
    { ...sample(), nodes: [{ ...sample().nodes[0], pid: -1 }] },
    { ...sample(), nodes: [{ ...sample().nodes[0], running: 'yes' }] },
    { ...sample(), nodes: [sample().nodes[0], sample().nodes[0]] },
    { ...sample(), nodeConfig: [1] },
  ];
  for (const c of cases) {
    fs.writeFileSync(clusterFilePath(dir), typeof c === 'string' ? c : JSON.stringify(c));
    assert.throws(() => readClusterFile(dir), (err: unknown) => isPtnError(err, 'ERR_FILE_FORMAT'), JSON.stringify(c).slice(0, 80));
  }
});

test('writeClusterFile refuses to write an invalid document', () => {
  const bad = sample();
  (bad.nodes[0] as { index: number }).index = 0;
  assert.throws(() => writeClusterFile(dir, bad), (err: unknown) => isPtnError(err, 'ERR_FILE_FORMAT'));
  assert.equal(fs.existsSync(clusterFilePath(dir)), false);
});

test('the lock excludes a second holder while a live process holds it, and is released after', async () => {
  const inner = withClusterLock(dir, async () => {
    await assert.rejects(withClusterLock(dir, async () => 1), (err: unknown) => isPtnError(err, 'ERR_USAGE'));
    return 7;
  });
  assert.equal(await inner, 7);
  assert.equal(fs.existsSync(path.join(dir, 'cluster.lock')), false);
  assert.equal(await withClusterLock(dir, async () => 8), 8);
});

test('a lock left by a process that is gone is taken over', async () => {
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  fs.writeFileSync(path.join(dir, 'cluster.lock'), `${dead.stdout}\n`);
  assert.equal(await withClusterLock(dir, async () => 'ok'), 'ok');
});

test('the lock is released when the work throws', async () => {
  await assert.rejects(withClusterLock(dir, async () => {
    throw new Error('boom');
  }), /boom/);
  assert.equal(fs.existsSync(path.join(dir, 'cluster.lock')), false);
});

test('validateClusterFile accepts the sample', () => {
  assert.equal(validateClusterFile(sample()).nodes.length, 2);
});
