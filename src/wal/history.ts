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
 *
 * Where a history read may start in a segment (`scanStart`): the records of every partition are
 * interleaved through each segment, so without a hint a read of one partition's last counters reads
 * and checks the whole segment (64 MiB by default; a join at 1M entries read 3 GB of WAL that
 * way to serve 36 MB of history). Each (segment, partition) keeps skip points: about every
 * `skipBytes` of segment, the offset of one of the partition's records and the highest counter of
 * the partition before that offset in the segment (a prefix max, so it only grows). A read of
 * counters above c starts at the last skip point whose prefix max is ≤ c: every record of the
 * partition before it has a counter ≤ c, whatever order the counters were logged in. At most
 * SKIP_POINTS_MAX per (segment, partition), so memory stays bounded with many partitions.
 *
 * Where it may end (`readEnds`): a batch of history stops at the highest counter that fits, but
 * without a bound the read went on to the end of the WAL to find any lower counter logged late,
 * so each batch of a long range read the whole tail again (the 1M join: ~3,000 counters per
 * partition in 1 MiB batches, every batch reading the ~50 MB since the checkpoint). Each range
 * also keeps its lag — how far a counter fell below the highest logged before it in the segment —
 * so once a read has seen counter m, every later record of the partition in that segment is
 * ≥ m − lag, and past upTo + lag nothing below upTo can follow.
 */
import type { WalPointer } from './record.js';
import { comparePointers } from './record.js';
import type { HistoryFloors } from './history-floors.js';

/** One number per (cacheId, partition): cacheId · 65536 + partition (exact below 2^53). */
export function partitionKey(cacheId: number, partition: number): number {
  return cacheId * 65536 + partition;
}

/** Counter range of one partition within one segment, and where a read of it may start. */
export interface CounterRange {
  min: number;
  max: number;
  /** Segment offset of the partition's first record in the segment. */
  first: number;
  /** Skip points, ascending: a record of the partition starts at `skipAt[i]`, and every record of it before that offset has a counter ≤ `skipMax[i]`. */
  skipAt: number[];
  skipMax: number[];
  /**
   * How far a counter of the partition fell below the highest one logged before it in the
   * segment, at most (0: logged in ascending order). Every record of it after one with counter m
   * has a counter ≥ m − lag: where a read of counters ≤ c may stop (`readEnds`).
   */
  lag: number;
}

/** Skip points kept per (segment, partition) at most. */
export const SKIP_POINTS_MAX = 64;

/** Spacing of the skip points for segments of `segmentBytes`: SKIP_POINTS_MAX per full segment, at least 4 KiB apart. */
export function skipBytesFor(segmentBytes: number): number {
  return Math.max(4096, Math.floor(segmentBytes / SKIP_POINTS_MAX));
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

  /** `skipBytes`: spacing of the skip points (skipBytesFor(segmentBytes)); Infinity keeps none. */
  constructor(floors?: HistoryFloors, private readonly skipBytes = Infinity) {
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

  /** A put/remove of (cacheId, partition) with `counter`, its frame at `offset` of the segment of `summary` (ascending). Hot path. */
  onRecord(summary: SegmentSummary, cacheId: number, partition: number, counter: number, offset: number): void {
    const key = cacheId * 65536 + partition;
    const range = summary.get(key);
    if (range === undefined) summary.set(key, { min: counter, max: counter, first: offset, skipAt: [], skipMax: [], lag: 0 });
    else {
      const n = range.skipAt.length;
      if (n < SKIP_POINTS_MAX && offset - (n === 0 ? range.first : range.skipAt[n - 1]!) >= this.skipBytes) {
        range.skipAt.push(offset);
        range.skipMax.push(range.max); // the max so far: of the records before this one
      }
      if (counter > range.max) range.max = counter;
      else {
        if (range.max - counter > range.lag) range.lag = range.max - counter;
        if (counter < range.min) range.min = counter;
      }
    }
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

  /**
   * Segment offset from which a read of the partition's records with counter > fromExclusive may
   * start in `segment` (a frame boundary): every record of it before that offset has a counter
   * ≤ fromExclusive. Undefined when the segment holds no record of it.
   */
  scanStart(segment: number, key: number, fromExclusive: number): number | undefined {
    const range = this.summaries.get(segment)?.get(key);
    if (range === undefined) return undefined;
    // skipMax is non-decreasing: the last i with skipMax[i] <= fromExclusive, by bisection.
    let lo = 0;
    let hi = range.skipMax.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (range.skipMax[mid]! <= fromExclusive) lo = mid + 1;
      else hi = mid;
    }
    return lo === 0 ? range.first : range.skipAt[lo - 1]!;
  }

  /**
   * True when a read of the partition's records with counter ≤ `toInclusive` may stop in
   * `segment` once it has seen one with counter `seenMax` (the highest of its records read so far
   * in the segment): every later record of it there has a counter ≥ seenMax − lag > toInclusive.
   * The lag only grows as records are appended, so an answer given for the records written so
   * far holds for them later too.
   */
  readEnds(segment: number, key: number, seenMax: number, toInclusive: number): boolean {
    const range = this.summaries.get(segment)?.get(key);
    return range !== undefined && seenMax - range.lag > toInclusive;
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
