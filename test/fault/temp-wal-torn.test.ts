/**
 * Fault scenario 7 — a torn write of the demander's temporary WAL at a crash, with real node
 * processes and a load writing throughout.
 *
 * A third node joins a 2-node cluster. The suppliers hold back every file at half
 * (`supplier.sent.50`), so the joining node's tasks sit in STREAMING while the replicated updates
 * of its MOVING partitions are appended to their temporary WALs. A file rule (fault file layer,
 * POST /faults) tears the next write to a temp-WAL segment: its first TORN_BYTES bytes reach the
 * file, the write fails. The test SIGKILLs the node as soon as the node reports the tear, waits
 * until the coordinator dropped it (so the updates of the time it is down are missing there too),
 * and restarts it.
 *
 * Expected outcome: recovery of that temp WAL truncates the torn tail (log "temporary WAL
 * recovered" with truncatedBytes = TORN_BYTES); the task resumes; the counters the node misses
 * (the torn record's and those written while it was down) are fetched by the historical step
 * (log "fetching missing counters from WAL history" for that partition after the restart); the
 * partition becomes OWNING there; the checker passes (acknowledged writes, equal digests, all
 * OWNING, no temp files).
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { getFaults, killNodeNow, nodeState, postFaults, waitNodeState } from '../helpers/node-faults.js';
import { testSeed } from '../helpers/tmp.js';
import { checkCluster } from './checker.js';
import { addNode, loadedPair, logLines, metric, nodeOf, setPoints, status, tasks, waitFor, waitRebalanced } from './scenarios.js';

/** Bytes of the torn frame batch that reach the file: more than a frame header (8), less than a record. */
const TORN_BYTES = 10;
/**
 * The resumed task needs the supplier's snapshot still open after the restart (a fresh snapshot
 * would hold every counter and leave nothing to the historical step), so the idle timeout is
 * longer than a restart; short enough that an orphaned one goes within the checker's grace.
 */
const IDLE_MS = 15_000;

interface LogLine {
  time: number;
  partition: number;
  truncatedBytes?: number;
  counters?: number;
}

test('a torn temp-WAL write at a crash: recovery truncates the tail and the missing counters come from historical rebalance', async (t) => {
  const seed = testSeed();
  t.diagnostic(`seed ${seed} (rerun: PTN_SEED=${seed} node --import tsx --test test/fault/temp-wal-torn.test.ts)`);
  const { c, ackLog, load } = await loadedPair(t, seed, IDLE_MS);
  const suppliers = c.nodes();
  for (const n of suppliers) await setPoints(n, [{ name: 'supplier.sent.50', action: 'delay', delayMs: 2500 }]);

  const joined = await addNode(c, 'healthy');
  const n3 = () => nodeOf(c, joined.id);
  // A task shows STREAMING as soon as it enters the phase, while the record saying so may still be
  // on its way to disk and the temporary file not yet created; a kill in that window restarts it
  // from PENDING (recovery rows 2 and 4). A verified byte means both are done.
  const streaming = await waitFor(
    'a task of the new node STREAMING with a verified byte',
    async () => (await tasks(nodeOf(c, 'node-1').adminAddress)).find((x) => x.node === joined.id && x.phase === 'STREAMING' && x.bytesDone > 0),
    60_000,
    20,
  );
  // The partition torn is one in STREAMING: after the restart it resumes the same snapshot, so
  // the counters written since are missing (a PENDING one would start over with a fresh file).
  // The cache is the cluster's first: id 1 (src/demander/task-store.ts names the dir twal-<cacheId>-<partition>).
  const rule = { op: 'write', pathIncludes: `twal-1-${streaming.partition}${path.sep}`, tear: true, bytesMax: TORN_BYTES, nth: 1 };
  assert.equal((await postFaults(n3().adminAddress, { fileRules: [rule] })).status, 200);
  const torn = await waitFor(
    'a torn temp-WAL write',
    async () => ((await getFaults(n3().adminAddress)).body?.injected as Array<{ path: string; bytesWritten: number }> | undefined)?.find((f) => f.path.includes(rule.pathIncludes)),
    60_000,
    5,
  );
  // The crash follows the tear: nothing may tidy the torn bytes up before the restart.
  assert.ok(killNodeNow(c, joined.id), `${joined.id} was running`);
  const killedAt = Date.now();
  await waitNodeState(n3(), 'gone');
  assert.equal(torn.bytesWritten, TORN_BYTES);
  const partition = streaming.partition;
  t.diagnostic(`tore ${torn.path}; killed ${joined.id}`);

  await waitFor('the coordinator to drop the killed node', async () => !(await status(nodeOf(c, 'node-1').adminAddress)).nodes.some((n: { id: string }) => n.id === joined.id), 30_000, 100);
  for (const n of suppliers) await setPoints(n, []);
  await c.start(joined.id, { wait: 'healthy' });
  await waitRebalanced(nodeOf(c, 'node-1').adminAddress, 3);
  const result = await load.stop();
  assert.ok(result.acked > 0, 'the load was acknowledged during the scenario');

  const after = (needle: string) => logLines(n3(), needle).map((l) => JSON.parse(l) as LogLine).filter((x) => x.partition === partition && x.time > killedAt);
  const resumed = await waitFor('the resume log line', () => after('resuming a rebalance task after a restart')[0] as (LogLine & { action?: string }) | undefined, 10_000);
  if (resumed.action !== 'resumeStream') {
    // What the node logged about the partition before the kill says why (a start over, a failed attempt).
    const before = logLines(n3(), `"partition":${partition},`).filter((l) => (JSON.parse(l) as LogLine).time <= killedAt).slice(-12);
    assert.fail(`partition ${partition} did not resume its stream from the same snapshot: ${JSON.stringify(resumed)}\n${before.join('\n')}`);
  }
  const recovered = await waitFor('the recovery log line', () => after('temporary WAL recovered')[0], 10_000);
  assert.equal(recovered.truncatedBytes, TORN_BYTES, 'the torn tail was truncated on recovery');
  // The metric counts every tail cut since the start (a kill mid-append may tear other logs too).
  const truncatedMetric = await metric(n3().adminAddress, 'ptn_rebalance_temp_wal_truncated_bytes');
  assert.ok((truncatedMetric ?? 0) >= TORN_BYTES, `ptn_rebalance_temp_wal_truncated_bytes = ${truncatedMetric}`);
  const historical = await waitFor('the historical step log line', () => after('fetching missing counters from WAL history')[0], 10_000);
  assert.ok((historical.counters ?? 0) > 0, `counters fetched from history: ${JSON.stringify(historical)}`);
  await waitFor(`partition ${partition} OWNING on ${joined.id}`, () => after('partition rebalanced: OWNING').length > 0, 10_000);
  t.diagnostic(`partition ${partition}: ${recovered.truncatedBytes} torn bytes cut; ${historical.counters} counters from history`);
  assert.equal(nodeState(n3()), 'running');
  await checkCluster({ settings: c.settings(), nodes: c.nodes(), ackLogPath: ackLog });
});
