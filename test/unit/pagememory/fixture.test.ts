import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkpoint, collect, makeTmpDir, openPm, put, removeDir } from './pm-helpers.js';

const FIXTURE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../fixtures/partition-v1');

interface ExpectedEntry {
  key: string;
  counter: number;
  tombstone: boolean;
  valueKind: number;
  valueBytes: number;
  valueBase64?: string;
  valueSha256?: string;
}

let dir: string | undefined;
afterEach(async () => {
  await removeDir(dir);
  dir = undefined;
});

test('the committed v1 partition file opens from a copy and holds the expected entries', async () => {
  const expected = JSON.parse(await fsp.readFile(path.join(FIXTURE_DIR, 'expected.json'), 'utf8'));
  dir = await makeTmpDir();
  const copy = path.join(dir, 'partition.ptn');
  await fsp.copyFile(path.join(FIXTURE_DIR, 'partition.ptn'), copy);
  const pm = await openPm(dir);
  try {
    // Every page in use passes its check (swap-in with full verification of a second copy).
    await fsp.copyFile(copy, path.join(dir, 'incoming.tmp'));
    const verified = await pm.restorePartition(path.join(dir, 'incoming.tmp'), path.join(dir, 'verified.ptn'), expected.identity, 'full');
    await pm.destroyPartition(verified, { deleteFile: true });

    const ps = await pm.openPartition(copy, expected.identity);
    assert.equal(ps.pageSize, expected.pageSize);
    assert.deepEqual(ps.counter.toJSON(), expected.counter);
    assert.equal(ps.entryCount, expected.entryCount);
    assert.deepEqual(ps.committed(), expected.committed);
    const all = await collect(ps.scan({ includeTombstones: true }));
    assert.deepEqual(all.map((e) => e.key), expected.entries.map((e: ExpectedEntry) => e.key));
    for (const [i, want] of (expected.entries as ExpectedEntry[]).entries()) {
      const got = all[i]!;
      assert.equal(got.counter, want.counter, want.key);
      assert.equal(got.tombstone, want.tombstone, want.key);
      assert.equal(got.valueKind, want.valueKind, want.key);
      assert.equal(got.value.length, want.valueBytes, want.key);
      if (want.valueBase64 !== undefined) assert.equal(got.value.toString('base64'), want.valueBase64, want.key);
      else assert.equal(createHash('sha256').update(got.value).digest('hex'), want.valueSha256, want.key);
      const one = await ps.get(want.key);
      assert.equal(one?.counter, want.counter);
    }
    assert.ok(all.some((e) => e.tombstone) && all.some((e) => e.value.length > 4096), 'the fixture covers tombstones and overflow values');
    // An old file keeps working: it takes writes (reusing its free pages) and checkpoints.
    await put(pm, ps, 'fixture-new', expected.counter.hwm + 1, Buffer.alloc(6000, 1));
    await checkpoint(pm);
    assert.equal(ps.committed().fileBytes, expected.committed.fileBytes, 'the freed chain pages were reused');
  } finally {
    await pm.close();
  }
});
