// Throughput of pulling one partition file (default 256 MiB) through the supplier's handlers over
// loopback — LZ4 off and on — against reading the same file raw, side by side in one run.
// The supplier (a real Store, NetServer, the handlers) runs on the main thread; the demander side
// (dial, snapshotOpen, a window of snapshotChunk requests, decodeChunk = CRC check + LZ4 decode,
// trailer, release) runs in a worker thread, so each end has its own event loop as two nodes
// would. The received bytes are verified and dropped (no disk write: that is the demander's cost).
// Not a test (tests never assert times); run it by hand:
//   node --import tsx test/unit/supplier/throughput.measure.ts [MiB=256] [rounds=2]
import { once } from 'node:events';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { performance as perf } from 'node:perf_hooks';
import { EventEmitter } from 'node:events';
import { defaultConfig, type NodeConfig } from '../../../src/config.js';
import { Store } from '../../../src/store/store.js';
import { NetServer } from '../../../src/net/server.js';
import { dial } from '../../../src/net/client.js';
import type { Handler } from '../../../src/net/connection.js';
import type { Topology } from '../../../src/cluster/topology.js';
import { registerSupplierApi } from '../../../src/supplier/supplier.js';
import { decodeChunk } from '../../../src/supplier/chunk-format.js';
import type { SnapshotOpenResponse } from '../../../src/supplier/transfer.js';
import { crc32 } from '../../../src/util/crc32.js';
import { crc32Combine } from '../../../src/supplier/crc32-combine.js';
import { rng } from '../../helpers/tmp.js';
import { identity, netConfig } from '../net/fixture.js';

const MiB = 1 << 20;

interface PullResult {
  /** Event-loop utilization of the demander thread during the pull. */
  demanderBusy: number;
  bytes: number;
  wireBytes: number;
  ms: number;
  crcOk: boolean;
}

/** Demander side (worker): pulls the whole snapshot with `window` requests in flight. */
async function demand(port: number, transferId: string, window: number, frameBytesMax: number): Promise<PullResult> {
  const conn = await dial(`127.0.0.1:${port}`, { identity: identity('demander'), config: netConfig({ frameBytesMax, requestTimeoutMs: 120_000 }) });
  const t0 = performance.now();
  const elu0 = perf.eventLoopUtilization();
  const open = (await conn.request('snapshotOpen', { cacheId: 1, partition: 0, transferId })) as unknown as SnapshotOpenResponse;
  let next = 0;
  let verified = 0;
  let crc = 0;
  let wireBytes = 0;
  const answers = new Map<number, Promise<Buffer>>();
  const ask = () => {
    const offset = next;
    next += open.chunkBytes;
    answers.set(offset, conn.request('snapshotChunk', { transferId, offset, ackedBytes: verified }) as Promise<Buffer>);
  };
  while (next < open.fileBytes && answers.size < window) ask();
  while (verified < open.fileBytes) {
    const body = await answers.get(verified)!;
    answers.delete(verified);
    wireBytes += body.length;
    const { header, raw } = decodeChunk(body); // checks the chunk CRC
    crc = crc32Combine(crc, header.crc, raw.length); // running CRC without a second pass
    verified += raw.length;
    if (next < open.fileBytes) ask();
  }
  const tr = (await conn.request('snapshotTrailer', { transferId })) as { fileCrc: number };
  const ms = performance.now() - t0;
  const demanderBusy = perf.eventLoopUtilization(elu0).utilization;
  await conn.request('snapshotRelease', { transferId, reason: 'measured' });
  await conn.close();
  return { bytes: open.fileBytes, wireBytes, ms, crcOk: tr.fileCrc === crc, demanderBusy };
}

if (!isMainThread) {
  const d = workerData as { port: number; transferId: string; window: number; frameBytesMax: number };
  demand(d.port, d.transferId, d.window, d.frameBytesMax).then((r) => parentPort!.postMessage(r));
}

function pullInWorker(port: number, transferId: string, window: number, frameBytesMax: number): Promise<PullResult> {
  const boot = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => { tsx.register(); return import(${JSON.stringify(import.meta.url)}); })`;
  const worker = new Worker(boot, { eval: true, workerData: { port, transferId, window, frameBytesMax } });
  return once(worker, 'message').then(async ([r]) => {
    await worker.terminate();
    return r as PullResult;
  });
}

/** Fills partition 0 with JSON-like values (ids and numbers random, field names and words repeated). */
async function fill(store: Store, targetBytes: number): Promise<number> {
  const r = rng(42);
  const words = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliet'];
  let n = 0;
  const ps = await store.ensurePartition(1, 0);
  while (ps.fileBytes() < targetBytes) {
    const batch: Promise<unknown>[] = [];
    for (let i = 0; i < 256; i++, n++) {
      const doc = {
        id: Math.floor(r() * 2 ** 48).toString(16),
        n,
        score: r(),
        tags: [words[Math.floor(r() * 10)], words[Math.floor(r() * 10)]],
        text: Array.from({ length: 60 }, () => words[Math.floor(r() * 10)]).join(' '),
        blob: Buffer.from(Array.from({ length: 96 }, () => Math.floor(r() * 256))).toString('base64'),
      };
      batch.push(store.apply({ cacheId: 1, partition: 0, counter: 0, key: `key-${n.toString().padStart(9, '0')}`, op: 'put', valueKind: 1, value: Buffer.from(JSON.stringify(doc)) }, { assign: true }));
    }
    await Promise.all(batch);
    if (n % 16384 === 0) await store.checkpoint('fill');
  }
  await store.checkpoint('fill');
  return n;
}

async function readRaw(file: string, chunk: number): Promise<{ bytes: number; ms: number }> {
  const fh = await fs.open(file, 'r');
  const buf = Buffer.allocUnsafe(chunk);
  const t0 = performance.now();
  let bytes = 0;
  let crc = 0;
  for (;;) {
    const { bytesRead } = await fh.read(buf, 0, chunk, bytes);
    if (bytesRead === 0) break;
    crc = crc32(buf.subarray(0, bytesRead), crc); // the supplier checksums every byte too
    bytes += bytesRead;
  }
  const ms = performance.now() - t0;
  await fh.close();
  return { bytes, ms: ms + (crc === -1 ? 1 : 0) };
}

async function main(): Promise<void> {
  const MiBs = Number(process.argv[2] ?? 256);
  const rounds = Number(process.argv[3] ?? 2);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ptn-measure-'));
  const config: NodeConfig = defaultConfig({
    dataDir: dir,
    storage: { pageCacheBytesMax: 64 * MiB, checkpointIntervalMs: 3_600_000 },
    wal: { durability: 'background', historyBytesMax: 0 },
  });
  const store = await Store.open({ config, periodicCheckpoints: false });
  try {
    const def = await store.createCache({ name: 'c', partitions: 1, backups: 0, cacheId: 1 });
    const tFill = performance.now();
    const entries = await fill(store, MiBs * MiB);
    const file = store.partitionPath(1, 0);
    const fileBytes = (await fs.stat(file)).size;
    console.log(`partition file: ${(fileBytes / MiB).toFixed(1)} MiB, ${entries} entries, filled in ${((performance.now() - tFill) / 1000).toFixed(1)} s`);
    const host = Object.assign(new EventEmitter(), {
      selfId: 'supplier',
      config,
      store,
      handlers: new Map<string, Handler>(),
      topology: (): Topology => ({
        version: 1, clusterId: config.clusterId, coordinator: 'supplier', nodes: [], caches: [def], cacheIdMax: 1,
        partitions: { c: [{ ideal: ['supplier'], copies: { supplier: 'OWNING' }, primary: 'supplier' }] },
      }),
    });
    const supplier = registerSupplierApi(host);
    const server = new NetServer({ host: '127.0.0.1', port: 0, identity: identity('supplier'), config: netConfig({ frameBytesMax: config.net.frameBytesMax }) });
    let handlerMs = 0; // time spent inside snapshotChunk handlers (read, CRC, LZ4), for the breakdown
    for (const [m, h] of host.handlers) {
      server.handle(m, m !== 'snapshotChunk' ? h : async (body, conn) => {
        const t0 = performance.now();
        try {
          return await h(body, conn);
        } finally {
          handlerMs += performance.now() - t0;
        }
      });
    }
    const { port } = await server.listen();
    const rate = (bytes: number, ms: number) => bytes / MiB / (ms / 1000);
    const rows: Array<[string, number, string]> = [];
    for (let round = 1; round <= rounds; round++) {
      const raw = await readRaw(file, config.rebalance.chunkBytes);
      rows.push([`raw read + CRC (round ${round})`, rate(raw.bytes, raw.ms), '']);
      for (const compression of ['none', 'lz4'] as const) {
        config.rebalance.compression = compression;
        handlerMs = 0;
        const elu0 = perf.eventLoopUtilization();
        const r = await pullInWorker(port, `m-${compression}-${round}`, Number(process.env.WINDOW ?? config.rebalance.chunkWindow), config.net.frameBytesMax);
        if (!r.crcOk) throw new Error('trailer CRC mismatch');
        const elu = perf.eventLoopUtilization(elu0).utilization;
        rows.push([`pull via handlers, ${compression} (round ${round})`, rate(r.bytes, r.ms), `wire ${(r.wireBytes / MiB).toFixed(1)} MiB, loop busy: supplier ${(elu * 100).toFixed(0)}%, demander ${(r.demanderBusy * 100).toFixed(0)}%; chunk handlers ${((handlerMs / r.ms) * 100).toFixed(0)}% of the time (incl. waits)`]);
      }
    }
    const base = rows.filter(([n]) => n.startsWith('raw')).reduce((s, [, v]) => s + v, 0) / rounds;
    console.log(`chunk ${config.rebalance.chunkBytes / MiB} MiB, window ${config.rebalance.chunkWindow}, one process per end (worker thread)`);
    for (const [name, mbs, extra] of rows) console.log(`${name.padEnd(36)} ${mbs.toFixed(0).padStart(6)} MiB/s  ${(mbs / base).toFixed(2)}× raw  ${extra}`);
    await server.close();
    await supplier.close();
  } finally {
    await store.close({ checkpoint: false });
    await fs.rm(dir, { recursive: true, force: true });
  }
}

if (isMainThread) await main();
