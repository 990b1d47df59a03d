/**
 * Per-partition decisions of the demander, as pure functions so each rule is tested alone.
 *
 * Supplier: among the OWNING copies (other nodes), the one this node is pulling the fewest
 * partitions from right now; ties broken by partition number (the candidate list rotated by the
 * partition), so concurrent transfers spread over several suppliers. Suppliers that just failed
 * this task are avoided while another candidate exists.
 *
 * Path, in this order (the reason is logged and shown in status):
 *   1. a forced path (history gone → file; full path overflowed its counter gaps → file);
 *   2. historical: this node has its own data for the partition (lwm ≥ 1), it is at most
 *      `historicalMaxCounterGap` updates behind the supplier's hwm, and the supplier's history
 *      still starts at or below the local lwm;
 *   3. full (entry by entry): the supplier's file is smaller than `fileMinBytes`;
 *   4. file.
 */
import type { RebalancePath } from './task-state.js';
import type { PartitionInfo } from './protocol.js';

/** Picks a supplier (see the file comment); undefined when there is no candidate. */
export function chooseSupplier(
  owners: readonly string[],
  busy: ReadonlyMap<string, number>,
  partition: number,
  avoid: ReadonlySet<string> = new Set(),
): string | undefined {
  const all = [...new Set(owners)].sort();
  if (all.length === 0) return undefined;
  const preferred = all.filter((o) => !avoid.has(o));
  const pool = preferred.length > 0 ? preferred : all;
  const n = pool.length;
  const start = partition % n;
  let best: string | undefined;
  let bestBusy = Infinity;
  for (let i = 0; i < n; i++) {
    const cand = pool[(start + i) % n]!;
    const b = busy.get(cand) ?? 0;
    if (b < bestBusy) {
      best = cand;
      bestBusy = b;
    }
  }
  return best;
}

/** What the path decision looks at. */
export interface PathInput {
  /** The local copy's counter, when this node has a file for the partition. */
  local?: { lwm: number; hwm: number; entryCount: number };
  supplier: PartitionInfo;
  fileMinBytes: number;
  historicalMaxCounterGap: number;
  forced?: { path: RebalancePath; reason: string };
}

/** Chooses the path and says why. */
export function choosePath(i: PathInput): { path: RebalancePath; reason: string } {
  if (i.forced) return { path: i.forced.path, reason: i.forced.reason };
  const sup = i.supplier;
  const lwm = i.local?.lwm ?? 0;
  if (lwm >= 1) {
    const behind = Math.max(0, sup.counter.hwm - lwm);
    if (behind <= i.historicalMaxCounterGap && sup.historyAvailableFrom <= lwm) {
      return { path: 'historical', reason: `local copy at lwm ${lwm} is ${behind} updates behind the supplier (max ${i.historicalMaxCounterGap}) and its history is available from ${sup.historyAvailableFrom}` };
    }
  }
  if (sup.fileBytes < i.fileMinBytes) {
    return { path: 'full', reason: `partition file of ${sup.fileBytes} bytes is below fileMinBytes ${i.fileMinBytes}` };
  }
  const why =
    lwm >= 1
      ? sup.historyAvailableFrom > lwm
        ? `local lwm ${lwm} is older than the supplier's history (from ${sup.historyAvailableFrom})`
        : `local copy is ${sup.counter.hwm - lwm} updates behind (max ${i.historicalMaxCounterGap})`
      : 'no local data';
  return { path: 'file', reason: `${why}; file of ${sup.fileBytes} bytes` };
}
