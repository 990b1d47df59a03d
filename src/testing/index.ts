/**
 * TEST ONLY — fault injection for the fault suites (test/fault/), and its wiring into a node.
 *
 * - `fault-points.ts`: named points (`faults().hit(name)`) that kill, stop, delay or throw;
 * - `fault-file-layer.ts`: a FileLayer that fails the Nth write, returns ENOSPC, tears writes;
 * - here: `createNodeFaults` builds both from a node's `testFaults` config (nothing when disabled),
 *   installs the points process-wide, and `serveFaultsHttp` answers the admin port's `/faults`
 *   (`POST` replaces rules, `GET` shows rules, hits and injected faults). The node refuses
 *   `testFaults.enabled` unless PTN_ENABLE_TEST_FAULTS=1 (checkTestFaultsAllowed, src/config.ts).
 *
 * Data flow: config or POST body → schema check (config/node.schema.json, through validateConfig)
 * → rule checks → `FaultPoints.setRules` / `FaultFileLayer.setRules`.
 */
import type http from 'node:http';
import { type FaultPointRule, type FileFaultRule, type TestFaultsConfig, validateConfig } from '../config.js';
import { ErrorCode, isPtnError, ptnError } from '../errors.js';
import { type FileLayer, realFileLayer } from '../util/file-layer.js';
import type { Logger } from '../util/log.js';
import { FaultFileLayer, checkFileFaultRule } from './fault-file-layer.js';
import { FaultPoints, installFaultPoints } from './fault-points.js';

export * from './fault-points.js';
export * from './fault-file-layer.js';

/** Largest `POST /faults` body accepted. */
export const FAULTS_BODY_BYTES_MAX = 64 * 1024;

/** The rules a `POST /faults` carries; an absent key leaves that kind of rule as it is. */
export interface FaultRulesUpdate {
  points?: FaultPointRule[];
  fileRules?: FileFaultRule[];
}

/** A node's live fault injection: its points (installed process-wide) and its file layer. */
export interface NodeFaults {
  readonly points: FaultPoints;
  readonly fileLayer: FaultFileLayer;
  /** Validates and applies an update (ERR_CONFIG_INVALID when it is bad; nothing applied then). */
  apply(update: unknown): void;
  /** Rules with counters, hits per point, injected file faults. */
  describe(): Record<string, unknown>;
  /** Uninstalls the points (idempotent). */
  close(): void;
}

/**
 * Validates a rules update against the config schema; returns the rules to apply. `source` names
 * it in the one-line error.
 */
export function parseFaultRulesUpdate(update: unknown, source = 'POST /faults'): FaultRulesUpdate {
  if (typeof update !== 'object' || update === null || Array.isArray(update)) {
    throw ptnError(ErrorCode.ERR_CONFIG_INVALID, `${source}: expected a JSON object {points?, fileRules?}`);
  }
  const u = update as Record<string, unknown>;
  const extra = Object.keys(u).find((k) => k !== 'points' && k !== 'fileRules');
  if (extra !== undefined) throw ptnError(ErrorCode.ERR_CONFIG_INVALID, `${source}: ${extra}: expected no such key (unknown key)`);
  const cfg = validateConfig({ testFaults: { enabled: true, ...u } }, source).testFaults;
  cfg.fileRules.forEach((r, i) => checkFileFaultRule(r, `${source}: testFaults.fileRules.${i}`));
  return { ...('points' in u ? { points: cfg.points } : {}), ...('fileRules' in u ? { fileRules: cfg.fileRules } : {}) };
}

/**
 * Builds a node's fault injection from its config, or returns undefined when it is disabled (the
 * node then uses `inner` and the no-op points). The caller checked checkTestFaultsAllowed first.
 */
export function createNodeFaults(cfg: TestFaultsConfig | undefined, opts: { inner?: FileLayer; log?: Logger } = {}): NodeFaults | undefined {
  if (!cfg?.enabled) return undefined;
  const log = opts.log;
  const points = new FaultPoints(cfg.points, (msg, extra) => log?.warn(extra, msg));
  const fileLayer = new FaultFileLayer(opts.inner ?? realFileLayer, cfg.fileRules);
  const uninstall = installFaultPoints(points);
  log?.warn({ points: cfg.points.length, fileRules: cfg.fileRules.length }, 'TEST FAULTS ENABLED: fault points and the fault file layer are active');
  return {
    points,
    fileLayer,
    apply(update) {
      const u = parseFaultRulesUpdate(update);
      if (u.points) points.setRules(u.points);
      if (u.fileRules) fileLayer.setRules(u.fileRules);
      log?.warn({ ...u }, 'test fault rules replaced');
    },
    describe: () => ({
      points: points.rules(),
      hits: points.hits(),
      fileRules: fileLayer.rules(),
      fileFaultsInjected: fileLayer.injectedCount,
      injected: fileLayer.injected(),
    }),
    close: uninstall,
  };
}

function readBody(req: http.IncomingMessage, bytesMax: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    req.on('data', (d: Buffer) => {
      size += d.length;
      if (size > bytesMax) {
        reject(ptnError(ErrorCode.ERR_CONFIG_INVALID, `POST /faults: body larger than ${bytesMax} bytes`));
        req.destroy();
        return;
      }
      parts.push(d);
    });
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', reject);
  });
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

/**
 * Serves `/faults` on the admin port: 404 when `faults` is undefined (test faults disabled), so
 * a normal node shows no trace of it; GET describes; POST replaces rules (400 with a coded error
 * when the body is bad); other methods 405.
 */
export async function serveFaultsHttp(faults: NodeFaults | undefined, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  if (!faults) return sendJson(res, 404, { error: 'not found' });
  if (req.method === 'GET') return sendJson(res, 200, faults.describe());
  if (req.method !== 'POST') {
    res.writeHead(405, { allow: 'GET, POST' }).end();
    return;
  }
  try {
    const text = (await readBody(req, FAULTS_BODY_BYTES_MAX)).toString('utf8');
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (err) {
      throw ptnError(ErrorCode.ERR_CONFIG_INVALID, `POST /faults: not valid JSON: ${(err as Error).message}`);
    }
    faults.apply(body);
    sendJson(res, 200, faults.describe());
  } catch (err) {
    if (!isPtnError(err)) throw err;
    sendJson(res, 400, { error: err.code, message: err.message });
  }
}
