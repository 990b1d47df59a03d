/**
 * bench:storage — the storage engine against the machine's own limits, measured in one run.
 *
 *   put throughput       fsync mode (group commit, C writers) and background mode, 1 KiB values
 *   recovery             time to reopen a store whose WAL holds W MiB not yet checkpointed → s/GiB
 *   checkpoint           dirty pages written by a checkpoint vs a raw fsync'd sequential write of the
 *                        same bytes on the same disk (target ≥ 0.7)
 *   partition open       time to open a partition of 10k vs of N entries (target ratio ≤ 2)
 *
 * Flags: --puts N (default 40000) --value-bytes B (1024) --writers C (64) --wal-mib W (256)
 *        --checkpoint-mib M (256) --open-small 10000 --open-large 1000000 --dir DIR --json FILE
 * Results: printed as a table and written to bench/results/storage.json.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { defaultConfig } from '../src/config.js';
import { Store } from '../src/store/store.js';
import { PageMemory } from '../src/pagememory/page-memory.js';
import { rawFsyncWriteMBps, writeResults, median, fmt } from './lib.js';
import { renderStorageChart } from './chart.js';

const { values: args } = parseArgs({
  options: {
    puts: { type: 'string', default: '40000' },
    'value-bytes': { type: 'string', default: '1024' },
    writers: { type: 'string', default: '64' },
    'wal-mib': { type: 'string', default: '256' },
    'checkpoint-mib': { type: 'string', default: '256' },
    'open-small': { type: 'string', default: '10000' },
    'open-large': { type: 'string', default: '1000000' },
    dir: { type: 'string' },
    json: { type: 'string', default: path.join('bench', 'results', 'storage.json') },
  },
});
const PUTS = Number(args.puts);
const VALUE_BYTES = Number(args['value-bytes']);
const WRITERS = Number(args.writers);
const WAL_MIB = Number(args['wal-mib']);
const CKPT_MIB = Number(args['checkpoint-mib']);
const OPEN_SMALL = Number(args['open-small']);
const OPEN_LARGE = Number(args['open-large']);

const root = args.dir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'ptn-bench-storage-')));
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

function cfg(dir: string, over: Record<string, unknown> = {}) {
  const o = over as { storage?: object; wal?: object };
  return defaultConfig({
    dataDir: dir,
    storage: { pageCacheBytesMax: 2 * GiB, checkpointIntervalMs: 86_400_000, checkpointDirtyRatio: 0.9, ...o.storage },
    wal: { segmentBytes: 64 * MiB, historyBytesMax: 0, ...o.wal },
  });
}

async function fill(store: Store, cache: string, n: number, valueBytes: number, writers: number, keyOf = (i: number) => `key-${i}`): Promise<number> {
  const value = Buffer.alloc(valueBytes, 7);
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: writers }, async () => {
      for (let i = next++; i < n; i = next++) await store.put(cache, keyOf(i), { valueKind: 0, value });
    }),
  );
  return (performance.now() - t0) / 1000;
}

async function benchPuts(durability: 'fsync' | 'background'): Promise<{ opsPerSec: number; mbPerSec: number }> {
  const dir = path.join(root, `puts-${durability}`);
  const store = await Store.open({ config: cfg(dir, { wal: { durability } }), periodicCheckpoints: false });
  await store.createCache({ name: 'c', partitions: 16, backups: 0 });
  const secs = await fill(store, 'c', PUTS, VALUE_BYTES, WRITERS);
  await store.close({ checkpoint: false });
  await fs.rm(dir, { recursive: true, force: true });
  return { opsPerSec: PUTS / secs, mbPerSec: (PUTS * VALUE_BYTES) / MiB / secs };
}

async function benchRecovery(): Promise<{ walMiB: number; seconds: number; secondsPerGiB: number; records: number }> {
  const dir = path.join(root, 'recovery');
  const store = await Store.open({ config: cfg(dir, { wal: { durability: 'background' } }), periodicCheckpoints: false });
  await store.createCache({ name: 'c', partitions: 16, backups: 0 });
  const n = Math.ceil((WAL_MIB * MiB) / (VALUE_BYTES + 40));
  await fill(store, 'c', n, VALUE_BYTES, 32, (i) => `key-${i % 200_000}`);
  const walBytes = store.stats().wal.bytes;
  await store.close({ checkpoint: false });
  const t0 = performance.now();
  const reopened = await Store.open({ config: cfg(dir), periodicCheckpoints: false });
  const seconds = (performance.now() - t0) / 1000;
  const records = reopened.recoveryStats.replayedRecords;
  await reopened.close({ checkpoint: false });
  await fs.rm(dir, { recursive: true, force: true });
  return { walMiB: walBytes / MiB, seconds, secondsPerGiB: seconds / (walBytes / GiB), records };
}

/**
 * Checkpoint write speed against a raw fsync'd sequential write of the same bytes. Disk figures on a
 * shared machine drift, so each of 3 rounds measures the raw write right before and right after the
 * checkpoint, and the median ratio is reported.
 */
async function benchCheckpoint(): Promise<{ dirtyMiB: number; checkpointMBps: number; rawMBps: number; ratio: number; ratios: number[] }> {
  const dir = path.join(root, 'checkpoint');
  const store = await Store.open({ config: cfg(dir, { wal: { durability: 'background' } }), periodicCheckpoints: false });
  await store.createCache({ name: 'c', partitions: 16, backups: 0 });
  const perRound = Math.ceil((CKPT_MIB * MiB) / VALUE_BYTES / 3);
  const ratios: number[] = [];
  let dirtyTotal = 0;
  let mbpsTotal = 0;
  let rawTotal = 0;
  for (let round = 0; round < 3; round++) {
    await fill(store, 'c', perRound, VALUE_BYTES, 32, (i) => `key-${round}-${i}`);
    const dirty = store.stats().pageMemory.dirtyBytes;
    const rawBefore = await rawFsyncWriteMBps(path.join(root, 'raw.bin'), dirty);
    const t0 = performance.now();
    const r = await store.checkpoint('bench');
    const secs = (performance.now() - t0) / 1000;
    const rawAfter = await rawFsyncWriteMBps(path.join(root, 'raw.bin'), r.bytes);
    const mbps = r.bytes / MiB / secs;
    const raw = (rawBefore + rawAfter) / 2;
    ratios.push(mbps / raw);
    dirtyTotal += dirty;
    mbpsTotal += mbps;
    rawTotal += raw;
  }
  await store.close({ checkpoint: false });
  await fs.rm(dir, { recursive: true, force: true });
  return { dirtyMiB: dirtyTotal / 3 / MiB, checkpointMBps: mbpsTotal / 3, rawMBps: rawTotal / 3, ratio: median(ratios), ratios };
}

async function buildPartition(n: number): Promise<string> {
  const dir = path.join(root, `open-${n}`);
  const store = await Store.open({ config: cfg(dir, { wal: { durability: 'background' }, storage: { pageCacheBytesMax: 512 * MiB, checkpointDirtyRatio: 0.5 } }), periodicCheckpoints: false });
  await store.createCache({ name: 'c', partitions: 1, backups: 0, cacheId: 1 });
  await fill(store, 'c', n, 32, 32);
  await store.close();
  return store.partitionPath(1, 0);
}

async function timeOpen(file: string): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < 30; i++) {
    const pm = new PageMemory({ storage: cfg(root).storage, journalDir: path.join(root, 'journal-open') });
    await pm.open();
    const t0 = performance.now();
    const ps = await pm.openPartition(file, { clusterId: 'ptn-local', cacheId: 1, partition: 0 });
    times.push(performance.now() - t0);
    void ps;
    await pm.close();
  }
  return median(times);
}

const results: Record<string, unknown> = { when: new Date().toISOString(), host: { cpus: os.cpus().length, node: process.version } };
console.log(`bench:storage in ${root}`);
const fsyncPuts = await benchPuts('fsync');
const bgPuts = await benchPuts('background');
results.puts = { n: PUTS, valueBytes: VALUE_BYTES, writers: WRITERS, fsync: fsyncPuts, background: bgPuts };
console.log(`put, fsync mode (group commit, ${WRITERS} writers): ${fmt(fsyncPuts.opsPerSec)} ops/s  ${fmt(fsyncPuts.mbPerSec)} MB/s`);
console.log(`put, background mode:                         ${fmt(bgPuts.opsPerSec)} ops/s  ${fmt(bgPuts.mbPerSec)} MB/s`);
const rec = await benchRecovery();
results.recovery = rec;
console.log(`recovery: ${fmt(rec.walMiB)} MiB of WAL (${rec.records} records) in ${fmt(rec.seconds)} s = ${fmt(rec.secondsPerGiB)} s per GiB`);
const ck = await benchCheckpoint();
results.checkpoint = ck;
console.log(`checkpoint: ${fmt(ck.dirtyMiB)} MiB dirty per round at ${fmt(ck.checkpointMBps)} MB/s vs raw fsync'd write ${fmt(ck.rawMBps)} MB/s = median ratio ${ck.ratio.toFixed(2)} of rounds ${ck.ratios.map((r) => r.toFixed(2)).join(', ')} (target >= 0.7)`);
const smallFile = await buildPartition(OPEN_SMALL);
const largeFile = await buildPartition(OPEN_LARGE);
const openSmall = await timeOpen(smallFile);
const openLarge = await timeOpen(largeFile);
results.open = { smallEntries: OPEN_SMALL, largeEntries: OPEN_LARGE, smallMs: openSmall, largeMs: openLarge, ratio: openLarge / openSmall };
console.log(`partition open: ${OPEN_SMALL} entries ${openSmall.toFixed(3)} ms, ${OPEN_LARGE} entries ${openLarge.toFixed(3)} ms = ratio ${(openLarge / openSmall).toFixed(2)} (target <= 2)`);
await writeResults(args.json!, results);
await renderStorageChart(results, args.json!.replace(/\.json$/, '') + '.svg');
if (!args.dir) await fs.rm(root, { recursive: true, force: true });
