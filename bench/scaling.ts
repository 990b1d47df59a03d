/**
 * bench:scaling — how the cost of moving a partition grows, each series fitted as a power law
 * (log(cost) against log(size): exponent ≈ 1 linear, ≈ 0 flat, > 1 super-linear).
 *
 *   transfer time vs partition size   one node holds a cache of ONE partition, grown step by step to
 *                                     each of --sizes-mib; at each step a second node joins (file
 *                                     path) and is removed again. Time: the task's STREAMING phase
 *                                     (→ SWAPPING), else healthy → rebalanced.
 *   swap-in time vs entry count       the task's SWAPPING → INDEXING phase time when the node reports
 *                                     it for every step; else PageMemory.restorePartition of a copy
 *                                     of the same file, timed in this process (both are kept).
 *   demander memory vs file size      RSS of the joining node (ptn_process_resident_memory_bytes on
 *                                     its /metrics) sampled during each join: peak − before.
 *   catch-up time vs write rate       at --catchup-mib, a node joins under each of --rates (fixed-rate
 *                                     load, bench/fixed-rate.ts); time from the first task entering
 *                                     REPLAYING to the last reaching OWNING, else the whole join.
 *
 * Defaults (16–128 MiB, four rates) finish in about 2 minutes on 2 cores; the issue's range is
 * --sizes-mib 64,128,256,512,1024,2048. Results: bench/results/scaling.json and scaling.svg.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { connectClient } from '../src/cli/client.js';
import { readClusterFile } from '../src/cli/cluster-file.js';
import { makeValue, seededRandom } from '../src/cli/load.js';
import { defaultConfig } from '../src/config.js';
import { PageMemory } from '../src/pagememory/page-memory.js';
import type { Connection } from '../src/net/connection.js';
import type { RebalanceTask } from '../src/cli/status-format.js';
import { BenchCluster, logComplaints } from './bench-cluster.js';
import { renderScalingChart } from './chart.js';
import { FixedRateLoad, TIMELINE_WINDOW_MS, type FixedRateSummary } from './fixed-rate.js';
import { phaseSpanSec, relativePhaseTimes, type JoinObservation } from './join-watch.js';
import { clusterBenchFlags, fitLogLog, fmt, median, writeResults } from './lib.js';

const HELP = `bench:scaling — transfer, swap-in, catch-up and demander memory against size and rate

  npm run bench:scaling -- [flags]

  --sizes-mib LIST     partition sizes to step through (default 16,32,64,128; the issue's range
                       is 64,128,256,512,1024,2048)
  --value-bytes B      bytes of each value's JSON (default 1000)
  --rates LIST         write rates (ops/s) of the catch-up series (default 1000,2000,4000,8000)
  --catchup-mib M      partition size of the catch-up series (default: the first size)
  --before-sec S       load before each catch-up join starts (default 2)
  --in-flight-max N    writes outstanding at most in the catch-up series (default 128)
  --swap-runs N        in-process restorePartition runs per size, median kept (default 3)
  --skip LIST          series to leave out: transfer (also skips swap-in and memory), catchup
  --base-port P --dir DIR --json FILE (default bench/results/scaling.json; the chart goes next to it)
  --cpu-prof DIR       write a V8 CPU profile of every node process into DIR
  --node-log-level L   log level of the nodes (default warn; info logs every phase; logs stay in --dir)
  --quiet              only the summary
`;

const { values: args } = parseArgs({
  options: {
    'sizes-mib': { type: 'string', default: '16,32,64,128' },
    'value-bytes': { type: 'string', default: '1000' },
    rates: { type: 'string', default: '1000,2000,4000,8000' },
    'in-flight-max': { type: 'string', default: '128' },
    'catchup-mib': { type: 'string' },
    'before-sec': { type: 'string', default: '2' },
    'swap-runs': { type: 'string', default: '3' },
    skip: { type: 'string', default: '' },
    ...clusterBenchFlags('scaling'),
  },
});
if (args.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
const list = (s: string) => s.split(',').filter(Boolean).map(Number);
const SIZES_MIB = list(args['sizes-mib']!).sort((a, b) => a - b);
const VALUE_BYTES = Number(args['value-bytes']);
const RATES = list(args.rates!).sort((a, b) => a - b);
const CATCHUP_MIB = args['catchup-mib'] !== undefined ? Number(args['catchup-mib']) : SIZES_MIB[0]!;
const BEFORE_SEC = Number(args['before-sec']);
const SWAP_RUNS = Number(args['swap-runs']);
const SKIP = new Set(args.skip!.split(',').filter(Boolean));
if (SIZES_MIB.length === 0 || SIZES_MIB.some((x) => !(x > 0))) throw new Error(`--sizes-mib must list sizes > 0, got ${args['sizes-mib']}`);
const CACHE = 'scale';
const MiB = 1024 * 1024;
const log = (line: string) => {
  if (!args.quiet) console.log(line);
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The single task of the join (one partition), as last seen. */
const onlyTask = (obs: JoinObservation): RebalanceTask | undefined => obs.tasks.find((t) => t.cache === CACHE);

/** Grows the one partition until its file holds at least `mib` MiB (checkpointed); returns entries and bytes. */
async function growTo(bc: BenchCluster, mib: number, state: { entries: number }): Promise<{ entries: number; fileBytes: number; file: string }> {
  for (;;) {
    const { files, bytes } = await bc.checkpointAndMeasure();
    const file = files[0]!;
    if (bytes >= mib * MiB) return { entries: state.entries, fileBytes: bytes, file };
    // The first step is a probe of 1000 entries; then the file's bytes per entry so far say how many more.
    const more = state.entries === 0 ? 1000 : Math.max(100, Math.ceil((mib * MiB - bytes) / (bytes / state.entries)));
    const rate = await bc.fillRange(CACHE, state.entries, state.entries + more, VALUE_BYTES);
    log(`  filled ${more} more entries at ${fmt(rate)} puts/s`);
    state.entries += more;
  }
}

/** Times PageMemory.restorePartition (the swap-in) of a copy of `file`, in this process; median ms of `runs`. */
async function timeRestore(file: string, root: string, cacheId: number, clusterId: string, runs: number): Promise<number> {
  const dir = path.join(root, 'swap-in');
  await fs.mkdir(dir, { recursive: true });
  const src = path.join(dir, 'incoming.ptn');
  const dest = path.join(dir, 'partition.ptn');
  await fs.copyFile(file, src);
  const times: number[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      const pm = new PageMemory({ storage: defaultConfig().storage, journalDir: path.join(dir, 'journal') });
      await pm.open();
      const t0 = performance.now();
      await pm.restorePartition(src, dest, { clusterId, cacheId, partition: 0 });
      times.push(performance.now() - t0);
      await pm.close();
      await fs.rename(dest, src);
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
  return median(times);
}

interface SizePoint {
  sizeMiB: number;
  entries: number;
  fileBytes: number;
  /** STREAMING → SWAPPING of the task, else undefined. */
  streamingSeconds?: number;
  joinSeconds: number;
  /** Seconds used for the transfer fit. */
  seconds: number;
  path?: string;
  swapPhaseMs?: number;
  restoreMs: number;
  rssBeforeBytes?: number;
  rssPeakBytes?: number;
  rssDeltaBytes?: number;
  /** The task's phase times, ms after its first phase. */
  phaseTimesMs?: Record<string, number>;
}

async function sizeSeries(bc: BenchCluster, root: string, cacheId: number, state: { entries: number }): Promise<SizePoint[]> {
  const clusterId = readClusterFile(bc.manager.dir)!.clusterId;
  const points: SizePoint[] = [];
  for (const mib of SIZES_MIB) {
    const grown = await growTo(bc, mib, state);
    const restoreMs = await timeRestore(grown.file, root, cacheId, clusterId, SWAP_RUNS);
    const { entry, obs } = await bc.join({ sampleRss: true, pollMs: 50 });
    await bc.remove(entry);
    const t = onlyTask(obs);
    const streaming = t ? phaseSpanSec(t, 'STREAMING', 'SWAPPING') : undefined;
    const swap = t ? phaseSpanSec(t, 'SWAPPING', 'INDEXING') : undefined;
    const p: SizePoint = {
      sizeMiB: mib,
      entries: grown.entries,
      fileBytes: grown.fileBytes,
      streamingSeconds: streaming,
      joinSeconds: obs.seconds,
      seconds: streaming ?? obs.seconds,
      path: t?.path,
      swapPhaseMs: swap === undefined ? undefined : swap * 1000,
      restoreMs,
      rssBeforeBytes: obs.rss?.beforeBytes,
      rssPeakBytes: obs.rss?.peakBytes,
      rssDeltaBytes: obs.rss ? obs.rss.peakBytes - obs.rss.beforeBytes : undefined,
      phaseTimesMs: relativePhaseTimes(t),
    };
    points.push(p);
    log(
      `  ${fmt(grown.fileBytes / MiB)} MiB (${grown.entries} entries, path ${p.path ?? '?'}): streaming ${streaming === undefined ? 'n/a' : `${fmt(streaming)} s`}, join ${fmt(obs.seconds)} s; ` +
        `swap-in ${swap === undefined ? 'n/a' : `${fmt(swap * 1000)} ms`} (restorePartition in-process ${fmt(restoreMs)} ms); demander RSS +${p.rssDeltaBytes === undefined ? 'n/a' : `${fmt(p.rssDeltaBytes / MiB)} MiB`}`,
    );
  }
  return points;
}

interface RatePoint {
  rate: number;
  joinSeconds: number;
  /** The task's REPLAYING → OWNING (or → the status that said rebalanced), else undefined. */
  catchUpSeconds?: number;
  seconds: number;
  p99Ms: number;
  dueNotSent: number;
  /** Writes per second acknowledged while the node joined (what the load reached of `rate`). */
  achievedPerSec: number;
  /** How long the fence that closed the replay held the partition's writes (the task's fenceMs). */
  fenceMs?: number;
  /** Writes per second acknowledged in the second before the fence closed (REPLAYING → HISTORICAL). */
  atFencePerSec?: number;
  phaseTimesMs?: Record<string, number>;
}

/** Writes/s acknowledged in [fromMs, toMs) (epoch), from the load's 250 ms timeline. */
function ackedPerSecBetween(summary: FixedRateSummary, fromMs: number, toMs: number): number | undefined {
  const windows = summary.timeline.filter((w) => {
    const at = summary.startedAtMs + w.atSec * 1000;
    return at >= fromMs && at + TIMELINE_WINDOW_MS <= toMs;
  });
  if (windows.length === 0) return undefined;
  return windows.reduce((n, w) => n + w.ackedOps, 0) / ((windows.length * TIMELINE_WINDOW_MS) / 1000);
}

async function rateSeries(bc: BenchCluster, entries: number): Promise<RatePoint[]> {
  const points: RatePoint[] = [];
  const conns: Connection[] = [];
  try {
    for (let i = 0; i < 4; i++) conns.push(await connectClient(bc.manager.clientSettings(60_000)));
    for (const rate of RATES) {
      const random = seededRandom(rate);
      const load = new FixedRateLoad({
        ratePerSec: rate,
        inFlightMax: Number(args['in-flight-max']),
        issue: async (seq) => {
          const i = Math.floor(random() * entries);
          await conns[seq % conns.length]!.request('put', { cache: CACHE, key: `k${i}`, value: makeValue(i, seq + 1, VALUE_BYTES).value });
        },
      });
      let joined: Awaited<ReturnType<BenchCluster['join']>>;
      try {
        load.start();
        await sleep(BEFORE_SEC * 1000);
        load.phase('during');
        joined = await bc.join({ pollMs: 50 });
      } finally {
        await load.stop(); // also when the join failed: the load must not outlive it
      }
      const summary = await load.stop();
      const { entry, obs } = joined;
      await bc.remove(entry);
      const t = onlyTask(obs);
      const replayAt = t?.phaseTimes.REPLAYING;
      // A task is dropped from the status soon after OWNING; the status that said "rebalanced" bounds it.
      const owningAt = t?.phaseTimes.OWNING ?? obs.rebalancedAtMs;
      const catchUp = replayAt !== undefined && owningAt !== undefined && owningAt >= replayAt ? (owningAt - replayAt) / 1000 : undefined;
      const during = summary.phases.during;
      const fenceMs = typeof t?.fenceMs === 'number' ? t.fenceMs : undefined;
      const achievedPerSec = during?.opsPerSec ?? 0;
      // The fence closes the replay: the task leaves REPLAYING right after it.
      const fenceEndMs = t?.phaseTimes.HISTORICAL ?? t?.phaseTimes.OWNING;
      const atFencePerSec = fenceEndMs === undefined ? undefined : ackedPerSecBetween(summary, fenceEndMs - 1000, fenceEndMs);
      points.push({ rate, joinSeconds: obs.seconds, catchUpSeconds: catchUp, seconds: catchUp ?? obs.seconds, p99Ms: during?.p99Ms ?? 0, dueNotSent: summary.dueNotSent, achievedPerSec, fenceMs, atFencePerSec, phaseTimesMs: relativePhaseTimes(t) });
      const fence = fenceMs === undefined ? 'n/a' : `${fmt(fenceMs)} ms${atFencePerSec === undefined ? '' : ` at ${fmt(atFencePerSec)} writes/s acknowledged in the second before it`}`;
      log(`  ${rate} writes/s (${fmt(achievedPerSec)} reached): catch-up (REPLAYING → OWNING) ${catchUp === undefined ? 'n/a' : `${fmt(catchUp)} s`}, fence ${fence}, join ${fmt(obs.seconds)} s, write p99 during ${fmt(during?.p99Ms ?? 0)} ms`);
    }
  } finally {
    for (const c of conns) await c.close().catch(() => undefined);
  }
  return points;
}

const fitLine = (name: string, f: { exponent: number; r2: number; n: number }, want: string) =>
  `  ${name.padEnd(32)} exponent ${Number.isFinite(f.exponent) ? f.exponent.toFixed(2) : 'n/a'} (r² ${Number.isFinite(f.r2) ? f.r2.toFixed(2) : 'n/a'}, ${f.n} points; ${want})`;

const root = args.dir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'ptn-bench-scaling-')));
const bc = await BenchCluster.open({
  dir: root,
  nodesMax: SIZES_MIB.length + RATES.length + 1,
  basePort: args['base-port'] ? Number(args['base-port']) : undefined,
  rebalance: { fileMinBytes: 0 },
  cpuProfDir: args['cpu-prof'], nodeLogLevel: args['node-log-level'],
  progress: args.quiet ? undefined : (l) => log(`  ${l}`),
});
try {
  log(`bench:scaling in ${root}: one partition grown to ${SIZES_MIB.join(', ')} MiB of ${VALUE_BYTES} B values; catch-up at ${CATCHUP_MIB} MiB under ${RATES.join(', ')} writes/s`);
  const cacheId = await bc.createCache(CACHE, 1);
  const state = { entries: 0 };
  let ratePoints: RatePoint[] = [];
  if (!SKIP.has('catchup') && RATES.length > 0) {
    await growTo(bc, CATCHUP_MIB, state);
    ratePoints = await rateSeries(bc, state.entries);
  }
  const sizePoints = SKIP.has('transfer') ? [] : await sizeSeries(bc, root, cacheId, state);
  const phaseSwap = sizePoints.length > 0 && sizePoints.every((p) => p.swapPhaseMs !== undefined && p.swapPhaseMs > 0);
  const transferFit = fitLogLog(sizePoints.map((p) => ({ x: p.fileBytes, y: p.seconds })));
  const swapFit = fitLogLog(sizePoints.map((p) => ({ x: p.entries, y: phaseSwap ? p.swapPhaseMs! : p.restoreMs })));
  const memoryFit = fitLogLog(sizePoints.map((p) => ({ x: p.fileBytes, y: p.rssDeltaBytes ?? 0 })));
  const catchUpFit = fitLogLog(ratePoints.map((p) => ({ x: p.rate, y: p.seconds })));
  console.log('scaling: fitted exponents (log cost vs log size)');
  console.log(fitLine(`transfer time vs file size${sizePoints.every((p) => p.streamingSeconds !== undefined) ? ' (STREAMING)' : ' (whole join)'}`, transferFit, 'target ≈ 1: linear in bytes'));
  console.log(fitLine(`swap-in time vs entries (${phaseSwap ? 'phase times' : 'restorePartition'})`, swapFit, 'target ≈ 0: flat'));
  console.log(fitLine('demander RSS growth vs file size', memoryFit, 'target ≈ 0: flat'));
  console.log(fitLine('catch-up time vs write rate', catchUpFit, 'grows with the rate; > 1 means the replay falls behind'));
  const results = {
    bench: 'scaling',
    when: new Date().toISOString(),
    host: { cpus: os.cpus().length, node: process.version },
    params: { sizesMiB: SIZES_MIB, valueBytes: VALUE_BYTES, rates: RATES, catchUpMiB: CATCHUP_MIB, beforeSec: BEFORE_SEC, swapRuns: SWAP_RUNS },
    transfer: { points: sizePoints, fit: transferFit, timeOf: sizePoints.every((p) => p.streamingSeconds !== undefined) ? 'STREAMING phase' : 'whole join' },
    swapIn: { source: phaseSwap ? 'phaseTimes' : 'restorePartition', points: sizePoints.map((p) => ({ entries: p.entries, fileBytes: p.fileBytes, ms: phaseSwap ? p.swapPhaseMs : p.restoreMs, phaseMs: p.swapPhaseMs ?? null, restoreMs: p.restoreMs })), fit: swapFit },
    memory: { points: sizePoints.map((p) => ({ fileBytes: p.fileBytes, rssBeforeBytes: p.rssBeforeBytes ?? null, rssPeakBytes: p.rssPeakBytes ?? null, rssDeltaBytes: p.rssDeltaBytes ?? null })), fit: memoryFit },
    catchUp: { sizeMiB: CATCHUP_MIB, points: ratePoints, fit: catchUpFit },
    nodeComplaints: await logComplaints(bc.manager.dir),
  };
  await writeResults(args.json!, results);
  await renderScalingChart(results, args.json!.replace(/\.json$/, '') + '.svg');
} finally {
  await bc.close();
  if (!args.dir) await fs.rm(root, { recursive: true, force: true });
}
