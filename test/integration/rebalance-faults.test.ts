// Faults during a file rebalance, in-process over real sockets: a cut transfer connection resumes
// without re-sending verified bytes; a supplier closed mid-stream leads to failover to another
// owner; a cache dropped mid-rebalance leaves no temporary files anywhere.
import test from 'node:test';
import assert from 'node:assert/strict';
import { testSeed } from '../helpers/tmp.js';
import type { ClusterNode } from '../../src/cluster/node.js';
import type { Connection } from '../../src/net/connection.js';
import { AckedLoad, CACHE, FIELD, checkCopies, checkReadsAndIndex, preload, rebalanceLeftovers, startNodes, tmpFilesSettled, waitRebalanced } from './rebalance-helpers.js';

test('a transfer connection cut after a few chunks resumes from the verified offset without re-sending verified bytes', async (t) => {
  const seed = testSeed();
  t.diagnostic(`seed ${seed}`);
  const c = await startNodes(t, 2);
  await c.call('cacheCreate', { name: CACHE, partitions: 4, backups: 1, indexFields: [FIELD] });
  const base = await preload(c, 3000);
  const load = new AckedLoad(c, seed).start();
  const cuts: Array<{ partition: number; at: number }> = [];
  const fileBytes = new Map<number, number>();
  const n3 = await c.start('n3', {
    hooks: {
      onChunkVerified: async (x, link) => {
        fileBytes.set(x.partition, x.fileBytes);
        // Cut the dedicated connection of every transfer once, after its second chunk.
        if (x.verifiedOffset >= 2 * 65536 && !cuts.some((k) => k.partition === x.partition)) {
          cuts.push({ partition: x.partition, at: x.verifiedOffset });
          await (link as Connection).close();
        }
      },
    },
  });
  await waitRebalanced(c);
  await load.stop();
  await waitRebalanced(c);
  const m = n3.demander.metrics();
  assert.ok(cuts.length > 0, 'some transfer was cut');
  assert.equal(m.resumes, cuts.length, 'each cut transfer resumed once');
  assert.equal(m.restarts, 0, 'no partition started over');
  assert.ok(m.bytesNotResent >= cuts.reduce((n, k) => n + k.at, 0), `verified bytes not sent again: ${m.bytesNotResent}`);
  // Every byte was verified once: the bytes received by the file path are exactly the file sizes.
  assert.equal(m.bytesReceived.file, [...fileBytes.values()].reduce((a, b) => a + b, 0));
  await checkCopies(c);
  await checkReadsAndIndex(c, base, load);
  assert.deepEqual(await rebalanceLeftovers(c), []);
  assert.deepEqual(await tmpFilesSettled(c), []);
});

test('a supplier closed mid-stream: the demander fails over to another owner and every partition still ends OWNING', async (t) => {
  const seed = testSeed();
  t.diagnostic(`seed ${seed}`);
  const c = await startNodes(t, 2, { resumeRetries: 1 });
  await c.call('cacheCreate', { name: CACHE, partitions: 8, backups: 1, indexFields: [FIELD] });
  const base = await preload(c, 2000);
  const load = new AckedLoad(c, seed).start();
  const n2 = c.nodes[1]!;
  let killing: Promise<void> | undefined;
  const n3 = await c.start('n3', {
    hooks: {
      onChunkVerified: async (x, link) => {
        // Close n2 (not the coordinator) while it streams a partition to us.
        if (!killing && (link as Connection).remoteNodeId === 'n2' && x.verifiedOffset >= 65536) killing = n2.close();
        await new Promise((r) => setTimeout(r, 2));
      },
    },
  });
  await waitRebalancedWithout(c, n2);
  await killing;
  await load.stop();
  await waitRebalancedWithout(c, n2);
  assert.ok(killing, 'n2 was closed while it supplied a partition');
  const m = n3.demander.metrics();
  assert.ok(m.restarts >= 1, 'the interrupted partition started over with another supplier');
  for (const pc of n3.topology().partitions[CACHE]!) assert.equal(pc.copies.n2, undefined, 'n2 left the topology');
  await checkCopies(c);
  await checkReadsAndIndex(c, base, load);
  assert.deepEqual(await rebalanceLeftovers(c), []);
  assert.deepEqual(await tmpFilesSettled(c), []);
});

async function waitRebalancedWithout(c: Awaited<ReturnType<typeof startNodes>>, gone: ClusterNode): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (c.live()[0]!.topology().nodes.some((n) => n.id === gone.selfId) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  await waitRebalanced(c);
}

test('a cache dropped mid-rebalance leaves no temporary files, temp WALs or task records on any node', async (t) => {
  const c = await startNodes(t, 2);
  await c.call('cacheCreate', { name: CACHE, partitions: 8, backups: 1, indexFields: [FIELD] });
  await c.call('cacheCreate', { name: 'other', partitions: 2, backups: 1 });
  await preload(c, 2000);
  let dropping: Promise<unknown> | undefined;
  let n3!: ClusterNode;
  n3 = await c.start('n3', {
    hooks: {
      onChunkVerified: async () => {
        dropping ??= c.call('cacheDrop', { name: CACHE });
        await new Promise((r) => setTimeout(r, 5));
      },
    },
  });
  const deadline = Date.now() + 30_000;
  while (!dropping && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.ok(dropping, 'the drop started while a file was streaming');
  await dropping;
  await waitRebalanced(c);
  for (const n of c.live()) assert.equal(n.store.hasCache(CACHE), false, n.selfId);
  assert.deepEqual(await rebalanceLeftovers(c), [], 'the demander removed its files before the drop topology was acknowledged');
  assert.deepEqual(await tmpFilesSettled(c), []);
  assert.ok(n3.demander.list().every((x) => x.cache !== CACHE || x.phase === 'CANCELLED' || x.phase === 'OWNING'));
  assert.deepEqual(await rebalanceLeftovers(c), []);
});
