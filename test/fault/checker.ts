/**
 * The check every fault scenario ends with:
 *
 * | what                      | how                                                                         |
 * |---------------------------|-----------------------------------------------------------------------------|
 * | nodes alive               | every node not killed for good by the scenario is a running process          |
 * | all partitions OWNING     | `/status`: rebalanced, the expected node count, no lostPartitions, every copy OWNING |
 * | acknowledged writes, copies | `runVerify` with the ack log: every acked key reads its latest value, all copies' digests equal |
 * | no temporary file left    | `<dataDir>/tmp/rebalance` and `<dataDir>/tmp/supplier` empty on every running node (after a grace period for asynchronous releases) |
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { ClientSettings } from '../../src/cli/client.js';
import { runVerify } from '../../src/cli/verify.js';
import { nodeState } from '../helpers/node-faults.js';
import { type FaultNode, status, waitFor, waitRebalanced } from './scenarios.js';

export interface CheckOptions {
  /** A client's view of the cluster (its address must be a running node). */
  settings: ClientSettings;
  /** Every node the scenario started. */
  nodes: FaultNode[];
  /** Nodes the scenario killed for good (not expected to run, not checked for files). */
  goneForGood?: string[];
  ackLogPath: string;
  /** How long to wait for the cluster to settle. */
  settleMs?: number;
}

/** Temp files left under a node's rebalance and supplier temp dirs. */
export function tempLeftovers(node: Pick<FaultNode, 'id' | 'dataDir'>): string[] {
  const out: string[] = [];
  for (const sub of ['rebalance', 'supplier']) {
    const dir = path.join(node.dataDir, 'tmp', sub);
    if (!fs.existsSync(dir)) continue;
    for (const name of fs.readdirSync(dir)) out.push(`${node.id}/tmp/${sub}/${name}`);
  }
  return out;
}

/** Runs the whole check (see the table above); throws an AssertionError on the first violation. */
export async function checkCluster(o: CheckOptions): Promise<void> {
  const gone = new Set(o.goneForGood ?? []);
  const live = o.nodes.filter((n) => !gone.has(n.id));
  for (const n of live) assert.equal(nodeState(n), 'running', `${n.id} is not running`);
  await waitRebalanced(live[0]!.adminAddress, live.length, o.settleMs ?? 90_000);
  // rebalanced says nothing is MOVING; copies being given up (RENTING) go away shortly after.
  const allOwning = (st: Record<string, any>) => Object.values(st.partitions as Record<string, Array<{ copies: Record<string, string> }>>).every((ps) => ps.every((p) => Object.values(p.copies).every((x) => x === 'OWNING'))); // eslint-disable-line @typescript-eslint/no-explicit-any -- status JSON
  const s = await waitFor('every copy OWNING', async () => {
    const st = await status(live[0]!.adminAddress);
    return allOwning(st) ? st : undefined;
  }, 30_000, 100).catch(() => status(live[0]!.adminAddress));
  assert.equal(s.rebalanced, true, 'rebalanced');
  assert.deepEqual(s.lostPartitions, [], 'no partition lost');
  for (const [cache, parts] of Object.entries(s.partitions as Record<string, Array<{ copies: Record<string, string> }>>)) {
    parts.forEach((p, i) => {
      for (const [node, state] of Object.entries(p.copies)) {
        assert.equal(state, 'OWNING', `${cache}/${i} on ${node}`);
        assert.ok(!gone.has(node), `${cache}/${i} still has a copy on ${node}, killed for good`);
      }
    });
  }
  const v = await runVerify({ settings: o.settings, ackLogPath: o.ackLogPath, waitRebalancedMs: o.settleMs ?? 90_000 });
  assert.equal(v.ok, true, `verify: ${v.mismatches.join('\n')}`);
  assert.ok((v.ackLog?.keys ?? 0) > 0, 'the ack log holds acknowledged writes');
  // Snapshot releases and task cleanup are asynchronous: give them a grace period.
  await waitFor('temp files removed', () => live.every((n) => tempLeftovers(n).length === 0), 20_000, 100).catch(() => undefined);
  assert.deepEqual(live.flatMap(tempLeftovers), [], 'no temporary file left');
  // Every node agrees it is rebalanced (not only the one asked above).
  for (const n of live) assert.equal((await status(n.adminAddress)).rebalanced, true, `${n.id} rebalanced`);
  for (const n of live) assert.equal(nodeState(n), 'running', `${n.id} is still running after the checks`);
}
