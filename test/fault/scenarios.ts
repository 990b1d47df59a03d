/**
 * Fault suite building blocks: a test cluster of real node processes with test faults enabled
 * and the file path forced (`rebalance.fileMinBytes: 0`), a seeded preload and background load
 * through `runLoad` with an ack log, waits on the admin `/status`, and per-node figures
 * (`/metrics`, log lines). The checker (checker.ts) runs after every scenario.
 *
 * Every resource is registered on the test context and released in `t.after`, also on failure.
 * Nothing here asserts wall-clock times: waits have generous deadlines and only fail on them.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import type { ClientSettings } from '../../src/cli/client.js';
import { readClusterFile, writeClusterFile, type ClusterNodeEntry } from '../../src/cli/cluster-file.js';
import { runLoad, type LoadResult } from '../../src/cli/load.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { adminRequest, enableTestFaultsEnv, postFaults } from '../helpers/node-faults.js';

/** The cache every scenario uses (runLoad and runVerify default to it). */
export const CACHE = 'default';
/** Chunk size of the scenarios: small, so a partition file of a few hundred KiB has several chunks. */
export const CHUNK_BYTES = 64 * 1024;

/** What a node of a scenario is, whether started by the cluster manager or alone. */
export type FaultNode = Pick<ClusterNodeEntry, 'id' | 'pid' | 'address' | 'adminAddress' | 'dataDir' | 'configPath' | 'logPath'>;

/** A fault point rule as POST /faults and the config take it. */
export interface PointRule {
  name: string;
  action: 'kill' | 'stop' | 'delay' | 'throw';
  delayMs?: number;
  after?: number;
  once?: boolean;
}

/** Config keys shared by every node of a scenario (fast failure detection, file path, small chunks). */
export function faultNodeConfig(extra: { rebalance?: Record<string, unknown>; wal?: Record<string, unknown>; points?: PointRule[] } = {}): Record<string, unknown> {
  return {
    logLevel: 'info',
    net: { heartbeatIntervalMs: 200, failureTimeoutMs: 2000 },
    wal: { durability: 'background', flushIntervalMs: 5, ...extra.wal },
    storage: { checkpointIntervalMs: 1000 },
    rebalance: { fileMinBytes: 0, chunkBytes: CHUNK_BYTES, diskSpaceMarginBytes: 0, resumeRetries: 3, ...extra.rebalance },
    testFaults: { enabled: true, points: extra.points ?? [] },
  };
}

/** A test cluster with test faults enabled on every node, torn down after the test. */
export async function faultCluster(t: TestContext, nodes: number, extra: Parameters<typeof faultNodeConfig>[0] = {}): Promise<TestCluster> {
  enableTestFaultsEnv(t);
  const c = await startTestCluster({ nodes, spareNodes: 3, nodeConfig: faultNodeConfig(extra), keepDir: process.env.PTN_KEEP_DIR === '1' });
  t.after(() => c.teardown());
  return c;
}

/**
 * Replaces the fault points in the cluster's shared node config: nodes started from now on
 * (`add`, `start`) get them; running nodes keep theirs (change those with POST /faults).
 */
export function setStartupPoints(c: TestCluster, points: PointRule[]): void {
  const cf = readClusterFile(c.dir)!;
  const cfg = (cf.nodeConfig ?? {}) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON config
  cfg.testFaults = { ...(cfg.testFaults ?? {}), enabled: true, points };
  cf.nodeConfig = cfg;
  writeClusterFile(c.dir, cf);
}

/**
 * `cluster.add()` that tolerates the new node being killed by one of its own fault points before
 * the launcher saw it healthy (a kill rule can fire within one /healthz poll of the join); the
 * entry stays in the cluster file and `start(id)` restarts it. Returns the new node.
 */
export async function addNode(c: TestCluster, wait: 'ready' | 'healthy' | 'none' = 'none'): Promise<FaultNode> {
  const before = new Set(c.nodes().map((n) => n.id));
  try {
    await c.add({ wait });
  } catch (err) {
    if (!/test fault: kill/.test((err as Error).message)) throw err;
  }
  const added = c.nodes().find((n) => !before.has(n.id));
  if (!added) throw new Error('add() left no new node in the cluster file');
  return added;
}

/** The manager's nodes as FaultNodes (pids as they are now). */
export function clusterNodes(c: TestCluster): FaultNode[] {
  return c.nodes();
}

export function nodeOf(c: TestCluster, id: string): FaultNode {
  const n = c.nodes().find((e) => e.id === id);
  if (!n) throw new Error(`no node ${id}`);
  return n;
}

/** GET /status of a node (the cluster-wide status JSON). */
export async function status(adminAddress: string): Promise<Record<string, any>> { // eslint-disable-line @typescript-eslint/no-explicit-any -- status JSON
  const r = await adminRequest(adminAddress, 'GET', '/status');
  if (r.status !== 200) throw new Error(`GET /status on ${adminAddress}: HTTP ${r.status}`);
  return r.body;
}

/** Rebalance tasks of the cluster status (every node's demander tasks). */
export type TaskView = { node: string; cache: string; partition: number; phase: string; path?: string; reason?: string; bytesDone: number; bytesTotal: number; restarts: number; bytesNotResent: number; supplier?: string; error?: string };

export async function tasks(adminAddress: string): Promise<TaskView[]> {
  return ((await status(adminAddress)).rebalance?.tasks ?? []) as TaskView[];
}

/** Polls `probe` every `everyMs` until it returns a value other than undefined/false. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 60_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Waits until the cluster seen from `adminAddress` has `nodeCount` nodes, is rebalanced and lost nothing. */
export async function waitRebalanced(adminAddress: string, nodeCount: number, timeoutMs = 90_000): Promise<Record<string, any>> { // eslint-disable-line @typescript-eslint/no-explicit-any -- status JSON
  return waitFor(
    `rebalanced with ${nodeCount} nodes`,
    async () => {
      const s = await status(adminAddress);
      return s.rebalanced && s.nodes.length === nodeCount && s.lostPartitions.length === 0 ? s : undefined;
    },
    timeoutMs,
    200,
  );
}

/** Creates the scenario cache through a client of the cluster. */
export async function createCache(c: TestCluster, partitions: number, backups: number, extra: Record<string, unknown> = {}): Promise<void> {
  const conn = await c.client();
  await conn.request('cacheCreate', { name: CACHE, partitions, backups, indexFields: ['city'], ...extra });
}

/** One sequential fill of `entries` keys (acknowledged writes go to the ack log). */
export async function fill(settings: ClientSettings, addresses: string[], ackLogPath: string, entries: number, valueBytes = 400): Promise<LoadResult> {
  const r = await runLoad({ settings, extraAddresses: addresses, entries, valueBytes, concurrency: 8, ackLogPath, attemptsMax: 50 });
  if (r.failed > 0) throw new Error(`preload: ${r.failed} writes failed`);
  return r;
}

/** A seeded random load that runs until `stop()` (the ack log records every acknowledged write). */
export function backgroundLoad(settings: ClientSettings, addresses: string[], ackLogPath: string, seed: number, entries: number) {
  const abort = new AbortController();
  const run = runLoad({ settings, extraAddresses: addresses, entries, valueBytes: 300, durationSec: 600, ratePerSec: 150, concurrency: 3, ackLogPath, attemptsMax: 100, seed, signal: abort.signal });
  run.catch(() => undefined); // awaited by stop(); a rejection before then must not be unhandled
  return {
    async stop(): Promise<LoadResult> {
      abort.abort();
      return run;
    },
  };
}

/**
 * The common start of the demander crash scenarios: 2 nodes, cache "default" (6 partitions, 1
 * backup) filled with 1500 entries, a background load with an ack log (stopped after the test).
 */
export async function loadedPair(t: TestContext, seed: number, snapshotIdleTimeoutMs: number) {
  const c = await faultCluster(t, 2, { rebalance: { snapshotIdleTimeoutMs } });
  await createCache(c, 6, 1);
  const ackLog = ackLogOf(c.dir);
  const addresses = c.nodes().map((n) => n.address);
  await fill(c.settings(), addresses, ackLog, 1500);
  const load = backgroundLoad(c.settings(), addresses, ackLog, seed, 400);
  t.after(() => load.stop().catch(() => undefined));
  return { c, ackLog, load };
}

/** A gauge/counter of a node's /metrics (sum over label sets), or undefined when absent. */
export async function metric(adminAddress: string, name: string): Promise<number | undefined> {
  const i = adminAddress.lastIndexOf(':');
  const res = await fetch(`http://${adminAddress.slice(0, i)}:${adminAddress.slice(i + 1)}/metrics`);
  const text = await res.text();
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    sum = (sum ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** Lines of a node's log whose text includes `needle`. */
export function logLines(node: Pick<FaultNode, 'logPath'>, needle: string): string[] {
  if (!fs.existsSync(node.logPath)) return [];
  return fs.readFileSync(node.logPath, 'utf8').split('\n').filter((l) => l.includes(needle));
}

/** Clears every fault point and file rule of a running node. */
export async function clearFaults(node: Pick<FaultNode, 'adminAddress'>): Promise<void> {
  const r = await postFaults(node.adminAddress, { points: [], fileRules: [] });
  if (r.status !== 200) throw new Error(`POST /faults: HTTP ${r.status}`);
}

/** Sets the fault points of a running node (its file rules stay). */
export async function setPoints(node: Pick<FaultNode, 'adminAddress'>, points: PointRule[]): Promise<void> {
  const r = await postFaults(node.adminAddress, { points });
  if (r.status !== 200) throw new Error(`POST /faults: HTTP ${r.status} ${JSON.stringify(r.body)}`);
}

/** Where a scenario keeps its ack log. */
export function ackLogOf(dir: string): string {
  return path.join(dir, 'acks.log');
}
