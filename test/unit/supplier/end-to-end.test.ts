// End to end over real sockets: a NetServer serving the supplier's handlers on 127.0.0.1 and a
// dialed connection pulling a snapshot with a window of chunk requests in flight, LZ4 on.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { NetServer } from '../../../src/net/server.js';
import { dial } from '../../../src/net/client.js';
import type { Connection } from '../../../src/net/connection.js';
import { decodeChunk } from '../../../src/supplier/chunk-format.js';
import type { SnapshotOpenResponse } from '../../../src/supplier/transfer.js';
import { crc32 } from '../../../src/util/crc32.js';
import { identity, netConfig } from '../net/fixture.js';
import { CACHE_ID, makeFixture } from './helpers.js';

/** Pulls every chunk with `window` requests in flight, acknowledging the contiguous verified prefix. */
async function pull(conn: Connection, open: SnapshotOpenResponse, window: number): Promise<Buffer> {
  const image = Buffer.alloc(open.fileBytes);
  const offsets: number[] = [];
  for (let off = 0; off < open.fileBytes; off += open.chunkBytes) offsets.push(off);
  const done = new Set<number>();
  let verified = 0;
  let next = 0;
  const inflight = new Set<Promise<void>>();
  while (next < offsets.length || inflight.size > 0) {
    while (next < offsets.length && inflight.size < window) {
      const offset = offsets[next++]!;
      const p: Promise<void> = conn.request('snapshotChunk', { transferId: open.transferId, offset, ackedBytes: verified }).then((body) => {
        const { header, raw } = decodeChunk(body as Buffer);
        assert.equal(header.offset, offset);
        raw.copy(image, offset);
        done.add(offset);
        while (done.has(verified)) verified = Math.min(open.fileBytes, verified + open.chunkBytes);
        inflight.delete(p);
      });
      inflight.add(p);
    }
    await Promise.race(inflight);
  }
  return image;
}

test('a demander pulls a snapshot over a real WebSocket connection', async (t) => {
  const f = await makeFixture(t, { rebalance: { compression: 'lz4' } });
  for (let i = 0; i < 1500; i++) {
    const value = Buffer.from(JSON.stringify({ i, name: `entry ${i}`, pad: 'x'.repeat(i % 700) }));
    await f.store.apply({ cacheId: CACHE_ID, partition: 0, counter: 0, key: `key-${i}`, op: 'put', valueKind: 1, value }, { assign: true });
  }
  const server = new NetServer({ host: '127.0.0.1', port: 0, identity: identity('supplier'), config: netConfig() });
  for (const [method, h] of f.host.handlers) server.handle(method, h);
  const { port } = await server.listen();
  t.after(() => server.close());
  const conn = await dial(`127.0.0.1:${port}`, { identity: identity('demander'), config: netConfig() });
  t.after(() => conn.close());

  const open = (await conn.request('snapshotOpen', { cacheId: CACHE_ID, partition: 0, transferId: 'e2e-1' })) as unknown as SnapshotOpenResponse;
  assert.ok(open.fileBytes > 4 * open.chunkBytes);
  assert.equal(f.supplier.list()[0]!.demander, 'demander');
  const image = await pull(conn, open, 4);
  const tr = (await conn.request('snapshotTrailer', { transferId: 'e2e-1' })) as { fileBytes: number; fileCrc: number };
  assert.equal(tr.fileCrc, crc32(image));
  assert.deepEqual(image, await fs.readFile(f.store.partitionPath(CACHE_ID, 0)), 'an idle partition: the image is its file');
  assert.ok(f.supplier.counters.chunksCompressed > 0);
  assert.deepEqual(await conn.request('snapshotRelease', { transferId: 'e2e-1', reason: 'owning' }), {});
  assert.deepEqual(f.supplier.list(), []);
  await assert.rejects(conn.request('snapshotTrailer', { transferId: 'e2e-1' }), { code: 'ERR_SNAPSHOT_GONE' });
});
