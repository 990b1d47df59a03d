/**
 * bench:catchup — a new replica joins a node that holds N entries while a load keeps writing at a
 * fixed rate; the same data and the same load then go through a Redis replica full sync.
 *
 *   1. one node process holds --entries entries of --value-bytes in --partitions partitions
 *      (backups 1: the joining node receives a copy of every partition); checkpointed;
 *   2. what the node sustains: a closed loop of --sustain-concurrency writes for --sustain-sec;
 *      the load rate is min(--rate, --load-share × that), so the machine (2 cores shared by the load,
 *      the supplier and the joiner) still has room for the join itself (at 0.5 the node is already
 *      saturated before the join on 2 cores: p99 near a second);
 *   3. a fixed-rate load (open loop, latency from each write's due time: bench/fixed-rate.ts) runs
 *      --before-sec, then a second node is added, and runs on until every partition is OWNING,
 *      then --after-sec more; every acknowledged write goes to an ack log (src/cli/ack-log.ts);
 *   4. verify (src/cli/verify.ts): every copy agrees and every acknowledged write is readable;
 *   5. --peer redis: a Redis master with the same keys and values, the same load, then a second
 *      redis-server is told REPLICAOF (diskless send on the master) and timed until INFO
 *      replication says master_link_status:up and master_sync_in_progress:0.
 *
 * Defaults finish in about 2 minutes on the 2-core development machine (100k entries: about
 * 190 MiB of partition files, 100 MiB in Redis); the issue's size is --entries 1000000.
 * Results: bench/results/catchup.json and bench/results/catchup.svg.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { AckLogWriter, valueDigest } from '../src/cli/ack-log.js';
import { connectClient } from '../src/cli/client.js';
import { makeValue, seededRandom } from '../src/cli/load.js';
import { formatVerifyResult, runVerify, type VerifyResult } from '../src/cli/verify.js';
import type { Connection } from '../src/net/connection.js';
import { PrimaryRouter } from '../src/cli/primary-router.js';
import { normalizeTask, type ClusterStatus, type YieldCounts } from '../src/cli/status-format.js';
import { BenchCluster, logComplaints } from './bench-cluster.js';
import { renderCatchupChart } from './chart.js';
import { FixedRateLoad, measureSustainedOpsPerSec, type FixedRateSummary, type PhaseSummary } from './fixed-rate.js';
import { phaseBreakdown, type JoinObservation } from './join-watch.js';
import { clusterBenchFlags, fmt, rawFsyncWriteMBps, writeResults } from './lib.js';
import { findRedisServer, REDIS_INSTALL_HINT, RedisServer, redisFill, replicaInSync, RespClient } from './redis-peer.js';

const HELP = `bench:catchup — a new replica joins under a fixed-rate write load; optionally vs a Redis full sync

  npm run bench:catchup -- [flags]

  --entries N             entries the node holds (default 100000: about 2 minutes in all on
                          2 cores; the issue's size is 1000000)
  --value-bytes B         bytes of each value's JSON (default 1000)
  --partitions P          partitions of the cache (default 16)
  --rate OPS              write load asked for, ops/s (default 30000)
  --load-share F          the load runs at min(--rate, F × what the node sustains) (default 0.25:
                          the load generator, the supplier and the joiner share the cores; at 0.5
                          the node is already saturated before the join, p99 near a second)
  --sustain-sec S         length of the sustained-rate probe (default 5)
  --sustain-concurrency C writes in flight during the probe (default 256)
  --before-sec S          load before the join starts (default 10)
  --after-sec S           load after every partition is OWNING (default 3)
  --in-flight-max N       writes outstanding at most; a write waiting for a slot counts that wait in
                          its latency (default 128)
  --throttle-mbps M       rebalance.throttleBytesPerSec of the nodes, in MiB/s (default 0: none);
                          a throttled transfer takes longer and leaves the writes more of the machine
  --receive-slots N       rebalance.receiveSlots of the joining node (default: the node default, 16)
  --prewarm-mib M         rebalance.prewarmBytesMax of the nodes, in MiB (default: the node default,
                          32: files up to that size; 0: the replay reads pages on demand)
  --yield-lag-ms L        rebalance.yieldLagMs of the nodes (default: the node default, 0: off): rebalance steps wait
                          while the node's event loop runs later than L ms, so the writes go first
  --yield-wait-max-ms W   rebalance.yieldWaitMaxMs of the nodes (default: the node default, 100)
  --yield-utilization U   rebalance.yieldUtilization of the nodes (0–1; with --yield-lag-ms: steps also wait
                          while the loop was busy more than U of the last 50 ms)
  --compression C         rebalance.compression of the nodes: none (the node default) or lz4 (per chunk, kept
                          when smaller; Redis compresses its RDB strings with LZF by default, rdbcompression yes)
  --durability MODE       WAL durability of the nodes: background (default, like Redis without AOF) or fsync
  --route MODE            primary (default): the load sends each write to its partition's primary, as a
                          partition-aware client does (Redis clients write to the master); first: all
                          writes to the first node, which forwards those it is not the primary of
  --sync-mode MODE        cluster.syncMode of the nodes: full-sync (default: a write is acknowledged after the
                          joining copy logged it too) or primary-sync (after the primary applied it, copies
                          follow: what a Redis master does with its replicas)
  --peer redis|none       also run a Redis replica full sync (needs redis-server on the PATH)
  --seed N                seed of the load's key choice
  --base-port P --dir DIR --json FILE (default bench/results/catchup.json; the chart goes next to it)
  --cpu-prof DIR          write a V8 CPU profile of every node process into DIR
  --node-log-level L      log level of the nodes (default warn; info logs every phase; logs stay in --dir)
  --quiet                 only the summary
`;

const { values: args } = parseArgs({
  options: {
    entries: { type: 'string', default: '100000' },
    'value-bytes': { type: 'string', default: '1000' },
    partitions: { type: 'string', default: '16' },
    rate: { type: 'string', default: '30000' },
    'load-share': { type: 'string', default: '0.25' },
    'sustain-sec': { type: 'string', default: '5' },
    'sustain-concurrency': { type: 'string', default: '256' },
    'before-sec': { type: 'string', default: '10' },
    'after-sec': { type: 'string', default: '3' },
    'in-flight-max': { type: 'string', default: '128' },
    'throttle-mbps': { type: 'string', default: '0' },
    'receive-slots': { type: 'string' },
    'prewarm-mib': { type: 'string' },
    'yield-lag-ms': { type: 'string' },
    'yield-wait-max-ms': { type: 'string' },
    'yield-utilization': { type: 'string' },
    compression: { type: 'string' },
    durability: { type: 'string', default: 'background' },
    'sync-mode': { type: 'string', default: 'full-sync' },
    route: { type: 'string', default: 'primary' },
    peer: { type: 'string', default: 'none' },
    seed: { type: 'string' },
    ...clusterBenchFlags('catchup'),
  },
});
if (args.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
const ENTRIES = Number(args.entries);
const VALUE_BYTES = Number(args['value-bytes']);
const PARTITIONS = Number(args.partitions);
const RATE = Number(args.rate);
const LOAD_SHARE = Number(args['load-share']);
const SUSTAIN_SEC = Number(args['sustain-sec']);
const SUSTAIN_CONCURRENCY = Number(args['sustain-concurrency']);
const BEFORE_SEC = Number(args['before-sec']);
const AFTER_SEC = Number(args['after-sec']);
const DURABILITY = args.durability as 'fsync' | 'background';
const SEED = args.seed !== undefined ? Number(args.seed) : Math.floor(Math.random() * 2 ** 31);
if (!['fsync', 'background'].includes(DURABILITY)) throw new Error(`--durability must be fsync or background, got ${DURABILITY}`);
const SYNC_MODE = args['sync-mode'] as 'full-sync' | 'primary-sync';
const ROUTE = args.route as 'primary' | 'first';
if (!['primary', 'first'].includes(ROUTE)) throw new Error(`--route must be primary or first, got ${ROUTE}`);
if (!['full-sync', 'primary-sync'].includes(SYNC_MODE)) throw new Error(`--sync-mode must be full-sync or primary-sync, got ${SYNC_MODE}`);
if (!['redis', 'none'].includes(args.peer!)) throw new Error(`--peer must be redis or none, got ${args.peer}`);
const CACHE = 'bench';
const CONNECTIONS = 4;
const MiB = 1024 * 1024;
const IN_FLIGHT_MAX = Number(args['in-flight-max']);
const THROTTLE_MBPS = Number(args['throttle-mbps']);
if (!(THROTTLE_MBPS >= 0)) throw new Error(`--throttle-mbps must be a number >= 0, got ${args['throttle-mbps']}`);
/** An optional integer flag, at least `min`; undefined when not given. */
const intFlag = (name: 'receive-slots' | 'prewarm-mib' | 'yield-lag-ms' | 'yield-wait-max-ms', min: number): number | undefined => {
  if (args[name] === undefined) return undefined;
  const v = Number(args[name]);
  if (!(Number.isInteger(v) && v >= min)) throw new Error(`--${name} must be an integer >= ${min}, got ${args[name]}`);
  return v;
};
const RECEIVE_SLOTS = intFlag('receive-slots', 1);
const PREWARM_MIB = intFlag('prewarm-mib', 0);
const YIELD_LAG_MS = intFlag('yield-lag-ms', 0);
const YIELD_WAIT_MAX_MS = intFlag('yield-wait-max-ms', 1);
const YIELD_UTILIZATION = args['yield-utilization'] !== undefined ? Number(args['yield-utilization']) : undefined;
if (YIELD_UTILIZATION !== undefined && !(YIELD_UTILIZATION > 0 && YIELD_UTILIZATION <= 1)) throw new Error(`--yield-utilization must be a number in (0, 1], got ${args['yield-utilization']}`);
const COMPRESSION = args.compression as 'none' | 'lz4' | undefined;
if (COMPRESSION !== undefined && !['none', 'lz4'].includes(COMPRESSION)) throw new Error(`--compression must be none or lz4, got ${COMPRESSION}`);
/** rebalance settings of every node, from the flags. */
const REBALANCE: Record<string, number | string> = {
  ...(COMPRESSION !== undefined ? { compression: COMPRESSION } : {}),
  ...(THROTTLE_MBPS > 0 ? { throttleBytesPerSec: Math.round(THROTTLE_MBPS * MiB) } : {}),
  ...(RECEIVE_SLOTS !== undefined ? { receiveSlots: RECEIVE_SLOTS } : {}),
  ...(PREWARM_MIB !== undefined ? { prewarmBytesMax: PREWARM_MIB * MiB } : {}),
  ...(YIELD_LAG_MS !== undefined ? { yieldLagMs: YIELD_LAG_MS } : {}),
  ...(YIELD_WAIT_MAX_MS !== undefined ? { yieldWaitMaxMs: YIELD_WAIT_MAX_MS } : {}),
  ...(YIELD_UTILIZATION !== undefined ? { yieldUtilization: YIELD_UTILIZATION } : {}),
};
const ACK_QUEUE_MAX = 65_536;
const VERIFY_REQUEST_TIMEOUT_MS = 600_000;
const log = (line: string) => {
  if (!args.quiet) console.log(line);
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Appends to the ack log one line at a time (AckLogWriter wants one waiting append at a time) without
 * making the write wait for the disk; past `ACK_QUEUE_MAX` queued lines the writes do wait.
 */
class AckQueue {
  private tail: Promise<void> = Promise.resolve();
  private queued = 0;
  private failure: unknown;
  constructor(readonly writer: AckLogWriter) {}
  async add(key: string, counter: number, digest: string): Promise<void> {
    if (this.failure) throw this.failure;
    this.queued++;
    this.tail = this.tail.then(() => this.writer.append(key, counter, digest)).catch((err) => void (this.failure ??= err)).finally(() => void this.queued--);
    if (this.queued > ACK_QUEUE_MAX) await this.tail;
  }
  async close(): Promise<void> {
    await this.tail;
    await this.writer.close();
    if (this.failure) throw this.failure;
  }
}

/** One write of the load to the ptn cluster: a random key, logged once acknowledged. */
function ptnWriter(conns: Connection[], ack: AckQueue | undefined, seed: number, router?: PrimaryRouter): (seq: number) => Promise<void> {
  const random = seededRandom(seed);
  return async (seq) => {
    const i = Math.floor(random() * ENTRIES);
    const key = `k${i}`;
    const { value, json } = makeValue(i, seq + 1, VALUE_BYTES);
    const conn = router ? router.route(key) : conns[seq % conns.length]!;
    const res = (await conn.request('put', { cache: CACHE, key, value })) as { counter: number };
    if (ack) await ack.add(key, res.counter, valueDigest(json));
  };
}

/** One write of the load to Redis: the same keys and values. */
function redisWriter(clients: RespClient[], seed: number): (seq: number) => Promise<void> {
  const random = seededRandom(seed);
  return async (seq) => {
    const i = Math.floor(random() * ENTRIES);
    await clients[seq % clients.length]!.call('SET', `k${i}`, makeValue(i, seq + 1, VALUE_BYTES).json);
  };
}

/** Tasks per path:phase in one status (progress lines). */
function phaseCounts(s: ClusterStatus): Record<string, number> {
  const out: Record<string, number> = {};
  for (const raw of s.rebalance?.tasks ?? []) {
    const t = normalizeTask(raw);
    if (t) out[`${t.path ?? '?'}:${t.phase}`] = (out[`${t.path ?? '?'}:${t.phase}`] ?? 0) + 1;
  }
  return out;
}

const latencyLine = (name: string, p: PhaseSummary | undefined) =>
  p && p.ops > 0
    ? `    ${name.padEnd(7)} ${fmt(p.opsPerSec).padStart(8)} ops/s  p50 ${fmt(p.p50Ms).padStart(7)}  p99 ${fmt(p.p99Ms).padStart(7)}  p99.9 ${fmt(p.p999Ms).padStart(7)}  max ${fmt(p.maxMs).padStart(8)} ms`
    : `    ${name.padEnd(7)} no write due in this phase was acknowledged before the load stopped (it was that far behind: see the scheduling delay)`;

interface PtnRun {
  fillPutsPerSec: number;
  fileBytes: number;
  sustainedOpsPerSec: number;
  rate: number;
  joinSeconds: number;
  joinSecondsFromStart: number;
  join: Omit<JoinObservation, 'tasks'> & { tasks: unknown[] };
  /** Seconds tasks spent in each phase (median, max, sum over tasks). */
  phases: ReturnType<typeof phaseBreakdown>;
  load: FixedRateSummary;
  verify: VerifyResult & { error?: string };
  /** Warnings the nodes logged, by message. */
  nodeComplaints: Record<string, number>;
  /** Per node: rebalance steps that yielded to the writes, in the last status of the join. */
  yields: Record<string, YieldCounts>;
  /** --route primary: writes sent to the primary the route map named / through the first node. */
  routed: { direct: number; fallback: number; refreshes: number } | null;
}

/** The nodes' rebalance yield counters in the last status seen during the join. */
let lastYields: Record<string, YieldCounts> = {};

/** Prints a progress line when the join's task phases change, at most once a second. */
function joinProgress(): (s: ClusterStatus) => void {
  let lastLine = '';
  let lastAt = 0;
  const t0 = performance.now();
  return (s) => {
    if (s.rebalance?.yield) lastYields = s.rebalance.yield;
    const line = `${s.rebalance?.partitionsLeft ?? '?'} copies MOVING, phases ${JSON.stringify(phaseCounts(s))}`;
    if (line !== lastLine && performance.now() - lastAt >= 1000) {
      lastLine = line;
      lastAt = performance.now();
      log(`  ptn: joining +${((lastAt - t0) / 1000).toFixed(1)} s, ${line}`);
    }
  };
}

/** The loaded part of the ptn run: --before-sec of load, the join, --after-sec more; the ack log closed. */
async function joinUnderLoad(bc: BenchCluster, conns: Connection[], rate: number, ackPath: string, router?: PrimaryRouter) {
  const ack = new AckQueue(new AckLogWriter(ackPath));
  const load = new FixedRateLoad({ ratePerSec: rate, inFlightMax: IN_FLIGHT_MAX, issue: ptnWriter(conns, ack, SEED, router) });
  try {
    load.start();
    await sleep(BEFORE_SEC * 1000);
    load.phase('during');
    const joined = await bc.join({ onStatus: joinProgress() });
    load.phase('after');
    await sleep(AFTER_SEC * 1000);
    return { joined, summary: await load.stop() };
  } finally {
    await load.stop(); // idempotent: a failed join still ends the load before the nodes go
    await ack.close();
  }
}

/**
 * verify with the ack log. Digests read every partition of every copy (gigabytes at the issue's
 * size), hence the long request timeout; an error is a failed verification, not a lost run.
 */
async function verifyRun(bc: BenchCluster, ackPath: string): Promise<VerifyResult & { error?: string }> {
  try {
    const verify = await runVerify({ settings: bc.manager.clientSettings(VERIFY_REQUEST_TIMEOUT_MS), ackLogPath: ackPath, ackCache: CACHE, waitRebalancedMs: 120_000, concurrency: 64 });
    log(formatVerifyResult(verify).trimEnd().replace(/^/gm, '  '));
    return verify;
  } catch (err) {
    const error = `${(err as { code?: string }).code ?? 'error'}: ${(err as Error).message}`;
    console.log(`  verify could not run: ${error}`);
    return { ok: false, caches: 0, partitions: 0, copiesCompared: 0, mismatchCount: 0, mismatches: [], error };
  }
}

async function runPtn(root: string): Promise<PtnRun> {
  const bc = await BenchCluster.open({ dir: root, nodesMax: 2, basePort: args['base-port'] ? Number(args['base-port']) : undefined, durability: DURABILITY, syncMode: SYNC_MODE, rebalance: Object.keys(REBALANCE).length ? REBALANCE : undefined, cpuProfDir: args['cpu-prof'], nodeLogLevel: args['node-log-level'], progress: args.quiet ? undefined : (l) => log(`  ${l}`) });
  const conns: Connection[] = [];
  let router: PrimaryRouter | undefined;
  try {
    await bc.createCache(CACHE, PARTITIONS);
    const fillPutsPerSec = await bc.fill(CACHE, ENTRIES, VALUE_BYTES);
    const { bytes } = await bc.checkpointAndMeasure();
    log(`  ptn: filled ${ENTRIES} entries at ${fmt(fillPutsPerSec)} puts/s; partition files ${fmt(bytes / MiB)} MiB`);
    for (let i = 0; i < CONNECTIONS; i++) conns.push(await connectClient(bc.manager.clientSettings(60_000)));
    const sustained = await measureSustainedOpsPerSec(ptnWriter(conns, undefined, SEED ^ 0x5a5a), SUSTAIN_CONCURRENCY, SUSTAIN_SEC);
    await bc.checkpointAndMeasure(); // the probe's dirty pages are not the join's to write
    const rate = Math.max(1, Math.floor(Math.min(RATE, LOAD_SHARE * sustained)));
    log(`  ptn: the node sustains ${fmt(sustained)} writes/s (${SUSTAIN_CONCURRENCY} in flight); load rate ${fmt(rate)} ops/s = min(--rate ${RATE}, ${LOAD_SHARE} × sustained)`);
    const ackPath = path.join(root, 'acks.log');
    // The router's map starts with one node (the primary of all); it learns the joiner's partitions as they move.
    router = ROUTE === 'primary' ? await PrimaryRouter.open(bc.manager.clientSettings(60_000), conns[0]!, { cache: CACHE, perNode: CONNECTIONS }) : undefined;
    const { joined, summary } = await joinUnderLoad(bc, conns, rate, ackPath, router);
    log(`  ptn: every partition OWNING ${fmt(joined.obs.seconds)} s after the node was healthy (${fmt(joined.secondsFromStart)} s from its start); paths ${JSON.stringify(joined.obs.paths)}`);
    const verify = await verifyRun(bc, ackPath);
    const { tasks, ...rest } = joined.obs;
    return {
      fillPutsPerSec,
      fileBytes: bytes,
      sustainedOpsPerSec: sustained,
      rate,
      joinSeconds: joined.obs.seconds,
      joinSecondsFromStart: joined.secondsFromStart,
      join: { ...rest, tasks },
      phases: phaseBreakdown(tasks),
      load: summary,
      verify,
      nodeComplaints: await logComplaints(bc.manager.dir),
      yields: lastYields,
      routed: router ? { ...router.counts } : null,
    };
  } finally {
    await router?.close();
    for (const c of conns) await c.close().catch(() => undefined);
    await bc.close();
  }
}

interface RedisRun {
  fillSetsPerSec: number;
  usedMemoryBytes: number;
  syncSeconds: number;
  fullSyncs: number;
  replicaKeys: number;
  masterKeys: number;
  load: FixedRateSummary;
}

async function runRedis(root: string, bin: string, rate: number): Promise<RedisRun> {
  const master = await RedisServer.start(bin, path.join(root, 'redis-master'), ['repl-diskless-sync', 'yes', 'repl-diskless-sync-delay', '0']);
  const replica = await RedisServer.start(bin, path.join(root, 'redis-replica'));
  const clients: RespClient[] = [];
  let stopLoad: (() => Promise<unknown>) | undefined;
  try {
    const admin = await RespClient.connect(master.port);
    clients.push(admin);
    const fillSetsPerSec = await redisFill(admin, ENTRIES, (i) => `k${i}`, (i) => makeValue(i, i + 1, VALUE_BYTES).json);
    const usedMemoryBytes = Number((await admin.info('memory')).get('used_memory'));
    log(`  redis: filled ${ENTRIES} keys at ${fmt(fillSetsPerSec)} SET/s; used_memory ${fmt(usedMemoryBytes / MiB)} MiB`);
    const loadClients: RespClient[] = [];
    for (let i = 0; i < CONNECTIONS; i++) loadClients.push(await RespClient.connect(master.port));
    clients.push(...loadClients);
    const rc = await RespClient.connect(replica.port);
    clients.push(rc);
    const load = new FixedRateLoad({ ratePerSec: rate, inFlightMax: IN_FLIGHT_MAX, issue: redisWriter(loadClients, SEED) });
    stopLoad = () => load.stop();
    load.start();
    await sleep(BEFORE_SEC * 1000);
    load.phase('during');
    const syncSeconds = await timeReplicaSync(rc, master.port);
    load.phase('after');
    await sleep(AFTER_SEC * 1000);
    const summary = await load.stop();
    const fullSyncs = Number((await admin.info('stats')).get('sync_full'));
    const masterKeys = Number(await admin.call('DBSIZE'));
    const replicaKeys = Number(await rc.call('DBSIZE'));
    log(`  redis: replica in sync in ${fmt(syncSeconds)} s (full syncs: ${fullSyncs}; keys master ${masterKeys}, replica ${replicaKeys})`);
    return { fillSetsPerSec, usedMemoryBytes, syncSeconds, fullSyncs, replicaKeys, masterKeys, load: summary };
  } finally {
    for (const c of clients) c.close(); // rejects what is in flight, so stopping the load cannot hang
    await stopLoad?.();
    await master.stop();
    await replica.stop();
  }
}

/**
 * The disk's floor for a durable copy, measured on the same disk right after the ptn run (its nodes
 * stopped): a raw sequential fsync'd write of as many bytes as the partition files hold, and the
 * seconds the same speed gives for the values alone (the fewest bytes any durable copy writes).
 */
async function diskFloor(root: string, fileBytes: number, valueBytes: number) {
  const mbPerSec = await rawFsyncWriteMBps(path.join(root, 'floor.raw'), fileBytes);
  return { mbPerSec, fileBytes, fileSeconds: fileBytes / MiB / mbPerSec, valueBytes, valueSeconds: valueBytes / MiB / mbPerSec };
}

/** REPLICAOF, then INFO replication every 50 ms until the replica is in sync; returns seconds. */
async function timeReplicaSync(rc: RespClient, masterPort: number): Promise<number> {
  const t0 = performance.now();
  await rc.call('REPLICAOF', '127.0.0.1', String(masterPort));
  const deadline = Date.now() + 3_600_000;
  while (!replicaInSync(await rc.info('replication'))) {
    if (Date.now() > deadline) throw new Error('redis replica not in sync within an hour');
    await sleep(50);
  }
  return (performance.now() - t0) / 1000;
}

const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined && b > 0 ? a / b : undefined);
const fx = (x: number | undefined, digits = 2) => (x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(digits));

const root = args.dir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'ptn-bench-catchup-')));
try {
  log(`bench:catchup in ${root}: ${ENTRIES} entries × ${VALUE_BYTES} B in ${PARTITIONS} partitions, load ${RATE} ops/s asked (seed ${SEED}), WAL ${DURABILITY}, ${SYNC_MODE}${THROTTLE_MBPS > 0 ? `, transfers throttled to ${THROTTLE_MBPS} MiB/s` : ''}`);
  const redisBin = args.peer === 'redis' ? findRedisServer() : undefined;
  if (args.peer === 'redis' && !redisBin) console.log(`  ${REDIS_INSTALL_HINT}; skipping that column`);
  const ptn = await runPtn(root);
  if (ptn.routed) log(`  ptn: writes sent to their partition's primary ${ptn.routed.direct}, through the first node ${ptn.routed.fallback} (route map read ${ptn.routed.refreshes} times)`);
  const yields = Object.entries(ptn.yields).filter(([, y]) => y.turns > 0);
  if (yields.length) log(`  ptn: rebalance steps that yielded to the writes: ${yields.map(([id, y]) => `${id} ${y.waits} of ${y.turns} (${fmt(y.waitedMs / 1000)} s waited, ${y.waitMaxReached} at the wait limit)`).join('; ')}`);
  log(`  ptn: temp-WAL peak ${ptn.join.tempWalPeakBytes === undefined ? 'n/a' : `${fmt(ptn.join.tempWalPeakBytes / MiB)} MiB`}; fence pause max ${ptn.join.fenceMsMax === undefined ? 'n/a' : `${fmt(ptn.join.fenceMsMax)} ms`}`);
  log(`  ptn: seconds per task phase (median / max over ${ptn.join.tasks.length} tasks): ${Object.entries(ptn.phases).map(([k, v]) => `${k} ${fmt(v.medianSec)}/${fmt(v.maxSec)}`).join(', ')}`);
  const complaints = Object.entries(ptn.nodeComplaints);
  if (complaints.length) log(`  ptn: node warnings: ${complaints.map(([k, n]) => `${n}× ${k}`).join('; ')}`);
  log(`  ptn write latency (from each write's due time; worst scheduling delay ${fmt(ptn.load.behindMaxMs)} ms, ${ptn.load.dueNotSent} writes due but never sent):`);
  for (const ph of ['before', 'during', 'after']) log(latencyLine(ph, ptn.load.phases[ph]));
  const floor = await diskFloor(root, ptn.fileBytes, ENTRIES * VALUE_BYTES);
  log(`  disk floor (same disk, no load): a raw fsync'd write of the ${fmt(ptn.fileBytes / MiB)} MiB of partition files takes ${fmt(floor.fileSeconds)} s (${fmt(floor.mbPerSec)} MB/s); of the ${fmt(floor.valueBytes / MiB)} MiB of values alone ${fmt(floor.valueSeconds)} s`);
  const redis = redisBin ? await runRedis(root, redisBin, ptn.rate) : undefined;
  if (redis) {
    log(`  redis write latency (worst scheduling delay ${fmt(redis.load.behindMaxMs)} ms, ${redis.load.dueNotSent} writes due but never sent):`);
    for (const ph of ['before', 'during', 'after']) log(latencyLine(ph, redis.load.phases[ph]));
  }
  const p99 = (r: { load: FixedRateSummary } | undefined, ph: string) => r?.load.phases[ph]?.p99Ms;
  const ratios = {
    redisSyncOverPtnJoin: ratio(redis?.syncSeconds, ptn.joinSeconds),
    ptnP99DuringOverBefore: ratio(p99(ptn, 'during'), p99(ptn, 'before')),
    redisP99DuringOverBefore: ratio(p99(redis, 'during'), p99(redis, 'before')),
    ptnJoinOverFileFloor: ratio(ptn.joinSeconds, floor.fileSeconds),
    redisSyncOverValueFloor: ratio(redis?.syncSeconds, floor.valueSeconds),
  };
  console.log(
    `catchup: ptn join ${fmt(ptn.joinSeconds)} s, redis full sync ${redis ? `${fmt(redis.syncSeconds)} s` : 'n/a (not run)'}: redis/ptn = ${fx(ratios.redisSyncOverPtnJoin)} (target >= 3); ` +
      `write p99 during/before: ptn ${fx(ratios.ptnP99DuringOverBefore)} (target <= 1.5), redis ${fx(ratios.redisP99DuringOverBefore)}; verify ${ptn.verify.ok ? 'OK' : 'FAILED'}`,
  );
  console.log(
    `catchup: ptn join / fsync'd write of its files = ${fx(ratios.ptnJoinOverFileFloor)}; redis full sync / fsync'd write of the values alone = ${fx(ratios.redisSyncOverValueFloor)} ` +
      `(the most any path that makes the values durable before it answers can beat Redis by on this disk)`,
  );
  const results = {
    bench: 'catchup',
    when: new Date().toISOString(),
    host: { cpus: os.cpus().length, node: process.version },
    params: { entries: ENTRIES, valueBytes: VALUE_BYTES, partitions: PARTITIONS, rateAsked: RATE, loadShare: LOAD_SHARE, beforeSec: BEFORE_SEC, afterSec: AFTER_SEC, durability: DURABILITY, syncMode: SYNC_MODE, route: ROUTE, seed: SEED, peer: args.peer, inFlightMax: IN_FLIGHT_MAX, throttleMBps: THROTTLE_MBPS, receiveSlots: RECEIVE_SLOTS ?? null, prewarmMiB: PREWARM_MIB ?? null, yieldLagMs: YIELD_LAG_MS ?? null, yieldWaitMaxMs: YIELD_WAIT_MAX_MS ?? null, yieldUtilization: YIELD_UTILIZATION ?? null, compression: COMPRESSION ?? null },
    rate: ptn.rate,
    ptn: { ...ptn, join: { ...ptn.join, tempWalPeakBytes: ptn.join.tempWalPeakBytes ?? null, fenceMsMax: ptn.join.fenceMsMax ?? null } },
    redis: redis ?? { skipped: args.peer === 'redis' ? REDIS_INSTALL_HINT : 'not asked (--peer redis)' },
    floor,
    ratios: Object.fromEntries(Object.entries(ratios).map(([k, v]) => [k, v ?? null])),
  };
  await writeResults(args.json!, results);
  await renderCatchupChart(results, args.json!.replace(/\.json$/, '') + '.svg');
  if (!ptn.verify.ok) process.exitCode = 1;
} finally {
  if (!args.dir) await fs.rm(root, { recursive: true, force: true });
}
