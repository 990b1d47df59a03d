// Receiving a snapshot into a file: window, chunk verification, LZ4, trailer, persistence, cuts.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { ErrorCode, ptnError } from '../../../src/errors.js';
import type { Body } from '../../../src/net/connection.js';
import { prepareFrame } from '../../../src/net/frames.js';
import { CHUNK_HEADER_BYTES, encodeChunk } from '../../../src/supplier/chunk-format.js';
import { crc32 } from '../../../src/util/crc32.js';
import { realFileLayer, type FileLike } from '../../../src/util/file-layer.js';
import { receiveFile, verifyChunk, type ReceiveState, type SupplierLink } from '../../../src/demander/file-receiver.js';
import { ChunkCredits } from '../../../src/demander/chunk-credits.js';
import { rng, tempDir, testSeed } from '../../helpers/tmp.js';

const CHUNK = 8192;

function chunkBody(image: Buffer, offset: number, lz4 = false): Buffer {
  const raw = image.subarray(offset, Math.min(offset + CHUNK, image.length));
  const frame = prepareFrame(CHUNK_HEADER_BYTES + raw.length);
  raw.copy(frame.body, CHUNK_HEADER_BYTES);
  return Buffer.from(encodeChunk(frame, offset, crc32(raw), lz4).body);
}

/** A supplier of `image` as a link; `tamper` may replace a chunk response (once per call it returns something). */
class ImageLink implements SupplierLink {
  isOpen = true;
  inflight = 0;
  inflightMax = 0;
  readonly asked: Array<{ offset: number; ackedBytes: number }> = [];
  tamper?: (offset: number, body: Buffer, nth: number) => Body | undefined;
  lz4 = false;
  cutAfterChunks = Infinity;
  trailerCrc?: number;
  constructor(private readonly image: Buffer) {}

  async request(method: string, body: Body): Promise<Body> {
    if (!this.isOpen) throw ptnError(ErrorCode.ERR_CONNECTION_CLOSED, 'closed');
    const b = body as { offset: number; ackedBytes: number };
    if (method === 'snapshotTrailer') return { fileBytes: this.image.length, fileCrc: this.trailerCrc ?? crc32(this.image) };
    assert.equal(method, 'snapshotChunk');
    this.inflight++;
    this.inflightMax = Math.max(this.inflightMax, this.inflight);
    this.asked.push({ offset: b.offset, ackedBytes: b.ackedBytes });
    try {
      await new Promise((r) => setImmediate(r));
      if (this.asked.length > this.cutAfterChunks) {
        this.isOpen = false;
        throw ptnError(ErrorCode.ERR_CONNECTION_CLOSED, 'cut');
      }
      const out = chunkBody(this.image, b.offset, this.lz4);
      const nth = this.asked.filter((a) => a.offset === b.offset).length;
      return this.tamper?.(b.offset, out, nth) ?? out;
    } finally {
      this.inflight--;
    }
  }

  async close(): Promise<void> {
    this.isOpen = false;
  }
}

function makeImage(seed: number, bytes: number, compressible = false): Buffer {
  const r = rng(seed);
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) b[i] = compressible ? (i >> 6) & 0xff : Math.floor(r() * 256);
  return b;
}

async function openFile(t: Parameters<typeof tempDir>[0]): Promise<{ file: FileLike; p: string }> {
  const dir = await tempDir(t);
  const p = path.join(dir, 'recv.ptn');
  const file = await realFileLayer.open(p, 'w+');
  t.after(() => file.close().catch(() => undefined));
  return { file, p };
}

function stateFor(image: Buffer): ReceiveState {
  return { transferId: 'tr', fileBytes: image.length, chunkBytes: CHUNK, verifiedOffset: 0, runningCrc: 0 };
}

test('a whole image arrives with at most `window` requests in flight, each acknowledging the verified offset', async (t) => {
  const seed = testSeed();
  const image = makeImage(seed, CHUNK * 9 + 4096);
  const link = new ImageLink(image);
  const { file, p } = await openFile(t);
  const state = stateFor(image);
  const n = await receiveFile({ link, file, state, window: 3, persistEveryBytes: 1 << 30, persist: async () => {} });
  assert.equal(n, image.length);
  assert.deepEqual(await fs.readFile(p), image, `seed ${seed}`);
  assert.equal(state.verifiedOffset, image.length);
  assert.equal(state.runningCrc, crc32(image));
  assert.equal(link.inflightMax, 3);
  assert.deepEqual(link.asked.map((a) => a.offset), Array.from({ length: 10 }, (_, i) => i * CHUNK));
  for (const a of link.asked) assert.ok(a.ackedBytes <= a.offset && a.ackedBytes % CHUNK === 0);
  assert.equal(link.asked[9]!.ackedBytes, 7 * CHUNK, 'the request for chunk 9 went out once chunk 6 was verified');
});

test('a chunk with a bad CRC is requested again and no corrupt byte reaches the file', async (t) => {
  const image = makeImage(7, CHUNK * 5);
  const link = new ImageLink(image);
  link.tamper = (offset, body, nth) => {
    if (offset !== 2 * CHUNK || nth > 1) return undefined;
    const bad = Buffer.from(body);
    bad[CHUNK_HEADER_BYTES + 100]! ^= 0x01;
    return bad;
  };
  const { file, p } = await openFile(t);
  const corrupt: unknown[] = [];
  await receiveFile({ link, file, state: stateFor(image), window: 2, persistEveryBytes: 1 << 30, persist: async () => {}, onCorrupt: (e) => corrupt.push(e) });
  assert.equal(corrupt.length, 1);
  assert.equal((corrupt[0] as { code: string }).code, ErrorCode.ERR_TRANSFER_CORRUPT);
  assert.equal(link.asked.filter((a) => a.offset === 2 * CHUNK).length, 2);
  assert.deepEqual(await fs.readFile(p), image);
});

test('a chunk that stays corrupt fails the transfer with ERR_TRANSFER_CORRUPT; the file holds only the verified prefix', async (t) => {
  const image = makeImage(8, CHUNK * 5);
  const link = new ImageLink(image);
  link.tamper = (offset, body) => {
    if (offset !== 3 * CHUNK) return undefined;
    const bad = Buffer.from(body);
    bad.writeUInt32BE(bad.readUInt32BE(20) ^ 1, 20); // the CRC field
    return bad;
  };
  const { file, p } = await openFile(t);
  const state = stateFor(image);
  await assert.rejects(receiveFile({ link, file, state, window: 2, persistEveryBytes: 1 << 30, persist: async () => {}, corruptRetries: 2 }), { code: ErrorCode.ERR_TRANSFER_CORRUPT });
  assert.equal(link.asked.filter((a) => a.offset === 3 * CHUNK).length, 3, 'asked once and retried twice');
  assert.equal(state.verifiedOffset, 3 * CHUNK);
  const onDisk = await fs.readFile(p);
  assert.deepEqual(onDisk, image.subarray(0, 3 * CHUNK));
});

test('a chunk answering another offset or length, or a non-binary body, is refused as corrupt', () => {
  const image = makeImage(9, CHUNK * 2);
  assert.deepEqual(verifyChunk(chunkBody(image, CHUNK), CHUNK, CHUNK), image.subarray(CHUNK));
  assert.throws(() => verifyChunk(chunkBody(image, 0), CHUNK, CHUNK), { code: ErrorCode.ERR_TRANSFER_CORRUPT });
  assert.throws(() => verifyChunk(chunkBody(image, CHUNK), CHUNK, CHUNK - 4096), { code: ErrorCode.ERR_TRANSFER_CORRUPT });
  assert.throws(() => verifyChunk({ not: 'bytes' }, 0, CHUNK), { code: ErrorCode.ERR_TRANSFER_CORRUPT });
  const short = chunkBody(image, 0).subarray(0, 30);
  assert.throws(() => verifyChunk(short, 0, CHUNK), { code: ErrorCode.ERR_TRANSFER_CORRUPT });
  const flagged = Buffer.from(chunkBody(image, 0));
  flagged[16] = 0x80;
  assert.throws(() => verifyChunk(flagged, 0, CHUNK), { code: ErrorCode.ERR_TRANSFER_CORRUPT });
});

test('LZ4-compressed chunks land as the same bytes', async (t) => {
  const image = makeImage(1, CHUNK * 6, true);
  const link = new ImageLink(image);
  link.lz4 = true;
  assert.ok(chunkBody(image, 0, true).length < CHUNK / 2, 'the test data does compress');
  const { file, p } = await openFile(t);
  await receiveFile({ link, file, state: stateFor(image), window: 4, persistEveryBytes: 1 << 30, persist: async () => {} });
  assert.deepEqual(await fs.readFile(p), image);
});

test('a trailer whose CRC disagrees with the bytes received is a whole-file ERR_TRANSFER_CORRUPT', async (t) => {
  const image = makeImage(2, CHUNK * 3);
  const link = new ImageLink(image);
  link.trailerCrc = (crc32(image) ^ 1) >>> 0;
  const { file } = await openFile(t);
  await assert.rejects(receiveFile({ link, file, state: stateFor(image), window: 2, persistEveryBytes: 1 << 30, persist: async () => {} }), (err: { code: string; details: { wholeFile: boolean } }) => {
    assert.equal(err.code, ErrorCode.ERR_TRANSFER_CORRUPT);
    assert.equal(err.details.wholeFile, true);
    return true;
  });
});

test('the verified offset is persisted after an fsync every persistEveryBytes, and a cut resumes from it with the CRC intact', async (t) => {
  const image = makeImage(3, CHUNK * 8);
  const { file, p } = await openFile(t);
  const synced: number[] = [];
  const realSync = file.sync.bind(file);
  (file as { sync: () => Promise<void> }).sync = async () => {
    synced.push(state.verifiedOffset);
    await realSync();
  };
  const state = stateFor(image);
  const persisted: number[] = [];
  const first = new ImageLink(image);
  first.cutAfterChunks = 5;
  const persist = async (at: { verifiedOffset: number }) => {
    persisted.push(at.verifiedOffset);
  };
  await assert.rejects(receiveFile({ link: first, file, state, window: 2, persistEveryBytes: 2 * CHUNK, persist }), { code: ErrorCode.ERR_CONNECTION_CLOSED });
  // Persists run in the background while chunks keep arriving: each records the offset verified
  // when its fsync began, which the fsync covered.
  assert.ok(persisted.length >= 1, 'at least one persist before the cut');
  for (let i = 0; i < persisted.length; i++) {
    assert.equal(persisted[i]! % CHUNK, 0);
    assert.ok(persisted[i]! >= 2 * CHUNK * (i + 1) && persisted[i]! <= synced[i]!, 'persisted offsets were covered by an fsync');
  }
  const resumeAt = state.verifiedOffset;
  assert.ok(resumeAt >= 4 * CHUNK && resumeAt < image.length);
  const second = new ImageLink(image);
  await receiveFile({ link: second, file, state, window: 2, persistEveryBytes: 2 * CHUNK, persist });
  assert.equal(second.asked[0]!.offset, resumeAt, 'nothing below the verified offset is asked for again');
  assert.deepEqual(await fs.readFile(p), image);
  assert.equal(state.runningCrc, crc32(image));
});

test('transfers sharing chunk credits keep at most the node-wide limit in flight, each progresses, and every credit comes back', async (t) => {
  const seed = testSeed();
  const credits = new ChunkCredits(() => 5);
  const links: ImageLink[] = [];
  let inflightMax = 0;
  const runs = [];
  for (let i = 0; i < 4; i++) {
    const image = makeImage(seed + i, CHUNK * 12);
    const link = new ImageLink(image);
    links.push(link);
    const original = link.request.bind(link);
    link.request = async (method, body) => {
      const p = original(method, body);
      inflightMax = Math.max(inflightMax, links.reduce((n, l) => n + l.inflight, 0));
      return p;
    };
    const { file, p } = await openFile(t);
    runs.push(receiveFile({ link, file, state: stateFor(image), window: 4, persistEveryBytes: 1 << 30, persist: async () => {}, credits }).then(async () => assert.deepEqual(await fs.readFile(p), image, `seed ${seed + i}`)));
  }
  await Promise.all(runs);
  assert.ok(inflightMax <= 5, `at most 5 chunks in flight over the 4 transfers (saw ${inflightMax})`);
  assert.ok(inflightMax >= 4, 'the credits were used');
  assert.equal(credits.held, 0, 'every credit given back');
});

test('a transfer that fails or is cancelled gives its chunk credits back', async (t) => {
  const credits = new ChunkCredits(() => 3);
  const image = makeImage(testSeed(), CHUNK * 8);
  const cut = new ImageLink(image);
  cut.cutAfterChunks = 4;
  const { file } = await openFile(t);
  await assert.rejects(receiveFile({ link: cut, file, state: stateFor(image), window: 3, persistEveryBytes: 1 << 30, persist: async () => {}, credits }), { code: ErrorCode.ERR_CONNECTION_CLOSED });
  assert.equal(credits.held, 0, 'a cut link gives every credit back');
  // A transfer waiting for a credit is cancelled: it gives up its place without taking one.
  for (let i = 0; i < 3; i++) assert.ok(credits.tryTake());
  const ac = new AbortController();
  const { file: f2 } = await openFile(t);
  const waiting = receiveFile({ link: new ImageLink(image), file: f2, state: stateFor(image), window: 3, persistEveryBytes: 1 << 30, persist: async () => {}, credits, signal: ac.signal });
  ac.abort();
  await assert.rejects(waiting, { code: ErrorCode.ERR_REBALANCE_CANCELLED });
  for (let i = 0; i < 3; i++) credits.give();
  assert.equal(credits.held, 0);
  assert.ok(credits.tryTake(), 'the cancelled waiter left the queue');
});
