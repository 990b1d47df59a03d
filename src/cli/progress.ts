/**
 * Rebalance progress for `ptn rebalance watch`: a tracker that folds successive status answers
 * into overall figures, and pure renderers for a terminal (bars redrawn in place) and for pipes
 * (one plain line per refresh).
 *
 * Why a tracker and not one status at a time: tasks come and go (a finished task leaves the
 * list) and `partitionsLeft` only says what is left, so "done" and "total" exist only across
 * refreshes:
 *   - copies done grows by every drop of partitionsLeft between two refreshes; copies total is
 *     the largest done + left seen (a node joining mid-watch makes it grow, never shrink);
 *   - bytes are remembered per task (demander, cache, partition): a task that leaves the list is
 *     counted complete, a task whose bytes go back (a restart) counts its resent bytes again;
 *   - the aggregate MB/s is the bytes moved within the last `rateWindowMs`, measured here, so it
 *     covers both task shapes (the full path reports no rate of its own).
 * With a cache filter, only that cache's tasks and MOVING copies count, and "done" means that
 * cache has no MOVING copy.
 */
import {
  type ClusterStatus,
  type RebalanceTask,
  formatBytes,
  formatDuration,
  formatRate,
  normalizeTask,
  sortTasks,
  taskKey,
  taskStage,
} from './status-format.js';
import { formatTable } from './table.js';

/** Per-partition bars shown at most, the rest summed up as "+N more". */
export const TASK_BARS_MAX = 12;
/** Tasks named at most in a plain (non-TTY) line. */
export const PLAIN_TASKS_MAX = 4;
/** Default window of the aggregate MB/s. */
export const RATE_WINDOW_MS = 3_000;
/** Width of a bar in characters. */
export const BAR_CHARS = 24;

/** Everything a frame shows, computed from the statuses seen so far. */
export interface ProgressSnapshot {
  /** Time of this refresh minus the first one. */
  elapsedMs: number;
  /** True when the watched scope has no MOVING copy (the cluster's `rebalanced`, or the cache's). */
  done: boolean;
  copiesDone: number;
  copiesLeft: number;
  copiesTotal: number;
  /** Bytes of every task seen during the watch (finished ones count whole). */
  bytesDone: number;
  /** Sum of the totals (a finished task without one counts what it moved); `bytesTotalKnown` false while some running task has not said its total. */
  bytesTotal: number;
  bytesTotalKnown: boolean;
  /** Bytes moved while watching (what the rates are made of; resent bytes count again). */
  bytesMoved: number;
  /** Bytes per second over the rate window, in MB/s; undefined until two refreshes are in. */
  mbPerSec?: number;
  /** Unfinished tasks of the latest status, sorted (active first). */
  tasks: RebalanceTask[];
  topologyVersion: number;
  nodeCount: number;
}

interface TaskMemo {
  bytesDone: number;
  bytesTotal?: number;
  gone: boolean;
}

function movingCopies(s: ClusterStatus, cache: string | undefined): number {
  let n = 0;
  for (const [name, parts] of Object.entries(s.partitions)) {
    if (cache !== undefined && name !== cache) continue;
    for (const p of parts) n += Object.values(p.copies).filter((st) => st === 'MOVING').length;
  }
  return n;
}

/** Folds status answers into a ProgressSnapshot; see the file comment. */
export class ProgressTracker {
  private readonly cache: string | undefined;
  private readonly rateWindowMs: number;
  private startMs: number | undefined;
  private prevLeft: number | undefined;
  private copiesDone = 0;
  private copiesTotal = 0;
  private bytesMoved = 0;
  /** One entry per (demander, cache, partition) ever seen: bounded by nodes × partitions of the cluster. */
  private readonly memo = new Map<string, TaskMemo>();
  private readonly samples: { atMs: number; bytesMoved: number }[] = [];

  constructor(opts: { cache?: string; rateWindowMs?: number } = {}) {
    this.cache = opts.cache;
    this.rateWindowMs = opts.rateWindowMs ?? RATE_WINDOW_MS;
  }

  /** Takes one status answered at `nowMs` and returns the figures to show. */
  update(s: ClusterStatus, nowMs: number): ProgressSnapshot {
    this.startMs ??= nowMs;
    const all = (s.rebalance?.tasks ?? []).map(normalizeTask).filter((t): t is RebalanceTask => t !== undefined);
    const tasks = this.cache === undefined ? all : all.filter((t) => t.cache === this.cache);
    const done = this.cache === undefined ? s.rebalanced : movingCopies(s, this.cache) === 0;
    const left = done ? 0 : this.cache === undefined ? (s.rebalance?.partitionsLeft ?? movingCopies(s, undefined)) : movingCopies(s, this.cache);
    this.countCopies(left, done);
    this.countBytes(tasks);
    return {
      elapsedMs: nowMs - this.startMs,
      done,
      copiesDone: this.copiesDone,
      copiesLeft: left,
      copiesTotal: this.copiesTotal,
      ...this.byteTotals(),
      bytesMoved: this.bytesMoved,
      mbPerSec: this.rate(nowMs),
      tasks: sortTasks(tasks.filter((t) => taskStage(t.phase) !== 'finished')),
      topologyVersion: s.topologyVersion,
      nodeCount: s.nodes.length,
    };
  }

  private countCopies(left: number, done: boolean): void {
    if (this.prevLeft !== undefined && left < this.prevLeft) this.copiesDone += this.prevLeft - left;
    this.prevLeft = left;
    this.copiesTotal = Math.max(this.copiesTotal, this.copiesDone + left);
    // Finished: whatever was counted as total is done (a copy can also vanish without being
    // counted, e.g. when its node leaves; the bar must still end full).
    if (done) this.copiesDone = this.copiesTotal;
  }

  private countBytes(tasks: readonly RebalanceTask[]): void {
    const seen = new Set<string>();
    for (const t of tasks) {
      const key = taskKey(t);
      seen.add(key);
      const bytes = t.bytesDone ?? 0;
      const m = this.memo.get(key);
      if (m === undefined) {
        this.memo.set(key, { bytesDone: bytes, bytesTotal: t.bytesTotal, gone: false });
        continue;
      }
      // Bytes going back means the task started over: everything it has now was sent again.
      this.bytesMoved += bytes >= m.bytesDone && !m.gone ? bytes - m.bytesDone : bytes;
      m.bytesDone = bytes;
      m.bytesTotal = t.bytesTotal ?? m.bytesTotal;
      m.gone = false;
      if (taskStage(t.phase) === 'finished') this.complete(m);
    }
    for (const [key, m] of this.memo) {
      if (!seen.has(key) && !m.gone) {
        this.complete(m);
        m.gone = true;
      }
    }
  }

  /** A finished or vanished task: its unseen remainder was moved too; without a total, what it moved is its total. */
  private complete(m: TaskMemo): void {
    if (m.bytesTotal !== undefined && m.bytesDone < m.bytesTotal) {
      this.bytesMoved += m.bytesTotal - m.bytesDone;
      m.bytesDone = m.bytesTotal;
    }
    m.bytesTotal ??= m.bytesDone;
  }

  private byteTotals(): { bytesDone: number; bytesTotal: number; bytesTotalKnown: boolean } {
    let bytesDone = 0;
    let bytesTotal = 0;
    let bytesTotalKnown = true;
    for (const m of this.memo.values()) {
      bytesDone += m.bytesDone;
      if (m.bytesTotal !== undefined) bytesTotal += m.bytesTotal;
      else bytesTotalKnown = false;
    }
    return { bytesDone, bytesTotal, bytesTotalKnown: bytesTotalKnown && bytesTotal > 0 };
  }

  private rate(nowMs: number): number | undefined {
    this.samples.push({ atMs: nowMs, bytesMoved: this.bytesMoved });
    while (this.samples.length > 2 && nowMs - this.samples[1]!.atMs >= this.rateWindowMs) this.samples.shift();
    const first = this.samples[0]!;
    const sec = (nowMs - first.atMs) / 1000;
    return sec > 0 ? (this.bytesMoved - first.bytesMoved) / sec / 1e6 : undefined;
  }
}

// ------------------------------------------------------------------ rendering

/** A bar of `chars` characters, filled to `fraction` (clamped to 0..1); all empty when unknown. */
export function renderBar(fraction: number | undefined, chars = BAR_CHARS): string {
  const f = fraction === undefined || !Number.isFinite(fraction) ? 0 : Math.min(1, Math.max(0, fraction));
  const filled = Math.floor(f * chars);
  return '█'.repeat(filled) + '░'.repeat(chars - filled);
}

/** How far a task is (0..1), or undefined when it cannot tell (no total yet, full path). */
export function taskFraction(t: RebalanceTask): number | undefined {
  const p = t.phase.toUpperCase();
  // Past streaming, the bytes are all in: what is left (swap, index, replay) has no byte measure.
  if (['SWAPPING', 'INDEXING', 'REPLAYING', 'HISTORICAL'].includes(p) && t.path !== 'full') return 1;
  if (t.bytesTotal === undefined) return undefined;
  return Math.min(1, (t.bytesDone ?? 0) / t.bytesTotal);
}

const pct = (f: number | undefined): string => (f === undefined ? '' : `${Math.floor(f * 100)}%`);

/** "done/total" when every task's total is known, else just what is done (a partial total misleads). */
function bytesOf(done: number, total: number, known: boolean): string {
  return known ? `${formatBytes(done)}/${formatBytes(total)}` : formatBytes(done);
}

/** The overall line: bar over copies, copies, bytes, aggregate rate, elapsed. */
export function overallLine(s: ProgressSnapshot, barChars = BAR_CHARS): string {
  const f = s.copiesTotal > 0 ? s.copiesDone / s.copiesTotal : s.done ? 1 : 0;
  return [
    `overall ${renderBar(f, barChars)} ${pct(f).padStart(4)}`,
    `${s.copiesDone}/${s.copiesTotal} copies`,
    bytesOf(s.bytesDone, s.bytesTotal, s.bytesTotalKnown),
    `${formatRate(s.mbPerSec)} MB/s`,
    `elapsed ${formatDuration(s.elapsedMs / 1000)}`,
  ].join('  ');
}

/** What a task row says after its figures: lag while replaying, restarts, the error. */
function taskNote(t: RebalanceTask): string {
  const notes: string[] = [];
  if (t.replayLagRecords !== undefined && t.replayLagRecords > 0) notes.push(`lag ${t.replayLagRecords}`);
  if (t.restarts !== undefined && t.restarts > 0) notes.push(`restarts ${t.restarts}`);
  if (t.error !== undefined) notes.push(t.error.replace(/\s*\n\s*/g, ' '));
  return notes.join(', ');
}

/** Cells of one per-partition row. */
function taskBarRow(t: RebalanceTask, barChars: number): string[] {
  const f = taskFraction(t);
  return [
    `${t.cache}/${t.partition}`,
    t.node ?? '-',
    t.supplier ?? '-',
    t.path ?? '-',
    t.phase,
    `${renderBar(f, barChars)} ${pct(f).padStart(4)}`,
    t.bytesTotal !== undefined ? `${formatBytes(t.bytesDone ?? 0)}/${formatBytes(t.bytesTotal)}` : t.bytesDone !== undefined ? formatBytes(t.bytesDone) : '-',
    formatRate(t.mbPerSec),
    formatDuration(t.etaSec),
    taskNote(t),
  ];
}

/** Cuts a line to `columns - 1` characters so the terminal never wraps it (wrapping breaks redraw). */
export function fitLine(line: string, columns: number | undefined): string {
  if (columns === undefined || columns < 2 || line.length < columns) return line;
  return `${line.slice(0, columns - 2)}…`;
}

/** The lines of one terminal frame: a heading, the overall bar, a table of per-partition bars. */
export function renderFrame(
  s: ProgressSnapshot,
  opts: { heading?: string; columns?: number; tasksMax?: number; barChars?: number; note?: string } = {},
): string[] {
  const tasksMax = opts.tasksMax ?? TASK_BARS_MAX;
  const barChars = opts.barChars ?? BAR_CHARS;
  const lines: string[] = [];
  if (opts.heading !== undefined) lines.push(opts.heading);
  lines.push(overallLine(s, barChars));
  const shown = s.tasks.slice(0, tasksMax);
  if (shown.length > 0) {
    const header = ['PARTITION', 'NODE', 'FROM', 'PATH', 'PHASE', 'PROGRESS', 'BYTES', 'MB/S', 'ETA', 'NOTE'];
    lines.push(...formatTable(header, shown.map((t) => taskBarRow(t, barChars))).trimEnd().split('\n'));
  } else {
    lines.push(s.done ? 'no task left' : 'no task running yet');
  }
  if (s.tasks.length > shown.length) lines.push(`+${s.tasks.length - shown.length} more`);
  if (opts.note !== undefined) lines.push(opts.note);
  return lines.map((l) => fitLine(l, opts.columns));
}

/** One plain line per refresh for pipes and CI logs. */
export function renderPlainLine(s: ProgressSnapshot, tasksMax = PLAIN_TASKS_MAX): string {
  const shown = s.tasks.slice(0, tasksMax).map((t) => {
    const f = taskFraction(t);
    return `${t.cache}/${t.partition}@${t.node ?? '?'} ${t.phase}${f === undefined ? '' : ` ${pct(f)}`}`;
  });
  if (s.tasks.length > tasksMax) shown.push(`+${s.tasks.length - tasksMax} more`);
  return [
    `[${formatDuration(s.elapsedMs / 1000)}] partitions ${s.copiesDone}/${s.copiesTotal} done, ${s.copiesLeft} left`,
    bytesOf(s.bytesDone, s.bytesTotal, s.bytesTotalKnown),
    `${formatRate(s.mbPerSec)} MB/s`,
    `tasks: ${shown.length > 0 ? shown.join(', ') : 'none'}`,
  ].join('; ');
}

/** The last line of a watch that ended rebalanced. */
export function renderSummary(s: ProgressSnapshot): string {
  const sec = s.elapsedMs / 1000;
  const avg = sec > 0 && s.bytesMoved > 0 ? `, ${formatRate(s.bytesMoved / sec / 1e6)} MB/s average` : '';
  return `rebalanced: ${s.copiesDone}/${s.copiesTotal} copies, ${formatBytes(s.bytesDone)} in ${formatDuration(sec)}${avg}`;
}
