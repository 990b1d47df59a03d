import test from 'node:test';
import assert from 'node:assert/strict';
import { asClusterStatus, copyCounts, formatStatus, rebalanceLine, type ClusterStatus } from '../../../src/cli/status-format.js';
import { notReadyReason } from '../../../src/cli/health.js';
import { formatTable } from '../../../src/cli/table.js';
import { isPtnError } from '../../../src/errors.js';

function status(over: Partial<ClusterStatus> = {}): ClusterStatus {
  return {
    nodeId: 'node-1',
    clusterId: 'ptn-local',
    topologyVersion: 7,
    coordinator: 'node-1',
    rebalanced: false,
    nodes: [
      { id: 'node-2', address: '127.0.0.1:7402', adminAddress: '127.0.0.1:7502', order: 2 },
      { id: 'node-1', address: '127.0.0.1:7401', adminAddress: '127.0.0.1:7501', order: 1 },
    ],
    caches: [{ name: 'default', cacheId: 1, partitions: 2, backups: 1, indexFields: ['i'] }],
    partitions: {
      default: [
        { partition: 0, primary: 'node-2', copies: { 'node-2': 'OWNING', 'node-1': 'MOVING' } },
        { partition: 1, primary: 'node-1', copies: { 'node-1': 'OWNING', 'node-2': 'OWNING' } },
      ],
    },
    rebalance: { partitionsLeft: 1, partitionsTotal: 2, tasks: [{ cache: 'default', partition: 0, phase: 'STREAMING', bytes: 4096 }] },
    ...over,
  };
}

test('the text status shows topology, nodes in join order with copy counts, caches, the map and rebalance tasks', () => {
  const text = formatStatus(status());
  const lines = text.split('\n');
  assert.match(lines[0]!, /cluster ptn-local\s+topology v7\s+coordinator node-1\s+answered by node-1\s+REBALANCING/);
  const n1 = lines.findIndex((l) => l.startsWith('node-1'));
  const n2 = lines.findIndex((l) => l.startsWith('node-2'));
  assert.ok(n1 > 0 && n1 < n2, 'node-1 (order 1) listed before node-2');
  assert.match(lines[n1]!, /^node-1\s+1\s+127\.0\.0\.1:7401\s+127\.0\.0\.1:7501\s+1\s+1\s+0$/);
  assert.ok(lines.some((l) => /^default\s+1\s+2\s+1\s+i$/.test(l)));
  assert.ok(lines.some((l) => /^0\s+node-2\s+node-1:MOVING node-2:OWNING$/.test(l)));
  assert.ok(text.includes('rebalance: 1 of 2 partitions left, 1 task running, 0 waiting'));
  const head = lines.findIndex((l) => l.startsWith('NODE  '));
  assert.ok(head > 0, 'a task table follows the rebalance line');
  assert.match(lines[head + 1]!, /^-\s+default\s+0\s+-\s+-\s+STREAMING\s+4\.1 kB\s/);
});

test('--no-partitions leaves the partition map out', () => {
  assert.ok(!formatStatus(status(), { partitionRows: false }).includes('partitions of default'));
});

test('a rebalanced cluster says so', () => {
  const s = status({ rebalanced: true, rebalance: { partitionsLeft: 0, partitionsTotal: 0, tasks: [] } });
  assert.equal(rebalanceLine(s), 'rebalance: none in progress (rebalanced)');
  assert.match(formatStatus(s).split('\n')[0]!, / rebalanced$/);
});

test('copies are counted per node and state', () => {
  const c = copyCounts(status());
  assert.deepEqual(c.get('node-1'), { MOVING: 1, OWNING: 1 });
  assert.deepEqual(c.get('node-2'), { OWNING: 2 });
});

test('readiness: every expected node listed and rebalanced, else a reason', () => {
  assert.match(notReadyReason(status(), ['node-1', 'node-2'])!, /rebalancing/);
  assert.match(notReadyReason(status({ rebalanced: true }), ['node-1', 'node-2', 'node-3'])!, /lists \[node-1, node-2\], expected \[node-1, node-2, node-3\]/);
  assert.equal(notReadyReason(status({ rebalanced: true }), ['node-2', 'node-1']), undefined);
});

test('something that is not a status is ERR_REMOTE', () => {
  assert.throws(() => asClusterStatus({ nodes: 'x' }), (err: unknown) => isPtnError(err, 'ERR_REMOTE'));
  assert.throws(() => asClusterStatus(null), (err: unknown) => isPtnError(err, 'ERR_REMOTE'));
});

test('tables pad columns to the widest cell without trailing blanks', () => {
  assert.equal(formatTable(['A', 'BB'], [['long', 'x'], ['s', '']]), 'A     BB\nlong  x\ns\n');
});
