/**
 * Shared pieces of the benchmarks: the machine's own limits measured in the same run, and result
 * files. Benchmarks report ratios against these, never bare times.
 */
import fs from 'node:fs/promises';
import path from 'node:path';

const MiB = 1024 * 1024;

/** Writes `bytes` sequentially in 1 MiB chunks to a new file and fsyncs it; returns MB/s (MiB/s). */
export async function rawFsyncWriteMBps(file: string, bytes: number): Promise<number> {
  const chunk = Buffer.alloc(MiB, 0x5a);
  for (let i = 0; i < chunk.length; i += 4096) chunk.writeUInt32LE(i, i); // not all zeros
  const fh = await fs.open(file, 'w');
  const t0 = performance.now();
  try {
    for (let off = 0; off < bytes; off += chunk.length) {
      const n = Math.min(chunk.length, bytes - off);
      await fh.write(chunk, 0, n, off);
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  const secs = (performance.now() - t0) / 1000;
  await fs.rm(file, { force: true });
  return bytes / MiB / secs;
}

/** Median of a list of numbers. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** A number with few digits for people. */
export function fmt(x: number): string {
  return x >= 100 ? Math.round(x).toLocaleString('en-US') : x.toFixed(2);
}

/** Writes a results document as JSON (creating the folder). */
export async function writeResults(file: string, data: unknown): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, `${JSON.stringify(data, null, 2)}\n`);
  console.log(`results written to ${file}`);
}
