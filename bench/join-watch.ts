/**
 * Watches a node joining a cluster for the benchmarks: polls the cluster status (the demander
 * tasks in `status.rebalance.tasks`) and, when given the joining node's admin address, its
 * Prometheus `/metrics`, until the cluster is rebalanced.
 *
 * Tasks leave the status once their copy is OWNING and the topology says so, so the watcher keeps
 * the last sight of every task: path, phase times, bytes, temp-WAL bytes at their peak, fence
 * pause. Figures the node does not report stay `undefined` (the benches print "n/a").
 *
 * Bounds: one status request and one metrics request in flight at a time; samples are kept as
 * one number per poll (RSS), so a long join costs a few KiB.
 */
import type { Connection } from '../src/net/connection.js';
import { normalizeTask, type RebalanceTask } from '../src/cli/status-format.js';
import { requestStatus } from '../src/cli/health.js';
import type { ClusterStatus } from '../src/cli/status-format.js';
import { scrapeMetrics } from './lib.js';

/** Name of the resident-memory metric of a node process (prom-client default metrics, ptn prefix). */
export const RSS_METRIC = 'ptn_process_resident_memory_bytes';
/** What prom-client's default metrics with the `ptn_process_` prefix actually call it. */
export const RSS_METRIC_PREFIXED = 'ptn_process_process_resident_memory_bytes';
const STATUS_TIMEOUT_MS = 10_000;

/** What was seen while a node joined. */
export interface JoinObservation {
  /** Seconds from `start()` until the cluster listed `nodes` nodes and was rebalanced. */
  seconds: number;
  /** Epoch ms of the status that first said so (to compare with task phase times, also epoch ms). */
  rebalancedAtMs: number;
  /** Last sight of every task, by `node/cache/partition`. */
  tasks: RebalanceTask[];
  /** Paths the tasks took, with counts. */
  paths: Record<string, number>;
  /** Largest sum over tasks of temp-WAL bytes in one sample; undefined when never reported. */
  tempWalPeakBytes?: number;
  /** Largest fence pause of any task (ms); undefined when never reported. */
  fenceMsMax?: number;
  /**
   * RSS of the joining node: "before" is the first sample, taken as soon as the node is healthy (its
   * first transfer may just have started; a node cannot be sampled before it listens), and the
   * peak of the samples taken every poll until the cluster is rebalanced.
   */
  rss?: { beforeBytes: number; peakBytes: number; samples: number };
  /** Topology versions as the polls saw them change (epoch ms of the first poll showing each). */
  topologyVersions: Array<{ version: number; seenAtMs: number }>;
  /** Status polls answered, and those that timed out (a node too busy to answer in time). */
  polls: number;
  statusTimeouts: number;
}

/** Options of a watch. */
export interface JoinWatchOptions {
  conn: Connection;
  /** Node count the rebalanced cluster must list. */
  nodes: number;
  /** Admin HOST:PORT of the joining node, for RSS sampling (optional). */
  joiningAdmin?: string;
  pollMs?: number;
  timeoutMs?: number;
  /** Called with every status (progress lines). */
  onStatus?: (s: ClusterStatus) => void;
}

const key = (t: RebalanceTask) => `${t.node ?? '?'}/${t.cache}/${t.partition}`;

/** Polls until the cluster is rebalanced with `nodes` nodes; see the file comment. */
export class JoinWatch {
  private readonly tasks = new Map<string, RebalanceTask>();
  private tempWalPeak: number | undefined;
  private fenceMax: number | undefined;
  private rssBefore: number | undefined;
  private rssPeak = 0;
  private rssSamples = 0;
  private rssLoop: Promise<void> | undefined;
  private done = false;
  private polls = 0;
  private readonly versions: Array<{ version: number; seenAtMs: number }> = [];
  private statusTimeouts = 0;
  private t0 = 0;

  constructor(private readonly o: JoinWatchOptions) {}

  /** Samples the joining node's RSS now (call before the join starts to get a clean "before"). */
  async sampleRss(): Promise<number | undefined> {
    if (!this.o.joiningAdmin) return undefined;
    try {
      const m = await scrapeMetrics(this.o.joiningAdmin);
      const v = m.get(RSS_METRIC) ?? m.get(RSS_METRIC_PREFIXED);
      if (v === undefined) return undefined;
      this.rssSamples++;
      this.rssBefore ??= v;
      this.rssPeak = Math.max(this.rssPeak, v);
      return v;
    } catch {
      return undefined; // the node may not listen yet, or be busy: a missed sample is not an error
    }
  }

  /** Starts the clock (and RSS sampling when a joining admin address was given). */
  start(): void {
    this.t0 = performance.now();
    if (this.o.joiningAdmin) {
      this.rssLoop = (async () => {
        while (!this.done) {
          await this.sampleRss();
          await new Promise((r) => setTimeout(r, this.o.pollMs ?? 200));
        }
      })();
    }
  }

  /** Polls until rebalanced; resolves what was seen. */
  async untilRebalanced(): Promise<JoinObservation> {
    const deadline = Date.now() + (this.o.timeoutMs ?? 3_600_000);
    let seconds: number;
    let rebalancedAtMs: number;
    try {
      for (;;) {
        let s: ClusterStatus;
        try {
          s = await requestStatus(this.o.conn, STATUS_TIMEOUT_MS);
        } catch (err) {
          // A node busy with the join may answer late; a missed poll is counted, not fatal.
          if ((err as { code?: string }).code !== 'ERR_REQUEST_TIMEOUT' || Date.now() > deadline) throw err;
          this.statusTimeouts++;
          continue;
        }
        this.polls++;
        this.observe(s);
        this.o.onStatus?.(s);
        if (s.nodes.length === this.o.nodes && s.rebalanced) {
          seconds = (performance.now() - this.t0) / 1000;
          rebalancedAtMs = Date.now();
          break;
        }
        if (Date.now() > deadline) throw new Error(`join not rebalanced in time (${s.rebalance?.partitionsLeft ?? '?'} copies left)`);
        await new Promise((r) => setTimeout(r, this.o.pollMs ?? 200));
      }
    } finally {
      this.done = true;
      await this.rssLoop;
    }
    return this.result(seconds, rebalancedAtMs);
  }

  private observe(s: ClusterStatus): void {
    if (this.versions.at(-1)?.version !== s.topologyVersion) this.versions.push({ version: s.topologyVersion, seenAtMs: Date.now() });
    let tempWal: number | undefined;
    for (const raw of s.rebalance?.tasks ?? []) {
      const t = normalizeTask(raw);
      if (!t) continue;
      this.tasks.set(key(t), t);
      if (t.tempWalBytes !== undefined) tempWal = (tempWal ?? 0) + t.tempWalBytes;
      if (t.fenceMs !== undefined) this.fenceMax = Math.max(this.fenceMax ?? 0, t.fenceMs);
    }
    if (tempWal !== undefined) this.tempWalPeak = Math.max(this.tempWalPeak ?? 0, tempWal);
  }

  private result(seconds: number, rebalancedAtMs: number): JoinObservation {
    const tasks = [...this.tasks.values()];
    const paths: Record<string, number> = {};
    for (const t of tasks) paths[t.path ?? 'unknown'] = (paths[t.path ?? 'unknown'] ?? 0) + 1;
    return {
      seconds,
      rebalancedAtMs,
      tasks,
      paths,
      tempWalPeakBytes: this.tempWalPeak,
      fenceMsMax: this.fenceMax,
      rss: this.rssBefore !== undefined ? { beforeBytes: this.rssBefore, peakBytes: this.rssPeak, samples: this.rssSamples } : undefined,
      topologyVersions: this.versions,
      polls: this.polls,
      statusTimeouts: this.statusTimeouts,
    };
  }
}

/**
 * Seconds a task spent from entering phase `from` to entering phase `to` (its phase times, epoch
 * ms); undefined when either is missing.
 */
export function phaseSpanSec(t: RebalanceTask, from: string, to: string): number | undefined {
  const a = t.phaseTimes[from];
  const b = t.phaseTimes[to];
  return a !== undefined && b !== undefined && b >= a ? (b - a) / 1000 : undefined;
}

/** Seconds tasks spent in each phase: median, max and sum over tasks (from their phase times). */
export function phaseBreakdown(tasks: readonly RebalanceTask[]): Record<string, { medianSec: number; maxSec: number; sumSec: number; tasks: number }> {
  const spans = new Map<string, number[]>();
  for (const t of tasks) {
    const entered = Object.entries(t.phaseTimes).sort((a, b) => a[1] - b[1]);
    for (let i = 0; i + 1 < entered.length; i++) {
      const [phase, at] = entered[i]!;
      const list = spans.get(phase) ?? [];
      list.push((entered[i + 1]![1] - at) / 1000);
      spans.set(phase, list);
    }
  }
  const out: Record<string, { medianSec: number; maxSec: number; sumSec: number; tasks: number }> = {};
  for (const [phase, list] of spans) {
    const s = [...list].sort((a, b) => a - b);
    const mid = Math.floor(s.length / 2);
    out[phase] = {
      medianSec: s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2,
      maxSec: s.at(-1)!,
      sumSec: s.reduce((a, b) => a + b, 0),
      tasks: s.length,
    };
  }
  return out;
}

/** A task's phase times as ms after its first one (readable in results files). */
export function relativePhaseTimes(t: RebalanceTask | undefined): Record<string, number> | undefined {
  if (!t) return undefined;
  const t0 = Math.min(...Object.values(t.phaseTimes));
  return Object.fromEntries(Object.entries(t.phaseTimes).sort((a, b) => a[1] - b[1]).map(([k, v]) => [k, v - t0]));
}
