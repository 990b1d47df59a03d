/**
 * The local cluster manager behind `ptn cluster up/down/add/stop/start/ls`, also used in-process
 * by tests (test/helpers/cluster.ts), benchmarks and the demo.
 *
 * A local cluster is a directory: `cluster.json` (the manifest, cluster-file.ts) and one folder
 * per node with its generated config, data dir and log (node-config-gen.ts). Node processes are
 * detached, so the cluster outlives the command that started it; every later command finds it
 * again through the manifest and checks that each recorded pid is still that node's process.
 *
 * Readiness: a node is started when it answers `GET /healthz`; the cluster is ready when EVERY
 * running node's `status` lists exactly the running nodes and says `rebalanced`. `up`, `add` and
 * `start` wait for that within a timeout and, when it does not come, stop what they started and
 * fail with ERR_CLUSTER_NOT_READY naming the node and quoting its log.
 *
 * Invariants: the manifest is rewritten atomically after every change of a pid or running flag,
 * before waiting on anything, so a crash of the manager never forgets a process it started; one
 * manager operation at a time per directory (an in-process queue plus DIR/cluster.lock).
 */
import fs from 'node:fs';
import path from 'node:path';
import { ErrorCode, ptnError } from '../errors.js';
import type { Connection } from '../net/connection.js';
import type { ClientSettings } from './client.js';
import { connectClient } from './client.js';
import {
  CLUSTER_FILE_KIND,
  CLUSTER_FILE_VERSION,
  type ClusterFile,
  type ClusterNodeEntry,
  readClusterFile,
  requireClusterFile,
  withClusterLock,
  writeClusterFile,
} from './cluster-file.js';
import { notReadyReason, requestStatus } from './health.js';
import { checkStillRunning, defaultNodeCommand, type ExitInfo, spawnNode, waitHealthy } from './node-launcher.js';
import { ADMIN_PORT_OFFSET, type ClusterParams, nodeEntry, writeNodeConfig } from './node-config-gen.js';
import { busyPorts, isProcessAlive, signalProcess, stopProcess } from './processes.js';
import type { ClusterStatus } from './status-format.js';
import { realSleep } from './token-bucket.js';

/** Default base port: node i listens on 7400+i and 7500+i. */
export const DEFAULT_BASE_PORT = 7400;
/** Default time `up`/`add`/`start`/`stop` wait for the cluster to be ready. */
export const DEFAULT_READY_TIMEOUT_MS = 60_000;
/** How long `start` of one node waits for its ports to be released by its previous process. */
const PORTS_FREED_WAIT_MS = 10_000;
/** Default time a node gets to exit after SIGTERM before SIGKILL. */
export const DEFAULT_TERM_TIMEOUT_MS = 15_000;
const STATUS_POLL_MS = 200;

/** Where the cluster lives, how to run a node, where progress lines go. */
export interface ClusterManagerOptions {
  dir: string;
  /** argv prefix that runs `ptn` (default: this Node binary and bin/ptn). */
  nodeCommand?: string[];
  /** Receives one line per step ("node-2 started (pid 4242) …"). */
  progress?: (line: string) => void;
}

/** Options of `up`: node count and, for a fresh cluster, its ports, ids, secret and extra node config. */
export interface UpOptions {
  nodes: number;
  basePort?: number;
  host?: string;
  clusterId?: string;
  secret?: string;
  nodeConfig?: Record<string, unknown>;
  timeoutMs?: number;
}

/** What to wait for after starting a node: the whole cluster ready, the node healthy, or nothing. */
export type WaitMode = 'ready' | 'healthy' | 'none';

/** A manifest entry plus whether its process is alive right now. */
export type NodeView = ClusterNodeEntry & { alive: boolean };

/** Manages one local cluster directory; see the file comment. Operations on one directory run one at a time. */
export class ClusterManager {
  readonly dir: string;
  private readonly nodeCommand: string[];
  private readonly progress: (line: string) => void;
  private readonly exits = new Map<number, ExitInfo>();
  /** pid → config path of every process this manager started (teardown must not depend on the file). */
  private readonly spawned = new Map<number, string>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(opts: ClusterManagerOptions) {
    this.dir = path.resolve(opts.dir);
    this.nodeCommand = opts.nodeCommand ?? defaultNodeCommand();
    this.progress = opts.progress ?? (() => {});
  }

  /** The manifest, or undefined when the directory holds no cluster. */
  read(): ClusterFile | undefined {
    return readClusterFile(this.dir);
  }

  /** Every node of the manifest with a live check of its pid. */
  list(): NodeView[] {
    return requireClusterFile(this.dir).nodes.map((n) => ({ ...n, alive: n.running && isProcessAlive(n.pid, n.configPath) }));
  }

  /** How a client reaches this cluster: the first running node, the cluster id and secret. */
  clientSettings(requestTimeoutMs?: number): ClientSettings {
    const cf = requireClusterFile(this.dir);
    const node = cf.nodes.find((n) => n.running) ?? cf.nodes[0];
    if (!node) throw ptnError(ErrorCode.ERR_USAGE, `the cluster in ${this.dir} has no nodes`);
    return { address: node.address, secret: cf.secret, clusterId: cf.clusterId, requestTimeoutMs };
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(() => withClusterLock(this.dir, fn));
    this.queue = run.catch(() => {});
    return run;
  }

  private params(cf: ClusterFile): ClusterParams {
    return { dir: this.dir, host: cf.host, basePort: cf.basePort, clusterId: cf.clusterId, secret: cf.secret, nodeConfig: cf.nodeConfig };
  }

  private save(cf: ClusterFile): void {
    writeClusterFile(this.dir, cf);
  }

  /** Starts `cluster up`: N fresh nodes, or every node of a stopped cluster in this directory. */
  up(o: UpOptions): Promise<ClusterFile> {
    return this.exclusive(async () => {
      const cf = this.prepareUp(o);
      await this.checkPortsFree(cf, cf.nodes);
      this.save(cf);
      const deadline = Date.now() + (o.timeoutMs ?? DEFAULT_READY_TIMEOUT_MS);
      const started: ClusterNodeEntry[] = [];
      try {
        for (const entry of cf.nodes) {
          const seeds = started.map((n) => n.address);
          started.push(entry); // before launching: a node that fails its start is stopped too
          await this.launch(cf, entry, seeds, deadline);
        }
        await this.waitReadyWithin(cf, deadline);
      } catch (err) {
        await this.abandon(cf, started);
        throw err;
      }
      this.progress(`cluster ready: ${cf.nodes.length} nodes, rebalanced (${this.dir})`);
      return cf;
    });
  }

  private prepareUp(o: UpOptions): ClusterFile {
    const existing = readClusterFile(this.dir);
    if (existing) {
      const alive = existing.nodes.filter((n) => isProcessAlive(n.pid, n.configPath));
      if (alive.length > 0) {
        throw ptnError(ErrorCode.ERR_USAGE, `a cluster is already running in ${this.dir} (${alive.map((n) => `${n.id} pid ${n.pid}`).join(', ')}); run 'ptn cluster down --dir ${this.dir}' first`);
      }
      if (o.nodes !== existing.nodes.length) {
        throw ptnError(ErrorCode.ERR_USAGE, `${this.dir} holds a stopped cluster of ${existing.nodes.length} nodes; 'up' restarts it with --nodes ${existing.nodes.length}, or use another --dir`);
      }
      if (o.basePort !== undefined && o.basePort !== existing.basePort) {
        throw ptnError(ErrorCode.ERR_USAGE, `${this.dir} holds a stopped cluster with base port ${existing.basePort}, not ${o.basePort}`);
      }
      this.progress(`restarting the stopped cluster in ${this.dir} on its own data`);
      return existing;
    }
    if (!Number.isInteger(o.nodes) || o.nodes < 1) throw ptnError(ErrorCode.ERR_USAGE, `--nodes must be >= 1, got ${o.nodes}`);
    if (fs.existsSync(this.dir) && fs.readdirSync(this.dir).some((f) => /^node-\d+$/.test(f))) {
      throw ptnError(ErrorCode.ERR_USAGE, `${this.dir} holds node directories but no cluster.json; remove them or use another --dir`);
    }
    const cf: ClusterFile = {
      kind: CLUSTER_FILE_KIND,
      version: CLUSTER_FILE_VERSION,
      clusterId: o.clusterId ?? 'ptn-local',
      secret: o.secret ?? 'change-me-please',
      host: o.host ?? '127.0.0.1',
      basePort: o.basePort ?? DEFAULT_BASE_PORT,
      ...(o.nodeConfig ? { nodeConfig: o.nodeConfig } : {}),
      nodes: [],
    };
    for (let i = 1; i <= o.nodes; i++) cf.nodes.push(nodeEntry(this.params(cf), i));
    return cf;
  }

  /**
   * ERR_USAGE when a port of `entries` is taken. With `waitMs`, looks again until then first: the
   * kernel may release a killed node's listening sockets a moment after its process is reaped.
   */
  private async checkPortsFree(cf: ClusterFile, entries: readonly ClusterNodeEntry[], waitMs = 0): Promise<void> {
    const ports = entries.flatMap((e) => [cf.basePort + e.index, cf.basePort + ADMIN_PORT_OFFSET + e.index]);
    const deadline = Date.now() + waitMs;
    let busy = await busyPorts(ports, cf.host);
    while (busy.length > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      busy = await busyPorts(ports, cf.host);
    }
    if (busy.length > 0) {
      throw ptnError(ErrorCode.ERR_USAGE, `port${busy.length > 1 ? 's' : ''} ${busy.join(', ')} on ${cf.host} already in use; pick another --base-port`);
    }
  }

  /** Writes the node's config (seeding `seeds`), spawns it, records the pid, waits until healthy. */
  private async launch(cf: ClusterFile, entry: ClusterNodeEntry, seeds: string[], deadline: number): Promise<void> {
    writeNodeConfig(this.params(cf), entry, seeds);
    const pid = spawnNode(entry, this.nodeCommand, this.exits);
    this.spawned.set(pid, entry.configPath);
    entry.pid = pid;
    entry.running = true;
    this.save(cf);
    this.progress(`${entry.id} started (pid ${pid}) on ${entry.address}, admin ${entry.adminAddress}${seeds.length ? `, seeds ${seeds.join(' ')}` : ''}`);
    await waitHealthy(entry, deadline, this.exits);
  }

  /** Stops nodes a failed operation started and records them as not running. */
  private async abandon(cf: ClusterFile, entries: readonly ClusterNodeEntry[]): Promise<void> {
    await Promise.all(
      entries.map(async (e) => {
        if (e.pid !== null) await stopProcess(e.pid, e.configPath, { termTimeoutMs: 3_000 });
        e.running = false;
      }),
    );
    this.save(cf);
  }

  /** Stops every running node (SIGTERM, then SIGKILL after `timeoutMs`; at once with `kill`). */
  down(o: { timeoutMs?: number; kill?: boolean } = {}): Promise<ClusterFile> {
    return this.exclusive(async () => {
      const cf = requireClusterFile(this.dir);
      await Promise.all(cf.nodes.map((e) => this.stopEntry(e, { kill: o.kill, termTimeoutMs: o.timeoutMs })));
      this.save(cf);
      return cf;
    });
  }

  private async stopEntry(e: ClusterNodeEntry, o: { kill?: boolean; termTimeoutMs?: number }): Promise<void> {
    const how = e.pid === null ? 'not-running' : await stopProcess(e.pid, e.configPath, { kill: o.kill, termTimeoutMs: o.termTimeoutMs ?? DEFAULT_TERM_TIMEOUT_MS });
    if (how === 'stuck') throw ptnError(ErrorCode.ERR_IO, `${e.id} (pid ${e.pid}) did not exit even after SIGKILL`);
    if (how !== 'not-running' || e.running) this.progress(`${e.id} ${how === 'not-running' ? 'was not running' : how}`);
    e.running = false;
  }

  /** Starts one more node that joins the running cluster. */
  add(o: { wait?: WaitMode; timeoutMs?: number } = {}): Promise<ClusterNodeEntry> {
    return this.exclusive(async () => {
      const cf = requireClusterFile(this.dir);
      this.reconcile(cf);
      const seeds = this.runningEntries(cf).map((n) => n.address);
      if (seeds.length === 0) throw ptnError(ErrorCode.ERR_USAGE, `no node of the cluster in ${this.dir} is running; start it first`);
      const entry = nodeEntry(this.params(cf), Math.max(0, ...cf.nodes.map((n) => n.index)) + 1);
      await this.checkPortsFree(cf, [entry]);
      cf.nodes.push(entry);
      await this.startAndWait(cf, entry, seeds, o);
      return entry;
    });
  }

  /** Restarts a stopped node on its own data, seeding the nodes that run now. */
  start(id: string, o: { wait?: WaitMode; timeoutMs?: number } = {}): Promise<ClusterNodeEntry> {
    return this.exclusive(async () => {
      const cf = requireClusterFile(this.dir);
      this.reconcile(cf);
      const entry = this.entryOf(cf, id);
      if (isProcessAlive(entry.pid, entry.configPath)) throw ptnError(ErrorCode.ERR_USAGE, `${id} is already running (pid ${entry.pid})`);
      entry.running = false;
      // A node that ran before: its killed process may release its ports a moment late.
      await this.checkPortsFree(cf, [entry], entry.pid ? PORTS_FREED_WAIT_MS : 0);
      const seeds = this.runningEntries(cf).filter((n) => n.id !== id).map((n) => n.address);
      await this.startAndWait(cf, entry, seeds, o);
      return entry;
    });
  }

  private async startAndWait(cf: ClusterFile, entry: ClusterNodeEntry, seeds: string[], o: { wait?: WaitMode; timeoutMs?: number }): Promise<void> {
    const deadline = Date.now() + (o.timeoutMs ?? DEFAULT_READY_TIMEOUT_MS);
    try {
      await this.launch(cf, entry, seeds, o.wait === 'none' ? Number.POSITIVE_INFINITY : deadline);
      if ((o.wait ?? 'ready') === 'ready') await this.waitReadyWithin(cf, deadline);
    } catch (err) {
      await this.abandon(cf, [entry]);
      throw err;
    }
  }

  /** Stops one node; with `wait` (default) until the other nodes no longer list it and are rebalanced. */
  stop(id: string, o: { kill?: boolean; wait?: boolean; timeoutMs?: number } = {}): Promise<ClusterNodeEntry> {
    return this.exclusive(async () => {
      const cf = requireClusterFile(this.dir);
      this.reconcile(cf);
      const entry = this.entryOf(cf, id);
      await this.stopEntry(entry, { kill: o.kill, termTimeoutMs: o.timeoutMs });
      this.save(cf);
      if ((o.wait ?? true) && this.runningEntries(cf).length > 0) {
        await this.waitReadyWithin(cf, Date.now() + (o.timeoutMs ?? DEFAULT_READY_TIMEOUT_MS));
      }
      return entry;
    });
  }

  /** Waits until every running node lists exactly the running nodes and is rebalanced. */
  waitReady(timeoutMs = DEFAULT_READY_TIMEOUT_MS): Promise<ClusterStatus> {
    return this.waitReadyWithin(requireClusterFile(this.dir), Date.now() + timeoutMs);
  }

  private entryOf(cf: ClusterFile, id: string): ClusterNodeEntry {
    const e = cf.nodes.find((n) => n.id === id);
    if (!e) throw ptnError(ErrorCode.ERR_USAGE, `no node ${id} in ${this.dir} (nodes: ${cf.nodes.map((n) => n.id).join(', ')})`);
    return e;
  }

  /** Marks nodes whose process died behind our back as not running (and says so). */
  private reconcile(cf: ClusterFile): void {
    let changed = false;
    for (const n of cf.nodes) {
      if (n.running && !isProcessAlive(n.pid, n.configPath)) {
        this.progress(`${n.id} (pid ${n.pid}) had exited; marked as stopped`);
        n.running = false;
        changed = true;
      }
    }
    if (changed) this.save(cf);
  }

  private runningEntries(cf: ClusterFile): ClusterNodeEntry[] {
    return cf.nodes.filter((n) => n.running && isProcessAlive(n.pid, n.configPath));
  }

  private async waitReadyWithin(cf: ClusterFile, deadline: number): Promise<ClusterStatus> {
    const running = cf.nodes.filter((n) => n.running);
    const ids = running.map((n) => n.id);
    const conns = new Map<string, Connection>();
    const settings: ClientSettings = { address: '', secret: cf.secret, clusterId: cf.clusterId, requestTimeoutMs: 5_000 };
    try {
      for (;;) {
        for (const e of running) checkStillRunning(e, this.exits);
        let reason: string | undefined;
        let last: ClusterStatus | undefined;
        for (const e of running) {
          try {
            let conn = conns.get(e.id);
            if (!conn) conns.set(e.id, (conn = await connectClient(settings, { address: e.address, retries: 0 })));
            last = await requestStatus(conn);
            reason = notReadyReason(last, ids);
          } catch (err) {
            await conns.get(e.id)?.close().catch(() => {});
            conns.delete(e.id);
            reason = `${e.id}: ${(err as Error).message}`;
          }
          if (reason) break;
        }
        if (!reason && last) return last;
        if (Date.now() >= deadline) throw ptnError(ErrorCode.ERR_CLUSTER_NOT_READY, `cluster in ${this.dir} not ready in time: ${reason}`);
        await realSleep(STATUS_POLL_MS);
      }
    } finally {
      await Promise.all([...conns.values()].map((c) => c.close().catch(() => {})));
    }
  }

  /**
   * Last-resort teardown for an exiting process (`process.on('exit')` allows no waiting): SIGKILL
   * to every node process this manager started or the manifest lists, without waiting.
   */
  killAllSync(): number[] {
    const targets = new Map(this.spawned);
    try {
      for (const n of this.read()?.nodes ?? []) if (n.pid !== null) targets.set(n.pid, n.configPath);
    } catch {
      /* an unreadable manifest: the pids we started are still known */
    }
    return [...targets].filter(([pid, marker]) => signalProcess(pid, marker, 'SIGKILL')).map(([pid]) => pid);
  }

  /**
   * Teardown that never leaves a process: SIGKILL to every node process of the manifest and every
   * process this manager started, then waits until they are gone. Safe to call more than once.
   */
  async killAll(): Promise<number[]> {
    const targets = new Map(this.spawned);
    let cf: ClusterFile | undefined;
    try {
      cf = this.read();
    } catch {
      cf = undefined;
    }
    for (const n of cf?.nodes ?? []) if (n.pid !== null) targets.set(n.pid, n.configPath);
    const killed: number[] = [];
    await Promise.all(
      [...targets].map(async ([pid, marker]) => {
        if ((await stopProcess(pid, marker, { kill: true })) !== 'not-running') killed.push(pid);
      }),
    );
    if (cf) {
      for (const n of cf.nodes) n.running = false;
      try {
        this.save(cf);
      } catch {
        /* the directory may be gone already */
      }
    }
    return killed;
  }
}
