/**
 * A cluster node: one process, one WebSocket port for peers and clients, one admin HTTP port.
 *
 * Role: wires the local store to the cluster. It joins through its seeds, follows the topology
 * the coordinator publishes (and becomes the coordinator when it is the oldest live node), routes
 * client requests to the right node, replicates writes (write-path.ts), fills MOVING copies
 * (src/demander/) and deletes RENTING ones.
 *
 * Lifecycle: starting → running → stopping → stopped. `startNode` resolves once the node has
 * joined (or formed) a cluster; `close()` is idempotent and releases every socket, timer and file.
 *
 * Local reaction to a new topology (applyTopology, serialized, in version order):
 *   new cache → created locally; dropped cache → its rebalances cancelled, files removed;
 *   copy newly MOVING → local data kept (the historical path may use it), the demander's task
 *   queued and its temporary WAL opened (it starts once that topology is ready); copy RENTING →
 *   deleted, coordinator told;
 *   copy gone (MOVING cancelled, or evicted) → local data deleted;
 *   then every primary write started under an older version is awaited, and the node acks.
 */
import { EventEmitter } from 'node:events';
import { type NodeConfig, checkTestFaultsAllowed } from '../config.js';
import { ErrorCode, isPtnError, ptnError } from '../errors.js';
import { type Logger, createLogger } from '../util/log.js';
import { Store } from '../store/store.js';
import { NetServer } from '../net/server.js';
import type { Body, Connection, Handler, NetIdentity } from '../net/connection.js';
import { PeerPool } from './peers.js';
import { Coordinator } from './coordinator.js';
import { EmbeddedMetadataStore, type MetadataStore } from './metadata-store.js';
import { type Topology, type TopologyNode, initialTopology } from './topology.js';
import { WritePath } from './write-path.js';
import { FullRebalancer } from './full-rebalance.js';
import { DemanderManager, type DemanderOptions } from '../demander/manager.js';
import { clusterNodeHost } from '../demander/host.js';
import { registerClientApi } from './client-api.js';
import { registerSupplierApi, type Supplier } from '../supplier/supplier.js';
import { AdminHttp } from './admin-http.js';
import { NodeMetrics } from './metrics.js';
import { type FileLayer, realFileLayer } from '../util/file-layer.js';
import { type NodeFaults, createNodeFaults } from '../testing/index.js'; // TEST ONLY: fault injection (testFaults)
import { ForegroundPacer } from './foreground-pacer.js';

type Status = 'starting' | 'running' | 'stopping' | 'stopped';

export interface StartNodeOptions {
  log?: Logger;
  metadataStore?: MetadataStore;
  /** Demander options (tests: hooks that cut or slow a transfer, a file layer). */
  demander?: DemanderOptions;
}

export class ClusterNode extends EventEmitter {
  status: Status = 'starting';
  readonly selfId: string;
  readonly log: Logger;
  readonly handlers = new Map<string, Handler>();
  store!: Store;
  peers!: PeerPool;
  server!: NetServer;
  admin!: AdminHttp;
  metrics!: NodeMetrics;
  writes!: WritePath;
  rebalancer!: FullRebalancer;
  /** Receives the partitions MOVING to this node (src/demander/). */
  demander!: DemanderManager;
  /** Through it, rebalance work on both sides yields to the writes (foreground-pacer.ts, rebalance.yieldLagMs). */
  readonly pacer: ForegroundPacer;
  /** Serves partition snapshots and WAL history to demanders (src/supplier/). */
  supplier: Supplier | undefined;
  coordinator: Coordinator | undefined;
  /** The file layer of the store: the real one, or the test fault layer when testFaults.enabled. */
  fileLayer: FileLayer = realFileLayer;
  /** TEST ONLY: fault points and file faults (src/testing/), undefined unless testFaults.enabled. */
  testFaults: NodeFaults | undefined;
  address = '';
  adminAddress = '';
  private topo!: Topology;
  private readyVersion = 0;
  private applyChain: Promise<void> = Promise.resolve();
  private readonly meta: MetadataStore;
  private readonly versionWaiters: Array<{ version: number; ready: boolean; resolve: () => void }> = [];
  private watchTimer: NodeJS.Timeout | undefined;
  private takingOver = false;

  constructor(readonly config: NodeConfig, private readonly opts: StartNodeOptions = {}) {
    super();
    this.selfId = config.nodeId;
    this.log = opts.log ?? createLogger({ level: config.logLevel, name: config.nodeId });
    this.meta = opts.metadataStore ?? new EmbeddedMetadataStore(config.dataDir);
    this.pacer = new ForegroundPacer(() => this.config.rebalance);
    // Placeholder until the node joins: version 0, nothing assigned.
    this.topo = { ...initialTopology(config.clusterId, { id: this.selfId, address: '', adminAddress: '' }), version: 0, coordinator: '' };
  }

  // ------------------------------------------------------------------ topology access

  topology(): Topology {
    return this.topo;
  }

  isReady(version = this.topo.version): boolean {
    return this.readyVersion >= version;
  }

  /** Resolves when the node has applied topology `version` (ready too when `ready`). */
  waitFor(version: number, ready: boolean, timeoutMs: number): Promise<void> {
    const done = () => this.topo.version >= version && (!ready || this.readyVersion >= version);
    if (done() || this.status !== 'running') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const w = {
        version,
        ready,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        const i = this.versionWaiters.indexOf(w);
        if (i >= 0) this.versionWaiters.splice(i, 1);
        reject(ptnError(ErrorCode.ERR_REQUEST_TIMEOUT, `topology ${version}${ready ? ' (ready)' : ''} not reached in ${timeoutMs} ms`));
      }, timeoutMs);
      this.versionWaiters.push(w);
    });
  }

  private wakeWaiters(): void {
    for (let i = this.versionWaiters.length - 1; i >= 0; i--) {
      const w = this.versionWaiters[i]!;
      if (this.topo.version >= w.version && (!w.ready || this.readyVersion >= w.version)) {
        this.versionWaiters.splice(i, 1);
        w.resolve();
      }
    }
  }

  /** The coordinator says `version` is ready (every node switched to it). */
  markReady(version: number): void {
    if (version > this.topo.version) {
      this.pendingReady = Math.max(this.pendingReady, version);
      return;
    }
    if (version <= this.readyVersion) return;
    this.readyVersion = version;
    this.wakeWaiters();
    this.emit('ready', version);
  }

  /** A ready notice that arrived before its topology. */
  private pendingReady = 0;

  isCoordinator(): boolean {
    return this.topo.coordinator === this.selfId;
  }

  /** Sends a request to the coordinator (handled locally when this node is it). */
  async toCoordinator(method: string, body: Body): Promise<Body> {
    if (this.isCoordinator()) {
      const h = this.handlers.get(method);
      if (!h) throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, `no handler ${method}`);
      return (await h(body, undefined as unknown as Connection)) as Body;
    }
    return this.peers.request(this.topo.coordinator, method, body);
  }

  // ------------------------------------------------------------------ start

  async start(): Promise<void> {
    const { config } = this;
    this.metrics = new NodeMetrics(this);
    // TEST ONLY: with testFaults.enabled, faults().hit() points go live and storage I/O goes through the fault layer.
    this.testFaults = createNodeFaults(config.testFaults, { log: this.log.child({ part: 'faults' }) });
    this.fileLayer = this.testFaults?.fileLayer ?? realFileLayer;
    this.store = await Store.open({ config, fileLayer: this.fileLayer, log: this.log.child({ part: 'store' }) });
    // Checkpoints yield only while this node supplies a partition and receives none: the periodic
    // ones of a busy node with no rebalance keep their own pace, and on a joining node every
    // swap-in waits for one (paced, SWAPPING went from 0.4 to 3–7 s at 1M entries, and the
    // temporary WALs grew meanwhile).
    this.store.setCheckpointPace(() => (this.supplyingOnly() ? this.pacer.turn() : Promise.resolve()));
    const identity: NetIdentity = { nodeId: this.selfId, clusterId: config.clusterId, secret: config.clusterSecret, role: 'peer' };
    this.peers = new PeerPool(identity, config.net, this.handlers, this.log.child({ part: 'peers' }), (id) => this.topo?.nodes.find((n) => n.id === id)?.address);
    this.writes = new WritePath(this);
    this.rebalancer = new FullRebalancer(this);
    // Demander: resumes or removes what a crashed transfer left before the first topology arrives.
    this.demander = new DemanderManager(clusterNodeHost(this), this.opts.demander);
    await this.demander.open();
    this.registerPeerApi();
    registerClientApi(this);
    this.supplier = registerSupplierApi(this); // file rebalance, supplier side (docs/rebalance-protocol.md)
    this.server = new NetServer({
      host: config.host,
      port: config.port,
      identity,
      config: config.net,
      log: (level, msg, extra) => this.log[level === 'error' ? 'error' : level === 'warn' ? 'warn' : 'info']({ ...extra }, msg),
      onConnection: (conn) => this.peers.adopt(conn),
    });
    for (const [m, h] of this.handlers) this.server.handle(m, h);
    const bound = await this.server.listen();
    this.address = `${bound.host}:${bound.port}`;
    this.admin = new AdminHttp(this);
    this.adminAddress = await this.admin.listen(config.host, config.adminPort);
    this.peers.on('down', (id: string) => this.onPeerDown(id));
    this.status = 'running';
    await this.join();
    this.watchTimer = setInterval(() => this.watch(), Math.max(100, config.net.heartbeatIntervalMs));
    this.watchTimer.unref();
    this.log.info({ address: this.address, adminAddress: this.adminAddress, topologyVersion: this.topo.version }, 'node started');
  }

  private selfEntry(): Omit<TopologyNode, 'order'> {
    return { id: this.selfId, address: this.config.advertiseAddress || this.address, adminAddress: this.adminAddress }; // advertiseAddress: e.g. a test proxy
  }

  /** Joins through the seeds (and the nodes of the last saved topology); forms a cluster if none answers and no seed is configured. */
  private async join(): Promise<void> {
    const saved = await this.meta.load();
    const seeds = [...new Set([...this.config.seeds, ...(saved?.nodes ?? []).filter((n) => n.id !== this.selfId).map((n) => n.address)])]
      .filter((a) => a !== this.address);
    const deadline = Date.now() + this.config.cluster.joinTimeoutMs;
    let lastErr: unknown;
    while (seeds.length > 0 && Date.now() < deadline && this.status === 'running') {
      for (const seed of seeds) {
        try {
          const conn = await this.peers.dialAddress(seed, 0);
          const res = (await conn.request('join', { node: this.selfEntry() }, { timeoutMs: this.config.cluster.joinTimeoutMs })) as { topology: Topology };
          await this.applyTopology(res.topology);
          this.log.info({ seed, version: res.topology.version, coordinator: res.topology.coordinator }, 'joined the cluster');
          return;
        } catch (err) {
          lastErr = err;
          if (isPtnError(err) && ['ERR_HANDSHAKE_CLUSTER', 'ERR_HANDSHAKE_AUTH', 'ERR_PROTOCOL_VERSION'].includes(err.code)) throw err;
        }
      }
      if (this.config.seeds.length === 0 && saved) break; // our own saved peers are all gone: form the cluster again
      await new Promise((r) => setTimeout(r, 250));
    }
    if (this.config.seeds.length > 0) {
      throw ptnError(ErrorCode.ERR_CONNECTION_CLOSED, `could not join through seeds ${this.config.seeds.join(', ')}`, { cause: lastErr });
    }
    // Form a cluster: we are the only (oldest) node; keep the caches and map we knew.
    this.topo = { ...this.topo, coordinator: this.selfId, nodes: [{ ...this.selfEntry(), order: 1 }] };
    this.coordinator = new Coordinator(this);
    await this.coordinator.change((t) => {
      if (!saved) return;
      t.version = saved.version;
      t.caches = saved.caches;
      t.cacheIdMax = saved.cacheIdMax ?? 0;
      t.partitions = saved.partitions;
      const me = saved.nodes.find((n) => n.id === this.selfId);
      if (me) t.nodes[0]!.order = me.order;
    });
    this.log.info({ version: this.topo.version }, 'formed a cluster as its coordinator');
  }

  // ------------------------------------------------------------------ applying topologies

  /** Applies a topology (serialized; older or equal versions are ignored). */
  applyTopology(t: Topology): Promise<void> {
    const run = () => this.applyOne(t);
    const p = this.applyChain.then(run, run);
    this.applyChain = p.catch((err) => this.log.error({ err, version: t.version }, 'applying topology failed'));
    return p;
  }

  private async applyOne(t: Topology): Promise<void> {
    if (this.status !== 'running') return;
    const prev = this.topo;
    if (t.version <= prev.version) return;
    await this.meta.save(t);
    await this.syncCaches(t);
    await this.syncPartitions(prev, t);
    this.topo = t;
    if (t.coordinator === this.selfId && !this.coordinator) this.coordinator = new Coordinator(this);
    if (t.coordinator !== this.selfId && this.coordinator) {
      this.coordinator.close();
      this.coordinator = undefined;
    }
    this.wakeWaiters();
    if (this.pendingReady >= t.version) this.markReady(t.version);
    await this.demander.onTopology(t);
    this.emit('topology', t);
    await this.writes.drainBefore(t.version);
    if (t.coordinator !== this.selfId) void this.peers.notify(t.coordinator, 'topologyAck', { nodeId: this.selfId, version: t.version });
  }

  private async syncCaches(t: Topology): Promise<void> {
    const names = new Set(t.caches.map((c) => c.name));
    for (const def of this.store.caches()) {
      const wanted = t.caches.find((c) => c.name === def.name);
      if (!names.has(def.name) || wanted?.cacheId !== def.cacheId) {
        await this.demander.cancelCache(def.cacheId);
        await this.store.dropCache(def.name);
        this.log.info({ cache: def.name }, 'cache dropped');
      }
    }
    for (const def of t.caches) {
      if (!this.store.hasCache(def.name)) {
        await this.store.createCache({ ...def });
        this.log.info({ cache: def.name, cacheId: def.cacheId }, 'cache created');
      }
    }
  }

  private async syncPartitions(prev: Topology, t: Topology): Promise<void> {
    for (const def of t.caches) {
      const parts = t.partitions[def.name] ?? [];
      for (let p = 0; p < parts.length; p++) {
        const state = parts[p]!.copies[this.selfId];
        const before = prev.partitions[def.name]?.[p]?.copies[this.selfId];
        const have = this.store.hasPartition(def.cacheId, p);
        if (state === 'MOVING' && before !== 'MOVING') {
          // Local data is kept: the demander may catch it up from WAL history (historical path).
          // From here on its replicated updates go to the partition's temporary WAL.
          await this.store.ensurePartition(def.cacheId, p);
          await this.demander.onMoving(def, p, t.version);
        } else if (state === 'OWNING') {
          // OWNING without our report (every other copy was lost): keep what was logged.
          if (this.demander.isReceiving(def.cacheId, p)) await this.demander.cancel(def.cacheId, p, 'copy became OWNING', { applyLogged: true });
          if (!have) await this.store.ensurePartition(def.cacheId, p);
        } else if (state === 'RENTING') {
          await this.demander.cancel(def.cacheId, p, 'copy is RENTING');
          if (have) await this.store.destroyPartition(def.cacheId, p);
          void this.reportEvicted(def.name, p);
        } else if (state === undefined) {
          await this.demander.cancel(def.cacheId, p, 'copy left the topology');
          if (have) await this.store.destroyPartition(def.cacheId, p);
        }
      }
    }
  }

  private async reportEvicted(cache: string, partition: number): Promise<void> {
    for (let attempt = 0; attempt < 20 && this.status === 'running'; attempt++) {
      try {
        await this.toCoordinator('partitionEvicted', { cache, partition, nodeId: this.selfId });
        return;
      } catch (err) {
        this.log.debug({ err, cache, partition }, 'evicted report failed; retrying');
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  // ------------------------------------------------------------------ failures

  private onPeerDown(nodeId: string): void {
    if (this.status !== 'running') return;
    if (this.coordinator) this.coordinator.nodeDown(nodeId);
    else if (nodeId === this.topo.coordinator) void this.maybeTakeOver();
  }

  /** The coordinator is unreachable: the next-oldest reachable node takes over. */
  private async maybeTakeOver(): Promise<void> {
    if (this.takingOver) return;
    this.takingOver = true;
    try {
      const deadline = Date.now() + this.config.net.failureTimeoutMs;
      const oldCoord = this.topo.coordinator;
      while (Date.now() < deadline && this.status === 'running') {
        if (this.topo.coordinator !== oldCoord) return; // someone took over
        try {
          await this.peers.get(oldCoord, 0);
          return; // it is back
        } catch {
          await new Promise((r) => setTimeout(r, 200));
        }
      }
      if (this.status !== 'running' || this.topo.coordinator !== oldCoord) return;
      const survivors = this.topo.nodes.filter((n) => n.id !== oldCoord).sort((a, b) => a.order - b.order);
      for (const cand of survivors) {
        if (cand.id === this.selfId) {
          this.log.warn({ oldCoordinator: oldCoord }, 'coordinator failed; taking over');
          this.coordinator = new Coordinator(this);
          this.topo = { ...this.topo, coordinator: this.selfId };
          await this.coordinator.remove(oldCoord);
          return;
        }
        if (this.peers.isConnected(cand.id)) return; // an older node is alive: it takes over
        try {
          await this.peers.get(cand.id, 0);
          return;
        } catch {
          // that one is gone too; consider the next
        }
      }
    } finally {
      this.takingOver = false;
    }
  }

  private watch(): void {
    if (this.status !== 'running') return;
    if (this.coordinator) void this.coordinator.watchAll();
    else if (!this.peers.isConnected(this.topo.coordinator)) {
      this.peers.get(this.topo.coordinator, 0).catch(() => this.onPeerDown(this.topo.coordinator));
    }
  }

  // ------------------------------------------------------------------ peer API

  private registerPeerApi(): void {
    const h = this.handlers;
    h.set('join', async (body) => {
      const { node } = body as { node: Omit<TopologyNode, 'order'> };
      if (!this.coordinator) return this.peers.request(this.topo.coordinator, 'join', body, this.config.cluster.joinTimeoutMs);
      const t = await this.coordinator.join(node);
      return { topology: t };
    });
    h.set('topology', async (body) => {
      const { topology } = body as { topology: Topology };
      await this.applyTopology(topology);
      return {};
    });
    h.set('topologyReady', (body) => {
      this.markReady((body as { version: number }).version);
      return {};
    });
    h.set('topologyAck', (body) => {
      const { nodeId, version } = body as { nodeId: string; version: number };
      this.coordinator?.onAck(nodeId, version);
      return {};
    });
    h.set('getTopology', () => ({ topology: this.topo, readyVersion: this.readyVersion }));
    h.set('partitionOwning', async (body) => {
      const { cache, partition, nodeId } = body as { cache: string; partition: number; nodeId: string };
      if (!this.coordinator) throw ptnError(ErrorCode.ERR_PARTITION_NOT_OWNED, 'not the coordinator');
      await this.coordinator.partitionOwning(cache, partition, nodeId);
      return {};
    });
    h.set('partitionEvicted', async (body) => {
      const { cache, partition, nodeId } = body as { cache: string; partition: number; nodeId: string };
      if (!this.coordinator) throw ptnError(ErrorCode.ERR_PARTITION_NOT_OWNED, 'not the coordinator');
      await this.coordinator.partitionEvicted(cache, partition, nodeId);
      return {};
    });
    h.set('coordCacheCreate', async (body) => {
      if (!this.coordinator) throw ptnError(ErrorCode.ERR_PARTITION_NOT_OWNED, 'not the coordinator');
      return { cache: await this.coordinator.createCache(body as { name: string }) };
    });
    h.set('coordCacheDrop', async (body) => {
      if (!this.coordinator) throw ptnError(ErrorCode.ERR_PARTITION_NOT_OWNED, 'not the coordinator');
      await this.coordinator.dropCache((body as { name: string }).name);
      return {};
    });
  }

  /** True while this node serves a snapshot and runs no demander task. */
  private supplyingOnly(): boolean {
    return (this.supplier?.transferCount ?? 0) > 0 && (this.demander?.taskCount ?? 0) === 0;
  }

  // ------------------------------------------------------------------ stop

  async close(): Promise<void> {
    if (this.status === 'stopping' || this.status === 'stopped') return;
    this.status = 'stopping';
    if (this.watchTimer) clearInterval(this.watchTimer);
    for (const w of this.versionWaiters.splice(0)) w.resolve();
    this.coordinator?.close();
    this.pacer.close(); // rebalance steps still running go on without waiting
    await this.rebalancer?.close();
    await this.demander?.close();
    await this.supplier?.close(); // releases every snapshot (delta files, WAL reservations) before the store closes
    await this.writes?.close();
    await this.admin?.close();
    await this.server?.close();
    await this.peers?.close();
    await this.applyChain.catch(() => undefined);
    await this.store?.close();
    this.testFaults?.close(); // TEST ONLY: uninstalls the fault points
    this.status = 'stopped';
    this.log.info({}, 'node stopped');
  }
}

/** Starts a node and resolves once it has joined or formed a cluster. */
export async function startNode(config: NodeConfig, opts: StartNodeOptions = {}): Promise<ClusterNode> {
  checkTestFaultsAllowed(config, `node ${config.nodeId} config`); // TEST ONLY guard: testFaults need PTN_ENABLE_TEST_FAULTS=1
  const node = new ClusterNode(config, opts);
  try {
    await node.start();
  } catch (err) {
    await node.close().catch(() => undefined);
    throw err;
  }
  return node;
}
