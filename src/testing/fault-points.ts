/**
 * TEST ONLY — named fault points: places in the node where a test can kill the process (SIGKILL),
 * stop it (SIGSTOP, until the test sends SIGCONT), delay it or make it throw.
 *
 * Role: code deep in the node calls `await faults().hit('demander.phase.REPLAYING', { … })` without
 * threading an object through its constructors. `faults()` returns the process's installed
 * `FaultPoints`; in production that is `NO_FAULT_POINTS`, whose `hit()` is one property test and
 * a shared resolved promise. A node installs a live instance only when its config has
 * `testFaults.enabled` (refused unless PTN_ENABLE_TEST_FAULTS=1, see checkTestFaultsAllowed).
 *
 * Point names the node is expected to hit (call sites belong to each subsystem's owner; a rule
 * name may end with `*` to match a prefix, e.g. `demander.phase.*`):
 *
 * | name                         | hit when                                                     | detail                                   |
 * |------------------------------|--------------------------------------------------------------|------------------------------------------|
 * | `demander.phase.<PHASE>`     | a demander task entered PHASE (PENDING, STREAMING, SWAPPING, INDEXING, REPLAYING, HISTORICAL, OWNING, FAILED, CANCELLED) | `{ cacheId, partition, phase }` |
 * | `demander.received.<pct>`    | a demander has received and verified pct % of a file (10, 20 … 100; `hitProgress`) | `{ cacheId, partition, bytes, totalBytes }` |
 * | `demander.swap`              | right before the received file is renamed into place         | `{ cacheId, partition }`                 |
 * | `supplier.snapshot`          | a supplier's snapshot is taken (checkpoint end, before streaming) | `{ cacheId, partition, fileBytes }` |
 * | `supplier.sent.<pct>`        | a supplier has sent pct % of a partition file (10, 20 … 100; `hitProgress`) | `{ cacheId, partition, bytes, totalBytes }` |
 * | `supplier.history`           | a supplier serves a WAL history batch                        | `{ cacheId, partition, fromCounter }`    |
 * | `wal.append`                 | a record is appended to the node WAL                         | `{ type }`                               |
 * | `checkpoint.write`           | a checkpoint starts writing its dirty pages                  | `{ pages }`                              |
 * | `checkpoint.end`             | a checkpoint wrote its end marker                            | `{}`                                     |
 *
 * Rule semantics: every rule whose name matches counts the hit; a rule is due once it has let
 * `after` matching hits through (default 0: the first hit fires); `once` retires it after it fired.
 * All due rules act in rule order: `delay` waits `delayMs` (default 1000), `throw` throws
 * ERR_TEST_FAULT, `stop` sends SIGSTOP to this process (the call returns after SIGCONT), `kill`
 * sends SIGKILL. kill and stop first write one JSON line to stderr (synchronously, so it reaches
 * the node log before the process dies). `hit()` is not async: kill, stop and throw happen inside
 * the call itself, at the exact point, whether or not the caller awaits.
 *
 * Invariant: hit counts are bounded (`FAULT_POINT_NAMES_MAX` distinct names).
 */
import fs from 'node:fs';
import type { FaultPointRule } from '../config.js';
import { ErrorCode, assert, ptnError } from '../errors.js';

export type { FaultPointRule };
export type FaultAction = FaultPointRule['action'];

/** Distinct point names whose hits are counted (the rest are counted under `(other)`). */
export const FAULT_POINT_NAMES_MAX = 1024;
/** Delay of a `delay` rule without `delayMs`. */
export const FAULT_DEFAULT_DELAY_MS = 1000;
/** Step of the `<prefix>.<pct>` points `hitProgress` reports. */
export const FAULT_PROGRESS_STEP_PCT = 10;

const ACTIONS: readonly FaultAction[] = ['kill', 'stop', 'delay', 'throw'];
const RESOLVED: Promise<void> = Promise.resolve();

/** Where notes about fired faults go (besides the stderr line of kill/stop). */
export type FaultLog = (msg: string, extra: Record<string, unknown>) => void;

interface RuleState {
  rule: FaultPointRule;
  /** Matching hits seen. */
  seen: number;
  fired: number;
  retired: boolean;
}

/** True when rule name `pattern` (exact, or a prefix ending with `*`) matches point `name`. */
export function pointNameMatches(pattern: string, name: string): boolean {
  return pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : pattern === name;
}

/**
 * The percentages (multiples of `stepPct`, up to 100) crossed when progress goes from `before`
 * to `after` bytes of `total`: pct is crossed when before < ceil(total·pct/100) <= after.
 * An empty total crosses nothing.
 */
export function crossedPercents(before: number, after: number, total: number, stepPct = FAULT_PROGRESS_STEP_PCT): number[] {
  const out: number[] = [];
  if (total <= 0 || after <= before) return out;
  for (let pct = stepPct; pct <= 100; pct += stepPct) {
    const threshold = Math.ceil((total * pct) / 100);
    if (before < threshold && after >= threshold) out.push(pct);
  }
  return out;
}

function checkRule(r: FaultPointRule): FaultPointRule {
  assert(typeof r?.name === 'string' && r.name.length > 0, 'fault point rule needs a name');
  assert(ACTIONS.includes(r.action), `fault point rule ${r.name}: unknown action ${String(r.action)}`);
  assert(r.after === undefined || (Number.isInteger(r.after) && r.after >= 0), `fault point rule ${r.name}: after must be an integer >= 0`);
  assert(r.delayMs === undefined || (Number.isInteger(r.delayMs) && r.delayMs >= 0), `fault point rule ${r.name}: delayMs must be an integer >= 0`);
  return { ...r };
}

/** A set of fault point rules and the counters behind them. See the file comment. */
export class FaultPoints {
  private states: RuleState[] = [];
  private readonly hitCounts = new Map<string, number>();

  /**
   * @param enabled false only for the shared no-op instance (`NO_FAULT_POINTS`).
   */
  constructor(rules: readonly FaultPointRule[] = [], private readonly log: FaultLog = () => {}, readonly enabled = true) {
    this.setRules(rules);
  }

  /** Replaces every rule; counters start again from zero. */
  setRules(rules: readonly FaultPointRule[]): void {
    assert(this.enabled || rules.length === 0, 'the no-op fault points take no rules');
    this.states = rules.map((r) => ({ rule: checkRule(r), seen: 0, fired: 0, retired: false }));
  }

  /** The rules with how often each matched and fired. */
  rules(): Array<FaultPointRule & { seen: number; fired: number }> {
    return this.states.map((s) => ({ ...s.rule, seen: s.seen, fired: s.fired }));
  }

  /** Hits per point name since this instance was made (bounded; see FAULT_POINT_NAMES_MAX). */
  hits(): Record<string, number> {
    return Object.fromEntries(this.hitCounts);
  }

  /** Hits of one point name. */
  hitsOf(name: string): number {
    return this.hitCounts.get(name) ?? 0;
  }

  /**
   * The node reached point `name`. Resolves at once unless a due rule delays; kill, stop and throw
   * act inside this call (see the file comment).
   */
  hit(name: string, detail?: object): Promise<void> {
    if (!this.enabled) return RESOLVED;
    this.count(name);
    let due: FaultPointRule[] | undefined;
    for (const s of this.states) {
      if (s.retired || !pointNameMatches(s.rule.name, name)) continue;
      s.seen++;
      if (s.seen <= (s.rule.after ?? 0)) continue;
      s.fired++;
      if (s.rule.once) s.retired = true;
      (due ??= []).push(s.rule);
    }
    return due ? this.fire(due, 0, name, detail) : RESOLVED;
  }

  /**
   * Progress of a transfer: hits `<prefix>.<pct>` for every step crossed from `bytesBefore` to
   * `bytesAfter` of `totalBytes`, in order (e.g. `supplier.sent.40`).
   */
  hitProgress(prefix: string, bytesBefore: number, bytesAfter: number, totalBytes: number, detail: object = {}): Promise<void> {
    if (!this.enabled) return RESOLVED;
    const pcts = crossedPercents(bytesBefore, bytesAfter, totalBytes);
    if (pcts.length === 0) return RESOLVED;
    const step = (i: number): Promise<void> => {
      for (; i < pcts.length; i++) {
        const p = this.hit(`${prefix}.${pcts[i]}`, { ...detail, bytes: bytesAfter, totalBytes });
        if (p !== RESOLVED) return p.then(() => step(i + 1));
      }
      return RESOLVED;
    };
    return step(0);
  }

  private count(name: string): void {
    const key = this.hitCounts.has(name) || this.hitCounts.size < FAULT_POINT_NAMES_MAX ? name : '(other)';
    this.hitCounts.set(key, (this.hitCounts.get(key) ?? 0) + 1);
  }

  /** Acts on due rules from index `i` on; returns after the last one (a delay makes it async). */
  private fire(due: FaultPointRule[], i: number, name: string, detail: object | undefined): Promise<void> {
    for (; i < due.length; i++) {
      const rule = due[i]!;
      const extra = { point: name, rule: rule.name, action: rule.action, detail };
      switch (rule.action) {
        case 'kill':
          noteToStderr(`test fault: kill at ${name}`, extra);
          process.kill(process.pid, 'SIGKILL');
          break; // not reached: the signal is delivered before kill() returns
        case 'stop':
          noteToStderr(`test fault: stop at ${name}`, extra);
          process.kill(process.pid, 'SIGSTOP'); // returns once a SIGCONT resumed the process
          this.log(`test fault: resumed after stop at ${name}`, extra);
          break;
        case 'throw':
          this.log(`test fault: throw at ${name}`, extra);
          throw ptnError(ErrorCode.ERR_TEST_FAULT, `test fault at ${name}`, { details: { point: name, rule: rule.name } });
        case 'delay': {
          const ms = rule.delayMs ?? FAULT_DEFAULT_DELAY_MS;
          this.log(`test fault: delay ${ms} ms at ${name}`, extra);
          const next = i + 1;
          return new Promise<void>((resolve) => setTimeout(resolve, ms)).then(() => this.fire(due, next, name, detail));
        }
      }
    }
    return RESOLVED;
  }
}

/** One JSON line (pino-like, level warn) on fd 2, written synchronously. */
function noteToStderr(msg: string, extra: Record<string, unknown>): void {
  try {
    fs.writeSync(2, `${JSON.stringify({ level: 40, time: Date.now(), pid: process.pid, msg, ...extra })}\n`);
  } catch {
    /* stderr closed: the fault still fires */
  }
}

/** The shared no-op instance: what `faults()` returns unless a node with test faults installed one. */
export const NO_FAULT_POINTS: FaultPoints = new FaultPoints([], undefined, false);

let installed: FaultPoints = NO_FAULT_POINTS;

/** The fault points of this process (the no-op instance unless test faults are enabled). */
export function faults(): FaultPoints {
  return installed;
}

/**
 * Makes `points` what `faults()` returns. Returns an uninstall function that restores the no-op
 * instance if `points` is still the installed one. One process holds one node in the fault
 * suites; with several in-process nodes the last one installed wins.
 */
export function installFaultPoints(points: FaultPoints): () => void {
  installed = points;
  return () => {
    if (installed === points) installed = NO_FAULT_POINTS;
  };
}
