/**
 * Test helper: what the fault suites need on top of the cluster manager (test/helpers/cluster.ts)
 * — signals to a node by id (SIGSTOP/SIGCONT/SIGKILL), its process state, the admin port's
 * `/faults`, and one node process started from an explicit config (for per-node keys such as
 * `advertiseAddress`, which the cluster manager's shared `nodeConfig` cannot express).
 *
 *   enableTestFaultsEnv(t);                      // PTN_ENABLE_TEST_FAULTS=1 for nodes spawned now
 *   const c = await startTestCluster({ nodes: 3, nodeConfig: { testFaults: { enabled: true } } });
 *   await postFaults(c.nodes()[1]!.adminAddress, { points: [{ name: 'demander.phase.REPLAYING', action: 'stop' }] });
 *   await waitNodeState(c.nodes()[1]!, 'stopped');  … resumeNode(c, 'node-2');
 *
 * Signals go through src/cli/processes.ts, which only signals a pid whose command line still
 * holds the node's config path: a stale pid can never hit a stranger.
 */
import fs from 'node:fs';
import http from 'node:http';
import type { TestContext } from 'node:test';
import { TEST_FAULTS_ENV } from '../../src/config.js';
import type { ClusterNodeEntry } from '../../src/cli/cluster-file.js';
import { type ClusterParams, nodeEntry, writeNodeConfig } from '../../src/cli/node-config-gen.js';
import { defaultNodeCommand, type ExitInfo, lastLogLine, spawnNode, waitHealthy } from '../../src/cli/node-launcher.js';
import { isProcessAlive, signalProcess, stopProcess } from '../../src/cli/processes.js';
import type { TestCluster } from './cluster.js';

/** What signals need: the pid and the config path that proves the pid is still that node. */
export type NodeProcess = Pick<ClusterNodeEntry, 'id' | 'pid' | 'configPath'>;

/** Sets PTN_ENABLE_TEST_FAULTS=1 for node processes spawned from now on; restored after the test. */
export function enableTestFaultsEnv(t: Pick<TestContext, 'after'>): void {
  const before = process.env[TEST_FAULTS_ENV];
  process.env[TEST_FAULTS_ENV] = '1';
  t.after(() => {
    if (before === undefined) delete process.env[TEST_FAULTS_ENV];
    else process.env[TEST_FAULTS_ENV] = before;
  });
}

function entryOf(cluster: TestCluster, id: string): NodeProcess {
  const n = cluster.nodes().find((e) => e.id === id);
  if (!n) throw new Error(`no node ${id}`);
  return n;
}

/** Sends `signal` to the node's process; false when it is not running. */
export function signalNode(node: NodeProcess, signal: NodeJS.Signals): boolean {
  return node.pid !== null && signalProcess(node.pid, node.configPath, signal);
}

/** SIGSTOP to a node of a test cluster: it freezes with every socket open (peers see silence). */
export function pauseNode(cluster: TestCluster, id: string): boolean {
  return signalNode(entryOf(cluster, id), 'SIGSTOP');
}

/** SIGCONT to a node of a test cluster (after pauseNode or a `stop` fault point). */
export function resumeNode(cluster: TestCluster, id: string): boolean {
  return signalNode(entryOf(cluster, id), 'SIGCONT');
}

/** SIGKILL to a node of a test cluster, without waiting (cluster.stop(id, { kill: true }) waits). */
export function killNodeNow(cluster: TestCluster, id: string): boolean {
  return signalNode(entryOf(cluster, id), 'SIGKILL');
}

/** 'running' (R/S/D…), 'stopped' (T: SIGSTOP or a `stop` fault point) or 'gone'. Linux /proc. */
export function nodeState(node: NodeProcess): 'running' | 'stopped' | 'gone' {
  if (node.pid === null || !isProcessAlive(node.pid, node.configPath)) return 'gone';
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${node.pid}/stat`, 'utf8');
  } catch {
    return 'gone';
  }
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state === 'T' || state === 't' ? 'stopped' : 'running';
}

/** Waits until the node's process is in `state` (e.g. 'stopped' once a `stop` fault point fired). */
export async function waitNodeState(node: NodeProcess, state: 'running' | 'stopped' | 'gone', timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (nodeState(node) !== state) {
    if (Date.now() > deadline) throw new Error(`${node.id} did not become ${state} in ${timeoutMs} ms (it is ${nodeState(node)})`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** An admin-port HTTP exchange: status and parsed JSON body (undefined when empty or not JSON). */
export function adminRequest(adminAddress: string, method: 'GET' | 'POST', urlPath: string, body?: unknown, timeoutMs = 5_000): Promise<{ status: number; body: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON of any shape
  const i = adminAddress.lastIndexOf(':');
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: adminAddress.slice(0, i),
        port: Number(adminAddress.slice(i + 1)),
        method,
        path: urlPath,
        timeout: timeoutMs,
        agent: false,
        headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {},
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => {
          const text = Buffer.concat(parts).toString('utf8');
          let parsed: unknown;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            parsed = undefined;
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} http://${adminAddress}${urlPath} timed out`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** `POST /faults`: replaces the node's fault points and/or file rules (200), 404 without test faults. */
export function postFaults(adminAddress: string, rules: { points?: unknown[]; fileRules?: unknown[] }): ReturnType<typeof adminRequest> {
  return adminRequest(adminAddress, 'POST', '/faults', rules);
}

/** `GET /faults`: rules with counters, hits per point, injected file faults. */
export function getFaults(adminAddress: string): ReturnType<typeof adminRequest> {
  return adminRequest(adminAddress, 'GET', '/faults');
}

/** A node process started alone (outside a ClusterManager) by `startLoneNode`. */
export interface LoneNode {
  readonly entry: ClusterNodeEntry;
  readonly id: string;
  readonly pid: number;
  readonly configPath: string;
  readonly address: string;
  readonly adminAddress: string;
  /** SIGTERM (SIGKILL with `kill`) and wait until it is gone. Idempotent. */
  stop(opts?: { kill?: boolean }): Promise<void>;
  /** The last line of its log (for failure messages). */
  lastLog(): string;
}

export interface LoneNodeOptions {
  /** Directory of the node's folder (node-<index>/ is made inside). */
  dir: string;
  index: number;
  basePort: number;
  clusterId?: string;
  secret?: string;
  seeds?: string[];
  /** Extra config keys of this node only (testFaults, advertiseAddress, storage …). */
  config?: Record<string, unknown>;
  /** PTN_ENABLE_TEST_FAULTS=1 for this process (default: as the test process has it). */
  testFaultsEnv?: boolean;
  timeoutMs?: number;
  /** Called with the node so the test can stop it (e.g. `(n) => t.after(() => n.stop({ kill: true }))`). */
  register?: (node: LoneNode) => void;
}

/**
 * Starts `ptn node start` for node `index` of a local layout (ports basePort+index and
 * basePort+100+index, config in DIR/node-<index>/config.json) and waits for `/healthz`.
 */
export async function startLoneNode(o: LoneNodeOptions): Promise<LoneNode> {
  const params: ClusterParams = {
    dir: o.dir,
    host: '127.0.0.1',
    basePort: o.basePort,
    clusterId: o.clusterId ?? 'ptn-faults',
    secret: o.secret ?? 'fault-suite-secret',
    nodeConfig: { logLevel: 'info', ...o.config },
  };
  const entry = nodeEntry(params, o.index);
  writeNodeConfig(params, entry, o.seeds ?? []);
  const exits = new Map<number, ExitInfo>();
  const before = process.env[TEST_FAULTS_ENV];
  if (o.testFaultsEnv === true) process.env[TEST_FAULTS_ENV] = '1';
  if (o.testFaultsEnv === false) delete process.env[TEST_FAULTS_ENV];
  let pid: number;
  try {
    pid = spawnNode(entry, defaultNodeCommand(), exits); // the child takes the environment now
  } finally {
    if (before === undefined) delete process.env[TEST_FAULTS_ENV];
    else process.env[TEST_FAULTS_ENV] = before;
  }
  entry.pid = pid;
  entry.running = true;
  let stopped = false;
  const node: LoneNode = {
    entry,
    id: entry.id,
    pid,
    configPath: entry.configPath,
    address: entry.address,
    adminAddress: entry.adminAddress,
    lastLog: () => lastLogLine(entry.logPath),
    async stop(s = {}) {
      if (stopped) return;
      stopped = true;
      await stopProcess(pid, entry.configPath, { kill: s.kill, termTimeoutMs: 10_000 });
      entry.running = false;
    },
  };
  o.register?.(node);
  await waitHealthy(entry, Date.now() + (o.timeoutMs ?? 60_000), exits);
  return node;
}
