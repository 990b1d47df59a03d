/**
 * Affinity: which partition a key belongs to, and which nodes hold each partition.
 *
 * key → partition: CRC-32 of the key's UTF-8 bytes modulo the cache's partition count
 * (stable across nodes and versions: it decides file contents, so it must never change).
 *
 * partition → nodes: rendezvous (highest-random-weight) hashing. For every (partition, node)
 * pair a 32-bit weight is computed; the node with the highest weight is the primary and the
 * next `backups` nodes are the backups. A node joining or leaving moves only the partitions
 * whose top-(backups+1) set it enters or leaves, which keeps rebalancing minimal.
 */
import { createHash } from 'node:crypto';
import { crc32 } from '../util/crc32.js';

/** Partition of `key` among `partitions` partitions. */
export function partitionOfKey(key: string, partitions: number): number {
  return crc32(Buffer.from(key, 'utf8')) % partitions;
}

function weight(cacheName: string, partition: number, nodeId: string): bigint {
  const h = createHash('sha1').update(`${cacheName}\u0000${partition}\u0000${nodeId}`).digest();
  return h.readBigUInt64BE(0);
}

/**
 * Owners of every partition: `result[p]` lists node ids, primary first, then up to `backups`
 * backups (fewer when there are fewer nodes). `nodeIds` order does not matter.
 */
export function assignPartitions(cacheName: string, partitions: number, backups: number, nodeIds: readonly string[]): string[][] {
  const sorted = [...new Set(nodeIds)].sort();
  const copies = Math.min(backups + 1, sorted.length);
  const out: string[][] = [];
  for (let p = 0; p < partitions; p++) {
    const ranked = sorted
      .map((id) => ({ id, w: weight(cacheName, p, id) }))
      .sort((a, b) => (a.w === b.w ? (a.id < b.id ? -1 : 1) : a.w > b.w ? -1 : 1));
    out.push(ranked.slice(0, copies).map((r) => r.id));
  }
  return out;
}
