import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import {
  checkIdentity,
  decodeMetaPage,
  encodeMetaPage,
  META_FIXED_BYTES,
  META_MAGIC,
  PARTITION_FORMAT_VERSION,
  type MetaState,
} from '../../../src/pagememory/meta-page.js';
import { sealPage } from '../../../src/pagememory/page.js';
import { UpdateCounter } from '../../../src/pagememory/update-counter.js';
import { crc32 } from '../../../src/util/crc32.js';
import { ID, makeTmpDir, openPm, removeDir } from './pm-helpers.js';

function sampleMeta(): MetaState {
  const c = new UpdateCounter(128);
  for (const x of [1, 2, 3, 5, 9, 10]) c.add(x);
  return {
    pageSize: 4096,
    identity: { clusterId: 'cluster-Ω', cacheId: 0xfffffff0, partition: 65535 },
    checkpointId: 2 ** 40 + 3,
    entryCount: 2 ** 33,
    tombstoneCount: 17,
    pageCount: 1000,
    rootPage: 999,
    treeHeight: 3,
    freeListHead: 5,
    freePageCount: 12,
    counterState: c.encode(),
  };
}

function sealedMeta(m = sampleMeta()): Buffer {
  const buf = encodeMetaPage(m);
  sealPage(buf, 0, 1);
  return buf;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

let dir: string | undefined;
afterEach(async () => {
  await removeDir(dir);
  dir = undefined;
});

test('the meta page fixed part is 152 bytes and the file format version is 1', () => {
  assert.equal(META_FIXED_BYTES, 152);
  assert.equal(PARTITION_FORMAT_VERSION, 1);
  assert.equal(META_MAGIC.toString('latin1'), 'PTNP');
});

test('a meta page decodes to what was encoded', () => {
  const m = sampleMeta();
  const back = decodeMetaPage(sealedMeta(m), 128);
  assert.deepEqual(back, m);
  assert.deepEqual(UpdateCounter.decode(back.counterState, 128).gaps(), [[5, 5], [9, 10]]);
});

test('a flipped byte in the meta page is ERR_PAGE_CORRUPT', () => {
  const buf = sealedMeta();
  buf[200]! ^= 0x10;
  assert.equal(codeOf(() => decodeMetaPage(buf, 128)), 'ERR_PAGE_CORRUPT');
});

test('a bad magic is ERR_FILE_FORMAT', () => {
  const buf = sealedMeta();
  buf.write('XXXX', 16, 'latin1');
  assert.equal(codeOf(() => decodeMetaPage(buf, 128)), 'ERR_FILE_FORMAT');
});

test('an unknown format version is ERR_FILE_VERSION, even with a good CRC', () => {
  const buf = sealedMeta();
  buf.writeUInt16LE(2, 20);
  buf.writeUInt32LE(crc32(buf.subarray(4)), 0);
  assert.equal(codeOf(() => decodeMetaPage(buf, 128)), 'ERR_FILE_VERSION');
});

test('a bad page size is ERR_FILE_FORMAT', () => {
  const buf = sealedMeta();
  buf.writeUInt32LE(5000, 24);
  assert.equal(codeOf(() => decodeMetaPage(buf, 128)), 'ERR_FILE_FORMAT');
});

test('inconsistent fields with a good CRC are ERR_FILE_FORMAT', () => {
  const bad: Array<Partial<MetaState>> = [
    { rootPage: 1000 },
    { rootPage: 0 },
    { freeListHead: 0 },
    { pageCount: 0, rootPage: 0, treeHeight: 0, freeListHead: 0, freePageCount: 0 },
    { counterState: Buffer.from([9, 0, 0]) },
  ];
  for (const b of bad) assert.equal(codeOf(() => decodeMetaPage(sealedMeta({ ...sampleMeta(), ...b }), 128)), 'ERR_FILE_FORMAT', JSON.stringify(Object.keys(b)));
});

test('checkIdentity refuses another cluster, cache or partition with the right codes', () => {
  const m = decodeMetaPage(sealedMeta(), 128);
  const id = m.identity;
  checkIdentity(m, { ...id });
  assert.equal(codeOf(() => checkIdentity(m, { ...id, clusterId: 'other' })), 'ERR_FILE_WRONG_CLUSTER');
  assert.equal(codeOf(() => checkIdentity(m, { ...id, cacheId: 1 })), 'ERR_FILE_WRONG_PARTITION');
  assert.equal(codeOf(() => checkIdentity(m, { ...id, partition: 1 })), 'ERR_FILE_WRONG_PARTITION');
});

test('openPartition refuses wrong cluster, cache, partition, version and foreign files', async () => {
  dir = await makeTmpDir();
  const pm = await openPm(dir);
  try {
    const file = path.join(dir, 'p.ptn');
    const ps = await pm.createPartition(file, ID);
    await pm.destroyPartition(ps, { deleteFile: false });
    const refuse = async (id: typeof ID, code: string) => {
      await assert.rejects(pm.openPartition(file, id), (e: { code?: string }) => e.code === code);
    };
    await refuse({ ...ID, clusterId: 'elsewhere' }, 'ERR_FILE_WRONG_CLUSTER');
    await refuse({ ...ID, cacheId: ID.cacheId + 1 }, 'ERR_FILE_WRONG_PARTITION');
    await refuse({ ...ID, partition: ID.partition + 1 }, 'ERR_FILE_WRONG_PARTITION');
    const bytes = await fsp.readFile(file);
    bytes.writeUInt16LE(7, 20);
    bytes.writeUInt32LE(crc32(bytes.subarray(4, 4096)), 0);
    await fsp.writeFile(file, bytes);
    await refuse(ID, 'ERR_FILE_VERSION');
    await fsp.writeFile(file, Buffer.alloc(10000, 1));
    await refuse(ID, 'ERR_FILE_FORMAT');
    await fsp.writeFile(file, Buffer.alloc(0));
    await refuse(ID, 'ERR_FILE_FORMAT');
  } finally {
    await pm.close();
  }
});

test('a file shorter than its meta page says is ERR_FILE_FORMAT', async () => {
  dir = await makeTmpDir();
  const file = path.join(dir, 'p.ptn');
  const m = { ...sampleMeta(), identity: ID, rootPage: 0, treeHeight: 0, freeListHead: 0, freePageCount: 0, pageCount: 3 };
  await fsp.writeFile(file, Buffer.concat([sealedMeta(m), Buffer.alloc(4096)]));
  const pm = await openPm(dir);
  try {
    await assert.rejects(pm.openPartition(file, ID), (e: { code?: string }) => e.code === 'ERR_FILE_FORMAT');
  } finally {
    await pm.close();
  }
});
