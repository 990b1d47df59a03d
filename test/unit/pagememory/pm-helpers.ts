/**
 * Helpers for the page-memory tests: temp dirs, configs, a gate-wrapped apply, checkpoints,
 * a seeded random generator, and a fault/crash FileLayer.
 */
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { defaultConfig, type StorageConfig } from '../../../src/config.js';
import type { FileLayer, FileLike } from '../../../src/util/file-layer.js';
import { realFileLayer } from '../../../src/util/file-layer.js';
import { PageMemory, type PartitionStore, type ApplyResult } from '../../../src/pagememory/page-memory.js';
import type { PartitionIdentity } from '../../../src/pagememory/meta-page.js';

export const ID: PartitionIdentity = { clusterId: 'test-cluster', cacheId: 7, partition: 3 };

export async function makeTmpDir(): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), 'ptn-'));
}

export async function removeDir(dir: string | undefined): Promise<void> {
  if (dir) await fsp.rm(dir, { recursive: true, force: true });
}

export function storageConfig(overrides: Partial<StorageConfig> = {}): StorageConfig {
  return { ...defaultConfig().storage, ...overrides };
}

export async function openPm(
  dir: string,
  overrides: Partial<StorageConfig> = {},
  extra: { fileLayer?: FileLayer; onDirtyPressure?: () => void } = {},
): Promise<PageMemory> {
  const pm = new PageMemory({ storage: storageConfig(overrides), journalDir: path.join(dir, 'checkpoint'), ...extra });
  await pm.open();
  return pm;
}

/** apply() inside the mutation gate, as the store does it. */
export async function put(pm: PageMemory, ps: PartitionStore, key: string, counter: number, value: Buffer, valueKind = 1): Promise<ApplyResult> {
  await pm.waitForRoom();
  await pm.enterMutation();
  try {
    return await ps.apply({ key, counter, op: 'put', value, valueKind });
  } finally {
    pm.exitMutation();
  }
}

export async function remove(pm: PageMemory, ps: PartitionStore, key: string, counter: number): Promise<ApplyResult> {
  await pm.waitForRoom();
  await pm.enterMutation();
  try {
    return await ps.apply({ key, counter, op: 'remove' });
  } finally {
    pm.exitMutation();
  }
}

export async function purge(pm: PageMemory, ps: PartitionStore, upTo: number): Promise<number> {
  await pm.enterMutation();
  try {
    return await ps.purgeTombstones(upTo);
  } finally {
    pm.exitMutation();
  }
}

export async function checkpoint(pm: PageMemory) {
  const { checkpoint: c } = await pm.beginCheckpoint(() => undefined);
  return c.write();
}

export { seededRandom as rng } from '../../../src/util/seeded-random.js';

export function randInt(r: () => number, lo: number, hi: number): number {
  return lo + Math.floor(r() * (hi - lo + 1));
}

/** A deterministic value of `n` bytes derived from `seed`. */
export function valueOf(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = (seed * 2654435761) >>> 0;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

export { realFileLayer };
export type { FileLike };

// ---------------------------------------------------------------- crash simulation

/** Thrown by the crash layer at its crash point and for every call after it. */
export class SimulatedCrash extends Error {
  constructor(what: string) {
    super(`simulated crash: ${what}`);
    this.name = 'SimulatedCrash';
  }
}

interface UnsyncedWrite {
  position: number;
  before: Buffer;
}

/**
 * A FileLayer over the real one that models a machine crash.
 *
 * Every mutating call (write, writev, sync, truncate, open for writing, rename, unlink, syncDir)
 * counts as one operation; the call numbered `crashAt` and every call after it throw
 * `SimulatedCrash` without doing anything. Writes reach the real file at once, but each keeps the
 * bytes it replaced (per 4 KiB piece) until the file is fsynced. `crash(r)` then undoes a random
 * subset of those unsynced pieces (newest first), wholly or only their second half (a torn
 * page), as a power cut loses data the OS had not flushed. Directory operations are durable at once (a simplification on the safe side: the
 * engine fsyncs directories anyway).
 */
export class CrashFileLayer implements FileLayer {
  ops = 0;
  crashed = false;
  private readonly unsynced = new Map<string, UnsyncedWrite[]>();
  private readonly handles = new Set<FileLike>();

  constructor(public crashAt = Infinity) {}

  private step(what: string): void {
    if (this.crashed) throw new SimulatedCrash(`after the crash: ${what}`);
    this.ops++;
    if (this.ops >= this.crashAt) {
      this.crashed = true;
      throw new SimulatedCrash(`op ${this.ops}: ${what}`);
    }
  }

  /** Power cut: forgets a random subset of unsynced writes, closes every handle. */
  async crash(r: () => number): Promise<void> {
    this.crashed = true;
    for (const [file, writes] of this.unsynced) {
      const fh = await fsp.open(file, 'r+');
      try {
        for (let i = writes.length - 1; i >= 0; i--) {
          const w = writes[i]!;
          const p = r();
          if (p < 0.3) await fh.write(w.before, 0, w.before.length, w.position); // never reached the disk
          else if (p < 0.45) {
            const half = w.before.length >> 1; // torn: the first half made it, the second did not
            await fh.write(w.before, half, w.before.length - half, w.position + half);
          }
        }
      } finally {
        await fh.close();
      }
    }
    this.unsynced.clear();
    for (const h of this.handles) await h.close().catch(() => {});
    this.handles.clear();
  }

  async open(p: string, flags: string): Promise<FileLike> {
    if (flags !== 'r') this.step(`open ${p} ${flags}`);
    const real = await realFileLayer.open(p, flags);
    const layer = this;
    const remember = async (position: number, length: number) => {
      const list = layer.unsynced.get(p) ?? [];
      layer.unsynced.set(p, list);
      for (let off = 0; off < length; off += 4096) {
        const n = Math.min(4096, length - off);
        const before = Buffer.alloc(n);
        await real.read(before, 0, n, position + off);
        list.push({ position: position + off, before });
      }
    };
    const h: FileLike = {
      path: p,
      read: (b, o, l, pos) => real.read(b, o, l, pos),
      async write(b, o, l, pos) {
        layer.step(`write ${p}@${pos}`);
        await remember(pos, l);
        await real.write(b, o, l, pos);
      },
      async writev(bufs, pos) {
        layer.step(`writev ${p}@${pos}`);
        const total = bufs.reduce((n, b) => n + b.byteLength, 0);
        await remember(pos, total);
        await real.writev(bufs, pos);
      },
      async sync() {
        layer.step(`fsync ${p}`);
        await real.sync();
        layer.unsynced.delete(p);
      },
      async datasync() {
        layer.step(`fdatasync ${p}`);
        await real.datasync();
        layer.unsynced.delete(p);
      },
      async truncate(n) {
        layer.step(`truncate ${p}`);
        await real.truncate(n);
      },
      size: () => real.size(),
      async close() {
        layer.handles.delete(h);
        await real.close();
      },
    };
    this.handles.add(h);
    return h;
  }

  async rename(from: string, to: string) {
    this.step(`rename ${from}`);
    await realFileLayer.rename(from, to);
  }
  async unlink(p: string) {
    this.step(`unlink ${p}`);
    this.unsynced.delete(p);
    await realFileLayer.unlink(p);
  }
  async rm(p: string) {
    this.step(`rm ${p}`);
    await realFileLayer.rm(p);
  }
  mkdir = (p: string) => realFileLayer.mkdir(p);
  readdir = (p: string) => realFileLayer.readdir(p);
  exists = (p: string) => realFileLayer.exists(p);
  fileSize = (p: string) => realFileLayer.fileSize(p);
  async syncDir(p: string) {
    this.step(`syncDir ${p}`);
    await realFileLayer.syncDir(p);
  }
  freeBytes = (p: string) => realFileLayer.freeBytes(p);
}

// ---------------------------------------------------------------- write hooks

/**
 * A FileLayer over the real one that calls `beforeWrite(path, position, bytes)` before every
 * write/writev (it may await, to pause the writer, or throw, to fail it).
 */
export class HookFileLayer implements FileLayer {
  beforeWrite: ((path: string, position: number, bytes: number) => Promise<void> | void) | undefined;

  async open(p: string, flags: string): Promise<FileLike> {
    const real = await realFileLayer.open(p, flags);
    const layer = this;
    return {
      path: p,
      read: (b, o, l, pos) => real.read(b, o, l, pos),
      async write(b, o, l, pos) {
        await layer.beforeWrite?.(p, pos, l);
        await real.write(b, o, l, pos);
      },
      async writev(bufs, pos) {
        await layer.beforeWrite?.(p, pos, bufs.reduce((n, b) => n + b.byteLength, 0));
        await real.writev(bufs, pos);
      },
      sync: () => real.sync(),
      datasync: () => real.datasync(),
      truncate: (n) => real.truncate(n),
      size: () => real.size(),
      close: () => real.close(),
    };
  }
  rename = (a: string, b: string) => realFileLayer.rename(a, b);
  unlink = (p: string) => realFileLayer.unlink(p);
  rm = (p: string) => realFileLayer.rm(p);
  mkdir = (p: string) => realFileLayer.mkdir(p);
  readdir = (p: string) => realFileLayer.readdir(p);
  exists = (p: string) => realFileLayer.exists(p);
  fileSize = (p: string) => realFileLayer.fileSize(p);
  syncDir = (p: string) => realFileLayer.syncDir(p);
  freeBytes = (p: string) => realFileLayer.freeBytes(p);
}

/** A promise plus its resolver (to pause a hook until the test lets it go). */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

export const tick = () => new Promise<void>((r) => setImmediate(r));

/** Waits until `cond()` holds, polling every few milliseconds; false if it never did within `limitMs`. */
export async function eventually(cond: () => boolean, limitMs = 5000): Promise<boolean> {
  for (let waited = 0; waited < limitMs; waited += 5) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 5));
  }
  return cond();
}

/** Key → {counter, tombstone, value} of everything a store holds (tombstones included). */
export async function snapshot(ps: { scan(o: { includeTombstones: boolean }): AsyncIterable<{ key: string; counter: number; tombstone: boolean; value: Buffer }> }) {
  const out = new Map<string, { counter: number; tombstone: boolean; value: string }>();
  for await (const e of ps.scan({ includeTombstones: true })) out.set(e.key, { counter: e.counter, tombstone: e.tombstone, value: e.value.toString('hex') });
  return out;
}
