/**
 * Full (entry-by-entry) rebalance: fills a MOVING copy by pulling every entry of the partition
 * from an OWNING copy in key-ordered batches. It is the fallback for small partitions and the
 * baseline that file rebalancing is measured against.
 *
 * Demander side, per partition (a task):
 *   queued → waiting for the topology that made the copy MOVING to be ready → running: choose a
 *   supplier among the OWNING copies (spread by partition number; another one after a failure) →
 *   pull batches (`scanBatch`, at most fullBatchBytesMax each, throttled by throttleBytesPerSec)
 *   and apply them with apply-if-newer (updates replicated meanwhile win when newer) → merge the
 *   supplier's counter state taken when the scan started → checkpoint → tell the coordinator the
 *   copy is OWNING. At most receiveSlots tasks run at once. A task is cancelled when its copy
 *   leaves the topology or its cache is dropped.
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
import type { Topology } from './topology.js';
import type { ClusterNode } from './node.js';

export type FullTaskState = 'queued' | 'running' | 'done' | 'cancelled' | 'failed';

export interface FullTask {
  cache: string;
  partition: number;
  sinceVersion: number;
  state: FullTaskState;
  supplier?: string;
  bytes: number;
  entries: number;
  restarts: number;
  startedAt?: number;
  finishedAt?: number;
  error?: string;
  abort: AbortController;
}

interface CounterSnapshot {
  lwm: number;
  gaps: Array<[number, number]>;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = () => {
      clearTimeout(t);
      resolve();
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });

export class FullRebalancer {
  private readonly tasks = new Map<string, FullTask>();
  private running = 0;
  private closed = false;
  /** Bytes received by this path since start (metrics). */
  bytesReceived = 0;
  bytesSent = 0;
  private throttleWindow = { start: Date.now(), bytes: 0 };

  constructor(private readonly node: ClusterNode) {
    node.handlers.set('scanBatch', (body) => this.serveBatch(body as { cacheId: number; partition: number; afterKey?: string; maxBytes: number }));
  }

  private key(cache: string, p: number): string {
    return `${cache}/${p}`;
  }

  /** Queues a task for a copy that just became MOVING under `sinceVersion`. */
  enqueue(cache: string, partition: number, sinceVersion: number): void {
    const k = this.key(cache, partition);
    this.tasks.get(k)?.abort.abort();
    this.tasks.set(k, { cache, partition, sinceVersion, state: 'queued', bytes: 0, entries: 0, restarts: 0, abort: new AbortController() });
    this.pump();
  }

  cancel(cache: string, partition: number): void {
    const task = this.tasks.get(this.key(cache, partition));
    if (task && (task.state === 'queued' || task.state === 'running')) {
      task.abort.abort();
      task.state = 'cancelled';
      this.node.log.info({ cache, partition }, 'full rebalance cancelled');
    }
  }

  cancelCache(cache: string): void {
    for (const t of this.tasks.values()) if (t.cache === cache) this.cancel(t.cache, t.partition);
  }

  /** Forgets finished tasks whose copy is no longer MOVING, and starts queued ones. */
  onTopology(t: Topology): void {
    for (const [k, task] of this.tasks) {
      const state = t.partitions[task.cache]?.[task.partition]?.copies[this.node.selfId];
      if (task.state !== 'queued' && task.state !== 'running' && state !== 'MOVING') this.tasks.delete(k);
    }
    this.pump();
  }

  /** Tasks for status. */
  list(): Array<Omit<FullTask, 'abort'>> {
    return [...this.tasks.values()].map(({ abort: _abort, ...rest }) => rest);
  }

  private pump(): void {
    if (this.closed) return;
    for (const task of this.tasks.values()) {
      if (this.running >= this.node.config.rebalance.receiveSlots) return;
      if (task.state !== 'queued') continue;
      task.state = 'running';
      this.running++;
      this.run(task)
        .catch((err) => {
          if (task.state === 'running') {
            task.state = 'failed';
            task.error = String((err as Error)?.message ?? err);
            this.node.log.error({ err, cache: task.cache, partition: task.partition }, 'full rebalance failed');
          }
        })
        .finally(() => {
          this.running--;
          this.pump();
        });
    }
  }

  private async run(task: FullTask): Promise<void> {
    const signal = task.abort.signal;
    await this.node.waitFor(task.sinceVersion, true, 3_600_000);
    task.startedAt = Date.now();
    for (let attempt = 0; !signal.aborted; attempt++) {
      const t = this.node.topology();
      const pc = t.partitions[task.cache]?.[task.partition];
      if (!pc || pc.copies[this.node.selfId] !== 'MOVING') return; // no longer ours to fill
      const owners = Object.keys(pc.copies).filter((n) => pc.copies[n] === 'OWNING' && n !== this.node.selfId).sort();
      if (owners.length === 0) {
        await sleep(200, signal);
        continue;
      }
      const supplier = owners[(task.partition + attempt) % owners.length]!;
      task.supplier = supplier;
      try {
        await this.pull(task, supplier, signal);
        if (signal.aborted) return;
        await this.node.store.checkpoint('rebalance');
        await this.node.toCoordinator('partitionOwning', { cache: task.cache, partition: task.partition, nodeId: this.node.selfId });
        task.state = 'done';
        task.finishedAt = Date.now();
        this.node.log.info({ cache: task.cache, partition: task.partition, supplier, entries: task.entries, bytes: task.bytes }, 'full rebalance done');
        return;
      } catch (err) {
        if (signal.aborted) return;
        task.restarts++;
        this.node.log.warn({ err, cache: task.cache, partition: task.partition, supplier }, 'full rebalance attempt failed; retrying');
        await sleep(Math.min(100 * 2 ** Math.min(attempt, 5), 2000), signal);
      }
    }
  }

  private async pull(task: FullTask, supplier: string, signal: AbortSignal): Promise<void> {
    const def = this.node.store.cache(task.cache);
    let afterKey: string | undefined;
    let counter: CounterSnapshot | undefined;
    for (;;) {
      if (signal.aborted) return;
      const res = (await this.node.peers.request(supplier, 'scanBatch', {
        cacheId: def.cacheId,
        partition: task.partition,
        afterKey,
        maxBytes: this.node.config.rebalance.fullBatchBytesMax,
      })) as Buffer;
      const { head, updates } = decodeBatchResponse(res);
      counter ??= head.counter;
      for (const u of updates) {
        if (signal.aborted) return;
        if (u.cacheId !== def.cacheId || u.partition !== task.partition) throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, 'scanBatch returned a foreign entry');
        await this.node.store.apply(u);
      }
      task.entries += updates.length;
      task.bytes += res.length;
      this.bytesReceived += res.length;
      await this.throttle(res.length, signal);
      if (head.done) break;
      afterKey = head.lastKey;
    }
    if (counter) await this.node.store.markCountersApplied(def.cacheId, task.partition, counter.lwm, counter.gaps);
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

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.tasks.values()) t.abort.abort();
  }
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

