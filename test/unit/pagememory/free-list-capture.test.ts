import test from 'node:test';
import assert from 'node:assert/strict';
import { FreeSpace } from '../../../src/pagememory/free-list.js';

test('a capture never persists a free-list chain with no entries', () => {
  const fs = new FreeSpace(1, { head: 0, count: 0 });
  fs.allocate();
  const q = fs.allocate();
  fs.release(q); // allocated and freed in the same interval: free at once
  const c = fs.capture(4096);
  assert.equal(c.count, 1, 'the one free page is listed');
  assert.notEqual(c.head, 0);
  assert.deepEqual(c.listPages.map((p) => p.entries), [[q]]);
  assert.ok(!c.newListPages.includes(q), 'the listed page is not also the chain page');
});

test('captures with several free pages list all of them minus those used for the chain', () => {
  const fs = new FreeSpace(1, { head: 0, count: 0 });
  const pages = Array.from({ length: 5 }, () => fs.allocate());
  for (const p of pages) fs.release(p);
  const c = fs.capture(4096);
  assert.equal(c.listPages.length, 1);
  assert.equal(c.count, c.listPages[0]!.entries.length);
  assert.equal(c.count, 4);
  assert.ok(c.count > 0 && c.head !== 0);
});
