import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BufferPool } from '../../../src/util/buffer-pool.js';
import { prepareFrame } from '../../../src/net/frames.js';

test('a released slot is handed out again instead of a new allocation', () => {
  const pool = new BufferPool(1024, 2);
  const a = pool.acquire(1000);
  assert.equal(a.length, 1000);
  pool.release(a);
  const b = pool.acquire(512);
  assert.equal(b.buffer, a.buffer);
  assert.equal(b.length, 512);
  assert.deepEqual({ allocated: pool.allocated, reused: pool.reused }, { allocated: 1, reused: 1 });
});

test('at most freeMax slots wait idle; the rest go to the garbage collector', () => {
  const pool = new BufferPool(64, 2);
  const bufs = [pool.acquire(64), pool.acquire(64), pool.acquire(64), pool.acquire(64)];
  for (const b of bufs) pool.release(b);
  assert.equal(pool.freeCount, 2);
  assert.equal(pool.allocated, 4);
});

test('a request larger than a slot gets its own buffer, which release ignores', () => {
  const pool = new BufferPool(64, 2);
  const big = pool.acquire(65);
  assert.equal(big.length, 65);
  pool.release(big);
  pool.release(Buffer.alloc(10)); // not from the pool at all
  assert.equal(pool.freeCount, 0);
  assert.equal(pool.allocated, 0);
});

test('releasing the same slot twice is refused as a programmer error', () => {
  const pool = new BufferPool(64, 4);
  const a = pool.acquire(10);
  pool.release(a);
  assert.throws(() => pool.release(a), /released twice/);
});

test('a pooled prepared frame returns its buffer once, however often it is released', () => {
  const pool = new BufferPool(4096, 4);
  const f = prepareFrame(1000, '', { pool });
  f.release();
  f.release();
  assert.equal(pool.freeCount, 1);
  const g = prepareFrame(1000, '', { pool });
  assert.equal(g.buffer.buffer, f.buffer.buffer);
});
