import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeFreeListPage, encodeFreeListPage, freeListCapacity, FreeSpace, readFreeListChain } from '../../../src/pagememory/free-list.js';
import { sealPage } from '../../../src/pagememory/page.js';

function loaded(pageCount: number): FreeSpace {
  return new FreeSpace(pageCount, { head: 0, count: 0 });
}

test('allocation appends pages when nothing is free', () => {
  const fs = loaded(5);
  assert.deepEqual([fs.allocate(), fs.allocate()], [5, 6]);
  assert.equal(fs.nextPageIndex, 7);
});

test('a page allocated and freed in the same interval is reusable at once', () => {
  const fs = loaded(5);
  const p = fs.allocate();
  fs.release(p);
  assert.equal(fs.freeCount, 1);
  assert.equal(fs.allocate(), p);
});

test('a page of the committed state freed now is reusable only after the next checkpoint commits', () => {
  const fs = loaded(10);
  fs.release(4);
  assert.equal(fs.pendingCount, 1);
  assert.equal(fs.allocate(), 10, 'not page 4');
  const cap = fs.capture(4096);
  assert.ok(cap.freshPages.has(10));
  assert.deepEqual(cap.listPages.map((l) => [l.index, l.entries]), [[11, [4]]], 'the list page is fresh and lists page 4');
  assert.equal(fs.allocate(), 12, 'still not page 4 while the checkpoint is in flight');
  fs.commit(cap);
  assert.equal(fs.allocate(), 4);
});

test('a page captured by a running checkpoint and freed afterwards waits for the checkpoint after', () => {
  const fs = loaded(10);
  const p = fs.allocate();
  const first = fs.capture(4096);
  fs.release(p); // referenced by the captured state
  fs.commit(first);
  assert.notEqual(fs.allocate(), p);
  const second = fs.capture(4096);
  fs.commit(second);
  assert.equal(fs.allocate(), p);
});

test('a capture persists the free set in free-list pages taken from free space; the old list pages are released at commit', () => {
  const fs = loaded(3000);
  for (let p = 1; p <= 1500; p++) fs.release(p);
  const a = fs.capture(4096);
  assert.equal(a.count, 1500);
  assert.deepEqual(a.listPages.map((l) => l.index), [3000, 3001], 'pending pages cannot hold the list: two fresh pages of 1018 entries');
  fs.commit(a);
  fs.allocate(); // the interval changed the free set: the next capture writes a new list…
  const a2 = fs.capture(4096);
  assert.ok(a2.listPages.every((lp) => lp.index < 3000), '…into pages that are free now');
  assert.equal(a2.count + a2.listPages.length, 1500 - 1 + 2, 'every free page but the list pages themselves, plus the old list');
  assert.equal(a.head, a.listPages[0]!.index);
  assert.equal(a.listPages[0]!.next, a.listPages[1]!.index);
  for (const lp of a.listPages) assert.ok(a.freshPages.has(lp.index));
  fs.commit(a2);
  assert.ok(a.listPages.every((lp) => a2.releaseAtCommit.includes(lp.index)), 'the old chain is released by the next list');
  fs.allocate();
  const b = fs.capture(4096);
  fs.commit(b);
  const nothing = fs.capture(4096);
  assert.deepEqual(nothing.listPages, [], 'no change, no new list');
  assert.equal(nothing.head, b.head);
});

test('free-list pages round-trip and a bad chain is ERR_FILE_FORMAT', async () => {
  const cap = freeListCapacity(4096);
  assert.equal(cap, 1018);
  const pages = new Map<number, Buffer>();
  const mk = (index: number, next: number, entries: number[]) => {
    const buf = Buffer.alloc(4096);
    encodeFreeListPage(buf, index, next, entries);
    sealPage(buf, index, 1);
    pages.set(index, buf);
  };
  mk(10, 11, [1, 2, 3]);
  mk(11, 0, [5, 6]);
  assert.deepEqual(decodeFreeListPage(pages.get(10)!), { next: 11, entries: [1, 2, 3] });
  const read = async (i: number) => pages.get(i)!;
  assert.deepEqual(await readFreeListChain(read, 10, 5, 20, 'f'), { listPages: [10, 11], entries: [1, 2, 3, 5, 6] });
  await assert.rejects(readFreeListChain(read, 10, 6, 20, 'f'), (e: { code?: string }) => e.code === 'ERR_FILE_FORMAT');
  mk(11, 0, [5, 3]);
  await assert.rejects(readFreeListChain(read, 10, 5, 20, 'f'), (e: { code?: string }) => e.code === 'ERR_FILE_FORMAT');
  mk(11, 10, [5, 6]);
  await assert.rejects(readFreeListChain(read, 10, 5, 20, 'f'), (e: { code?: string }) => e.code === 'ERR_FILE_FORMAT');
});
