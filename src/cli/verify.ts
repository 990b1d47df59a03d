/**
 * `ptn verify`: proves that the copies of every partition agree and, given an ack log, that no
 * acknowledged write was lost. Also a library (`runVerify`) for tests and the demo.
 *
 * Checks, in order:
 *  1. the cluster finishes rebalancing within `waitRebalancedMs` (copies that are still MOVING
 *     would legitimately differ);
 *  2. for every partition of every cache (request `digests`): no copy is MOVING, at least
 *     min(backups + 1, nodes) copies are OWNING, and all OWNING copies have the same digest and
 *     entry count (RENTING copies are on their way out and no longer receive updates: skipped);
 *  3. for every key of the ack log (request `get`): the key is found, its stored counter is ≥ the
 *     highest acknowledged counter, and when they are equal the value's sha1 equals the logged
 *     digest. A higher stored counter is fine: a later write (maybe never acknowledged) won.
 * Every failed check is a mismatch; the result keeps the first `mismatchesMax` of them.
 */
import { ErrorCode, isPtnError, ptnError } from '../errors.js';
import type { Connection } from '../net/connection.js';
import { type ParsedAckLog, readAckLog, valueDigest } from './ack-log.js';
import { type ClientSettings, withClient } from './client.js';
import { requestStatus } from './health.js';
import type { ClusterStatus } from './status-format.js';
import { realSleep } from './token-bucket.js';

/** What to verify, against which node. */
export interface VerifyOptions {
  settings: ClientSettings;
  ackLogPath?: string;
  /** Cache the ack log's keys belong to (default `default`). */
  ackCache?: string;
  /** Caches whose copies are compared (default: all). */
  caches?: string[];
  waitRebalancedMs?: number;
  /** `get` requests in flight while checking the ack log. */
  concurrency?: number;
  mismatchesMax?: number;
}

/** The outcome of a verification (`ptn verify --json` prints it). */
export interface VerifyResult {
  ok: boolean;
  caches: number;
  partitions: number;
  copiesCompared: number;
  ackLog?: { file: string; lines: number; keys: number; tornTail: boolean };
  mismatchCount: number;
  mismatches: string[];
}

interface DigestCopy {
  state: string;
  digest: string;
  entries: number;
}
interface DigestsBody {
  cache: string;
  partitions: { partition: number; copies: Record<string, DigestCopy> }[];
}

/** Counts mismatches and keeps the first few. */
export class Mismatches {
  count = 0;
  readonly first: string[] = [];
  constructor(private readonly max: number) {}
  add(msg: string): void {
    this.count++;
    if (this.first.length < this.max) this.first.push(msg);
  }
}

async function waitRebalanced(conn: Connection, waitMs: number, mm: Mismatches): Promise<ClusterStatus> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const s = await requestStatus(conn);
    if (s.rebalanced) return s;
    if (Date.now() >= deadline) {
      mm.add(`cluster still rebalancing after ${waitMs} ms (${s.rebalance?.partitionsLeft ?? '?'} partitions left)`);
      return s;
    }
    await realSleep(200);
  }
}

/** Compares the copies of every partition of one cache; returns [partitions, copies compared]. */
export function checkDigests(body: DigestsBody, expectedOwning: number, mm: Mismatches): [number, number] {
  let copies = 0;
  for (const p of body.partitions) {
    const where = `${body.cache}/${p.partition}`;
    const entries = Object.entries(p.copies);
    for (const [node, c] of entries) if (c.state === 'MOVING') mm.add(`${where}: the copy on ${node} is still MOVING`);
    const owning = entries.filter(([, c]) => c.state === 'OWNING');
    copies += owning.length;
    if (owning.length < expectedOwning) mm.add(`${where}: ${owning.length} OWNING copies, expected ${expectedOwning}`);
    const distinct = new Set(owning.map(([, c]) => `${c.digest}/${c.entries}`));
    if (distinct.size > 1) {
      mm.add(`${where}: copies differ: ${owning.map(([n, c]) => `${n}=${c.digest.slice(0, 12)}(${c.entries} entries)`).join(' ')}`);
    }
  }
  return [body.partitions.length, copies];
}

async function getWithRetry(conn: Connection, cache: string, key: string): Promise<{ found: boolean; value?: unknown; counter?: number }> {
  for (let attempt = 1; ; attempt++) {
    try {
      return (await conn.request('get', { cache, key })) as { found: boolean; value?: unknown; counter?: number };
    } catch (err) {
      if (attempt >= 3 || !isPtnError(err) || err.code === ErrorCode.ERR_CONNECTION_CLOSED) throw err;
      await realSleep(100 * attempt);
    }
  }
}

/** Checks every key of the ack log against what the cluster returns. */
async function checkAckLog(conn: Connection, cache: string, log: ParsedAckLog, concurrency: number, mm: Mismatches): Promise<void> {
  for (const k of log.conflicts) mm.add(`${k}: the ack log holds two different values acknowledged with the same counter`);
  const keys = [...log.byKey.keys()];
  let next = 0;
  const worker = async () => {
    while (next < keys.length) {
      const key = keys[next++]!;
      const acked = log.byKey.get(key)!;
      let res;
      try {
        res = await getWithRetry(conn, cache, key);
      } catch (err) {
        if (isPtnError(err) && err.code === ErrorCode.ERR_CONNECTION_CLOSED) throw err;
        mm.add(`${key}: get failed: ${isPtnError(err) ? err.code : 'error'}: ${(err as Error).message}`);
        continue;
      }
      if (!res.found) mm.add(`${key}: acknowledged at counter ${acked.counter} but not found`);
      else if (typeof res.counter !== 'number' || res.counter < acked.counter) {
        mm.add(`${key}: stored counter ${res.counter} < acknowledged counter ${acked.counter} (an acknowledged write was lost)`);
      } else if (res.counter === acked.counter && valueDigest(JSON.stringify(res.value)) !== acked.digest) {
        mm.add(`${key}: the value at counter ${acked.counter} differs from the acknowledged one`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
}

/** Runs every check; resolves the result (never throws for a mismatch, only for errors). */
export async function runVerify(o: VerifyOptions): Promise<VerifyResult> {
  const mm = new Mismatches(o.mismatchesMax ?? 10);
  const ackLog = o.ackLogPath !== undefined ? readAckLog(o.ackLogPath) : undefined;
  return withClient(o.settings, async (conn) => {
    const status = await waitRebalanced(conn, o.waitRebalancedMs ?? 60_000, mm);
    const names = o.caches ?? status.caches.map((c) => c.name);
    let partitions = 0;
    let copies = 0;
    for (const name of names) {
      const def = status.caches.find((c) => c.name === name);
      if (!def) throw ptnError(ErrorCode.ERR_CACHE_NOT_FOUND, `no cache named ${name} (caches: ${status.caches.map((c) => c.name).join(', ') || 'none'})`);
      const body = (await conn.request('digests', { cache: name })) as DigestsBody;
      const [p, c] = checkDigests(body, Math.min(def.backups + 1, status.nodes.length), mm);
      partitions += p;
      copies += c;
    }
    if (ackLog) await checkAckLog(conn, o.ackCache ?? 'default', ackLog, o.concurrency ?? 16, mm);
    return {
      ok: mm.count === 0,
      caches: names.length,
      partitions,
      copiesCompared: copies,
      ...(ackLog ? { ackLog: { file: o.ackLogPath!, lines: ackLog.lines, keys: ackLog.byKey.size, tornTail: ackLog.tornTail } } : {}),
      mismatchCount: mm.count,
      mismatches: mm.first,
    };
  });
}

/** The text summary `ptn verify` prints. */
export function formatVerifyResult(r: VerifyResult): string {
  const lines = [`verify: ${r.caches} cache${r.caches === 1 ? '' : 's'}, ${r.partitions} partitions, ${r.copiesCompared} OWNING copies compared`];
  if (r.ackLog) {
    lines.push(
      `verify: ack log ${r.ackLog.file}: ${r.ackLog.lines} acknowledged writes, ${r.ackLog.keys} keys checked${r.ackLog.tornTail ? ' (torn last line skipped)' : ''}`,
    );
  }
  if (r.ok) lines.push('OK: every copy agrees' + (r.ackLog ? ' and every acknowledged write is readable with its latest value' : ''));
  else {
    lines.push(`FAILED: ${r.mismatchCount} mismatch${r.mismatchCount === 1 ? '' : 'es'}${r.mismatchCount > r.mismatches.length ? ` (first ${r.mismatches.length})` : ''}:`);
    for (const m of r.mismatches) lines.push(`  ${m}`);
  }
  return lines.join('\n') + '\n';
}
