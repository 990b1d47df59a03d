/**
 * The demander: receives the partitions assigned to this node (DESIGN.md "Rebalance, step by
 * step", demander side). One task per MOVING copy (task-state.ts), run by task-runner.ts.
 *
 * Data flow:
 *   applyTopology: copy becomes MOVING ──▶ onMoving(): task record persisted, catch-up log (temp
 *     WAL) opened, index part suspended ── from here every replicated update for the partition goes
 *     through offer() to the log, acknowledged after the append ── then the node acks the topology.
 *   pump(): at most `rebalance.receiveSlots` attempts at once (read live: configSet changes it),
 *     a task whose last attempt failed waits for its backoff ──▶ TaskRunner.attempt().
 *   copy no longer MOVING / cache dropped ──▶ cancel(): the attempt is aborted and awaited, the
 *     supplier released, the temp file, temp WAL and record removed.
 *   close(): attempts aborted, logs closed WITH their files, records kept: a restart resumes.
 *
 * Start-up: open() lists `<dataDir>/tmp/rebalance/` (task-store.ts): unreadable records and files
 * no record names are removed; records wait for the first topology, where onMoving() resumes them
 * (recovery.ts) and onTopology() removes the ones whose copy is no longer MOVING. None accumulate.
 */
import { ErrorCode, ptnError } from '../errors.js';
import { type FileLayer, realFileLayer } from '../util/file-layer.js';
import type { Update } from '../store/store.js';
import type { Topology } from '../cluster/topology.js';
import { decodeUpdate } from '../cluster/update-codec.js';
import { CatchUpLog } from './catch-up-log.js';
import type { DemanderHost } from './host.js';
import { planRecovery } from './recovery.js';
import { replayCatchUpLog } from './replay.js';
import { TaskRunner } from './task-runner.js';
import type { DemanderCounters, DemanderHooks, NextStep, Task } from './task.js';
import { taskKey, TaskStore } from './task-store.js';
import { isTerminal, newTaskRecord, transition, type Phase, type RebalancePath, type TaskRecord } from './task-state.js';
import { ChunkCredits } from './chunk-credits.js';

export type { DemanderHooks, DemanderCounters } from './task.js';

/** One task as status shows it. */
export interface DemanderTaskStatus {
  cache: string;
  partition: number;
  path?: RebalancePath;
  reason?: string;
  supplier?: string;
  phase: Phase;
  bytesDone: number;
  bytesTotal: number;
  entries: number;
  mbPerSec: number;
  etaSec?: number;
  tempWalBytes: number;
  replayLagRecords: number;
  restarts: number;
  fenceMs?: number;
  bytesNotResent: number;
  /** Bytes cut from a torn tail when this task's temporary WAL was recovered after a restart. */
  tempWalTruncatedBytes: number;
  phaseTimes: Partial<Record<Phase, number>>;
  error?: string;
}

export interface DemanderOptions {
  /** File layer for temp files and logs (tests inject free-space and faults). Default realFileLayer. */
  fileLayer?: FileLayer;
  hooks?: DemanderHooks;
  /** fsync the temp file and persist the verified offset at least every this many bytes (default 8 MiB). */
  persistEveryBytes?: number;
}

/** How often the queue is looked at even without an event (a raised receiveSlots, backoffs). */
const PUMP_INTERVAL_MS = 250;
const BACKOFF_MIN_MS = 200;
/** A restart re-receives at most this much of a file (each persist costs an fsync and a record write). */
const PERSIST_EVERY_BYTES_DEFAULT = 8 << 20;
const BACKOFF_MAX_MS = 3_000;

type Status = 'new' | 'open' | 'closing' | 'closed';

export class DemanderManager {
  private status: Status = 'new';
  private readonly tasks = new Map<string, Task>();
  private readonly logs = new Map<string, CatchUpLog>();
  /** Records found at start-up, waiting for the first topology. */
  private recovered = new Map<string, TaskRecord>();
  private firstTopologySeen = false;
  private running = 0;
  /** Receive slots taken (see RunContext.streamDone). */
  private slotsInUse = 0;
  private timer: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;
  private readonly fl: FileLayer;
  private readonly taskStore: TaskStore;
  private readonly runner: TaskRunner;
  private readonly hooks: DemanderHooks;
  readonly counters: DemanderCounters = {
    bytesReceived: { file: 0, historical: 0, full: 0 },
    bytesNotResent: 0,
    bytesPrewarmed: 0,
    updatesLogged: 0,
    corruptChunks: 0,
    tempWalTruncatedBytes: 0,
    resumes: 0,
    restarts: 0,
    fences: 0,
    lastFenceMs: 0,
    partitionsDone: 0,
  };

  constructor(
    private readonly host: DemanderHost,
    opts: DemanderOptions = {},
  ) {
    // Temp files and task records go through the node's file layer unless a test passes one.
    this.fl = opts.fileLayer ?? host.fileLayer ?? realFileLayer;
    this.hooks = opts.hooks ?? {};
    this.taskStore = new TaskStore(`${host.config.dataDir}/tmp/rebalance`, this.fl);
    this.runner = new TaskRunner({
      host,
      fl: this.fl,
      taskStore: this.taskStore,
      hooks: this.hooks,
      counters: this.counters,
      persistEveryBytes: opts.persistEveryBytes ?? PERSIST_EVERY_BYTES_DEFAULT,
      credits: new ChunkCredits(() => this.host.config.rebalance.receiveChunksMax),
      busy: (except) => this.busy(except),
      save: (task, at) => this.save(task, at),
      finished: (task) => this.finished(task),
      streamDone: (task) => this.freeSlot(task),
    });
  }

  /** The directory of records, temp files and temp WALs. */
  get dir(): string {
    return this.taskStore.dir;
  }

  /** Lists leftovers of an earlier run: keeps readable records for the first topology, removes the rest. */
  async open(): Promise<void> {
    if (this.status !== 'new') return;
    await this.taskStore.open();
    const scan = await this.taskStore.scan();
    const named = new Set<string>();
    for (const r of scan.records) {
      this.recovered.set(taskKey(r.cacheId, r.partition), r);
      if (r.transfer) named.add(r.transfer.tempFile);
    }
    const removals = [
      ...scan.unreadable,
      ...scan.other,
      ...scan.tempFiles.filter((f) => !named.has(f)),
      ...[...scan.tempWals].filter(([k]) => !this.recovered.has(k)).map(([, name]) => name),
    ];
    for (const name of removals) {
      this.host.log.warn({ file: name }, 'removing a rebalance leftover');
      await this.taskStore.rm(this.taskStore.tempFilePath(name));
    }
    this.status = 'open';
    this.timer = setInterval(() => this.pump(), PUMP_INTERVAL_MS);
    this.timer.unref();
  }

  // ------------------------------------------------------------------ topology events

  /**
   * The copy of (cache, partition) became MOVING here under topology `version` (called inside
   * applyTopology, before the ack): from now on its replicated updates go to its temporary WAL.
   */
  async onMoving(cache: { name: string; cacheId: number }, partition: number, version: number): Promise<void> {
    this.checkOpen();
    const key = taskKey(cache.cacheId, partition);
    const have = this.tasks.get(key);
    if (have && !have.cancelled && !have.done) return; // already receiving it
    if (have) await this.forget(have);
    const { record, next } = await this.resumeOrCreate(cache, partition, version);
    // The record exists before the temp WAL: a temp WAL with no record is a leftover.
    await this.taskStore.save(record);
    const log = await CatchUpLog.open({
      dir: this.taskStore.tempWalDir(cache.cacheId, partition),
      segmentBytes: this.host.config.wal.tempSegmentBytes,
      recordBytesMax: this.host.config.wal.recordBytesMax,
      fileLayer: this.fl,
    });
    this.logs.set(key, log);
    this.host.store.suspendIndexes(cache.cacheId, partition);
    const task: Task = { key, record, log, abort: new AbortController(), next, active: false, holdsSlot: false, cancelled: false, done: false, notBefore: 0, failures: 0, avoid: new Set() };
    this.tasks.set(key, task);
    const rec = log.wal.recovery;
    // A torn tail (a crash mid-append) is cut on open; its counters come back through HISTORICAL.
    this.counters.tempWalTruncatedBytes += rec.truncatedBytes;
    if (rec.records > 0 || rec.truncatedBytes > 0) this.host.log.info({ cache: cache.name, partition, records: rec.records, truncatedBytes: rec.truncatedBytes }, 'temporary WAL recovered');
  }

  /** A record left by an earlier run is resumed per the recovery table; otherwise a fresh record. */
  private async resumeOrCreate(cache: { name: string; cacheId: number }, partition: number, version: number): Promise<{ record: TaskRecord; next: NextStep }> {
    const key = taskKey(cache.cacheId, partition);
    const old = this.recovered.get(key);
    this.recovered.delete(key);
    if (!old || old.cache !== cache.name) {
      if (old) await this.removeFiles(old);
      return { record: newTaskRecord(cache.name, cache.cacheId, partition, version, Date.now()), next: 'start' };
    }
    const tempPath = old.transfer ? this.taskStore.tempFilePath(old.transfer.tempFile) : undefined;
    const tempFileBytes = tempPath && (await this.fl.exists(tempPath)) ? await this.fl.fileSize(tempPath) : undefined;
    const localLwm = this.host.store.partitionOrUndefined(cache.cacheId, partition)?.counter.lwm ?? 0;
    const action = planRecovery(old, { moving: true, tempFileBytes, localLwm });
    this.host.log.info({ cache: cache.name, partition, phase: old.phase, action: action.kind, row: action.row, why: action.why }, 'resuming a rebalance task after a restart');
    old.sinceVersion = version;
    // Not a transition: the record is put back where the table says the work continues.
    const now = Date.now();
    switch (action.kind) {
      case 'resumeStream':
        return { record: old, next: 'resumeStream' };
      case 'redoSwap':
        return { record: old, next: 'redoSwap' };
      case 'resumeIndexing':
        old.phase = 'INDEXING';
        old.phaseTimes.INDEXING = now;
        return { record: old, next: 'resumeAt' };
      default: {
        if (tempPath) await this.taskStore.rm(tempPath);
        // The old snapshot will not be pulled again: let its supplier free the delta, the WAL
        // reservation and the slot now instead of at its idle timeout (best effort).
        if (old.transfer && old.supplier) {
          this.host
            .request(old.supplier, 'snapshotRelease', { transferId: old.transfer.transferId, reason: 'demander restarted the partition' })
            .catch((err) => this.host.log.debug({ err }, 'snapshotRelease after a restart failed (the supplier times it out)'));
        }
        const fresh = newTaskRecord(cache.name, cache.cacheId, partition, version, now);
        fresh.restarts = old.restarts + (old.phase === 'PENDING' ? 0 : 1);
        fresh.forcedPath = old.forcedPath;
        fresh.forcedReason = old.forcedReason;
        fresh.error = old.phase === 'PENDING' ? old.error : `restarted after a crash in ${old.phase}: ${action.why}`;
        return { record: fresh, next: 'start' };
      }
    }
  }

  /**
   * The copy is no longer MOVING here, or its cache is dropped: aborts and awaits the attempt,
   * releases the supplier, removes the temp file, temp WAL and record. With `applyLogged` (the copy
   * became OWNING without finishing: every other copy was lost) the logged updates are applied to
   * the store first instead of being thrown away.
   */
  async cancel(cacheId: number, partition: number, why: string, opts: { applyLogged?: boolean } = {}): Promise<void> {
    const key = taskKey(cacheId, partition);
    const task = this.tasks.get(key);
    const log = this.logs.get(key);
    if (task && !task.done && !task.cancelled) {
      task.cancelled = true;
      task.abort.abort();
      await this.runner.closeLink(task);
      await task.run?.catch(() => undefined);
      this.runner.releaseSnapshot(task, `cancelled: ${why}`);
      if (!isTerminal(task.record.phase)) transition(task.record, 'CANCELLED', Date.now());
      task.record.error = why;
      this.host.log.info({ cache: task.record.cache, partition, why }, 'rebalance cancelled');
    }
    this.logs.delete(key);
    if (log) {
      if (opts.applyLogged && !log.closed && log.mode !== 'direct') {
        await replayCatchUpLog(log, (batch) => this.applyEncoded(batch), { fenceLagRecords: Number.MAX_SAFE_INTEGER });
      }
      await log.destroy();
      // The copy stays (OWNING): its index part, suspended since it became MOVING, is rebuilt.
      if (opts.applyLogged) await this.host.store.rebuildIndexes(cacheId, partition);
    }
    if (task) await this.removeFiles(task.record);
  }

  /** Cancels every task of a cache (it is being dropped). */
  async cancelCache(cacheId: number): Promise<void> {
    for (const t of [...this.tasks.values()]) {
      if (t.record.cacheId === cacheId) await this.cancel(cacheId, t.record.partition, 'cache dropped');
    }
  }

  /**
   * True while a task for the partition is receiving: not cancelled and not yet OWNING. A task in
   * OWNING has reported; the coordinator's OWNING topology usually arrives before that report
   * returns, and must not be mistaken for "OWNING without our report".
   */
  isReceiving(cacheId: number, partition: number): boolean {
    const t = this.tasks.get(taskKey(cacheId, partition));
    return t !== undefined && !t.done && !t.cancelled && t.record.phase !== 'OWNING';
  }

  /** After a topology was applied: forgets settled tasks, removes unclaimed records (first topology), starts what can start. */
  async onTopology(t: Topology): Promise<void> {
    for (const task of [...this.tasks.values()]) {
      const state = t.partitions[task.record.cache]?.[task.record.partition]?.copies[this.host.selfId];
      if ((task.done || task.cancelled) && state !== 'MOVING') this.tasks.delete(task.key);
    }
    if (!this.firstTopologySeen) {
      this.firstTopologySeen = true;
      for (const r of this.recovered.values()) {
        this.host.log.info({ cache: r.cache, partition: r.partition, phase: r.phase }, 'removing a rebalance task whose copy is no longer MOVING here');
        await this.removeFiles(r);
      }
      this.recovered.clear();
    }
    this.pump();
  }

  // ------------------------------------------------------------------ write path

  /**
   * Routes one replicated update (`payload` = its update-codec encoding): true when it went to the
   * partition's temporary WAL (acknowledge now), false when the caller applies it to the store.
   */
  offer(u: Update, payload: Buffer): Promise<boolean> {
    const log = this.logs.get(taskKey(u.cacheId, u.partition));
    if (!log) return Promise.resolve(false);
    return log.offer(payload).then((logged) => {
      if (logged) this.counters.updatesLogged++;
      return logged;
    });
  }

  // ------------------------------------------------------------------ scheduling

  private pump(): void {
    if (this.status !== 'open') return;
    const slots = this.host.config.rebalance.receiveSlots;
    const now = Date.now();
    for (const task of this.tasks.values()) {
      if (this.slotsInUse >= slots) return;
      if (task.active || task.cancelled || task.done || task.notBefore > now) continue;
      this.start(task);
    }
  }

  private start(task: Task): void {
    task.active = true;
    task.holdsSlot = true;
    this.running++;
    this.slotsInUse++;
    task.run = this.runner
      .attempt(task)
      .then((o) => {
        if (o.kind === 'done' || o.kind === 'stopped') {
          task.failures = 0;
          task.waitReason = undefined;
          return;
        }
        task.failures++;
        const delay = Math.min(BACKOFF_MIN_MS * 2 ** Math.min(task.failures - 1, 10), BACKOFF_MAX_MS);
        task.notBefore = Date.now() + delay;
        task.waitReason = `${o.why} (retry in ${delay} ms)`;
        this.host.log.info({ cache: task.record.cache, partition: task.record.partition, phase: task.record.phase, why: o.why, delayMs: delay }, 'rebalance task waits before its next attempt');
      })
      .catch((err) => this.host.log.error({ err, cache: task.record.cache, partition: task.record.partition }, 'rebalance task crashed'))
      .finally(() => {
        task.active = false;
        this.running--;
        this.freeSlot(task);
        this.pump();
      });
  }

  /** Gives the task's receive slot back (idempotent) and lets the next task start. */
  private freeSlot(task: Task): void {
    if (!task.holdsSlot) return;
    task.holdsSlot = false;
    this.slotsInUse--;
    this.pump();
  }

  private busy(except: Task): Map<string, number> {
    const m = new Map<string, number>();
    for (const t of this.tasks.values()) {
      if (t === except || !t.active || !t.record.supplier) continue;
      m.set(t.record.supplier, (m.get(t.record.supplier) ?? 0) + 1);
    }
    return m;
  }

  // ------------------------------------------------------------------ persistence and cleanup

  private async save(task: Task, transferAt?: { verifiedOffset: number; runningCrc: number }): Promise<void> {
    if (task.cancelled || this.status === 'closed') return;
    const r = task.record;
    await this.taskStore.save(transferAt && r.transfer ? { ...r, transfer: { ...r.transfer, ...transferAt } } : r);
  }

  /** OWNING was reported: the log (direct by now), temp file and record go. */
  private async finished(task: Task): Promise<void> {
    const log = this.logs.get(task.key);
    if (log === task.log) this.logs.delete(task.key);
    await task.log.destroy();
    await this.removeFiles(task.record);
  }

  private async removeFiles(r: TaskRecord): Promise<void> {
    if (r.transfer) await this.taskStore.rm(this.taskStore.tempFilePath(r.transfer.tempFile));
    if (!this.logs.has(taskKey(r.cacheId, r.partition))) await this.taskStore.rm(this.taskStore.tempWalDir(r.cacheId, r.partition));
    await this.taskStore.remove(r.cacheId, r.partition);
  }

  /** Drops a settled task whose copy became MOVING again. */
  private async forget(task: Task): Promise<void> {
    this.tasks.delete(task.key);
    const log = this.logs.get(task.key);
    if (log === task.log) {
      this.logs.delete(task.key);
      await log.destroy();
    }
  }

  private async applyEncoded(batch: Buffer[]): Promise<void> {
    await Promise.all(batch.map((b) => this.host.store.apply(decodeUpdate(b))));
  }

  // ------------------------------------------------------------------ status

  /** Tasks this node runs (any phase). */
  get taskCount(): number {
    return this.tasks.size;
  }

  /** Every task, for `ptn status` and `ptn rebalance watch`. */
  list(): DemanderTaskStatus[] {
    return [...this.tasks.values()].map((t) => this.describe(t));
  }

  private describe(t: Task): DemanderTaskStatus {
    const r = t.record;
    const s = t.log.closed ? undefined : t.log.stats;
    let mbPerSec = 0;
    let etaSec: number | undefined;
    if (t.rate && r.phase === 'STREAMING' && r.transfer) {
      const sec = (performance.now() - t.rate.startMs) / 1000;
      const bytes = r.transfer.verifiedOffset - t.rate.startBytes;
      if (sec > 0 && bytes > 0) {
        mbPerSec = Math.round((bytes / sec / 1e6) * 100) / 100;
        etaSec = Math.round(((r.transfer.fileBytes - r.transfer.verifiedOffset) / (bytes / sec)) * 10) / 10;
      }
    }
    return {
      cache: r.cache,
      partition: r.partition,
      path: r.path,
      reason: r.reason,
      supplier: r.supplier,
      phase: r.phase,
      bytesDone: r.bytesDone,
      bytesTotal: r.bytesTotal,
      entries: r.entries,
      mbPerSec,
      etaSec,
      tempWalBytes: s?.diskBytes ?? 0,
      replayLagRecords: s?.lagRecords ?? 0,
      restarts: r.restarts,
      fenceMs: r.fenceMs,
      bytesNotResent: r.bytesNotResent,
      tempWalTruncatedBytes: t.log.wal.recovery.truncatedBytes,
      phaseTimes: { ...r.phaseTimes },
      error: t.waitReason ?? r.error,
    };
  }

  /** Figures for metrics: counters plus what the open logs hold now. */
  metrics(): DemanderCounters & { tempWalBytes: number; replayLagRecords: number; tasks: number; running: number } {
    let tempWalBytes = 0;
    let replayLagRecords = 0;
    for (const log of this.logs.values()) {
      if (log.closed) continue;
      const s = log.stats;
      tempWalBytes += s.diskBytes;
      replayLagRecords += s.lagRecords;
    }
    return { ...this.counters, bytesReceived: { ...this.counters.bytesReceived }, tempWalBytes, replayLagRecords, tasks: this.tasks.size, running: this.running };
  }

  // ------------------------------------------------------------------ lifecycle

  private checkOpen(): void {
    if (this.status !== 'open') throw ptnError(this.status === 'new' ? ErrorCode.ERR_NOT_OPEN : ErrorCode.ERR_CLOSED, `demander is ${this.status}`);
  }

  /** Stops every attempt and closes the logs, keeping records and files for a restart. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.closeImpl();
    return this.closing;
  }

  private async closeImpl(): Promise<void> {
    this.status = 'closing';
    if (this.timer) clearInterval(this.timer);
    for (const t of this.tasks.values()) t.abort.abort();
    for (const t of this.tasks.values()) {
      await this.runner.closeLink(t);
      await t.run?.catch(() => undefined);
    }
    for (const log of this.logs.values()) await log.close().catch((err) => this.host.log.warn({ err }, 'closing a temporary WAL failed'));
    this.logs.clear();
    this.status = 'closed';
  }
}
