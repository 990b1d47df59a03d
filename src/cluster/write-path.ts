/**
 * The write path: routing, primary writes and replication.
 *
 *   client → any node ──forward──▶ primary: wait until the topology is ready, assign the counter,
 *   log + apply locally, replicate to every other OWNING and MOVING copy ──▶ backups apply
 *   (apply-if-newer) ──▶ in full-sync mode the primary acknowledges after all of them; in
 *   primary-sync mode right after its own apply (replication continues in the background).
 *
 * Replication retries until the copy acknowledges or leaves the topology (failure detection
 * removes a dead node within failureTimeoutMs), so an acknowledged full-sync write is on every
 * live copy. Each replicated update carries the primary's topology version; a backup that is
 * behind waits until it has applied that version before it applies the update, so a copy that
 * just became MOVING has already dropped its stale data.
 *
 * Writes in flight are counted per topology version; a node acknowledges version V only after
 * the ones started under older versions finished (the coordinator's readiness barrier).
 */
import { ErrorCode, isPtnError, ptnError } from '../errors.js';
import type { Update } from '../store/store.js';
import type { Body, Connection } from '../net/connection.js';
import { partitionOfKey } from './affinity.js';
import { decodeUpdate, encodeUpdate } from './update-codec.js';
import { replicaTargets, type Topology } from './topology.js';
import type { ClusterNode } from './node.js';

const RETRYABLE = new Set<string>([
  ErrorCode.ERR_PARTITION_NOT_OWNED,
  ErrorCode.ERR_CONNECTION_CLOSED,
  ErrorCode.ERR_REQUEST_TIMEOUT,
  ErrorCode.ERR_HANDSHAKE_TIMEOUT,
  ErrorCode.ERR_PEER_BUSY,
]);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface WriteResult {
  counter: number;
  partition: number;
}

export class WritePath {
  private readonly inflight = new Map<number, number>();
  private drainWaiters: Array<{ version: number; resolve: () => void }> = [];
  private closed = false;
  /** Counters for metrics and status. */
  readonly counts = { primaryWrites: 0, forwarded: 0, replicated: 0, replicaApplied: 0, replicaLogged: 0, retries: 0 };

  constructor(private readonly node: ClusterNode) {}

  // ---------------------------------------------------------------- routing

  /** A client write to any node: routed to the partition's primary, retried while the topology changes. */
  async clientWrite(cacheName: string, key: string, op: 'put' | 'remove', valueKind = 0, value?: Buffer): Promise<WriteResult> {
    const deadline = Date.now() + this.node.config.cluster.writeRetryMs;
    this.node.pacer?.noteForeground(); // rebalance steps yield while writes go on
    for (let attempt = 0; ; attempt++) {
      const t = this.node.topology();
      const def = t.caches.find((c) => c.name === cacheName);
      if (!def) throw ptnError(ErrorCode.ERR_CACHE_NOT_FOUND, `no cache named ${JSON.stringify(cacheName)}`);
      const partition = partitionOfKey(key, def.partitions);
      const u: Update = { cacheId: def.cacheId, partition, counter: 1, key, op, valueKind, value: op === 'put' ? value : undefined };
      const primary = t.partitions[cacheName]?.[partition]?.primary;
      try {
        if (!primary) throw ptnError(ErrorCode.ERR_PARTITION_NOT_OWNED, `partition ${partition} of ${cacheName} has no primary`);
        if (primary === this.node.selfId) return await this.primaryWrite(u);
        this.counts.forwarded++;
        // The counter field of a forwarded write is a placeholder: the primary assigns the real one.
        return (await this.node.peers.request(primary, 'primaryWrite', encodeUpdate(u))) as unknown as WriteResult;
      } catch (err) {
        if (!isPtnError(err) || !RETRYABLE.has(err.code) || Date.now() > deadline || this.closed) throw err;
        this.counts.retries++;
        await sleep(Math.min(50 * 2 ** Math.min(attempt, 4), 500));
      }
    }
  }

  /** A client read, served by the partition's primary. */
  async clientRead(cacheName: string, key: string): Promise<Body> {
    const deadline = Date.now() + this.node.config.cluster.writeRetryMs;
    for (let attempt = 0; ; attempt++) {
      const t = this.node.topology();
      const def = t.caches.find((c) => c.name === cacheName);
      if (!def) throw ptnError(ErrorCode.ERR_CACHE_NOT_FOUND, `no cache named ${JSON.stringify(cacheName)}`);
      const partition = partitionOfKey(key, def.partitions);
      const primary = t.partitions[cacheName]?.[partition]?.primary;
      try {
        if (!primary) throw ptnError(ErrorCode.ERR_PARTITION_NOT_OWNED, `partition ${partition} of ${cacheName} has no primary`);
        if (primary === this.node.selfId) return await this.localRead(cacheName, key);
        return await this.node.peers.request(primary, 'read', { cache: cacheName, key });
      } catch (err) {
        if (!isPtnError(err) || !RETRYABLE.has(err.code) || Date.now() > deadline || this.closed) throw err;
        await sleep(Math.min(50 * 2 ** Math.min(attempt, 4), 500));
      }
    }
  }

  /** Reads from the local OWNING copy. */
  async localRead(cacheName: string, key: string): Promise<Body> {
    const t = this.node.topology();
    const def = t.caches.find((c) => c.name === cacheName);
    if (!def) throw ptnError(ErrorCode.ERR_CACHE_NOT_FOUND, `no cache named ${JSON.stringify(cacheName)}`);
    const partition = partitionOfKey(key, def.partitions);
    if (t.partitions[cacheName]?.[partition]?.copies[this.node.selfId] !== 'OWNING') {
      throw ptnError(ErrorCode.ERR_PARTITION_NOT_OWNED, `partition ${partition} of ${cacheName} is not OWNING here`);
    }
    const r = await this.node.store.get(cacheName, key);
    if (!r) return { found: false };
    return {
      found: true,
      counter: r.counter,
      valueKind: r.valueKind === 1 ? 'json' : 'bytes',
      value: r.valueKind === 1 ? JSON.parse(r.value.toString('utf8')) : r.value.toString('base64'),
    };
  }

  // ---------------------------------------------------------------- primary

  /** This node is the primary: assign, apply, replicate. */
  async primaryWrite(u: Update): Promise<WriteResult> {
    if (this.closed) throw ptnError(ErrorCode.ERR_CLOSED, 'node is stopping');
    this.node.pacer?.noteForeground(); // also a write forwarded here
    let t = this.node.topology();
    if (!this.node.isReady(t.version)) {
      await this.node.waitFor(t.version, true, this.node.config.cluster.writeRetryMs);
      t = this.node.topology();
    }
    const def = t.caches.find((c) => c.cacheId === u.cacheId);
    const pc = def ? t.partitions[def.name]?.[u.partition] : undefined;
    // A forwarded write names a cache the sender's topology has: a topology here without it is one
    // not yet caught up (e.g. a node that just rejoined), so the sender may retry (retryable code).
    if (!def || !pc) throw ptnError(ErrorCode.ERR_PARTITION_NOT_OWNED, `no partition ${u.partition} of cache id ${u.cacheId} here yet (topology ${t.version})`);
    if (pc.primary !== this.node.selfId) throw ptnError(ErrorCode.ERR_PARTITION_NOT_OWNED, `not the primary of ${def.name}/${u.partition}`);
    const version = t.version;
    this.enter(version);
    let background = false;
    try {
      await this.node.store.apply(u, { assign: true });
      this.counts.primaryWrites++;
      const targets = replicaTargets(pc);
      const all = Promise.all(targets.map((n) => this.replicateTo(n, def.name, u, version)));
      if (this.node.config.cluster.syncMode === 'full-sync') {
        await all;
      } else {
        background = true;
        all
          .catch((err) => this.node.log.warn({ err }, 'background replication failed'))
          .finally(() => this.exit(version));
      }
      return { counter: u.counter, partition: u.partition };
    } finally {
      if (!background) this.exit(version);
    }
  }

  private async replicateTo(nodeId: string, cacheName: string, u: Update, version: number): Promise<void> {
    const payload = Buffer.concat([Buffer.alloc(4), encodeUpdate(u)]);
    payload.writeUInt32BE(version, 0);
    const deadline = Date.now() + this.node.config.cluster.writeRetryMs + this.node.config.net.failureTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.node.peers.request(nodeId, 'replicate', payload);
        this.counts.replicated++;
        return;
      } catch (err) {
        if (isPtnError(err, ErrorCode.ERR_CACHE_NOT_FOUND)) return;
        const cur = this.node.topology();
        const state = cur.partitions[cacheName]?.[u.partition]?.copies[nodeId];
        if (state === undefined || state === 'RENTING') return; // the copy left the topology
        if (this.closed || Date.now() > deadline) throw err;
        this.counts.retries++;
        await sleep(Math.min(25 * 2 ** Math.min(attempt, 4), 400));
      }
    }
  }

  // ---------------------------------------------------------------- backup

  /** A replicated update arrives at a copy. */
  async onReplicate(payload: Buffer, from?: Connection): Promise<Body> {
    this.node.pacer?.noteForeground();
    if (payload.length < 4) throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, 'replicate: truncated');
    const version = payload.readUInt32BE(0);
    const u = decodeUpdate(payload.subarray(4));
    if (version > this.node.topology().version) await this.catchUpTopology(version, from);
    const t = this.node.topology();
    const def = t.caches.find((c) => c.cacheId === u.cacheId);
    if (!def) throw ptnError(ErrorCode.ERR_CACHE_NOT_FOUND, `no cache with id ${u.cacheId}`);
    const state = t.partitions[def.name]?.[u.partition]?.copies[this.node.selfId];
    if (state !== 'OWNING' && state !== 'MOVING') {
      throw ptnError(ErrorCode.ERR_PARTITION_NOT_OWNED, `no copy of ${def.name}/${u.partition} here (topology ${t.version})`);
    }
    // Demander: while the copy is MOVING its updates go to the partition's temporary WAL (the ack
    // follows the append) until the replay switches it to direct apply; a short fence may hold them.
    if (state === 'MOVING' && (await this.node.demander.offer(u, payload.subarray(4)))) {
      this.counts.replicaLogged++;
      return null;
    }
    await this.node.store.apply(u);
    this.counts.replicaApplied++;
    return null;
  }

  /**
   * The primary is ahead of us. The coordinator's broadcast is normally a moment away, but it may
   * sit on a socket behind many replicate requests that all wait for it (each holds one of the
   * connection's handler slots), so after a short wait the topology is asked of the primary itself:
   * the answer is a response, which no handler slot holds back.
   */
  private async catchUpTopology(version: number, from: Connection | undefined): Promise<void> {
    try {
      await this.node.waitFor(version, false, 250);
      return;
    } catch {
      // fall through: ask the sender
    }
    if (from) {
      try {
        const r = (await from.request('getTopology', {}, { timeoutMs: this.node.config.net.requestTimeoutMs })) as { topology: Topology };
        if (r.topology.version >= version) await this.node.applyTopology(r.topology);
      } catch (err) {
        this.node.log.debug({ err }, 'topology from the primary failed');
      }
    }
    await this.node.waitFor(version, false, this.node.config.cluster.writeRetryMs);
  }

  // ---------------------------------------------------------------- in-flight accounting

  private enter(version: number): void {
    this.inflight.set(version, (this.inflight.get(version) ?? 0) + 1);
  }

  private exit(version: number): void {
    const n = (this.inflight.get(version) ?? 1) - 1;
    if (n <= 0) this.inflight.delete(version);
    else this.inflight.set(version, n);
    this.wake();
  }

  private pendingBefore(version: number): number {
    let n = 0;
    for (const [v, c] of this.inflight) if (v < version) n += c;
    return n;
  }

  private wake(): void {
    this.drainWaiters = this.drainWaiters.filter((w) => {
      if (this.pendingBefore(w.version) > 0) return true;
      w.resolve();
      return false;
    });
  }

  /** Resolves when every primary write started under a version older than `version` finished. */
  drainBefore(version: number): Promise<void> {
    if (this.pendingBefore(version) === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push({ version, resolve }));
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.drainWaiters.splice(0)) w.resolve();
  }
}
