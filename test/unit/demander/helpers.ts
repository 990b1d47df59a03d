// Shared set-up for the demander tests: real Stores in temp dirs, the REAL supplier (src/supplier/)
// behind an in-memory link (no sockets; interceptors cut, corrupt or count requests), and the
// demander manager on a fake host. Everything is closed in `t.after`, also when a test fails.
import { EventEmitter } from 'node:events';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { defaultConfig, type NodeConfig } from '../../../src/config.js';
import { ErrorCode, ptnError } from '../../../src/errors.js';
import type { Body, Handler } from '../../../src/net/connection.js';
import { PreparedFrame } from '../../../src/net/frames.js';
import { Store, type Update } from '../../../src/store/store.js';
import type { Topology, CopyState } from '../../../src/cluster/topology.js';
import { encodeUpdate } from '../../../src/cluster/update-codec.js';
import { registerSupplierApi, type Supplier } from '../../../src/supplier/supplier.js';
import { silentLogger } from '../../../src/util/log.js';
import type { FileLayer } from '../../../src/util/file-layer.js';
import { DemanderManager, type DemanderHooks } from '../../../src/demander/manager.js';
import type { DemanderHost, FullPullResult } from '../../../src/demander/host.js';
import type { SupplierLink } from '../../../src/demander/file-receiver.js';

export const CACHE = 'c';
export const CACHE_ID = 7;
export const ME = 'me';
export const CLUSTER = 'demander-ut';

/** Config of a test store; `overrides` go through the schema. */
export function testConfig(dataDir: string, overrides: Record<string, unknown> = {}): NodeConfig {
  const o = overrides as { storage?: object; wal?: object; rebalance?: object; net?: object };
  return defaultConfig({
    ...overrides,
    nodeId: 'x',
    clusterId: CLUSTER,
    dataDir,
    storage: { pageCacheBytesMax: 16 << 20, checkpointIntervalMs: 3_600_000, ...o.storage },
    wal: { durability: 'background', flushIntervalMs: 2, ...o.wal },
    rebalance: { chunkBytes: 65536, fileMinBytes: 0, diskSpaceMarginBytes: 0, chunkWindow: 4, resumeRetries: 3, ...o.rebalance },
  });
}

async function mkTemp(t: TestContext): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ptn-'));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A supplier node: a real Store and the real Supplier, addressed through the world's topology. */
export class SupplierNode extends EventEmitter {
  readonly handlers = new Map<string, Handler>();
  readonly log = silentLogger;
  supplier!: Supplier;
  constructor(
    readonly selfId: string,
    readonly config: NodeConfig,
    readonly store: Store,
    private readonly world: World,
  ) {
    super();
  }
  topology(): Topology {
    return this.world.topo;
  }
}

/** An in-memory connection to a supplier's handlers; close() rejects what is in flight. */
export class MemLink implements SupplierLink {
  isOpen = true;
  private readonly pending = new Set<(err: Error) => void>();
  constructor(
    private readonly world: World,
    readonly to: string,
  ) {}

  request(method: string, body: Body): Promise<Body> {
    if (!this.isOpen) return Promise.reject(ptnError(ErrorCode.ERR_CONNECTION_CLOSED, 'link closed'));
    return new Promise<Body>((resolve, reject) => {
      const fail = (err: Error) => reject(err);
      this.pending.add(fail);
      (async () => {
        await Promise.resolve();
        // Like a socket: a request not yet written when the link closes never reaches the peer.
        if (!this.isOpen) throw ptnError(ErrorCode.ERR_CONNECTION_CLOSED, 'link closed before the request was sent');
        const node = this.world.suppliers.get(this.to);
        if (!node || this.world.down.has(this.to)) throw ptnError(ErrorCode.ERR_CONNECTION_CLOSED, `${this.to} is down`);
        this.world.onRequest?.(method, body as Record<string, unknown>, this);
        const h = node.handlers.get(method);
        if (!h) throw ptnError(ErrorCode.ERR_UNKNOWN_METHOD, `no handler ${method}`);
        let res = (await h(body, undefined as never)) as Body | PreparedFrame;
        if (res instanceof PreparedFrame) res = Buffer.from(res.body);
        return this.world.onResponse ? this.world.onResponse(method, body as Record<string, unknown>, res as Body, this) : (res as Body);
      })().then(
        (r) => {
          if (this.pending.delete(fail)) resolve(r);
        },
        (e) => {
          if (this.pending.delete(fail)) reject(e);
        },
      );
    });
  }

  async close(): Promise<void> {
    if (!this.isOpen) return;
    this.isOpen = false;
    const err = ptnError(ErrorCode.ERR_CONNECTION_CLOSED, 'link closed');
    for (const f of this.pending) f(err);
    this.pending.clear();
  }
}

/** The demander node's host: a real Store, the world's topology and links. */
export class FakeDemanderHost implements DemanderHost {
  readonly selfId = ME;
  readonly log = silentLogger;
  constructor(
    public config: NodeConfig,
    public store: Store,
    private readonly world: World,
  ) {}
  topology(): Topology {
    return this.world.topo;
  }
  async waitFor(): Promise<void> {}
  async toCoordinator(method: string, body: Body): Promise<Body> {
    this.world.coordinatorCalls.push({ method, body: body as Record<string, unknown> });
    return {};
  }
  async connect(nodeId: string): Promise<SupplierLink> {
    if (this.world.down.has(nodeId)) throw ptnError(ErrorCode.ERR_CONNECTION_CLOSED, `${nodeId} is down`);
    const l = new MemLink(this.world, nodeId);
    this.world.links.push(l);
    return l;
  }
  async request(nodeId: string, method: string, body: Body): Promise<Body> {
    return new MemLink(this.world, nodeId).request(method, body);
  }
  /** Entry by entry straight from the supplier's store (what scanBatch serves). */
  async pullFull(supplier: string, cacheId: number, partition: number, signal: AbortSignal, onBatch: (b: number, e: number) => void): Promise<FullPullResult> {
    const s = this.world.suppliers.get(supplier)!.store;
    const ps = s.partitionOrUndefined(cacheId, partition);
    if (!ps) return {};
    const counter = { lwm: ps.counter.lwm, gaps: ps.counter.gaps() };
    for await (const e of ps.scan({ includeTombstones: true })) {
      if (signal.aborted) return {};
      const u: Update = e.tombstone
        ? { cacheId, partition, counter: e.counter, key: e.key, op: 'remove' }
        : { cacheId, partition, counter: e.counter, key: e.key, op: 'put', valueKind: e.valueKind, value: e.value };
      await this.store.apply(u);
      onBatch(e.key.length + e.value.length, 1);
    }
    return { counter };
  }
}

export interface WorldOptions {
  suppliers?: string[];
  partitions?: number;
  overrides?: Record<string, unknown>;
  hooks?: DemanderHooks;
  persistEveryBytes?: number;
  fileLayer?: FileLayer;
}

/** Suppliers + one demander + the topology they share. */
export class World {
  topo!: Topology;
  readonly suppliers = new Map<string, SupplierNode>();
  readonly down = new Set<string>();
  readonly links: MemLink[] = [];
  readonly coordinatorCalls: Array<{ method: string; body: Record<string, unknown> }> = [];
  onRequest?: (method: string, body: Record<string, unknown>, link: MemLink) => void;
  onResponse?: (method: string, body: Record<string, unknown>, res: Body, link: MemLink) => Body;
  host!: FakeDemanderHost;
  manager!: DemanderManager;
  demDir!: string;
  /** Replicate to the demander (false until it starts receiving: the data existed before). */
  deliverToDemander = false;
  constructor(
    private readonly t: TestContext,
    readonly opts: WorldOptions,
  ) {}

  get partitions(): number {
    return this.opts.partitions ?? 2;
  }

  /** The primary (first supplier) assigns counters; every write also reaches the demander. */
  get primary(): SupplierNode {
    return this.suppliers.get(this.opts.suppliers?.[0] ?? 'sup')!;
  }

  async write(partition: number, key: string, value: unknown): Promise<Update> {
    const u: Update = { cacheId: CACHE_ID, partition, counter: 0, key, op: 'put', valueKind: 1, value: Buffer.from(JSON.stringify(value)) };
    return this.replicate(u);
  }

  async remove(partition: number, key: string): Promise<Update> {
    return this.replicate({ cacheId: CACHE_ID, partition, counter: 0, key, op: 'remove' });
  }

  /** Primary apply (assigning the counter), then every other supplier, then the demander's write path. */
  private async replicate(u: Update): Promise<Update> {
    await this.primary.store.apply(u, { assign: true });
    for (const s of this.suppliers.values()) if (s !== this.primary) await s.store.apply({ ...u });
    if (this.deliverToDemander) await this.deliver(u);
    return u;
  }

  /** What WritePath.onReplicate does on the demander for a MOVING copy. */
  async deliver(u: Update): Promise<void> {
    if (!(await this.manager.offer(u, encodeUpdate(u)))) await this.host.store.apply({ ...u });
  }

  /** Starts receiving `partition` as applyTopology would. */
  async startMoving(partition: number): Promise<void> {
    this.deliverToDemander = true;
    await this.host.store.ensurePartition(CACHE_ID, partition);
    await this.manager.onMoving({ name: CACHE, cacheId: CACHE_ID }, partition, this.topo.version);
    await this.manager.onTopology(this.topo);
  }

  /** Sets the demander's copy state of a partition (a new topology version). */
  setCopy(partition: number, node: string, state: CopyState | undefined): void {
    const t = structuredClone(this.topo);
    const pc = t.partitions[CACHE]![partition]!;
    if (state) pc.copies[node] = state;
    else delete pc.copies[node];
    t.version++;
    this.topo = t;
    for (const s of this.suppliers.values()) s.emit('topology', t);
  }

  reportedOwning(partition: number): boolean {
    return this.coordinatorCalls.some((c) => c.method === 'partitionOwning' && c.body.partition === partition);
  }

  /** Resolves when the partition was reported OWNING and its task left nothing behind. */
  async waitOwning(partition: number, limitMs = 20_000): Promise<void> {
    await waitUntil(() => this.reportedOwning(partition), `partition ${partition} OWNING`, limitMs);
    await waitUntil(() => this.manager.list().find((x) => x.partition === partition)?.phase === 'OWNING' && this.manager.metrics().running === 0, 'task settled', limitMs);
  }

  async digests(partition: number): Promise<{ supplier: string; demander: string; entries: number }> {
    const s = await this.primary.store.digest(CACHE_ID, partition);
    const d = await this.host.store.digest(CACHE_ID, partition);
    return { supplier: s.digest, demander: d.digest, entries: s.entries };
  }

  /** Names left in the demander's tmp/rebalance directory. */
  async leftovers(): Promise<string[]> {
    try {
      return (await fs.readdir(this.manager.dir)).sort();
    } catch {
      return [];
    }
  }

  /** Copies the demander's data directory as it is now: the disk image of a crash at this instant. */
  async crashImage(): Promise<string> {
    const dir = await mkTemp(this.t);
    await fs.cp(this.demDir, dir, { recursive: true });
    return dir;
  }

  /** Stops the demander (no checkpoint: like a crash) and starts a new one on `dataDir`. */
  async restartDemander(dataDir: string, hooks: DemanderHooks = {}): Promise<void> {
    await this.manager.close();
    await this.host.store.close({ checkpoint: false });
    const config = testConfig(dataDir, this.opts.overrides);
    this.host.config = config;
    this.host.store = await Store.open({ config, periodicCheckpoints: false });
    this.manager = new DemanderManager(this.host, { hooks, persistEveryBytes: this.opts.persistEveryBytes, fileLayer: this.opts.fileLayer });
    await this.manager.open();
    this.demDir = dataDir;
  }

  /** Creates stores, supplier(s), the demander and the topology (demander MOVING everywhere). */
  async init(): Promise<this> {
    const ids = this.opts.suppliers ?? ['sup'];
    for (const id of ids) {
      const dir = await mkTemp(this.t);
      const config = testConfig(dir, this.opts.overrides);
      const store = await Store.open({ config, periodicCheckpoints: false });
      await store.createCache({ name: CACHE, cacheId: CACHE_ID, partitions: this.partitions, backups: ids.length, indexFields: ['city'] });
      const node = new SupplierNode(id, config, store, this);
      node.supplier = registerSupplierApi(node);
      this.suppliers.set(id, node);
    }
    this.demDir = await mkTemp(this.t);
    const config = testConfig(this.demDir, this.opts.overrides);
    const store = await Store.open({ config, periodicCheckpoints: false });
    await store.createCache({ name: CACHE, cacheId: CACHE_ID, partitions: this.partitions, backups: ids.length, indexFields: ['city'] });
    const copies: Record<string, CopyState> = { [ME]: 'MOVING' };
    for (const id of ids) copies[id] = 'OWNING';
    this.topo = {
      version: 2,
      clusterId: CLUSTER,
      coordinator: ids[0]!,
      nodes: [...ids, ME].map((id, i) => ({ id, address: `${id}:1`, adminAddress: '', order: i + 1 })),
      caches: [{ name: CACHE, cacheId: CACHE_ID, partitions: this.partitions, backups: ids.length, indexFields: ['city'] }],
      cacheIdMax: CACHE_ID,
      partitions: { [CACHE]: Array.from({ length: this.partitions }, () => ({ ideal: [...ids, ME], copies: { ...copies }, primary: ids[0] })) },
    };
    this.host = new FakeDemanderHost(config, store, this);
    this.manager = new DemanderManager(this.host, { hooks: this.opts.hooks, persistEveryBytes: this.opts.persistEveryBytes, fileLayer: this.opts.fileLayer });
    await this.manager.open();
    this.t.after(async () => {
      await this.manager.close();
      await this.host.store.close({ checkpoint: false }).catch(() => undefined);
      for (const s of this.suppliers.values()) {
        await s.supplier.close();
        await s.store.close({ checkpoint: false });
      }
    });
    return this;
  }
}

/** A world with the demander MOVING on every partition (not started yet). */
export async function makeWorld(t: TestContext, opts: WorldOptions = {}): Promise<World> {
  return new World(t, opts).init();
}

/** Loads `n` JSON entries `{city, pad}` into a partition through the primary (and the demander once it receives). */
export async function load(w: World, partition: number, n: number, prefix = 'k', padBytes = 200): Promise<void> {
  const pad = 'x'.repeat(padBytes);
  for (let i = 0; i < n; i += 64) {
    const ps: Array<Promise<Update>> = [];
    for (let j = i; j < Math.min(n, i + 64); j++) ps.push(w.write(partition, `${prefix}${j}`, { city: `city${j % 5}`, pad }));
    await Promise.all(ps);
  }
}

/** Polls until `fn()` is truthy; a broken test fails after `limitMs` instead of hanging. */
export async function waitUntil(fn: () => boolean, what: string, limitMs = 10_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
