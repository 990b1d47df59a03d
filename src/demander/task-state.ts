/**
 * The per-partition rebalance state machine of the demander (DESIGN.md "Rebalance, step by step").
 *
 * One task per partition copy that is MOVING to this node. Its phase says how far the copy got:
 *
 *   PENDING ──▶ STREAMING ──▶ SWAPPING ──▶ INDEXING ──▶ REPLAYING ──▶ HISTORICAL ──▶ OWNING   (file path)
 *   PENDING ──▶ FILLING ────────────────▶ INDEXING ──▶ REPLAYING ──▶ HISTORICAL ──▶ OWNING   (full path)
 *   PENDING ──▶ HISTORICAL ─────────────▶ INDEXING ──▶ REPLAYING ──▶ HISTORICAL ──▶ OWNING   (historical path)
 *
 * Every live phase may also go back to PENDING (start over: failover, snapshot gone, history gone,
 * a failed attempt after its backoff), to FAILED (an attempt failed; FAILED → PENDING after a
 * backoff) or to CANCELLED (the assignment changed or the cache was dropped; terminal). OWNING is
 * terminal. The historical path fetches the bulk of its delta first (PENDING → HISTORICAL, before
 * the temp-WAL replay, so "history gone" is found before anything was consumed) and checks for
 * leftovers again at the end (REPLAYING → HISTORICAL). Recovery after a restart does not transition: it
 * either continues from the persisted phase or starts over (recovery.ts).
 *
 * The record (TaskRecord) is what is persisted (task-store.ts) after every transition and after
 * every verified-offset step of a stream, so a restarted node knows where each partition stood.
 */
import { assert } from '../errors.js';

/** Phases of a demander task. */
export const PHASES = ['PENDING', 'STREAMING', 'SWAPPING', 'FILLING', 'INDEXING', 'REPLAYING', 'HISTORICAL', 'OWNING', 'FAILED', 'CANCELLED'] as const;
export type Phase = (typeof PHASES)[number];

/** How a partition is moved here. */
export type RebalancePath = 'file' | 'historical' | 'full';

/** Valid transitions: from → allowed targets. Anything else is a programmer error. */
export const TRANSITIONS: Readonly<Record<Phase, readonly Phase[]>> = {
  PENDING: ['STREAMING', 'FILLING', 'HISTORICAL', 'FAILED', 'CANCELLED'],
  STREAMING: ['SWAPPING', 'PENDING', 'FAILED', 'CANCELLED'],
  SWAPPING: ['INDEXING', 'PENDING', 'FAILED', 'CANCELLED'],
  FILLING: ['INDEXING', 'PENDING', 'FAILED', 'CANCELLED'],
  INDEXING: ['REPLAYING', 'PENDING', 'FAILED', 'CANCELLED'],
  REPLAYING: ['HISTORICAL', 'PENDING', 'FAILED', 'CANCELLED'],
  HISTORICAL: ['INDEXING', 'OWNING', 'PENDING', 'FAILED', 'CANCELLED'],
  OWNING: [],
  FAILED: ['PENDING', 'CANCELLED'],
  CANCELLED: [],
};

/** True when `from → to` is in the transition table. */
export function canTransition(from: Phase, to: Phase): boolean {
  return TRANSITIONS[from].includes(to);
}

/** True for phases a task never leaves. */
export function isTerminal(p: Phase): boolean {
  return TRANSITIONS[p].length === 0;
}

/** Counter state of a copy as the protocol carries it. */
export interface CounterState {
  lwm: number;
  hwm: number;
  gaps: Array<[number, number]>;
}

/** The file transfer of a task (file path only). */
export interface TransferRecord {
  transferId: string;
  /** Base name of the temporary file under <dataDir>/tmp/rebalance/. */
  tempFile: string;
  fileBytes: number;
  chunkBytes: number;
  pageSize: number;
  entryCount: number;
  /** The counter state the snapshot file holds (C). */
  counter: CounterState;
  /** Bytes from 0 verified (chunk CRCs) and fsynced in the temporary file. */
  verifiedOffset: number;
  /** CRC-32 of bytes [0, verifiedOffset). */
  runningCrc: number;
}

/** What is persisted per task (JSON). */
export interface TaskRecord {
  cache: string;
  cacheId: number;
  partition: number;
  /** Topology version under which the copy became MOVING here. */
  sinceVersion: number;
  phase: Phase;
  /** Epoch ms at which each phase was last entered. */
  phaseTimes: Partial<Record<Phase, number>>;
  path?: RebalancePath;
  reason?: string;
  /** A path the next attempt must take (after "history gone" or a full-path overflow). */
  forcedPath?: RebalancePath;
  forcedReason?: string;
  supplier?: string;
  transfer?: TransferRecord;
  /**
   * Counter lwm the local copy must hold once the data phase is done (the snapshot's lwm, the
   * full scan's lwm, the local lwm for the historical path). A resumed task whose local copy is
   * below it lost its data (WAL recovery replayed the swap's partitionDestroy) and starts over.
   */
  expectLwm?: number;
  restarts: number;
  bytesDone: number;
  bytesTotal: number;
  entries: number;
  bytesNotResent: number;
  fenceMs?: number;
  error?: string;
}

/** A fresh PENDING record. */
export function newTaskRecord(cache: string, cacheId: number, partition: number, sinceVersion: number, nowMs: number): TaskRecord {
  return {
    cache,
    cacheId,
    partition,
    sinceVersion,
    phase: 'PENDING',
    phaseTimes: { PENDING: nowMs },
    restarts: 0,
    bytesDone: 0,
    bytesTotal: 0,
    entries: 0,
    bytesNotResent: 0,
  };
}

/**
 * Moves `r` to phase `to` (in place), stamping the time. An invalid transition is a programmer
 * error (assertion). Entering PENDING again clears the per-attempt fields and counts a restart.
 */
export function transition(r: TaskRecord, to: Phase, nowMs: number): void {
  assert(canTransition(r.phase, to), `invalid rebalance transition ${r.phase} → ${to} (${r.cache}/${r.partition})`);
  if (to === 'PENDING') {
    r.restarts++;
    r.transfer = undefined;
    r.expectLwm = undefined;
    r.bytesDone = 0;
    r.bytesTotal = 0;
    r.entries = 0;
  }
  r.phase = to;
  r.phaseTimes[to] = nowMs;
}

/** Checks a record read from disk has the shape this build writes; false → treat it as unreadable. */
export function isTaskRecord(x: unknown): x is TaskRecord {
  const r = x as TaskRecord;
  return (
    typeof r === 'object' &&
    r !== null &&
    typeof r.cache === 'string' &&
    Number.isInteger(r.cacheId) &&
    Number.isInteger(r.partition) &&
    r.partition >= 0 &&
    Number.isInteger(r.sinceVersion) &&
    (PHASES as readonly string[]).includes(r.phase) &&
    typeof r.phaseTimes === 'object' &&
    r.phaseTimes !== null &&
    (r.transfer === undefined || isTransfer(r.transfer))
  );
}

function isTransfer(t: TransferRecord): boolean {
  return (
    typeof t.transferId === 'string' &&
    /^[A-Za-z0-9_.-]+$/.test(t.tempFile) &&
    Number.isSafeInteger(t.fileBytes) &&
    Number.isSafeInteger(t.verifiedOffset) &&
    t.verifiedOffset >= 0 &&
    t.verifiedOffset <= t.fileBytes &&
    Number.isSafeInteger(t.runningCrc)
  );
}
