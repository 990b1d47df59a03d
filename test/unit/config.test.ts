import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { defaultConfig, loadConfigFile, validateConfig } from '../../src/config.js';
import { tempDir } from '../helpers/tmp.js';

test('defaults fill every key and relative data dirs resolve against the config file', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'node.json');
  await fs.writeFile(file, JSON.stringify({ nodeId: 'n1', dataDir: 'data' }));
  const cfg = loadConfigFile(file);
  assert.equal(cfg.dataDir, path.join(dir, 'data'));
  assert.equal(cfg.storage.pageSizeBytes, 4096);
  assert.equal(cfg.wal.durability, 'fsync');
  assert.equal(cfg.cluster.syncMode, 'full-sync');
  assert.equal(cfg.rebalance.compression, 'none');
  assert.equal(defaultConfig().net.frameBytesMax, 16 * 1024 * 1024);
});

test('an unknown key, a wrong type or an out-of-range value fails with one line naming the file, the key and the expectation', () => {
  const cases: Array<[unknown, RegExp]> = [
    [{ colour: 'blue' }, /^node\.json: colour: expected no such key/],
    [{ storage: { pageCacheBytes: 1 } }, /^node\.json: storage\.pageCacheBytes: expected no such key/],
    [{ port: 'x' }, /^node\.json: port: expected integer, got "x"$/],
    [{ storage: { pageCacheBytesMax: 5 } }, /^node\.json: storage\.pageCacheBytesMax: expected >= 1048576, got 5$/],
    [{ wal: { durability: 'sometimes' } }, /^node\.json: wal\.durability: expected one of \["fsync","background"\], got "sometimes"$/],
    [{ storage: { pageSizeBytes: 1000 } }, /^node\.json: storage\.pageSizeBytes: expected one of/],
    [[], /^node\.json: expected a JSON object/],
  ];
  for (const [raw, re] of cases) {
    assert.throws(() => validateConfig(raw, 'node.json'), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_CONFIG_INVALID');
      assert.match(err.message, re);
      assert.equal(err.message.includes('\n'), false);
      return true;
    });
  }
});

test('a file that is missing or not JSON is refused with ERR_CONFIG_INVALID', async (t) => {
  const dir = await tempDir(t);
  assert.throws(() => loadConfigFile(path.join(dir, 'nope.json')), { code: 'ERR_CONFIG_INVALID' });
  await fs.writeFile(path.join(dir, 'bad.json'), '{ not json');
  assert.throws(() => loadConfigFile(path.join(dir, 'bad.json')), { code: 'ERR_CONFIG_INVALID' });
});
