/**
 * `ptn rebalance watch`: asks one node for the cluster status every `--interval-ms` and shows the
 * rebalance in progress until it is done.
 *
 * Output: on a terminal, a frame redrawn in place (overall bar over copies, a table of bars for
 * the running partitions, capped with "+N more"); on anything else (pipes, CI logs), one plain
 * line per refresh, never a control sequence. Either way the last line says how it ended.
 *
 * Ends: 0 when the status says `rebalanced` (or, with --cache, that cache has no MOVING copy);
 * 1 when --timeout-ms runs out (one `error ERR_CLUSTER_NOT_READY: …` line on stderr), when the
 * first status request fails, or after STATUS_FAILURES_MAX failed requests in a row; 130 on
 * Ctrl-C (the cursor is restored, the connection closed).
 *
 * The loop (`runWatch`) takes its status source, clock and output as arguments, so tests drive
 * it with a scripted source and a fake clock; `rebalanceWatch` wires it to a real connection.
 */
import { ErrorCode, ptnError } from '../errors.js';
import type { Connection } from '../net/connection.js';
import { type ClientFlags, type ClientSettings, clientNetConfig, connectClient, resolveClientSettings } from './client.js';
import { requestStatus } from './health.js';
import { type ProgressSnapshot, ProgressTracker, renderFrame, renderPlainLine, renderSummary } from './progress.js';
import type { ClusterStatus } from './status-format.js';

/** Failed status requests in a row after which the watch gives up (exit 1). */
export const STATUS_FAILURES_MAX = 5;

const HIDE_CURSOR = '\x1b[?25l';
const SHOW_CURSOR = '\x1b[?25h';

/** Time as the watch sees it; tests pass a fake one. */
export interface WatchClock {
  now(): number;
  /** Resolves after `ms`, or at once when `signal` aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
}

/** The wall clock and timers. */
export const realClock: WatchClock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve) => {
      if (signal.aborted) return resolve();
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
    }),
};

/** Where frames go: stdout in the command, a buffer in tests. */
export interface WatchOutput {
  write(text: string): void;
  /** Redraw in place (true) or one plain line per refresh (false). */
  readonly isTTY: boolean;
  /** Terminal width; lines are cut to it so they never wrap. */
  readonly columns?: number;
}

/** Fetches one status; `timeoutMs` is what is left before the watch's deadline (undefined: none). */
export type StatusSource = (timeoutMs: number | undefined) => Promise<ClusterStatus>;

export interface WatchOptions {
  source: StatusSource;
  out: WatchOutput;
  intervalMs: number;
  /** Give up after this long (exit 1); undefined waits forever. */
  timeoutMs?: number;
  /** Watch only this cache. */
  cache?: string;
  clock?: WatchClock;
  /** Aborting it (Ctrl-C) ends the watch with code 130. */
  signal?: AbortSignal;
  /** First line of a terminal frame, e.g. which node is watched. */
  heading?: string;
  statusFailuresMax?: number;
  tasksMax?: number;
}

/** How a watch ended: its exit code, frames drawn, the last figures and a line about it. */
export interface WatchResult {
  end: 'rebalanced' | 'timeout' | 'interrupted';
  code: 0 | 1 | 130;
  frames: number;
  last?: ProgressSnapshot;
  detail: string;
}

/** Draws snapshots either in place (terminal) or as plain lines. */
class View {
  private lines = 0;
  private last: ProgressSnapshot | undefined;
  private cursorHidden = false;

  constructor(private readonly o: WatchOptions) {}

  draw(s: ProgressSnapshot, note?: string): void {
    this.last = s;
    const out = this.o.out;
    if (!out.isTTY) {
      out.write(`${note ?? renderPlainLine(s)}\n`);
      return;
    }
    const heading = `${this.o.heading ?? 'rebalance'}  topology v${s.topologyVersion}, ${s.nodeCount} nodes`;
    const lines = renderFrame(s, { heading, columns: out.columns, tasksMax: this.o.tasksMax, note });
    // Back to the top of the previous frame and clear below, in the same write: no flicker.
    const prefix = this.lines === 0 ? HIDE_CURSOR : `\x1b[${this.lines}A\r\x1b[J`;
    this.cursorHidden = true;
    this.lines = lines.length;
    out.write(`${prefix}${lines.join('\n')}\n`);
  }

  failure(note: string): void {
    if (this.last !== undefined && this.o.out.isTTY) this.draw(this.last, note);
    else this.o.out.write(`${note}\n`);
  }

  /** The closing line (also restores the cursor). */
  end(line: string): void {
    // On a terminal, start from a clean line: Ctrl-C leaves its echoed "^C" where the cursor is.
    const prefix = this.o.out.isTTY ? `\r\x1b[2K${this.cursorHidden ? SHOW_CURSOR : ''}` : '';
    this.o.out.write(`${prefix}${line}\n`);
    this.cursorHidden = false;
  }

  /** Restores the cursor if an error ends the watch before `end`. */
  close(): void {
    if (this.cursorHidden) this.o.out.write(SHOW_CURSOR);
    this.cursorHidden = false;
  }
}

const ABORTED = Symbol('aborted');

/** Settles with `p`, or with ABORTED as soon as `signal` aborts (p's late rejection is swallowed). */
function unlessAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<{ value: T } | { error: unknown } | typeof ABORTED> {
  const settled = p.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  if (signal.aborted) return Promise.resolve(ABORTED);
  let onAbort: () => void = () => {};
  const aborted = new Promise<typeof ABORTED>((resolve) => {
    onAbort = () => resolve(ABORTED);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  return Promise.race([settled, aborted]).finally(() => signal.removeEventListener('abort', onAbort));
}

function checkCache(s: ClusterStatus, cache: string | undefined): void {
  if (cache === undefined || s.partitions[cache] !== undefined || s.caches.some((c) => c.name === cache)) return;
  throw ptnError(ErrorCode.ERR_CACHE_NOT_FOUND, `no cache named ${cache} (caches: ${s.caches.map((c) => c.name).join(', ') || 'none'})`);
}

/** Runs the watch loop; see the file comment. Throws when the first status request fails or too many fail in a row. */
export async function runWatch(o: WatchOptions): Promise<WatchResult> {
  const clock = o.clock ?? realClock;
  const signal = o.signal ?? new AbortController().signal;
  const failuresMax = o.statusFailuresMax ?? STATUS_FAILURES_MAX;
  const tracker = new ProgressTracker({ cache: o.cache });
  const view = new View(o);
  const deadlineMs = o.timeoutMs === undefined ? Number.POSITIVE_INFINITY : clock.now() + o.timeoutMs;
  let frames = 0;
  let failures = 0;
  let last: ProgressSnapshot | undefined;
  const finish = (end: WatchResult['end'], detail: string): WatchResult => {
    if (end === 'timeout') view.close();
    else view.end(detail);
    return { end, code: end === 'rebalanced' ? 0 : end === 'timeout' ? 1 : 130, frames, last, detail };
  };
  const left = () => (last === undefined ? 'no status yet' : `${last.copiesLeft} of ${last.copiesTotal} copies left`);
  try {
    for (;;) {
      // A request gets the time left, but at least one interval: the look taken at the deadline
      // itself must have a chance to answer (the watch overshoots by one interval at most).
      const remainingMs = deadlineMs - clock.now();
      const got = await unlessAborted(o.source(Number.isFinite(remainingMs) ? Math.max(o.intervalMs, remainingMs) : undefined), signal);
      if (got === ABORTED) return finish('interrupted', `interrupted: ${left()}`);
      if ('error' in got) {
        failures++;
        if (frames === 0 || failures >= failuresMax) throw got.error;
        view.failure(`status request failed (${failures} of ${failuresMax} in a row): ${String((got.error as Error)?.message ?? got.error)}`);
      } else {
        failures = 0;
        checkCache(got.value, o.cache);
        last = tracker.update(got.value, clock.now());
        view.draw(last);
        frames++;
        if (last.done) return finish('rebalanced', last.copiesTotal === 0 ? 'rebalanced (nothing was moving)' : renderSummary(last));
      }
      const nowMs = clock.now();
      if (nowMs >= deadlineMs) return finish('timeout', `rebalance not finished within ${o.timeoutMs} ms: ${left()}`);
      await clock.sleep(Math.min(o.intervalMs, deadlineMs - nowMs), signal);
      if (signal.aborted) return finish('interrupted', `interrupted: ${left()}`);
    }
  } finally {
    view.close();
  }
}

/** One client connection reused across refreshes, dialled again after it breaks. */
class StatusConnection {
  private conn: Connection | undefined;
  private closed = false;
  private readonly requestTimeoutMs = clientNetConfig().requestTimeoutMs;

  constructor(private readonly settings: ClientSettings) {}

  async fetch(timeoutMs: number | undefined): Promise<ClusterStatus> {
    if (this.closed) throw ptnError(ErrorCode.ERR_CLOSED, 'the watch is over');
    if (this.conn === undefined || !this.conn.isOpen) {
      void this.conn?.close().catch(() => {});
      this.conn = undefined;
      const conn = await connectClient(this.settings, { retries: 0 });
      if (this.closed) {
        await conn.close().catch(() => {});
        throw ptnError(ErrorCode.ERR_CLOSED, 'the watch is over');
      }
      this.conn = conn;
    }
    return requestStatus(this.conn, Math.min(timeoutMs ?? Number.POSITIVE_INFINITY, this.requestTimeoutMs));
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.conn?.close().catch(() => {});
    this.conn = undefined;
  }
}

/** Flags of `ptn rebalance watch` (its --timeout-ms bounds the whole watch, not one request). */
export interface WatchFlags extends Omit<ClientFlags, 'timeoutMs'> {
  intervalMs: number;
  timeoutMs?: number;
  cache?: string;
}

/** `ptn rebalance watch`: exit 0 rebalanced, 1 timeout or failure, 130 Ctrl-C. */
export async function rebalanceWatch(f: WatchFlags): Promise<number> {
  const settings = resolveClientSettings({ ...f, timeoutMs: undefined });
  const source = new StatusConnection(settings);
  const ac = new AbortController();
  const onSigint = () => {
    if (ac.signal.aborted) process.exit(130); // a second Ctrl-C: do not wait for anything
    ac.abort();
  };
  // A closed pipe (`| head`) ends the watch like Ctrl-C instead of crashing on EPIPE.
  const onStdoutError = () => ac.abort();
  process.on('SIGINT', onSigint);
  process.stdout.on('error', onStdoutError);
  const stdout = process.stdout;
  try {
    const r = await runWatch({
      source: (ms) => source.fetch(ms),
      out: {
        write: (text) => void stdout.write(text),
        isTTY: stdout.isTTY === true,
        get columns() {
          return stdout.columns;
        },
      },
      intervalMs: f.intervalMs,
      timeoutMs: f.timeoutMs,
      cache: f.cache,
      signal: ac.signal,
      heading: `watching ${settings.address} every ${f.intervalMs} ms${f.cache === undefined ? '' : `, cache ${f.cache}`} (Ctrl-C to stop)`,
    });
    if (r.end === 'timeout') process.stderr.write(`error ${ErrorCode.ERR_CLUSTER_NOT_READY}: ${r.detail}\n`);
    return r.code;
  } finally {
    process.off('SIGINT', onSigint);
    process.stdout.off('error', onStdoutError);
    await source.close();
  }
}
