/**
 * An open-loop, fixed-rate load for the benchmarks (in the spirit of wrk2): operation i is due at
 * `t0 + i / rate`, whatever happened to earlier ones, and its latency is measured from that due
 * time to its acknowledgement. A server that stalls therefore shows its stall in the latencies
 * instead of silently slowing the load down (no coordinated omission).
 *
 * Phases: the caller names the stretch of time it is in (`phase('before')`, `phase('during')` …);
 * each operation's latency goes into the histogram of the phase its DUE time fell in, so a slow
 * answer to a write sent before the join counts as "before".
 *
 * Bounds: at most `inFlightMax` operations are outstanding; when that many are, due operations
 * wait (and their wait is part of their latency) — memory stays bounded whatever the server does.
 * A load that cannot keep up is visible as `behindMaxMs` (how late the scheduler issued an
 * operation at worst) and as the latencies themselves.
 */
import { Histogram } from '../src/cli/histogram.js';

/** What a load does and how fast. */
export interface FixedRateOptions {
  ratePerSec: number;
  /** Outstanding operations at most (default 4096). */
  inFlightMax?: number;
  /** Performs operation `seq` (0, 1, 2 …); resolves when it is acknowledged. */
  issue: (seq: number) => Promise<void>;
  /** Name of the first phase (default "before"). */
  firstPhase?: string;
}

/** Counts and latencies of one phase (latencies in milliseconds). */
export interface PhaseSummary {
  ops: number;
  errors: number;
  seconds: number;
  opsPerSec: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  meanMs: number;
}

/** Everything a finished load reports. */
export interface FixedRateSummary {
  ratePerSec: number;
  issued: number;
  acked: number;
  errors: number;
  errorsByCode: Record<string, number>;
  /** How late the scheduler issued an operation at worst (its own lag or the in-flight bound). */
  behindMaxMs: number;
  /** Operations that were due by the stop but never sent (the load was that far behind). */
  dueNotSent: number;
  phases: Record<string, PhaseSummary>;
  /** Epoch ms of the start, and of each phase's start (to line the timeline up with node logs). */
  startedAtMs: number;
  phaseStartsMs: Record<string, number>;
  /**
   * Per `TIMELINE_WINDOW_MS` from the start: `ops` acknowledged of those DUE in the window and their
   * worst latency (ms); `ackedOps` acknowledged IN the window, whenever due (the rate served then).
   */
  timeline: Array<{ atSec: number; ops: number; maxMs: number; ackedOps: number }>;
}

/** Width of one timeline window. */
export const TIMELINE_WINDOW_MS = 250;
/** Timeline windows kept at most (one hour of 250 ms windows); later operations are not in the timeline. */
const TIMELINE_WINDOWS_MAX = 14_400;

const TICK_MS = 1;

interface Phase {
  name: string;
  startMs: number;
  endMs?: number;
  hist: Histogram;
  ops: number;
  errors: number;
}

/** A running fixed-rate load; see the file comment. */
export class FixedRateLoad {
  private readonly inFlightMax: number;
  private readonly intervalMs: number;
  private readonly phases: Phase[] = [];
  private readonly errorsByCode: Record<string, number> = {};
  private t0 = 0;
  private startedAtMs = 0;
  private readonly windowOps: number[] = [];
  private readonly windowMaxMs: number[] = [];
  private readonly windowAcked: number[] = [];
  private issued = 0;
  private acked = 0;
  private errors = 0;
  private inFlight = 0;
  private behindMaxMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopping = false;
  private stopped: Promise<FixedRateSummary> | undefined;
  private idle: (() => void) | undefined;

  constructor(private readonly o: FixedRateOptions) {
    if (!(o.ratePerSec > 0)) throw new RangeError(`ratePerSec must be > 0, got ${o.ratePerSec}`);
    this.inFlightMax = o.inFlightMax ?? 4096;
    this.intervalMs = 1000 / o.ratePerSec;
  }

  /** Starts issuing operations now. */
  start(): void {
    this.t0 = performance.now();
    this.startedAtMs = Date.now();
    this.phases.push(this.newPhase(this.o.firstPhase ?? 'before', this.t0));
    this.timer = setInterval(() => this.pump(), TICK_MS);
  }

  /** Ends the current phase and starts `name` now. */
  phase(name: string): void {
    const now = performance.now();
    const cur = this.phases.at(-1);
    if (cur) cur.endMs = now;
    this.phases.push(this.newPhase(name, now));
  }

  /** Operations acknowledged so far. */
  get ackedCount(): number {
    return this.acked;
  }

  private newPhase(name: string, startMs: number): Phase {
    return { name, startMs, hist: new Histogram(), ops: 0, errors: 0 };
  }

  private phaseAt(ms: number): Phase {
    for (let i = this.phases.length - 1; i >= 0; i--) if (this.phases[i]!.startMs <= ms) return this.phases[i]!;
    return this.phases[0]!;
  }

  private pump(): void {
    const now = performance.now();
    const due = Math.floor((now - this.t0) / this.intervalMs);
    while (!this.stopping && this.issued < due && this.inFlight < this.inFlightMax) {
      const seq = this.issued++;
      const dueMs = this.t0 + seq * this.intervalMs;
      this.behindMaxMs = Math.max(this.behindMaxMs, now - dueMs);
      this.inFlight++;
      this.o.issue(seq).then(
        () => this.done(dueMs, undefined),
        (err: unknown) => this.done(dueMs, err),
      );
    }
  }

  private done(dueMs: number, err: unknown): void {
    this.inFlight--;
    const p = this.phaseAt(dueMs);
    if (err === undefined) {
      const latencyMs = performance.now() - dueMs;
      this.acked++;
      p.ops++;
      p.hist.record(latencyMs * 1000); // µs
      const w = Math.floor((dueMs - this.t0) / TIMELINE_WINDOW_MS); // due window ≤ ack window
      const a = Math.floor((performance.now() - this.t0) / TIMELINE_WINDOW_MS);
      while (this.windowOps.length <= Math.min(a, TIMELINE_WINDOWS_MAX - 1)) {
        this.windowOps.push(0);
        this.windowMaxMs.push(0);
        this.windowAcked.push(0);
      }
      if (w < TIMELINE_WINDOWS_MAX) {
        this.windowOps[w]!++;
        this.windowMaxMs[w] = Math.max(this.windowMaxMs[w]!, latencyMs);
      }
      if (a < TIMELINE_WINDOWS_MAX) this.windowAcked[a]!++;
    } else {
      this.errors++;
      p.errors++;
      const code = (err as { code?: string })?.code ?? 'ERR_OTHER';
      this.errorsByCode[code] = (this.errorsByCode[code] ?? 0) + 1;
    }
    if (this.inFlight === 0) this.idle?.();
  }

  /** Stops issuing, waits for every outstanding operation, and summarizes; idempotent. */
  stop(): Promise<FixedRateSummary> {
    this.stopped ??= this.stopImpl();
    return this.stopped;
  }

  private async stopImpl(): Promise<FixedRateSummary> {
    this.stopping = true;
    if (this.timer) clearInterval(this.timer);
    const end = performance.now();
    const dueNotSent = Math.max(0, Math.floor((end - this.t0) / this.intervalMs) - this.issued);
    const cur = this.phases.at(-1);
    if (cur && cur.endMs === undefined) cur.endMs = end;
    if (this.inFlight > 0) await new Promise<void>((r) => (this.idle = r));
    const phases: Record<string, PhaseSummary> = {};
    for (const p of this.phases) phases[p.name] = summarize(p);
    return {
      ratePerSec: this.o.ratePerSec,
      issued: this.issued,
      acked: this.acked,
      errors: this.errors,
      errorsByCode: { ...this.errorsByCode },
      behindMaxMs: this.behindMaxMs,
      dueNotSent,
      phases,
      startedAtMs: this.startedAtMs,
      phaseStartsMs: Object.fromEntries(this.phases.map((p) => [p.name, this.startedAtMs + (p.startMs - this.t0)])),
      timeline: this.windowOps.map((ops, i) => ({ atSec: (i * TIMELINE_WINDOW_MS) / 1000, ops, maxMs: Math.round(this.windowMaxMs[i]! * 10) / 10, ackedOps: this.windowAcked[i]! })),
    };
  }
}

function summarize(p: Phase): PhaseSummary {
  const seconds = ((p.endMs ?? performance.now()) - p.startMs) / 1000;
  const ms = (us: number) => Math.round(us) / 1000;
  return {
    ops: p.ops,
    errors: p.errors,
    seconds,
    opsPerSec: seconds > 0 ? p.ops / seconds : 0,
    p50Ms: ms(p.hist.percentile(50)),
    p90Ms: ms(p.hist.percentile(90)),
    p99Ms: ms(p.hist.percentile(99)),
    p999Ms: ms(p.hist.percentile(99.9)),
    maxMs: ms(p.hist.max),
    meanMs: ms(p.hist.mean),
  };
}

/**
 * Measures how many operations per second `issue` sustains with `concurrency` operations always
 * outstanding (closed loop) for `seconds`: the ceiling a fixed-rate load is then set under.
 */
export async function measureSustainedOpsPerSec(issue: (seq: number) => Promise<void>, concurrency: number, seconds: number): Promise<number> {
  let seq = 0;
  let acked = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        await issue(seq++);
        acked++;
      }
    }),
  );
  return acked / ((performance.now() - t0) / 1000);
}
