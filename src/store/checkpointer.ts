/**
 * Checkpointer: turns dirty pages into a durable, self-consistent partition-file state and
 * lets the WAL drop what recovery no longer needs.
 *
 * Sequence (one checkpoint at a time; concurrent requests share the running one):
 *   1. PageMemory.beginCheckpoint() quiesces mutations for an instant, captures the dirty pages
 *      and, at that same instant, the WAL position `replayFrom` (every record before it is
 *      reflected in the captured pages).
 *   2. WAL: CHECKPOINT_BEGIN {id, replayFrom}, flushed (write-ahead: the pages never get ahead of
 *      the log that produced them).
 *   3. The captured pages are written (fresh pages in place, overwritten pages through the
 *      checkpoint journal, see page-memory.ts), files fsynced.
 *   4. WAL: CHECKPOINT_END {id}, flushed; the WAL may now delete segments before replayFrom.
 * Triggers: periodic (checkpointIntervalMs), dirty-page pressure, and on demand.
 */
import { ErrorCode, ptnError } from '../errors.js';
import type { CheckpointStats, CheckpointWrite, PageMemory } from '../pagememory/page-memory.js';
import type { NodeWal } from '../wal/node-wal.js';
import type { WalPointer } from '../wal/record.js';
import type { Logger } from '../util/log.js';

export interface CheckpointResult {
  checkpointId: number;
  reason: string;
  pages: number;
  bytes: number;
  journalPages: number;
  durationMs: number;
  replayFrom: WalPointer;
}

export class Checkpointer {
  private running: Promise<CheckpointResult> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Called after each completed checkpoint (the store purges tombstones there). */
  onCompleted: ((r: CheckpointResult) => Promise<void>) | undefined;
  lastResult: CheckpointResult | undefined;
  completed = 0;
  /**
   * Rebalance snapshots (src/supplier/): hooks run synchronously at the end of the next checkpoint
   * that captures after they were added — right after its pages are durable, before anything can
   * write pages again (only a checkpoint writes partition pages, one at a time).
   */
  private armNext: Array<{ arm: () => void; fail: (err: unknown) => void; done?: () => void }> = [];
  /** Hooks waiting for the running checkpoint to finish writing pages (atCommittedState). */
  private armAtWriteEnd: Array<{ arm: () => void; fail: (err: unknown) => void }> = [];
  /** True from the start of a checkpoint until its pages are written: the files are then in between states. */
  private writing = false;

  constructor(
    private readonly pm: PageMemory,
    private readonly wal: NodeWal,
    private readonly intervalMs: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      this.checkpoint('periodic').catch((err) => this.log.error({ err }, 'periodic checkpoint failed'));
    }, this.intervalMs);
    this.timer.unref();
  }

  /** Runs a checkpoint now, or joins the one running (then runs one more if asked while running). */
  checkpoint(reason: string): Promise<CheckpointResult> {
    if (this.running) {
      if (reason !== 'pressure') this.again = true;
      return this.running;
    }
    this.running = this.run(reason).finally(() => {
      this.running = undefined;
      if (this.again && !this.closed) {
        this.again = false;
        this.checkpoint('queued').catch((err) => this.log.error({ err }, 'queued checkpoint failed'));
      }
    });
    return this.running;
  }

  /**
   * Runs `arm` synchronously at the end of the next checkpoint whose capture comes after this call
   * (the file of every partition then holds exactly its committed state), then `done` once that
   * checkpoint has completed; `fail` instead when it fails, `arm` throws, or the checkpointer
   * closes first. Request the checkpoint yourself (`checkpoint()`).
   */
  atNextCheckpointEnd(arm: () => void, fail: (err: unknown) => void, done?: () => void): void {
    if (this.closed) fail(ptnError(ErrorCode.ERR_CLOSED, 'checkpointer is closed'));
    else this.armNext.push({ arm, fail, done });
  }

  /**
   * Runs `arm` synchronously at the first instant every partition file holds exactly its committed
   * state (`PartitionStore.committed()`): at once when no checkpoint is writing pages, else right
   * after the running checkpoint has written its pages (the committed state is then that
   * checkpoint's). Starts no checkpoint. `fail` instead when `arm` throws, the running checkpoint
   * fails, or the checkpointer is closed.
   */
  atCommittedState(arm: () => void, fail: (err: unknown) => void): void {
    if (this.closed) {
      fail(ptnError(ErrorCode.ERR_CLOSED, 'checkpointer is closed'));
      return;
    }
    if (this.writing) {
      this.armAtWriteEnd.push({ arm, fail });
      return;
    }
    try {
      arm();
    } catch (err) {
      fail(err);
    }
  }

  private async run(reason: string): Promise<CheckpointResult> {
    const t0 = performance.now();
    const arms = this.armNext.splice(0); // hooks added from here on wait for the next checkpoint
    let stats: CheckpointStats;
    let replayFrom: WalPointer;
    let checkpoint: CheckpointWrite;
    let armed = arms;
    this.writing = true;
    try {
      ({ captured: replayFrom, checkpoint } = await this.pm.beginCheckpoint(() => this.wal.position()));
      await this.wal.append({ type: 'checkpointBegin', checkpointId: checkpoint.checkpointId, replayFrom });
      await this.wal.flush();
      stats = await checkpoint.write();
      // No await between write() and the hooks: no page can change on disk in between.
      this.writing = false;
      for (const a of this.armAtWriteEnd.splice(0)) this.atCommittedState(a.arm, a.fail);
      armed = arms.filter((a) => {
        try {
          a.arm();
          return true;
        } catch (err) {
          a.fail(err);
          return false;
        }
      });
      await this.wal.append({ type: 'checkpointEnd', checkpointId: checkpoint.checkpointId });
      await this.wal.flush();
      await this.wal.checkpointCompleted(replayFrom);
    } catch (err) {
      if (this.writing) {
        this.writing = false;
        // The files may be in between states until the page memory recovers them: those hooks fail too.
        for (const a of this.armAtWriteEnd.splice(0)) a.fail(err);
      }
      for (const a of armed) a.fail(err);
      throw err;
    }
    const result: CheckpointResult = {
      checkpointId: checkpoint.checkpointId,
      reason,
      pages: stats.pages,
      bytes: stats.bytes,
      journalPages: stats.journalPages,
      durationMs: performance.now() - t0,
      replayFrom,
    };
    this.lastResult = result;
    this.completed++;
    this.log.debug({ checkpoint: result }, 'checkpoint completed');
    if (this.onCompleted) await this.onCompleted(result);
    for (const a of armed) a.done?.();
    return result;
  }

  /** Stops the timer and waits for a running checkpoint. */
  async close(): Promise<void> {
    this.closed = true;
    for (const a of this.armNext.splice(0)) a.fail(ptnError(ErrorCode.ERR_CLOSED, 'checkpointer closed before the next checkpoint'));
    // armAtWriteEnd hooks stay: the running checkpoint (awaited below) runs or fails them.
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.running) await this.running.catch(() => undefined);
  }
}
