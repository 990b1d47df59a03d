// Proves the native paths are the ones loaded: the pure-JS fallbacks of lz4 and bufferutil
// are 2–4× slower and load silently when npm skipped the packages' install scripts.
import test from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { crc32, crc32IsNative, crc32Reference } from '../../src/util/crc32.js';

const require = createRequire(import.meta.url);

test('lz4 block API is the native binding, not the JS fallback', () => {
  const lz4 = require('lz4');
  const native = require('lz4/build/Release/lz4.node');
  assert.equal(lz4.encodeBlock, native.compress);
  assert.equal(lz4.decodeBlock, native.uncompress);
  const input = Buffer.alloc(64 * 1024, 'abcdefgh');
  const out = Buffer.alloc(lz4.encodeBound(input.length));
  const n = lz4.encodeBlock(input, out);
  assert.ok(n > 0 && n < input.length / 10);
  const back = Buffer.alloc(input.length);
  assert.equal(lz4.decodeBlock(out.subarray(0, n), back), input.length);
  assert.deepEqual(back, input);
});

test('bufferutil is the native addon that ws uses for masking', () => {
  const bufferutil = require('bufferutil');
  const fallback = require('bufferutil/fallback');
  assert.notEqual(bufferutil.mask, fallback.mask);
  assert.match(String(bufferutil.mask), /\[native code\]/);
  // ws picks bufferutil up only when it is resolvable from ws itself.
  const wsRequire = createRequire(require.resolve('ws'));
  assert.equal(wsRequire('bufferutil'), bufferutil);
});

test('crc32 uses zlib.crc32 and agrees with the crc-32 reference', () => {
  assert.equal(crc32IsNative, true);
  const data = Buffer.alloc(10_000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7919) & 0xff;
  assert.equal(crc32(data), crc32Reference(data));
  const a = data.subarray(0, 3333);
  const b = data.subarray(3333);
  assert.equal(crc32(b, crc32(a)), crc32Reference(data));
});
