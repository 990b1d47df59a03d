// Status documents and rebalance tasks in both shapes the node reports, for the status table,
// progress and watch tests.
import type { ClusterStatus } from '../../../src/cli/status-format.js';

/** 2024-01-01 14:02:11.000 local time. */
export const T0 = new Date(2024, 0, 1, 14, 2, 11, 0).getTime();

/** A file-path task as src/demander reports it (node added by the status builder). */
export function fileTask(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    node: 'node-3',
    path: 'file',
    cache: 'default',
    partition: 7,
    reason: 'partition file of 8388608 bytes is at or above fileMinBytes 1048576',
    supplier: 'node-1',
    phase: 'STREAMING',
    bytesDone: 3_000_000,
    bytesTotal: 8_388_608,
    entries: 0,
    mbPerSec: 25.5,
    etaSec: 4.2,
    tempWalBytes: 65_536,
    replayLagRecords: 12,
    restarts: 1,
    bytesNotResent: 0,
    phaseTimes: { STREAMING: T0 + 400, PENDING: T0 },
    ...over,
  };
}

/** A full-path task in the older shape (src/cluster/full-rebalance.ts before the demander). */
export function legacyTask(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    node: 'node-2',
    path: 'full',
    cache: 'default',
    partition: 3,
    sinceVersion: 5,
    state: 'running',
    supplier: 'node-1',
    bytes: 40_960,
    entries: 120,
    restarts: 0,
    startedAt: T0,
    ...over,
  };
}

/** A status with `moving` MOVING copies on node-3 (partitions 0..moving-1 of `cache`) and these tasks. */
export function statusWith(tasks: unknown[], moving: number, over: Partial<ClusterStatus> = {}, cache = 'default'): ClusterStatus {
  const parts = Array.from({ length: 16 }, (_, p) => ({
    partition: p,
    primary: 'node-1',
    copies: { 'node-1': 'OWNING', 'node-3': p < moving ? 'MOVING' : 'OWNING' } as Record<string, string>,
  }));
  return {
    nodeId: 'node-1',
    clusterId: 'ptn-local',
    topologyVersion: 9,
    coordinator: 'node-1',
    rebalanced: moving === 0,
    nodes: [
      { id: 'node-1', address: '127.0.0.1:7401', adminAddress: '127.0.0.1:7501', order: 1 },
      { id: 'node-3', address: '127.0.0.1:7403', adminAddress: '127.0.0.1:7503', order: 3 },
    ],
    caches: [{ name: cache, cacheId: 1, partitions: 16, backups: 1, indexFields: [] }],
    partitions: { [cache]: parts },
    rebalance: { partitionsLeft: moving, partitionsTotal: moving, tasks },
    ...over,
  };
}
