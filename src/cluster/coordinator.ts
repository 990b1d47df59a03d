/**
 * The coordinator: the oldest live node decides every topology change.
 *
 * Changes (a node joins or dies, a copy finished rebalancing or was evicted, a cache is created
 * or dropped) are applied one at a time to a copy of the current topology; the partition map is
 * recomputed (topology.ts), the version bumped, and the result published: saved, applied
 * locally and broadcast to every node.
 *
 * Readiness barrier: a node acknowledges version V once it has switched to V and finished every
 * write it started as a primary under an older version. When every live node has acknowledged
 * (or topologyAckTimeoutMs passed), the coordinator broadcasts `topologyReady V`. Primaries assign
 * counters and demanders start rebalancing only under a ready topology, so a new primary never
 * hands out a counter the old one is still using, and a supplier's data contains every update
 * started before the demander's copy became MOVING.
 *
 * Failure detection: the coordinator keeps a connection to every node; when the last one to a
 * node drops, it re-dials for failureTimeoutMs and removes the node if it cannot reach it.
 */
import type { NodeConfig } from '../config.js';
import { ErrorCode, ptnError } from '../errors.js';
import type { Logger } from '../util/log.js';
import type { CacheDef } from '../store/cache-registry.js';
import { checkCacheDef } from '../store/cache-registry.js';
import type { PeerPool } from './peers.js';
import { computePartitionMap, markEvicted, markOwning, type Topology, type TopologyNode } from './topology.js';

/** What the coordinator needs from its node. */
export interface CoordinatorHost {
  readonly selfId: string;
  readonly config: NodeConfig;
  readonly log: Logger;
  readonly peers: PeerPool;
  topology(): Topology;
  /** Applies a topology locally (switch, save, local actions); resolves after the local ack. */
  applyTopology(t: Topology): Promise<void>;
  /** Marks a version ready locally. */
  markReady(version: number): void;
}

type Change = (t: Topology, newCaches: Set<string>) => void;

export class Coordinator {
  private chain: Promise<unknown> = Promise.resolve();
  /** Published versions not ready yet → the nodes that must acknowledge them. */
  private readonly acks = new Map<number, string[]>();
  /** Highest version each node has acknowledged (acknowledging V covers every older version). */
  private readonly acked = new Map<string, number>();
  /** Copy-state changes reported by nodes, applied together in one topology change. */
  private pendingMarks: Array<{ apply: (t: Topology) => void; resolve: () => void; reject: (e: unknown) => void }> = [];
  private marksScheduled = false;
  private readonly readyWaiters = new Map<number, Array<() => void>>();
  private readonly ackTimers = new Map<number, NodeJS.Timeout>();
  private readonly failing = new Map<string, Promise<void>>();
  /** Joins seen per node id: a failure handling that began before a (re)join must not remove it. */
  private readonly joins = new Map<string, number>();
  private readyVersion = 0;
  private closed = false;
  /** Partitions that lost every OWNING copy, as reported by recomputations. */
  readonly lostPartitions: string[] = [];

  constructor(private readonly host: CoordinatorHost) {}

  /** Serializes one change, publishes the new topology and (unless told not to) waits until it is ready. */
  change(fn: Change, waitReady = true): Promise<Topology> {
    if (this.closed) return Promise.reject(ptnError(ErrorCode.ERR_CLOSED, 'coordinator closed'));
    const run = async () => {
      if (this.closed) throw ptnError(ErrorCode.ERR_CLOSED, 'coordinator closed');
      const t = this.next(fn);
      await this.publish(t);
      return t;
    };
    const p = this.chain.then(run, run);
    this.chain = p.catch(() => undefined);
    return p.then(async (t) => {
      if (waitReady) await this.waitReady(t.version);
      return t;
    });
  }

  /** Queues a copy-state change; every change queued in the same tick shares one topology version. */
  private mark(apply: (t: Topology) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pendingMarks.push({ apply, resolve, reject });
      if (this.marksScheduled) return;
      this.marksScheduled = true;
      setTimeout(() => {
        this.marksScheduled = false;
        const batch = this.pendingMarks;
        this.pendingMarks = [];
        this.change((t) => {
          for (const m of batch) m.apply(t);
        }, false).then(
          () => batch.forEach((m) => m.resolve()),
          (err) => batch.forEach((m) => m.reject(err)),
        );
      }, 10);
    });
  }

  private next(fn: Change): Topology {
    const t = structuredClone(this.host.topology());
    const newCaches = new Set<string>();
    fn(t, newCaches);
    const { partitions, lost } = computePartitionMap(t.partitions, t.nodes, t.caches, newCaches);
    for (const l of lost) {
      this.lostPartitions.push(l);
      this.host.log.error({ partition: l }, 'partition lost every OWNING copy; it waits for one of its last owners to return');
    }
    t.partitions = partitions;
    t.version++;
    t.coordinator = this.host.selfId;
    return t;
  }

  private async publish(t: Topology): Promise<void> {
    this.acks.set(t.version, t.nodes.map((n) => n.id));
    const timer = setTimeout(() => {
      const missing = t.nodes.map((n) => n.id).filter((id) => (this.acked.get(id) ?? 0) < t.version);
      this.host.log.warn({ version: t.version, missing }, 'topology ready without every ack');
      this.ready(t.version);
    }, this.host.config.cluster.topologyAckTimeoutMs);
    timer.unref();
    this.ackTimers.set(t.version, timer);
    for (const n of t.nodes) {
      if (n.id !== this.host.selfId) void this.host.peers.notify(n.id, 'topology', { topology: t });
    }
    await this.host.applyTopology(t);
    this.onAck(this.host.selfId, t.version);
  }

  /** A node switched to `version` (and so past every older one). */
  onAck(nodeId: string, version: number): void {
    if ((this.acked.get(nodeId) ?? 0) < version) this.acked.set(nodeId, version);
    let readyUpTo = 0;
    for (const [v, nodes] of this.acks) {
      if (v > readyUpTo && nodes.every((n) => (this.acked.get(n) ?? 0) >= v)) readyUpTo = v;
    }
    if (readyUpTo > 0) this.ready(readyUpTo);
  }

  private ready(version: number): void {
    if (version <= this.readyVersion) return;
    this.readyVersion = version;
    for (const [v, timer] of this.ackTimers) {
      if (v <= version) {
        clearTimeout(timer);
        this.ackTimers.delete(v);
        this.acks.delete(v);
      }
    }
    this.host.markReady(version);
    for (const n of this.host.topology().nodes) {
      if (n.id !== this.host.selfId) void this.host.peers.notify(n.id, 'topologyReady', { version });
    }
    for (const [v, ws] of this.readyWaiters) {
      if (v <= version) {
        this.readyWaiters.delete(v);
        for (const w of ws) w();
      }
    }
  }

  private waitReady(version: number): Promise<void> {
    if (version <= this.readyVersion || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const ws = this.readyWaiters.get(version) ?? [];
      ws.push(resolve);
      this.readyWaiters.set(version, ws);
    });
  }

  // ------------------------------------------------------------- changes

  /**
   * A node joins, or a known node comes back. A returning node's OWNING copies may have missed
   * updates while it was away: where another OWNING copy exists they become MOVING (they catch up);
   * where it holds the only one, it stays OWNING (nothing better exists). Its RENTING copies go.
   */
  join(node: Omit<TopologyNode, 'order'>): Promise<Topology> {
    this.joins.set(node.id, (this.joins.get(node.id) ?? 0) + 1);
    return this.change((t) => {
      const known = t.nodes.find((n) => n.id === node.id);
      if (!known) {
        const order = Math.max(0, ...t.nodes.map((n) => n.order)) + 1;
        t.nodes.push({ ...node, order });
        return;
      }
      known.address = node.address;
      known.adminAddress = node.adminAddress;
      for (const parts of Object.values(t.partitions)) {
        for (const pc of parts) {
          const state = pc.copies[node.id];
          if (state === 'RENTING') delete pc.copies[node.id];
          if (state !== 'OWNING') continue;
          const others = Object.keys(pc.copies).some((n) => n !== node.id && pc.copies[n] === 'OWNING');
          if (others) {
            pc.copies[node.id] = 'MOVING';
            if (pc.primary === node.id) pc.primary = undefined;
          }
        }
      }
    });
  }

  /** A node is gone (failed or left). */
  remove(nodeId: string): Promise<Topology> {
    return this.change((t) => {
      t.nodes = t.nodes.filter((n) => n.id !== nodeId);
    });
  }

  /** A MOVING copy finished its rebalance (resolves once the change is published). */
  partitionOwning(cacheName: string, partition: number, nodeId: string): Promise<void> {
    return this.mark((t) => {
      const parts = t.partitions[cacheName];
      if (parts?.[partition]) parts[partition] = markOwning(parts[partition]!, nodeId);
    });
  }

  /** A RENTING copy was deleted by its node (resolves once the change is published). */
  partitionEvicted(cacheName: string, partition: number, nodeId: string): Promise<void> {
    return this.mark((t) => {
      const parts = t.partitions[cacheName];
      if (parts?.[partition]) parts[partition] = markEvicted(parts[partition]!, nodeId);
    });
  }

  /** Creates a cache cluster-wide; resolves once every node has it. */
  async createCache(input: { name: string; partitions?: number; backups?: number; indexFields?: string[] }): Promise<CacheDef> {
    let def: CacheDef | undefined;
    await this.change((t, newCaches) => {
      if (t.caches.some((c) => c.name === input.name)) {
        throw ptnError(ErrorCode.ERR_CACHE_EXISTS, `cache ${JSON.stringify(input.name)} already exists`);
      }
      def = checkCacheDef({
        name: input.name,
        cacheId: Math.max(t.cacheIdMax ?? 0, ...t.caches.map((c) => c.cacheId)) + 1,
        partitions: input.partitions ?? 64,
        backups: input.backups ?? 1,
        indexFields: input.indexFields ?? [],
      });
      t.cacheIdMax = def.cacheId;
      t.caches.push(def);
      newCaches.add(def.name);
    });
    return def!;
  }

  /** Drops a cache cluster-wide. */
  async dropCache(name: string): Promise<void> {
    await this.change((t) => {
      if (!t.caches.some((c) => c.name === name)) throw ptnError(ErrorCode.ERR_CACHE_NOT_FOUND, `no cache named ${JSON.stringify(name)}`);
      t.caches = t.caches.filter((c) => c.name !== name);
      delete t.partitions[name];
    });
  }

  // ------------------------------------------------------------- failure detection

  /** The last connection to a node dropped: re-dial for failureTimeoutMs, then remove it. */
  nodeDown(nodeId: string): void {
    if (this.closed || nodeId === this.host.selfId || this.failing.has(nodeId)) return;
    if (!this.host.topology().nodes.some((n) => n.id === nodeId)) return;
    const joinsAtDown = this.joins.get(nodeId) ?? 0;
    const p = (async () => {
      const deadline = Date.now() + this.host.config.net.failureTimeoutMs;
      while (!this.closed && Date.now() < deadline) {
        try {
          await this.host.peers.get(nodeId, 0);
          return; // reachable again
        } catch {
          await new Promise((r) => setTimeout(r, Math.min(200, this.host.config.net.heartbeatIntervalMs)));
        }
      }
      if (this.closed || !this.host.topology().nodes.some((n) => n.id === nodeId)) return;
      // Restarted and joined again while we re-dialled (its new process may not have answered the
      // dial in time): that node is alive, and removing it now would leave it outside for good.
      if ((this.joins.get(nodeId) ?? 0) !== joinsAtDown) return;
      this.host.log.warn({ nodeId }, 'node failed; removing it from the topology');
      await this.remove(nodeId);
    })()
      .catch((err) => this.host.log.error({ err, nodeId }, 'failure handling failed'))
      .finally(() => this.failing.delete(nodeId));
    this.failing.set(nodeId, p);
  }

  /** Makes sure there is a connection to every node (so drops are noticed). */
  async watchAll(): Promise<void> {
    for (const n of this.host.topology().nodes) {
      if (n.id === this.host.selfId || this.host.peers.isConnected(n.id)) continue;
      this.nodeDown(n.id);
    }
  }

  close(): void {
    this.closed = true;
    for (const t of this.ackTimers.values()) clearTimeout(t);
    this.ackTimers.clear();
    for (const ws of this.readyWaiters.values()) for (const w of ws) w();
    this.readyWaiters.clear();
    for (const m of this.pendingMarks.splice(0)) m.reject(ptnError(ErrorCode.ERR_CLOSED, 'coordinator closed'));
  }
}
