// LZ4 per chunk through the supplier: same bytes with it on or off, smaller on the wire for
// compressible pages, raw for incompressible ones, and the setting read at every chunk.
import test from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import { CACHE_ID, type Fixture, makeFixture, openSnapshot, pullChunk } from './helpers.js';
import { ChunkFlag } from '../../../src/supplier/chunk-format.js';

async function fill(f: Fixture, partition: number, n: number, value: (i: number) => Buffer): Promise<void> {
  for (let i = 0; i < n; i++) {
    await f.store.apply({ cacheId: CACHE_ID, partition, counter: 0, key: `k${i}`, op: 'put', valueKind: 0, value: value(i) }, { assign: true });
  }
}

/** Pulls a whole snapshot; returns the image and the flags of every chunk. */
async function pullAll(f: Fixture, transferId: string, partition: number, onChunk?: (i: number) => void) {
  const open = await openSnapshot(f, transferId, partition);
  const image = Buffer.alloc(open.fileBytes);
  const flags: number[] = [];
  for (let off = 0, i = 0; off < open.fileBytes; off += open.chunkBytes, i++) {
    onChunk?.(i);
    const c = await pullChunk(f, transferId, off, 0);
    if (c.flags & ChunkFlag.LZ4) assert.ok(c.encodedBytes < c.raw.length, 'an LZ4 chunk is smaller than its raw bytes');
    else assert.equal(c.encodedBytes, c.raw.length);
    c.raw.copy(image, off);
    flags.push(c.flags);
  }
  await f.call('snapshotRelease', { transferId, reason: 'done' });
  return { image, flags };
}

const text = (i: number) => Buffer.from(JSON.stringify({ id: i, name: `customer number ${i}`, city: 'Amsterdam', tags: ['a', 'b', 'c'], note: 'lorem ipsum '.repeat(20) }));

test('LZ4 on and off give the same image, and compressible chunks travel smaller', async (t) => {
  const f = await makeFixture(t);
  await fill(f, 0, 2000, text);
  f.config.rebalance.compression = 'none';
  const plain = await pullAll(f, 'plain', 0);
  const sentPlain = f.supplier.counters.bytesSent;
  assert.equal(sentPlain, f.supplier.counters.rawBytesServed);
  f.config.rebalance.compression = 'lz4';
  const packed = await pullAll(f, 'packed', 0);
  assert.deepEqual(packed.image, plain.image);
  assert.deepEqual(plain.image, await fs.readFile(f.store.partitionPath(CACHE_ID, 0)), 'an idle partition: the image is the file');
  assert.ok(packed.flags.every((x) => x === ChunkFlag.LZ4), 'every chunk of JSON-like pages compresses');
  const sentPacked = f.supplier.counters.bytesSent - sentPlain;
  assert.ok(sentPacked < plain.image.length / 2, `LZ4 sent ${sentPacked} of ${plain.image.length} bytes`);
  assert.equal(f.supplier.counters.chunksCompressed, packed.flags.length);
});

test('incompressible chunks are sent raw with LZ4 on', async (t) => {
  const f = await makeFixture(t, { rebalance: { compression: 'lz4' } });
  await fill(f, 1, 24, () => randomBytes(14 * 4072)); // whole overflow pages (4072 value bytes each) of random bytes
  const { image, flags } = await pullAll(f, 'random', 1);
  assert.deepEqual(image, await fs.readFile(f.store.partitionPath(CACHE_ID, 1)));
  const raw = flags.filter((x) => x === 0).length;
  assert.ok(raw >= flags.length / 2, `${raw} of ${flags.length} chunks raw`);
});

test('the compression setting changed mid-transfer applies from the next chunk', async (t) => {
  const f = await makeFixture(t);
  await fill(f, 0, 2000, text);
  f.config.rebalance.compression = 'none';
  const { flags } = await pullAll(f, 'switch', 0, (i) => {
    if (i === 3) f.config.rebalance.compression = 'lz4';
  });
  assert.ok(flags.length > 4);
  assert.deepEqual(flags.slice(0, 3), [0, 0, 0]);
  assert.ok(flags.slice(3).every((x) => x === ChunkFlag.LZ4));
});
