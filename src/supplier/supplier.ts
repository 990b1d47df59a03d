/**
 * The supplier side of file rebalancing: serves partition snapshots and WAL history to demanders
 * (docs/rebalance-protocol.md; DESIGN.md "Rebalance, step by step", supplier steps 1–5).
 *
 * Data flow of one transfer: `snapshotOpen` → OWNING check → a send slot (FIFO, ERR_BUSY after
 * `slotWaitMs`) → WAL history reserved from the partition's counter lwm → the partition file
 * opened for reading and a delta file created → a checkpoint, at whose end the snapshot is armed
 * (length and counter recorded, copy-on-write listener on) → the image's meta page read back for
 * the counter state the file holds. Then `snapshotChunk` requests, up to `rebalance.chunkWindow`
 * at once per transfer: acknowledged offset raised → the socket's backpressure → throttle (the
 * node-wide token bucket) → the chunk read straight into the response frame, delta pages merged
 * in → CRC → optional LZ4 → sent by the connection. `snapshotTrailer` gives the whole-image CRC;
 * `snapshotRelease` (or the idle timeout, a dropped cache, a lost OWNING copy, close) frees
 * everything.
 *
 * Invariants: the bytes served are exactly the checkpoint image (snapshot.ts explains why), never
 * past its recorded length; at most `rebalance.sendSlots` transfers hold a slot; nothing a transfer
 * holds outlives its release (listener, file handle, delta file, reservation, slot, timer).
 */
import path from 'node:path';
import type { NodeConfig } from '../config.js';
import { ErrorCode, assert, isPtnError, ptnError } from '../errors.js';
import type { Body, Connection, Handler } from '../net/connection.js';
import { FRAME_HEADER_BYTES, prepareFrame, type PreparedFrame } from '../net/frames.js';
import { BufferPool } from '../util/buffer-pool.js';
import type { Store } from '../store/store.js';
import type { Topology } from '../cluster/topology.js';
import type { RebalancePacer } from '../cluster/foreground-pacer.js';
import { decodeMetaPage } from '../pagememory/meta-page.js';
import { UpdateCounter } from '../pagememory/update-counter.js';
import { type FileLayer, realFileLayer } from '../util/file-layer.js';
import { faults } from '../testing/fault-points.js';
import { type Logger, silentLogger } from '../util/log.js';
import { ByteThrottle, type Clock } from './byte-throttle.js';
import { CHUNK_HEADER_BYTES, encodeChunk } from './chunk-format.js';
import { encodeHistoryBatch, readHistoryBatch } from './history-batch.js';
import { parseChunk, parseHistory, parseOpen, parsePartitionRef, parseRelease, parseTrailer } from './requests.js';
import { SendSlots } from './send-slots.js';
import { PartitionSnapshot } from './snapshot.js';
import { Transfer, type SnapshotOpenResponse, type TransferInfo } from './transfer.js';

/** Idle chunk buffers the supplier keeps for reuse (each one chunk: 1 MiB by default). */
const CHUNK_POOL_FREE_MAX = 16;

/** What the supplier needs from its node (ClusterNode has all of it). */
export interface SupplierHost {
  readonly selfId: string;
  readonly config: NodeConfig;
  readonly store: Store;
  readonly handlers: Map<string, Handler>;
  readonly log?: Logger;
  /** The node's storage file layer (the fault layer under test faults); the default for temp files. */
  readonly fileLayer?: FileLayer;
  /** Yields to foreground work before each chunk is read (ForegroundPacer.turn); none when absent. */
  readonly pacer?: RebalancePacer;
  topology(): Topology;
  on(event: 'topology', listener: (t: Topology) => void): unknown;
  off(event: 'topology', listener: (t: Topology) => void): unknown;
}

export interface SupplierOptions {
  fileLayer?: FileLayer;
  /** Clock of the throttle (tests count time with a fake one). */
  clock?: Clock;
  /** How long `snapshotOpen` waits for a send slot. Default: half of net.requestTimeoutMs (the rest is for the checkpoint). */
  slotWaitMs?: number;
}

/** Node-wide counters (metrics). */
export interface SupplierCounters {
  /** Chunk data bytes on the wire (file path, after LZ4). */
  bytesSent: number;
  /** Raw image bytes served. */
  rawBytesServed: number;
  chunks: number;
  chunksCompressed: number;
  /** Pages saved to copy-on-write deltas. */
  deltaPages: number;
  historyBytesSent: number;
  transfersOpened: number;
  transfersReleased: number;
  busyRefusals: number;
  throttleWaits: number;
}

/** Room kept in a frame for the history JSON head and framing. */
const HISTORY_FRAME_MARGIN_BYTES = 64 * 1024;

/** See the file comment. */
export class Supplier {
  readonly counters: SupplierCounters = {
    bytesSent: 0, rawBytesServed: 0, chunks: 0, chunksCompressed: 0, deltaPages: 0,
    historyBytesSent: 0, transfersOpened: 0, transfersReleased: 0, busyRefusals: 0, throttleWaits: 0,
  };
  readonly throttle: ByteThrottle;
  readonly slots: SendSlots;
  /** The send slot of each transfer, freed once its file is sent (trailer) or at release. */
  private readonly sendSlotOf = new WeakMap<Transfer, () => void>();
  private chunkPool: BufferPool | undefined;
  private readonly transfers = new Map<string, Transfer>();
  private readonly opening = new Map<string, Promise<unknown>>();
  private readonly fl: FileLayer;
  private readonly log: Logger;
  private readonly tmpDir: string;
  private readonly ready: Promise<void>;
  private nextDeltaSeq = 1;
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly host: SupplierHost,
    private readonly opts: SupplierOptions = {},
  ) {
    this.fl = opts.fileLayer ?? realFileLayer;
    this.log = host.log?.child({ part: 'supplier' }) ?? silentLogger;
    this.tmpDir = path.join(host.config.dataDir, 'tmp', 'supplier');
    this.throttle = new ByteThrottle(() => host.config.rebalance.throttleBytesPerSec, { clock: opts.clock });
    this.slots = new SendSlots(() => host.config.rebalance.sendSlots);
    // Leftover deltas of a crashed run belong to transfers that no longer exist.
    const { fl, tmpDir } = this;
    this.ready = fl.rm(tmpDir).then(() => fl.mkdir(tmpDir));
    this.ready.catch((err) => this.log.error({ err }, 'preparing the supplier temp directory failed'));
    host.on('topology', this.onTopology);
  }

  /** Registers the handlers on `handlers` (the node's map). */
  register(handlers: Map<string, Handler>): void {
    const wrap = (fn: (body: Body, conn: Connection | undefined) => Promise<Body | PreparedFrame>): Handler => (body, conn) => {
      if (this.closed) throw ptnError(ErrorCode.ERR_CLOSED, 'supplier is closed');
      return fn(body, conn);
    };
    handlers.set('partitionInfo', wrap((b) => this.partitionInfo(b)));
    handlers.set('snapshotOpen', wrap((b, c) => this.snapshotOpen(b, c)));
    handlers.set('snapshotChunk', wrap((b, c) => this.snapshotChunk(b, c)));
    handlers.set('snapshotTrailer', wrap((b) => this.snapshotTrailer(b)));
    handlers.set('snapshotRelease', wrap((b) => this.snapshotRelease(b)));
    handlers.set('historyBatch', wrap((b) => this.historyBatch(b)));
  }

  /** Snapshots being served. */
  get transferCount(): number {
    return this.transfers.size;
  }

  /** Transfers for status. */
  list(): TransferInfo[] {
    return [...this.transfers.values()].map((t) => t.info());
  }

  // ---------------------------------------------------------------- checks and settings

  private get rebalance() {
    return this.host.config.rebalance;
  }

  /** The cache name when this node holds an OWNING copy of the partition, else ERR_PARTITION_NOT_OWNED. */
  private checkOwning(cacheId: number, partition: number): string {
    const t = this.host.topology();
    const def = t.caches.find((c) => c.cacheId === cacheId);
    if (def && partition >= def.partitions) throw ptnError(ErrorCode.ERR_PARTITION_NOT_FOUND, `cache ${def.name} has no partition ${partition}`);
    if (!def || t.partitions[def.name]?.[partition]?.copies[this.host.selfId] !== 'OWNING' || !this.host.store.hasCache(def.name)) {
      throw ptnError(ErrorCode.ERR_PARTITION_NOT_OWNED, `${this.host.selfId} holds no OWNING copy of ${def?.name ?? `cache ${cacheId}`}/${partition}`, {
        details: { cacheId, partition, node: this.host.selfId },
      });
    }
    return def.name;
  }

  /**
   * The pool chunk responses are read into (src/util/buffer-pool.ts: no fresh 1 MiB buffer and
   * no forced GC per chunk). Slots fit the largest chunk a transfer can ask for; at most
   * CHUNK_POOL_FREE_MAX wait idle.
   */
  private chunkPoolFor(rawBytes: number): BufferPool {
    const slotBytes = FRAME_HEADER_BYTES + CHUNK_HEADER_BYTES + Math.max(rawBytes, this.rebalance.chunkBytes);
    if (!this.chunkPool || this.chunkPool.slotBytes < slotBytes) this.chunkPool = new BufferPool(slotBytes, CHUNK_POOL_FREE_MAX);
    return this.chunkPool;
  }

  /** Chunk size of new transfers: the setting, whole pages, within one frame. */
  private chunkBytesFor(pageSize: number): number {
    const fit = this.host.config.net.frameBytesMax - CHUNK_HEADER_BYTES - 1024;
    const bytes = Math.min(this.rebalance.chunkBytes, fit);
    return Math.max(pageSize, bytes - (bytes % pageSize));
  }

  private transferOf(transferId: string): Transfer {
    const t = this.transfers.get(transferId);
    if (!t || t.state !== 'open') {
      throw ptnError(ErrorCode.ERR_SNAPSHOT_GONE, `no open transfer ${transferId} (released, timed out, or the supplier restarted)`, { details: { transferId } });
    }
    return t;
  }

  /** The snapshot of `t` when `t` is still open (a queued request may find it released). */
  private stillOpen(t: Transfer): PartitionSnapshot {
    if (t.state !== 'open') throw ptnError(ErrorCode.ERR_SNAPSHOT_GONE, `transfer ${t.transferId} was released: ${t.releaseReason}`);
    return t.snapshot!;
  }

  // ---------------------------------------------------------------- partitionInfo, history

  private async partitionInfo(body: Body): Promise<Body> {
    const { cacheId, partition } = parsePartitionRef('partitionInfo', body);
    this.checkOwning(cacheId, partition);
    const ps = await this.host.store.ensurePartition(cacheId, partition);
    const from = this.host.store.nodeWal.historyAvailableFrom(cacheId, partition);
    return {
      entryCount: ps.entryCount,
      fileBytes: ps.fileBytes(),
      pageSize: ps.pageSize,
      counter: ps.counter.toJSON(),
      historyAvailableFrom: Number.isFinite(from) ? from : null,
    };
  }

  private async historyBatch(body: Body): Promise<Body> {
    const q = parseHistory(body);
    this.checkOwning(q.cacheId, q.partition);
    const maxBytes = Math.max(1, Math.min(q.maxBytes, this.host.config.net.frameBytesMax - HISTORY_FRAME_MARGIN_BYTES));
    const { head, updates } = await readHistoryBatch(this.host.store.nodeWal, { ...q, maxBytes });
    const out = encodeHistoryBatch(head, updates);
    this.counters.historyBytesSent += out.length;
    return out;
  }

  // ---------------------------------------------------------------- snapshotOpen

  private async snapshotOpen(body: Body, conn: Connection | undefined): Promise<Body> {
    await this.ready;
    const req = parseOpen(body);
    const existing = this.transfers.get(req.transferId);
    if (req.resume) {
      if (!existing || existing.state !== 'open') {
        throw ptnError(ErrorCode.ERR_SNAPSHOT_GONE, `transfer ${req.transferId} is not known here: start over`, { details: { transferId: req.transferId } });
      }
      if (existing.init.cacheId !== req.cacheId || existing.init.partition !== req.partition) {
        throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, `snapshotOpen: transfer ${req.transferId} is of another partition`);
      }
      existing.touch();
      return existing.openInfo as unknown as Body;
    }
    if (this.opening.has(req.transferId)) throw ptnError(ErrorCode.ERR_BUSY, `transfer ${req.transferId} is being opened already`);
    const run = this.openNew(req, conn?.remoteNodeId ?? '', existing);
    this.opening.set(req.transferId, run);
    try {
      return (await run) as unknown as Body;
    } finally {
      this.opening.delete(req.transferId);
      this.releasedWhileOpening.delete(req.transferId); // an open that failed leaves nothing to release
    }
  }

  private async openNew(req: { cacheId: number; partition: number; transferId: string }, demander: string, previous: Transfer | undefined): Promise<SnapshotOpenResponse> {
    if (previous) await this.release(previous, 'opened again');
    const cache = this.checkOwning(req.cacheId, req.partition);
    let slot;
    try {
      slot = await this.slots.acquire(this.opts.slotWaitMs ?? Math.floor(this.host.config.net.requestTimeoutMs / 2));
    } catch (err) {
      if (isPtnError(err, ErrorCode.ERR_BUSY)) this.counters.busyRefusals++;
      throw err;
    }
    const t = new Transfer({
      ...req, cache, demander,
      idleTimeoutMs: () => this.rebalance.snapshotIdleTimeoutMs,
      onIdle: (tr) => void this.release(tr, 'idle timeout').catch((err) => this.log.error({ err }, 'releasing an idle transfer failed')),
    });
    t.hold(slot);
    this.sendSlotOf.set(t, slot);
    try {
      await this.arm(t, req);
      if (this.closed) throw ptnError(ErrorCode.ERR_CLOSED, 'supplier closed while opening');
    } catch (err) {
      await t.release('open failed').catch((e) => this.log.error({ err: e }, 'cleaning up a failed open failed'));
      throw err;
    }
    t.state = 'open';
    this.transfers.set(req.transferId, t);
    this.counters.transfersOpened++;
    if (this.releasedWhileOpening.delete(req.transferId)) {
      await this.release(t, 'demander released it while it was opening');
      throw ptnError(ErrorCode.ERR_SNAPSHOT_GONE, `transfer ${req.transferId} was released while it was opening`);
    }
    t.touch();
    this.log.info({ transferId: t.transferId, cache, partition: req.partition, demander, fileBytes: t.openInfo!.fileBytes }, 'snapshot opened');
    return t.openInfo!;
  }

  /** Snapshot armed at the committed state with its history reservation, counter state read from the image. */
  private async arm(t: Transfer, req: { cacheId: number; partition: number; transferId: string }): Promise<void> {
    const store = this.host.store;
    const ps = await store.ensurePartition(req.cacheId, req.partition);
    // The reservation is taken at the arm below, but freed after the snapshot (last taken first).
    let reserved: { release(): void; from: number | null } | undefined;
    t.hold(() => reserved?.release());
    const filePath = store.partitionPath(req.cacheId, req.partition);
    const snap = await PartitionSnapshot.open({
      fl: this.fl,
      filePath,
      deltaPath: path.join(this.tmpDir, `${this.nextDeltaSeq++}-${req.transferId}.delta`),
      pageSize: ps.pageSize,
      onDeltaPage: () => this.counters.deltaPages++,
      onBroken: (err) => this.log.warn({ err, transferId: t.transferId }, 'snapshot broken: its delta could not be saved'),
    });
    t.snapshot = snap;
    t.hold(() => snap.close());
    // Our handle must be this partition's file: it is as long as `ps` is still the open partition.
    if (store.partitionOrUndefined(req.cacheId, req.partition) !== ps) throw ptnError(ErrorCode.ERR_SNAPSHOT_GONE, 'the partition was replaced while opening');
    // Armed at the committed state (no new checkpoint, see store.snapshotCommitted). History is
    // reserved in the same synchronous step from the image's lwm, before a checkpoint can let the
    // WAL drop what lies after it.
    const fileBytes = await store.snapshotCommitted(req.cacheId, req.partition, (now) => {
      if (now !== ps) throw ptnError(ErrorCode.ERR_SNAPSHOT_GONE, 'the partition was replaced while opening');
      const { fileBytes, counterLwm } = now.committed();
      reserved = this.reserveHistory(req.cacheId, req.partition, counterLwm);
      snap.arm(fileBytes, now.addWriteListener(snap.onPageWrite));
      return fileBytes;
    });
    const page0 = Buffer.allocUnsafe(ps.pageSize);
    await snap.readRange(0, page0);
    const gapsMax = this.host.config.storage.counterGapsMax;
    const meta = decodeMetaPage(page0, gapsMax, filePath);
    assert(meta.pageCount * meta.pageSize === fileBytes, `snapshot meta page says ${meta.pageCount} pages, committed length is ${fileBytes}`);
    t.openInfo = {
      transferId: req.transferId,
      fileBytes,
      pageSize: ps.pageSize,
      chunkBytes: this.chunkBytesFor(ps.pageSize),
      counter: UpdateCounter.decode(meta.counterState, gapsMax).toJSON(),
      entryCount: meta.entryCount,
      checkpointId: meta.checkpointId,
      historyReservedFrom: reserved!.from,
    };
  }

  /** Reserves history after `fromExclusive`; when that is gone already, from what is left (logged). */
  private reserveHistory(cacheId: number, partition: number, fromExclusive: number): { release(): void; from: number | null } {
    const wal = this.host.store.nodeWal;
    try {
      return { ...wal.reserve(cacheId, partition, fromExclusive), from: fromExclusive };
    } catch (err) {
      if (!isPtnError(err, ErrorCode.ERR_WAL_HISTORY_GONE)) throw err;
      const from = wal.historyAvailableFrom(cacheId, partition);
      this.log.warn({ cacheId, partition, wanted: fromExclusive, availableFrom: from }, 'WAL history from the snapshot counter is gone; reserving what is left');
      if (!Number.isSafeInteger(from)) return { release: () => undefined, from: null };
      return { ...wal.reserve(cacheId, partition, from), from };
    }
  }

  // ---------------------------------------------------------------- chunks, trailer, release

  private async snapshotChunk(body: Body, conn: Connection | undefined): Promise<PreparedFrame> {
    const req = parseChunk(body);
    const t = this.transferOf(req.transferId);
    const { fileBytes, pageSize } = t.snapshot!;
    if (req.offset % pageSize !== 0 || req.offset >= fileBytes) {
      throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, `snapshotChunk: offset ${req.offset} is not a page offset below ${fileBytes}`, { details: { offset: req.offset } });
    }
    t.snapshot!.acknowledge(req.ackedBytes); // at arrival: chunks still being read lie above it
    return t.limited(() => this.rebalance.chunkWindow, async () => {
      const snap = this.stillOpen(t);
      if (conn) await conn.drained(); // the socket's backpressure before we allocate and read
      const rawBytes = Math.min(t.openInfo!.chunkBytes, fileBytes - req.offset);
      if (await this.throttle.take(rawBytes, t.abort.signal)) {
        t.throttleWaits++;
        this.counters.throttleWaits++;
      }
      await this.host.pacer?.turn(t.abort.signal);
      const frame = prepareFrame(CHUNK_HEADER_BYTES + rawBytes, '', { bodyCrc: false, pool: this.chunkPoolFor(rawBytes) });
      let out: PreparedFrame;
      try {
        const raw = frame.body.subarray(CHUNK_HEADER_BYTES);
        await snap.readRange(req.offset, raw);
        const crc = snap.recordChunk(req.offset, raw);
        out = encodeChunk(frame, req.offset, crc, this.rebalance.compression === 'lz4');
      } catch (err) {
        frame.release();
        throw err;
      }
      const sent = out.body.length - CHUNK_HEADER_BYTES;
      // TEST ONLY (no-op in production): lets the fault suite act at a share of the file served.
      await faults().hitProgress('supplier.sent', req.offset, req.offset + rawBytes, fileBytes, { cacheId: t.init.cacheId, partition: t.init.partition });
      t.chunks++;
      t.bytesServed += rawBytes;
      t.bytesSent += sent;
      this.counters.chunks++;
      this.counters.rawBytesServed += rawBytes;
      this.counters.bytesSent += sent;
      if (out !== frame) {
        t.chunksCompressed++;
        this.counters.chunksCompressed++;
      }
      return out;
    });
  }

  private async snapshotTrailer(body: Body): Promise<Body> {
    const { transferId } = parseTrailer(body);
    const t = this.transferOf(transferId);
    return t.limited(() => this.rebalance.chunkWindow, async () => {
      const snap = this.stillOpen(t);
      const fileCrc = await snap.fileCrc(Buffer.allocUnsafe(t.openInfo!.chunkBytes));
      // The file has been sent: its send slot (a bound on concurrent outgoing FILE streams) goes
      // to the next demander now, not when this one reports OWNING after its replay and catch-up.
      // The snapshot, its delta and the WAL reservation stay until release. (Idempotent.)
      this.sendSlotOf.get(t)?.();
      return { fileBytes: snap.fileBytes, fileCrc };
    });
  }

  /** Idempotent: releasing an unknown transfer answers {} too (it may have timed out already). */
  private async snapshotRelease(body: Body): Promise<Body> {
    const { transferId, reason } = parseRelease(body);
    const t = this.transfers.get(transferId);
    if (t) await this.release(t, `demander: ${reason}`);
    // A release that overtakes its own open (the demander cancelled meanwhile) is remembered, so the
    // open releases what it took as soon as it completes instead of at the idle timeout.
    else if (this.opening.has(transferId)) this.releasedWhileOpening.add(transferId);
    return {};
  }

  /** Transfers released by their demander while still opening. */
  private readonly releasedWhileOpening = new Set<string>();

  private async release(t: Transfer, reason: string): Promise<void> {
    if (this.transfers.get(t.transferId) === t) {
      this.transfers.delete(t.transferId);
      this.counters.transfersReleased++;
      this.log.info({ transferId: t.transferId, cache: t.init.cache, partition: t.init.partition, reason, bytesServed: t.bytesServed }, 'snapshot released');
    }
    await t.release(reason);
  }

  /** A dropped cache or a copy no longer OWNING here ends its transfers. */
  private readonly onTopology = (topo: Topology): void => {
    for (const t of [...this.transfers.values()]) {
      const def = topo.caches.find((c) => c.cacheId === t.init.cacheId && c.name === t.init.cache);
      const state = def ? topo.partitions[def.name]?.[t.init.partition]?.copies[this.host.selfId] : undefined;
      if (state === 'OWNING') continue;
      const reason = def ? `copy is ${state ?? 'gone'} here` : 'cache dropped';
      this.release(t, reason).catch((err) => this.log.error({ err, transferId: t.transferId }, 'releasing a transfer failed'));
    }
  };

  /** Releases every transfer, refuses new work. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      this.host.off('topology', this.onTopology);
      this.slots.close();
      this.throttle.close();
      await Promise.allSettled([...this.opening.values()]);
      await Promise.allSettled([...this.transfers.values()].map((t) => this.release(t, 'node closing')));
      await this.ready.catch(() => undefined);
    })();
    return this.closing;
  }
}

/** Creates the node's supplier and registers its handlers on `node.handlers`. */
export function registerSupplierApi(node: SupplierHost, opts: SupplierOptions = {}): Supplier {
  // Temp deltas go through the node's file layer, so injected file faults reach them too.
  const supplier = new Supplier(node, { fileLayer: node.fileLayer, ...opts });
  supplier.register(node.handlers);
  return supplier;
}
