/**
 * bench:transfer — moving a partition set between two node processes, against the machine's limits
 * measured in the same run.
 *
 *   1. one node process holds a cache of --total-mib of entries (--value-bytes each, --partitions P,
 *      backups 1, so a second node must receive a copy of every partition);
 *   2. limits: a raw fsync'd copy of the same partition files on the same disk, and a raw TCP pipe of
 *      the same bytes between two processes;
 *   3. variants: a second node joins and receives every partition — file path without and with LZ4,
 *      1 and 4 partitions at once, and the full (entry-by-entry) path — each timed from the joining
 *      node being healthy to the cluster being rebalanced; then it is killed and the next one joins.
 *
 * Prints MB/s and ratios; writes bench/results/transfer.json (and a chart, see bench/chart.ts).
 * Flags: --total-mib (1024) --value-bytes (1024) --partitions (4) --compressibility (0.5)
 *        --variants file-1,file-1-lz4,file-4,file-4-lz4,full-4 --base-port --dir --json
 *        --chunk-bytes N --chunk-window N --receive-chunks N (rebalance settings of both nodes; default: the
 *        node defaults)
 *        --cpu-prof DIR (every node process writes a V8 CPU profile there; joiners stop with SIGTERM)
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { ClusterManager } from '../src/cli/cluster-manager.js';
import { readClusterFile, writeClusterFile } from '../src/cli/cluster-file.js';
import { connectClient } from '../src/cli/client.js';
import { findFreeBasePort } from '../src/cli/processes.js';
import type { Connection } from '../src/net/connection.js';
import { fmt, nodeCommandFor, rawFsyncCopyMBps, rawSocketPipeMBps, writeResults } from './lib.js';
import { renderTransferChart } from './chart.js';

const { values: args } = parseArgs({
  options: {
    'total-mib': { type: 'string', default: '1024' },
    'value-bytes': { type: 'string', default: '1024' },
    partitions: { type: 'string', default: '4' },
    compressibility: { type: 'string', default: '0.5' },
    variants: { type: 'string', default: 'file-1,file-1-lz4,file-4,file-4-lz4,full-4' },
    'base-port': { type: 'string' },
    dir: { type: 'string' },
    json: { type: 'string', default: path.join('bench', 'results', 'transfer.json') },
    quiet: { type: 'boolean', default: false },
    'cpu-prof': { type: 'string' },
    'chunk-bytes': { type: 'string' },
    'chunk-window': { type: 'string' },
    'receive-chunks': { type: 'string' },
  },
});
const TOTAL_MIB = Number(args['total-mib']);
const VALUE_BYTES = Number(args['value-bytes']);
const PARTITIONS = Number(args.partitions);
const COMPRESSIBILITY = Number(args.compressibility);
const VARIANTS = args.variants!.split(',').filter(Boolean);
const MiB = 1024 * 1024;
const log = (line: string) => {
  if (!args.quiet) console.log(line);
};

interface Variant {
  name: string;
  path: 'file' | 'full';
  slots: number;
  lz4: boolean;
}

function parseVariant(name: string): Variant {
  const m = /^(file|full)-(\d+)(-lz4)?$/.exec(name);
  if (!m) throw new Error(`bad variant ${name}: use file-N, file-N-lz4 or full-N`);
  return { name, path: m[1] as Variant['path'], slots: Number(m[2]), lz4: Boolean(m[3]) };
}

/** A value of exactly `bytes` bytes, `compressibility` of it repetitive text, the rest random. */
function makeValue(bytes: number, compressibility: number): Buffer {
  const text = Math.floor(bytes * compressibility);
  return Buffer.concat([Buffer.alloc(text, 'abcdefgh'), randomBytes(bytes - text)]);
}

async function load(conn: Connection, entries: number): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      for (let i = next++; i < entries; i = next++) {
        const value = makeValue(VALUE_BYTES, COMPRESSIBILITY).toString('base64');
        await conn.request('put', { cache: 'bench', key: `k${String(i).padStart(9, '0')}`, value, valueKind: 'bytes' });
      }
    }),
  );
  return entries / ((performance.now() - t0) / 1000);
}

async function partitionFiles(dataDir: string): Promise<string[]> {
  const out: string[] = [];
  const caches = path.join(dataDir, 'caches');
  for (const c of await fs.readdir(caches)) {
    for (const f of await fs.readdir(path.join(caches, c))) if (f.endsWith('.ptn')) out.push(path.join(caches, c, f));
  }
  return out;
}

async function status(conn: Connection): Promise<Record<string, any>> {
  return (await conn.request('status', {}, { timeoutMs: 30_000 })) as Record<string, any>;
}

async function waitFor(conn: Connection, pred: (s: Record<string, any>) => boolean, timeoutMs: number, pollMs = 100): Promise<Record<string, any>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await status(conn);
    if (pred(s)) return s;
    if (Date.now() > deadline) throw new Error(`timed out waiting (topology ${s.topologyVersion}, ${s.rebalance?.partitionsLeft} left)`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

async function runVariant(manager: ClusterManager, conn: Connection, v: Variant, bytes: number): Promise<Record<string, unknown>> {
  // The joining node's settings go through cluster.json's nodeConfig; the supplier's at run time.
  const cf = readClusterFile(manager.dir)!;
  const base = (cf.nodeConfig ?? {}) as Record<string, any>;
  writeClusterFile(manager.dir, {
    ...cf,
    // The joining node runs with the product's default durability (fsync), whatever the loader used.
    nodeConfig: { ...base, wal: { ...(base.wal ?? {}), durability: 'fsync' }, rebalance: { ...(base.rebalance ?? {}), ...(args['chunk-window'] ? { chunkWindow: Number(args['chunk-window']) } : {}), ...(args['receive-chunks'] ? { receiveChunksMax: Number(args['receive-chunks']) } : {}), receiveSlots: v.slots, fileMinBytes: v.path === 'full' ? 1024 ** 4 : 0 } },
  });
  await conn.request('configSet', { key: 'rebalance.compression', value: v.lz4 ? 'lz4' : 'none' });
  await conn.request('configSet', { key: 'rebalance.sendSlots', value: Math.max(v.slots, 1) });
  if (args['chunk-window']) await conn.request('configSet', { key: 'rebalance.chunkWindow', value: Number(args['chunk-window']) });
  const entry = await manager.add({ wait: 'healthy', timeoutMs: 120_000 });
  const t0 = performance.now();
  const seen = new Map<string, Record<string, unknown>>();
  const s = await waitFor(conn, (st) => {
    for (const t of (st.rebalance?.tasks ?? []) as Array<Record<string, unknown>>) seen.set(`${t.cache}/${t.partition}`, t);
    return st.nodes.length === 2 && st.rebalanced === true;
  }, 3_600_000, 50);
  const secs = (performance.now() - t0) / 1000;
  for (const t of (s.rebalance?.tasks ?? []) as Array<Record<string, unknown>>) seen.set(`${t.cache}/${t.partition}`, t);
  if (process.env.PTN_BENCH_DEBUG) {
    for (const t of seen.values()) {
      const pt = (t.phaseTimes ?? {}) as Record<string, number>;
      const t0 = Math.min(...Object.values(pt));
      log(`    task ${t.partition} ${t.path} ${t.phase} ${Object.entries(pt).map(([k, v]) => `${k}+${v - t0}`).join(' ')}`);
    }
  }
  await manager.stop(entry.id, PROFILE_DIR ? {} : { kill: true, wait: false });
  await waitFor(conn, (st) => st.nodes.length === 1 && st.rebalanced === true, 120_000, 200);
  await fs.rm(entry.dataDir, { recursive: true, force: true });
  const mbps = bytes / MiB / secs;
  log(`  ${v.name.padEnd(12)} ${fmt(mbps)} MB/s (${fmt(secs)} s)`);
  return { ...v, seconds: secs, mbPerSec: mbps, tasksSeen: seen.size };
}

const root = args.dir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'ptn-bench-transfer-')));
const PROFILE_DIR = args['cpu-prof'] ? path.resolve(args['cpu-prof']) : undefined;
const manager = new ClusterManager({
  dir: path.join(root, 'cluster'),
  progress: args.quiet ? undefined : (l) => log(`  ${l}`),
  nodeCommand: nodeCommandFor(PROFILE_DIR),
});
const results: Record<string, unknown> = {
  when: new Date().toISOString(),
  host: { cpus: os.cpus().length, node: process.version },
  params: { totalMiB: TOTAL_MIB, valueBytes: VALUE_BYTES, partitions: PARTITIONS, compressibility: COMPRESSIBILITY, chunkWindow: args['chunk-window'] ? Number(args['chunk-window']) : null, receiveChunksMax: args['receive-chunks'] ? Number(args['receive-chunks']) : null },
};
let conn: Connection | undefined;
try {
  const basePort = args['base-port'] ? Number(args['base-port']) : await findFreeBasePort(2 + VARIANTS.length);
  log(`bench:transfer in ${root}: ${TOTAL_MIB} MiB of ${VALUE_BYTES} B values in ${PARTITIONS} partitions`);
  await manager.up({
    nodes: 1,
    basePort,
    nodeConfig: {
      logLevel: 'warn',
      wal: { durability: 'background' },
      storage: { pageCacheBytesMax: 512 * MiB },
      net: { requestTimeoutMs: 60_000 },
      ...(args['chunk-bytes'] ? { rebalance: { chunkBytes: Number(args['chunk-bytes']) } } : {}),
    },
  });
  conn = await connectClient(manager.clientSettings());
  await conn.request('cacheCreate', { name: 'bench', partitions: PARTITIONS, backups: 1 });
  const entries = Math.ceil((TOTAL_MIB * MiB) / VALUE_BYTES);
  const loadRate = await load(conn, entries);
  log(`  loaded ${entries} entries at ${fmt(loadRate)} puts/s`);
  await conn.request('checkpoint', {}, { timeoutMs: 600_000 });
  const supplierDir = readClusterFile(manager.dir)!.nodes[0]!.dataDir;
  const files = await partitionFiles(supplierDir);
  let bytes = 0;
  for (const f of files) bytes += (await fs.stat(f)).size;
  log(`  partition files: ${files.length}, ${fmt(bytes / MiB)} MiB`);
  const copy = await rawFsyncCopyMBps(files, path.join(root, 'raw-copy'));
  const pipe = await rawSocketPipeMBps(files);
  log(`  limits: raw fsync'd copy ${fmt(copy)} MB/s, raw TCP pipe between two processes ${fmt(pipe)} MB/s`);
  const variants: Array<Record<string, unknown>> = [];
  for (const name of VARIANTS) variants.push(await runVariant(manager, conn, parseVariant(name), bytes));
  const best = (p: string) => Math.max(0, ...variants.filter((v) => v.path === p).map((v) => v.mbPerSec as number));
  const ratios = {
    fileVsRawCopy: best('file') / copy,
    fileVsRawPipe: best('file') / pipe,
    fileVsFull: best('full') > 0 ? best('file') / best('full') : undefined,
  };
  Object.assign(results, { entries, loadPutsPerSec: loadRate, bytes, files: files.length, limits: { rawCopyMBps: copy, rawPipeMBps: pipe }, variants, ratios });
  log(`  ratios: best file path / raw fsync'd copy = ${ratios.fileVsRawCopy.toFixed(2)} (target >= 0.85); / raw pipe = ${ratios.fileVsRawPipe.toFixed(2)}; file / entry-by-entry = ${ratios.fileVsFull?.toFixed(1) ?? 'n/a'} (target >= 8)`);
  await writeResults(args.json!, results);
  await renderTransferChart(results, args.json!.replace(/\.json$/, '') + '.svg');
} finally {
  await conn?.close().catch(() => undefined);
  await manager.down(PROFILE_DIR ? {} : { kill: true }).catch(() => undefined);
  if (!args.dir) await fs.rm(root, { recursive: true, force: true });
}
