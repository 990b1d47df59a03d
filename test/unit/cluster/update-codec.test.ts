import test from 'node:test';
import assert from 'node:assert/strict';
import { UPDATE_HEADER_BYTES, decodeUpdate, decodeUpdateBatch, encodeUpdate, encodeUpdateBatch } from '../../../src/cluster/update-codec.js';
import type { Update } from '../../../src/store/store.js';

const put: Update = { op: 'put', cacheId: 7, partition: 513, counter: 2 ** 40 + 3, key: 'ключ-1', valueKind: 1, value: Buffer.from('{"a":1}') };
const del: Update = { op: 'remove', cacheId: 7, partition: 1, counter: 9, key: 'k', valueKind: 0 };

test('the update header is 23 bytes', () => {
  assert.equal(UPDATE_HEADER_BYTES, 23);
  assert.equal(encodeUpdate(del).length, 23 + 1);
});

test('puts and removes round trip, alone and in batches', () => {
  assert.deepEqual(decodeUpdate(encodeUpdate(put)), put);
  assert.deepEqual(decodeUpdate(encodeUpdate(del)), del);
  assert.deepEqual(decodeUpdateBatch(encodeUpdateBatch([put, del, put])), [put, del, put]);
  assert.deepEqual(decodeUpdateBatch(encodeUpdateBatch([])), []);
});

test('malformed updates are refused with ERR_PROTOCOL_BAD_FRAME', () => {
  const good = encodeUpdate(put);
  const cases: Buffer[] = [good.subarray(0, 10), good.subarray(0, good.length - 1), Buffer.concat([good, Buffer.from([0])])];
  const badVersion = Buffer.from(good); badVersion[0] = 9; cases.push(badVersion);
  const badOp = Buffer.from(good); badOp[1] = 3; cases.push(badOp);
  const zeroCounter = Buffer.from(good); zeroCounter.fill(0, 8, 16); cases.push(zeroCounter);
  for (const c of cases) assert.throws(() => decodeUpdate(c), { code: 'ERR_PROTOCOL_BAD_FRAME' });
  const hugeCount = Buffer.alloc(4); hugeCount.writeUInt32BE(0xffffffff);
  assert.throws(() => decodeUpdateBatch(hugeCount), { code: 'ERR_PROTOCOL_BAD_FRAME' });
});
