/**
 * A local cluster for the join benchmarks (catch-up, scaling): node processes driven through
 * ClusterManager exactly as `ptn cluster` does, clients through connectClient, plus the steps
 * every such bench repeats — create the cache, fill it, checkpoint, measure the partition files,
 * add a node and watch it join, remove it again.
 *
 * Lifecycle: `BenchCluster.open()` starts the first node; `close()` closes the client and kills
 * every node process the manager started (also after a failure); idempotent.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { nodeCommandFor } from './lib.js';
import { ClusterManager } from '../src/cli/cluster-manager.js';
import { readClusterFile, writeClusterFile } from '../src/cli/cluster-file.js';
import type { ClusterNodeEntry } from '../src/cli/cluster-file.js';
import { connectClient } from '../src/cli/client.js';
import { makeValue, runLoad } from '../src/cli/load.js';
import { findFreeBasePort } from '../src/cli/processes.js';
import type { Connection } from '../src/net/connection.js';
import { JoinWatch, type JoinObservation } from './join-watch.js';

const MiB = 1024 * 1024;

/** How the bench cluster is set up. */
export interface BenchClusterOptions {
  dir: string;
  /** Nodes the bench may add over its run (ports are reserved for all of them). */
  nodesMax: number;
  basePort?: number;
  durability?: 'fsync' | 'background';
  /** cluster.syncMode of the nodes (default: the node default, full-sync). */
  syncMode?: 'full-sync' | 'primary-sync';
  pageCacheBytesMax?: number;
  /** Extra `rebalance` settings of every node (also the joining ones). */
  rebalance?: Record<string, unknown>;
  progress?: (line: string) => void;
  /** Log level of the nodes (default warn; info shows every task phase and checkpoint with its time). */
  nodeLogLevel?: string;
  /** Write a V8 CPU profile of every node process into this directory (nodes are then stopped with SIGTERM so they write it). */
  cpuProfDir?: string;
}

/** A started cluster of one node, with one client connection to it. */
export class BenchCluster {
  private closed = false;

  private constructor(
    readonly manager: ClusterManager,
    readonly conn: Connection,
    private readonly profiling: boolean,
  ) {}

  /** Starts the first node (logs at warn, WAL durability as asked, background by default). */
  static async open(o: BenchClusterOptions): Promise<BenchCluster> {
    const nodeCommand = nodeCommandFor(o.cpuProfDir);
    const manager = new ClusterManager({ dir: path.join(o.dir, 'cluster'), progress: o.progress, nodeCommand });
    try {
      const basePort = o.basePort ?? (await findFreeBasePort(o.nodesMax + 1));
      await manager.up({
        nodes: 1,
        basePort,
        nodeConfig: {
          logLevel: o.nodeLogLevel ?? 'warn',
          wal: { durability: o.durability ?? 'background' },
          storage: { pageCacheBytesMax: o.pageCacheBytesMax ?? 512 * MiB },
          net: { requestTimeoutMs: 60_000 },
          ...(o.syncMode ? { cluster: { syncMode: o.syncMode } } : {}),
          ...(o.rebalance ? { rebalance: o.rebalance } : {}),
        },
        timeoutMs: 120_000,
      });
      const conn = await connectClient(manager.clientSettings(60_000));
      return new BenchCluster(manager, conn, o.cpuProfDir !== undefined);
    } catch (err) {
      await manager.killAll().catch(() => undefined);
      throw err;
    }
  }

  /** The first node's manifest entry (the supplier of every join). */
  get first(): ClusterNodeEntry {
    return readClusterFile(this.manager.dir)!.nodes[0]!;
  }

  /** Creates `cache` with `partitions` partitions and one backup (a joining node receives every partition); returns its cache id. */
  async createCache(cache: string, partitions: number): Promise<number> {
    const r = (await this.conn.request('cacheCreate', { name: cache, partitions, backups: 1 })) as { cache?: { cacheId?: number } };
    return r.cache?.cacheId ?? -1;
  }

  /** Fills keys k0..k(n-1) with JSON values of `valueBytes` (runLoad's fill); returns puts/s. */
  async fill(cache: string, n: number, valueBytes: number, concurrency = 128): Promise<number> {
    const r = await runLoad({ settings: this.manager.clientSettings(60_000), entries: n, valueBytes, cache, concurrency, attemptsMax: 20 });
    if (r.failed > 0) throw new Error(`fill: ${r.failed} writes failed (${JSON.stringify(r.errorsByCode)})`);
    return r.opsPerSec;
  }

  /**
   * Writes keys k`from`..k`to-1` with the values runLoad would write (JSON of `valueBytes`),
   * `concurrency` at a time on the bench connection; returns puts/s.
   */
  async fillRange(cache: string, from: number, to: number, valueBytes: number, concurrency = 128): Promise<number> {
    let next = from;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        for (let i = next++; i < to; i = next++) await this.conn.request('put', { cache, key: `k${i}`, value: makeValue(i, 0, valueBytes).value });
      }),
    );
    return (to - from) / ((performance.now() - t0) / 1000);
  }

  /** Checkpoints the first node and returns the size of its partition files of `cacheId` (or all). */
  async checkpointAndMeasure(): Promise<{ files: string[]; bytes: number }> {
    await this.conn.request('checkpoint', {}, { timeoutMs: 600_000 });
    const files = await partitionFiles(this.first.dataDir);
    let bytes = 0;
    for (const f of files) bytes += (await fs.stat(f)).size;
    return { files, bytes };
  }

  /** Sets `nodeConfig.rebalance` keys for nodes started from now on (cluster.json). */
  setJoinerRebalance(settings: Record<string, unknown>): void {
    const cf = readClusterFile(this.manager.dir)!;
    const base = (cf.nodeConfig ?? {}) as Record<string, Record<string, unknown> | undefined>;
    writeClusterFile(this.manager.dir, { ...cf, nodeConfig: { ...base, rebalance: { ...(base.rebalance ?? {}), ...settings } } });
  }

  /**
   * Adds a node and watches it join until the cluster is rebalanced. `secondsFromStart` counts from
   * the spawn, `seconds` from the node being healthy (it has joined the topology by then).
   */
  async join(o: { sampleRss?: boolean; pollMs?: number; onStatus?: JoinWatchOnStatus } = {}): Promise<{ entry: ClusterNodeEntry; obs: JoinObservation; secondsFromStart: number }> {
    const nodes = readClusterFile(this.manager.dir)!.nodes.filter((n) => n.running).length + 1;
    const t0 = performance.now();
    const entry = await this.manager.add({ wait: 'healthy', timeoutMs: 120_000 });
    const watch = new JoinWatch({ conn: this.conn, nodes, joiningAdmin: o.sampleRss ? entry.adminAddress : undefined, pollMs: o.pollMs ?? 100, onStatus: o.onStatus });
    if (o.sampleRss) await watch.sampleRss();
    watch.start();
    const obs = await watch.untilRebalanced();
    return { entry, obs, secondsFromStart: (performance.now() - t0) / 1000 };
  }

  /** Kills a joined node and waits until the first node is alone and rebalanced again; removes its data. */
  async remove(entry: ClusterNodeEntry): Promise<void> {
    await this.manager.stop(entry.id, { kill: !this.profiling, wait: false });
    const deadline = Date.now() + 120_000;
    for (;;) {
      const s = (await this.conn.request('status', {}, { timeoutMs: 30_000 })) as { nodes: unknown[]; rebalanced: boolean };
      if (s.nodes.length === 1 && s.rebalanced) break;
      if (Date.now() > deadline) throw new Error(`${entry.id} still listed 120 s after it was killed`);
      await new Promise((r) => setTimeout(r, 200));
    }
    await fs.rm(entry.dataDir, { recursive: true, force: true });
  }

  /** Closes the client and kills every node; idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.conn.close().catch(() => undefined);
    if (this.profiling) await this.manager.down({ timeoutMs: 30_000 }).catch(() => undefined); // SIGTERM: profiles are written at exit
    await this.manager.killAll().catch(() => undefined);
  }
}

type JoinWatchOnStatus = ConstructorParameters<typeof JoinWatch>[0]['onStatus'];

/** Every partition file (`*.ptn`) under a node's data dir. */
export async function partitionFiles(dataDir: string): Promise<string[]> {
  const out: string[] = [];
  const caches = path.join(dataDir, 'caches');
  for (const c of await fs.readdir(caches).catch(() => [] as string[])) {
    for (const f of await fs.readdir(path.join(caches, c))) if (f.endsWith('.ptn')) out.push(path.join(caches, c, f));
  }
  return out;
}

/**
 * Warnings and errors (pino level ≥ 40) in the logs of the cluster's nodes, counted by message:
 * what a node complained about during a run (e.g. topology changes that timed out waiting for acks).
 */
export async function logComplaints(clusterDir: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const cf = readClusterFile(clusterDir);
  for (const n of cf?.nodes ?? []) {
    const text = await fs.readFile(n.logPath, 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        const o = JSON.parse(line) as { level?: number; msg?: string };
        if ((o.level ?? 0) >= 40) out[`${n.id}: ${o.msg ?? '?'}`] = (out[`${n.id}: ${o.msg ?? '?'}`] ?? 0) + 1;
      } catch {
        /* a torn last line */
      }
    }
  }
  return out;
}
