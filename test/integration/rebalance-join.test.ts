// A node joins a loaded cluster while a load writes: every partition moves by file, ends OWNING,
// copies agree, acknowledged writes read back, index queries are exact, nothing is left over.
// In-process nodes (startNode, port 0); the process-based CLI tests live in cli-cluster.test.ts.
import test from 'node:test';
import assert from 'node:assert/strict';
import { testSeed } from '../helpers/tmp.js';
import { AckedLoad, CACHE, FIELD, checkCopies, checkReadsAndIndex, preload, rebalanceLeftovers, startNodes, tmpFilesSettled, waitRebalanced } from './rebalance-helpers.js';

test('a node that joins under load receives its partitions by file; all copies agree and every acknowledged write reads back', async (t) => {
  const seed = testSeed();
  t.diagnostic(`seed ${seed}`);
  const c = await startNodes(t, 2);
  await c.call('cacheCreate', { name: CACHE, partitions: 8, backups: 1, indexFields: [FIELD] });
  const base = await preload(c, 1500);
  const load = new AckedLoad(c, seed).start();
  const n3 = await c.start('n3', {
    hooks: { onChunkVerified: () => new Promise((r) => setTimeout(r, 5)) }, // slow enough for writes to overlap the transfers
  });
  await waitRebalanced(c);
  await new Promise((r) => setTimeout(r, 100));
  await load.stop();
  assert.ok(load.writes > 0, 'the load wrote during the rebalance');
  await waitRebalanced(c);
  const m = n3.demander.metrics();
  assert.ok(m.partitionsDone > 0, 'n3 received partitions');
  assert.ok(m.bytesReceived.file > 0);
  assert.equal(m.bytesReceived.full, 0);
  assert.ok(m.updatesLogged > 0, `updates went through temp WALs (seed ${seed})`);
  assert.equal(m.fences, m.partitionsDone);
  const owned = n3.topology().partitions[CACHE]!.filter((pc) => pc.copies.n3 === 'OWNING').length;
  assert.equal(owned, m.partitionsDone);
  await checkCopies(c);
  await checkReadsAndIndex(c, base, load);
  assert.deepEqual(await rebalanceLeftovers(c), []);
  assert.deepEqual(await tmpFilesSettled(c), [], 'every supplier snapshot was released');
});

test('a node that restarts with its own data catches up from WAL history, without a file', async (t) => {
  const seed = testSeed();
  t.diagnostic(`seed ${seed}`);
  const c = await startNodes(t, 2);
  await c.call('cacheCreate', { name: CACHE, partitions: 8, backups: 1, indexFields: [FIELD] });
  const base = await preload(c, 800);
  await waitRebalanced(c);
  const n2 = c.nodes[1]!;
  await n2.close();
  // While n2 is away (and after the coordinator removed it) the others keep writing.
  const deadline = Date.now() + 20_000;
  while (c.live()[0]!.topology().nodes.length > 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const away = new AckedLoad(c, seed, { maxWrites: 300, pauseMs: 0, prefix: 'away' }).start();
  await away.until(300);
  await away.stop();
  const load = new AckedLoad(c, seed + 1, { keys: 50 }).start();
  const back = await c.start('n2');
  await waitRebalanced(c);
  await load.stop();
  await waitRebalanced(c);
  const m = back.demander.metrics();
  assert.ok(m.partitionsDone > 0, 'n2 caught its partitions up');
  assert.equal(m.bytesReceived.file, 0, 'no file was needed');
  assert.ok(m.bytesReceived.historical > 0, 'the missed updates came from WAL history');
  await checkCopies(c);
  await checkReadsAndIndex(c, base, away, load);
  assert.deepEqual(await rebalanceLeftovers(c), []);
});

test('with the event loop pressed, rebalance steps yield to the writes, one at a time, and the join still completes with every acknowledged write readable', async (t) => {
  const seed = testSeed();
  t.diagnostic(`seed ${seed}`);
  // A utilization limit of 1% presses the loop whenever anything runs: every step that finds writes
  // going on waits its turn (at most 20 ms each here), so the join must still move at that pace.
  const c = await startNodes(t, 2, { yieldLagMs: 1, yieldUtilization: 0.01, yieldWaitMaxMs: 20 });
  await c.call('cacheCreate', { name: CACHE, partitions: 8, backups: 1, indexFields: [FIELD] });
  const base = await preload(c, 1000);
  const load = new AckedLoad(c, seed).start();
  const n3 = await c.start('n3');
  await waitRebalanced(c);
  await load.stop();
  await waitRebalanced(c);
  assert.ok(load.writes > 0, 'the load wrote during the rebalance');
  assert.ok(n3.demander.metrics().partitionsDone > 0, 'n3 received partitions');
  const waits = c.live().reduce((a, n) => a + n.pacer.counts.waits, 0);
  assert.ok(waits > 0, `rebalance steps waited for the writes (turns ${c.live().map((n) => n.pacer.counts.turns).join('/')})`);
  const status = (await c.call('status', {})) as { rebalance: { yield: Record<string, { waits: number }> } };
  assert.equal(status.rebalance.yield.n3?.waits, n3.pacer.counts.waits, 'the status reports each node yields');
  await checkCopies(c);
  await checkReadsAndIndex(c, base, load);
  assert.deepEqual(await rebalanceLeftovers(c), []);
});
