// The `ptn rebalance watch` loop driven by a scripted status source and a fake clock (exit
// codes, redraws, timeouts, Ctrl-C, failing requests, the cache filter), then the command
// itself spawned against a real NetServer that answers scripted statuses.
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { type StatusSource, type WatchClock, type WatchOptions, runWatch } from '../../../src/cli/cmd-rebalance.js';
import type { ClusterStatus } from '../../../src/cli/status-format.js';
import { binPtnPath } from '../../../src/cli/paths.js';
import { defaultConfig } from '../../../src/config.js';
import { isPtnError, ptnError } from '../../../src/errors.js';
import { NetServer } from '../../../src/net/server.js';
import type { Body } from '../../../src/net/connection.js';
import { fileTask, statusWith } from './rebalance-fixtures.js';

/** A clock whose sleeps return at once and move time forward; it records every sleep. */
class FakeClock implements WatchClock {
  t = 1_000_000;
  readonly sleeps: number[] = [];
  /** Called inside a sleep (to abort mid-sleep, as Ctrl-C would). */
  onSleep?: (n: number) => void;
  now(): number {
    return this.t;
  }
  async sleep(ms: number, signal: AbortSignal): Promise<void> {
    this.sleeps.push(ms);
    this.onSleep?.(this.sleeps.length);
    if (signal.aborted) return;
    this.t += ms;
  }
}

/** Output captured as one string. */
function sink(isTTY: boolean, columns?: number): WatchOptions['out'] & { text: string } {
  const o = { text: '', isTTY, columns, write: (s: string) => void (o.text += s) };
  return o;
}

/** Answers the scripted statuses in order (the last one forever); records the timeouts it was given. */
function scripted(statuses: Array<ClusterStatus | Error>): StatusSource & { calls: Array<number | undefined> } {
  let i = 0;
  const calls: Array<number | undefined> = [];
  const f = async (timeoutMs: number | undefined) => {
    calls.push(timeoutMs);
    const s = statuses[Math.min(i++, statuses.length - 1)]!;
    if (s instanceof Error) throw s;
    return structuredClone(s);
  };
  return Object.assign(f, { calls });
}

const moving = (left: number, bytesDone = 1_000_000) => statusWith(left > 0 ? [fileTask({ partition: 0, bytesDone, bytesTotal: 4_000_000 })] : [], left);

test('the watch exits 0 once the status says rebalanced, after one frame per refresh', async () => {
  const clock = new FakeClock();
  const out = sink(false);
  const r = await runWatch({ source: scripted([moving(3), moving(2, 2_000_000), moving(1, 3_000_000), moving(0)]), out, intervalMs: 500, clock });
  assert.deepEqual([r.code, r.end, r.frames], [0, 'rebalanced', 4]);
  assert.deepEqual(clock.sleeps, [500, 500, 500]);
  const lines = out.text.trimEnd().split('\n');
  assert.equal(lines.length, 5, out.text);
  assert.match(lines[0]!, /^\[0\.00s\] partitions 0\/3 done, 3 left; .*tasks: default\/0@node-3 STREAMING 25%$/);
  assert.match(lines[1]!, /^\[0\.50s\] partitions 1\/3 done, 2 left; 2\.0 MB\/4\.0 MB; 2\.00 MB\/s; /);
  assert.match(lines[3]!, /^\[1\.5s\] partitions 3\/3 done, 0 left; .*tasks: none$/);
  assert.match(lines[4]!, /^rebalanced: 3\/3 copies, 4\.0 MB in 1\.5s, 2\.00 MB\/s average$/);
  assert.doesNotMatch(out.text, /\x1b/, 'no control sequence when stdout is not a terminal');
});

test('on a terminal each refresh redraws the frame in place, and the cursor comes back at the end', async () => {
  const out = sink(true, 200);
  const r = await runWatch({ source: scripted([moving(3), moving(2), moving(2), moving(0)]), out, intervalMs: 500, clock: new FakeClock(), heading: 'watching n1' });
  assert.equal(r.frames, 4);
  assert.ok(out.text.startsWith('\x1b[?25lwatching n1  topology v9, 2 nodes\noverall '), JSON.stringify(out.text.slice(0, 80)));
  // Frames 2..4 each move up over the previous one (heading, overall, table header, one row = 4 lines) and clear.
  const redraws = [...out.text.matchAll(/\x1b\[(\d+)A\r\x1b\[J/g)].map((m) => Number(m[1]));
  assert.deepEqual(redraws, [4, 4, 4]);
  assert.ok(out.text.endsWith('\nno task left\n\r\x1b[2K\x1b[?25hrebalanced: 3/3 copies, 4.0 MB in 1.5s, 2.00 MB/s average\n'), JSON.stringify(out.text.slice(-80)));
});

test('a status that is already rebalanced ends at once with exit 0', async () => {
  const out = sink(false);
  const r = await runWatch({ source: scripted([moving(0)]), out, intervalMs: 500, clock: new FakeClock() });
  assert.deepEqual([r.code, r.frames], [0, 1]);
  assert.ok(out.text.endsWith('rebalanced (nothing was moving)\n'));
});

test('the timeout ends the watch with exit 1 after a last look at the deadline; requests get the time left, at least an interval', async () => {
  const clock = new FakeClock();
  const source = scripted([moving(3)]);
  const out = sink(true);
  const r = await runWatch({ source, out, intervalMs: 500, timeoutMs: 1200, clock });
  assert.deepEqual([r.code, r.end, r.frames], [1, 'timeout', 4]);
  assert.deepEqual(clock.sleeps, [500, 500, 200]);
  assert.deepEqual(source.calls, [1200, 700, 500, 500]);
  assert.equal(r.detail, 'rebalance not finished within 1200 ms: 3 of 3 copies left');
  assert.ok(out.text.endsWith('\x1b[?25h'), 'cursor restored');
});

test('Ctrl-C during the wait ends the watch with 130 and a closing line', async () => {
  const ac = new AbortController();
  const clock = new FakeClock();
  clock.onSleep = (n) => n === 2 && ac.abort();
  const out = sink(true);
  const r = await runWatch({ source: scripted([moving(3), moving(2)]), out, intervalMs: 500, clock, signal: ac.signal });
  assert.deepEqual([r.code, r.end, r.frames], [130, 'interrupted', 2]);
  assert.ok(out.text.endsWith('\r\x1b[2K\x1b[?25hinterrupted: 2 of 3 copies left\n'));
});

test('Ctrl-C while a status request hangs ends the watch at once', async () => {
  const ac = new AbortController();
  let calls = 0;
  const source: StatusSource = () => (++calls === 1 ? Promise.resolve(moving(3)) : new Promise<ClusterStatus>(() => setImmediate(() => ac.abort())));
  const out = sink(false);
  const r = await runWatch({ source, out, intervalMs: 500, clock: new FakeClock(), signal: ac.signal });
  assert.deepEqual([r.code, r.frames], [130, 1]);
  assert.ok(out.text.endsWith('interrupted: 3 of 3 copies left\n'));
});

test('a first status request that fails ends the watch with its error', async () => {
  const source = scripted([ptnError('ERR_CONNECTION_CLOSED', 'cannot connect to 127.0.0.1:1')]);
  await assert.rejects(runWatch({ source, out: sink(true), intervalMs: 500, clock: new FakeClock() }), (err: unknown) => isPtnError(err, 'ERR_CONNECTION_CLOSED'));
});

test('later failed requests are shown and retried; too many in a row end the watch', async () => {
  const fail = ptnError('ERR_REQUEST_TIMEOUT', 'status timed out');
  const out = sink(false);
  const r = await runWatch({ source: scripted([moving(3), fail, fail, moving(1), moving(0)]), out, intervalMs: 500, clock: new FakeClock(), statusFailuresMax: 3 });
  assert.deepEqual([r.code, r.frames], [0, 3]);
  assert.match(out.text, /\nstatus request failed \(1 of 3 in a row\): status timed out\nstatus request failed \(2 of 3 in a row\): status timed out\n/);
  const tty = sink(true);
  await assert.rejects(
    runWatch({ source: scripted([moving(3), fail, fail, fail]), out: tty, intervalMs: 500, clock: new FakeClock(), statusFailuresMax: 3 }),
    (err: unknown) => isPtnError(err, 'ERR_REQUEST_TIMEOUT'),
  );
  assert.match(tty.text, /status request failed \(2 of 3 in a row\)/, 'the note is part of the redrawn frame');
  assert.ok(tty.text.endsWith('\x1b[?25h'), 'cursor restored on error');
});

test('--cache: an unknown cache is ERR_CACHE_NOT_FOUND; a known one ends when it has no MOVING copy', async () => {
  await assert.rejects(runWatch({ source: scripted([moving(3)]), out: sink(false), intervalMs: 500, clock: new FakeClock(), cache: 'nope' }), (err: unknown) =>
    isPtnError(err, 'ERR_CACHE_NOT_FOUND'),
  );
  const other = statusWith([], 0, {}, 'small');
  const busy = moving(3);
  busy.partitions.small = other.partitions.small!;
  busy.caches.push(other.caches[0]!);
  const r = await runWatch({ source: scripted([busy]), out: sink(false), intervalMs: 500, clock: new FakeClock(), cache: 'small' });
  assert.deepEqual([r.code, r.frames], [0, 1]);
});

// ------------------------------------------------------------------ the command, spawned

const SECRET = 'watch-secret-123';
let server: NetServer;
let address: string;
/** What the fake node answers next, per test. */
let answer: () => Body = () => moving(0) as unknown as Body;

before(async () => {
  server = new NetServer({ host: '127.0.0.1', port: 0, identity: { nodeId: 'node-1', clusterId: 'ptn-local', secret: SECRET }, config: defaultConfig().net });
  server.handle('status', () => answer());
  address = `127.0.0.1:${(await server.listen()).port}`;
});
after(() => server.close());

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function ptn(args: string[], opts: { onStdout?: (text: string, child: ReturnType<typeof spawn>) => void } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [binPtnPath(), ...args], { env: { ...process.env, PTN_NO_BUNDLE: '1', PTN_SECRET: SECRET }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const kill = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.stdout!.on('data', (d) => {
      stdout += d;
      opts.onStdout?.(stdout, child);
    });
    child.stderr!.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(kill);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

test('ptn rebalance watch --help exits 0; bad flags are one ERR_USAGE line, exit 2', async () => {
  const help = await ptn(['rebalance', 'watch', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: ptn rebalance watch /);
  for (const [args, flag] of [
    [['--interval-ms', '0'], '--interval-ms <ms>'],
    [['--timeout-ms', 'soon'], '--timeout-ms <ms>'],
    [['--node', 'nowhere'], '--node <host:port>'],
  ] as const) {
    const r = await ptn(['rebalance', 'watch', ...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr.trimEnd().split('\n').length, 1);
    assert.ok(r.stderr.startsWith(`error ERR_USAGE: option '${flag}' argument`), r.stderr);
  }
  const unknown = await ptn(['rebalance', 'watch', '--bogus']);
  assert.deepEqual([unknown.code, unknown.stderr.trim()], [2, "error ERR_USAGE: unknown option '--bogus'"]);
});

test('spawned with a pipe for stdout it prints plain lines until rebalanced (exit 0)', async () => {
  let n = 0;
  answer = () => (++n >= 3 ? moving(0) : moving(3 - n)) as unknown as Body;
  const r = await ptn(['rebalance', 'watch', '--node', address, '--interval-ms', '50']);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  assert.equal(lines.length, 4, r.stdout);
  assert.deepEqual(lines.slice(0, 3).map((l) => l.replace(/^\[[^\]]*\] /, '').split(';')[0]), ['partitions 0/2 done, 2 left', 'partitions 1/2 done, 1 left', 'partitions 2/2 done, 0 left']);
  assert.match(lines[3]!, /^rebalanced: 2\/2 copies, /);
  assert.doesNotMatch(r.stdout, /\x1b/);
});

test('spawned with --timeout-ms it gives up with one error line and exit 1', async () => {
  answer = () => moving(3) as unknown as Body;
  const r = await ptn(['rebalance', 'watch', '--node', address, '--interval-ms', '50', '--timeout-ms', '300']);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'error ERR_CLUSTER_NOT_READY: rebalance not finished within 300 ms: 3 of 3 copies left\n');
  assert.match(r.stdout, /partitions 0\/3 done, 3 left/);
});

test('spawned, Ctrl-C (SIGINT) ends it cleanly with exit 130', async () => {
  answer = () => moving(3) as unknown as Body;
  let sent = false;
  const r = await ptn(['rebalance', 'watch', '--node', address, '--interval-ms', '50'], {
    onStdout: (text, child) => {
      if (!sent && text.includes('partitions 0/3 done')) {
        sent = true;
        child.kill('SIGINT');
      }
    },
  });
  assert.deepEqual([r.code, r.signal, r.stderr], [130, null, '']);
  assert.ok(r.stdout.endsWith('interrupted: 3 of 3 copies left\n'), r.stdout.slice(-200));
});
