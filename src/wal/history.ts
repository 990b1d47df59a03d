/**
 * What the node WAL knows about the history of each partition, without reading segments:
 * per segment, the min/max counter of every (cacheId, partition) in it; per partition, the
 * floor below which its history is incomplete; the last reset (partitionDestroy / cacheDrop).
 *
 * Rules (why each exists):
 *  - retention deleting segment S raises each partition's floor to S's max counter for it:
 *    counters may arrive out of order, so anything up to that max may be gone;
 *  - a partitionDestroy / cacheDrop makes the partition "pending": the node no longer holds its
 *    history at all (its records before the reset are not served, and a partition received later
 *    as a file holds counters this WAL never saw). The first record after the reset, counter c,
 *    sets the floor to c − 1: only history after it is complete. Conservative with out-of-order
 *    counters, which is the safe side;
 *  - availableFrom = floor (Infinity while pending); history(from, to] is gone iff from < it.
 * The floors survive restarts in history.floors (history-floors.ts), written before any delete.
 * At open they are loaded, then the remaining segments are scanned again: every rule is a max,
 * so re-applying events already folded in only makes the result more conservative.
 */
import type { WalPointer } from './record.js';
import { comparePointers } from './record.js';
import type { HistoryFloors } from './history-floors.js';

/** One number per (cacheId, partition): cacheId · 65536 + partition (exact below 2^53). */
export function partitionKey(cacheId: number, partition: number): number {
  return cacheId * 65536 + partition;
}

/** Counter range of one partition within one segment. */
export interface CounterRange {
  min: number;
  max: number;
}

/** Per-segment summary: partitionKey → counter range. */
export type SegmentSummary = Map<number, CounterRange>;

interface PartitionState {
  floor: number;
  pending: boolean;
  /** Last partitionDestroy of it in the retained segments. */
  destroyedAt: WalPointer | undefined;
}

/** Summaries, floors and resets of the retained WAL. */
export class HistoryIndex {
  private readonly summaries = new Map<number, SegmentSummary>();
  private readonly partitions = new Map<number, PartitionState>();
  /** Dropped caches → pointer of their last cacheDrop in the retained segments (undefined: only known from the floors file). */
  private readonly droppedCaches = new Map<number, WalPointer | undefined>();

  constructor(floors?: HistoryFloors) {
    for (const p of floors?.partitions ?? []) {
      this.partitions.set(partitionKey(p.cacheId, p.partition), { floor: p.floor, pending: p.pending, destroyedAt: undefined });
    }
    for (const c of floors?.droppedCaches ?? []) this.droppedCaches.set(c, undefined);
  }

  /** The summary of `segment`, created empty if new (the writer keeps the active one at hand). */
  summary(segment: number): SegmentSummary {
    let s = this.summaries.get(segment);
    if (!s) {
      s = new Map();
      this.summaries.set(segment, s);
    }
    return s;
  }

  /** A put/remove of (cacheId, partition) with `counter` in the segment of `summary`. Hot path. */
  onRecord(summary: SegmentSummary, cacheId: number, partition: number, counter: number): void {
    const key = cacheId * 65536 + partition;
    const range = summary.get(key);
    if (range === undefined) summary.set(key, { min: counter, max: counter });
    else if (counter > range.max) range.max = counter;
    else if (counter < range.min) range.min = counter;
    const st = this.partitions.get(key);
    if (st === undefined) {
      // First record of a partition of a dropped cache: only what follows is history here.
      const floor = this.droppedCaches.has(cacheId) ? Math.max(0, counter - 1) : 0;
      this.partitions.set(key, { floor, pending: false, destroyedAt: undefined });
    } else if (st.pending) {
      st.pending = false;
      st.floor = Math.max(st.floor, counter - 1);
    }
  }

  onPartitionDestroy(cacheId: number, partition: number, at: WalPointer): void {
    const key = partitionKey(cacheId, partition);
    const st = this.partitions.get(key);
    if (st === undefined) this.partitions.set(key, { floor: 0, pending: true, destroyedAt: at });
    else {
      st.pending = true;
      st.destroyedAt = at;
    }
  }

  onCacheDrop(cacheId: number, at: WalPointer): void {
    this.droppedCaches.set(cacheId, at);
    for (const [key, st] of this.partitions) if (Math.floor(key / 65536) === cacheId) st.pending = true;
  }

  /** Retention deleted `segment`: raise the floors to what it held. */
  onSegmentDeleted(segment: number): void {
    const s = this.summaries.get(segment);
    if (!s) return;
    for (const [key, range] of s) {
      const st = this.partitions.get(key);
      if (st && range.max > st.floor) st.floor = range.max;
    }
    this.summaries.delete(segment);
  }

  /** Lowest fromExclusive for which history of the partition is complete (Infinity: none is). */
  availableFrom(cacheId: number, partition: number): number {
    const st = this.partitions.get(partitionKey(cacheId, partition));
    if (st === undefined) return this.droppedCaches.has(cacheId) ? Infinity : 0;
    return st.pending ? Infinity : st.floor;
  }

  /** Records of the partition before this pointer belong to a destroyed incarnation (not served, not replayed). */
  resetPointer(cacheId: number, partition: number): WalPointer | undefined {
    const destroyed = this.partitions.get(partitionKey(cacheId, partition))?.destroyedAt;
    const dropped = this.droppedCaches.get(cacheId);
    if (destroyed === undefined) return dropped;
    if (dropped === undefined) return destroyed;
    return comparePointers(destroyed, dropped) >= 0 ? destroyed : dropped;
  }

  /** True when `segment` may hold records of the partition with fromExclusive < counter ≤ toInclusive. */
  segmentMayHold(segment: number, key: number, fromExclusive: number, toInclusive: number): boolean {
    const range = this.summaries.get(segment)?.get(key);
    return range !== undefined && range.max > fromExclusive && range.min <= toInclusive;
  }

  /** State to persist in history.floors. */
  floors(): HistoryFloors {
    const out: HistoryFloors = { partitions: [], droppedCaches: [...this.droppedCaches.keys()] };
    for (const [key, st] of this.partitions) {
      const cacheId = Math.floor(key / 65536);
      // floor 0, not pending is what an unknown partition gets, unless its cache was dropped.
      if (st.floor === 0 && !st.pending && !this.droppedCaches.has(cacheId)) continue;
      out.partitions.push({ cacheId, partition: key % 65536, floor: st.floor, pending: st.pending });
    }
    return out;
  }
}
