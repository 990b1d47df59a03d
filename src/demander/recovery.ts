/**
 * What a restarted node does with each persisted demander task (task-state.ts), decided when the
 * first topology after the restart says whether the copy is still MOVING here.
 *
 * The temporary WAL is kept whenever the task goes on (resumed or started over): it holds
 * replicated updates this node acknowledged, which no supplier will send again. Re-reading records
 * that were already replayed is harmless (apply-if-newer by counter), and counters lost with a torn
 * temp-WAL tail are fetched by the historical step (missing counters).
 *
 * | # | phase at the crash                  | condition                                            | action          |
 * |---|-------------------------------------|------------------------------------------------------|-----------------|
 * | 1 | any                                 | the copy is no longer MOVING here (or the cache is gone) | remove: record, temp file, temp WAL |
 * | 2 | PENDING                             | —                                                    | startOver (the path is chosen anew) |
 * | 3 | STREAMING                           | temp file holds at least the verified offset         | resumeStream: from the verified offset if the supplier still has the snapshot (`snapshotOpen` with `resume`), else start over |
 * | 4 | STREAMING                           | temp file missing or shorter than the verified offset| startOver       |
 * | 5 | SWAPPING                            | temp file complete (all bytes verified)              | redoSwap from the temp file |
 * | 6 | SWAPPING                            | temp file gone (renamed; the swap may have been undone by WAL recovery) | startOver |
 * | 7 | FILLING                             | —                                                    | startOver (the full path is for small partitions) |
 * | 8 | INDEXING, REPLAYING, HISTORICAL, OWNING | local counter lwm ≥ the lwm the data phase reached | resumeIndexing: rebuild the index part, replay the temp WAL, fetch missing counters, report OWNING (all idempotent) |
 * | 9 | INDEXING, REPLAYING, HISTORICAL, OWNING | local counter lwm below it (the swapped file was lost) | startOver |
 * | 10| FAILED, CANCELLED                   | —                                                    | startOver       |
 * | 11| record unreadable (CRC, version, shape) | —                                                | its file removed; the partition starts over (row 2) |
 * | 12| temp file or temp WAL named by no record |  —                                              | removed         |
 *
 * Why INDEXING..OWNING resume at INDEXING: the store rebuilds every index at open, and the copy
 * being MOVING suspends its part again, so the part is rebuilt before the replay writes into it.
 */
import type { TaskRecord } from './task-state.js';

/** Facts about a persisted task gathered at start-up. */
export interface RecoveryFacts {
  /** The copy is MOVING here in the topology just applied. */
  moving: boolean;
  /** Size of the record's temporary file, undefined when it does not exist (or there is none). */
  tempFileBytes: number | undefined;
  /** Counter lwm of the local partition (0 when there is none). */
  localLwm: number;
}

/** What to do with a persisted task. */
export type RecoveryAction =
  | { kind: 'remove'; row: number; why: string }
  | { kind: 'startOver'; row: number; why: string }
  | { kind: 'resumeStream'; row: number; why: string }
  | { kind: 'redoSwap'; row: number; why: string }
  | { kind: 'resumeIndexing'; row: number; why: string };

/** Applies the recovery table (top of this file) to one record. Pure. */
export function planRecovery(r: TaskRecord, f: RecoveryFacts): RecoveryAction {
  if (!f.moving) return { kind: 'remove', row: 1, why: 'the copy is no longer MOVING here' };
  const t = r.transfer;
  switch (r.phase) {
    case 'PENDING':
      return { kind: 'startOver', row: 2, why: 'nothing was received yet' };
    case 'STREAMING':
      if (t && f.tempFileBytes !== undefined && f.tempFileBytes >= t.verifiedOffset) {
        return { kind: 'resumeStream', row: 3, why: `resume from verified offset ${t.verifiedOffset}` };
      }
      return { kind: 'startOver', row: 4, why: 'the temporary file is missing or shorter than its verified offset' };
    case 'SWAPPING':
      if (t && f.tempFileBytes !== undefined && t.verifiedOffset === t.fileBytes && f.tempFileBytes >= t.fileBytes) {
        return { kind: 'redoSwap', row: 5, why: 'the verified file is still there' };
      }
      return { kind: 'startOver', row: 6, why: 'the swapped file may have been undone by WAL recovery' };
    case 'FILLING':
      return { kind: 'startOver', row: 7, why: 'an entry-by-entry fill restarts from the beginning' };
    case 'INDEXING':
    case 'REPLAYING':
    case 'HISTORICAL':
    case 'OWNING':
      if (f.localLwm >= (r.expectLwm ?? 0)) return { kind: 'resumeIndexing', row: 8, why: `redo from INDEXING (was ${r.phase})` };
      return { kind: 'startOver', row: 9, why: `local lwm ${f.localLwm} is below ${r.expectLwm}: the received data was lost` };
    case 'FAILED':
    case 'CANCELLED':
      return { kind: 'startOver', row: 10, why: `the last attempt ended ${r.phase}` };
  }
}
