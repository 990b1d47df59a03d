/**
 * Generated node configs of a local cluster: node i of a cluster with base port P lives in
 * `DIR/node-<i>/` (config.json, data/, node.log), listens on P+i (WebSocket) and P+100+i (admin
 * HTTP), and seeds the nodes that already run. Every generated config is checked against
 * config/node.schema.json (validateConfig) before it is written, so a node never refuses it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { validateConfig } from '../config.js';
import { ErrorCode, ptnError } from '../errors.js';
import type { ClusterNodeEntry } from './cluster-file.js';
import { writeFileAtomic } from './cluster-file.js';

/** Offset between a node's WebSocket port and its admin port. */
export const ADMIN_PORT_OFFSET = 100;
/** Most nodes a local cluster can have (ports P+1 … P+99). */
export const LOCAL_NODES_MAX = 99;

/** What is the same for every node of a local cluster. */
export interface ClusterParams {
  dir: string;
  host: string;
  basePort: number;
  clusterId: string;
  secret: string;
  /** Extra config keys for every node (logLevel, storage, wal, net …), merged one level deep. */
  nodeConfig?: Record<string, unknown>;
}

/** Keys the generator owns; a `nodeConfig` may not override them. */
const OWN_KEYS = ['nodeId', 'clusterId', 'clusterSecret', 'host', 'port', 'adminPort', 'dataDir', 'seeds'];

/** The manifest entry of node `index` (not running yet). */
export function nodeEntry(p: ClusterParams, index: number): ClusterNodeEntry {
  if (!Number.isInteger(index) || index < 1 || index > LOCAL_NODES_MAX) {
    throw ptnError(ErrorCode.ERR_USAGE, `a local cluster holds at most ${LOCAL_NODES_MAX} nodes (node index ${index})`);
  }
  if (p.basePort + ADMIN_PORT_OFFSET + index > 65535 || p.basePort < 0) {
    throw ptnError(ErrorCode.ERR_USAGE, `base port ${p.basePort} leaves no room for node ${index} (needs ${p.basePort + ADMIN_PORT_OFFSET + index} <= 65535)`);
  }
  const nodeDir = path.resolve(p.dir, `node-${index}`);
  return {
    id: `node-${index}`,
    index,
    pid: null,
    address: `${p.host}:${p.basePort + index}`,
    adminAddress: `${p.host}:${p.basePort + ADMIN_PORT_OFFSET + index}`,
    dataDir: path.join(nodeDir, 'data'),
    configPath: path.join(nodeDir, 'config.json'),
    logPath: path.join(nodeDir, 'node.log'),
    running: false,
  };
}

/** The config object of a node, validated against the schema (throws ERR_CONFIG_INVALID). */
export function nodeConfigObject(p: ClusterParams, entry: ClusterNodeEntry, seeds: readonly string[]): Record<string, unknown> {
  const extra = p.nodeConfig ?? {};
  for (const k of OWN_KEYS) {
    if (k in extra) throw ptnError(ErrorCode.ERR_USAGE, `node config overrides may not set "${k}" (the cluster manager sets it)`);
  }
  const cfg: Record<string, unknown> = {
    nodeId: entry.id,
    clusterId: p.clusterId,
    clusterSecret: p.secret,
    host: p.host,
    port: p.basePort + entry.index,
    adminPort: p.basePort + ADMIN_PORT_OFFSET + entry.index,
    dataDir: entry.dataDir,
    seeds: [...seeds],
    logLevel: 'info',
  };
  for (const [k, v] of Object.entries(extra)) {
    const base = cfg[k];
    cfg[k] = isPlainObject(v) && isPlainObject(base) ? { ...base, ...v } : v;
  }
  validateConfig(cfg, `${entry.configPath} (generated)`, path.dirname(entry.configPath));
  return cfg;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Writes the node's config.json atomically (mode 0600: it holds the secret) and makes its data dir. */
export function writeNodeConfig(p: ClusterParams, entry: ClusterNodeEntry, seeds: readonly string[]): void {
  const cfg = nodeConfigObject(p, entry, seeds);
  fs.mkdirSync(entry.dataDir, { recursive: true });
  writeFileAtomic(entry.configPath, `${JSON.stringify(cfg, null, 2)}\n`, 0o600);
}
