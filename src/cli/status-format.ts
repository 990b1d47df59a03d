/**
 * The cluster status a node answers to `status` (docs/protocol.md), its type as the CLI reads it,
 * and its text rendering for `ptn status`: topology, nodes, caches, the partition map and the table of
 * rebalance tasks (one row per partition copy being built: path, supplier, phase, bytes, rate, ETA,
 * temp-WAL size, replay lag, restarts and the time each phase began).
 *
 * The CLI only reads fields; anything the node adds is kept in `--json` output untouched
 * (`ptn status --json` prints exactly what the node sent).
 */
import { ErrorCode, ptnError } from '../errors.js';
import { formatTable } from './table.js';

/** A node as the status lists it. */
export interface StatusNode {
  id: string;
  address: string;
  adminAddress: string;
  order: number;
}

/** A cache as the status lists it. */
export interface StatusCache {
  name: string;
  cacheId: number;
  partitions: number;
  backups: number;
  indexFields: string[];
}

/** One partition of the map: its primary and the state of every copy. */
export interface StatusPartition {
  partition: number;
  primary?: string | null;
  copies: Record<string, string>;
}

/** The answer to `status` (docs/protocol.md). */
export interface ClusterStatus {
  nodeId: string;
  clusterId: string;
  topologyVersion: number;
  coordinator: string;
  rebalanced: boolean;
  nodes: StatusNode[];
  caches: StatusCache[];
  partitions: Record<string, StatusPartition[]>;
  rebalance?: { partitionsLeft?: number; partitionsTotal?: number; tasks?: unknown[]; yield?: Record<string, YieldCounts> };
}

/** Per node: how its rebalance steps yielded to foreground work (rebalance.yieldLagMs). */
export interface YieldCounts {
  turns: number;
  waits: number;
  waitedMs: number;
  waitMaxReached: number;
}

/** Checks the few fields the CLI relies on; anything else passes through untouched. */
export function asClusterStatus(body: unknown): ClusterStatus {
  const s = body as ClusterStatus;
  if (typeof s !== 'object' || s === null || !Array.isArray(s.nodes) || typeof s.rebalanced !== 'boolean') {
    throw ptnError(ErrorCode.ERR_REMOTE, 'status: the node answered something that is not a cluster status');
  }
  s.caches ??= [];
  s.partitions ??= {};
  return s;
}

/** Count of copies per node and state, over every partition of every cache. */
export function copyCounts(s: ClusterStatus): Map<string, Record<string, number>> {
  const out = new Map<string, Record<string, number>>();
  for (const n of s.nodes) out.set(n.id, {});
  for (const parts of Object.values(s.partitions)) {
    for (const p of parts) {
      for (const [node, state] of Object.entries(p.copies)) {
        const c = out.get(node) ?? {};
        c[state] = (c[state] ?? 0) + 1;
        out.set(node, c);
      }
    }
  }
  return out;
}

/** One line about rebalance progress, e.g. "rebalance: 12 of 40 partitions left, 3 tasks running, 9 waiting". */
export function rebalanceLine(s: ClusterStatus): string {
  const r = s.rebalance ?? {};
  if (s.rebalanced && !r.partitionsLeft) return 'rebalance: none in progress (rebalanced)';
  const moving = Object.values(s.partitions).reduce((acc, parts) => acc + parts.filter((p) => Object.values(p.copies).includes('MOVING')).length, 0);
  const left = r.partitionsLeft ?? moving;
  const total = r.partitionsTotal !== undefined && r.partitionsTotal > 0 ? ` of ${r.partitionsTotal}` : '';
  const stages = (r.tasks ?? []).map((t) => normalizeTask(t)).map((t) => (t ? taskStage(t.phase) : 'active'));
  const running = stages.filter((st) => st === 'active').length;
  const waiting = stages.filter((st) => st === 'waiting').length;
  return `rebalance: ${left}${total} partitions left, ${running} task${running === 1 ? '' : 's'} running, ${waiting} waiting`;
}

/** The readable form of `ptn status`. `partitionRows` false leaves out the per-partition map. */
export function formatStatus(s: ClusterStatus, opts: { partitionRows?: boolean } = {}): string {
  const out: string[] = [];
  out.push(
    `cluster ${s.clusterId}  topology v${s.topologyVersion}  coordinator ${s.coordinator}  answered by ${s.nodeId}  ${s.rebalanced ? 'rebalanced' : 'REBALANCING'}\n`,
  );
  const counts = copyCounts(s);
  const nodeRows = [...s.nodes]
    .sort((a, b) => a.order - b.order)
    .map((n) => {
      const c = counts.get(n.id) ?? {};
      return [n.id, String(n.order), n.address, n.adminAddress, String(c.OWNING ?? 0), String(c.MOVING ?? 0), String(c.RENTING ?? 0)];
    });
  out.push('\nnodes\n' + formatTable(['ID', 'ORDER', 'ADDRESS', 'ADMIN', 'OWNING', 'MOVING', 'RENTING'], nodeRows));
  if (s.caches.length === 0) out.push('\ncaches: none\n');
  else {
    const rows = s.caches.map((c) => [c.name, String(c.cacheId), String(c.partitions), String(c.backups), c.indexFields.join(',') || '-']);
    out.push('\ncaches\n' + formatTable(['NAME', 'ID', 'PARTITIONS', 'BACKUPS', 'INDEX'], rows));
  }
  if (opts.partitionRows !== false) {
    for (const [cache, parts] of Object.entries(s.partitions)) {
      const rows = parts.map((p) => [
        String(p.partition),
        p.primary ?? '-',
        Object.entries(p.copies)
          .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
          .map(([n, st]) => `${n}:${st}`)
          .join(' '),
      ]);
      out.push(`\npartitions of ${cache}\n` + formatTable(['PART', 'PRIMARY', 'COPIES'], rows));
    }
  }
  out.push('\n' + rebalanceLine(s) + '\n');
  const tasks = s.rebalance?.tasks ?? [];
  if (tasks.length > 0) out.push(formatTaskTable(tasks));
  return out.join('');
}

/** Longest REASON shown in the task table; the full text is in `--json`. */
export const REASON_CHARS_MAX = 40;

/** Columns of the task table, in order. */
export const TASK_COLUMNS = ['NODE', 'CACHE', 'PART', 'PATH', 'SUPPLIER', 'PHASE', 'BYTES', 'MB/S', 'ETA', 'TEMP-WAL', 'LAG', 'RESTARTS', 'PHASE TIMES', 'REASON'] as const;

function clip(text: string, charsMax: number): string {
  return text.length <= charsMax ? text : `${text.slice(0, charsMax - 1)}…`;
}

/** "12.0 MB/40.0 MB", "12.0 MB" when the total is unknown, "-" when nothing is known. */
export function formatBytesProgress(done: number | undefined, total: number | undefined): string {
  if (total !== undefined && total > 0) return `${formatBytes(done ?? 0)}/${formatBytes(total)}`;
  return done === undefined ? '-' : formatBytes(done);
}

/**
 * The phase timeline of a task: the first phase with its local time of day, every later one as
 * an offset from it ("PENDING 14:02:11 STREAMING +0.40s SWAPPING +3.1s"), in time order.
 */
export function formatPhaseTimes(phaseTimes: Readonly<Record<string, number>>): string {
  const entries = Object.entries(phaseTimes).sort(([, a], [, b]) => a - b);
  if (entries.length === 0) return '-';
  const t0 = entries[0]![1];
  return entries.map(([phase, t], i) => (i === 0 ? `${phase} ${formatClock(t)}` : `${phase} +${formatDuration((t - t0) / 1000)}`)).join(' ');
}

/** One row of the task table (cells in TASK_COLUMNS order). */
export function taskRow(t: RebalanceTask): string[] {
  return [
    t.node ?? '-',
    t.cache,
    String(t.partition),
    t.path ?? '-',
    t.supplier ?? '-',
    t.phase,
    formatBytesProgress(t.bytesDone, t.bytesTotal),
    formatRate(t.mbPerSec),
    formatDuration(t.etaSec),
    t.tempWalBytes === undefined ? '-' : formatBytes(t.tempWalBytes),
    formatCount(t.replayLagRecords),
    formatCount(t.restarts),
    formatPhaseTimes(t.phaseTimes),
    t.reason === undefined ? '-' : clip(t.reason, REASON_CHARS_MAX),
  ];
}

/**
 * The task table of `ptn status`: tasks moving data first, then waiting ones, then finished
 * ones (each by cache, partition, node); task errors on their own lines below; anything that is
 * not a task (a node newer than this CLI, a bug) printed as its JSON rather than dropped.
 */
export function formatTaskTable(rawTasks: readonly unknown[]): string {
  const tasks: RebalanceTask[] = [];
  const unreadable: string[] = [];
  for (const raw of rawTasks) {
    const t = normalizeTask(raw);
    if (t) tasks.push(t);
    else unreadable.push(`  unreadable task: ${clip(JSON.stringify(raw) ?? String(raw), 200)}\n`);
  }
  const sorted = sortTasks(tasks);
  const out: string[] = [];
  if (sorted.length > 0) out.push(formatTable(TASK_COLUMNS, sorted.map(taskRow)));
  for (const t of sorted) {
    if (t.error !== undefined) out.push(`  error ${t.node ?? '-'} ${t.cache}/${t.partition}: ${t.error.replace(/\s*\n\s*/g, ' ')}\n`);
  }
  out.push(...unreadable);
  return out.join('');
}

// ------------------------------------------------------------------ rebalance tasks

/**
 * A rebalance task as the CLI reads it: one partition copy being built on node `node` (the
 * demander). Two shapes arrive and both are mapped here: the file path's
 * `{phase, bytesDone, bytesTotal, mbPerSec, …, phaseTimes}` and the older full-path
 * `{state, bytes, entries, startedAt, finishedAt}` (state → phase, bytes → bytesDone, the two
 * times → phaseTimes). Every field but cache, partition and phase may be missing.
 */
export interface RebalanceTask {
  node?: string;
  cache: string;
  partition: number;
  path?: string;
  reason?: string;
  supplier?: string;
  /** PENDING … OWNING / FAILED / CANCELLED, or the full path's queued / running / done. */
  phase: string;
  bytesDone?: number;
  /** Known only once the supplier has said how big the file is (0, or less than bytesDone, from the node: unknown). */
  bytesTotal?: number;
  entries?: number;
  mbPerSec?: number;
  etaSec?: number;
  tempWalBytes?: number;
  replayLagRecords?: number;
  restarts?: number;
  fenceMs?: number;
  bytesNotResent?: number;
  /** Phase → epoch ms when the task entered it. */
  phaseTimes: Record<string, number>;
  error?: string;
}

/** How far along a task is, for sorting and for which tasks get a progress bar. */
export type TaskStage = 'active' | 'waiting' | 'finished';

const ACTIVE_PHASES = new Set(['STREAMING', 'SWAPPING', 'FILLING', 'INDEXING', 'REPLAYING', 'HISTORICAL', 'RUNNING']);
// FAILED waits for its retry (the demander starts the partition over), so it is not finished.
const WAITING_PHASES = new Set(['PENDING', 'QUEUED', 'FAILED']);
const STAGE_RANK: Record<TaskStage, number> = { active: 0, waiting: 1, finished: 2 };

/** active: moving data or catching up; waiting: queued or failed (to be retried); finished: OWNING, done, CANCELLED. */
export function taskStage(phase: string): TaskStage {
  const p = phase.toUpperCase();
  if (ACTIVE_PHASES.has(p)) return 'active';
  if (WAITING_PHASES.has(p)) return 'waiting';
  // Anything unknown that is not a known end state is shown as in progress rather than hidden.
  return p === 'OWNING' || p === 'DONE' || p === 'CANCELLED' ? 'finished' : 'active';
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

function phaseTimesOf(o: Record<string, unknown>, phase: string): Record<string, number> {
  const out: Record<string, number> = {};
  if (typeof o.phaseTimes === 'object' && o.phaseTimes !== null) {
    for (const [k, v] of Object.entries(o.phaseTimes)) if (num(v) !== undefined) out[k] = v as number;
    return out;
  }
  // Older full-path shape: a start and an end time.
  const started = num(o.startedAt);
  const finished = num(o.finishedAt);
  if (started !== undefined) out.running = started;
  if (finished !== undefined) out[taskStage(phase) === 'active' || phase === 'queued' ? 'done' : phase] = finished;
  return out;
}

/** Reads one task of `status.rebalance.tasks` in either shape; undefined when it has no cache and partition. */
export function normalizeTask(raw: unknown): RebalanceTask | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const o = raw as Record<string, unknown>;
  const cache = str(o.cache);
  const partition = num(o.partition);
  if (cache === undefined || partition === undefined) return undefined;
  const phase = str(o.phase) ?? str(o.state) ?? '?';
  const bytesDone = num(o.bytesDone) ?? num(o.bytes);
  let bytesTotal = num(o.bytesTotal);
  // 0 means "not known yet"; a total already passed is not a total either (the full path may
  // count its scan batches against the file size): both are shown as unknown, never as >100%.
  if (bytesTotal !== undefined && (bytesTotal <= 0 || (bytesDone !== undefined && bytesDone > bytesTotal))) bytesTotal = undefined;
  return {
    node: str(o.node),
    cache,
    partition,
    path: str(o.path),
    reason: str(o.reason),
    supplier: str(o.supplier),
    phase,
    bytesDone,
    bytesTotal,
    entries: num(o.entries),
    mbPerSec: num(o.mbPerSec),
    etaSec: num(o.etaSec),
    tempWalBytes: num(o.tempWalBytes),
    replayLagRecords: num(o.replayLagRecords),
    restarts: num(o.restarts),
    fenceMs: num(o.fenceMs),
    bytesNotResent: num(o.bytesNotResent),
    phaseTimes: phaseTimesOf(o, phase),
    error: str(o.error),
  };
}

/** Identity of a task across refreshes: demander, cache, partition. */
export function taskKey(t: RebalanceTask): string {
  return `${t.node ?? '?'}\u0000${t.cache}\u0000${t.partition}`;
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Active tasks first, then waiting, then finished; within each by cache, partition, node. Returns a new array. */
export function sortTasks(tasks: readonly RebalanceTask[]): RebalanceTask[] {
  return [...tasks].sort(
    (a, b) =>
      STAGE_RANK[taskStage(a.phase)] - STAGE_RANK[taskStage(b.phase)] ||
      cmp(a.cache, b.cache) ||
      a.partition - b.partition ||
      cmp(a.node ?? '', b.node ?? ''),
  );
}

// ------------------------------------------------------------------ figures

/** Decimal units, like the node's MB/s: "512 B", "1.5 kB", "12.3 MB", "2.0 GB". */
export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${Math.round(bytes)} B`;
  let v = bytes;
  for (const unit of ['kB', 'MB', 'GB', 'TB']) {
    v /= 1000;
    if (Number(v.toFixed(1)) < 1000 || unit === 'TB') return `${v.toFixed(1)} ${unit}`;
  }
  return `${v.toFixed(1)} TB`; // unreachable: the loop returns at TB
}

/** MB/s with three significant digits at most ("0.05", "5.12", "12.3", "123"); "-" when unknown or zero. */
export function formatRate(mbPerSec: number | undefined): string {
  if (mbPerSec === undefined || !(mbPerSec > 0)) return '-';
  if (mbPerSec >= 99.95) return mbPerSec.toFixed(0);
  if (mbPerSec >= 9.995) return mbPerSec.toFixed(1);
  return mbPerSec.toFixed(2);
}

/** A duration for ETAs and offsets: "0.40s", "4.2s", "42s", "4m05s", "2h07m"; "-" when unknown. */
export function formatDuration(sec: number | undefined): string {
  if (sec === undefined || !Number.isFinite(sec) || sec < 0) return '-';
  if (sec < 1) return `${sec.toFixed(2)}s`;
  if (sec < 9.95) return `${sec.toFixed(1)}s`;
  const s = Math.round(sec);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  const m = Math.round(s / 60);
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** Local time of day, "14:02:11". */
export function formatClock(epochMs: number): string {
  const d = new Date(epochMs);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

/** An integer count, "-" when unknown. */
export function formatCount(n: number | undefined): string {
  return n === undefined ? '-' : String(n);
}
