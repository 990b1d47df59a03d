/**
 * `DIR/cluster.json`: the manifest of a local cluster made by `ptn cluster up`.
 *
 * It is a plain, human-readable JSON document (tests, benchmarks and people read it), with a
 * `kind` and a `version` so a reader never guesses at an unknown layout:
 *
 * ```json
 * {"kind": "ptn-cluster", "version": 1, "clusterId": "ptn-local", "secret": "…", "host": "127.0.0.1",
 *  "basePort": 7400,
 *  "nodes": [{"id": "node-1", "index": 1, "pid": 4242, "address": "127.0.0.1:7401",
 *             "adminAddress": "127.0.0.1:7501", "dataDir": "/abs/DIR/node-1/data",
 *             "configPath": "/abs/DIR/node-1/config.json", "logPath": "/abs/DIR/node-1/node.log",
 *             "running": true}]}
 * ```
 *
 * No CRC, unlike node metadata: it is written atomically (temp file, fsync, rename, fsync of the
 * directory), so it is never torn, and people may edit it. It holds the cluster secret, so it is
 * created with mode 0600. A file that does not match the shape above is ERR_FILE_FORMAT.
 *
 * Mutating commands hold `DIR/cluster.lock` (created exclusively, holding the owner's pid; a lock
 * whose owner is gone is taken over) so that two `ptn cluster` commands never race on the file.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ErrorCode, fsError, ptnError } from '../errors.js';

/** `kind` of a cluster manifest. */
export const CLUSTER_FILE_KIND = 'ptn-cluster';
/** The manifest version this build writes and reads. */
export const CLUSTER_FILE_VERSION = 1;
/** File name of the manifest inside the cluster directory. */
export const CLUSTER_FILE_NAME = 'cluster.json';
const LOCK_FILE_NAME = 'cluster.lock';

/** One node of a local cluster. */
export interface ClusterNodeEntry {
  id: string;
  /** 1-based index: ports are basePort + index and basePort + 100 + index. */
  index: number;
  /** Pid of the last process started for it (kept after it stops, for diagnosis). */
  pid: number | null;
  /** HOST:PORT of its WebSocket port. */
  address: string;
  /** HOST:PORT of its admin HTTP port. */
  adminAddress: string;
  dataDir: string;
  configPath: string;
  logPath: string;
  running: boolean;
}

/** The whole manifest. */
export interface ClusterFile {
  kind: typeof CLUSTER_FILE_KIND;
  version: typeof CLUSTER_FILE_VERSION;
  clusterId: string;
  secret: string;
  host: string;
  basePort: number;
  /** Extra config keys every generated node config gets (logLevel, storage, wal, net …). */
  nodeConfig?: Record<string, unknown>;
  nodes: ClusterNodeEntry[];
}

/** Path of cluster.json in `dir`. */
export function clusterFilePath(dir: string): string {
  return path.join(dir, CLUSTER_FILE_NAME);
}

function bad(file: string, what: string): never {
  throw ptnError(ErrorCode.ERR_FILE_FORMAT, `${file}: ${what}`, { details: { file } });
}

function checkNode(file: string, n: unknown, i: number): ClusterNodeEntry {
  const o = n as Record<string, unknown>;
  if (typeof o !== 'object' || o === null) bad(file, `nodes[${i}]: expected an object`);
  for (const k of ['id', 'address', 'adminAddress', 'dataDir', 'configPath', 'logPath'] as const) {
    if (typeof o[k] !== 'string') bad(file, `nodes[${i}].${k}: expected a string`);
  }
  if (!Number.isInteger(o.index) || (o.index as number) < 1) bad(file, `nodes[${i}].index: expected an integer >= 1`);
  if (o.pid !== null && !(Number.isInteger(o.pid) && (o.pid as number) > 0)) bad(file, `nodes[${i}].pid: expected a pid or null`);
  if (typeof o.running !== 'boolean') bad(file, `nodes[${i}].running: expected true or false`);
  return o as unknown as ClusterNodeEntry;
}

/** Checks the shape of a parsed manifest. */
export function validateClusterFile(raw: unknown, file = CLUSTER_FILE_NAME): ClusterFile {
  const o = raw as Record<string, unknown>;
  if (typeof o !== 'object' || o === null || Array.isArray(o)) bad(file, 'expected a JSON object');
  if (o.kind !== CLUSTER_FILE_KIND) bad(file, `kind: expected "${CLUSTER_FILE_KIND}"`);
  if (o.version !== CLUSTER_FILE_VERSION) bad(file, `version: unknown version ${JSON.stringify(o.version)} (this build reads ${CLUSTER_FILE_VERSION})`);
  for (const k of ['clusterId', 'secret', 'host'] as const) if (typeof o[k] !== 'string') bad(file, `${k}: expected a string`);
  if (!Number.isInteger(o.basePort)) bad(file, 'basePort: expected an integer');
  if (o.nodeConfig !== undefined && (typeof o.nodeConfig !== 'object' || o.nodeConfig === null || Array.isArray(o.nodeConfig))) {
    bad(file, 'nodeConfig: expected an object');
  }
  if (!Array.isArray(o.nodes)) bad(file, 'nodes: expected an array');
  const nodes = (o.nodes as unknown[]).map((n, i) => checkNode(file, n, i));
  const ids = new Set(nodes.map((n) => n.id));
  if (ids.size !== nodes.length) bad(file, 'nodes: duplicate node id');
  return o as unknown as ClusterFile;
}

/** Reads `DIR/cluster.json`; undefined when there is none. */
export function readClusterFile(dir: string): ClusterFile | undefined {
  const file = clusterFilePath(dir);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fsError(err, `reading ${file}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    bad(file, `not valid JSON: ${(err as Error).message}`);
  }
  return validateClusterFile(raw, file);
}

/** Reads `DIR/cluster.json` or fails with ERR_USAGE saying there is no cluster there. */
export function requireClusterFile(dir: string): ClusterFile {
  const cf = readClusterFile(dir);
  if (!cf) throw ptnError(ErrorCode.ERR_USAGE, `no cluster in ${dir} (${clusterFilePath(dir)} not found; run 'ptn cluster up')`);
  return cf;
}

/** Writes a file atomically: temp file, fsync, rename over, fsync of the directory. */
export function writeFileAtomic(file: string, text: string, mode = 0o644): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const fd = fs.openSync(tmp, 'w', mode);
    try {
      fs.writeSync(fd, text);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
    const dfd = fs.openSync(path.dirname(file), 'r');
    try {
      fs.fsyncSync(dfd);
    } finally {
      fs.closeSync(dfd);
    }
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw fsError(err, `writing ${file}`);
  }
}

/** Writes `DIR/cluster.json` atomically (mode 0600: it holds the secret). */
export function writeClusterFile(dir: string, cf: ClusterFile): void {
  validateClusterFile(cf, clusterFilePath(dir));
  writeFileAtomic(clusterFilePath(dir), `${JSON.stringify(cf, null, 2)}\n`, 0o600);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Runs `fn` holding `DIR/cluster.lock`. A lock left by a process that is gone is taken over; a
 * lock held by a live process is ERR_USAGE naming its pid.
 */
export async function withClusterLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const lock = path.join(dir, LOCK_FILE_NAME);
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw fsError(err, `creating ${dir}`);
  }
  for (let attempt = 0; ; attempt++) {
    try {
      fs.writeFileSync(lock, `${process.pid}\n`, { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw fsError(err, `creating ${lock}`);
      const owner = Number.parseInt(fs.readFileSync(lock, 'utf8'), 10);
      if (attempt < 3 && (!Number.isInteger(owner) || !pidAlive(owner))) {
        fs.rmSync(lock, { force: true });
        continue;
      }
      throw ptnError(ErrorCode.ERR_USAGE, `another ptn cluster command (pid ${owner}) is working on ${dir} (lock ${lock})`);
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lock, { force: true });
  }
}
