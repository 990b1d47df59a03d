/**
 * Fault scenario 2 — the demander SIGKILLed in each phase of a file rebalance, then restarted,
 * with real node processes and a load writing throughout.
 *
 * A third node joins a 2-node cluster; its config holds a fault point that kills it the first time
 * one of its tasks enters PHASE (the hit comes right after the phase is persisted). It is restarted
 * without the point.
 *
 * Expected outcome, every phase: the restarted node finds its persisted tasks and resumes them or
 * starts those partitions over (its log says which, per partition); the rebalance completes with
 * three nodes; nothing acknowledged is lost, all copies' digests are equal, no temporary file is
 * left (checker.ts).
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { nodeState, waitNodeState } from '../helpers/node-faults.js';
import { testSeed } from '../helpers/tmp.js';
import { checkCluster } from './checker.js';
import { addNode, faultCluster, loadedPair, logLines, nodeOf, setStartupPoints, status, waitFor, waitRebalanced } from './scenarios.js';

/**
 * Where the demander is killed. `demander.phase.X` fires right after X is persisted (entering
 * STREAMING: no byte received yet → the partition starts over); `demander.received.50` fires with
 * half a file verified and persisted (→ the stream resumes from the verified offset).
 *
 * Supplier snapshots orphaned by the crash: a partition that starts over after a crash (or whose
 * task is superseded when the coordinator dropped the dead node meanwhile) gets a new transfer; the
 * demander does not release the old one (FINDING, reported: src/demander/manager.ts recovery,
 * startOver branch), so the supplier keeps its delta file in tmp/supplier until
 * `snapshotIdleTimeoutMs` (default 120 s). The scenario sets that timeout to IDLE_MS so the
 * checker's "no temporary file left" holds within the test.
 */
const IDLE_MS = 3000;
const CASES: Array<{ phase: string; point: string }> = [
  { phase: 'STREAMING', point: 'demander.phase.STREAMING' },
  { phase: 'STREAMING (half the file verified)', point: 'demander.received.50' },
  { phase: 'SWAPPING', point: 'demander.phase.SWAPPING' },
  { phase: 'INDEXING', point: 'demander.phase.INDEXING' },
  { phase: 'REPLAYING', point: 'demander.phase.REPLAYING' },
  { phase: 'HISTORICAL', point: 'demander.phase.HISTORICAL' },
];

for (const { phase, point } of CASES) {
  test(`a demander SIGKILLed in ${phase} and restarted resumes or restarts the partition and loses nothing`, async (t) => {
    const seed = testSeed();
    t.diagnostic(`seed ${seed} (rerun: PTN_SEED=${seed} node --import tsx --test test/fault/demander-crash.test.ts)`);
    const { c, ackLog, load } = await loadedPair(t, seed, IDLE_MS);
    setStartupPoints(c, [{ name: point, action: 'kill', once: true }]);
    const joined = await addNode(c);
    await waitNodeState(nodeOf(c, joined.id), 'gone', 60_000);
    const killedAt = logLines(joined, `test fault: kill at ${point}`);
    assert.equal(killedAt.length, 1, `${joined.id} was killed entering ${phase}`);
    const partition = (JSON.parse(killedAt[0]!) as { detail: { partition: number } }).detail.partition;

    setStartupPoints(c, []);
    await c.start(joined.id, { wait: 'healthy' });
    await waitRebalanced(nodeOf(c, 'node-1').adminAddress, 3);
    const result = await load.stop();
    assert.ok(result.acked > 0, 'the load was acknowledged during the scenario');

    // The restarted node either resumed the task of the killed partition or started it over; the
    // coordinator may also have dropped the dead node and given it the partition afresh.
    const resumed = logLines(joined, 'resuming a rebalance task after a restart').map((l) => JSON.parse(l) as { partition: number; phase: string; action: string });
    const owning = logLines(joined, 'partition rebalanced: OWNING').map((l) => JSON.parse(l) as { partition: number; time: number });
    const killTime = (JSON.parse(killedAt[0]!) as { time: number }).time;
    t.diagnostic(`after the crash: ${JSON.stringify(resumed.filter((r) => r.partition === partition))}`);
    assert.ok(
      owning.some((o) => o.partition === partition && o.time > killTime) || !(await ownsCopy(c, joined.id, partition)),
      `partition ${partition} became OWNING on ${joined.id} after the restart (or is no longer assigned to it)`,
    );
    assert.equal(nodeState(nodeOf(c, joined.id)), 'running');
    await checkCluster({ settings: c.settings(), nodes: c.nodes(), ackLogPath: ackLog });
  });
}

async function ownsCopy(c: Awaited<ReturnType<typeof faultCluster>>, id: string, partition: number): Promise<boolean> {
  const s = await waitFor('status', () => status(nodeOf(c, 'node-1').adminAddress));
  return s.partitions.default[partition].copies[id] !== undefined;
}
