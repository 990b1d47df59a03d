// Smoke runs of the benchmarks at tiny sizes: each must complete (exit 0), write a results JSON of
// the expected shape and render its chart. Times are never asserted. Plus the benchmarks' pure
// helpers: the log-log fit, the Prometheus text parser, the RESP codec, the fixed-rate load's phases.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClusterManager } from '../../src/cli/cluster-manager.js';
import { fitLogLog, parsePrometheusText } from '../../bench/lib.js';
import { encodeCommand, findRedisServer, parseReply, replicaInSync } from '../../bench/redis-peer.js';
import { FixedRateLoad } from '../../bench/fixed-rate.js';
import { phaseBreakdown } from '../../bench/join-watch.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const RUN_TIMEOUT_MS = 150_000;

interface Run {
  code: number | null;
  output: string;
}

/** Runs `bench/<name>.ts` with `args` in a child process; kills it (and its nodes) after RUN_TIMEOUT_MS. */
function runBench(name: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join('bench', `${name}.ts`), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** A temp dir removed after the suite; node processes a killed bench left behind are killed too. */
async function benchDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ptn-'));
  after(async () => {
    await new ClusterManager({ dir: path.join(dir, 'cluster') }).killAll().catch(() => undefined);
    await fs.rm(dir, { recursive: true, force: true });
  });
  return dir;
}

async function readJson(file: string): Promise<Record<string, any>> {
  return JSON.parse(await fs.readFile(file, 'utf8')) as Record<string, any>;
}

async function assertChart(jsonFile: string): Promise<void> {
  const svg = await fs.readFile(jsonFile.replace(/\.json$/, '.svg'), 'utf8');
  assert.match(svg.slice(0, 200), /^<svg /);
  assert.ok(svg.trimEnd().endsWith('</svg>'));
}

const isNum = (x: unknown) => typeof x === 'number' && Number.isFinite(x);

async function smoke(name: string, args: string[]): Promise<{ doc: Record<string, any>; json: string }> {
  const dir = await benchDir();
  const json = path.join(dir, `${name}.json`);
  const r = await runBench(name, [...args, '--dir', path.join(dir, 'work'), '--json', json]);
  assert.equal(r.code, 0, `bench:${name} exited with ${r.code}:\n${r.output.slice(-4000)}`);
  const doc = await readJson(json);
  assert.equal(typeof doc.when, 'string');
  assert.ok(isNum(doc.host?.cpus));
  await assertChart(json);
  return { doc, json };
}

describe('benchmarks complete at a tiny size and write results and a chart', () => {
  it('bench:storage', async () => {
    const { doc } = await smoke('storage', ['--puts', '2000', '--writers', '8', '--wal-mib', '2', '--checkpoint-mib', '3', '--open-small', '500', '--open-large', '2000']);
    assert.ok(isNum(doc.puts.fsync.opsPerSec) && isNum(doc.puts.background.opsPerSec));
    assert.ok(isNum(doc.checkpoint.ratio) && isNum(doc.open.ratio) && isNum(doc.recovery.seconds));
  });

  it('bench:transfer', async () => {
    const { doc } = await smoke('transfer', ['--total-mib', '2', '--partitions', '2', '--variants', 'file-1,full-1', '--quiet']);
    assert.equal(doc.variants.length, 2);
    for (const v of doc.variants) assert.ok(isNum(v.mbPerSec) && isNum(v.seconds));
    assert.ok(isNum(doc.limits.rawCopyMBps) && isNum(doc.limits.rawPipeMBps) && isNum(doc.ratios.fileVsRawCopy));
  });

  it('bench:catchup (with the Redis column when redis-server is installed, its skip reason otherwise)', async () => {
    const { doc } = await smoke('catchup', [
      '--entries', '1500', '--partitions', '2', '--rate', '300', '--sustain-sec', '1', '--sustain-concurrency', '16',
      '--before-sec', '1', '--after-sec', '0.5', '--peer', 'redis', '--seed', '7', '--compression', 'lz4', '--quiet',
    ]);
    assert.equal(doc.bench, 'catchup');
    assert.equal(doc.params.compression, 'lz4');
    assert.ok(isNum(doc.rate) && doc.rate > 0);
    assert.ok(isNum(doc.ptn.joinSeconds));
    assert.equal(doc.ptn.verify.ok, true, JSON.stringify(doc.ptn.verify.mismatches));
    for (const ph of ['before', 'during']) assert.ok(isNum(doc.ptn.load.phases[ph].p99Ms));
    assert.ok(doc.ptn.join.tempWalPeakBytes === null || isNum(doc.ptn.join.tempWalPeakBytes));
    assert.ok(doc.ptn.join.fenceMsMax === null || isNum(doc.ptn.join.fenceMsMax));
    assert.ok(isNum(doc.floor.mbPerSec) && isNum(doc.floor.fileSeconds) && isNum(doc.ratios.ptnJoinOverFileFloor));
    if (typeof doc.redis.skipped === 'string') assert.equal(doc.ratios.redisSyncOverPtnJoin, null);
    else assert.ok(isNum(doc.redis.syncSeconds) && isNum(doc.ratios.redisSyncOverPtnJoin));
  });

  it('bench:scaling', async () => {
    const { doc } = await smoke('scaling', ['--sizes-mib', '1,2', '--rates', '200,400', '--before-sec', '0.5', '--swap-runs', '1', '--quiet']);
    assert.equal(doc.bench, 'scaling');
    assert.equal(doc.transfer.points.length, 2);
    assert.equal(doc.catchUp.points.length, 2);
    for (const p of doc.transfer.points) assert.ok(isNum(p.seconds) && isNum(p.fileBytes) && isNum(p.restoreMs));
    for (const p of doc.catchUp.points) assert.ok(isNum(p.seconds));
    for (const series of ['transfer', 'swapIn', 'memory', 'catchUp']) assert.equal(typeof doc[series].fit.n, 'number');
  });
});

describe('benchmark helpers', () => {
  it('a power law is fitted with its exponent, and unusable points are left out', () => {
    const linear = fitLogLog([1, 2, 4, 8].map((x) => ({ x, y: 3 * x })));
    assert.ok(Math.abs(linear.exponent - 1) < 1e-9 && Math.abs(linear.r2 - 1) < 1e-9);
    const flat = fitLogLog([1, 10, 100].map((x) => ({ x, y: 5 })));
    assert.ok(Math.abs(flat.exponent) < 1e-9);
    const square = fitLogLog([{ x: 2, y: 4 }, { x: 3, y: 9 }, { x: 0, y: 1 }, { x: 5, y: -1 }]);
    assert.equal(square.n, 2);
    assert.ok(Math.abs(square.exponent - 2) < 1e-9);
    assert.ok(Number.isNaN(fitLogLog([{ x: 1, y: 1 }]).exponent));
  });

  it('Prometheus text gives the first sample of each metric, labels or not', () => {
    const m = parsePrometheusText('# HELP a x\n# TYPE a gauge\na{node="n1"} 42\na{node="n2"} 7\nb 1.5e3\nbad line\n');
    assert.equal(m.get('a'), 42);
    assert.equal(m.get('b'), 1500);
    assert.equal(m.size, 2);
  });

  it('RESP commands encode as bulk-string arrays and replies parse only when complete', () => {
    assert.equal(encodeCommand(['SET', 'k', Buffer.from('v1')]).toString(), '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n');
    const buf = Buffer.from('+OK\r\n:12\r\n$3\r\nabc\r\n$-1\r\n*2\r\n$1\r\nx\r\n:1\r\n-ERR no\r\n');
    const values = [];
    for (let pos = 0; pos < buf.length; ) {
      const r = parseReply(buf, pos)!;
      values.push(r.value);
      pos = r.next;
    }
    assert.equal(values[0], 'OK');
    assert.equal(values[1], 12);
    assert.equal((values[2] as Buffer).toString(), 'abc');
    assert.equal(values[3], null);
    assert.deepEqual((values[4] as unknown[]).map(String), ['x', '1']);
    assert.ok(values[5] instanceof Error);
    assert.equal(parseReply(Buffer.from('$5\r\nab'), 0), undefined);
    assert.equal(parseReply(Buffer.from('*2\r\n:1\r\n'), 0), undefined);
  });

  it('a replica is in sync only with its link up and no sync in progress', () => {
    const info = (o: Record<string, string>) => new Map(Object.entries(o));
    assert.equal(replicaInSync(info({ role: 'slave', master_link_status: 'up', master_sync_in_progress: '0' })), true);
    assert.equal(replicaInSync(info({ role: 'slave', master_link_status: 'down', master_sync_in_progress: '0' })), false);
    assert.equal(replicaInSync(info({ role: 'slave', master_link_status: 'up', master_sync_in_progress: '1' })), false);
    assert.equal(replicaInSync(info({ role: 'master' })), false);
  });

  it('redis-server is looked up on the PATH only', async () => {
    const dir = await benchDir();
    assert.equal(findRedisServer({ PATH: dir }), undefined);
    const fake = path.join(dir, 'redis-server');
    await fs.writeFile(fake, '#!/bin/sh\n', { mode: 0o755 });
    assert.equal(findRedisServer({ PATH: ['/nonexistent', dir].join(path.delimiter) }), fake);
  });

  it('a fixed-rate load puts each operation in the phase of its due time and counts errors by code', async () => {
    let n = 0;
    const load = new FixedRateLoad({
      ratePerSec: 2000,
      inFlightMax: 8,
      issue: async () => {
        if (++n % 10 === 0) throw Object.assign(new Error('x'), { code: 'ERR_TEST' });
      },
    });
    load.start();
    await new Promise((r) => setTimeout(r, 60));
    load.phase('during');
    await new Promise((r) => setTimeout(r, 60));
    const s = await load.stop();
    assert.ok(s.phases.before!.ops > 0 && s.phases.during!.ops > 0);
    assert.equal(s.acked + s.errors, s.issued);
    assert.equal(s.errorsByCode.ERR_TEST, s.errors);
    assert.equal(s.phases.before!.ops + s.phases.during!.ops, s.acked);
  });

  it('phase breakdown measures each phase up to the next one entered', () => {
    const tasks = [
      { cache: 'c', partition: 0, phase: 'OWNING', phaseTimes: { PENDING: 0, STREAMING: 1000, OWNING: 4000 } },
      { cache: 'c', partition: 1, phase: 'OWNING', phaseTimes: { PENDING: 0, STREAMING: 3000, OWNING: 4000 } },
    ];
    const b = phaseBreakdown(tasks);
    assert.deepEqual(b.PENDING, { medianSec: 2, maxSec: 3, sumSec: 4, tasks: 2 });
    assert.deepEqual(b.STREAMING, { medianSec: 2, maxSec: 3, sumSec: 4, tasks: 2 });
    assert.equal(b.OWNING, undefined);
  });
});
