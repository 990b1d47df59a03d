/**
 * Node configuration: loading, defaults and validation against config/node.schema.json.
 *
 * Invariant: a config that reaches the rest of the node has every key present (defaults
 * filled in) and every value in range. A bad file fails with one line naming the file,
 * the key and what was expected (ERR_CONFIG_INVALID).
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import AjvModule from 'ajv';
import { ErrorCode, ptnError } from './errors.js';

export interface StorageConfig {
  pageSizeBytes: number;
  pageCacheBytesMax: number;
  checkpointIntervalMs: number;
  checkpointDirtyRatio: number;
  keyBytesMax: number;
  valueBytesMax: number;
  counterGapsMax: number;
  syncPageReads: boolean;
}

export interface WalConfig {
  durability: 'fsync' | 'background';
  flushIntervalMs: number;
  segmentBytes: number;
  historyBytesMax: number;
  recordBytesMax: number;
  bufferBytesMax: number;
  tempSegmentBytes: number;
}

export interface NetConfig {
  frameBytesMax: number;
  requestTimeoutMs: number;
  handshakeTimeoutMs: number;
  heartbeatIntervalMs: number;
  failureTimeoutMs: number;
  sendBufferBytesMax: number;
  reconnectRetries: number;
}

export interface ClusterConfig {
  syncMode: 'full-sync' | 'primary-sync';
  joinTimeoutMs: number;
  topologyAckTimeoutMs: number;
  writeRetryMs: number;
}

export interface RebalanceConfig {
  throttleBytesPerSec: number;
  fullBatchBytesMax: number;
  receiveSlots: number;
  sendSlots: number;
  chunkBytes: number;
  chunkWindow: number;
  receiveChunksMax: number;
  prewarmBytesMax: number;
  yieldLagMs: number;
  yieldWaitMaxMs: number;
  yieldUtilization: number;
  compression: 'none' | 'lz4';
  snapshotIdleTimeoutMs: number;
  fileMinBytes: number;
  historicalMaxCounterGap: number;
  replayFenceLagRecords: number;
  diskSpaceMarginBytes: number;
  resumeRetries: number;
}

/**
 * TEST ONLY: a named fault point (src/testing/fault-points.ts). `name` may end with `*` (prefix
 * match); `after` = matching hits let through before it fires; `once` = fire a single time.
 */
export interface FaultPointRule {
  name: string;
  action: 'kill' | 'stop' | 'delay' | 'throw';
  delayMs?: number;
  after?: number;
  once?: boolean;
}

/** TEST ONLY: a file-system fault (src/testing/fault-file-layer.ts), matched by path substring and op. */
export interface FileFaultRule {
  pathIncludes: string;
  op: 'write' | 'sync' | 'open' | 'rename';
  nth?: number;
  error?: 'ENOSPC' | 'EIO';
  tear?: boolean;
  bytesMax?: number;
}

/** TEST ONLY: fault injection, off by default and refused unless PTN_ENABLE_TEST_FAULTS=1. */
export interface TestFaultsConfig {
  enabled: boolean;
  points: FaultPointRule[];
  fileRules: FileFaultRule[];
}

export interface NodeConfig {
  nodeId: string;
  clusterId: string;
  clusterSecret: string;
  host: string;
  port: number;
  adminPort: number;
  /** HOST:PORT peers dial to reach this node (a test proxy may sit there); '' = host:port as bound. */
  advertiseAddress: string;
  /** Absolute after loading. */
  dataDir: string;
  seeds: string[];
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  storage: StorageConfig;
  wal: WalConfig;
  net: NetConfig;
  cluster: ClusterConfig;
  rebalance: RebalanceConfig;
  /** TEST ONLY (src/testing/): fault points and file faults; `enabled` is refused outside test runs. */
  testFaults: TestFaultsConfig;
}

const here = path.dirname(fileURLToPath(import.meta.url));
/** Path of the JSON schema every node config is checked against. */
export const CONFIG_SCHEMA_PATH = path.resolve(here, '..', 'config', 'node.schema.json');

type AjvCtor = typeof AjvModule.default;
const Ajv: AjvCtor = (AjvModule as unknown as { default?: AjvCtor }).default ?? (AjvModule as unknown as AjvCtor);

let validator: ReturnType<InstanceType<AjvCtor>['compile']> | undefined;
function getValidator() {
  if (!validator) {
    const schema = JSON.parse(fs.readFileSync(CONFIG_SCHEMA_PATH, 'utf8'));
    const ajv = new Ajv({ useDefaults: true, allErrors: false, strict: false, verbose: true });
    validator = ajv.compile(schema);
  }
  return validator;
}

/**
 * Validates a parsed config object, filling defaults in place. `source` names the file in
 * error messages. Relative `dataDir` resolves against `baseDir`.
 */
export function validateConfig(raw: unknown, source = '<config>', baseDir = process.cwd()): NodeConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw ptnError(ErrorCode.ERR_CONFIG_INVALID, `${source}: expected a JSON object at the top level`);
  }
  const obj = structuredClone(raw) as Record<string, unknown>;
  const validate = getValidator();
  if (!validate(obj)) {
    const e = validate.errors![0]!;
    let key = e.instancePath.replace(/^\//, '').replaceAll('/', '.');
    let expected = (e.message ?? 'a valid value').replace(/^must (be )?/, '');
    if (e.keyword === 'additionalProperties') {
      const extra = (e.params as { additionalProperty: string }).additionalProperty;
      key = key ? `${key}.${extra}` : extra;
      expected = 'no such key (unknown key)';
    } else if (e.keyword === 'enum') {
      expected = `one of ${JSON.stringify((e.params as { allowedValues: unknown[] }).allowedValues)}`;
    }
    const got = e.keyword === 'additionalProperties' ? '' : `, got ${JSON.stringify(e.data)}`;
    throw ptnError(ErrorCode.ERR_CONFIG_INVALID, `${source}: ${key || '(top level)'}: expected ${expected}${got}`, {
      details: { source, key, keyword: e.keyword },
    });
  }
  const cfg = obj as unknown as NodeConfig;
  cfg.dataDir = path.resolve(baseDir, cfg.dataDir);
  return cfg;
}

/** Reads, parses and validates a config file. */
export function loadConfigFile(file: string): NodeConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw ptnError(ErrorCode.ERR_CONFIG_INVALID, `${file}: cannot read: ${(err as Error).message}`, { cause: err });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw ptnError(ErrorCode.ERR_CONFIG_INVALID, `${file}: not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  return validateConfig(raw, file, path.dirname(path.resolve(file)));
}

/** A full config with defaults, overridden by `overrides` (handy in tests and generators). */
export function defaultConfig(overrides: Record<string, unknown> = {}): NodeConfig {
  return validateConfig(overrides, '<defaults>');
}

/** Environment variable a test run sets to let a node start with `testFaults.enabled`. */
export const TEST_FAULTS_ENV = 'PTN_ENABLE_TEST_FAULTS';

/**
 * Refuses a config with `testFaults.enabled` unless `PTN_ENABLE_TEST_FAULTS=1` is set: fault
 * injection can kill or stop the process and fail its writes, so a normal start must never run it.
 * Throws ERR_CONFIG_INVALID with one line naming `source`.
 */
export function checkTestFaultsAllowed(cfg: NodeConfig, source = '<config>', env: NodeJS.ProcessEnv = process.env): void {
  if (!cfg.testFaults?.enabled || env[TEST_FAULTS_ENV] === '1') return;
  throw ptnError(
    ErrorCode.ERR_CONFIG_INVALID,
    `${source}: testFaults.enabled: expected false in a normal start (test faults run only with ${TEST_FAULTS_ENV}=1)`,
    { details: { source, key: 'testFaults.enabled' } },
  );
}
