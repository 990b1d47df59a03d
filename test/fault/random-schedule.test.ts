/**
 * Fault scenario 12 — a randomized schedule: a seeded mix of the faults above while a load runs,
 * on a 3-node cluster (backups 2, so one node down at a time never loses a partition) that grows
 * by joins and loses nodes to kills and restarts.
 *
 * Each step arms a few faults (demander killed or failed at a random phase, supplier held back at
 * a random share of a file, a node frozen with SIGSTOP for less than the failure timeout), then
 * changes the topology (a join, or a node killed and restarted), then lets the cluster settle,
 * restarting any node a fault killed. Node-1 (the coordinator) is never killed and at most one node
 * is down at a time (see Schedule.step); a killed node is restarted before or after the
 * coordinator dropped it (see Schedule.restart).
 *
 * Half the seeds (by the seed) run with rebalance.yieldLagMs on and pressed hard, so the yields'
 * waits meet every fault too.
 *
 * Expected outcome, every seed: the cluster settles after every step and the checker passes at
 * the end (acknowledged writes, equal digests, all OWNING, no temp files, every node alive).
 *
 * Seeds: PTN_SEED=<n> runs that one; otherwise PTN_FAULT_SEEDS (default 2: what `npm test` runs)
 * fresh seeds; `npm run test:fault -- --seeds N` runs N seeds, one process each. A failure
 * prints the seed and the command that reruns it. With PTN_FAULT_SUMMARY=<file>, one JSON line
 * per seed {seed, fired, faults, outcome} is appended (scripts/test-fault.mjs prints them as a table).
 */
import test, { type TestContext } from 'node:test';
import fs from 'node:fs';
import { getFaults, nodeState, pauseNode, resumeNode } from '../helpers/node-faults.js';
import { rng } from '../helpers/tmp.js';
import type { TestCluster } from '../helpers/cluster.js';
import { checkCluster } from './checker.js';
import { type PointRule, ackLogOf, addNode, backgroundLoad, createCache, faultCluster, fill, nodeOf, setPoints, setStartupPoints, status, waitFor } from './scenarios.js';

const PHASES = ['STREAMING', 'SWAPPING', 'INDEXING', 'REPLAYING', 'HISTORICAL'];
const STEPS_MIN = 3;
const STEPS_MAX = 4;
const JOINS_MAX = 2;

function seeds(): number[] {
  if (process.env.PTN_SEED) return [Number(process.env.PTN_SEED)];
  const n = Number(process.env.PTN_FAULT_SEEDS ?? 2);
  return Array.from({ length: n }, () => Math.floor(Math.random() * 2 ** 31));
}

/** Kill faults a step may still arm (see Schedule.step). */
interface KillBudget {
  kills: number;
}

/** A seeded schedule runner: picks faults and events, records what it injected. */
class Schedule {
  private readonly r: () => number;
  private joins = 0;

  constructor(
    readonly seed: number,
    private readonly c: TestCluster,
    /** What was injected so far (kept by the caller, so a failure still reports it). */
    readonly injected: string[],
  ) {
    this.r = rng(seed);
  }

  private pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.r() * xs.length)]!;
  }

  private running(): string[] {
    return this.c.nodes().filter((n) => nodeState(n) !== 'gone').map((n) => n.id);
  }

  /**
   * Faults a node's demander may hit at a random phase: killed (then restarted) or a thrown error.
   * A kill only while the step's budget allows one (see step()); otherwise the error is thrown.
   */
  private demanderFault(budget: KillBudget): PointRule {
    let action: PointRule['action'] = this.r() < 0.5 ? 'kill' : 'throw';
    if (action === 'kill' && budget.kills-- <= 0) action = 'throw';
    return { name: `demander.phase.${this.pick(PHASES)}`, action, once: true };
  }

  /** Faults that fired so far (rules seen firing in GET /faults, plus nodes a fault killed). */
  fired = 0;

  /** Counts the rules that fired on running nodes (before their rules are replaced). */
  async countFired(): Promise<void> {
    for (const id of this.running()) {
      const r = await getFaults(nodeOf(this.c, id).adminAddress).catch(() => undefined);
      for (const p of (r?.body?.points ?? []) as Array<{ fired: number }>) this.fired += p.fired > 0 ? 1 : 0;
    }
  }

  /**
   * Arms faults on running nodes (POST /faults: they last until the node restarts). Every running
   * node's rules are replaced, also by none: a kill rule armed in an earlier step that did not fire
   * must not fire in this one (it would be a second node down).
   */
  private async armRunning(budget: KillBudget): Promise<void> {
    await this.countFired();
    for (const id of this.running()) {
      const points: PointRule[] = [];
      if (this.r() < 0.5) points.push({ name: `supplier.sent.${10 * (1 + Math.floor(this.r() * 9))}`, action: 'delay', delayMs: 200 + Math.floor(this.r() * 1500), once: true });
      if (id !== 'node-1' && this.r() < 0.35) points.push(this.demanderFault(budget));
      await setPoints(nodeOf(this.c, id), points);
      this.injected.push(...points.map((p) => `${id}:${p.action}@${p.name}`));
    }
  }

  /**
   * One step: arm faults, change the topology, maybe freeze a node, settle.
   *
   * At most ONE node is down at a time — the premise of backups 2: a step starts rebalanced (three
   * OWNING copies of every partition), so one node down leaves two. A kill+restart step arms no
   * kill fault; a join step arms at most one (on a running node or the joining one). Two nodes
   * down at once can lose every OWNING copy of a partition whose third copy is still MOVING; the
   * partition then comes back OWNING on the first old owner that rejoins, and other nodes route
   * writes to it before it has applied that topology: it answers `primaryWrite` from its
   * placeholder topology with ERR_CACHE_NOT_FOUND, which no client retries (seed 225932470 of
   * the first runs; product issue reported, src/cluster/write-path.ts).
   */
  async step(): Promise<void> {
    const join = this.joins < JOINS_MAX && this.r() < 0.5;
    const budget: KillBudget = { kills: join ? 1 : 0 };
    await this.armRunning(budget);
    if (join) {
      const fault = this.r() < 0.5 ? [this.demanderFault(budget)] : [];
      setStartupPoints(this.c, fault);
      let e;
      try {
        e = await addNode(this.c);
      } finally {
        setStartupPoints(this.c, []);
      }
      this.joins++;
      this.injected.push(`join ${e.id}`, ...fault.map((p) => `${e.id}:${p.action}@${p.name}`));
    } else {
      const victim = this.pick(this.running().filter((id) => id !== 'node-1'));
      this.injected.push(`kill+restart ${victim}`);
      // wait: false — the manager's stop() would otherwise wait for the cluster to be ready and
      // fail as soon as ANY node dies meanwhile, and armed demander kill points fire exactly then
      // (the kill starts a rebalance). settle() below waits instead, restarting what a fault killed.
      await this.c.stop(victim, { kill: true, wait: false });
      await new Promise((r) => setTimeout(r, 300 + Math.floor(this.r() * 2500)));
      // Half the time the node comes back before the coordinator's failure detection gave up on it
      // (it rejoins while the old process is still being re-dialled), half the time after.
      await this.restart(victim, this.r() < 0.5);
    }
    if (this.r() < 0.4) {
      const frozen = this.pick(this.running());
      const ms = 200 + Math.floor(this.r() * 600); // below the 2000 ms failure timeout
      this.injected.push(`SIGSTOP ${frozen} ${ms}ms`);
      await new Promise((r) => setTimeout(r, Math.floor(this.r() * 1000)));
      if (pauseNode(this.c, frozen)) {
        await new Promise((r) => setTimeout(r, ms));
        resumeNode(this.c, frozen);
      }
    }
    await this.settle();
  }

  /**
   * Starts a node that is gone, after the coordinator has dropped it when `afterDrop`. A restart
   * that lands while the coordinator's failure detection still re-dials the old process rejoins;
   * that detection used to remove it a moment later, leaving it outside the cluster for good (seed
   * 181359880 of the first runs; fixed in src/cluster/coordinator.ts nodeDown), so both orders are
   * exercised. The launcher reports a process that died before /healthz with the last line of its
   * log, which a fault kill of a node (this one, earlier) may still be: the settle loop restarts
   * whatever is gone again, so such an error is not fatal here.
   */
  private async restart(id: string, afterDrop = true): Promise<void> {
    if (afterDrop) {
      await waitFor(`the coordinator to drop ${id}`, async () => !(await status(nodeOf(this.c, 'node-1').adminAddress)).nodes.some((n: { id: string }) => n.id === id), 30_000, 100);
    }
    try {
      await this.c.start(id, { wait: 'none' });
    } catch (err) {
      if (!/test fault: kill|already running/.test((err as Error).message)) throw err;
      this.injected.push(`restart ${id} failed once: ${(err as Error).message.split(' (log')[0]}`);
    }
  }

  /** Waits until every node of the cluster file runs and the cluster is rebalanced; restarts nodes a fault killed. */
  async settle(): Promise<void> {
    const ids = this.c.nodes().map((n) => n.id);
    await waitFor(
      'the cluster to settle',
      async () => {
        for (const n of this.c.nodes()) {
          if (nodeState(n) !== 'gone') continue;
          // Killed by a fault point (its POSTed rules die with it; its config has none): restart.
          this.injected.push(`restart ${n.id} (killed by a fault)`);
          this.fired++;
          await this.restart(n.id);
        }
        const s = await status(nodeOf(this.c, 'node-1').adminAddress);
        return s.rebalanced && s.nodes.length === ids.length && s.lostPartitions.length === 0 && this.c.nodes().every((n) => nodeState(n) === 'running');
      },
      120_000,
      200,
    );
  }
}

async function runSeed(t: TestContext, seed: number, injected: string[], counts: { fired: number }): Promise<void> {
  // Orphaned supplier snapshots of crashed demanders are released by the idle timeout only (see
  // demander-crash.test.ts, FINDING): short here so the checker's "no temp file" holds.
  // Half the seeds run with the rebalance yielding to the writes, pressed hard (any busy loop
  // counts, 20 ms waits), so its waits meet every fault the schedule injects.
  const yields = rng(seed ^ 0x71e1d)() < 0.5;
  const pacing = yields ? { yieldLagMs: 1, yieldUtilization: 0.05, yieldWaitMaxMs: 20 } : {};
  const c = await faultCluster(t, 3, { rebalance: { snapshotIdleTimeoutMs: 3000, ...pacing } });
  if (yields) injected.push('rebalance yields on (yieldLagMs 1, yieldUtilization 0.05)');
  const sched = new Schedule(seed, c, injected);
  await createCache(c, 8, 2);
  const ackLog = ackLogOf(c.dir);
  const addresses = c.nodes().map((n) => n.address);
  await fill(c.settings(), addresses, ackLog, 1200);
  const load = backgroundLoad({ ...c.settings(), address: nodeOf(c, 'node-1').address }, addresses, ackLog, seed, 300);
  t.after(() => load.stop().catch(() => undefined));
  const steps = STEPS_MIN + Math.floor(rng(seed ^ 0x5eed)() * (STEPS_MAX - STEPS_MIN + 1));
  try {
    for (let i = 0; i < steps; i++) await sched.step();
    await sched.countFired();
  } finally {
    counts.fired = sched.fired;
  }
  await load.stop();
  for (const n of c.nodes()) await setPoints(n, []);
  await checkCluster({ settings: { ...c.settings(), address: nodeOf(c, 'node-1').address }, nodes: c.nodes(), ackLogPath: ackLog });
}

for (const seed of seeds()) {
  test(`a random fault schedule under load leaves the cluster consistent (seed ${seed})`, async (t) => {
    const rerun = `PTN_SEED=${seed} npm run test:fault -- --seeds 1`;
    t.diagnostic(`seed ${seed} (rerun: ${rerun})`);
    const faults: string[] = [];
    const counts = { fired: 0 };
    let outcome = 'pass';
    try {
      await runSeed(t, seed, faults, counts);
    } catch (err) {
      outcome = `FAIL: ${(err as Error).message.split('\n')[0]}`;
      process.stderr.write(`\nrandom fault schedule failed: seed ${seed}\nrerun: ${rerun}\ninjected: ${faults.join('; ')}\n`);
      throw err;
    } finally {
      if (process.env.PTN_FAULT_SUMMARY) fs.appendFileSync(process.env.PTN_FAULT_SUMMARY, `${JSON.stringify({ seed, fired: counts.fired, faults, outcome })}\n`);
    }
    t.diagnostic(`faults (${counts.fired} fired): ${faults.join('; ')}`);
  });
}
