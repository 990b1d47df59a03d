/**
 * Fault scenarios 10 and 9 — the cluster changes under a running file rebalance, with real node
 * processes. The suppliers hold back the chunk crossing 50 % of every file (a `delay` fault point)
 * so transfers are surely in flight when the change lands.
 *
 * 10. A cache dropped mid-rebalance. Expected: its transfers stop ("rebalance cancelled" on the
 *     demander), its temp files and records are removed, the other cache's partitions finish
 *     without starting over; the checker passes.
 * 9.  Another node joins mid-rebalance. Expected: a partition whose assignment to the first joiner
 *     is kept is not restarted (one path choice, OWNING with 0 restarts); one that moves away is
 *     cancelled and its files removed; the checker passes.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { checkCluster } from './checker.js';
import { CACHE, ackLogOf, clearFaults, createCache, faultCluster, fill, logLines, nodeOf, setPoints, status, tasks, waitFor, waitRebalanced } from './scenarios.js';

const SLOW_SUPPLIER = [{ name: 'supplier.sent.50', action: 'delay' as const, delayMs: 1500 }];

type Line = { time: number; cache: string; partition: number; restarts?: number; why?: string };
const parse = (lines: string[]) => lines.map((l) => JSON.parse(l) as Line);

test('a cache dropped mid-rebalance: its transfers stop and its files are removed; the other cache is unaffected', async (t) => {
  const c = await faultCluster(t, 2);
  await createCache(c, 4, 1);
  const conn = await c.client();
  await conn.request('cacheCreate', { name: 'doomed', partitions: 6, backups: 1 });
  const ackLog = ackLogOf(c.dir);
  const addresses = c.nodes().map((n) => n.address);
  await fill(c.settings(), addresses, ackLog, 1200);
  const { runLoad } = await import('../../src/cli/load.js');
  await runLoad({ settings: c.settings(), extraAddresses: addresses, entries: 1800, valueBytes: 400, concurrency: 8, cache: 'doomed', attemptsMax: 50 });
  for (const id of ['node-1', 'node-2']) await setPoints(nodeOf(c, id), SLOW_SUPPLIER);
  const joined = await c.add({ wait: 'healthy' });
  await waitFor('a transfer of the doomed cache in flight', async () => (await tasks(nodeOf(c, 'node-1').adminAddress)).find((x) => x.node === joined.id && x.cache === 'doomed' && x.phase === 'STREAMING' && x.bytesDone > 0), 60_000, 20);
  await conn.request('cacheDrop', { name: 'doomed' });
  await waitRebalanced(nodeOf(c, 'node-1').adminAddress, 3);
  for (const id of ['node-1', 'node-2']) await clearFaults(nodeOf(c, id));

  const s = await status(nodeOf(c, 'node-1').adminAddress);
  assert.deepEqual(
    s.caches.map((x: { name: string }) => x.name),
    [CACHE],
    'only the kept cache is left',
  );
  const cancelled = parse(logLines(joined, '"msg":"rebalance cancelled"')).filter((l) => l.cache === 'doomed');
  const removed = parse(logLines(joined, 'removing a rebalance task whose copy is no longer MOVING here')).filter((l) => l.cache === 'doomed');
  assert.ok(cancelled.length + removed.length >= 1, 'the doomed cache\'s transfers were stopped');
  assert.equal(parse(logLines(joined, 'partition rebalanced: OWNING')).filter((l) => l.cache === 'doomed').length < 6, true, 'not every doomed partition was finished');
  const kept = parse(logLines(joined, 'partition rebalanced: OWNING')).filter((l) => l.cache === CACHE);
  assert.ok(kept.length >= 1, 'the kept cache rebalanced onto the joiner');
  assert.ok(kept.every((l) => l.restarts === 0), `the kept cache's partitions did not start over: ${JSON.stringify(kept)}`);
  await checkCluster({ settings: c.settings(), nodes: c.nodes(), ackLogPath: ackLog });
});

test('a node joining mid-rebalance: kept assignments are not restarted, moved ones are cancelled and their files removed', async (t) => {
  const c = await faultCluster(t, 2);
  await createCache(c, 12, 1);
  const ackLog = ackLogOf(c.dir);
  // 1000-byte values: each of the 12 files spans several 64 KiB chunks, so a transfer held at half
  // its file has verified bytes (with 400-byte values full leaves made files of about two chunks).
  await fill(c.settings(), c.nodes().map((n) => n.address), ackLog, 2400, 1000);
  for (const id of ['node-1', 'node-2']) await setPoints(nodeOf(c, id), SLOW_SUPPLIER);
  const first = await c.add({ wait: 'healthy' });
  await waitFor('a transfer to the first joiner in flight', async () => (await tasks(nodeOf(c, 'node-1').adminAddress)).find((x) => x.node === first.id && x.phase === 'STREAMING' && x.bytesDone > 0), 60_000, 20);
  const movingBefore = new Set<number>();
  const sBefore = await status(nodeOf(c, 'node-1').adminAddress);
  (sBefore.partitions[CACHE] as Array<{ copies: Record<string, string> }>).forEach((p, i) => p.copies[first.id] === 'MOVING' && movingBefore.add(i));
  await c.add({ wait: 'healthy' });
  await waitRebalanced(nodeOf(c, 'node-1').adminAddress, 4);
  for (const id of ['node-1', 'node-2']) await clearFaults(nodeOf(c, id));

  const sAfter = await status(nodeOf(c, 'node-1').adminAddress);
  const copiesAfter = sAfter.partitions[CACHE] as Array<{ copies: Record<string, string> }>;
  const kept = [...movingBefore].filter((p) => copiesAfter[p]!.copies[first.id] !== undefined);
  const moved = [...movingBefore].filter((p) => copiesAfter[p]!.copies[first.id] === undefined);
  t.diagnostic(`moving to ${first.id} before the second join: ${[...movingBefore].join(',')}; kept ${kept.join(',')}; moved ${moved.join(',')}`);
  assert.ok(kept.length >= 1 && moved.length >= 1, 'the second join kept some assignments and moved others');

  const chosen = parse(logLines(first, 'rebalance path chosen'));
  const owning = parse(logLines(first, 'partition rebalanced: OWNING'));
  for (const p of kept) {
    assert.equal(chosen.filter((l) => l.partition === p).length, 1, `partition ${p} (kept) had one transfer`);
    assert.equal(owning.find((l) => l.partition === p)?.restarts, 0, `partition ${p} (kept) did not start over`);
  }
  const removed = parse([...logLines(first, 'removing a rebalance task whose copy is no longer MOVING here'), ...logLines(first, '"msg":"rebalance cancelled"')]);
  // A moved partition was either cancelled here, or its transfer finished before the new
  // topology landed (then the copy was given up as RENTING); never both finished and cancelled.
  for (const p of moved) {
    const cancelled = removed.some((l) => l.partition === p);
    const done = owning.some((l) => l.partition === p);
    assert.ok(cancelled !== done, `partition ${p} (moved) was cancelled (${cancelled}) or had finished (${done}) on ${first.id}`);
  }
  assert.ok(removed.length >= 1, 'some transfer was cancelled by the second join');
  await checkCluster({ settings: c.settings(), nodes: c.nodes(), ackLogPath: ackLog });
});
