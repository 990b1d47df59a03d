/**
 * Fault scenarios 3 and 5 — a bad link between demander and supplier, with real node processes:
 * node-1 holds the data and advertises a TcpProxy as its address, so node-2, joining, dials it
 * (peer and transfer connections) through the proxy.
 *
 * 3. Link cut mid-file. Expected: the demander resumes every cut transfer from its last verified
 *    offset; the verified bytes are not sent again (`ptn_rebalance_bytes_not_resent` > 0, a task's
 *    `bytesNotResent` > 0); the rebalance completes and the checker passes.
 * 5. Flipped bytes on the supplier → demander direction. Expected: the chunk CRC catches each
 *    corrupt chunk, the chunk is fetched again, no corrupt page lands: digests of both copies are
 *    equal and the checker passes.
 */
import test, { type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connectClient, type ClientSettings } from '../../src/cli/client.js';
import { findFreeBasePort } from '../../src/cli/processes.js';
import { type LoneNode, startLoneNode } from '../helpers/node-faults.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { checkCluster } from './checker.js';
import { CACHE, type PointRule, ackLogOf, faultNodeConfig, fill, logLines, metric, tasks, waitFor, waitRebalanced } from './scenarios.js';

const SECRET = 'fault-suite-secret';
const CLUSTER_ID = 'ptn-faults';

interface ProxiedPair {
  dir: string;
  proxy: TcpProxy;
  n1: LoneNode;
  settings: ClientSettings;
  ackLog: string;
  /** Starts node-2 (the demander), which reaches node-1 only through the proxy. */
  join(): Promise<LoneNode>;
}

/** node-1 behind a proxy, holding a cache of 4 partitions (~250 KiB files, 4 chunks each). */
async function proxiedPair(t: TestContext, supplierPoints: PointRule[] = []): Promise<ProxiedPair> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptn-'));
  const nodes: LoneNode[] = [];
  let proxy: TcpProxy | undefined;
  t.after(async () => {
    await Promise.all(nodes.map((n) => n.stop({ kill: true })));
    await proxy?.close();
    if (process.env.PTN_KEEP_DIR !== '1') fs.rmSync(dir, { recursive: true, force: true });
  });
  const basePort = await findFreeBasePort(2);
  proxy = await TcpProxy.start({ target: `127.0.0.1:${basePort + 1}` });
  const common = { dir, basePort, secret: SECRET, clusterId: CLUSTER_ID, testFaultsEnv: true, register: (n: LoneNode) => nodes.push(n) };
  const n1 = await startLoneNode({ ...common, index: 1, config: { ...faultNodeConfig({ points: supplierPoints }), advertiseAddress: proxy.address } });
  const settings: ClientSettings = { address: n1.address, secret: SECRET, clusterId: CLUSTER_ID, requestTimeoutMs: 15_000 };
  const conn = await connectClient(settings, { retries: 3 });
  t.after(() => conn.close().catch(() => undefined));
  await conn.request('cacheCreate', { name: CACHE, partitions: 4, backups: 1, indexFields: ['city'] });
  const ackLog = ackLogOf(dir);
  await fill(settings, [n1.address], ackLog, 2000);
  const p = proxy;
  return { dir, proxy: p, n1, settings, ackLog, join: () => startLoneNode({ ...common, index: 2, seeds: [p.address], config: faultNodeConfig() }) };
}

test('a link cut mid-file: the transfer resumes from the last verified offset and the verified bytes are not sent again', async (t) => {
  // The supplier holds back the chunk that crosses 50 % of the first file it serves, so a
  // transfer is surely mid-file, with verified bytes, when the link is cut.
  const h = await proxiedPair(t, [{ name: 'supplier.sent.50', action: 'delay', delayMs: 3000, once: true }]);
  const n2 = await h.join();
  const streaming = await waitFor('a transfer streaming with verified bytes', async () => (await tasks(h.n1.adminAddress)).find((x) => x.node === n2.id && x.phase === 'STREAMING' && x.bytesDone > 0), 60_000, 20);
  const cut = h.proxy.cut();
  assert.ok(cut >= 1, 'connections were cut');
  await waitRebalanced(h.n1.adminAddress, 2);
  // Which transfers the cut caught is a race (status lags); every one it caught must resume from
  // its verified offset without starting over, and those bytes are counted as not re-sent.
  const resumed = logLines(n2.entry, 'transfer resumed').map((l) => JSON.parse(l) as { partition: number; fromOffset: number });
  assert.ok(resumed.length >= 1, 'a cut transfer resumed');
  assert.ok(resumed.every((r) => r.fromOffset > 0), `resumed from verified offsets: ${JSON.stringify(resumed)}`);
  const notResent = await metric(n2.adminAddress, 'ptn_rebalance_bytes_not_resent');
  const fromTotal = resumed.reduce((a, r) => a + r.fromOffset, 0);
  assert.equal(notResent, fromTotal, `bytes not re-sent (${notResent}) = the verified offsets resumed from`);
  const owning = logLines(n2.entry, 'partition rebalanced: OWNING').map((l) => JSON.parse(l) as { partition: number; restarts: number });
  for (const r of resumed) assert.equal(owning.find((o) => o.partition === r.partition)?.restarts, 0, `partition ${r.partition} did not start over`);
  t.diagnostic(`cut while partition ${streaming.partition} streamed; resumed ${JSON.stringify(resumed.map((r) => [r.partition, r.fromOffset]))}`);
  await checkCluster({ settings: h.settings, nodes: [h.n1.entry, n2.entry], ackLogPath: h.ackLog });
});

test('flipped bytes in chunks: the chunk CRC catches them, the chunks are fetched again and both copies hold the same data', async (t) => {
  const seed = Number(process.env.PTN_SEED ?? 7);
  t.diagnostic(`seed ${seed} (rerun: PTN_SEED=${seed} node --import tsx --test test/fault/link-faults.test.ts)`);
  const h = await proxiedPair(t);
  // One byte flipped per 64 KiB window of the supplier → demander stream, at most 6 in all.
  h.proxy.flipBytes({ seed, direction: 'down', everyNBytes: 65536, limit: 6 });
  const n2 = await h.join();
  await waitRebalanced(h.n1.adminAddress, 2);
  h.proxy.flipBytes(null);
  assert.ok(h.proxy.stats.flips >= 1, 'bytes were flipped');
  const corrupt = logLines(n2.entry, 'corrupt chunk; asked for again');
  assert.ok(corrupt.length >= 1, `the CRC caught a corrupt chunk (flips: ${JSON.stringify(h.proxy.flipped)})`);
  await checkCluster({ settings: h.settings, nodes: [h.n1.entry, n2.entry], ackLogPath: h.ackLog });
});
