// The command a node process starts with: this Node binary, the V8 flags a transfer needs, bin/ptn.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { NODE_V8_FLAGS, defaultNodeCommand } from '../../../src/cli/node-launcher.js';
import { binPtnPath } from '../../../src/cli/paths.js';

test('a launched node runs this Node binary with the V8 flags, then bin/ptn', () => {
  assert.deepEqual(defaultNodeCommand(), [process.execPath, ...NODE_V8_FLAGS, binPtnPath()]);
  assert.ok(NODE_V8_FLAGS.includes('--initial-heap-size=128'));
});

test('bin/ptn run by hand starts with the same V8 flags as a launched node', () => {
  const shebang = fs.readFileSync(binPtnPath(), 'utf8').split('\n', 1)[0]!;
  assert.equal(shebang, `#!/usr/bin/env -S node ${NODE_V8_FLAGS.join(' ')}`);
});

test('this Node binary accepts the flags and a process started with them sees them', () => {
  const r = spawnSync(process.execPath, [...NODE_V8_FLAGS, '-e', 'process.stdout.write(JSON.stringify(process.execArgv))'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout).slice(0, NODE_V8_FLAGS.length), [...NODE_V8_FLAGS]);
});
