import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  FAULT_DEFAULT_DELAY_MS,
  FaultPoints,
  NO_FAULT_POINTS,
  crossedPercents,
  faults,
  installFaultPoints,
  pointNameMatches,
} from '../../../src/testing/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const CHILD = path.join(here, 'fault-point-child.ts');

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

/** True once `p` settled, checked after pending microtasks ran. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  for (let i = 0; i < 5; i++) await Promise.resolve();
  return done;
}

test('without test faults, faults() is the shared no-op: every hit returns the same resolved promise', async () => {
  assert.equal(faults(), NO_FAULT_POINTS);
  assert.equal(NO_FAULT_POINTS.enabled, false);
  const a = faults().hit('demander.phase.REPLAYING', { partition: 1 });
  const b = faults().hitProgress('supplier.sent', 0, 100, 100);
  assert.equal(a, b);
  await a;
  assert.deepEqual(NO_FAULT_POINTS.hits(), {});
  assert.throws(() => NO_FAULT_POINTS.setRules([{ name: 'x', action: 'kill' }]), { name: 'AssertionError' });
});

test('installing points makes faults() return them; uninstalling restores the no-op', () => {
  const fp = new FaultPoints();
  const uninstall = installFaultPoints(fp);
  try {
    assert.equal(faults(), fp);
  } finally {
    uninstall();
  }
  assert.equal(faults(), NO_FAULT_POINTS);
  const other = new FaultPoints();
  const un2 = installFaultPoints(other);
  uninstall(); // a stale uninstall leaves the newer instance in place
  assert.equal(faults(), other);
  un2();
});

test('a rule lets `after` matching hits through, then throws ERR_TEST_FAULT in the call; once retires it', () => {
  const fp = new FaultPoints([{ name: 'wal.append', action: 'throw', after: 2, once: true }]);
  const codes = Array.from({ length: 5 }, () => codeOf(() => fp.hit('wal.append')));
  assert.deepEqual(codes, [undefined, undefined, 'ERR_TEST_FAULT', undefined, undefined]);
  assert.equal(codeOf(() => fp.hit('checkpoint.write')), undefined, 'other names do not match');
  assert.deepEqual(
    fp.rules().map((r) => ({ seen: r.seen, fired: r.fired })),
    [{ seen: 3, fired: 1 }],
  );
  assert.equal(fp.hitsOf('wal.append'), 5);
  assert.deepEqual(fp.hits(), { 'wal.append': 5, 'checkpoint.write': 1 });
});

test('without once a rule fires on every hit after `after`; setRules restarts the counts', () => {
  const fp = new FaultPoints([{ name: 'p', action: 'throw', after: 1 }]);
  assert.deepEqual(
    Array.from({ length: 4 }, () => codeOf(() => fp.hit('p'))),
    [undefined, 'ERR_TEST_FAULT', 'ERR_TEST_FAULT', 'ERR_TEST_FAULT'],
  );
  fp.setRules([{ name: 'p', action: 'throw', after: 1 }]);
  assert.equal(codeOf(() => fp.hit('p')), undefined);
  assert.equal(codeOf(() => fp.hit('p')), 'ERR_TEST_FAULT');
  fp.setRules([]);
  assert.equal(codeOf(() => fp.hit('p')), undefined);
});

test('a name ending with * matches a prefix; other names match exactly', () => {
  assert.equal(pointNameMatches('demander.phase.*', 'demander.phase.REPLAYING'), true);
  assert.equal(pointNameMatches('demander.phase.*', 'demander.phases'), false);
  assert.equal(pointNameMatches('supplier.sent.40', 'supplier.sent.40'), true);
  assert.equal(pointNameMatches('supplier.sent.4', 'supplier.sent.40'), false);
  const fp = new FaultPoints([{ name: 'demander.phase.*', action: 'throw', after: 1 }]);
  fp.hit('demander.phase.STREAMING');
  assert.equal(codeOf(() => fp.hit('demander.phase.REPLAYING')), 'ERR_TEST_FAULT');
});

test('a delay holds the hit for delayMs, then the next due rule acts', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const fp = new FaultPoints([
    { name: 'p', action: 'delay', delayMs: 500 },
    { name: 'p', action: 'throw' },
  ]);
  const p = fp.hit('p');
  const outcome = p.then(
    () => 'resolved',
    (err: { code?: string }) => err.code,
  );
  assert.equal(await settled(p), false);
  t.mock.timers.tick(499);
  assert.equal(await settled(p), false);
  t.mock.timers.tick(1);
  assert.equal(await outcome, 'ERR_TEST_FAULT');

  const q = new FaultPoints([{ name: 'q', action: 'delay' }]).hit('q');
  t.mock.timers.tick(FAULT_DEFAULT_DELAY_MS - 1);
  assert.equal(await settled(q), false);
  t.mock.timers.tick(1);
  await q;
});

test('progress crosses each 10 % step once, and hitProgress hits <prefix>.<pct> for them in order', () => {
  assert.deepEqual(crossedPercents(0, 35, 100), [10, 20, 30]);
  assert.deepEqual(crossedPercents(35, 45, 100), [40]);
  assert.deepEqual(crossedPercents(45, 45, 100), []);
  assert.deepEqual(crossedPercents(99, 100, 100), [100]);
  assert.deepEqual(crossedPercents(0, 1, 3), [10, 20, 30]);
  assert.deepEqual(crossedPercents(0, 10, 0), []);
  const fp = new FaultPoints([{ name: 'supplier.sent.40', action: 'throw' }]);
  fp.hitProgress('supplier.sent', 0, 350, 1000, { partition: 3 });
  assert.equal(codeOf(() => fp.hitProgress('supplier.sent', 350, 450, 1000)), 'ERR_TEST_FAULT');
  assert.equal(fp.hitsOf('supplier.sent.30'), 1);
  assert.equal(fp.hitsOf('supplier.sent.40'), 1);
  assert.equal(fp.hitsOf('supplier.sent.50'), 0);
});

interface ChildEnd {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function runChild(action: 'kill' | 'stop', point: string, onStdout?: (text: string, pid: number) => void): Promise<ChildEnd> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, action, point], { stdio: ['ignore', 'pipe', 'pipe'] });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
      onStdout?.(stdout, child.pid!);
    });
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** The process state letter from /proc (T = stopped). */
function procState(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return undefined;
  }
}

test('kill: the process dies by SIGKILL at the point, after one JSON line on stderr', async () => {
  const end = await runChild('kill', 'demander.phase.REPLAYING');
  assert.equal(end.signal, 'SIGKILL');
  assert.equal(end.stdout, 'before\n');
  const note = JSON.parse(end.stderr.trim().split('\n').pop()!) as { point: string; action: string };
  assert.equal(note.point, 'demander.phase.REPLAYING');
  assert.equal(note.action, 'kill');
});

test('stop: the process stops itself at the point and carries on after SIGCONT', async () => {
  let sawStopped = false;
  let sent = false;
  const end = await runChild('stop', 'demander.phase.SWAPPING', (out, pid) => {
    if (sent || out !== 'before\n') return;
    sent = true;
    void (async () => {
      for (let i = 0; i < 600 && procState(pid) !== 'T'; i++) await new Promise((r) => setTimeout(r, 50));
      sawStopped = procState(pid) === 'T';
      process.kill(pid, 'SIGCONT');
    })();
  });
  assert.equal(sawStopped, true, 'the child was seen stopped (state T) before SIGCONT');
  assert.equal(end.code, 0);
  assert.equal(end.stdout, 'before\nafter\n');
  assert.match(end.stderr, /"action":"stop"/);
});
