/**
 * `ptn cluster up|down|add|stop|start|ls|wait`: the command-line face of cluster-manager.ts.
 * Progress goes to stdout one line per step; the node table ends `up`, `add`, `start` and `ls`.
 */
import fs from 'node:fs';
import { ErrorCode, ptnError } from '../errors.js';
import { ClusterManager, type NodeView } from './cluster-manager.js';
import { formatTable } from './table.js';

/** Flags every `ptn cluster` command shares. */
export interface ClusterCmdOptions {
  dir: string;
  timeoutMs?: number;
  json?: boolean;
}

function manager(dir: string): ClusterManager {
  return new ClusterManager({ dir, progress: (line) => process.stdout.write(`${line}\n`) });
}

/** Text table of a cluster's nodes. */
export function formatNodes(nodes: readonly NodeView[]): string {
  const rows = nodes.map((n) => [
    n.id,
    n.alive ? 'running' : n.running ? 'exited' : 'stopped',
    n.alive && n.pid !== null ? String(n.pid) : '-',
    n.address,
    n.adminAddress,
    n.dataDir,
  ]);
  return formatTable(['ID', 'STATE', 'PID', 'ADDRESS', 'ADMIN', 'DATA'], rows);
}

function printNodes(m: ClusterManager, json: boolean | undefined): void {
  const nodes = m.list();
  process.stdout.write(json ? `${JSON.stringify(nodes, null, 2)}\n` : formatNodes(nodes));
}

function readNodeConfig(file: string | undefined): Record<string, unknown> | undefined {
  if (file === undefined) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw ptnError(ErrorCode.ERR_CONFIG_INVALID, `${file}: cannot read as JSON: ${(err as Error).message}`, { cause: err });
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw ptnError(ErrorCode.ERR_CONFIG_INVALID, `${file}: expected a JSON object of node config keys`);
  }
  return raw as Record<string, unknown>;
}

/** `ptn cluster up`: starts the cluster, prints progress and the node table. */
export async function clusterUp(o: ClusterCmdOptions & { nodes: number; basePort?: number; host?: string; secret?: string; clusterId?: string; nodeConfig?: string }): Promise<number> {
  const m = manager(o.dir);
  await m.up({
    nodes: o.nodes,
    basePort: o.basePort,
    host: o.host,
    secret: o.secret ?? process.env.PTN_SECRET,
    clusterId: o.clusterId,
    nodeConfig: readNodeConfig(o.nodeConfig),
    timeoutMs: o.timeoutMs,
  });
  printNodes(m, o.json);
  return 0;
}

/** `ptn cluster down`: stops every node. */
export async function clusterDown(o: ClusterCmdOptions & { kill?: boolean }): Promise<number> {
  const m = manager(o.dir);
  await m.down({ timeoutMs: o.timeoutMs, kill: o.kill });
  process.stdout.write(`cluster in ${m.dir} stopped\n`);
  return 0;
}

/** `ptn cluster add`: one more node joins; waits for the rebalance unless --no-wait. */
export async function clusterAdd(o: ClusterCmdOptions & { wait: boolean }): Promise<number> {
  const m = manager(o.dir);
  const e = await m.add({ wait: o.wait ? 'ready' : 'healthy', timeoutMs: o.timeoutMs });
  process.stdout.write(`${e.id} joined${o.wait ? '; cluster rebalanced' : ''}\n`);
  printNodes(m, o.json);
  return 0;
}

/** `ptn cluster stop`: stops (or with --kill crashes) one node; waits until the cluster settles unless --no-wait. */
export async function clusterStop(o: ClusterCmdOptions & { node: string; kill?: boolean; wait: boolean }): Promise<number> {
  const m = manager(o.dir);
  await m.stop(o.node, { kill: o.kill, wait: o.wait, timeoutMs: o.timeoutMs });
  if (o.wait) process.stdout.write(`cluster settled without ${o.node}\n`);
  return 0;
}

/** `ptn cluster start`: restarts a stopped node on its own data. */
export async function clusterStart(o: ClusterCmdOptions & { node: string; wait: boolean }): Promise<number> {
  const m = manager(o.dir);
  await m.start(o.node, { wait: o.wait ? 'ready' : 'healthy', timeoutMs: o.timeoutMs });
  process.stdout.write(`${o.node} running${o.wait ? '; cluster rebalanced' : ''}\n`);
  printNodes(m, o.json);
  return 0;
}

/** `ptn cluster ls`: the node table, pids checked. */
export async function clusterLs(o: ClusterCmdOptions): Promise<number> {
  printNodes(new ClusterManager({ dir: o.dir }), o.json);
  return 0;
}

/** `ptn cluster wait`: waits until the cluster is ready (all running nodes listed, rebalanced). */
export async function clusterWait(o: ClusterCmdOptions): Promise<number> {
  const m = manager(o.dir);
  const s = await m.waitReady(o.timeoutMs);
  process.stdout.write(`cluster ready: ${s.nodes.length} nodes, rebalanced, topology v${s.topologyVersion}\n`);
  return 0;
}
