/**
 * Rebalance work yields to foreground work (client writes, replication, reads).
 *
 * In full-sync mode a write is acknowledged only after the joining copy logged it, so every
 * stretch of rebalance CPU on either node — a chunk read and sent, a chunk written, a prewarm run,
 * a replay batch — is time the writes wait. The catch-up bench on 2 cores showed write p99 going
 * from ~10 ms to ~2 s while the supplier's stream and the joiner's swap-ins, prewarms and replays
 * ran flat out. The temporary-WAL replay takes no turns: it must outpace the writes it replays,
 * or their appends brake (catch-up-log.ts); with it paced, the 1M-entry join ended in seconds of
 * stalled writes. Only while writes are going on (noteForeground) does a busy loop count: without
 * them it is the rebalance's own. The signal used here is the node's own event-loop lag: a timer due every
 * SAMPLE_MS fires late by however long the loop was busy (with this node's work, or starved of
 * the CPU by others). Before each unit of rebalance work (a chunk served or asked for, a prewarm
 * run, a checkpoint sealing slice on a node that only supplies) the caller takes a `turn()`: while the
 * recent lag is above `rebalance.yieldLagMs` (or the loop's utilization over the last 50 ms above
 * `rebalance.yieldUtilization`), turns queue and go one at a time — when the lag is
 * back under it, or one per `rebalance.yieldWaitMaxMs` node-wide while it stays high, so the
 * rebalance always moves even under a load that alone keeps the loop late, and sixteen tasks
 * waiting together do not all go at once when their waits end. `yieldLagMs` 0 turns the pacing
 * off. Both settings are read at every turn (run-time changeable with `configSet`).
 *
 * Lifecycle: sampling starts with the first turn and stops by itself after IDLE_STOP_MS without
 * one (an idle node has no timer running); `close()` stops it and lets every turn through at once.
 */
import { performance, type EventLoopUtilization } from 'node:perf_hooks';

/** How often the lag is sampled (the timer's period), ms. */
export const SAMPLE_MS = 5;
/** The lag is the largest of this many recent samples. */
const WINDOW_SAMPLES = 4;
/** The loop's utilization is taken over this many recent samples (50 ms). */
const UTILIZATION_SAMPLES = 10;
/** Sampling stops after this long without a turn. */
const IDLE_STOP_MS = 2_000;
/** Foreground work seen within this long counts as going on (noteForeground). */
export const FOREGROUND_RECENT_MS = 100;

export interface PacerSettings {
  /** Event-loop lag above which rebalance work waits, ms (0: never waits). */
  yieldLagMs: number;
  /** Longest wait of one turn, ms. */
  yieldWaitMaxMs: number;
  /**
   * Share of the last 50 ms the event loop was busy above which rebalance work waits too (0–1;
   * 1: never for this reason). A loop saturated by many short tasks runs its timers on time —
   * the lag stays low — while the writes queue behind the work all the same.
   */
  yieldUtilization: number;
}

/** Time source, lag source and sleeper (tests pass fakes). */
export interface PacerClock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

const realClock: PacerClock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

export interface PacerCounts {
  /** Turns taken. */
  turns: number;
  /** Turns that waited. */
  waits: number;
  /** Milliseconds waited in all. */
  waitedMs: number;
  /** Turns that gave up waiting at yieldWaitMaxMs. */
  waitMaxReached: number;
}

export class ForegroundPacer {
  readonly counts: PacerCounts = { turns: 0, waits: 0, waitedMs: 0, waitMaxReached: 0 };
  private readonly samples: number[] = [];
  /** Event-loop utilization snapshots, one per sample, oldest first. */
  private readonly elus: EventLoopUtilization[] = [];
  private timer: NodeJS.Timeout | undefined;
  private lastTurnAt = 0;
  private lastForegroundAt = -Infinity;
  private closed = false;
  /** Waiting turns in arrival order (one token each); the first one goes next. As long as the rebalance steps waiting at once. */
  private readonly waiting: object[] = [];
  /** When the last waiting turn went (a forced one may go yieldWaitMaxMs after it). */
  private lastReleaseAt = 0;
  private readonly clock: PacerClock;
  /** When given, the lag and the utilization come from here instead of the sampling timer (tests). */
  private readonly lagSource: (() => number) | undefined;
  private readonly utilizationSource: (() => number) | undefined;

  constructor(
    private readonly settings: () => PacerSettings,
    opts: { clock?: PacerClock; lagSource?: () => number; utilizationSource?: () => number } = {},
  ) {
    this.clock = opts.clock ?? realClock;
    this.lagSource = opts.lagSource;
    this.utilizationSource = opts.utilizationSource;
  }

  /** The recent event-loop lag, ms (0 while nothing is sampled yet). */
  lagMs(): number {
    if (this.lagSource) return this.lagSource();
    let max = 0;
    for (const s of this.samples) if (s > max) max = s;
    return max;
  }

  /** Share of the last ~50 ms the event loop was busy, 0–1 (0 while nothing is sampled yet). */
  utilization(): number {
    if (this.utilizationSource) return this.utilizationSource();
    if (this.elus.length < 2) return 0;
    return performance.eventLoopUtilization(this.elus[this.elus.length - 1]!, this.elus[0]!).utilization;
  }

  /**
   * The write path calls this for every write it handles (a client write, a replicated update):
   * with none in the last FOREGROUND_RECENT_MS there is nothing to yield to, and a busy loop is
   * the rebalance's own (a transfer to an idle node runs at full speed).
   */
  noteForeground(): void {
    this.lastForegroundAt = this.clock.now();
  }

  /** True while foreground work should go first: writes going on, and the loop runs late or is (nearly) always busy. */
  private pressed(cfg: PacerSettings): boolean {
    if (this.clock.now() - this.lastForegroundAt > FOREGROUND_RECENT_MS) return false;
    return this.lagMs() > cfg.yieldLagMs || (cfg.yieldUtilization < 1 && this.utilization() > cfg.yieldUtilization);
  }

  /**
   * Resolves when the rebalance may do its next unit of work: at once while the lag is at most
   * yieldLagMs and no other turn waits (or pacing is off). Otherwise the turn queues: waiting
   * turns go one at a time in arrival order, the first in line when a sample finds the lag back
   * under yieldLagMs, or — the lag staying high — when yieldWaitMaxMs have passed since the last
   * turn went, so under a load that alone keeps the loop late the whole node's rebalance still
   * does one unit per yieldWaitMaxMs (not one per waiting task). Returns early when `signal`
   * aborts: the caller's own abort check then says why.
   */
  async turn(signal?: AbortSignal): Promise<void> {
    if (this.closed) return;
    const cfg0 = this.settings();
    if (!(cfg0.yieldLagMs > 0)) return;
    this.counts.turns++;
    this.lastTurnAt = this.clock.now();
    this.ensureSampling();
    if (this.waiting.length === 0 && !this.pressed(cfg0)) return;
    this.counts.waits++;
    const me = {};
    this.waiting.push(me);
    const t0 = this.clock.now();
    if (this.waiting[0] === me) this.lastReleaseAt = Math.max(this.lastReleaseAt, t0); // first in line: its wait counts from now
    let forced = false;
    try {
      for (;;) {
        await this.clock.sleep(SAMPLE_MS);
        if (signal?.aborted) return;
        const cfg = this.settings();
        if (this.closed || !(cfg.yieldLagMs > 0)) return;
        if (this.waiting[0] !== me) continue;
        const now = this.clock.now();
        if (!this.pressed(cfg)) return;
        if (now - this.lastReleaseAt >= cfg.yieldWaitMaxMs) {
          forced = true;
          return;
        }
      }
    } finally {
      const now = this.clock.now();
      this.counts.waitedMs += now - t0;
      if (forced) this.counts.waitMaxReached++;
      if (this.waiting[0] === me) this.lastReleaseAt = now; // the next in line counts from here
      this.waiting.splice(this.waiting.indexOf(me), 1);
    }
  }

  /** Stops sampling; later turns pass at once. Idempotent. */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private ensureSampling(): void {
    if (this.timer || this.lagSource || this.closed) return;
    let due = performance.now() + SAMPLE_MS;
    const tick = () => {
      const now = performance.now();
      this.samples.push(Math.max(0, now - due));
      if (this.samples.length > WINDOW_SAMPLES) this.samples.shift();
      this.elus.push(performance.eventLoopUtilization());
      if (this.elus.length > UTILIZATION_SAMPLES + 1) this.elus.shift();
      if (this.closed || this.clock.now() - this.lastTurnAt > IDLE_STOP_MS) {
        this.timer = undefined;
        this.samples.length = 0;
        this.elus.length = 0;
        return;
      }
      due = now + SAMPLE_MS;
      this.timer = setTimeout(tick, SAMPLE_MS);
      this.timer.unref();
    };
    this.timer = setTimeout(tick, SAMPLE_MS);
    this.timer.unref();
  }
}

/** The rebalance's side of the pacer: what the supplier and the demander take their turns from. */
export type RebalancePacer = Pick<ForegroundPacer, 'turn'>;
