/**
 * The cluster status a node answers to `status` (docs/protocol.md), its type as the CLI reads it,
 * and its text rendering for `ptn status`.
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
  rebalance?: { partitionsLeft?: number; partitionsTotal?: number; tasks?: unknown[] };
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

/** One line about rebalance progress, e.g. "rebalance: 12 of 40 partitions left, 3 tasks". */
export function rebalanceLine(s: ClusterStatus): string {
  const r = s.rebalance ?? {};
  if (s.rebalanced && !r.partitionsLeft) return 'rebalance: none in progress (rebalanced)';
  const moving = Object.values(s.partitions).reduce((acc, parts) => acc + parts.filter((p) => Object.values(p.copies).includes('MOVING')).length, 0);
  const left = r.partitionsLeft ?? moving;
  const total = r.partitionsTotal !== undefined && r.partitionsTotal > 0 ? ` of ${r.partitionsTotal}` : '';
  return `rebalance: ${left}${total} partitions left, ${r.tasks?.length ?? 0} tasks running`;
}

function taskLine(t: unknown): string {
  if (typeof t !== 'object' || t === null) return String(t);
  const o = t as Record<string, unknown>;
  const head = ['cache', 'partition', 'phase', 'state', 'supplier', 'demander'].filter((k) => o[k] !== undefined).map((k) => `${k}=${String(o[k])}`);
  const rest = Object.entries(o)
    .filter(([k, v]) => !['cache', 'partition', 'phase', 'state', 'supplier', 'demander'].includes(k) && (typeof v !== 'object' || v === null))
    .map(([k, v]) => `${k}=${String(v)}`);
  return [...head, ...rest].join(' ');
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
  for (const t of s.rebalance?.tasks ?? []) out.push(`  ${taskLine(t)}\n`);
  return out.join('');
}
