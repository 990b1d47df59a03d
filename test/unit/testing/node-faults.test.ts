import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { TEST_FAULTS_ENV, checkTestFaultsAllowed, defaultConfig, validateConfig } from '../../../src/config.js';
import { startNode } from '../../../src/cluster/node.js';
import { NO_FAULT_POINTS, type NodeFaults, createNodeFaults, faults, parseFaultRulesUpdate, serveFaultsHttp } from '../../../src/testing/index.js';
import { adminRequest } from '../../helpers/node-faults.js';
import { tempDir } from '../../helpers/tmp.js';

test('test faults are off by default and advertiseAddress defaults to the bound address (empty)', () => {
  const cfg = defaultConfig();
  assert.deepEqual(cfg.testFaults, { enabled: false, points: [], fileRules: [] });
  assert.equal(cfg.advertiseAddress, '');
  const full = defaultConfig({ testFaults: { enabled: true, points: [{ name: 'a.*', action: 'stop' }] }, advertiseAddress: '127.0.0.1:9000' });
  assert.deepEqual(full.testFaults, { enabled: true, points: [{ name: 'a.*', action: 'stop' }], fileRules: [] });
  assert.equal(full.advertiseAddress, '127.0.0.1:9000');
});

test('a bad testFaults section or advertiseAddress fails with one line naming the key', () => {
  const cases: Array<[unknown, RegExp]> = [
    [{ testFaults: { enabled: 'yes' } }, /^n\.json: testFaults\.enabled: expected boolean/],
    [{ testFaults: { points: [{ name: 'p', action: 'explode' }] } }, /^n\.json: testFaults\.points\.0\.action: expected one of \["kill","stop","delay","throw"\]/],
    [{ testFaults: { points: [{ action: 'kill' }] } }, /^n\.json: testFaults\.points\.0: expected have required property 'name'/],
    [{ testFaults: { fileRules: [{ pathIncludes: '/wal/', op: 'unlink' }] } }, /^n\.json: testFaults\.fileRules\.0\.op: expected one of/],
    [{ testFaults: { fileRules: [{ pathIncludes: '', op: 'write', nth: 0 }] } }, /^n\.json: testFaults\.fileRules\.0\.nth: expected >= 1/],
    [{ testFaults: { chaos: true } }, /^n\.json: testFaults\.chaos: expected no such key/],
    [{ advertiseAddress: 'no-port' }, /^n\.json: advertiseAddress: expected match pattern/],
  ];
  for (const [raw, re] of cases) {
    assert.throws(() => validateConfig(raw, 'n.json'), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_CONFIG_INVALID');
      assert.match(err.message, re);
      assert.equal(err.message.includes('\n'), false);
      return true;
    });
  }
});

test('enabled test faults are refused unless PTN_ENABLE_TEST_FAULTS=1', () => {
  const on = defaultConfig({ testFaults: { enabled: true } });
  assert.throws(() => checkTestFaultsAllowed(on, 'node.json', {}), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'ERR_CONFIG_INVALID');
    assert.match(err.message, /^node\.json: testFaults\.enabled: /);
    assert.equal(err.message.includes('\n'), false);
    return true;
  });
  assert.throws(() => checkTestFaultsAllowed(on, 'node.json', { [TEST_FAULTS_ENV]: 'true' }), { code: 'ERR_CONFIG_INVALID' });
  checkTestFaultsAllowed(on, 'node.json', { [TEST_FAULTS_ENV]: '1' });
  checkTestFaultsAllowed(defaultConfig(), 'node.json', {});
});

test('startNode refuses a config with test faults before it opens anything', async (t) => {
  const dir = await tempDir(t);
  const before = process.env[TEST_FAULTS_ENV];
  delete process.env[TEST_FAULTS_ENV];
  t.after(() => {
    if (before !== undefined) process.env[TEST_FAULTS_ENV] = before;
  });
  const dataDir = path.join(dir, 'data');
  await assert.rejects(startNode(defaultConfig({ dataDir, port: 0, adminPort: 0, testFaults: { enabled: true } })), { code: 'ERR_CONFIG_INVALID' });
  assert.equal(fs.existsSync(dataDir), false);
});

test('createNodeFaults builds nothing when disabled; when enabled it installs its points until close', () => {
  assert.equal(createNodeFaults(defaultConfig().testFaults), undefined);
  const nf = createNodeFaults(defaultConfig({ testFaults: { enabled: true, points: [{ name: 'x', action: 'throw' }] } }).testFaults)!;
  try {
    assert.equal(faults(), nf.points);
    assert.throws(() => faults().hit('x'), { code: 'ERR_TEST_FAULT' });
    nf.apply({ points: [] });
    faults().hit('x');
    assert.deepEqual(nf.describe().hits, { x: 2 });
  } finally {
    nf.close();
  }
  assert.equal(faults(), NO_FAULT_POINTS);
  nf.close();
});

test('a rules update is checked against the schema and the layer rules; absent kinds stay as they are', () => {
  assert.deepEqual(parseFaultRulesUpdate({ points: [{ name: 'p', action: 'delay', delayMs: 5 }] }), { points: [{ name: 'p', action: 'delay', delayMs: 5 }] });
  assert.deepEqual(parseFaultRulesUpdate({ fileRules: [] }), { fileRules: [] });
  for (const bad of [
    [],
    'x',
    { colour: 1 },
    { points: [{ name: 'p', action: 'explode' }] },
    { fileRules: [{ pathIncludes: '', op: 'sync', tear: true }] },
    { fileRules: [{ pathIncludes: '', op: 'write', bytesMax: 3, nth: 2 }] },
  ]) {
    assert.throws(() => parseFaultRulesUpdate(bad), { code: 'ERR_CONFIG_INVALID' }, JSON.stringify(bad));
  }
  const nf = createNodeFaults(defaultConfig({ testFaults: { enabled: true, fileRules: [{ pathIncludes: 'a', op: 'write' }] } }).testFaults)!;
  try {
    assert.throws(() => nf.apply({ points: [], fileRules: [{ pathIncludes: '', op: 'open', bytesMax: 1 }] }), { code: 'ERR_CONFIG_INVALID' });
    assert.equal(nf.fileLayer.rules().length, 1, 'a rejected update changes nothing');
  } finally {
    nf.close();
  }
});

async function serve(t: test.TestContext, nf: NodeFaults | undefined): Promise<string> {
  const server = http.createServer((req, res) => {
    serveFaultsHttp(nf, req, res).catch(() => res.writeHead(500).end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

test('/faults: 404 without test faults; GET describes, POST replaces (400 with a code when bad), other methods 405', async (t) => {
  const none = await serve(t, undefined);
  assert.equal((await adminRequest(none, 'POST', '/faults', { points: [] })).status, 404);
  assert.equal((await adminRequest(none, 'GET', '/faults')).status, 404);

  const nf = createNodeFaults(defaultConfig({ testFaults: { enabled: true } }).testFaults)!;
  t.after(() => nf.close());
  const addr = await serve(t, nf);
  const posted = await adminRequest(addr, 'POST', '/faults', { points: [{ name: 'supplier.sent.40', action: 'kill', once: true }], fileRules: [{ pathIncludes: '/wal/', op: 'write', error: 'ENOSPC' }] });
  assert.equal(posted.status, 200);
  assert.deepEqual(nf.points.rules(), [{ name: 'supplier.sent.40', action: 'kill', once: true, seen: 0, fired: 0 }]);
  assert.deepEqual(nf.fileLayer.rules(), [{ pathIncludes: '/wal/', op: 'write', error: 'ENOSPC', seen: 0, bytesWritten: 0 }]);
  const got = await adminRequest(addr, 'GET', '/faults');
  assert.equal(got.status, 200);
  assert.equal(got.body.points[0].name, 'supplier.sent.40');
  assert.equal(got.body.fileFaultsInjected, 0);
  const bad = await adminRequest(addr, 'POST', '/faults', { points: [{ name: 'p', action: 'explode' }] });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error, 'ERR_CONFIG_INVALID');
  assert.equal(nf.points.rules().length, 1, 'a bad update changed nothing');
  const put = await new Promise<number>((resolve, reject) => {
    const [host, port] = addr.split(':');
    http.request({ host, port: Number(port), method: 'PUT', path: '/faults', agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on('error', reject).end();
  });
  assert.equal(put, 405);
});
