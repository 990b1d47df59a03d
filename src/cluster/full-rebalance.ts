/**
 * Full (entry-by-entry) rebalance: fills a MOVING copy by pulling every entry of the partition
 * from an OWNING copy in key-ordered batches. It is the fallback for small partitions and the
 * baseline that file rebalancing is measured against.
 *
 * Demander side: one path of the demander's task runner (src/demander/, phase FILLING), which
 * decides when it runs, on which supplier, and what comes after (index rebuild, temp-WAL replay,
 * missing counters, OWNING). `pull()` here pulls batches (`scanBatch`, at most fullBatchBytesMax
 * each, throttled by throttleBytesPerSec) and applies them with apply-if-newer, and returns the
 * supplier's counter state taken when the scan started (the caller marks it applied).
 *
 * Supplier side: `scanBatch` returns the next entries after a key, tombstones included (as
 * removes), plus, on the first batch, the partition's counter state (lwm and applied ranges).
 *
 * Batch response layout: `jsonLength (u32) | JSON {done, lastKey, counter?} | update batch`.
 */
import { ErrorCode, ptnError } from '../errors.js';
import type { Update } from '../store/store.js';
import type { Body } from '../net/connection.js';
import { decodeUpdateBatch, encodeUpdateBatch, updateSize } from './update-codec.js';
import type { ClusterNode } from './node.js';

interface CounterSnapshot {
  lwm: number;
  gaps: Array<[number, number]>;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });

export class FullRebalancer {
  /** Bytes received by this path since start (metrics). */
  bytesReceived = 0;
  bytesSent = 0;
  private throttleWindow = { start: Date.now(), bytes: 0 };

  constructor(private readonly node: ClusterNode) {
    node.handlers.set('scanBatch', (body) => this.serveBatch(body as { cacheId: number; partition: number; afterKey?: string; maxBytes: number }));
  }

  /** Rebalance tasks for status: the demander's (kept here so existing callers keep working). */
  list(): unknown[] {
    return this.node.demander?.list() ?? [];
  }

  /**
   * Demander, full path: pulls every entry of the partition from `supplier` and applies it
   * (apply-if-newer). Returns the supplier's counter state at the start of its scan (undefined
   * when cancelled or when the supplier has no such partition).
   */
  async pull(supplier: string, cacheId: number, partition: number, signal: AbortSignal, onBatch?: (bytes: number, entries: number) => void): Promise<{ counter?: CounterSnapshot }> {
    let afterKey: string | undefined;
    let counter: CounterSnapshot | undefined;
    for (;;) {
      if (signal.aborted) return {};
      const res = (await this.node.peers.request(supplier, 'scanBatch', {
        cacheId,
        partition,
        afterKey,
        maxBytes: this.node.config.rebalance.fullBatchBytesMax,
      })) as Buffer;
      const { head, updates } = decodeBatchResponse(res);
      counter ??= head.counter;
      for (const u of updates) {
        if (u.cacheId !== cacheId || u.partition !== partition) throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, 'scanBatch returned a foreign entry');
      }
      if (signal.aborted) return {};
      // The entries of one batch are applied together: each is logged and applied in turn (the
      // partition serializes them) while their WAL durability is awaited as one group commit, not
      // one fsync per entry. Order inside a batch does not matter (apply-if-newer, one key each).
      await Promise.all(updates.map((u) => this.node.store.apply(u)));
      this.bytesReceived += res.length;
      onBatch?.(res.length, updates.length);
      await this.throttle(res.length, signal);
      if (head.done) break;
      afterKey = head.lastKey;
    }
    return { counter };
  }

  private async throttle(bytes: number, signal: AbortSignal): Promise<void> {
    const rate = this.node.config.rebalance.throttleBytesPerSec;
    if (rate <= 0) return;
    const w = this.throttleWindow;
    w.bytes += bytes;
    const dueMs = (w.bytes / rate) * 1000 - (Date.now() - w.start);
    if (dueMs > 0) await sleep(dueMs, signal);
    if (Date.now() - w.start > 1000) this.throttleWindow = { start: Date.now(), bytes: 0 };
  }

  // ---------------------------------------------------------------- supplier

  private async serveBatch(req: { cacheId: number; partition: number; afterKey?: string; maxBytes: number }): Promise<Body> {
    const t = this.node.topology();
    const def = t.caches.find((c) => c.cacheId === req.cacheId);
    if (!def || t.partitions[def.name]?.[req.partition]?.copies[this.node.selfId] !== 'OWNING') {
      throw ptnError(ErrorCode.ERR_PARTITION_NOT_OWNED, `not an OWNING copy of ${def?.name ?? req.cacheId}/${req.partition}`);
    }
    const maxBytes = Math.max(1024, Math.min(req.maxBytes, this.node.config.net.frameBytesMax - 65536));
    const ps = this.node.store.partitionOrUndefined(req.cacheId, req.partition);
    const counter = req.afterKey === undefined && ps ? { lwm: ps.counter.lwm, gaps: ps.counter.gaps() } : undefined;
    const updates: Update[] = [];
    let bytes = 0;
    let lastKey: string | undefined;
    let done = true;
    if (ps) {
      for await (const e of ps.scan({ fromKeyExclusive: req.afterKey, includeTombstones: true })) {
        const u: Update = e.tombstone
          ? { cacheId: req.cacheId, partition: req.partition, counter: e.counter, key: e.key, op: 'remove', valueKind: 0 }
          : { cacheId: req.cacheId, partition: req.partition, counter: e.counter, key: e.key, op: 'put', valueKind: e.valueKind, value: e.value };
        const size = updateSize(u);
        if (bytes + size > maxBytes && updates.length > 0) {
          done = false;
          break;
        }
        updates.push(u);
        bytes += size;
        lastKey = e.key;
      }
    }
    const out = encodeBatchResponse({ done, lastKey, counter }, updates);
    this.bytesSent += out.length;
    return out;
  }

  async close(): Promise<void> {}
}

function encodeBatchResponse(head: { done: boolean; lastKey?: string; counter?: CounterSnapshot }, updates: Update[]): Buffer {
  const json = Buffer.from(JSON.stringify(head));
  const batch = encodeUpdateBatch(updates);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(json.length, 0);
  return Buffer.concat([len, json, batch]);
}

function decodeBatchResponse(buf: Body): { head: { done: boolean; lastKey?: string; counter?: CounterSnapshot }; updates: Update[] } {
  if (!Buffer.isBuffer(buf) || buf.length < 4) throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, 'scanBatch: bad response');
  const n = buf.readUInt32BE(0);
  if (4 + n > buf.length) throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, 'scanBatch: truncated response');
  let head: { done: boolean; lastKey?: string; counter?: CounterSnapshot };
  try {
    head = JSON.parse(buf.toString('utf8', 4, 4 + n));
  } catch (err) {
    throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, 'scanBatch: bad JSON head', { cause: err });
  }
  return { head, updates: decodeUpdateBatch(buf.subarray(4 + n)) };
}

