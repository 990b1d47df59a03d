// crc32Combine agrees with a CRC over the concatenation, for any split and length.
import test from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { crc32 } from '../../../src/util/crc32.js';
import { crc32Combine } from '../../../src/supplier/crc32-combine.js';
import { rng, testSeed } from '../../helpers/tmp.js';

test('combining the CRCs of two parts gives the CRC of the whole', () => {
  const seed = testSeed();
  const r = rng(seed);
  const data = randomBytes(300_000);
  for (let i = 0; i < 60; i++) {
    const a = Math.floor(r() * data.length);
    const b = a + Math.floor(r() * (data.length - a));
    const whole = data.subarray(0, b);
    assert.equal(crc32Combine(crc32(data.subarray(0, a)), crc32(data.subarray(a, b)), b - a), crc32(whole), `seed ${seed}: split ${a}/${b}`);
  }
});

test('edge lengths: empty parts, one byte, chunk-sized parts chained', () => {
  const data = randomBytes(5 * 65536 + 4096);
  assert.equal(crc32Combine(crc32(data), 0, 0), crc32(data));
  assert.equal(crc32Combine(0, crc32(data), data.length), crc32(data), 'an empty first part');
  assert.equal(crc32Combine(crc32(data.subarray(0, 1)), crc32(data.subarray(1, 2)), 1), crc32(data.subarray(0, 2)));
  let running = 0;
  for (let off = 0; off < data.length; off += 65536) {
    const part = data.subarray(off, Math.min(data.length, off + 65536));
    running = crc32Combine(running, crc32(part), part.length);
  }
  assert.equal(running, crc32(data));
});
