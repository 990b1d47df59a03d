/**
 * How the command line reaches a node: which address, which cluster id and secret, and the
 * authenticated client connection (handshake role 'client', src/net/client.ts).
 *
 * Resolution order, first found wins:
 *   address:    --node, env PTN_NODE, the first running node of --dir's cluster.json, 127.0.0.1:7401
 *   secret:     --secret, env PTN_SECRET, --dir's cluster.json, the config default
 *   cluster id: --cluster-id, env PTN_CLUSTER_ID, --dir's cluster.json, the config default
 */
import { defaultConfig, type NetConfig } from '../config.js';
import { PtnError, ptnError, ErrorCode } from '../errors.js';
import { dial } from '../net/client.js';
import type { Connection } from '../net/connection.js';
import { readClusterFile, requireClusterFile } from './cluster-file.js';

/** The address `ptn put/get/…` talk to when nothing else says otherwise. */
export const DEFAULT_NODE_ADDRESS = '127.0.0.1:7401';

/** Client flags as commander hands them over. */
export interface ClientFlags {
  node?: string;
  secret?: string;
  clusterId?: string;
  dir?: string;
  /** Per-request timeout. */
  timeoutMs?: number;
}

/** Everything needed to dial a node as a client. */
export interface ClientSettings {
  address: string;
  secret: string;
  clusterId: string;
  requestTimeoutMs?: number;
}

/** Resolves the address, secret and cluster id (see the file comment); pure but for reading --dir. */
export function resolveClientSettings(
  flags: ClientFlags,
  env: NodeJS.ProcessEnv = process.env,
  defaults: { clusterSecret: string; clusterId: string } = defaultConfig(),
): ClientSettings {
  const cf = flags.dir !== undefined ? requireClusterFile(flags.dir) : undefined;
  const running = cf?.nodes.find((n) => n.running);
  const address = flags.node ?? env.PTN_NODE ?? running?.address ?? cf?.nodes[0]?.address ?? DEFAULT_NODE_ADDRESS;
  const secret = flags.secret ?? env.PTN_SECRET ?? cf?.secret ?? defaults.clusterSecret;
  const clusterId = flags.clusterId ?? env.PTN_CLUSTER_ID ?? cf?.clusterId ?? defaults.clusterId;
  return { address, secret, clusterId, requestTimeoutMs: flags.timeoutMs };
}

/** Addresses of every node listed in --dir's cluster.json (for fail-over), running ones first. */
export function clusterAddresses(dir: string | undefined): string[] {
  if (dir === undefined) return [];
  const cf = readClusterFile(dir);
  if (!cf) return [];
  return [...cf.nodes].sort((a, b) => Number(b.running) - Number(a.running)).map((n) => n.address);
}

let clientSeq = 0;

/** The network settings a client uses: the node defaults with an optional request timeout. */
export function clientNetConfig(requestTimeoutMs?: number): NetConfig {
  const net = defaultConfig().net;
  return requestTimeoutMs === undefined ? net : { ...net, requestTimeoutMs };
}

/**
 * Dials `address` and completes the client handshake. `retries` bounds reconnect attempts
 * (a command line gives up quickly; a load generator may insist).
 */
export async function connectClient(s: ClientSettings, opts: { retries?: number; address?: string } = {}): Promise<Connection> {
  const address = opts.address ?? s.address;
  try {
    return await dial(address, {
      identity: { nodeId: `ptn-cli-${process.pid}-${++clientSeq}`, clusterId: s.clusterId, secret: s.secret, role: 'client' },
      config: clientNetConfig(s.requestTimeoutMs),
      retries: opts.retries ?? 1,
    });
  } catch (err) {
    if (err instanceof PtnError) throw ptnError(err.code, `cannot connect to ${address}: ${err.message}`, { cause: err, details: err.details });
    throw ptnError(ErrorCode.ERR_CONNECTION_CLOSED, `cannot connect to ${address}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
  }
}

/** Runs `fn` with a connection that is closed afterwards, whatever happens. */
export async function withClient<T>(s: ClientSettings, fn: (conn: Connection) => Promise<T>): Promise<T> {
  const conn = await connectClient(s);
  try {
    return await fn(conn);
  } finally {
    await conn.close().catch(() => {});
  }
}
