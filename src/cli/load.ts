/**
 * The load generator behind `ptn load`, also a library (`runLoad`) for benchmarks and the demo.
 *
 * Keys are `k<i>` for i in 0..entries-1. Without a duration it fills them once in order; with a
 * duration it writes random keys (seeded) for that long. Values are JSON objects
 * {"i": i, "seq": s, "pad": "xxx…"} padded to `valueBytes` bytes of JSON text; `seq` numbers the
 * writes of one run.
 *
 * Flow control: a token bucket caps the rate (`ratePerSec`), `concurrency` workers each keep one
 * request in flight, and the ack log is written with backpressure — so memory stays bounded
 * whatever the rate.
 *
 * Truth of the ack log: a write is logged only after the node acknowledged it, with the counter
 * the node returned. A failed attempt (timeout, node gone, remote error) is counted by its code
 * and retried — on another node when the connection is gone — up to `attemptsMax` times; an
 * unacknowledged write is never logged. Errors no retry can fix (unknown cache, bad secret, value
 * too large …) end the run with that error. Stopping (duration over, or `signal` aborted) lets
 * requests already in flight finish, so an acknowledgement is never dropped on the floor.
 */
import { ErrorCode, isPtnError, ptnError } from '../errors.js';
import { AckLogWriter, valueDigest } from './ack-log.js';
import type { ClientSettings } from './client.js';
import { FailoverClient, isConnectionGone } from './failover-client.js';
import { Histogram } from './histogram.js';
import { type Clock, monotonicClock, realSleep, type Sleep, TokenBucket } from './token-bucket.js';
import { seededRandom } from '../util/seeded-random.js';

/** What to load, where, how fast. */
export interface LoadOptions {
  settings: ClientSettings;
  /** More node addresses to fail over to (e.g. from cluster.json). */
  extraAddresses?: string[];
  entries: number;
  valueBytes: number;
  ratePerSec?: number;
  /** Random keys for this long; without it, one sequential fill of every key. */
  durationSec?: number;
  concurrency?: number;
  cache?: string;
  ackLogPath?: string;
  /** Seed of the random key choice (printed in the result). */
  seed?: number;
  /** Attempts per write before it counts as failed. */
  attemptsMax?: number;
  signal?: AbortSignal;
  /** Called every `progressIntervalMs` with the counts so far. */
  onProgress?: (p: LoadProgress) => void;
  progressIntervalMs?: number;
  clock?: Clock;
  sleep?: Sleep;
}

/** The load's PRNG (src/util/seeded-random.ts), re-exported for callers of this module. */
export { seededRandom };

/** Counts so far, handed to `onProgress`. */
export interface LoadProgress {
  acked: number;
  errors: number;
  elapsedMs: number;
}

/** The outcome of a load run (`ptn load --json` prints it). */
export interface LoadResult {
  mode: 'fill' | 'random';
  cache: string;
  entries: number;
  valueBytes: number;
  seed: number;
  concurrency: number;
  /** Writes acknowledged (and logged, with an ack log). */
  acked: number;
  /** Writes given up after `attemptsMax` attempts (never logged). */
  failed: number;
  /** Failed attempts, all codes together, and by code. */
  errors: number;
  errorsByCode: Record<string, number>;
  /** Connections made to another node after the first. */
  failovers: number;
  durationMs: number;
  opsPerSec: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number };
  /** True when `signal` stopped the run early. */
  aborted: boolean;
}

/** Codes that no retry can fix: the run stops with the error. */
const FATAL_CODES: readonly string[] = [
  ErrorCode.ERR_CACHE_NOT_FOUND,
  ErrorCode.ERR_HANDSHAKE_AUTH,
  ErrorCode.ERR_HANDSHAKE_CLUSTER,
  ErrorCode.ERR_PROTOCOL_VERSION,
  ErrorCode.ERR_KEY_TOO_LARGE,
  ErrorCode.ERR_VALUE_TOO_LARGE,
  ErrorCode.ERR_USAGE,
  ErrorCode.ERR_DISK_FULL,
  ErrorCode.ERR_IO,
];

/** The value written for key i as the seq-th write, padded to `valueBytes` bytes of JSON. */
export function makeValue(i: number, seq: number, valueBytes: number): { value: { i: number; seq: number; pad: string }; json: string } {
  const bare = JSON.stringify({ i, seq, pad: '' }).length;
  const value = { i, seq, pad: 'x'.repeat(Math.max(0, valueBytes - bare)) };
  return { value, json: JSON.stringify(value) };
}

function checkOptions(o: LoadOptions): void {
  const bad = (msg: string) => {
    throw ptnError(ErrorCode.ERR_USAGE, msg);
  };
  if (!Number.isSafeInteger(o.entries) || o.entries < 1) bad(`entries must be an integer >= 1, got ${o.entries}`);
  if (!Number.isSafeInteger(o.valueBytes) || o.valueBytes < 0) bad(`valueBytes must be an integer >= 0, got ${o.valueBytes}`);
  if (o.concurrency !== undefined && (!Number.isSafeInteger(o.concurrency) || o.concurrency < 1 || o.concurrency > 4096)) bad(`concurrency must be in 1..4096, got ${o.concurrency}`);
  if (o.ratePerSec !== undefined && !(o.ratePerSec > 0)) bad(`rate must be > 0, got ${o.ratePerSec}`);
  if (o.durationSec !== undefined && !(o.durationSec > 0)) bad(`duration must be > 0, got ${o.durationSec}`);
}

/** Runs a load and resolves its counts and latencies. */
export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  checkOptions(o);
  const run = new LoadRun(o);
  return run.run();
}

class LoadRun {
  private readonly clock: Clock;
  private readonly sleep: Sleep;
  private readonly cache: string;
  private readonly seed: number;
  private readonly concurrency: number;
  private readonly attemptsMax: number;
  private readonly hist = new Histogram();
  private readonly errorsByCode: Record<string, number> = {};
  private readonly client: FailoverClient;
  private readonly bucket: TokenBucket | undefined;
  private readonly random: () => number;
  private readonly stop = new AbortController();
  private ackLog: AckLogWriter | undefined;
  private fatal: unknown;
  private nextIndex = 0;
  private seq = 0;
  private acked = 0;
  private failed = 0;
  private errors = 0;
  private deadline = Number.POSITIVE_INFINITY;

  constructor(private readonly o: LoadOptions) {
    this.clock = o.clock ?? monotonicClock;
    this.sleep = o.sleep ?? realSleep;
    this.cache = o.cache ?? 'default';
    this.seed = o.seed ?? Math.floor(Math.random() * 2 ** 31);
    this.concurrency = o.concurrency ?? 16;
    this.attemptsMax = o.attemptsMax ?? 10;
    this.client = new FailoverClient(o.settings, o.extraAddresses);
    this.random = seededRandom(this.seed);
    if (o.ratePerSec !== undefined) {
      this.bucket = new TokenBucket(o.ratePerSec, Math.max(1, Math.min(o.ratePerSec / 20, this.concurrency)), this.clock, this.sleep);
    }
  }

  async run(): Promise<LoadResult> {
    const onAbort = () => this.stop.abort();
    this.o.signal?.addEventListener('abort', onAbort, { once: true });
    if (this.o.signal?.aborted) this.stop.abort();
    const started = this.clock();
    if (this.o.durationSec !== undefined) this.deadline = started + this.o.durationSec * 1000;
    const timer = this.o.onProgress
      ? setInterval(() => this.o.onProgress!({ acked: this.acked, errors: this.errors, elapsedMs: this.clock() - started }), this.o.progressIntervalMs ?? 1000)
      : undefined;
    timer?.unref();
    try {
      await this.connectFirst();
      if (this.o.ackLogPath) this.ackLog = new AckLogWriter(this.o.ackLogPath);
      await Promise.all(Array.from({ length: this.concurrency }, () => this.worker()));
      if (this.fatal) throw this.fatal;
    } finally {
      if (timer) clearInterval(timer);
      this.o.signal?.removeEventListener('abort', onAbort);
      await this.client.close();
      await this.ackLog?.close();
    }
    return this.result(this.clock() - started);
  }

  /** Connects before any write, trying every known address once: fails fast on a bad secret or no node at all. */
  private async connectFirst(): Promise<void> {
    let last: unknown;
    for (let k = 0; k < this.client.knownAddresses.length; k++) {
      try {
        await this.client.get();
        return;
      } catch (err) {
        last = err;
        if (isPtnError(err) && FATAL_CODES.includes(err.code)) break;
      }
    }
    throw last;
  }

  /** The index of the next key to write, or undefined when the run is over. */
  private nextKey(): number | undefined {
    if (this.stop.signal.aborted) return undefined;
    if (this.o.durationSec === undefined) return this.nextIndex < this.o.entries ? this.nextIndex++ : undefined;
    if (this.clock() >= this.deadline) return undefined;
    return Math.floor(this.random() * this.o.entries);
  }

  private async worker(): Promise<void> {
    for (;;) {
      if (this.bucket && !(await this.bucket.take(this.stop.signal))) return;
      const i = this.nextKey();
      if (i === undefined) return;
      await this.write(i);
    }
  }

  private countError(err: unknown): void {
    const code = isPtnError(err) ? err.code : 'ERR_OTHER';
    this.errors++;
    this.errorsByCode[code] = (this.errorsByCode[code] ?? 0) + 1;
    if (isPtnError(err) && FATAL_CODES.includes(err.code) && !this.fatal) {
      this.fatal = err;
      this.stop.abort();
    }
  }

  private async write(i: number): Promise<void> {
    const key = `k${i}`;
    const { value, json } = makeValue(i, ++this.seq, this.o.valueBytes);
    for (let attempt = 1; attempt <= this.attemptsMax; attempt++) {
      if (attempt > 1) {
        if (this.fatal) break;
        await this.sleep(Math.min(1000, 25 * 2 ** (attempt - 2)));
      }
      let conn;
      try {
        conn = await this.client.get();
      } catch (err) {
        this.countError(err);
        continue;
      }
      const t0 = this.clock();
      try {
        const res = (await conn.request('put', { cache: this.cache, key, value })) as { counter?: unknown };
        if (typeof res?.counter !== 'number') throw ptnError(ErrorCode.ERR_REMOTE, `put ${key}: the node answered without a counter`);
        this.hist.record((this.clock() - t0) * 1000);
        this.acked++;
        await this.ackLog?.append(key, res.counter, valueDigest(json));
        return;
      } catch (err) {
        this.countError(err);
        if (isConnectionGone(err)) this.client.broken(conn);
      }
    }
    this.failed++;
  }

  private result(durationMs: number): LoadResult {
    const us = (v: number) => Math.round(v) / 1000;
    return {
      mode: this.o.durationSec === undefined ? 'fill' : 'random',
      cache: this.cache,
      entries: this.o.entries,
      valueBytes: this.o.valueBytes,
      seed: this.seed,
      concurrency: this.concurrency,
      acked: this.acked,
      failed: this.failed,
      errors: this.errors,
      errorsByCode: { ...this.errorsByCode },
      failovers: this.client.failovers,
      durationMs: Math.round(durationMs),
      opsPerSec: durationMs > 0 ? Math.round((this.acked * 1000 * 10) / durationMs) / 10 : 0,
      latencyMs: {
        p50: us(this.hist.percentile(50)),
        p90: us(this.hist.percentile(90)),
        p99: us(this.hist.percentile(99)),
        max: us(this.hist.max),
        mean: us(this.hist.mean),
      },
      aborted: this.o.signal?.aborted ?? false,
    };
  }
}

/** The text summary `ptn load` prints. */
export function formatLoadResult(r: LoadResult): string {
  const codes = Object.entries(r.errorsByCode)
    .map(([c, n]) => `${c}=${n}`)
    .join(' ');
  return (
    `load (${r.mode}, cache ${r.cache}, ${r.entries} keys, ${r.valueBytes} B values, concurrency ${r.concurrency}, seed ${r.seed})${r.aborted ? ' — stopped by a signal before its end' : ''}\n` +
    `  ${r.acked} writes acknowledged in ${(r.durationMs / 1000).toFixed(2)} s = ${r.opsPerSec} ops/s; failed ${r.failed}; errors ${r.errors}${codes ? ` (${codes})` : ''}; failovers ${r.failovers}\n` +
    `  latency ms: p50 ${r.latencyMs.p50}  p90 ${r.latencyMs.p90}  p99 ${r.latencyMs.p99}  max ${r.latencyMs.max}  mean ${r.latencyMs.mean}\n`
  );
}
