/**
 * The local store: one node's caches on disk, without any network.
 *
 * Role: the facade the cluster layer uses. It owns the node WAL, the page memory (all partition
 * files and the page cache), the cache registry, the secondary indexes and the checkpointer.
 *
 * Data flow of one update: assign or take its counter → enter the mutation gate → append the
 * logical WAL record (framed synchronously, so its position is fixed inside the gate) → apply to
 * the partition's B+tree with apply-if-newer → update secondary indexes → leave the gate → wait
 * until the WAL record is durable (fsync mode: group commit) → acknowledge.
 *
 * Invariants:
 *  - every change to a partition file's pages has its WAL record appended first, inside the gate,
 *    so a checkpoint's captured WAL position splits records cleanly;
 *  - applying an update is idempotent and order-independent (counter duplicate detection plus the
 *    per-key counter comparison), so recovery may replay more than it strictly needs;
 *  - an update that is not applied (duplicate) is not logged.
 *
 * Recovery (open): WAL recovery (torn tail truncated) → page-memory journal redo → registry →
 * open every partition file (O(1) each) → replay WAL records after the last completed checkpoint
 * → rebuild secondary indexes → checkpoint.
 */
import path from 'node:path';
import { createHash } from 'node:crypto';
import type { NodeConfig } from '../config.js';
import { ErrorCode, assert, isPtnError, ptnError } from '../errors.js';
import { type FileLayer, realFileLayer } from '../util/file-layer.js';
import { type Logger, silentLogger } from '../util/log.js';
import { NodeWal } from '../wal/node-wal.js';
import type { WalRecord } from '../wal/record.js';
import { PageMemory, type Pace } from '../pagememory/page-memory.js';
import type { ApplyResult, PartitionStore, StoredEntry } from '../pagememory/partition-store.js';
import { partitionOfKey } from '../cluster/affinity.js';
import { CacheRegistry, type CacheDef, checkCacheDef } from './cache-registry.js';
import { SecondaryIndex } from './secondary-index.js';
import { Checkpointer, type CheckpointResult } from './checkpointer.js';
import type { EncodedValue } from './value.js';

/** One logical update of one entry. */
export interface Update {
  cacheId: number;
  partition: number;
  counter: number;
  key: string;
  op: 'put' | 'remove';
  valueKind?: number;
  value?: Buffer;
}

/** What a read returns. */
export interface ReadResult extends EncodedValue {
  counter: number;
}

export interface StoreOptions {
  config: NodeConfig;
  fileLayer?: FileLayer;
  log?: Logger;
  /** Start the periodic checkpoint timer (default true). */
  periodicCheckpoints?: boolean;
}

type Status = 'opening' | 'open' | 'closing' | 'closed';

/** How long a snapshot checkpoint waits for more snapshot requests to arm with it. */
const SNAPSHOT_GATHER_MS = 25;
/** A snapshot arms at the committed state while the updates since it are at most this share of its entries. */
const SNAPSHOT_COMMITTED_HISTORY_SHARE = 0.125;

function pkey(cacheId: number, partition: number): string {
  return `${cacheId}:${partition}`;
}

export class Store {
  private status: Status = 'opening';
  readonly config: NodeConfig;
  readonly log: Logger;
  private readonly fl: FileLayer;
  private wal!: NodeWal;
  private pm!: PageMemory;
  private registry!: CacheRegistry;
  private checkpointer!: Checkpointer;
  /** Pending start of a snapshot checkpoint (requestSnapshotCheckpoint). */
  private snapshotGather: NodeJS.Timeout | undefined;
  private readonly partitions = new Map<string, PartitionStore>();
  private readonly opening = new Map<string, Promise<PartitionStore>>();
  /** Next counter to hand out per partition when this node acts as the primary. */
  private readonly nextCounters = new Map<string, number>();
  /** cacheId → field → index. */
  private readonly indexes = new Map<number, Map<string, SecondaryIndex>>();
  /** Figures of the last open (recovery). */
  recoveryStats = { replayedRecords: 0, appliedRecords: 0, walTruncatedBytes: 0, durationMs: 0 };

  private constructor(opts: StoreOptions) {
    this.config = opts.config;
    this.fl = opts.fileLayer ?? realFileLayer;
    this.log = opts.log ?? silentLogger;
  }

  get dataDir(): string {
    return this.config.dataDir;
  }

  /** Opens (and recovers) the store in config.dataDir. */
  static async open(opts: StoreOptions): Promise<Store> {
    const store = new Store(opts);
    await store.openImpl(opts.periodicCheckpoints ?? true);
    return store;
  }

  private async openImpl(periodic: boolean): Promise<void> {
    const t0 = performance.now();
    const { config, fl } = this;
    await fl.mkdir(config.dataDir);
    this.wal = await NodeWal.open({
      dir: path.join(config.dataDir, 'wal'),
      clusterId: config.clusterId,
      config: config.wal,
      fileLayer: fl,
      log: (msg, extra) => this.log.warn({ ...extra }, msg),
    });
    this.recoveryStats.walTruncatedBytes = this.wal.recovery.truncatedTail?.bytesDropped ?? 0;
    this.pm = new PageMemory({
      storage: config.storage,
      journalDir: path.join(config.dataDir, 'checkpoint'),
      fileLayer: fl,
      onDirtyPressure: () => {
        if (this.status === 'open') this.checkpoint('pressure').catch((err) => this.log.error({ err }, 'checkpoint failed'));
      },
      log: (msg, extra) => this.log.info({ ...extra }, msg),
    });
    await this.pm.open();
    this.registry = await CacheRegistry.open(path.join(config.dataDir, 'caches.json'), fl);
    for (const def of this.registry.list()) {
      this.makeIndexes(def);
      await this.openExistingPartitions(def);
    }
    await this.replayWal();
    for (const def of this.registry.list()) await this.rebuildIndexes(def.cacheId);
    this.checkpointer = new Checkpointer(this.pm, this.wal, config.storage.checkpointIntervalMs, this.log);
    this.checkpointer.onCompleted = () => this.purgeTombstones();
    this.status = 'open';
    await this.checkpoint('recovery');
    if (periodic) this.checkpointer.start();
    this.recoveryStats.durationMs = performance.now() - t0;
  }

  private async replayWal(): Promise<void> {
    for await (const { record } of this.wal.replay()) {
      this.recoveryStats.replayedRecords++;
      if (await this.replayRecord(record)) this.recoveryStats.appliedRecords++;
    }
  }

  private async replayRecord(r: WalRecord): Promise<boolean> {
    switch (r.type) {
      case 'put':
      case 'remove': {
        if (!this.registry.byIdOrUndefined(r.cacheId)) return false;
        const u: Update = r.type === 'put'
          ? { cacheId: r.cacheId, partition: r.partition, counter: r.counter, key: r.key, op: 'put', valueKind: r.valueKind, value: r.value }
          : { cacheId: r.cacheId, partition: r.partition, counter: r.counter, key: r.key, op: 'remove' };
        await this.pm.enterMutation();
        try {
          const ps = await this.ensurePartition(r.cacheId, r.partition);
          return (await ps.apply(u)) === 'applied';
        } catch (err) {
          if (isPtnError(err, ErrorCode.ERR_COUNTER_GAPS_OVERFLOW)) {
            this.log.error({ err, cacheId: r.cacheId, partition: r.partition, counter: r.counter }, 'replayed record skipped');
            return false;
          }
          throw err;
        } finally {
          this.pm.exitMutation();
        }
      }
      case 'partitionDestroy': {
        const ps = this.partitions.get(pkey(r.cacheId, r.partition));
        if (ps) await this.dropPartitionState(r.cacheId, r.partition, ps);
        else await this.fl.rm(this.partitionPath(r.cacheId, r.partition));
        return true;
      }
      case 'cacheDrop': {
        if (this.registry.byIdOrUndefined(r.cacheId)) await this.dropCacheState(r.cacheId);
        return true;
      }
      default:
        return false;
    }
  }

  private checkOpen(): void {
    if (this.status !== 'open') {
      throw ptnError(this.status === 'opening' ? ErrorCode.ERR_NOT_OPEN : ErrorCode.ERR_CLOSED, `store is ${this.status}`);
    }
  }

  // ---------------------------------------------------------------- caches

  /** Creates a cache. `cacheId` defaults to the next free id (the cluster passes its own). */
  async createCache(input: { name: string; partitions?: number; backups?: number; indexFields?: string[]; cacheId?: number }): Promise<CacheDef> {
    this.checkOpen();
    const def = checkCacheDef({
      name: input.name,
      cacheId: input.cacheId ?? this.registry.nextCacheId(),
      partitions: input.partitions ?? 64,
      backups: input.backups ?? 1,
      indexFields: input.indexFields ?? [],
    });
    await this.registry.add(def);
    await this.fl.mkdir(this.cacheDir(def.cacheId));
    this.makeIndexes(def);
    return def;
  }

  /** Drops a cache: every partition file of it is removed. */
  async dropCache(name: string): Promise<void> {
    this.checkOpen();
    const def = this.registry.get(name);
    await this.wal.append({ type: 'cacheDrop', cacheId: def.cacheId });
    await this.dropCacheState(def.cacheId);
  }

  private async dropCacheState(cacheId: number): Promise<void> {
    const def = this.registry.getById(cacheId);
    for (let p = 0; p < def.partitions; p++) {
      const ps = this.partitions.get(pkey(cacheId, p));
      if (ps) await this.dropPartitionState(cacheId, p, ps);
    }
    await this.fl.rm(this.cacheDir(cacheId));
    this.indexes.delete(cacheId);
    await this.registry.remove(cacheId);
  }

  caches(): CacheDef[] {
    return this.registry.list();
  }

  cache(name: string): CacheDef {
    return this.registry.get(name);
  }

  cacheById(cacheId: number): CacheDef {
    return this.registry.getById(cacheId);
  }

  hasCache(name: string): boolean {
    return this.registry.byNameOrUndefined(name) !== undefined;
  }

  // ---------------------------------------------------------------- partitions

  cacheDir(cacheId: number): string {
    return path.join(this.config.dataDir, 'caches', String(cacheId));
  }

  partitionPath(cacheId: number, partition: number): string {
    return path.join(this.cacheDir(cacheId), `part-${partition}.ptn`);
  }

  private identity(cacheId: number, partition: number) {
    return { clusterId: this.config.clusterId, cacheId, partition };
  }

  private async openExistingPartitions(def: CacheDef): Promise<void> {
    const dir = this.cacheDir(def.cacheId);
    if (!(await this.fl.exists(dir))) return;
    for (const name of await this.fl.readdir(dir)) {
      const m = /^part-(\d+)\.ptn$/.exec(name);
      if (!m) continue;
      const p = Number(m[1]);
      if (p >= def.partitions) continue;
      const ps = await this.pm.openPartition(path.join(dir, name), this.identity(def.cacheId, p));
      this.partitions.set(pkey(def.cacheId, p), ps);
    }
  }

  /** True when this node has a file for the partition. */
  hasPartition(cacheId: number, partition: number): boolean {
    return this.partitions.has(pkey(cacheId, partition));
  }

  /** The open partition, or undefined. */
  partitionOrUndefined(cacheId: number, partition: number): PartitionStore | undefined {
    return this.partitions.get(pkey(cacheId, partition));
  }

  /** Opens the partition, creating an empty file when there is none. */
  async ensurePartition(cacheId: number, partition: number): Promise<PartitionStore> {
    const k = pkey(cacheId, partition);
    const have = this.partitions.get(k);
    if (have) return have;
    const pending = this.opening.get(k);
    if (pending) return pending;
    const def = this.registry.getById(cacheId);
    if (partition < 0 || partition >= def.partitions || !Number.isInteger(partition)) {
      throw ptnError(ErrorCode.ERR_PARTITION_NOT_FOUND, `cache ${def.name} has no partition ${partition}`);
    }
    const promise = (async () => {
      await this.fl.mkdir(this.cacheDir(cacheId));
      const file = this.partitionPath(cacheId, partition);
      const ps = (await this.fl.exists(file))
        ? await this.pm.openPartition(file, this.identity(cacheId, partition))
        : await this.pm.createPartition(file, this.identity(cacheId, partition));
      this.partitions.set(k, ps);
      return ps;
    })().finally(() => this.opening.delete(k));
    this.opening.set(k, promise);
    return promise;
  }

  /** Destroys the partition on this node: state, index part and file. Logged, so recovery agrees. */
  async destroyPartition(cacheId: number, partition: number): Promise<void> {
    this.checkOpen();
    const ps = this.partitions.get(pkey(cacheId, partition));
    await this.wal.append({ type: 'partitionDestroy', cacheId, partition });
    if (ps) await this.dropPartitionState(cacheId, partition, ps);
    else await this.fl.rm(this.partitionPath(cacheId, partition));
  }

  private async dropPartitionState(cacheId: number, partition: number, ps: PartitionStore): Promise<void> {
    this.partitions.delete(pkey(cacheId, partition));
    this.nextCounters.delete(pkey(cacheId, partition));
    for (const idx of this.indexes.get(cacheId)?.values() ?? []) idx.dropPartition(partition);
    await this.pm.destroyPartition(ps, { deleteFile: true });
  }

  /** Partitions of a cache this node has files for. */
  localPartitions(cacheId: number): number[] {
    const out: number[] = [];
    for (const ps of this.partitions.values()) if (ps.id.cacheId === cacheId) out.push(ps.id.partition);
    return out.sort((a, b) => a - b);
  }

  // ---------------------------------------------------------------- updates

  /** The partition of a key in a cache. */
  partitionOf(cacheName: string, key: string): number {
    return partitionOfKey(key, this.registry.get(cacheName).partitions);
  }

  /** Hands out the next counter of a partition (this node acting as its primary). */
  async assignCounter(cacheId: number, partition: number): Promise<number> {
    const ps = await this.ensurePartition(cacheId, partition);
    return this.assignCounterSync(ps);
  }

  private assignCounterSync(ps: PartitionStore): number {
    const k = pkey(ps.id.cacheId, ps.id.partition);
    const next = Math.max(this.nextCounters.get(k) ?? 0, ps.counter.hwm) + 1;
    this.nextCounters.set(k, next);
    return next;
  }

  /**
   * Logs and applies one update with apply-if-newer. With `assign`, the counter is handed out
   * here (this node is the primary) and written into `u.counter`. Resolves once the WAL record is
   * durable (per the durability mode) with the apply result. With `waitDurable: false` it resolves
   * once applied (the demander's replay: its records are durable in the temporary WAL, which is
   * kept until a node-WAL flush has made these records durable too).
   */
  async apply(u: Update, opts: { assign?: boolean; waitDurable?: boolean } = {}): Promise<ApplyResult> {
    this.checkOpen();
    this.checkUpdate(u);
    await this.pm.waitForRoom();
    await this.pm.enterMutation();
    let durable: Promise<void> | undefined;
    let result: ApplyResult;
    try {
      const ps = await this.ensurePartition(u.cacheId, u.partition);
      if (opts.assign) u.counter = this.assignCounterSync(ps);
      if (ps.counter.has(u.counter)) return 'duplicate';
      durable = this.wal.appendNoWait(toWalRecord(u)).durable;
      result = await ps.apply(u);
      if (result === 'applied') this.updateIndexes(u);
    } finally {
      this.pm.exitMutation();
    }
    if (opts.waitDurable === false) durable.catch(() => undefined); // a failed WAL fails the next checkpoint
    else await durable;
    return result;
  }

  private checkUpdate(u: Update): void {
    const keyBytes = Buffer.byteLength(u.key, 'utf8');
    if (keyBytes > this.config.storage.keyBytesMax) {
      throw ptnError(ErrorCode.ERR_KEY_TOO_LARGE, `key of ${keyBytes} bytes exceeds storage.keyBytesMax ${this.config.storage.keyBytesMax}`);
    }
    if (u.op === 'put') {
      const n = u.value?.length ?? 0;
      if (n > this.config.storage.valueBytesMax) {
        throw ptnError(ErrorCode.ERR_VALUE_TOO_LARGE, `value of ${n} bytes exceeds storage.valueBytesMax ${this.config.storage.valueBytesMax}`);
      }
    }
  }

  private updateIndexes(u: Update): void {
    const idxs = this.indexes.get(u.cacheId);
    if (!idxs) return;
    for (const idx of idxs.values()) {
      if (u.op === 'put') idx.onPut(u.partition, u.key, u.valueKind ?? 0, u.value ?? Buffer.alloc(0));
      else idx.onRemove(u.partition, u.key);
    }
  }

  /** Local primary write: put. */
  async put(cacheName: string, key: string, v: EncodedValue): Promise<{ counter: number; partition: number }> {
    const def = this.registry.get(cacheName);
    const u: Update = { cacheId: def.cacheId, partition: partitionOfKey(key, def.partitions), counter: 0, key, op: 'put', valueKind: v.valueKind, value: v.value };
    await this.apply(u, { assign: true });
    return { counter: u.counter, partition: u.partition };
  }

  /** Local primary write: remove (leaves a tombstone with its counter). */
  async remove(cacheName: string, key: string): Promise<{ counter: number; partition: number }> {
    const def = this.registry.get(cacheName);
    const u: Update = { cacheId: def.cacheId, partition: partitionOfKey(key, def.partitions), counter: 0, key, op: 'remove' };
    await this.apply(u, { assign: true });
    return { counter: u.counter, partition: u.partition };
  }

  /** Several local primary writes; they share group commits. */
  async batch(cacheName: string, ops: Array<{ op: 'put'; key: string; value: EncodedValue } | { op: 'remove'; key: string }>): Promise<number[]> {
    return Promise.all(
      ops.map(async (o) => (o.op === 'put' ? (await this.put(cacheName, o.key, o.value)).counter : (await this.remove(cacheName, o.key)).counter)),
    );
  }

  /**
   * Marks counters as applied without entries: after an entry-by-entry copy, every counter the
   * supplier had applied when its scan began is reflected in what was copied (overwritten and
   * purged updates included). `lwm` covers 1..lwm; `ranges` are inclusive.
   */
  async markCountersApplied(cacheId: number, partition: number, lwm: number, ranges: Array<[number, number]>): Promise<void> {
    this.checkOpen();
    await this.pm.enterMutation();
    try {
      const ps = await this.ensurePartition(cacheId, partition);
      if (lwm >= 1) ps.counter.addRange(1, lwm);
      for (const [from, to] of ranges) ps.counter.addRange(from, to);
    } finally {
      this.pm.exitMutation();
    }
  }

  // ---------------------------------------------------------------- reads

  /** Reads a key; undefined when absent or removed. */
  async get(cacheName: string, key: string): Promise<ReadResult | undefined> {
    this.checkOpen();
    const def = this.registry.get(cacheName);
    const e = await this.getEntry(def.cacheId, partitionOfKey(key, def.partitions), key);
    if (!e || e.tombstone) return undefined;
    return { counter: e.counter, valueKind: e.valueKind, value: e.value };
  }

  /** The raw stored entry (tombstones included), or undefined. */
  async getEntry(cacheId: number, partition: number, key: string): Promise<StoredEntry | undefined> {
    const ps = this.partitions.get(pkey(cacheId, partition));
    return ps ? ps.get(key) : undefined;
  }

  /** Key-ordered scan of one partition (live entries; tombstones with includeTombstones). */
  scan(cacheId: number, partition: number, opts: { includeTombstones?: boolean; fromKeyExclusive?: string } = {}): AsyncIterable<StoredEntry> {
    const ps = this.partitions.get(pkey(cacheId, partition));
    if (!ps) throw ptnError(ErrorCode.ERR_PARTITION_NOT_FOUND, `partition ${partition} of cache ${cacheId} is not on this node`);
    return ps.scan(opts);
  }

  /** Digest of a partition's live entries (key, value kind, value), comparable across replicas. */
  async digest(cacheId: number, partition: number): Promise<{ digest: string; entries: number }> {
    const h = createHash('sha256');
    let entries = 0;
    const ps = this.partitions.get(pkey(cacheId, partition));
    if (ps) {
      const head = Buffer.alloc(9);
      for await (const e of ps.scan({ includeTombstones: false })) {
        const key = Buffer.from(e.key, 'utf8');
        head.writeUInt32BE(key.length, 0);
        head.writeUInt8(e.valueKind, 4);
        head.writeUInt32BE(e.value.length, 5);
        h.update(head).update(key).update(e.value);
        entries++;
      }
    }
    return { digest: h.digest('hex').slice(0, 32), entries };
  }

  /** Keys whose indexed `field` equals `value`, over this node's non-suspended partitions. */
  query(cacheName: string, field: string, value: string | number | boolean | null): string[] {
    this.checkOpen();
    const def = this.registry.get(cacheName);
    const idx = this.indexes.get(def.cacheId)?.get(field);
    if (!idx) throw ptnError(ErrorCode.ERR_INDEX_NOT_FOUND, `cache ${cacheName} has no index on ${JSON.stringify(field)}`);
    return idx.query(value);
  }

  /** The secondary indexes of a cache (field → index). */
  indexesOf(cacheId: number): Map<string, SecondaryIndex> {
    return this.indexes.get(cacheId) ?? new Map();
  }

  private makeIndexes(def: CacheDef): void {
    const m = new Map<string, SecondaryIndex>();
    for (const f of def.indexFields) m.set(f, new SecondaryIndex(f));
    this.indexes.set(def.cacheId, m);
  }

  /** Rebuilds every index of the cache for one partition (or all local partitions). */
  async rebuildIndexes(cacheId: number, partition?: number): Promise<number> {
    const idxs = this.indexes.get(cacheId);
    if (!idxs || idxs.size === 0) return 0;
    let n = 0;
    const parts = partition === undefined ? this.localPartitions(cacheId) : [partition];
    for (const p of parts) {
      for (const idx of idxs.values()) {
        const ps = this.partitions.get(pkey(cacheId, p));
        n += ps ? await idx.rebuild(p, ps.scan({ includeTombstones: false })) : 0;
      }
    }
    return n;
  }

  // ---------------------------------------------------------------- rebalance: demander (src/demander/)

  /**
   * Demander swap-in (DESIGN.md demander step 4): replaces the partition with the verified file
   * `file`, which is moved into place, not copied. Logs partitionDestroy first, so that recovery
   * never applies the old incarnation's WAL records to the new file and WAL history of the
   * partition restarts here; drops the old state; restores the file with
   * PageMemory.restorePartition (identity, format and meta page checked); then checkpoints with a capture
   * after the destroy record. A suspended index part stays suspended (the demander rebuilds it).
   */
  async swapInPartition(cacheId: number, partition: number, file: string): Promise<PartitionStore> {
    this.checkOpen();
    const k = pkey(cacheId, partition);
    const suspended = [...this.indexesOf(cacheId).values()].filter((idx) => idx.isSuspended(partition));
    await this.wal.append({ type: 'partitionDestroy', cacheId, partition });
    const old = this.partitions.get(k);
    if (old) await this.dropPartitionState(cacheId, partition, old);
    await this.fl.mkdir(this.cacheDir(cacheId));
    // Meta-page validation only: every chunk and the whole file were CRC-checked on receipt and every
    // page is CRC-checked whenever it is read, so a scan here would only make swap-in cost O(file size)
    // instead of O(1) in the entry count (the point of moving files).
    const ps = await this.pm.restorePartition(file, this.partitionPath(cacheId, partition), this.identity(cacheId, partition), 'meta');
    this.partitions.set(k, ps);
    for (const idx of suspended) idx.suspend(partition);
    await this.checkpointAfterNow('swap-in');
    return ps;
  }

  /**
   * Reads a partition's live pages into the page cache in sequential runs when its whole file
   * fits in `bytesMax` and in the cache's free room (PageMemory.prewarmPartition); returns the
   * bytes cached. The demander calls it after a swap-in, so the replay does not read the new
   * file page by page. `pace` is awaited before each run (the demander yields to foreground work).
   */
  async prewarmPartition(cacheId: number, partition: number, bytesMax: number, pace?: Pace): Promise<number> {
    this.checkOpen();
    const ps = this.partitions.get(pkey(cacheId, partition));
    return ps ? this.pm.prewarmPartition(ps, bytesMax, pace) : 0;
  }

  /**
   * Checkpoints begun from now on seal their pages at `pace` (the node's ForegroundPacer: the
   * writes go first while the event loop runs late); undefined: as fast as the loop allows.
   */
  setCheckpointPace(pace: Pace | undefined): void {
    this.pm.setPace(pace);
  }

  /** Suspends every index of the cache for one partition (its part is dropped until rebuildIndexes). */
  suspendIndexes(cacheId: number, partition: number): void {
    for (const idx of this.indexesOf(cacheId).values()) idx.suspend(partition);
  }

  /**
   * A checkpoint whose capture comes after this call. checkpoint() may join one that captured
   * earlier; the demander needs its own changes (a swap, marked counters) on disk.
   */
  async checkpointAfterNow(reason: string): Promise<CheckpointResult> {
    this.checkOpen();
    let armed = false;
    this.checkpointer.atNextCheckpointEnd(() => (armed = true), () => undefined);
    for (;;) {
      const r = await this.checkpoint(reason);
      if (armed) return r;
    }
  }

  // ---------------------------------------------------------------- checkpoints and lifecycle

  /** Runs a checkpoint now (or joins the one running). */
  checkpoint(reason = 'demand'): Promise<CheckpointResult> {
    this.checkOpen();
    return this.checkpointer.checkpoint(reason);
  }

  /**
   * Rebalance supplier (src/supplier/): runs a checkpoint and, synchronously at its end — the
   * partition's file then holds exactly `ps.committed()` and no page is written before the next
   * checkpoint — calls `arm(ps)` (which records committed() and registers its page-write
   * listener); resolves with what `arm` returned once that checkpoint has completed. Registering
   * the listener inside `arm` is as good as before the checkpoint: page writes before the arm
   * belong to the snapshot's own checkpoint. When it rejects after `arm` ran, undo what arm did.
   */
  snapshotCheckpoint<T>(cacheId: number, partition: number, arm: (ps: PartitionStore) => T): Promise<T> {
    this.checkOpen();
    return new Promise<T>((resolve, reject) => {
      let armed: T;
      this.checkpointer.atNextCheckpointEnd(() => {
        const ps = this.partitions.get(pkey(cacheId, partition));
        if (!ps) throw ptnError(ErrorCode.ERR_PARTITION_NOT_FOUND, `partition ${partition} of cache ${cacheId} is not on this node`);
        armed = arm(ps);
      }, reject, () => resolve(armed));
      this.requestSnapshotCheckpoint();
    });
  }

  /**
   * Rebalance supplier: like snapshotCheckpoint, but arms at the partition's last committed state
   * instead of a new checkpoint — at once when no checkpoint is writing pages, else right after
   * the running one has written them (Checkpointer.atCommittedState). The snapshot is then up to a
   * checkpoint interval older, and the demander closes the longer gap from history (the WAL keeps
   * every record after the last checkpoint: recovery needs them), but a join no longer waits for a
   * checkpoint that, under load, journals nearly every page (seconds), nor adds its I/O to the
   * writes of that moment. It takes the snapshot checkpoint instead when the updates since the
   * committed state exceed SNAPSHOT_COMMITTED_HISTORY_SHARE of the entries it holds (each of those
   * crosses again as a history record, several times slower per byte than the file), and for a
   * partition without a committed file.
   */
  snapshotCommitted<T>(cacheId: number, partition: number, arm: (ps: PartitionStore) => T): Promise<T> {
    this.checkOpen();
    const ps = this.partitions.get(pkey(cacheId, partition));
    const c = ps?.committed();
    if (!ps || !c || c.fileBytes === 0 || ps.counter.hwm - c.counterHwm > SNAPSHOT_COMMITTED_HISTORY_SHARE * c.entryCount) {
      return this.snapshotCheckpoint(cacheId, partition, arm);
    }
    return new Promise<T>((resolve, reject) => {
      this.checkpointer.atCommittedState(() => {
        const now = this.partitions.get(pkey(cacheId, partition));
        if (!now) throw ptnError(ErrorCode.ERR_PARTITION_NOT_FOUND, `partition ${partition} of cache ${cacheId} is not on this node`);
        resolve(arm(now));
      }, reject);
    });
  }

  /**
   * Starts the snapshot checkpoint SNAPSHOT_GATHER_MS after the first request, so the snapshots a
   * joining node opens together (one per partition, arriving within a few ms) are armed by one
   * checkpoint. Started at once, the first request's checkpoint captured before the others came
   * and they waited for a second one: under load each takes seconds (every dirty page journalled).
   */
  private requestSnapshotCheckpoint(): void {
    if (this.snapshotGather) return;
    this.snapshotGather = setTimeout(() => {
      this.snapshotGather = undefined;
      if (this.status !== 'open') return; // close() fails the waiting hooks
      this.checkpointer.checkpoint('snapshot').catch(() => undefined); // a failure reaches each hook's `fail`
    }, SNAPSHOT_GATHER_MS);
  }

  private async purgeTombstones(): Promise<void> {
    for (const ps of [...this.partitions.values()]) {
      await this.pm.enterMutation();
      try {
        if (this.partitions.get(pkey(ps.id.cacheId, ps.id.partition)) === ps) await ps.purgeTombstones(ps.counter.lwm);
      } finally {
        this.pm.exitMutation();
      }
    }
  }

  /** Figures for status and metrics. */
  stats() {
    return {
      pageMemory: { ...this.pm.stats },
      wal: this.wal.stats(),
      checkpoints: this.checkpointer?.completed ?? 0,
      lastCheckpoint: this.checkpointer?.lastResult,
      partitions: this.partitions.size,
    };
  }

  /** The node WAL (history and reservations for rebalancing). */
  get nodeWal(): NodeWal {
    return this.wal;
  }

  /** The page memory (snapshots and swap-in for rebalancing). */
  get pageMemory(): PageMemory {
    return this.pm;
  }

  /** Checkpoints, then closes everything. Idempotent. */
  async close(opts: { checkpoint?: boolean } = {}): Promise<void> {
    if (this.status === 'closed' || this.status === 'closing') return;
    const wasOpen = this.status === 'open';
    this.status = 'closing';
    clearTimeout(this.snapshotGather);
    this.snapshotGather = undefined;
    if (this.checkpointer) await this.checkpointer.close();
    if (wasOpen && opts.checkpoint !== false) {
      try {
        await this.checkpointer.checkpoint('close');
      } catch (err) {
        this.log.error({ err }, 'final checkpoint failed');
      }
    }
    await this.pm?.close();
    await this.wal?.close();
    this.partitions.clear();
    this.status = 'closed';
  }
}

function toWalRecord(u: Update): WalRecord {
  assert(Number.isSafeInteger(u.counter) && u.counter > 0, 'update counter must be a positive safe integer');
  return u.op === 'put'
    ? { type: 'put', cacheId: u.cacheId, partition: u.partition, counter: u.counter, key: u.key, valueKind: u.valueKind ?? 0, value: u.value ?? Buffer.alloc(0) }
    : { type: 'remove', cacheId: u.cacheId, partition: u.partition, counter: u.counter, key: u.key };
}
