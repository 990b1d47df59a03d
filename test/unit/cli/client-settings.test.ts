import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_NODE_ADDRESS, clusterAddresses, resolveClientSettings } from '../../../src/cli/client.js';
import { writeClusterFile } from '../../../src/cli/cluster-file.js';
import { isPtnError } from '../../../src/errors.js';

let dir: string;
const defaults = { clusterSecret: 'default-secret', clusterId: 'default-cluster' };
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptn-'));
  const node = (i: number, running: boolean) => ({
    id: `node-${i}`, index: i, pid: null, address: `127.0.0.1:${9000 + i}`, adminAddress: `127.0.0.1:${9100 + i}`,
    dataDir: '/d', configPath: '/c', logPath: '/l', running,
  });
  writeClusterFile(dir, {
    kind: 'ptn-cluster', version: 1, clusterId: 'from-dir', secret: 'dir-secret-123', host: '127.0.0.1', basePort: 9000,
    nodes: [node(1, false), node(2, true), node(3, true)],
  });
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('flags win over the environment, which wins over --dir, which wins over the defaults', () => {
  const env = { PTN_SECRET: 'env-secret', PTN_NODE: '10.0.0.1:1', PTN_CLUSTER_ID: 'env-cluster' };
  assert.deepEqual(resolveClientSettings({ node: 'h:1', secret: 'flag', clusterId: 'fc', dir }, env, defaults), {
    address: 'h:1', secret: 'flag', clusterId: 'fc', requestTimeoutMs: undefined,
  });
  assert.deepEqual(resolveClientSettings({ dir }, env, defaults), { address: '10.0.0.1:1', secret: 'env-secret', clusterId: 'env-cluster', requestTimeoutMs: undefined });
  assert.deepEqual(resolveClientSettings({ dir, timeoutMs: 50 }, {}, defaults), { address: '127.0.0.1:9002', secret: 'dir-secret-123', clusterId: 'from-dir', requestTimeoutMs: 50 });
  assert.deepEqual(resolveClientSettings({}, {}, defaults), { address: DEFAULT_NODE_ADDRESS, secret: 'default-secret', clusterId: 'default-cluster', requestTimeoutMs: undefined });
});

test('the real defaults are the config defaults and 127.0.0.1:7401', () => {
  const s = resolveClientSettings({}, {});
  assert.deepEqual([s.address, s.secret, s.clusterId], ['127.0.0.1:7401', 'change-me-please', 'ptn-local']);
});

test('--dir without a cluster is ERR_USAGE', () => {
  assert.throws(() => resolveClientSettings({ dir: path.join(dir, 'none') }, {}, defaults), (err: unknown) => isPtnError(err, 'ERR_USAGE'));
});

test('fail-over addresses list running nodes first', () => {
  assert.deepEqual(clusterAddresses(dir), ['127.0.0.1:9002', '127.0.0.1:9003', '127.0.0.1:9001']);
  assert.deepEqual(clusterAddresses(undefined), []);
});
