import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { PageMemory } from '../../../src/pagememory/page-memory.js';
import { PageType } from '../../../src/pagememory/page.js';
import { PREWARM_READ_PAGES } from '../../../src/pagememory/partition-store.js';
import { checkpoint, ID, makeTmpDir, openPm, put, removeDir, snapshot, valueOf } from './pm-helpers.js';

let dir: string | undefined;
afterEach(async () => {
  await removeDir(dir);
  dir = undefined;
});

const PAGE = 4096;

/**
 * A committed, closed partition file of `n` entries of `valueBytes` whose free list holds the
 * pages of a dropped overflow chain (valid page images that are no longer live).
 */
async function makeFileWithFreePages(pm: PageMemory, file: string, n: number, valueBytes = 200, id = ID): Promise<{ expected: Map<string, unknown>; freePages: number }> {
  const ps = await pm.createPartition(file, id);
  await put(pm, ps, 'big', 1, valueOf(100_000, 1));
  for (let c = 2; c <= n; c++) await put(pm, ps, `k${c}`, c, valueOf(valueBytes, c));
  await checkpoint(pm);
  await put(pm, ps, 'big', n + 1, Buffer.from('now small'));
  await checkpoint(pm);
  await put(pm, ps, 'k2', n + 2, Buffer.from('again'));
  await checkpoint(pm); // the chain's pages are listed as free in this state
  const freePages = ps.spaceStats().freePages;
  const expected = await snapshot(ps);
  await pm.destroyPartition(ps, { deleteFile: false });
  return { expected, freePages };
}

test('prewarm reads a swapped-in file in sequential runs, after which reading every entry reads no page', async () => {
  dir = await makeTmpDir();
  const pm = await openPm(dir);
  try {
    const src = path.join(dir, 'incoming.tmp');
    const { expected, freePages } = await makeFileWithFreePages(pm, src, 6000);
    assert.ok(freePages >= 20, `free pages in the file: ${freePages}`);
    const ps = await pm.restorePartition(src, path.join(dir, 'part.ptn'), ID, 'meta');
    const filePages = ps.fileBytes() / PAGE;
    assert.ok(filePages > PREWARM_READ_PAGES + 1, `file of ${filePages} pages: more than one run`);
    const cachedBefore = pm.stats.cachedBytes;
    const readsBefore = pm.stats.pageReads;
    const warmed = await pm.prewarmPartition(ps, 1 << 30);
    const live = filePages - 1 - freePages; // less the meta page and the free ones (chain pages: in neither)
    assert.ok(warmed / PAGE <= live && warmed / PAGE >= live - 2, `warmed ${warmed / PAGE} pages of ${live} live`);
    assert.equal(pm.stats.cachedBytes - cachedBefore, warmed);
    // Every page but the meta page read once, and the free list's one chain page (which pages are free).
    assert.equal(pm.stats.pageReads - readsBefore, filePages - 1 + 1);
    const readsWarm = pm.stats.pageReads;
    assert.deepEqual(await snapshot(ps), expected);
    assert.equal(pm.stats.pageReads, readsWarm, 'the scan found every page it needed in the cache');
    // Writes that allocate the free pages (which were left out of the cache) work as before.
    await put(pm, ps, 'big', 100_000, valueOf(100_000, 9));
    await checkpoint(pm);
    assert.equal((await ps.get('big'))!.value.length, 100_000);
    assert.equal(await pm.prewarmPartition(ps, 1 << 30), 0, 'a second prewarm finds everything cached');
  } finally {
    await pm.close();
  }
});

test('a file larger than the byte limit or the free room is not prewarmed; a partial prewarm stays within both', async () => {
  dir = await makeTmpDir();
  const budget = 1 << 20;
  const src = path.join(dir, 'incoming.tmp');
  const maker = await openPm(path.join(dir, 'maker'));
  try {
    await makeFileWithFreePages(maker, src, 12_000);
  } finally {
    await maker.close();
  }
  const pm = await openPm(dir, { pageCacheBytesMax: budget });
  try {
    const ps = await pm.restorePartition(src, path.join(dir, 'part.ptn'), ID, 'meta');
    assert.ok(ps.fileBytes() > 2 * budget, `file of ${ps.fileBytes()} bytes, cache of ${budget}`);
    const reads = pm.stats.pageReads;
    assert.equal(await pm.prewarmPartition(ps, 1 << 30), 0, 'larger than the free room');
    assert.equal(await pm.prewarmPartition(ps, 10 * PAGE), 0, 'larger than the limit');
    assert.equal(pm.stats.pageReads, reads, 'nothing read');
    assert.equal(await ps.prewarm(10 * PAGE), 10 * PAGE);
    const room = budget - pm.stats.cachedBytes;
    const more = await ps.prewarm(1 << 30);
    assert.ok(more <= room && more > room - PAGE, `warmed ${more} of a room of ${room}`);
    assert.ok(pm.stats.cachedBytes <= budget, 'nothing beyond the budget');
    assert.equal(pm.stats.evictions, 0, 'nothing evicted for it');
    assert.equal(await ps.prewarm(1 << 30), 0, 'no room left');
  } finally {
    await pm.close();
  }
});

test('prewarms of several partitions at once share the free room and evict nothing', async () => {
  dir = await makeTmpDir();
  const budget = 1 << 20;
  const maker = await openPm(path.join(dir, 'maker'));
  const srcs = [0, 1, 2].map((i) => path.join(dir!, `incoming-${i}.tmp`));
  const ids = [0, 1, 2].map((i) => ({ ...ID, partition: i }));
  try {
    for (let i = 0; i < 3; i++) await makeFileWithFreePages(maker, srcs[i]!, 1500, 200, ids[i]);
  } finally {
    await maker.close();
  }
  const pm = await openPm(dir, { pageCacheBytesMax: budget });
  try {
    const parts = await Promise.all(srcs.map((src, i) => pm.restorePartition(src, path.join(dir!, `part-${i}.ptn`), ids[i]!, 'meta')));
    const room = budget - pm.stats.cachedBytes;
    for (const ps of parts) assert.ok(ps.fileBytes() <= room && 3 * ps.fileBytes() > room, `files of ${ps.fileBytes()} bytes, room ${room}`);
    const warmed = await Promise.all(parts.map((ps) => pm.prewarmPartition(ps, 1 << 30)));
    const total = warmed.reduce((a, b) => a + b, 0);
    assert.ok(total <= room && total > room - PAGE, `warmed ${warmed.join(' + ')} of a room of ${room}`);
    assert.equal(pm.stats.evictions, 0, 'nothing evicted for it');
  } finally {
    await pm.close();
  }
});

/** The index of the last page of `type` in the file image (the type byte sits at offset 4 of the header). */
function lastPageOfType(bytes: Buffer, type: number): number {
  for (let i = bytes.length / PAGE - 1; i > 0; i--) if (bytes[i * PAGE + 4] === type) return i;
  throw new Error(`no page of type ${type}`);
}

const corruptAt = (victim: number) => (e: { code?: string; details?: { pageIndex?: number } }) => e.code === 'ERR_PAGE_CORRUPT' && e.details?.pageIndex === victim;

/** A swapped-in file whose last page of `type` has one byte flipped at `offset`. */
async function swapInCorrupted(pm: PageMemory, type: number, offset: number) {
  const src = path.join(dir!, 'incoming.tmp');
  await makeFileWithFreePages(pm, src, 3000);
  const bytes = await fsp.readFile(src);
  const victim = lastPageOfType(bytes, type);
  bytes[victim * PAGE + offset]! ^= 0xff;
  await fsp.writeFile(src, bytes);
  return { ps: await pm.restorePartition(src, path.join(dir!, 'part.ptn'), ID, 'meta'), victim };
}

test('prewarm leaves a corrupt leaf out, so reading it still fails with ERR_PAGE_CORRUPT', async () => {
  dir = await makeTmpDir();
  const pm = await openPm(dir);
  try {
    const { ps, victim } = await swapInCorrupted(pm, PageType.LEAF, 2000);
    assert.ok((await pm.prewarmPartition(ps, 1 << 30)) > 0);
    await assert.rejects(snapshot(ps), corruptAt(victim));
  } finally {
    await pm.close();
  }
});

test('prewarm of a file with a corrupt free list fails with ERR_PAGE_CORRUPT, as the first write would', async () => {
  dir = await makeTmpDir();
  const pm = await openPm(dir);
  try {
    const { ps, victim } = await swapInCorrupted(pm, PageType.FREE_LIST, 100);
    await assert.rejects(pm.prewarmPartition(ps, 1 << 30), corruptAt(victim));
    await assert.rejects(put(pm, ps, 'k1', 9999, Buffer.from('x')), corruptAt(victim));
    assert.equal((await ps.get('k3'))!.value.length, 200, 'reads go on');
  } finally {
    await pm.close();
  }
});
