// Shared helpers of the node WAL tests: temp dirs, configs, records, a hookable file layer, a seeded PRNG.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { defaultConfig, type WalConfig } from '../../../src/config.js';
import { realFileLayer, type FileLayer, type FileLike } from '../../../src/util/file-layer.js';
import { NodeWal, type NodeWalOptions } from '../../../src/wal/node-wal.js';
import type { WalRecord } from '../../../src/wal/record.js';

export const CLUSTER = 'test-cluster';

/** A fresh temp dir (`ptn-…`); remove it with `rmDir` in after/afterEach. */
export function tempDir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'ptn-'));
}

export async function rmDir(dir: string | undefined): Promise<void> {
  if (dir) await fs.rm(dir, { recursive: true, force: true });
}

/** WAL config for tests: small segments, fsync mode, no retention beyond what is asked. */
export function walConfig(overrides: Partial<WalConfig> = {}): WalConfig {
  return { ...defaultConfig().wal, segmentBytes: 64 * 1024, ...overrides };
}

export function openWal(dir: string, overrides: Partial<WalConfig> = {}, extra: Partial<NodeWalOptions> = {}): Promise<NodeWal> {
  return NodeWal.open({ dir, clusterId: CLUSTER, config: walConfig(overrides), ...extra });
}

/** A put record whose value is `valueBytes` bytes derived from the counter. */
export function put(cacheId: number, partition: number, counter: number, valueBytes = 100): WalRecord {
  return { type: 'put', cacheId, partition, counter, key: `k${counter}`, valueKind: 0, value: Buffer.alloc(valueBytes, counter % 251) };
}

export function remove(cacheId: number, partition: number, counter: number): WalRecord {
  return { type: 'remove', cacheId, partition, counter, key: `k${counter}` };
}

export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** Counters of the put/remove records in a list. */
export function counters(records: WalRecord[]): number[] {
  return records.map((r) => (r.type === 'put' || r.type === 'remove' ? r.counter : -1));
}

export interface FileHooks {
  /** Called before every write/writev on a segment file; may delay or throw. */
  beforeWrite?: (file: string) => Promise<void> | void;
  /** Called after every sync/datasync. */
  afterSync?: (file: string) => void;
  /** Called after every read with the bytes it read. */
  afterRead?: (file: string, bytes: number) => void;
}

/** realFileLayer with hooks on writes, syncs and reads (for delays, failures and observing flushes and reads). */
export function hookedFileLayer(hooks: FileHooks): FileLayer {
  const wrap = (f: FileLike): FileLike => ({
    path: f.path,
    async read(b, o, l, p) {
      const n = await f.read(b, o, l, p);
      hooks.afterRead?.(f.path, n);
      return n;
    },
    async write(b, o, l, p) {
      await hooks.beforeWrite?.(f.path);
      return f.write(b, o, l, p);
    },
    async writev(bufs, p) {
      await hooks.beforeWrite?.(f.path);
      return f.writev(bufs, p);
    },
    async sync() {
      await f.sync();
      hooks.afterSync?.(f.path);
    },
    async datasync() {
      await f.datasync();
      hooks.afterSync?.(f.path);
    },
    truncate: (n) => f.truncate(n),
    size: () => f.size(),
    close: () => f.close(),
  });
  return { ...realFileLayer, open: async (p, flags) => wrap(await realFileLayer.open(p, flags)) };
}

export { seededRandom as prng } from '../../../src/util/seeded-random.js';

/** Seed from PTN_SEED or random; printed by the tests that use it so a failure can be rerun. */
export function testSeed(): number {
  return process.env.PTN_SEED ? Number(process.env.PTN_SEED) : Math.floor(Math.random() * 2 ** 31);
}

export function segmentPath(dir: string, index: number): string {
  return path.join(dir, `${String(index).padStart(16, '0')}.wal`);
}
