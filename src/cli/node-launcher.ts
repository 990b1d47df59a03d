/**
 * Starting one node process of a local cluster and waiting until it answers `/healthz`.
 *
 * The process runs `ptn node start --config FILE`, detached (its own session, so a Ctrl-C in the
 * terminal that ran `ptn cluster up` does not reach it), stdin closed, stdout and stderr appended
 * to its node.log. When it dies before it is healthy, the error says how it ended and quotes the
 * last line of its log.
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { ErrorCode, ptnError } from '../errors.js';
import type { ClusterNodeEntry } from './cluster-file.js';
import { healthz } from './health.js';
import { binPtnPath } from './paths.js';
import { isProcessAlive } from './processes.js';
import { realSleep } from './token-bucket.js';

/** How a node process ended, as seen by the process that spawned it. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * V8 flags every node process starts with (bin/ptn's first line carries the same, for a `ptn` run
 * by hand). `--initial-heap-size=128` (MiB): a transfer allocates a buffer per socket read and per
 * chunk, 2-3 GB per GiB moved; the chunks live until their file write, so they reach the old
 * generation, and with V8's default start (a ~10 MiB heap) that ran a mark-compact every ~35 ms,
 * 19% of a receiving node's main thread. Starting the old generation at 128 MiB cut them from
 * ~100 to ~14 per GiB received and made bench:transfer's file-1 1.7x and file-4 1.3x faster.
 */
export const NODE_V8_FLAGS: readonly string[] = ['--initial-heap-size=128'];

/** Command (argv prefix) that runs `ptn`: this Node binary with NODE_V8_FLAGS and bin/ptn by default. */
export function defaultNodeCommand(): string[] {
  return [process.execPath, ...NODE_V8_FLAGS, binPtnPath()];
}

/** The last non-empty line of a log file (a pino JSON line gives its `msg`), for error messages. */
export function lastLogLine(file: string, bytesMax = 8_192): string {
  let text = '';
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const len = Math.min(size, bytesMax);
      const buf = Buffer.alloc(len);
      fs.readSync(fd, buf, 0, len, size - len);
      text = buf.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return '(no log)';
  }
  const line = text.split('\n').map((l) => l.trim()).filter(Boolean).pop() ?? '(empty log)';
  try {
    const o = JSON.parse(line) as { msg?: unknown; err?: { message?: unknown } };
    const msg = typeof o.msg === 'string' ? o.msg : '';
    const errMsg = typeof o.err?.message === 'string' && o.err.message !== msg ? `: ${o.err.message}` : '';
    if (msg || errMsg) return (msg + errMsg).slice(0, 300);
  } catch {
    /* not JSON: quote it as is */
  }
  return line.slice(0, 300);
}

/** Spawns the node process; records its exit in `exits` (keyed by pid). Returns the pid. */
export function spawnNode(entry: ClusterNodeEntry, nodeCommand: readonly string[], exits: Map<number, ExitInfo>): number {
  fs.mkdirSync(path.dirname(entry.logPath), { recursive: true });
  const fd = fs.openSync(entry.logPath, 'a');
  try {
    const env = { ...process.env };
    delete env.NODE_TEST_CONTEXT; // a node started from a test must not talk TAP
    env.UV_THREADPOOL_SIZE ??= '64'; // see bin/ptn: set before the node's first file I/O
    const [cmd, ...args] = nodeCommand;
    const child = spawn(cmd!, [...args, 'node', 'start', '--config', entry.configPath], {
      detached: true,
      stdio: ['ignore', fd, fd],
      cwd: path.dirname(entry.configPath),
      env,
    });
    child.on('error', () => {}); // reported through the missing pid or the exit below
    if (child.pid === undefined) throw ptnError(ErrorCode.ERR_CLUSTER_NOT_READY, `${entry.id}: cannot start ${cmd}`);
    const pid = child.pid;
    child.on('exit', (code, signal) => exits.set(pid, { code, signal }));
    child.unref();
    return pid;
  } finally {
    fs.closeSync(fd);
  }
}

function describeExit(e: ExitInfo | undefined): string {
  if (!e) return 'exited';
  return e.signal ? `was killed by ${e.signal}` : `exited with code ${e.code}`;
}

/** Fails with ERR_CLUSTER_NOT_READY when the node's process is gone. */
export function checkStillRunning(entry: ClusterNodeEntry, exits: Map<number, ExitInfo>): void {
  if (entry.pid !== null && isProcessAlive(entry.pid, entry.configPath)) return;
  throw ptnError(
    ErrorCode.ERR_CLUSTER_NOT_READY,
    `${entry.id} ${describeExit(entry.pid === null ? undefined : exits.get(entry.pid))}: ${lastLogLine(entry.logPath)} (log: ${entry.logPath})`,
    { details: { node: entry.id } },
  );
}

/** Waits until the node answers `GET /healthz`, failing early when its process dies. */
export async function waitHealthy(entry: ClusterNodeEntry, deadline: number, exits: Map<number, ExitInfo>, pollMs = 100): Promise<void> {
  for (;;) {
    checkStillRunning(entry, exits);
    if (await healthz(entry.adminAddress)) return;
    if (Date.now() >= deadline) {
      throw ptnError(ErrorCode.ERR_CLUSTER_NOT_READY, `${entry.id} did not answer http://${entry.adminAddress}/healthz in time (log: ${entry.logPath})`, {
        details: { node: entry.id },
      });
    }
    await realSleep(pollMs);
  }
}
