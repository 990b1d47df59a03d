// Shared set-up for the supplier tests: a real Store in a temp dir, a fake node around it (topology,
// handlers, events) with the supplier registered, and a puller that plays the demander's part
// through the handlers (no network) and reassembles the image. Everything is closed in `t.after`.
import { EventEmitter } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { defaultConfig, type NodeConfig } from '../../../src/config.js';
import type { Body, Connection, Handler } from '../../../src/net/connection.js';
import type { PreparedFrame } from '../../../src/net/frames.js';
import { Store } from '../../../src/store/store.js';
import type { CacheDef } from '../../../src/store/cache-registry.js';
import type { Topology } from '../../../src/cluster/topology.js';
import { PageMemory } from '../../../src/pagememory/page-memory.js';
import type { PartitionStore } from '../../../src/pagememory/partition-store.js';
import { registerSupplierApi, type Supplier, type SupplierOptions } from '../../../src/supplier/supplier.js';
import { decodeChunk } from '../../../src/supplier/chunk-format.js';
import type { SnapshotOpenResponse } from '../../../src/supplier/transfer.js';
import { tempDir } from '../../helpers/tmp.js';

export const SELF = 'self';
export const CACHE = 'c';
export const CACHE_ID = 1;

/** A node as far as the supplier cares: config, store, handlers, topology and its event. */
export class FakeHost extends EventEmitter {
  readonly selfId = SELF;
  readonly handlers = new Map<string, Handler>();
  topo: Topology;

  constructor(
    readonly config: NodeConfig,
    readonly store: Store,
    def: CacheDef,
  ) {
    super();
    this.topo = {
      version: 1,
      clusterId: config.clusterId,
      coordinator: SELF,
      nodes: [{ id: SELF, address: '', adminAddress: '', order: 1 }],
      caches: [def],
      cacheIdMax: def.cacheId,
      partitions: { [def.name]: Array.from({ length: def.partitions }, () => ({ ideal: [SELF], copies: { [SELF]: 'OWNING' as const }, primary: SELF })) },
    };
  }

  topology(): Topology {
    return this.topo;
  }

  /** Publishes a changed topology (as ClusterNode does after applying one). */
  publish(change: (t: Topology) => void): void {
    const t = structuredClone(this.topo);
    change(t);
    t.version++;
    this.topo = t;
    this.emit('topology', t);
  }
}

export interface Fixture {
  dir: string;
  config: NodeConfig;
  store: Store;
  def: CacheDef;
  host: FakeHost;
  supplier: Supplier;
  /** Calls a supplier handler as a connection would. */
  call(method: string, body: Body, conn?: Connection): Promise<Body | PreparedFrame>;
}

/** Store + fake node + supplier in a temp dir; `overrides` go through the config schema. */
export async function makeFixture(t: TestContext, overrides: Record<string, unknown> = {}, opts: SupplierOptions = {}): Promise<Fixture> {
  const dir = await tempDir(t);
  const o = overrides as { storage?: object; wal?: object; rebalance?: object };
  const config = defaultConfig({
    ...overrides,
    dataDir: dir,
    storage: { pageCacheBytesMax: 16 << 20, checkpointIntervalMs: 3_600_000, ...o.storage },
    wal: { durability: 'background', ...o.wal },
    rebalance: { chunkBytes: 65536, ...o.rebalance },
  });
  const store = await Store.open({ config, periodicCheckpoints: false });
  const def = await store.createCache({ name: CACHE, partitions: 2, backups: 0, cacheId: CACHE_ID });
  await store.ensurePartition(CACHE_ID, 0);
  await store.ensurePartition(CACHE_ID, 1);
  const host = new FakeHost(config, store, def);
  const supplier = registerSupplierApi(host, opts);
  t.after(async () => {
    await supplier.close();
    await store.close({ checkpoint: false });
  });
  const call = async (method: string, body: Body, conn?: Connection) => {
    const h = host.handlers.get(method);
    if (!h) throw new Error(`no handler ${method}`);
    return (await h(body, conn as Connection)) as Body | PreparedFrame;
  };
  return { dir, config, store, def, host, supplier, call };
}

/** Opens a snapshot of partition `partition` through the handler. */
export async function openSnapshot(f: Fixture, transferId: string, partition = 0, resume?: boolean): Promise<SnapshotOpenResponse> {
  return (await f.call('snapshotOpen', { cacheId: CACHE_ID, partition, transferId, ...(resume === undefined ? {} : { resume }) })) as unknown as SnapshotOpenResponse;
}

/** One chunk through the handler, decoded and CRC-checked. */
export async function pullChunk(f: Fixture, transferId: string, offset: number, ackedBytes: number): Promise<{ raw: Buffer; flags: number; encodedBytes: number }> {
  const frame = (await f.call('snapshotChunk', { transferId, offset, ackedBytes })) as PreparedFrame;
  const { header, raw } = decodeChunk(frame.body);
  if (header.offset !== offset) throw new Error(`chunk for ${offset} says ${header.offset}`);
  return { raw: Buffer.from(raw), flags: header.flags, encodedBytes: header.encodedBytes };
}

/**
 * Pulls chunks from `from` to the end, acknowledging one chunk behind (as a window would);
 * `between(offset)` runs after each chunk (concurrent writes, checkpoints, a cut …).
 */
export async function pullRange(
  f: Fixture,
  open: SnapshotOpenResponse,
  image: Buffer,
  opts: { from?: number; acked?: number; between?: (offset: number) => Promise<void>; until?: number } = {},
): Promise<{ acked: number; next: number }> {
  let acked = opts.acked ?? 0;
  let offset = opts.from ?? 0;
  const until = opts.until ?? open.fileBytes;
  while (offset < until) {
    const { raw } = await pullChunk(f, open.transferId, offset, acked);
    raw.copy(image, offset);
    acked = offset; // the previous chunk is verified and durable by now
    offset += raw.length;
    await opts.between?.(offset);
  }
  return { acked, next: offset };
}

/** Trailer through the handler. */
export async function trailer(f: Fixture, transferId: string): Promise<{ fileBytes: number; fileCrc: number }> {
  return (await f.call('snapshotTrailer', { transferId })) as { fileBytes: number; fileCrc: number };
}

/** Writes `image` as a file in a new temp dir and opens it with restorePartition (verify 'full'). */
export async function restoreImage(t: TestContext, config: NodeConfig, image: Buffer, partition = 0): Promise<PartitionStore> {
  const dir = await tempDir(t);
  const src = path.join(dir, 'received.ptn');
  await fs.writeFile(src, image);
  const pm = new PageMemory({ storage: config.storage, journalDir: path.join(dir, 'checkpoint') });
  await pm.open();
  t.after(() => pm.close());
  return pm.restorePartition(src, path.join(dir, `part-${partition}.ptn`), { clusterId: config.clusterId, cacheId: CACHE_ID, partition }, 'full');
}

/** Live entries of a partition: key → {counter, value}. */
export async function liveEntries(ps: PartitionStore): Promise<Map<string, { counter: number; value: string }>> {
  const out = new Map<string, { counter: number; value: string }>();
  for await (const e of ps.scan({ includeTombstones: false })) out.set(e.key, { counter: e.counter, value: e.value.toString('latin1') });
  return out;
}

/** Polls until `fn()` is truthy (a broken test fails after `limitMs` instead of hanging). */
export async function waitUntil(fn: () => boolean, what: string, limitMs = 5000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Pulls every chunk with `window` requests in flight, acknowledging the contiguous verified prefix
 * (as the demander does); `between()` runs after each answer.
 */
export async function pullWindowed(f: Fixture, open: SnapshotOpenResponse, window: number, between?: () => Promise<void>): Promise<Buffer> {
  const image = Buffer.alloc(open.fileBytes);
  const done = new Set<number>();
  let verified = 0;
  let next = 0;
  const inflight = new Set<Promise<void>>();
  while (next < open.fileBytes || inflight.size > 0) {
    while (next < open.fileBytes && inflight.size < window) {
      const offset = next;
      next += open.chunkBytes;
      const p: Promise<void> = pullChunk(f, open.transferId, offset, verified).then(async ({ raw }) => {
        raw.copy(image, offset);
        done.add(offset);
        while (done.has(verified)) verified = Math.min(open.fileBytes, verified + open.chunkBytes);
        await between?.();
        inflight.delete(p);
      });
      inflight.add(p);
    }
    await Promise.race(inflight);
  }
  return image;
}
