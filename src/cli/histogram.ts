/**
 * A fixed-bucket latency histogram (log-linear, in the spirit of HdrHistogram).
 *
 * Values are non-negative integers (the load generator records microseconds). Values below
 * `SUB_BUCKETS` (64) get one exact bucket each; above, every power of two [2^m, 2^(m+1)) is split
 * into 32 equal buckets, so a bucket is at most 1/32 (~3.1 %) of its values wide. Values above
 * `VALUE_MAX` are clamped into the last bucket (and still count towards `max`).
 *
 * Memory is fixed (`BUCKET_COUNT` counters) whatever the number of samples, so a long load run
 * cannot grow it. `percentile()` returns the upper edge of the bucket that holds the requested
 * rank, clamped to the observed min/max: a conservative figure that is never below the truth by
 * more than one bucket width.
 */

const SUB_BITS = 6;
/** Values below this are stored exactly. */
export const SUB_BUCKETS = 1 << SUB_BITS; // 64
const HALF = SUB_BUCKETS >> 1; // 32 buckets per power of two above SUB_BUCKETS
/** Largest value kept apart from the others: 2^36 µs ≈ 19 hours. */
export const VALUE_MAX = 2 ** 36 - 1;
const TOP_MAGNITUDE = 35; // floor(log2(VALUE_MAX))
/** Number of counters. */
export const BUCKET_COUNT = SUB_BUCKETS + (TOP_MAGNITUDE - SUB_BITS + 1) * HALF;

function magnitude(v: number): number {
  return v < 2 ** 31 ? 31 - Math.clz32(v) : Math.floor(Math.log2(v));
}

/** Bucket index of a value (already clamped to 0..VALUE_MAX). */
export function bucketOf(v: number): number {
  if (v < SUB_BUCKETS) return v;
  const m = magnitude(v);
  const shift = m - (SUB_BITS - 1);
  const top = Math.floor(v / 2 ** shift); // in [HALF, SUB_BUCKETS)
  return SUB_BUCKETS + (m - SUB_BITS) * HALF + (top - HALF);
}

/** Inclusive value range of a bucket. */
export function bucketRange(index: number): { low: number; high: number } {
  if (index < SUB_BUCKETS) return { low: index, high: index };
  const rel = index - SUB_BUCKETS;
  const m = SUB_BITS + Math.floor(rel / HALF);
  const shift = m - (SUB_BITS - 1);
  const top = HALF + (rel % HALF);
  const low = top * 2 ** shift;
  return { low, high: low + 2 ** shift - 1 };
}

/** Histogram of non-negative integer samples with ≤ ~3 % relative bucket width. */
export class Histogram {
  private readonly counts = new Float64Array(BUCKET_COUNT);
  private total = 0;
  private sum = 0;
  private lowest = Number.POSITIVE_INFINITY;
  private highest = 0;

  /** Records one sample (negative values count as 0, fractions are rounded). */
  record(value: number): void {
    const v = Math.max(0, Math.round(value));
    this.counts[bucketOf(Math.min(v, VALUE_MAX))]! += 1;
    this.total += 1;
    this.sum += v;
    if (v < this.lowest) this.lowest = v;
    if (v > this.highest) this.highest = v;
  }

  /** Adds every sample of `other` (e.g. per-worker histograms). */
  merge(other: Histogram): void {
    for (let i = 0; i < BUCKET_COUNT; i++) this.counts[i]! += other.counts[i]!;
    this.total += other.total;
    this.sum += other.sum;
    this.lowest = Math.min(this.lowest, other.lowest);
    this.highest = Math.max(this.highest, other.highest);
  }

  get count(): number {
    return this.total;
  }
  get min(): number {
    return this.total === 0 ? 0 : this.lowest;
  }
  get max(): number {
    return this.highest;
  }
  get mean(): number {
    return this.total === 0 ? 0 : this.sum / this.total;
  }

  /** The value at percentile `p` (0 < p ≤ 100); 0 when empty. */
  percentile(p: number): number {
    if (this.total === 0) return 0;
    const rank = Math.max(1, Math.ceil((Math.min(100, Math.max(0, p)) / 100) * this.total));
    let seen = 0;
    for (let i = 0; i < BUCKET_COUNT; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(this.highest, Math.max(this.lowest, bucketRange(i).high));
    }
    return this.highest;
  }
}
