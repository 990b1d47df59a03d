/**
 * Topology: the versioned view of the cluster that the coordinator computes and broadcasts.
 *
 * It lists the live nodes (oldest first: the oldest is the coordinator), the caches and, for every
 * partition of every cache, which nodes hold a copy and in what state:
 *
 *   OWNING   the copy is complete and takes reads; the primary is an OWNING copy.
 *   MOVING   the copy is being filled (rebalance); it receives every update but serves no reads.
 *   RENTING  the copy is no longer wanted (all ideal owners are OWNING); its node deletes it and
 *            reports back, after which the copy disappears from the map (EVICTED).
 *
 * `computePartitionMap` is a pure function of the previous map, the live nodes and the caches, so
 * the coordinator's decisions can be tested without a network. Rules:
 *  - the ideal owners come from rendezvous hashing (affinity.ts) over the live nodes;
 *  - a partition whose assignment does not change is not disturbed (same copies, same states);
 *  - ideal nodes without a copy get a MOVING copy; OWNING copies of nodes no longer ideal stay
 *    OWNING until every ideal copy is OWNING, then turn RENTING;
 *  - a new cache (no previous copies) starts with every ideal copy OWNING (empty partitions);
 *  - when no OWNING copy survives (all holders died), the partition is LOST: no primary, no
 *    copies, and the names of its last owners are kept; it is reported once in `lost`. When one of
 *    those owners is alive again its copy is OWNING again (it brings its files back);
 *  - the primary is the first ideal node holding an OWNING copy, else the first OWNING copy.
 */
import type { CacheDef } from '../store/cache-registry.js';
import { assignPartitions } from './affinity.js';

export type CopyState = 'OWNING' | 'MOVING' | 'RENTING';

export interface TopologyNode {
  id: string;
  /** HOST:PORT of its WebSocket port. */
  address: string;
  /** HOST:PORT of its admin HTTP port. */
  adminAddress: string;
  /** Join order: lower is older; the oldest live node coordinates. */
  order: number;
}

export interface PartitionCopies {
  /** Ideal owners, primary-to-be first (rendezvous order). */
  ideal: string[];
  /** Node id → state of its copy. */
  copies: Record<string, CopyState>;
  /** Node that assigns counters and replicates; undefined only if nothing is OWNING. */
  primary: string | undefined;
  /**
   * Set when every OWNING copy is gone: the nodes that held them. The partition has no primary
   * (writes and reads fail) until one of them comes back with its data, which makes its copy
   * OWNING again. Nothing is thrown away because its owners are briefly absent (for example a
   * whole cluster restarting one node at a time).
   */
  lost?: string[];
}

export interface Topology {
  version: number;
  clusterId: string;
  coordinator: string;
  nodes: TopologyNode[];
  caches: CacheDef[];
  /** Highest cache id ever handed out (ids are never reused). */
  cacheIdMax: number;
  /** cache name → per partition copies. */
  partitions: Record<string, PartitionCopies[]>;
}

/** An empty topology with one node (a cluster that starts). */
export function initialTopology(clusterId: string, self: Omit<TopologyNode, 'order'>): Topology {
  return { version: 1, clusterId, coordinator: self.id, nodes: [{ ...self, order: 1 }], caches: [], cacheIdMax: 0, partitions: {} };
}

/** Result of a recomputation. */
export interface MapChange {
  partitions: Record<string, PartitionCopies[]>;
  /** Partitions that lost every OWNING copy: "cache/partition". */
  lost: string[];
}

function computeOne(prev: PartitionCopies | undefined, ideal: string[], alive: Set<string>, isNewCache: boolean): { pc: PartitionCopies; lost: boolean } {
  const copies: Record<string, CopyState> = {};
  if (!prev || isNewCache) {
    for (const n of ideal) copies[n] = 'OWNING';
    return { pc: { ideal, copies, primary: ideal[0] }, lost: false };
  }
  for (const [n, s] of Object.entries(prev.copies)) {
    if (!alive.has(n)) continue;
    if (s === 'OWNING') copies[n] = 'OWNING';
    else if (s === 'MOVING' && ideal.includes(n)) copies[n] = 'MOVING';
    else if (s === 'RENTING') copies[n] = 'RENTING';
  }
  // A lost partition comes back with the first of its last owners that is alive again.
  for (const n of prev.lost ?? []) if (alive.has(n)) copies[n] = 'OWNING';
  if (!Object.values(copies).includes('OWNING')) {
    const lastOwners = prev.lost ?? Object.keys(prev.copies).filter((n) => prev.copies[n] === 'OWNING');
    if (lastOwners.length > 0) {
      return { pc: { ideal, copies: {}, primary: undefined, lost: lastOwners }, lost: prev.lost === undefined };
    }
    for (const n of Object.keys(copies)) delete copies[n];
    for (const n of ideal) copies[n] = 'OWNING';
  }
  for (const n of ideal) if (!(n in copies) || copies[n] === 'RENTING') copies[n] = 'MOVING';
  if (ideal.every((n) => copies[n] === 'OWNING')) {
    for (const n of Object.keys(copies)) if (!ideal.includes(n) && copies[n] === 'OWNING') copies[n] = 'RENTING';
  }
  return { pc: { ideal, copies, primary: choosePrimary(ideal, copies, prev.primary) }, lost: false };
}

function choosePrimary(ideal: string[], copies: Record<string, CopyState>, prevPrimary: string | undefined): string | undefined {
  const fromIdeal = ideal.find((n) => copies[n] === 'OWNING');
  if (fromIdeal) return fromIdeal;
  if (prevPrimary && copies[prevPrimary] === 'OWNING') return prevPrimary;
  return Object.keys(copies).sort().find((n) => copies[n] === 'OWNING');
}

/**
 * Recomputes the partition map for `nodes` (the live ones) and `caches`, starting from `prev`.
 * `newCaches` names caches created in this step (their copies start OWNING).
 */
export function computePartitionMap(
  prev: Record<string, PartitionCopies[]>,
  nodes: readonly TopologyNode[],
  caches: readonly CacheDef[],
  newCaches: ReadonlySet<string> = new Set(),
): MapChange {
  const alive = new Set(nodes.map((n) => n.id));
  const ids = [...alive];
  const out: Record<string, PartitionCopies[]> = {};
  const lost: string[] = [];
  for (const c of caches) {
    const ideal = assignPartitions(c.name, c.partitions, c.backups, ids);
    const prevParts = prev[c.name];
    out[c.name] = ideal.map((idealNodes, p) => {
      const r = computeOne(prevParts?.[p], idealNodes, alive, newCaches.has(c.name) || !prevParts);
      if (r.lost) lost.push(`${c.name}/${p}`);
      return r.pc;
    });
  }
  return { partitions: out, lost };
}

/** Marks one copy OWNING (its rebalance finished) and recomputes renting. */
export function markOwning(pc: PartitionCopies, nodeId: string): PartitionCopies {
  if (pc.copies[nodeId] !== 'MOVING') return pc;

  const copies = { ...pc.copies, [nodeId]: 'OWNING' as CopyState };
  if (pc.ideal.every((n) => copies[n] === 'OWNING')) {
    for (const n of Object.keys(copies)) if (!pc.ideal.includes(n) && copies[n] === 'OWNING') copies[n] = 'RENTING';
  }
  return { ideal: pc.ideal, copies, primary: choosePrimary(pc.ideal, copies, pc.primary) };
}

/** Removes a copy that its node has evicted. */
export function markEvicted(pc: PartitionCopies, nodeId: string): PartitionCopies {
  if (pc.copies[nodeId] !== 'RENTING') return pc;
  const copies = { ...pc.copies };
  delete copies[nodeId];
  return { ...pc, copies };
}

/** Nodes an update of this partition must reach besides the primary: OWNING and MOVING copies. */
export function replicaTargets(pc: PartitionCopies): string[] {
  return Object.keys(pc.copies)
    .filter((n) => n !== pc.primary && (pc.copies[n] === 'OWNING' || pc.copies[n] === 'MOVING'))
    .sort();
}

/** Partitions without any OWNING copy ("cache/partition"). */
export function lostPartitions(t: Topology): string[] {
  const out: string[] = [];
  for (const [cache, parts] of Object.entries(t.partitions)) parts.forEach((pc, p) => pc.lost && out.push(`${cache}/${p}`));
  return out;
}

/** True when no copy of any partition is MOVING. */
export function isRebalanced(t: Topology): boolean {
  for (const parts of Object.values(t.partitions)) {
    for (const pc of parts) if (Object.values(pc.copies).includes('MOVING')) return false;
  }
  return true;
}

/** The coordinator of a node list: the oldest (lowest order). */
export function coordinatorOf(nodes: readonly TopologyNode[]): string | undefined {
  return [...nodes].sort((a, b) => a.order - b.order)[0]?.id;
}
