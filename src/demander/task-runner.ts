/**
 * One attempt of a demander task: from where the task stands to OWNING (task-state.ts shows the
 * phases of each path). The manager (manager.ts) decides when an attempt runs (receive slots,
 * backoff) and owns the catch-up logs; this file does the work of each phase.
 *
 * Error handling, by where the attempt is:
 *   PENDING                          → stays PENDING, retried after a backoff; status says why
 *                                      (no owner, ERR_BUSY, ERR_DISK_FULL …)
 *   STREAMING, cut connection        → resumed from the verified offset (p-retry, resumeRetries,
 *                                      backoff only when an attempt made no progress)
 *   STREAMING, supplier gone / bad   → start over with another supplier (failover, new snapshot)
 *   snapshot gone, whole-file CRC    → start over
 *   STREAMING/SWAPPING/FILLING other → FAILED, then start over after a backoff
 *   INDEXING/REPLAYING/HISTORICAL    → the phase is redone after a backoff (idempotent)
 *   history gone / incomplete        → start over on the file path ("says so in status")
 * "Start over" = back to PENDING: the temporary file and the snapshot are released, the temporary
 * WAL is KEPT (it holds acknowledged updates) and goes back to logging mode.
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { randomUUID } from 'node:crypto';
import pRetry, { AbortError } from 'p-retry';
import { ErrorCode, isPtnError, ptnError } from '../errors.js';
import { faults } from '../testing/fault-points.js';
import type { Update } from '../store/store.js';
import { decodeUpdate } from '../cluster/update-codec.js';
import { chooseSupplier, choosePath } from './choice.js';
import { receiveFile, type SupplierLink } from './file-receiver.js';
import { fetchHistory } from './history-fetch.js';
import { coalesceRanges, missingFromSupplier, rangeCount } from './missing.js';
import { Method, parsePartitionInfo, parseSnapshotOpened, type PartitionInfo } from './protocol.js';
import { replayCatchUpLog } from './replay.js';
import { transition, type Phase, type TaskRecord } from './task-state.js';
import { abortable, StartOver, type Outcome, type RunContext, type Task } from './task.js';

/** Replayed records applied between two yields to the event loop. */
const REPLAY_SLICE_RECORDS = 64;


/** Missing ranges closer than this are fetched in one history request. */
const HISTORY_JOIN_GAP = 64;
/** Start-overs in one attempt before it backs off. */
const START_OVERS_PER_ATTEMPT = 3;
const RESUMABLE = new Set<string>([ErrorCode.ERR_CONNECTION_CLOSED, ErrorCode.ERR_REQUEST_TIMEOUT, ErrorCode.ERR_HANDSHAKE_TIMEOUT, ErrorCode.ERR_BUSY, ErrorCode.ERR_PEER_BUSY]);

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });

function describe(err: unknown): string {
  if (err instanceof StartOver) return err.why;
  return isPtnError(err) ? `${err.code}: ${err.message}` : String((err as Error)?.message ?? err);
}

export class TaskRunner {
  constructor(private readonly ctx: RunContext) {}

  private get cfg() {
    return this.ctx.host.config.rebalance;
  }

  /** Runs one attempt of `task` (see the file comment). Never throws. */
  async attempt(task: Task): Promise<Outcome> {
    const signal = task.abort.signal;
    let startOvers = 0;
    try {
      await abortable(this.ctx.host.waitFor(task.record.sinceVersion, true, 3_600_000), signal);
    } catch (err) {
      return signal.aborted ? { kind: 'stopped' } : { kind: 'retry', why: describe(err) };
    }
    for (;;) {
      try {
        await this.drive(task);
        return { kind: 'done' };
      } catch (err) {
        if (signal.aborted || task.cancelled) return { kind: 'stopped' };
        if (err instanceof StartOver) {
          await this.startOver(task, err);
          if (++startOvers < START_OVERS_PER_ATTEMPT) continue;
          return { kind: 'retry', why: err.why };
        }
        return this.failed(task, err);
      }
    }
  }

  private async failed(task: Task, err: unknown): Promise<Outcome> {
    const r = task.record;
    const why = describe(err);
    r.error = why;
    if (r.phase === 'STREAMING' || r.phase === 'SWAPPING' || r.phase === 'FILLING') {
      this.ctx.host.log.warn({ err, cache: r.cache, partition: r.partition, phase: r.phase }, 'rebalance attempt failed; starting over after a backoff');
      await this.enter(task, 'FAILED');
      task.next = 'start';
    } else if (r.phase !== 'PENDING') {
      this.ctx.host.log.warn({ err, cache: r.cache, partition: r.partition, phase: r.phase }, 'rebalance step failed; redoing it after a backoff');
      task.next = 'resumeAt';
      await this.ctx.save(task).catch(() => undefined);
    }
    return { kind: 'retry', why };
  }

  /** Back to PENDING (see the file comment). */
  private async startOver(task: Task, so: StartOver): Promise<void> {
    const r = task.record;
    this.ctx.host.log.warn({ cache: r.cache, partition: r.partition, phase: r.phase, why: so.why }, 'rebalance starts the partition over');
    if (so.opts.avoid) task.avoid.add(so.opts.avoid);
    if (so.opts.forced) {
      r.forcedPath = so.opts.forced.path;
      r.forcedReason = so.opts.forced.reason;
    }
    this.releaseSnapshot(task, `start over: ${so.why}`);
    await this.closeLink(task);
    if (r.transfer) await this.ctx.taskStore.rm(this.ctx.taskStore.tempFilePath(r.transfer.tempFile));
    task.log.relog();
    this.ctx.host.store.suspendIndexes(r.cacheId, r.partition);
    r.error = so.why;
    this.ctx.counters.restarts++;
    transition(r, 'PENDING', Date.now());
    task.next = 'start';
    await this.ctx.save(task);
  }

  /**
   * Runs the task from `task.next` to OWNING. After the data phase every path is in INDEXING
   * (file, full) or HISTORICAL (historical path, first pass); an attempt that resumes after a failed
   * step redoes INDEXING onwards, except a failed REPLAYING whose index part is already live.
   */
  private async drive(task: Task): Promise<void> {
    const r = task.record;
    switch (task.next) {
      case 'start':
        // A FAILED attempt (or one stopped mid-way) starts over here; clear what it left.
        if (r.phase !== 'PENDING') await this.startOver(task, new StartOver(`after ${r.phase}: ${r.error ?? 'retry'}`));
        await this.startData(task);
        break;
      case 'resumeStream':
        await this.stream(task, true);
        this.ctx.streamDone(task);
        await this.swap(task);
        break;
      case 'redoSwap':
        await this.swap(task);
        break;
      case 'resumeAt':
        if (r.phase === 'OWNING') return this.finish(task);
        break;
    }
    task.next = 'resumeAt';
    if (r.phase !== 'REPLAYING') await this.index(task);
    await this.replay(task);
    await this.historical(task);
    await this.finish(task);
  }

  // ------------------------------------------------------------------ PENDING: supplier and path

  private owners(r: TaskRecord): string[] {
    const pc = this.ctx.host.topology().partitions[r.cache]?.[r.partition];
    if (!pc) return [];
    return Object.keys(pc.copies).filter((n) => pc.copies[n] === 'OWNING' && n !== this.ctx.host.selfId);
  }

  private isOwning(r: TaskRecord, nodeId: string): boolean {
    return this.ctx.host.topology().partitions[r.cache]?.[r.partition]?.copies[nodeId] === 'OWNING';
  }

  private pickSupplier(task: Task): string {
    const r = task.record;
    const s = chooseSupplier(this.owners(r), this.ctx.busy(task), r.partition, task.avoid);
    if (!s) throw ptnError(ErrorCode.ERR_PARTITION_NOT_OWNED, `no OWNING copy of ${r.cache}/${r.partition} to pull from`);
    return s;
  }

  private async info(task: Task, link: SupplierLink): Promise<PartitionInfo> {
    const r = task.record;
    return parsePartitionInfo(await link.request(Method.partitionInfo, { cacheId: r.cacheId, partition: r.partition }));
  }

  /** PENDING: choose the supplier and the path, then run the path's data phase. */
  private async startData(task: Task): Promise<void> {
    const r = task.record;
    const { store, log, config } = this.ctx.host;
    const supplier = this.pickSupplier(task);
    r.supplier = supplier;
    const link = await this.ensureLink(task, supplier);
    const info = await this.info(task, link);
    const ps = store.partitionOrUndefined(r.cacheId, r.partition);
    const local = ps ? { lwm: ps.counter.lwm, hwm: ps.counter.hwm, entryCount: ps.entryCount } : undefined;
    const forced = r.forcedPath ? { path: r.forcedPath, reason: r.forcedReason ?? 'forced' } : undefined;
    const { path, reason } = choosePath({ local, supplier: info, forced, fileMinBytes: config.rebalance.fileMinBytes, historicalMaxCounterGap: config.rebalance.historicalMaxCounterGap });
    r.path = path;
    r.reason = reason;
    r.forcedPath = undefined;
    r.forcedReason = undefined;
    task.waitReason = undefined;
    log.info({ cache: r.cache, partition: r.partition, supplier, path, reason }, 'rebalance path chosen');
    if (path === 'file') {
      await this.openSnapshot(task, link, info);
      await this.stream(task, false);
      this.ctx.streamDone(task);
      await this.swap(task);
    } else if (path === 'full') {
      await this.fill(task, supplier, info);
    } else {
      r.expectLwm = local?.lwm ?? 0;
      await this.enter(task, 'HISTORICAL');
      await this.fetchMissing(task);
    }
  }

  // ------------------------------------------------------------------ file path

  private async openSnapshot(task: Task, link: SupplierLink, info: PartitionInfo): Promise<void> {
    const r = task.record;
    await this.checkDisk(info.fileBytes);
    const transferId = randomUUID();
    let opened;
    try {
      opened = parseSnapshotOpened(await link.request(Method.snapshotOpen, { cacheId: r.cacheId, partition: r.partition, transferId }), transferId);
      if (task.abort.signal.aborted) throw ptnError(ErrorCode.ERR_REBALANCE_CANCELLED, 'cancelled while the snapshot opened');
    } catch (err) {
      // A cut or a cancel while the supplier was opening: it may hold the snapshot anyway.
      if (!isPtnError(err, ErrorCode.ERR_BUSY)) this.release(r.supplier!, transferId, `open failed: ${describe(err)}`);
      throw err;
    }
    r.transfer = {
      transferId,
      tempFile: this.ctx.taskStore.tempFileName(r.cacheId, r.partition, transferId),
      fileBytes: opened.fileBytes,
      chunkBytes: opened.chunkBytes,
      pageSize: opened.pageSize,
      entryCount: opened.entryCount,
      counter: opened.counter,
      verifiedOffset: 0,
      runningCrc: 0,
    };
    r.expectLwm = opened.counter.lwm;
    r.bytesTotal = opened.fileBytes;
    r.bytesDone = 0;
    try {
      if (opened.fileBytes > info.fileBytes) await this.checkDisk(opened.fileBytes);
    } catch (err) {
      this.releaseSnapshot(task, 'not enough disk space');
      r.transfer = undefined;
      throw err;
    }
    await this.enter(task, 'STREAMING');
  }

  /** ERR_DISK_FULL unless the temp dir has room for the file plus the margin. */
  private async checkDisk(fileBytes: number): Promise<void> {
    const dir = this.ctx.taskStore.dir;
    const free = await this.ctx.fl.freeBytes(dir);
    const need = fileBytes + this.cfg.diskSpaceMarginBytes;
    if (free < need) {
      throw ptnError(ErrorCode.ERR_DISK_FULL, `${free} bytes free in ${dir}, need ${need} (file ${fileBytes} + margin ${this.cfg.diskSpaceMarginBytes})`, {
        details: { free, need, fileBytes },
      });
    }
  }

  /** STREAMING: receives the snapshot, resuming after cuts; fails over when the supplier is gone. */
  private async stream(task: Task, resume: boolean): Promise<void> {
    const r = task.record;
    const t = r.transfer!;
    const supplier = r.supplier!;
    const tempPath = this.ctx.taskStore.tempFilePath(t.tempFile);
    const file = await this.ctx.fl.open(tempPath, (await this.ctx.fl.exists(tempPath)) ? 'r+' : 'w+');
    let progress = 0;
    try {
      await file.truncate(t.verifiedOffset); // bytes past it were never verified and persisted
      await pRetry(
        async () => {
          progress = 0;
          if (task.abort.signal.aborted) throw new AbortError(ptnError(ErrorCode.ERR_REBALANCE_CANCELLED, 'cancelled'));
          if (!this.isOwning(r, supplier)) throw new AbortError(new StartOver(`supplier ${supplier} is no longer an OWNING copy`, { avoid: supplier }));
          const link = await this.ensureLink(task, supplier);
          if (resume) await this.reopen(task, link);
          resume = true;
          task.rate = { startMs: performance.now(), startBytes: t.verifiedOffset };
          await receiveFile({
            link,
            file,
            state: t,
            window: this.cfg.chunkWindow,
            credits: this.ctx.credits,
            persistEveryBytes: this.ctx.persistEveryBytes,
            persist: (at) => this.ctx.save(task, at),
            signal: task.abort.signal,
            pace: this.pace(task),
            onCorrupt: (err) => {
              this.ctx.counters.corruptChunks++;
              this.ctx.host.log.warn({ err, cache: r.cache, partition: r.partition }, 'corrupt chunk; asked for again');
            },
            onVerified: async (n) => {
              progress += n;
              r.bytesDone = t.verifiedOffset;
              this.ctx.counters.bytesReceived.file += n;
              await this.ctx.hooks.onChunkVerified?.({ cache: r.cache, partition: r.partition, verifiedOffset: t.verifiedOffset, fileBytes: t.fileBytes }, link);
              // TEST ONLY (no-op in production): lets the fault suite act at a share of the file received.
              await faults().hitProgress('demander.received', t.verifiedOffset - n, t.verifiedOffset, t.fileBytes, { cacheId: r.cacheId, partition: r.partition });
            },
          });
        },
        {
          retries: this.cfg.resumeRetries,
          signal: task.abort.signal, // a cancel does not wait out a backoff
          factor: 2,
          minTimeout: 100,
          maxTimeout: 2000,
          shouldRetry: ({ error }) => isPtnError(error) && RESUMABLE.has(error.code) && !task.abort.signal.aborted,
          // A cut after progress reconnects at once and costs no retry; repeated failures back off.
          shouldConsumeRetry: () => progress === 0,
          onFailedAttempt: ({ error, retriesLeft }) => {
            if (isPtnError(error) && RESUMABLE.has(error.code)) {
              this.ctx.host.log.info({ cache: r.cache, partition: r.partition, supplier, code: error.code, verifiedOffset: t.verifiedOffset, retriesLeft }, 'transfer interrupted; resuming');
            }
          },
        },
      );
    } catch (err) {
      if (err instanceof StartOver || task.abort.signal.aborted) throw err;
      if (isPtnError(err, ErrorCode.ERR_TRANSFER_CORRUPT) && err.details?.wholeFile) throw new StartOver(`whole-file check failed: ${err.message}`);
      if (isPtnError(err) && (RESUMABLE.has(err.code) || err.code === ErrorCode.ERR_TRANSFER_CORRUPT || err.code === ErrorCode.ERR_PARTITION_NOT_OWNED)) {
        throw new StartOver(`supplier ${supplier} failed (${err.code}); failing over`, { avoid: supplier });
      }
      throw err;
    } finally {
      await file.close().catch(() => undefined);
    }
  }

  /** Resumes a transfer on a new connection; ERR_SNAPSHOT_GONE → start over. */
  private async reopen(task: Task, link: SupplierLink): Promise<void> {
    const r = task.record;
    const t = r.transfer!;
    let opened;
    try {
      opened = parseSnapshotOpened(await link.request(Method.snapshotOpen, { cacheId: r.cacheId, partition: r.partition, transferId: t.transferId, resume: true }), t.transferId);
    } catch (err) {
      if (isPtnError(err, ErrorCode.ERR_SNAPSHOT_GONE)) throw new AbortError(new StartOver(`the supplier no longer has snapshot ${t.transferId}`));
      throw err;
    }
    if (opened.fileBytes !== t.fileBytes || opened.chunkBytes !== t.chunkBytes) {
      throw new AbortError(new StartOver(`snapshot ${t.transferId} changed shape on resume`));
    }
    r.bytesNotResent += t.verifiedOffset;
    this.ctx.counters.bytesNotResent += t.verifiedOffset;
    this.ctx.counters.resumes++;
    this.ctx.host.log.info({ cache: r.cache, partition: r.partition, transferId: t.transferId, fromOffset: t.verifiedOffset }, 'transfer resumed');
  }

  /** SWAPPING: the verified file replaces the partition. */
  /** The task's turn behind the writes (the node's pacer; none without one), ended early by its abort. */
  private pace(task: Task): (() => Promise<void>) | undefined {
    const pacer = this.ctx.host.pacer;
    return pacer ? () => pacer.turn(task.abort.signal) : undefined;
  }

  private async swap(task: Task): Promise<void> {
    const r = task.record;
    if (r.phase !== 'SWAPPING') await this.enter(task, 'SWAPPING');
    const { store } = this.ctx.host;
    const ps = await store.swapInPartition(r.cacheId, r.partition, this.ctx.taskStore.tempFilePath(r.transfer!.tempFile));
    r.entries = ps.entryCount;
    // The replay touches pages all over the new file: one sequential read beats one per page.
    const warmed = await store.prewarmPartition(r.cacheId, r.partition, this.cfg.prewarmBytesMax, this.pace(task));
    this.ctx.counters.bytesPrewarmed += warmed;
    await this.enter(task, 'INDEXING');
  }

  // ------------------------------------------------------------------ full path

  /** FILLING: entry by entry into an empty partition (stale local data would survive a fill). */
  private async fill(task: Task, supplier: string, info: PartitionInfo): Promise<void> {
    const r = task.record;
    const { store } = this.ctx.host;
    await this.enter(task, 'FILLING');
    r.bytesTotal = info.fileBytes;
    if (store.hasPartition(r.cacheId, r.partition)) await store.destroyPartition(r.cacheId, r.partition);
    await store.ensurePartition(r.cacheId, r.partition);
    store.suspendIndexes(r.cacheId, r.partition);
    let res;
    try {
      res = await this.ctx.host.pullFull(supplier, r.cacheId, r.partition, task.abort.signal, (bytes, entries) => {
        r.bytesDone += bytes;
        r.entries += entries;
        this.ctx.counters.bytesReceived.full += bytes;
      });
      if (task.abort.signal.aborted) throw ptnError(ErrorCode.ERR_REBALANCE_CANCELLED, 'cancelled');
      if (res.counter) await store.markCountersApplied(r.cacheId, r.partition, res.counter.lwm, res.counter.gaps);
    } catch (err) {
      if (isPtnError(err, ErrorCode.ERR_COUNTER_GAPS_OVERFLOW)) {
        const reason = 'the full path overflowed the counter gaps (scattered counters); the file carries its counter state';
        throw new StartOver(reason, { forced: { path: 'file', reason } });
      }
      throw err;
    }
    r.expectLwm = res.counter?.lwm ?? 0;
    await store.checkpointAfterNow('rebalance-fill'); // marked counters are not in the WAL
    await this.enter(task, 'INDEXING');
  }

  // ------------------------------------------------------------------ common phases

  /** INDEXING: the partition's part of every secondary index, rebuilt from its pages. */
  private async index(task: Task): Promise<void> {
    const r = task.record;
    // Updates must reach the log while the part is rebuilt (a direct apply would miss the index).
    task.log.relog();
    if (r.phase !== 'INDEXING') await this.enter(task, 'INDEXING');
    this.ctx.host.store.suspendIndexes(r.cacheId, r.partition);
    await this.ctx.host.store.rebuildIndexes(r.cacheId, r.partition);
  }

  /** REPLAYING: the catch-up log, drained under a fence at the end. */
  private async replay(task: Task): Promise<void> {
    const r = task.record;
    if (r.phase !== 'REPLAYING') await this.enter(task, 'REPLAYING');
    const res = await replayCatchUpLog(task.log, (batch) => this.applyEncoded(r, batch), {
      fenceLagRecords: this.cfg.replayFenceLagRecords,
      signal: task.abort.signal,
    });
    r.fenceMs = res.fenceMs;
    this.ctx.counters.fences++;
    this.ctx.counters.lastFenceMs = res.fenceMs;
    this.ctx.host.log.info({ cache: r.cache, partition: r.partition, records: res.records, fenceRecords: res.fenceRecords, fenceMs: Math.round(res.fenceMs * 100) / 100 }, 'temporary WAL replayed; direct apply');
  }

  private async applyEncoded(r: TaskRecord, batch: Buffer[]): Promise<void> {
    const updates = batch.map((b) => decodeUpdate(b));
    for (const u of updates) {
      if (u.cacheId !== r.cacheId || u.partition !== r.partition) throw ptnError(ErrorCode.ERR_TEMP_WAL_CORRUPT, `temporary WAL of ${r.cacheId}/${r.partition} holds an update of ${u.cacheId}/${u.partition}`);
    }
    // No wait for the node WAL's fsync (under the fence that wait was most of its length): the
    // records stay in the temporary WAL until finish() has flushed the node WAL, and a restart
    // before that replays the temporary WAL again (recovery.ts row 8).
    // In slices with a hop through the event loop between them: on cached pages a whole batch of
    // applies runs as one chain of microtasks, and the replicated writes waiting on the sockets
    // (acknowledged by this node) waited behind it.
    for (let i = 0; i < updates.length; i += REPLAY_SLICE_RECORDS) {
      if (i > 0) await yieldToLoop();
      await Promise.all(updates.slice(i, i + REPLAY_SLICE_RECORDS).map((u) => this.ctx.host.store.apply(u, { waitDurable: false })));
    }
  }

  private async applyUpdates(updates: Update[]): Promise<void> {
    const store = this.ctx.host.store;
    await Promise.all(updates.map((u) => store.apply(u)));
  }

  /** HISTORICAL (end of every path): missing counters from the supplier's WAL history. */
  private async historical(task: Task): Promise<void> {
    if (task.record.phase !== 'HISTORICAL') await this.enter(task, 'HISTORICAL');
    await this.fetchMissing(task);
  }

  /** Fetches the counters missing here that the supplier has (missing.ts); see the file comment for failures. */
  private async fetchMissing(task: Task): Promise<void> {
    const r = task.record;
    const { store } = this.ctx.host;
    for (let round = 0; ; round++) {
      const supplier = r.supplier && this.isOwning(r, r.supplier) ? r.supplier : this.pickSupplier(task);
      r.supplier = supplier;
      const link = await this.ensureLink(task, supplier);
      const info = await this.info(task, link);
      const wanted = () => {
        const ps = store.partitionOrUndefined(r.cacheId, r.partition);
        if (!ps) throw ptnError(ErrorCode.ERR_PARTITION_NOT_FOUND, `partition ${r.cache}/${r.partition} vanished during its rebalance`);
        return missingFromSupplier(ps.counter.missing(info.counter.hwm), info.counter);
      };
      const want = wanted();
      if (want.length === 0) return;
      // Says which counters history closes (a torn temp-WAL tail, updates missed while down …).
      this.ctx.host.log.info({ cache: r.cache, partition: r.partition, supplier, counters: rangeCount(want), from: want[0]![0] }, 'fetching missing counters from WAL history');
      try {
        await fetchHistory({
          link,
          cacheId: r.cacheId,
          partition: r.partition,
          ranges: coalesceRanges(want, HISTORY_JOIN_GAP),
          maxBytes: Math.min(this.cfg.fullBatchBytesMax, this.ctx.host.config.net.frameBytesMax - 65536),
          apply: (us) => this.applyUpdates(us),
          signal: task.abort.signal,
          onBatch: (bytes) => {
            r.bytesDone += bytes;
            this.ctx.counters.bytesReceived.historical += bytes;
          },
        });
      } catch (err) {
        if (isPtnError(err, ErrorCode.ERR_WAL_HISTORY_GONE)) {
          const reason = `WAL history of ${supplier} no longer covers counters ${want[0]![0]}..; fresh file`;
          throw new StartOver(reason, { forced: { path: 'file', reason } });
        }
        throw err;
      }
      const left = wanted();
      if (left.length === 0) return;
      if (round >= 2) {
        const reason = `history of ${supplier} lacks ${rangeCount(left)} counters it has applied; fresh file`;
        throw new StartOver(reason, { forced: { path: 'file', reason } });
      }
      await sleep(200, task.abort.signal);
    }
  }

  /**
   * Node-WAL flush, OWNING, tell the coordinator, release the snapshot, remove the leftovers.
   *
   * The flush is what makes the replayed temp-WAL records durable before the temp WAL goes: they
   * were logged to the node WAL without waiting (applyEncoded), after the swap-in checkpoint, so a
   * restart's WAL recovery replays them onto the swapped file. A checkpoint here (as before) wrote
   * every page the replay dirtied before the join could end: seconds at 1M entries.
   */
  private async finish(task: Task): Promise<void> {
    const r = task.record;
    const { host } = this.ctx;
    await host.store.nodeWal.flush();
    if (r.phase !== 'OWNING') await this.enter(task, 'OWNING');
    for (let attempt = 0; ; attempt++) {
      try {
        await abortable(host.toCoordinator('partitionOwning', { cache: r.cache, partition: r.partition, nodeId: host.selfId }), task.abort.signal);
        break;
      } catch (err) {
        if (task.abort.signal.aborted) throw err;
        host.log.debug({ err, cache: r.cache, partition: r.partition }, 'partitionOwning not delivered; retrying');
        await sleep(Math.min(100 * 2 ** Math.min(attempt, 5), 2000), task.abort.signal);
      }
    }
    this.releaseSnapshot(task, 'OWNING');
    task.done = true;
    this.ctx.counters.partitionsDone++;
    host.log.info({ cache: r.cache, partition: r.partition, path: r.path, supplier: r.supplier, bytes: r.bytesDone, entries: r.entries, restarts: r.restarts, fenceMs: r.fenceMs }, 'partition rebalanced: OWNING');
    await this.closeLink(task);
    await this.ctx.finished(task);
  }

  // ------------------------------------------------------------------ helpers

  private async enter(task: Task, phase: Phase): Promise<void> {
    const r = task.record;
    transition(r, phase, Date.now());
    if (phase !== 'FAILED') r.error = undefined;
    await this.ctx.save(task);
    // TEST ONLY (no-op in production): after the phase is persisted, so a kill here leaves a
    // restarted node exactly the record the recovery table describes for this phase.
    await faults().hit(`demander.phase.${phase}`, { cacheId: r.cacheId, partition: r.partition, phase });
    await this.ctx.hooks.onPhase?.(r, phase);
  }

  private async ensureLink(task: Task, supplier: string): Promise<SupplierLink> {
    if (task.link?.isOpen && task.linkTo === supplier) return task.link;
    await this.closeLink(task);
    const link = await this.ctx.host.connect(supplier, task.abort.signal);
    if (task.abort.signal.aborted) {
      await link.close().catch(() => undefined);
      throw ptnError(ErrorCode.ERR_REBALANCE_CANCELLED, 'cancelled');
    }
    task.link = link;
    task.linkTo = supplier;
    return link;
  }

  async closeLink(task: Task): Promise<void> {
    const link = task.link;
    task.link = undefined;
    task.linkTo = undefined;
    if (link) await link.close().catch(() => undefined);
  }

  /** Tells the supplier to release the task's snapshot (best effort, not awaited: it also times out). */
  releaseSnapshot(task: Task, reason: string): void {
    const r = task.record;
    if (r.transfer && r.supplier) this.release(r.supplier, r.transfer.transferId, reason);
  }

  /**
   * Sent over the shared peer connection, not the dedicated one: that one is usually closed right
   * after, which would drop a request still waiting for socket room.
   */
  private release(supplier: string, transferId: string, reason: string): void {
    this.ctx.host
      .request(supplier, Method.snapshotRelease, { transferId, reason })
      .catch((err) => this.ctx.host.log.debug({ err, transferId }, 'snapshotRelease failed (the supplier times it out)'));
  }
}

