/**
 * Processes and ports of a local cluster: is a pid still our node, stop it, find free ports.
 *
 * A pid from cluster.json may have exited and been reused by an unrelated process. On Linux the
 * checks therefore also read /proc/PID/cmdline and only count the process as ours when its
 * command line holds the node's config path (`marker`), and they treat a zombie as gone; where
 * /proc is missing they fall back to `kill(pid, 0)`. Signals are only ever sent to a pid that
 * passes this check, so a stale manifest can never make us signal a stranger.
 */
import fs from 'node:fs';
import net from 'node:net';
import { ErrorCode, ptnError } from '../errors.js';
import { realSleep } from './token-bucket.js';

function procFile(pid: number, name: string): string | undefined {
  try {
    return fs.readFileSync(`/proc/${pid}/${name}`, 'utf8');
  } catch {
    return undefined;
  }
}

const HAS_PROC = fs.existsSync('/proc/self/cmdline');

/** Threads of process `pid` still listed in /proc (0 when it is gone). */
function threadCount(pid: number): number {
  try {
    return fs.readdirSync(`/proc/${pid}/task`).length;
  } catch {
    return 0;
  }
}

/**
 * True while `pid` runs or is still exiting (gone = no process, or a zombie with no thread left)
 * and, when `marker` is given, its command line contains it. A process that is exiting has an
 * empty command line: it counts as ours until it is gone, so callers wait for its ports and files.
 */
export function isProcessAlive(pid: number | null | undefined, marker?: string): boolean {
  if (!pid || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (!HAS_PROC) return true;
  const stat = procFile(pid, 'stat');
  if (stat === undefined) return false;
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  // A zombie main thread whose other threads still exist is a process still exiting (a pool
  // thread finishing an fsync, say): it keeps its files and listening ports until they are gone.
  if (state === 'Z' || state === 'X') return threadCount(pid) > 1;
  if (marker === undefined) return true;
  const cmdline = procFile(pid, 'cmdline');
  if (cmdline === '') return true; // exiting: its memory is gone, its threads and files not yet
  return cmdline !== undefined && cmdline.split('\0').includes(marker);
}

/** Polls until the process is gone; true when it went within `timeoutMs`. */
export async function waitForExit(pid: number, marker: string | undefined, timeoutMs: number, pollMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isProcessAlive(pid, marker)) {
    if (Date.now() >= deadline) return false;
    await realSleep(pollMs);
  }
  return true;
}

/** Sends `signal` when the process is still ours; false when it was already gone. */
export function signalProcess(pid: number, marker: string | undefined, signal: NodeJS.Signals): boolean {
  if (!isProcessAlive(pid, marker)) return false;
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

/**
 * Stops a process: SIGTERM and up to `termTimeoutMs` for a clean exit, then SIGKILL (at once with
 * `kill`). Resolves how it ended.
 */
export async function stopProcess(
  pid: number,
  marker: string | undefined,
  opts: { kill?: boolean; termTimeoutMs?: number } = {},
): Promise<'not-running' | 'terminated' | 'killed' | 'stuck'> {
  if (!isProcessAlive(pid, marker)) return 'not-running';
  if (!opts.kill) {
    signalProcess(pid, marker, 'SIGTERM');
    if (await waitForExit(pid, marker, opts.termTimeoutMs ?? 15_000)) return 'terminated';
  }
  signalProcess(pid, marker, 'SIGKILL');
  return (await waitForExit(pid, marker, 10_000)) ? 'killed' : 'stuck';
}

/** True when a TCP port can be bound on `host` right now. */
export function isPortFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** The ports in `ports` that are taken on `host`. */
export async function busyPorts(ports: readonly number[], host = '127.0.0.1'): Promise<number[]> {
  const busy: number[] = [];
  for (const p of ports) if (!(await isPortFree(p, host))) busy.push(p);
  return busy;
}

/** Ports a local cluster with base port `base` uses for nodes 1..count. */
export function clusterPorts(base: number, count: number): number[] {
  const out: number[] = [];
  for (let i = 1; i <= count; i++) out.push(base + i, base + 100 + i);
  return out;
}

/**
 * A base port P (a multiple of 10 in [20000, 31800)) such that the ports of nodes 1..`count` are
 * free: P+i and P+100+i. Random starting points keep parallel test runs apart; the range stays
 * below Linux's ephemeral ports (32768+) so outgoing connections cannot take a node's port later.
 */
export async function findFreeBasePort(count: number, host = '127.0.0.1', attempts = 50): Promise<number> {
  for (let a = 0; a < attempts; a++) {
    const base = 20_000 + 10 * Math.floor(Math.random() * 1_180);
    if ((await busyPorts(clusterPorts(base, count), host)).length === 0) return base;
  }
  throw ptnError(ErrorCode.ERR_IO, `no free base port found for ${count} nodes after ${attempts} attempts`);
}
