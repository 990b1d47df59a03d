import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkPage, initPage, isValidPageSize, PAGE_HEADER_BYTES, pageCheckpointOf, pageIndexOf, pageTypeOf, PageType, sealPage } from '../../../src/pagememory/page.js';
import { rng, randInt } from './pm-helpers.js';

function sealed(size = 4096, index = 9, type: PageType = PageType.LEAF): Buffer {
  const buf = Buffer.alloc(size);
  initPage(buf, type, index);
  buf.fill(0xab, PAGE_HEADER_BYTES);
  sealPage(buf, index, 77);
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

test('the common page header is 16 bytes', () => {
  assert.equal(PAGE_HEADER_BYTES, 16);
});

test('a sealed page checks and carries its type, index and checkpoint id', () => {
  const buf = sealed(8192, 12345, PageType.OVERFLOW);
  checkPage(buf, 12345, PageType.OVERFLOW);
  assert.equal(pageTypeOf(buf), PageType.OVERFLOW);
  assert.equal(pageIndexOf(buf), 12345);
  assert.equal(pageCheckpointOf(buf), 77);
});

test('any flipped byte makes the page fail with ERR_PAGE_CORRUPT naming the page', () => {
  const seed = 4242;
  const r = rng(seed);
  for (let i = 0; i < 200; i++) {
    const buf = sealed();
    const at = randInt(r, 0, buf.length - 1);
    buf[at]! ^= 1 << randInt(r, 0, 7);
    let err: { code?: string; details?: { pageIndex?: number } } | undefined;
    try {
      checkPage(buf, 9);
    } catch (e) {
      err = e as typeof err;
    }
    assert.equal(err?.code, 'ERR_PAGE_CORRUPT', `seed ${seed}: flip at byte ${at} not caught`);
    assert.equal(err?.details?.pageIndex, 9);
  }
});

test('a page read from another position is corrupt even with a good CRC', () => {
  const buf = sealed(4096, 9);
  assert.equal(codeOf(() => checkPage(buf, 10)), 'ERR_PAGE_CORRUPT');
});

test('an all-zero page (a hole) is corrupt', () => {
  assert.equal(codeOf(() => checkPage(Buffer.alloc(4096), 3)), 'ERR_PAGE_CORRUPT');
});

test('an unexpected page type is corrupt', () => {
  assert.equal(codeOf(() => checkPage(sealed(4096, 9, PageType.LEAF), 9, PageType.INNER)), 'ERR_PAGE_CORRUPT');
});

test('sealing a page whose header names another index is a programmer error', () => {
  const buf = Buffer.alloc(4096);
  initPage(buf, PageType.LEAF, 4);
  assert.throws(() => sealPage(buf, 5, 1), /assertion failed/);
});

test('page sizes are powers of two from 4 KiB to 64 KiB', () => {
  for (const s of [4096, 8192, 16384, 32768, 65536]) assert.ok(isValidPageSize(s));
  for (const s of [0, 2048, 4095, 5000, 131072]) assert.ok(!isValidPageSize(s));
});

test('the on-disk layout sizes of every page type and of the journal are pinned', async () => {
  const node = await import('../../../src/pagememory/btree-node.js');
  const overflow = await import('../../../src/pagememory/overflow.js');
  const journal = await import('../../../src/pagememory/checkpoint-journal.js');
  const freeList = await import('../../../src/pagememory/free-list.js');
  assert.equal(node.NODE_HEADER_BYTES, 28);
  assert.equal(node.LEAF_CELL_HEADER_BYTES, 16);
  assert.equal(node.INNER_CELL_HEADER_BYTES, 6);
  assert.equal(overflow.OVERFLOW_HEADER_BYTES, 24);
  assert.equal(freeList.freeListCapacity(4096), (4096 - 24) / 4);
  assert.equal(journal.JOURNAL_HEADER_BYTES, 48);
  assert.equal(journal.JOURNAL_TRAILER_BYTES, 16);
  assert.equal(journal.JOURNAL_RECORD_HEADER_BYTES, 8);
});
