/**
 * A demander task in memory, and what the manager and the runner share about it: hooks for tests,
 * counters for metrics, the runner's context, the outcome of an attempt, the start-over signal.
 */
import { ErrorCode, ptnError } from '../errors.js';
import type { FileLayer } from '../util/file-layer.js';
import type { CatchUpLog } from './catch-up-log.js';
import type { SupplierLink } from './file-receiver.js';
import type { DemanderHost } from './host.js';
import type { TaskStore } from './task-store.js';
import type { Phase, RebalancePath, TaskRecord } from './task-state.js';
import type { ChunkCredits } from './chunk-credits.js';

/** How the next attempt of a task begins. */
export type NextStep = 'start' | 'resumeStream' | 'redoSwap' | 'resumeAt';

/** A task in memory: its record plus what only lives while the node runs. */
export interface Task {
  readonly key: string;
  record: TaskRecord;
  log: CatchUpLog;
  abort: AbortController;
  next: NextStep;
  active: boolean;
  /** Holds one of the receive slots: from the start of an attempt until its file is received. */
  holdsSlot: boolean;
  cancelled: boolean;
  done: boolean;
  notBefore: number;
  failures: number;
  waitReason?: string;
  link?: SupplierLink;
  linkTo?: string;
  avoid: Set<string>;
  run?: Promise<void>;
  rate?: { startMs: number; startBytes: number };
}

/** Hooks for tests: cut a connection after N chunks, observe phases. */
export interface DemanderHooks {
  onChunkVerified?(t: { cache: string; partition: number; verifiedOffset: number; fileBytes: number }, link: SupplierLink): void | Promise<void>;
  onPhase?(t: { cache: string; partition: number }, phase: Phase): void | Promise<void>;
}

/** Figures for metrics. */
export interface DemanderCounters {
  bytesReceived: Record<RebalancePath, number>;
  bytesNotResent: number;
  /** Bytes of swapped-in files read into the page cache before their replay (rebalance.prewarmBytesMax). */
  bytesPrewarmed: number;
  /** Replicated updates appended to temporary WALs. */
  updatesLogged: number;
  corruptChunks: number;
  /** Bytes cut from torn temporary-WAL tails on recovery (a crash mid-append). */
  tempWalTruncatedBytes: number;
  resumes: number;
  restarts: number;
  fences: number;
  lastFenceMs: number;
  partitionsDone: number;
}

/** What the runner needs from the manager. */
export interface RunContext {
  host: DemanderHost;
  fl: FileLayer;
  taskStore: TaskStore;
  hooks: DemanderHooks;
  counters: DemanderCounters;
  /** fsync the temp file and persist the verified offset at least every this many bytes. */
  persistEveryBytes: number;
  /** The node-wide limit on chunks in flight (rebalance.receiveChunksMax). */
  credits: ChunkCredits;
  /** Running transfers per supplier, other tasks only. */
  busy(except: Task): Map<string, number>;
  /** Persists the task record; `transferAt` overrides the transfer's verified offset and CRC (what an fsync covered). */
  save(task: Task, transferAt?: { verifiedOffset: number; runningCrc: number }): Promise<void>;
  /** OWNING reported: remove the log, files and record. */
  finished(task: Task): Promise<void>;
  /**
   * The file is received: the attempt gives its receive slot back (the slot bounds what streams at
   * once; swap, replay and catch-up need no bandwidth, and holding the slot through them left
   * the link idle while the next partition waited).
   */
  streamDone(task: Task): void;
}

/** What an attempt came to. */
export type Outcome = { kind: 'done' } | { kind: 'stopped' } | { kind: 'retry'; why: string };

/** Back to PENDING with a reason (failover, snapshot gone, history gone …). */
export class StartOver extends Error {
  constructor(
    readonly why: string,
    readonly opts: { avoid?: string; forced?: { path: RebalancePath; reason: string } } = {},
  ) {
    super(why);
  }
}

/** Settles with `p`, or rejects with ERR_REBALANCE_CANCELLED as soon as `signal` aborts. */
export function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(ptnError(ErrorCode.ERR_REBALANCE_CANCELLED, 'cancelled'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(ptnError(ErrorCode.ERR_REBALANCE_CANCELLED, 'cancelled'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
