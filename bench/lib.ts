/**
 * Shared pieces of the benchmarks: the machine's own limits measured in the same run, and result
 * files. Benchmarks report ratios against these, never bare times.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { defaultNodeCommand } from '../src/cli/node-launcher.js';

const MiB = 1024 * 1024;

/** The command that starts node processes writing a V8 CPU profile into `dir` (at a clean exit), or the default without one. */
export function nodeCommandFor(cpuProfDir: string | undefined): string[] | undefined {
  if (!cpuProfDir) return undefined;
  const [node, ...rest] = defaultNodeCommand();
  return [node!, '--cpu-prof', `--cpu-prof-dir=${path.resolve(cpuProfDir)}`, ...rest];
}

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

/** Copies `files` into `destDir` (read, write, fsync each) and returns MB/s (MiB/s) of the whole copy. */
export async function rawFsyncCopyMBps(files: string[], destDir: string): Promise<number> {
  await fs.mkdir(destDir, { recursive: true });
  const buf = Buffer.allocUnsafe(MiB);
  let bytes = 0;
  const t0 = performance.now();
  for (const f of files) {
    const src = await fs.open(f, 'r');
    const dst = await fs.open(path.join(destDir, path.basename(f)), 'w');
    try {
      for (let pos = 0; ; ) {
        const { bytesRead } = await src.read(buf, 0, buf.length, pos);
        if (bytesRead === 0) break;
        await dst.write(buf, 0, bytesRead, pos);
        pos += bytesRead;
        bytes += bytesRead;
      }
      await dst.sync();
    } finally {
      await src.close();
      await dst.close();
    }
  }
  const secs = (performance.now() - t0) / 1000;
  await fs.rm(destDir, { recursive: true, force: true });
  return bytes / MiB / secs;
}

const RECEIVER = `
const net = require('node:net');
let bytes = 0;
const server = net.createServer((s) => { s.on('data', (d) => { bytes += d.length; }); s.on('end', () => { process.stdout.write('done ' + bytes + '\\n'); server.close(); }); });
server.listen(0, '127.0.0.1', () => process.stdout.write('port ' + server.address().port + '\\n'));
`;
const SENDER = `
const net = require('node:net');
const fs = require('node:fs');
const [port, ...files] = process.argv.slice(1);
const sock = net.connect(Number(port), '127.0.0.1', async () => {
  for (const f of files) {
    await new Promise((resolve, reject) => { const r = fs.createReadStream(f, { highWaterMark: 1 << 20 }); r.on('end', resolve); r.on('error', reject); r.pipe(sock, { end: false }); });
  }
  sock.end();
});
`;

/** Streams `files` from one process to another over loopback TCP (the receiver discards); returns MB/s (MiB/s). */
export async function rawSocketPipeMBps(files: string[]): Promise<number> {
  const { spawn } = await import('node:child_process');
  const receiver = spawn(process.execPath, ['-e', RECEIVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const lines: string[] = [];
    let waiter: (() => void) | undefined;
    let buf = '';
    receiver.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        waiter?.();
      }
    });
    const next = async (prefix: string): Promise<string> => {
      for (;;) {
        const i = lines.findIndex((l) => l.startsWith(prefix));
        if (i >= 0) return lines.splice(i, 1)[0]!.slice(prefix.length);
        await new Promise<void>((r) => (waiter = r));
      }
    };
    const port = await next('port ');
    const t0 = performance.now();
    const sender = spawn(process.execPath, ['-e', SENDER, port, ...files], { stdio: 'inherit' });
    const bytes = Number(await next('done '));
    const secs = (performance.now() - t0) / 1000;
    sender.kill();
    return bytes / MiB / secs;
  } finally {
    receiver.kill();
  }
}

/**
 * Least-squares fit of log(y) = a + k·log(x): `exponent` k says how a cost grows with size
 * (≈ 1 linear, ≈ 0 flat, > 1 super-linear); `r2` says how well a power law describes the points.
 * Points with x ≤ 0 or y ≤ 0 are left out; fewer than two points give NaN.
 */
export function fitLogLog(points: ReadonlyArray<{ x: number; y: number }>): { exponent: number; r2: number; n: number } {
  const ps = points.filter((p) => p.x > 0 && p.y > 0).map((p) => ({ x: Math.log(p.x), y: Math.log(p.y) }));
  const n = ps.length;
  if (n < 2) return { exponent: Number.NaN, r2: Number.NaN, n };
  const mx = ps.reduce((s, p) => s + p.x, 0) / n;
  const my = ps.reduce((s, p) => s + p.y, 0) / n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (const p of ps) {
    sxy += (p.x - mx) * (p.y - my);
    sxx += (p.x - mx) ** 2;
    syy += (p.y - my) ** 2;
  }
  if (sxx === 0) return { exponent: Number.NaN, r2: Number.NaN, n };
  const exponent = sxy / sxx;
  return { exponent, r2: syy === 0 ? 1 : (sxy * sxy) / (sxx * syy), n };
}

/** Reads a Prometheus text page from `http://ADMIN/metrics`; returns metric name → first sample's value. */
export async function scrapeMetrics(adminAddress: string, timeoutMs = 5_000): Promise<Map<string, number>> {
  const res = await fetch(`http://${adminAddress}/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`GET http://${adminAddress}/metrics: HTTP ${res.status}`);
  return parsePrometheusText(await res.text());
}

/** Parses Prometheus text exposition: name → value of its first sample (labels ignored). */
export function parsePrometheusText(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || out.has(m[1]!)) continue;
    const v = Number(m[3]);
    if (Number.isFinite(v)) out.set(m[1]!, v);
  }
  return out;
}

/** A TCP port on 127.0.0.1 free right now (the OS picks it; a race with other processes is possible but rare). */
export async function freePort(): Promise<number> {
  const net = await import('node:net');
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as import('node:net').AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** The flags every cluster bench (catchup, scaling) takes, for `parseArgs`; results go to bench/results/NAME.json. */
export function clusterBenchFlags(name: string) {
  return {
    'base-port': { type: 'string' },
    dir: { type: 'string' },
    json: { type: 'string', default: path.join('bench', 'results', `${name}.json`) },
    'cpu-prof': { type: 'string' },
    'node-log-level': { type: 'string', default: 'warn' },
    quiet: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  } as const;
}
