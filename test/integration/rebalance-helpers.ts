// In-process cluster for the rebalance integration tests: real nodes (startNode, port 0, real
// WebSockets on loopback), small data, a load that records every acknowledged write, and checks
// (all OWNING, digests equal, acknowledged writes readable, index queries exact, no leftovers).
// Everything is closed and removed in `t.after`, also when a test fails.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { defaultConfig } from '../../src/config.js';
import { startNode, type ClusterNode } from '../../src/cluster/node.js';
import { isRebalanced } from '../../src/cluster/topology.js';
import type { Body } from '../../src/net/connection.js';
import type { DemanderOptions } from '../../src/demander/manager.js';
import { rng } from '../helpers/tmp.js';

export const CACHE = 'rb';
export const FIELD = 'city';

export interface TestNodes {
  root: string;
  nodes: ClusterNode[];
  start(id: string, demander?: DemanderOptions): Promise<ClusterNode>;
  call(method: string, body: Body, node?: ClusterNode): Promise<Body>;
  live(): ClusterNode[];
  /** Loads to stop before the nodes close (a failed test must not leave one running). */
  readonly loads: Set<{ stop(): Promise<void> }>;
}

/** Config of an in-process test node (small, fast failure detection, the file path for every partition). */
export function nodeConfig(root: string, id: string, seeds: string[], rebalance: Record<string, unknown> = {}) {
  return defaultConfig({
    nodeId: id,
    clusterId: 'rebalance-it',
    clusterSecret: 'rebalance-secret',
    host: '127.0.0.1',
    port: 0,
    adminPort: 0,
    dataDir: path.join(root, id),
    seeds,
    logLevel: process.env.PTN_TEST_LOG ?? 'silent',
    storage: { pageCacheBytesMax: 16 << 20, checkpointIntervalMs: 1000 },
    wal: { durability: 'background', flushIntervalMs: 5 },
    net: { heartbeatIntervalMs: 200, failureTimeoutMs: 1500, requestTimeoutMs: 5000 },
    cluster: { topologyAckTimeoutMs: 3000, writeRetryMs: 15000 },
    rebalance: { fileMinBytes: 0, chunkBytes: 65536, diskSpaceMarginBytes: 0, resumeRetries: 2, ...rebalance },
  });
}

/** Starts `n` nodes (the first forms the cluster) and closes them all in `t.after`. */
export async function startNodes(t: TestContext, n: number, rebalance: Record<string, unknown> = {}): Promise<TestNodes> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'ptn-'));
  const nodes: ClusterNode[] = [];
  const loads = new Set<{ stop(): Promise<void> }>();
  t.after(async () => {
    for (const l of loads) await l.stop();
    for (const node of [...nodes].reverse()) await node.close().catch(() => undefined);
    await fs.rm(root, { recursive: true, force: true });
  });
  const live = () => nodes.filter((x) => x.status === 'running');
  const start = async (id: string, demander?: DemanderOptions) => {
    const seeds = live().length > 0 ? [live()[0]!.address] : [];
    const node = await startNode(nodeConfig(root, id, seeds, rebalance), { demander });
    nodes.push(node);
    return node;
  };
  for (let i = 1; i <= n; i++) await start(`n${i}`);
  const call = async (method: string, body: Body, node = live()[0]!) => (await node.handlers.get(method)!(body, undefined as never)) as Body;
  return { root, nodes, start, call, live, loads };
}

/** A writer through the client API that remembers the last acknowledged value of every key. */
export class AckedLoad {
  readonly acked = new Map<string, { city: string; n: number } | null>();
  /** Every key written to, acknowledged or not. */
  readonly attempted = new Set<string>();
  failures = 0;
  writes = 0;
  private stopped = false;
  private running: Promise<void> | undefined;

  constructor(
    private readonly c: TestNodes,
    private readonly seed: number,
    private readonly opts: { keys?: number; pauseMs?: number; maxWrites?: number; prefix?: string } = {},
  ) {}

  /** Resolves once `n` writes were acknowledged (or the load stopped). */
  async until(n: number): Promise<void> {
    while (this.writes < n && !this.stopped) await new Promise((r) => setTimeout(r, 10));
  }

  start(): this {
    this.c.loads.add(this);
    const r = rng(this.seed);
    this.running = (async () => {
      while (!this.stopped && this.writes < (this.opts.maxWrites ?? Infinity)) {
        const key = `${this.opts.prefix ?? 'load'}${Math.floor(r() * (this.opts.keys ?? 400))}`;
        this.attempted.add(key);
        const remove = r() < 0.1;
        const value = { city: `lc${Math.floor(r() * 4)}`, n: this.writes };
        const via = this.c.live()[Math.floor(r() * this.c.live().length)];
        try {
          if (!via) throw new Error('no live node');
          if (remove) await via.writes.clientWrite(CACHE, key, 'remove');
          else await via.writes.clientWrite(CACHE, key, 'put', 1, Buffer.from(JSON.stringify(value)));
          this.acked.set(key, remove ? null : value);
          this.writes++;
          // Paced: a steady trickle of writes overlapping the rebalance, not a CPU-bound loop.
          await new Promise((res) => setTimeout(res, this.opts.pauseMs ?? 1));
        } catch {
          // Not acknowledged: the key may hold either value; forget it rather than guess.
          this.acked.delete(key);
          this.failures++;
          await new Promise((res) => setTimeout(res, 20));
        }
      }
    })();
    return this;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }
}

/** Loads `n` keys `base<i>` with `{city, pad}` through the client API. */
export async function preload(c: TestNodes, n: number, padBytes = 300): Promise<Map<string, { city: string }>> {
  const out = new Map<string, { city: string }>();
  const pad = 'p'.repeat(padBytes);
  for (let i = 0; i < n; i += 50) {
    await Promise.all(
      Array.from({ length: Math.min(50, n - i) }, async (_, j) => {
        const k = `base${i + j}`;
        const v = { city: `c${(i + j) % 6}`, pad };
        await c.live()[0]!.writes.clientWrite(CACHE, k, 'put', 1, Buffer.from(JSON.stringify(v)));
        out.set(k, v);
      }),
    );
  }
  return out;
}

/** Resolves when every live node has the same topology version and nothing is MOVING or RENTING. */
export async function waitRebalanced(c: TestNodes, limitMs = 60_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const live = c.live();
    const v = live[0]!.topology().version;
    const settled = (n: ClusterNode) => isRebalanced(n.topology()) && !Object.values(n.topology().partitions).some((ps) => ps.some((pc) => Object.values(pc.copies).includes('RENTING')));
    if (live.every((n) => n.topology().version === v && settled(n) && n.isReady(v))) return;
    if (Date.now() > deadline) {
      const tasks = live.map((n) => ({ node: n.selfId, v: n.topology().version, tasks: n.demander.list().map((x) => `${x.partition}:${x.phase}:${x.error ?? ''}`) }));
      throw new Error(`not rebalanced in ${limitMs} ms: ${JSON.stringify(tasks)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Every partition has only OWNING copies on live nodes, and all copies of a partition have one digest. */
export async function checkCopies(c: TestNodes): Promise<void> {
  const t = c.live()[0]!.topology();
  const live = new Set(c.live().map((n) => n.selfId));
  for (const pc of t.partitions[CACHE]!) {
    for (const [node, state] of Object.entries(pc.copies)) {
      assert.equal(state, 'OWNING');
      assert.ok(live.has(node), `copy on ${node}`);
    }
  }
  const d = (await c.call('digests', { cache: CACHE })) as { partitions: Array<{ partition: number; copies: Record<string, { digest: string; state: string }> }>; unreachable: string[] };
  assert.deepEqual(d.unreachable, []);
  for (const p of d.partitions) {
    const expectCopies = Object.keys(t.partitions[CACHE]![p.partition]!.copies).sort();
    assert.deepEqual(Object.keys(p.copies).sort(), expectCopies, `copies of partition ${p.partition}`);
    const digests = new Set(Object.values(p.copies).map((x) => x.digest));
    assert.equal(digests.size, 1, `partition ${p.partition}: ${JSON.stringify(p.copies)}`);
  }
}

/** Every acknowledged value reads back; index queries return exactly the keys with that value. */
export async function checkReadsAndIndex(c: TestNodes, base: Map<string, { city: string }>, ...loads: AckedLoad[]): Promise<void> {
  const expect = new Map<string, { city: string } | null>([...base, ...loads.flatMap((l) => [...l.acked])]);
  // A key whose last write was not acknowledged may hold either value: not checked.
  const uncertain = (k: string) => !expect.has(k) && loads.some((l) => l.attempted.has(k));
  const node = c.live()[0]!;
  for (const [key, v] of expect) {
    const r = (await node.writes.clientRead(CACHE, key)) as { found: boolean; value?: { city: string } };
    if (v === null) assert.equal(r.found, false, key);
    else {
      assert.equal(r.found, true, key);
      assert.equal(r.value!.city, v.city, key);
    }
  }
  const cities = new Set([...expect.values()].filter((v): v is { city: string } => v !== null).map((v) => v.city));
  for (const city of cities) {
    const res = (await c.call('query', { cache: CACHE, field: FIELD, value: city })) as { keys: string[] };
    const known = [...expect].filter(([, v]) => v?.city === city).map(([k]) => k);
    assert.deepEqual(res.keys.filter((k) => !uncertain(k)).sort(), known.sort(), `query ${city}`);
  }
}

/** Names left in every live node's tmp/rebalance directory. */
export async function rebalanceLeftovers(c: TestNodes): Promise<string[]> {
  const out: string[] = [];
  for (const n of c.live()) {
    try {
      for (const f of await fs.readdir(n.demander.dir)) out.push(`${n.selfId}/${f}`);
    } catch {
      // no directory: nothing left
    }
  }
  return out;
}

/**
 * Files left under every live node's `tmp/` (demander temp files and WALs, supplier deltas), after
 * giving asynchronous snapshot releases up to `limitMs` to land.
 */
export async function tmpFilesSettled(c: TestNodes, limitMs = 10_000): Promise<string[]> {
  const until = Date.now() + limitMs;
  for (;;) {
    const left: string[] = [];
    for (const n of c.live()) left.push(...(await listTree(path.join(n.config.dataDir, 'tmp'))).map((f) => `${n.selfId}/${f}`));
    if (left.length === 0 || Date.now() > until) return left;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Every file (not directory) under `dir`, relative. */
async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return out;
  }
  for (const name of names) {
    const p = path.join(dir, name);
    if ((await fs.stat(p)).isDirectory()) out.push(...(await listTree(p)).map((x) => `${name}/${x}`));
    else out.push(name);
  }
  return out;
}
