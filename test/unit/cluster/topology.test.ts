import test from 'node:test';
import assert from 'node:assert/strict';
import { assignPartitions, partitionOfKey } from '../../../src/cluster/affinity.js';
import { computePartitionMap, isRebalanced, markEvicted, markOwning, replicaTargets, type TopologyNode } from '../../../src/cluster/topology.js';
import type { CacheDef } from '../../../src/store/cache-registry.js';

const node = (id: string, order: number): TopologyNode => ({ id, address: `127.0.0.1:${7400 + order}`, adminAddress: `127.0.0.1:${7500 + order}`, order });
const cache: CacheDef = { name: 'default', cacheId: 1, partitions: 64, backups: 1, indexFields: [] };

test('keys spread over partitions and the mapping is stable', () => {
  const counts = new Array(16).fill(0);
  for (let i = 0; i < 16000; i++) counts[partitionOfKey(`key-${i}`, 16)]++;
  for (const c of counts) assert.ok(c > 700 && c < 1300, `uneven partition: ${c}`);
  assert.equal(partitionOfKey('hello', 64), partitionOfKey('hello', 64));
});

test('rendezvous assignment gives backups+1 distinct owners and moves few partitions when a node joins', () => {
  const three = assignPartitions('c', 256, 1, ['a', 'b', 'c']);
  for (const owners of three) assert.equal(new Set(owners).size, 2);
  const four = assignPartitions('c', 256, 1, ['a', 'b', 'c', 'd']);
  let changed = 0;
  for (let p = 0; p < 256; p++) {
    const before = new Set(three[p]);
    for (const n of four[p]!) if (!before.has(n)) changed++;
  }
  // d should take about half of 256 copies (2 copies per partition / 4 nodes); nothing else moves.
  for (let p = 0; p < 256; p++) for (const n of four[p]!) if (n !== 'd') assert.ok(three[p]!.includes(n));
  assert.ok(changed > 80 && changed < 180, `moved ${changed}`);
});

test('a new cache starts with every ideal copy OWNING', () => {
  const nodes = [node('a', 1), node('b', 2), node('c', 3)];
  const { partitions } = computePartitionMap({}, nodes, [cache], new Set(['default']));
  for (const pc of partitions.default!) {
    assert.deepEqual(Object.values(pc.copies), ['OWNING', 'OWNING']);
    assert.equal(pc.primary, pc.ideal[0]);
  }
});

test('a joining node gets MOVING copies, old owners stay OWNING until it is OWNING, then rent', () => {
  const three = [node('a', 1), node('b', 2), node('c', 3)];
  const before = computePartitionMap({}, three, [cache], new Set(['default'])).partitions;
  const four = [...three, node('d', 4)];
  const after = computePartitionMap(before, four, [cache]).partitions;
  let moving = 0;
  for (let p = 0; p < cache.partitions; p++) {
    const pc = after.default![p]!;
    if (pc.ideal.includes('d')) {
      moving++;
      assert.equal(pc.copies.d, 'MOVING');
      for (const n of Object.keys(before.default![p]!.copies)) assert.equal(pc.copies[n], 'OWNING');
      assert.notEqual(pc.primary, 'd');
      assert.ok(replicaTargets(pc).includes('d'), 'MOVING copies receive updates');
      const owned = markOwning(pc, 'd');
      assert.equal(owned.copies.d, 'OWNING');
      const leaving = Object.keys(pc.copies).filter((n) => !pc.ideal.includes(n));
      for (const n of leaving) {
        assert.equal(owned.copies[n], 'RENTING');
        assert.equal(markEvicted(owned, n).copies[n], undefined);
      }
    } else {
      assert.deepEqual(pc, before.default![p], 'an unchanged assignment is not disturbed');
    }
  }
  assert.ok(moving > 0);
  assert.equal(isRebalanced({ version: 2, clusterId: 'x', coordinator: 'a', nodes: four, caches: [cache], partitions: after, cacheIdMax: 1 }), false);
});

test('when a node dies its backups are promoted and a new MOVING copy is assigned', () => {
  const nodes = [node('a', 1), node('b', 2), node('c', 3)];
  const before = computePartitionMap({}, nodes, [cache], new Set(['default'])).partitions;
  const after = computePartitionMap(before, nodes.filter((n) => n.id !== 'a'), [cache]);
  assert.deepEqual(after.lost, []);
  for (let p = 0; p < cache.partitions; p++) {
    const pc = after.partitions.default![p]!;
    assert.equal(pc.copies.a, undefined);
    assert.ok(pc.primary && pc.copies[pc.primary] === 'OWNING');
    if (before.default![p]!.primary === 'a') assert.notEqual(pc.primary, 'a');
  }
});

test('a partition whose every OWNING copy is gone is lost until an owner comes back with its data', () => {
  const one: CacheDef = { ...cache, backups: 0 };
  const nodes = [node('a', 1), node('b', 2)];
  const before = computePartitionMap({}, nodes, [one], new Set(['default'])).partitions;
  const after = computePartitionMap(before, [node('b', 2)], [one]);
  assert.ok(after.lost.length > 0);
  for (let p = 0; p < one.partitions; p++) {
    const pc = after.partitions.default![p]!;
    if (before.default![p]!.primary === 'a') {
      assert.deepEqual(pc.copies, {}, 'nothing is made OWNING empty');
      assert.equal(pc.primary, undefined);
      assert.deepEqual(pc.lost, ['a']);
    } else {
      assert.deepEqual(pc.copies, { b: 'OWNING' });
    }
  }
  const again = computePartitionMap(after.partitions, [node('b', 2)], [one]);
  assert.deepEqual(again.lost, [], 'a loss is reported once');
  const back = computePartitionMap(after.partitions, nodes, [one]);
  for (let p = 0; p < one.partitions; p++) {
    const pc = back.partitions.default![p]!;
    if (before.default![p]!.primary === 'a') {
      assert.equal(pc.copies.a, 'OWNING', 'the returning owner brings its copy back');
      assert.equal(pc.primary, 'a');
      assert.equal(pc.lost, undefined);
    }
  }
});
