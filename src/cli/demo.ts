/**
 * The demo (`npm start`, `ptn demo`): the whole story of the project in about half a minute.
 *
 *   1. a local 3-node cluster on free ports in a temporary directory;
 *   2. a cache with an index on the value field `i`;
 *   3. a sequential fill of a few thousand entries, every acknowledged write in an ack log;
 *   4. a background load of random writes, still logging acknowledgements;
 *   5. a 4th node joins while the load runs; the rebalance is shown (partitions left, from the
 *      cluster status) until the cluster says `rebalanced`;
 *   6. the load stops; `verify` compares every copy of every partition and checks every
 *      acknowledged write against what the cluster returns;
 *   7. a summary, and everything is stopped (the directory removed unless --keep/--dir).
 * Ctrl-C at any point: the cluster is stopped cleanly (a second Ctrl-C kills it) and the exit
 * code is 130.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ErrorCode, ptnError } from '../errors.js';
import type { Connection } from '../net/connection.js';
import { connectClient } from './client.js';
import { ClusterManager } from './cluster-manager.js';
import { requestStatus } from './health.js';
import { formatLoadResult, type LoadResult, runLoad } from './load.js';
import { findFreeBasePort } from './processes.js';
import { rebalanceLine } from './status-format.js';
import { realSleep } from './token-bucket.js';
import { formatVerifyResult, runVerify } from './verify.js';

/** Flags of `ptn demo`. */
export interface DemoOptions {
  dir?: string;
  keep?: boolean;
  basePort?: number;
  entries: number;
  valueBytes: number;
  rate: number;
}

const say = (line: string) => process.stdout.write(`${line}\n`);

class Interrupted extends Error {}

/** Rejects with Interrupted as soon as `signal` aborts (the operation itself goes on). */
function unlessAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new Interrupted());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Interrupted());
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** Polls the status until 4 nodes are listed and rebalanced, printing progress as it changes. */
async function watchRebalance(conn: Connection, nodes: number, loadAcked: () => number, signal: AbortSignal, timeoutMs = 120_000): Promise<number> {
  const t0 = Date.now();
  let lastLine = '';
  for (;;) {
    if (signal.aborted) throw new Interrupted();
    const s = await requestStatus(conn);
    const done = s.nodes.length === nodes && s.rebalanced;
    const moving = Object.values(s.partitions).reduce((n, parts) => n + parts.filter((p) => Object.values(p.copies).includes('MOVING')).length, 0);
    const line = `  ${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s  ${s.nodes.length} nodes, topology v${s.topologyVersion}, ${
      done ? 'rebalanced' : `${rebalanceLine(s).replace('rebalance: ', '')}, ${moving} partitions with a MOVING copy`
    }; load acked ${loadAcked()} writes`;
    if (line.replace(/^\s+[\d.]+ s/, '').replace(/acked \d+/, '') !== lastLine || done) say(line);
    lastLine = line.replace(/^\s+[\d.]+ s/, '').replace(/acked \d+/, '');
    if (done) return Date.now() - t0;
    if (Date.now() - t0 > timeoutMs) {
      throw ptnError(ErrorCode.ERR_CLUSTER_NOT_READY, `the cluster did not finish rebalancing within ${timeoutMs} ms (${rebalanceLine(s).replace('rebalance: ', '')})`);
    }
    await realSleep(250, signal);
  }
}

/** What the demo started, so that the clean-up stops exactly that. */
interface Started {
  up?: Promise<unknown>;
}

async function story(m: ClusterManager, o: DemoOptions, dir: string, signal: AbortSignal, started: Started): Promise<number> {
  const basePort = o.basePort ?? (await findFreeBasePort(4));
  say(`\n[1/7] starting a local 3-node cluster in ${dir} (node i on ports ${basePort}+i and ${basePort + 100}+i)`);
  started.up = m.up({ nodes: 3, basePort });
  await unlessAborted(started.up, signal);
  const settings = m.clientSettings(30_000);
  const ackLog = path.join(dir, 'acks.log');
  const conn = await connectClient(settings);
  try {
    say(`\n[2/7] creating cache "default" (64 partitions, 1 backup, index on field "i")`);
    await unlessAborted(conn.request('cacheCreate', { name: 'default', partitions: 64, backups: 1, indexFields: ['i'] }), signal);

    say(`\n[3/7] loading ${o.entries} entries of ${o.valueBytes} bytes (acknowledged writes logged to ${ackLog})`);
    const fill = await runLoad({ settings, extraAddresses: m.list().map((n) => n.address), entries: o.entries, valueBytes: o.valueBytes, concurrency: 16, ackLogPath: ackLog, signal });
    process.stdout.write(formatLoadResult(fill));
    if (signal.aborted) throw new Interrupted();

    say(`\n[4/7] background load: random writes at ${o.rate} ops/s`);
    const stopLoad = new AbortController();
    signal.addEventListener('abort', () => stopLoad.abort(), { once: true });
    let acked = 0;
    const background: Promise<LoadResult> = runLoad({
      settings, extraAddresses: m.list().map((n) => n.address), entries: o.entries, valueBytes: o.valueBytes, durationSec: 3600, ratePerSec: o.rate,
      concurrency: 8, ackLogPath: ackLog, signal: stopLoad.signal, onProgress: (p) => (acked = p.acked), progressIntervalMs: 200,
    });
    background.catch(() => {}); // awaited below; a failure must not go unhandled meanwhile
    let rebalanceMs = 0;
    try {
      await unlessAborted(realSleep(1000), signal);
      say(`\n[5/7] adding node-4 while the load keeps writing; rebalance progress from the cluster status:`);
      await unlessAborted(m.add({ wait: 'healthy' }), signal);
      rebalanceMs = await watchRebalance(conn, 4, () => acked, signal);
      await unlessAborted(realSleep(1000), signal);
    } catch (err) {
      stopLoad.abort();
      await Promise.race([background.catch(() => {}), realSleep(5_000)]); // in-flight writes end, bounded
      throw err;
    }
    stopLoad.abort();
    const bg = await background;
    process.stdout.write(formatLoadResult(bg));
    if (signal.aborted) throw new Interrupted();

    say(`\n[6/7] verifying: every copy of every partition, and every acknowledged write`);
    const v = await unlessAborted(runVerify({ settings, ackLogPath: ackLog, waitRebalancedMs: 60_000 }), signal);
    process.stdout.write(formatVerifyResult(v));
    const q = (await conn.request('query', { cache: 'default', field: 'i', value: 42 })) as { keys: string[] };
    say(`query i = 42 → [${q.keys.join(', ')}]`);

    say(`\n[7/7] summary`);
    say(`  nodes: 3 → 4; rebalance after the join took ${(rebalanceMs / 1000).toFixed(1)} s while ${bg.acked} writes were acknowledged at ${bg.opsPerSec} ops/s`);
    say(`  writes acknowledged: ${fill.acked + bg.acked} (fill ${fill.acked}, background ${bg.acked}); errors during the join: ${bg.errors}, failed writes: ${fill.failed + bg.failed}`);
    say(`  verify: ${v.ok ? 'OK' : `FAILED (${v.mismatchCount} mismatches)`} — ${v.partitions} partitions, ${v.copiesCompared} copies, ${v.ackLog?.keys ?? 0} acknowledged keys checked`);
    return v.ok ? 0 : 1;
  } finally {
    await conn.close().catch(() => {});
  }
}

/** Runs the demo; resolves the exit code (0 when verify passed, 130 after Ctrl-C). */
export async function runDemo(o: DemoOptions): Promise<number> {
  const dir = o.dir ? path.resolve(o.dir) : fs.mkdtempSync(path.join(os.tmpdir(), 'ptn-demo-'));
  const m = new ClusterManager({ dir, progress: (line) => say(`  ${line}`) });
  const ac = new AbortController();
  const onSigint = () => {
    if (!ac.signal.aborted) {
      say('\ninterrupted: stopping the cluster (Ctrl-C again to kill it)');
      ac.abort();
    } else {
      void m.killAll().finally(() => process.exit(130));
    }
  };
  process.on('SIGINT', onSigint);
  let code: number;
  const started: Started = {};
  try {
    code = await story(m, o, dir, ac.signal, started);
  } catch (err) {
    if (!(err instanceof Interrupted) && !ac.signal.aborted) {
      say(`\nthe demo failed; node logs are in ${dir}/node-*/node.log`);
      await stopAll(m, dir, started);
      throw err;
    }
    code = 130;
  }
  await stopAll(m, dir, started);
  process.off('SIGINT', onSigint);
  if (o.keep || o.dir) say(`kept ${dir} (cluster.json, node-*/config.json, node-*/node.log, acks.log)`);
  else fs.rmSync(dir, { recursive: true, force: true });
  return code;
}

/**
 * Stops the cluster the demo started — only that: when `up` failed it has already stopped its
 * nodes, and a cluster that was running in --dir before is not ours. An `up` still under way
 * (Ctrl-C during start-up) is waited for first, so no node it starts is left behind.
 */
async function stopAll(m: ClusterManager, dir: string, started: Started): Promise<void> {
  if (!started.up) return;
  try {
    await started.up;
  } catch {
    return;
  }
  say(`\nstopping the cluster in ${dir}`);
  await m.down({ timeoutMs: 10_000 });
}
