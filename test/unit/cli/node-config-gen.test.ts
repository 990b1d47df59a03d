import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfigFile } from '../../../src/config.js';
import { type ClusterParams, nodeConfigObject, nodeEntry, writeNodeConfig } from '../../../src/cli/node-config-gen.js';
import { isPtnError } from '../../../src/errors.js';

let dir: string;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptn-'));
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const params = (over: Partial<ClusterParams> = {}): ClusterParams => ({
  dir,
  host: '127.0.0.1',
  basePort: 7400,
  clusterId: 'ptn-local',
  secret: 'change-me-please',
  ...over,
});

test('node i gets ports P+i and P+100+i and its folder under DIR', () => {
  const e = nodeEntry(params(), 3);
  assert.equal(e.id, 'node-3');
  assert.equal(e.address, '127.0.0.1:7403');
  assert.equal(e.adminAddress, '127.0.0.1:7503');
  assert.equal(e.dataDir, path.join(dir, 'node-3', 'data'));
  assert.equal(e.configPath, path.join(dir, 'node-3', 'config.json'));
  assert.equal(e.logPath, path.join(dir, 'node-3', 'node.log'));
  assert.equal(e.running, false);
  assert.equal(e.pid, null);
});

test('a written config is valid against config/node.schema.json and says what the manifest says', () => {
  const e = nodeEntry(params(), 2);
  writeNodeConfig(params(), e, ['127.0.0.1:7401']);
  const cfg = loadConfigFile(e.configPath);
  assert.equal(cfg.nodeId, 'node-2');
  assert.equal(cfg.port, 7402);
  assert.equal(cfg.adminPort, 7502);
  assert.equal(cfg.dataDir, e.dataDir);
  assert.deepEqual(cfg.seeds, ['127.0.0.1:7401']);
  assert.equal(cfg.clusterSecret, 'change-me-please');
  assert.ok(fs.statSync(e.dataDir).isDirectory());
  assert.equal(fs.statSync(e.configPath).mode & 0o777, 0o600);
});

test('node config overrides merge one level deep into the generated config', () => {
  const p = params({ nodeConfig: { logLevel: 'warn', wal: { durability: 'background' }, net: { failureTimeoutMs: 1500 } } });
  const cfg = nodeConfigObject(p, nodeEntry(p, 1), []) as { logLevel: string; wal: { durability: string }; net: { failureTimeoutMs: number } };
  assert.equal(cfg.logLevel, 'warn');
  assert.equal(cfg.wal.durability, 'background');
  assert.equal(cfg.net.failureTimeoutMs, 1500);
});

test('overrides may not set what the manager owns, nor values the schema refuses', () => {
  const own = params({ nodeConfig: { port: 1 } });
  assert.throws(() => nodeConfigObject(own, nodeEntry(own, 1), []), (err: unknown) => isPtnError(err, 'ERR_USAGE'));
  const invalid = params({ nodeConfig: { wal: { durability: 'sometimes' } } });
  assert.throws(() => nodeConfigObject(invalid, nodeEntry(invalid, 1), []), (err: unknown) => isPtnError(err, 'ERR_CONFIG_INVALID'));
  const unknown = params({ nodeConfig: { colour: 'blue' } });
  assert.throws(() => nodeConfigObject(unknown, nodeEntry(unknown, 1), []), (err: unknown) => isPtnError(err, 'ERR_CONFIG_INVALID'));
});

test('a secret the schema refuses (too short) is caught before any node starts', () => {
  const p = params({ secret: 'short' });
  assert.throws(() => nodeConfigObject(p, nodeEntry(p, 1), []), (err: unknown) => isPtnError(err, 'ERR_CONFIG_INVALID'));
});

test('node indexes and ports out of range are usage errors', () => {
  assert.throws(() => nodeEntry(params(), 0), (err: unknown) => isPtnError(err, 'ERR_USAGE'));
  assert.throws(() => nodeEntry(params(), 100), (err: unknown) => isPtnError(err, 'ERR_USAGE'));
  assert.throws(() => nodeEntry(params({ basePort: 65500 }), 1), (err: unknown) => isPtnError(err, 'ERR_USAGE'));
});
