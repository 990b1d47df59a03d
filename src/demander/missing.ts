/**
 * Which update counters a copy still has to fetch from its supplier's WAL history (demander step 7).
 *
 * Missing = the counters in (local lwm, supplier hwm] this copy has not applied, INTERSECTED with
 * what the supplier has applied (1..lwm plus its applied ranges). A counter neither side has is
 * not the supplier's to give: it is either still in flight (replication delivers it to both) or
 * was never applied anywhere (a primary that failed after assigning it).
 *
 * Ranges are inclusive [from, to] pairs, sorted and disjoint.
 */
import type { CounterState } from './task-state.js';

export type Range = [number, number];

/** The applied set of a counter state as ranges: [1, lwm] (when lwm ≥ 1) plus its gaps list. */
export function appliedRanges(c: CounterState): Range[] {
  const out: Range[] = c.lwm >= 1 ? [[1, c.lwm]] : [];
  for (const [f, t] of c.gaps) out.push([f, t]);
  return out;
}

/** Intersection of two sorted, disjoint range lists. */
export function intersectRanges(a: readonly Range[], b: readonly Range[]): Range[] {
  const out: Range[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const from = Math.max(a[i]![0], b[j]![0]);
    const to = Math.min(a[i]![1], b[j]![1]);
    if (from <= to) out.push([from, to]);
    if (a[i]![1] < b[j]![1]) i++;
    else j++;
  }
  return out;
}

/** Number of counters in a range list. */
export function rangeCount(r: readonly Range[]): number {
  let n = 0;
  for (const [f, t] of r) n += t - f + 1;
  return n;
}

/**
 * Counters to fetch from the supplier: `localMissing` is the copy's `counter.missing(supplier.hwm)`
 * (UpdateCounter.missing), `supplier` the supplier's counter state.
 */
export function missingFromSupplier(localMissing: readonly Range[], supplier: CounterState): Range[] {
  return intersectRanges(localMissing, appliedRanges(supplier));
}

/**
 * Groups ranges for history requests: neighbours closer than `joinGap` counters are fetched in one
 * request (the counters in between are already applied and come back as duplicates, which costs
 * less than a round trip each).
 */
export function coalesceRanges(r: readonly Range[], joinGap: number): Range[] {
  const out: Range[] = [];
  for (const [f, t] of r) {
    const last = out[out.length - 1];
    if (last && f - last[1] - 1 <= joinGap) last[1] = t;
    else out.push([f, t]);
  }
  return out;
}
