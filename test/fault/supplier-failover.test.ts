/**
 * Fault scenario 1 — a supplier SIGKILLed mid-stream, with real node processes.
 *
 * Expected outcome: the demander's transfer from the dead supplier fails, the partition starts over
 * from the other OWNING copy (failover), the rebalance completes with every partition OWNING on the
 * three live nodes, every acknowledged write reads back, all copies' digests are equal and no
 * temporary file is left (checker.ts).
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { killNodeNow, nodeState, resumeNode, waitNodeState } from '../helpers/node-faults.js';
import { checkCluster } from './checker.js';
import { ackLogOf, createCache, faultCluster, fill, logLines, nodeOf, setPoints, tasks, waitFor, waitRebalanced } from './scenarios.js';

test('a supplier SIGKILLed mid-stream: the joining node fails over to the other owner and the rebalance completes', async (t) => {
  const c = await faultCluster(t, 3);
  await createCache(c, 8, 1);
  const ackLog = ackLogOf(c.dir);
  await fill(c.settings(), c.nodes().map((n) => n.address), ackLog, 2500);
  // Nodes 2 and 3 freeze the first time they have sent 30 % of a file; the first to freeze is
  // killed, the other (if it freezes too) is let go. Node 1 coordinates and is never a victim.
  for (const id of ['node-2', 'node-3']) await setPoints(nodeOf(c, id), [{ name: 'supplier.sent.30', action: 'stop', once: true }]);
  const joined = await c.add({ wait: 'healthy' });
  const victim = await waitFor('a supplier frozen mid-stream', () => ['node-2', 'node-3'].find((id) => nodeState(nodeOf(c, id)) === 'stopped'), 60_000, 10);
  const survivor = victim === 'node-2' ? 'node-3' : 'node-2';
  // What node-4 was doing when its supplier froze.
  const before = (await tasks(nodeOf(c, 'node-1').adminAddress)).filter((x) => x.node === joined.id && x.supplier === victim && x.phase === 'STREAMING');
  assert.ok(before.length > 0, `node-4 was streaming from ${victim}`);
  assert.equal(killNodeNow(c, victim), true);
  await waitNodeState(nodeOf(c, victim), 'gone');

  // Let the other supplier go on if it froze too (its rule fired once, it will not freeze again).
  let done = false;
  const watcher = (async () => {
    while (!done) {
      if (nodeState(nodeOf(c, survivor)) === 'stopped') resumeNode(c, survivor);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  try {
    await waitRebalanced(nodeOf(c, 'node-1').adminAddress, 3);
  } finally {
    done = true;
    await watcher;
  }
  // The joining node's log is the record of each partition's outcome (status drops finished tasks).
  const owning = logLines(joined, 'partition rebalanced: OWNING').map((l) => JSON.parse(l) as { partition: number; supplier: string; restarts: number });
  for (const b of before) {
    const done = owning.filter((o) => o.partition === b.partition);
    assert.equal(done.length, 1, `partition ${b.partition} became OWNING once on ${joined.id}`);
    assert.notEqual(done[0]!.supplier, victim, `partition ${b.partition} failed over away from ${victim}`);
    assert.ok(done[0]!.restarts >= 1, `partition ${b.partition} started over (restarts ${done[0]!.restarts})`);
  }
  const live = c.nodes().find((n) => n.id === 'node-1')!;
  await checkCluster({ settings: { ...c.settings(), address: live.address }, nodes: c.nodes(), goneForGood: [victim], ackLogPath: ackLog });
});
