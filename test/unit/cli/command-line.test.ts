// Spawns bin/ptn as a user would: usage errors are one line on stderr with a non-zero exit,
// never a stack trace, and every command answers --help with exit 0.
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import type { Command } from 'commander';
import { buildProgram } from '../../../src/cli/main.js';
import { binPtnPath } from '../../../src/cli/paths.js';

let dir: string;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptn-'));
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function ptn(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [binPtnPath(), ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Asserts a failed run printed exactly one `error …` line on stderr and nothing that looks like a stack. */
function assertOneLineError(r: Run, code: number, pattern: RegExp): void {
  assert.equal(r.code, code, `exit code (stderr: ${r.stderr})`);
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `one stderr line, got: ${JSON.stringify(r.stderr)}`);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
}

function commandPaths(cmd: Command, prefix: string[] = []): string[][] {
  const out: string[][] = [];
  for (const sub of cmd.commands) {
    const p = [...prefix, sub.name()];
    out.push(p);
    out.push(...commandPaths(sub, p));
  }
  return out;
}

test('an unknown flag is one ERR_USAGE line, exit 2', async () => {
  assertOneLineError(await ptn(['put', 'k', 'v', '--bogus']), 2, /^error ERR_USAGE: unknown option '--bogus'/);
});

test('a missing argument is one ERR_USAGE line, exit 2', async () => {
  assertOneLineError(await ptn(['get']), 2, /^error ERR_USAGE: missing required argument 'key'/);
  assertOneLineError(await ptn(['node', 'start']), 2, /^error ERR_USAGE: required option '--config <file>' not specified/);
  assertOneLineError(await ptn(['cluster', 'up', '--dir', dir]), 2, /^error ERR_USAGE: required option '--nodes <n>' not specified/);
});

test('a bad number is one ERR_USAGE line naming the flag, exit 2', async () => {
  assertOneLineError(await ptn(['cluster', 'up', '--nodes', 'three', '--dir', dir]), 2, /^error ERR_USAGE: option '--nodes <n>' argument 'three' is invalid/);
  assertOneLineError(await ptn(['load', '--entries', '-5', '--value-bytes', '10']), 2, /^error ERR_USAGE: option '--entries <n>' argument '-5' is invalid/);
  assertOneLineError(await ptn(['load', '--entries', '5', '--value-bytes', '10', '--rate', '0']), 2, /--rate <ops>' argument '0' is invalid/);
  assertOneLineError(await ptn(['get', 'k', '--node', 'nowhere']), 2, /--node <host:port>' argument 'nowhere' is invalid\. expected HOST:PORT/);
});

test('an unknown command, a missing subcommand and extra arguments are usage errors', async () => {
  assertOneLineError(await ptn(['frobnicate']), 2, /^error ERR_USAGE: unknown command 'frobnicate'/);
  assertOneLineError(await ptn(['cluster']), 2, /^error ERR_USAGE: missing command/);
  assertOneLineError(await ptn([]), 2, /^error ERR_USAGE: missing command/);
  assertOneLineError(await ptn(['get', 'a', 'b']), 2, /^error ERR_USAGE: too many arguments/);
});

test('a bad node config is one line naming file, key and expectation, exit 2', async () => {
  const file = path.join(dir, 'bad.json');
  fs.writeFileSync(file, JSON.stringify({ storage: { pageCacheBytesMax: 5 } }));
  assertOneLineError(await ptn(['node', 'start', '--config', file]), 2, /^error ERR_CONFIG_INVALID: .*bad\.json: storage\.pageCacheBytesMax: expected >= 1048576, got 5$/);
  const notJson = path.join(dir, 'notjson.json');
  fs.writeFileSync(notJson, '{');
  assertOneLineError(await ptn(['node', 'start', '--config', notJson]), 2, /^error ERR_CONFIG_INVALID: .*notjson\.json: not valid JSON/);
  assertOneLineError(await ptn(['node', 'start', '--config', path.join(dir, 'missing.json')]), 2, /^error ERR_CONFIG_INVALID: .*missing\.json: cannot read/);
});

test('operating errors are one coded line, exit 1: no node listening, no cluster, missing ack log', async () => {
  assertOneLineError(await ptn(['get', 'k', '--node', '127.0.0.1:1']), 1, /^error ERR_\w+: cannot connect to 127\.0\.0\.1:1/);
  assertOneLineError(await ptn(['cluster', 'ls', '--dir', dir]), 2, /^error ERR_USAGE: no cluster in /);
  assertOneLineError(await ptn(['verify', '--ack-log', path.join(dir, 'none.log'), '--node', '127.0.0.1:1']), 1, /^error ERR_IO: reading ack log/);
});

test('--version prints the package version, exit 0', async () => {
  const r = await ptn(['--version']);
  assert.equal(r.code, 0);
  assert.equal(r.stdout.trim(), JSON.parse(fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')).version);
});

test('--help on every command exits 0 and prints that command\'s usage', async () => {
  const paths = [[], ...commandPaths(buildProgram()).filter((p) => p[p.length - 1] !== 'help')];
  assert.ok(paths.length >= 20, `found ${paths.length} commands`);
  for (const p of paths) {
    const r = await ptn([...p, '--help']);
    assert.equal(r.code, 0, `ptn ${p.join(' ')} --help: ${r.stderr}`);
    assert.equal(r.stderr, '');
    assert.ok(r.stdout.startsWith(`Usage: ptn${p.length ? ' ' + p.join(' ') : ''} `), `ptn ${p.join(' ')} --help printed: ${r.stdout.slice(0, 80)}`);
  }
});
