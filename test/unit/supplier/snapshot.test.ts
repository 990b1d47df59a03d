// The snapshot served equals the checkpoint image, byte for byte, while writes and checkpoints go
// on: restored with verify 'full' elsewhere, it holds exactly the entries and counter the store had
// at the snapshot's counter C; a cut and resume re-serves identical bytes; the trailer CRC is the
// CRC of the image.
import test, { type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCode } from '../../../src/errors.js';
import type { Update } from '../../../src/store/store.js';
import { crc32 } from '../../../src/util/crc32.js';
import { rng, testSeed } from '../../helpers/tmp.js';
import {
  CACHE_ID, type Fixture, liveEntries, makeFixture, openSnapshot, pullChunk, pullRange, pullWindowed, restoreImage, trailer,
} from './helpers.js';

interface Logged {
  counter: number;
  key: string;
  op: 'put' | 'remove';
  value?: string;
}

/** Random puts/removes on partition 0 with counters assigned by the store; every update is logged. */
class Writer {
  readonly log: Logged[] = [];
  private readonly r: () => number;
  private stopped = false;
  private running: Promise<void> | undefined;
  writes = 0;

  constructor(private readonly f: Fixture, readonly seed: number, private readonly keys = 1500) {
    this.r = rng(seed);
  }

  async one(): Promise<void> {
    const r = this.r;
    const key = `key-${Math.floor(r() * this.keys).toString().padStart(5, '0')}`;
    let u: Update;
    if (r() < 0.15) u = { cacheId: CACHE_ID, partition: 0, counter: 0, key, op: 'remove' };
    else {
      const len = r() < 0.05 ? 5000 + Math.floor(r() * 4000) : 20 + Math.floor(r() * 900);
      const value = Buffer.alloc(len);
      for (let i = 0; i < len; i++) value[i] = 97 + Math.floor(r() * 26);
      u = { cacheId: CACHE_ID, partition: 0, counter: 0, key, op: 'put', valueKind: 0, value };
    }
    await this.f.store.apply(u, { assign: true });
    this.log.push({ counter: u.counter, key, op: u.op, value: u.value?.toString('latin1') });
    this.writes++;
  }

  /** Writes in the background, a checkpoint every `every` writes, until stop(). */
  start(every = 15): void {
    this.running = (async () => {
      for (let i = 1; !this.stopped; i++) {
        await this.one();
        if (i % every === 0) await this.f.store.checkpoint('test');
        await new Promise((res) => setImmediate(res));
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }

  /** Live entries after every update with counter ≤ upTo. */
  expectedAt(upTo: number): Map<string, { counter: number; value: string }> {
    const state = new Map<string, Logged>();
    for (const u of [...this.log].sort((a, b) => a.counter - b.counter)) if (u.counter <= upTo) state.set(u.key, u);
    const live = new Map<string, { counter: number; value: string }>();
    for (const [k, u] of state) if (u.op === 'put') live.set(k, { counter: u.counter, value: u.value! });
    return live;
  }
}

async function checkImage(t: TestContext, f: Fixture, w: Writer, image: Buffer, open: { counter: { lwm: number; hwm: number; gaps: unknown[] }; entryCount: number }) {
  const ps = await restoreImage(t, f.config, image);
  assert.deepEqual(open.counter.gaps, [], `seed ${w.seed}: one sequential writer leaves no gaps`);
  assert.equal(ps.counter.lwm, open.counter.lwm, `seed ${w.seed}`);
  assert.equal(ps.counter.hwm, open.counter.hwm, `seed ${w.seed}`);
  const expected = w.expectedAt(open.counter.hwm);
  const got = await liveEntries(ps);
  assert.equal(got.size, expected.size, `seed ${w.seed}: entry count`);
  assert.equal(ps.entryCount, open.entryCount, `seed ${w.seed}`);
  assert.deepEqual(got, expected, `seed ${w.seed}: entries`);
}

test('the image pulled while writes and checkpoints continue equals the checkpoint image', async (t) => {
  const f = await makeFixture(t);
  const seed = testSeed();
  const w = new Writer(f, seed);
  for (let i = 0; i < 2000; i++) await w.one();
  await f.store.checkpoint('seed');
  w.start();
  const open = await openSnapshot(f, 'tr-1');
  assert.ok(open.fileBytes >= 8 * open.chunkBytes, `seed ${seed}: a file of ${open.fileBytes} bytes gives several chunks`);
  const image = Buffer.alloc(open.fileBytes);
  await pullRange(f, open, image, {
    between: async (offset) => {
      for (let i = 0; i < 5; i++) await w.one(); // as well as the background writer, whatever the timing
      if ((offset / open.chunkBytes) % 3 === 0) await f.store.checkpointAfterNow('test'); // not one armed before (see below)
    },
  });
  const tr = await trailer(f, 'tr-1');
  await w.stop();
  assert.ok(f.supplier.counters.deltaPages > 0, `seed ${seed}: pages were overwritten during the transfer (${w.writes} writes)`);
  assert.equal(tr.fileBytes, open.fileBytes);
  assert.equal(tr.fileCrc, crc32(image), `seed ${seed}: trailer CRC is the CRC of the image`);
  await checkImage(t, f, w, image, open);
});

test('the image is still exact with a window of chunk requests read in parallel under writes', async (t) => {
  const f = await makeFixture(t, { rebalance: { chunkWindow: 4 } });
  const seed = testSeed();
  const w = new Writer(f, seed);
  for (let i = 0; i < 2000; i++) await w.one();
  await f.store.checkpoint('seed');
  w.start(10);
  const open = await openSnapshot(f, 'tr-win');
  let answers = 0;
  const image = await pullWindowed(f, open, 4, async () => {
    // Besides the background writer: some writes and a checkpoint every few answers, so pages above
    // the acknowledged offset surely get overwritten whatever the timing. A checkpoint that captures
    // after the call: `checkpoint()` may join the background writer's, which can be the very one the
    // snapshot was armed at (its pages already written), and then nothing was overwritten at all.
    for (let i = 0; i < 5; i++) await w.one();
    if (++answers % 3 === 0) await f.store.checkpointAfterNow('test');
  });
  const tr = await trailer(f, 'tr-win');
  await w.stop();
  assert.ok(f.supplier.counters.deltaPages > 0, `seed ${seed}: pages were overwritten during the transfer`);
  assert.equal(tr.fileCrc, crc32(image), `seed ${seed}`);
  await checkImage(t, f, w, image, open);
});

test('a cut in the middle resumes from the acknowledged offset with identical bytes', async (t) => {
  const f = await makeFixture(t);
  const seed = testSeed();
  const w = new Writer(f, seed);
  for (let i = 0; i < 900; i++) await w.one();
  const open = await openSnapshot(f, 'tr-cut');
  const image = Buffer.alloc(open.fileBytes);
  const half = Math.floor(open.fileBytes / open.chunkBytes / 2) * open.chunkBytes;
  const first = await pullRange(f, open, image, { until: half });
  // The connection is cut here: the demander verified [0, first.next) but acknowledged only first.acked.
  // Writes and checkpoints overwrite pages on both sides of the acknowledged offset meanwhile.
  for (let i = 0; i < 300; i++) {
    await w.one();
    if (i % 50 === 0) await f.store.checkpoint('test');
  }
  await f.store.checkpoint('test');
  const again = await openSnapshot(f, 'tr-cut', 0, true);
  assert.deepEqual(again, open, 'resume answers the same snapshot');
  const resentFrom = first.acked;
  const before = Buffer.from(image.subarray(resentFrom, first.next));
  await pullRange(f, open, image, { from: resentFrom, acked: first.acked });
  assert.deepEqual(image.subarray(resentFrom, first.next), before, `seed ${seed}: the bytes served again are identical`);
  assert.equal((await trailer(f, 'tr-cut')).fileCrc, crc32(image), `seed ${seed}`);
  await checkImage(t, f, w, image, open);
});

test('a chunk below the acknowledged offset is refused with ERR_SNAPSHOT_GONE', async (t) => {
  const f = await makeFixture(t);
  const w = new Writer(f, 7);
  for (let i = 0; i < 600; i++) await w.one();
  const open = await openSnapshot(f, 'tr-floor');
  const c = open.chunkBytes;
  await pullChunk(f, 'tr-floor', 0, 0);
  await pullChunk(f, 'tr-floor', c, 0);
  await pullChunk(f, 'tr-floor', 2 * c, 2 * c);
  await assert.rejects(pullChunk(f, 'tr-floor', c, 0), { code: ErrorCode.ERR_SNAPSHOT_GONE });
});

test('nothing past the recorded length is served even after the file grew', async (t) => {
  const f = await makeFixture(t);
  const w = new Writer(f, 11);
  for (let i = 0; i < 300; i++) await w.one();
  const open = await openSnapshot(f, 'tr-len');
  for (let i = 0; i < 1500; i++) await w.one();
  await f.store.checkpoint('grow');
  assert.ok(f.store.partitionOrUndefined(CACHE_ID, 0)!.fileBytes() > open.fileBytes, 'the file grew');
  const lastOffset = Math.floor((open.fileBytes - 1) / open.chunkBytes) * open.chunkBytes;
  const last = await pullChunk(f, 'tr-len', lastOffset, 0);
  assert.equal(lastOffset + last.raw.length, open.fileBytes);
  await assert.rejects(pullChunk(f, 'tr-len', open.fileBytes, 0), { code: ErrorCode.ERR_PROTOCOL_BAD_FRAME });
  assert.equal((await trailer(f, 'tr-len')).fileBytes, open.fileBytes);
});

test('the trailer is right when chunks were served out of order', async (t) => {
  const f = await makeFixture(t);
  const w = new Writer(f, 13);
  for (let i = 0; i < 600; i++) await w.one();
  const open = await openSnapshot(f, 'tr-order');
  const c = open.chunkBytes;
  const n = Math.ceil(open.fileBytes / c);
  assert.ok(n >= 4);
  const image = Buffer.alloc(open.fileBytes);
  const order = [0, 2, 1, ...Array.from({ length: n - 3 }, (_, i) => i + 3)];
  for (const i of order) (await pullChunk(f, 'tr-order', i * c, 0)).raw.copy(image, i * c);
  for (let i = 0; i < 200; i++) await w.one();
  await f.store.checkpoint('test');
  assert.equal((await trailer(f, 'tr-order')).fileCrc, crc32(image));
  await checkImage(t, f, w, image, open);
});

test('the trailer reads what was never served; without a known boundary above the acknowledged offset it is ERR_SNAPSHOT_GONE', async (t) => {
  const f = await makeFixture(t);
  const w = new Writer(f, 17);
  for (let i = 0; i < 600; i++) await w.one();
  const open = await openSnapshot(f, 'tr-gap');
  const c = open.chunkBytes;
  const n = Math.ceil(open.fileBytes / c);
  assert.ok(n >= 4);
  const image = Buffer.alloc(open.fileBytes);
  for (const i of [0, ...Array.from({ length: n - 2 }, (_, k) => k + 2)]) (await pullChunk(f, 'tr-gap', i * c, 0)).raw.copy(image, i * c);
  const tr = await trailer(f, 'tr-gap'); // chunk 1 was never served: the supplier reads it itself
  (await pullChunk(f, 'tr-gap', c, 0)).raw.copy(image, c);
  assert.equal(tr.fileCrc, crc32(image));
  const lost = await openSnapshot(f, 'tr-lost');
  await pullChunk(f, 'tr-lost', 0, 0);
  await pullChunk(f, 'tr-lost', 2 * c, 0);
  await pullChunk(f, 'tr-lost', 3 * c, 3 * c);
  await assert.rejects(trailer(f, 'tr-lost'), { code: ErrorCode.ERR_SNAPSHOT_GONE });
});
