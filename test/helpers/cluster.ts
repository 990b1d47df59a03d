/**
 * Test helper: a local cluster of real node processes in a temp dir, started through the cluster
 * manager library (src/cli/cluster-manager.ts), with a teardown that never leaves a process.
 *
 *   const c = await startTestCluster({ nodes: 3 });
 *   after(() => c.teardown());            // kills every pid it knows, checks they are gone, rm -rf
 *   const conn = await c.client();        // an authenticated client connection (closed by teardown)
 *   await c.stop('node-2', { kill: true }); await c.start('node-2');
 *
 * Ports come from findFreeBasePort (below Linux's ephemeral range, random, checked free). When
 * start-up fails, the tail of every node log is printed before the directory is removed, and the
 * error is rethrown.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Connection } from '../../src/net/connection.js';
import { type ClientSettings, connectClient } from '../../src/cli/client.js';
import type { ClusterNodeEntry } from '../../src/cli/cluster-file.js';
import { ClusterManager, type NodeView, type WaitMode } from '../../src/cli/cluster-manager.js';
import { findFreeBasePort, isProcessAlive } from '../../src/cli/processes.js';
import type { ClusterStatus } from '../../src/cli/status-format.js';

export interface TestClusterOptions {
  nodes: number;
  /** Extra config keys for every node (e.g. { wal: { durability: 'background' } }). */
  nodeConfig?: Record<string, unknown>;
  /** Nodes that `add()` may still start on the chosen base port (default 3). */
  spareNodes?: number;
  timeoutMs?: number;
  secret?: string;
  /** Keep the directory after teardown (for debugging). */
  keepDir?: boolean;
}

export interface TestCluster {
  readonly dir: string;
  readonly manager: ClusterManager;
  readonly basePort: number;
  /** How a client reaches the cluster (first running node). */
  settings(requestTimeoutMs?: number): ClientSettings;
  /** The nodes with a live pid check. */
  nodes(): NodeView[];
  /** HOST:PORT of a node's WebSocket port. */
  address(id: string): string;
  /** A client connection to `id` (default: the first running node); closed by teardown. */
  client(id?: string): Promise<Connection>;
  stop(id: string, opts?: { kill?: boolean; wait?: boolean; timeoutMs?: number }): Promise<void>;
  start(id: string, opts?: { wait?: WaitMode; timeoutMs?: number }): Promise<void>;
  add(opts?: { wait?: WaitMode; timeoutMs?: number }): Promise<ClusterNodeEntry>;
  waitReady(timeoutMs?: number): Promise<ClusterStatus>;
  /** Idempotent: closes clients, SIGKILLs every known node process, checks none is left, removes the dir. */
  teardown(): Promise<void>;
}

function logTails(dir: string, lines = 20): string {
  const out: string[] = [];
  for (const name of fs.existsSync(dir) ? fs.readdirSync(dir).sort() : []) {
    const log = path.join(dir, name, 'node.log');
    if (!fs.existsSync(log)) continue;
    const tail = fs.readFileSync(log, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    out.push(`--- ${log} (last ${lines} lines)\n${tail}`);
  }
  return out.join('\n');
}

/** Managers whose clusters are not torn down yet: killed on process exit as a safety net. */
const live = new Set<ClusterManager>();
let exitHook = false;
function guard(manager: ClusterManager): void {
  live.add(manager);
  if (exitHook) return;
  exitHook = true;
  // Node processes are detached: a test process that dies without teardown must not leave them.
  process.once('exit', () => {
    for (const m of live) m.killAllSync();
  });
}

/** Starts a cluster of `nodes` processes and waits until it is rebalanced. */
export async function startTestCluster(opts: TestClusterOptions): Promise<TestCluster> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptn-'));
  const manager = new ClusterManager({ dir });
  guard(manager);
  const clients = new Set<Connection>();
  let tornDown = false;
  let basePort = 0;

  const teardown = async () => {
    if (tornDown) return;
    tornDown = true;
    await Promise.all([...clients].map((c) => c.close().catch(() => {})));
    const cf = (() => {
      try {
        return manager.read();
      } catch {
        return undefined;
      }
    })();
    await manager.killAll();
    live.delete(manager);
    const left = (cf?.nodes ?? []).filter((n) => isProcessAlive(n.pid, n.configPath));
    if (!opts.keepDir) fs.rmSync(dir, { recursive: true, force: true });
    if (left.length > 0) throw new Error(`teardown left processes: ${left.map((n) => `${n.id} pid ${n.pid}`).join(', ')}`);
  };

  for (let attempt = 1; ; attempt++) {
    basePort = await findFreeBasePort(opts.nodes + (opts.spareNodes ?? 3));
    try {
      await manager.up({ nodes: opts.nodes, basePort, nodeConfig: opts.nodeConfig, timeoutMs: opts.timeoutMs ?? 60_000, secret: opts.secret });
      break;
    } catch (err) {
      const portRace = /already in use/.test((err as Error).message) && attempt < 3;
      if (!portRace) {
        process.stderr.write(`startTestCluster failed: ${(err as Error).message}\n${logTails(dir)}\n`);
        await teardown().catch(() => {});
        throw err;
      }
      fs.rmSync(path.join(dir, 'cluster.json'), { force: true });
    }
  }

  const settings = (requestTimeoutMs?: number) => manager.clientSettings(requestTimeoutMs);
  return {
    dir,
    manager,
    basePort,
    settings,
    nodes: () => manager.list(),
    address: (id) => {
      const n = manager.list().find((e) => e.id === id);
      if (!n) throw new Error(`no node ${id}`);
      return n.address;
    },
    client: async (id) => {
      const s = settings();
      const address = id === undefined ? s.address : manager.list().find((e) => e.id === id)?.address;
      if (!address) throw new Error(`no node ${id}`);
      const conn = await connectClient(s, { address, retries: 3 });
      clients.add(conn);
      conn.once('close', () => clients.delete(conn));
      return conn;
    },
    stop: async (id, o) => {
      await manager.stop(id, o);
    },
    start: async (id, o) => {
      await manager.start(id, o);
    },
    add: (o) => manager.add(o),
    waitReady: (ms) => manager.waitReady(ms),
    teardown,
  };
}
