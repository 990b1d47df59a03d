/**
 * The catch-up log of one MOVING partition: its temporary WAL plus the switch that decides where a
 * replicated update for the partition goes (demander steps 1 and 6).
 *
 *   mode 'log'     → appended to the temporary WAL; the replicate is acknowledged after the append
 *   mode 'fenced'  → the update waits (the replay is closing its last stretch), then re-routes
 *   mode 'direct'  → applied to the store by the caller (the replay has caught up)
 *
 * Invariants:
 *   - the mode check and the append happen in the same synchronous step (TempWal.append counts the
 *     record before its first await), so the replay's lag figure always includes every update the
 *     router decided to log, and nothing is logged once the fence is up;
 *   - while a replay runs, an update that finds the log `brakeLagRecords` or more records ahead of
 *     the reader waits until the reader moves (backpressure on the primary): reading must outpace
 *     writing, or the drain would never end;
 *   - after close() of a log that is not direct yet (task cancelled, node stopping) offers are
 *     refused with ERR_PARTITION_NOT_OWNED (the primary retries against the next topology); a log
 *     that reached 'direct' keeps answering "apply it yourself".
 */
import { ErrorCode, ptnError } from '../errors.js';
import type { FileLayer } from '../util/file-layer.js';
import { TempWal, type TempWalStats } from '../wal/temp-wal.js';

export type RouteMode = 'log' | 'fenced' | 'direct';

export interface CatchUpLogOptions {
  dir: string;
  segmentBytes: number;
  recordBytesMax: number;
  fileLayer?: FileLayer;
}

interface Waiter {
  promise: Promise<void>;
  resolve: () => void;
}

function waiter(): Waiter {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** Temporary WAL + routing switch + fence of one partition. */
export class CatchUpLog {
  #mode: RouteMode = 'log';
  #closed = false;
  #fence: Waiter | undefined;
  #progress: Waiter | undefined;
  /** Set while a replay runs: appends wait when the log is this many records ahead of the reader. */
  brakeLagRecords: number | undefined;
  /** Offers that waited at the fence or the brake (status). */
  waits = 0;

  private constructor(readonly wal: TempWal) {}

  /** Opens (or recovers, see temp-wal.ts) the temporary WAL in `dir`. */
  static async open(o: CatchUpLogOptions): Promise<CatchUpLog> {
    const wal = await TempWal.open({ dir: o.dir, segmentBytes: o.segmentBytes, recordBytesMax: o.recordBytesMax, fileLayer: o.fileLayer });
    return new CatchUpLog(wal);
  }

  get mode(): RouteMode {
    return this.#mode;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get stats(): TempWalStats {
    return this.wal.stats;
  }

  /**
   * Routes one encoded update: true when it was appended to the log (acknowledge now), false when
   * the caller must apply it to the store itself.
   */
  async offer(payload: Buffer): Promise<boolean> {
    for (;;) {
      if (this.#mode === 'direct') return false;
      if (this.#closed) throw ptnError(ErrorCode.ERR_PARTITION_NOT_OWNED, 'the partition is no longer being received here');
      if (this.#mode === 'fenced') {
        this.waits++;
        await this.#fence!.promise;
        continue;
      }
      if (this.brakeLagRecords !== undefined && this.wal.stats.lagRecords >= this.brakeLagRecords) {
        this.waits++;
        this.#progress ??= waiter();
        await this.#progress.promise;
        continue;
      }
      await this.wal.append(payload);
      return true;
    }
  }

  /** The replay read a batch: appenders held by the brake look again. */
  readerProgressed(): void {
    const p = this.#progress;
    this.#progress = undefined;
    p?.resolve();
  }

  /** Raises the fence: new offers wait until lift(). */
  raiseFence(): void {
    if (this.#mode !== 'log') return;
    this.#mode = 'fenced';
    this.#fence = waiter();
  }

  /** Lowers the fence, switching to `to` ('direct' once drained; 'log' when the drain failed). */
  lift(to: 'direct' | 'log'): void {
    this.#mode = to;
    const f = this.#fence;
    this.#fence = undefined;
    f?.resolve();
    this.readerProgressed();
  }

  /** Back to logging (a task that starts over after its replay switched to direct apply). */
  relog(): void {
    if (this.#mode === 'direct') this.#mode = 'log';
  }

  /** Refuses further offers and releases every waiter (they then see ERR_PARTITION_NOT_OWNED). */
  #shut(): void {
    this.#closed = true;
    this.brakeLagRecords = undefined;
    if (this.#mode !== 'direct') this.lift('log'); // a finished log stays direct: late offers apply to the store
  }

  /** Closes the WAL, keeping its files (node stopping: a restart resumes from them). */
  async close(): Promise<void> {
    this.#shut();
    await this.wal.close();
  }

  /** Closes and deletes the WAL (task finished or cancelled). */
  async destroy(): Promise<void> {
    this.#shut();
    await this.wal.destroy();
  }
}
