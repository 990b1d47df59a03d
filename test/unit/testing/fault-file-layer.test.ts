import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { defaultConfig } from '../../../src/config.js';
import { fsError } from '../../../src/errors.js';
import { Store } from '../../../src/store/store.js';
import { FaultFileLayer, type FileFaultRule } from '../../../src/testing/index.js';
import { realFileLayer } from '../../../src/util/file-layer.js';
import { tempDir } from '../../helpers/tmp.js';

/** `n` bytes of a pattern that differs per `tag`, so torn and misplaced bytes show. */
function pattern(n: number, tag: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + tag * 7 + 1) & 0xff;
  return b;
}

function codeOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}

test('the Nth matching write fails with the chosen code, a real Error shaped like node\'s; the others pass', async (t) => {
  const dir = await tempDir(t);
  const fl = new FaultFileLayer(realFileLayer, [{ pathIncludes: 'a.dat', op: 'write', nth: 3, error: 'EIO' }]);
  const a = await fl.open(path.join(dir, 'a.dat'), 'w+');
  const b = await fl.open(path.join(dir, 'b.dat'), 'w+');
  t.after(() => Promise.all([a.close(), b.close()]));
  const outcomes: string[] = [];
  for (let i = 0; i < 5; i++) {
    await b.write(pattern(10, i), 0, 10, i * 10); // another path: never counted, never failed
    try {
      await a.write(pattern(10, i), 0, 10, i * 10);
      outcomes.push('ok');
    } catch (err) {
      assert.ok(err instanceof Error);
      const e = err as NodeJS.ErrnoException;
      assert.equal(e.code, 'EIO');
      assert.ok(typeof e.errno === 'number' && e.errno < 0);
      assert.equal(e.syscall, 'write');
      assert.equal(e.path, path.join(dir, 'a.dat'));
      assert.equal(fsError(err, 'writing a').code, 'ERR_IO');
      outcomes.push(e.code!);
    }
  }
  assert.deepEqual(outcomes, ['ok', 'ok', 'EIO', 'ok', 'ok']);
  const content = await fs.readFile(path.join(dir, 'a.dat'));
  assert.deepEqual(content.subarray(20, 30), Buffer.alloc(10), 'the failed write wrote nothing');
  assert.deepEqual(content.subarray(30, 40), pattern(10, 3));
  assert.equal((await fs.readFile(path.join(dir, 'b.dat'))).length, 50);
  assert.equal(fl.injectedCount, 1);
  assert.deepEqual(fl.injected(), [{ op: 'write', path: path.join(dir, 'a.dat'), code: 'EIO', bytesWritten: 0 }]);
});

test('a rule without nth fails every matching write, and ENOSPC maps to ERR_DISK_FULL', async (t) => {
  const dir = await tempDir(t);
  const fl = new FaultFileLayer(realFileLayer, [{ pathIncludes: '/wal/', op: 'write', error: 'ENOSPC' }]);
  await fl.mkdir(path.join(dir, 'wal'));
  const f = await fl.open(path.join(dir, 'wal', 'seg'), 'w+');
  t.after(() => f.close());
  for (let i = 0; i < 3; i++) {
    await assert.rejects(f.write(pattern(8, i), 0, 8, 0), (err: unknown) => {
      assert.equal(codeOf(err), 'ENOSPC');
      assert.equal(fsError(err, 'wal').code, 'ERR_DISK_FULL');
      return true;
    });
  }
  await assert.rejects(f.writev([pattern(4, 1), pattern(4, 2)], 0), { code: 'ENOSPC', syscall: 'writev' });
  assert.equal(await f.size(), 0);
});

test('with bytesMax the disk is full after N bytes: the crossing write writes what fits, later writes fail, freeBytes says 0', async (t) => {
  const dir = await tempDir(t);
  const fl = new FaultFileLayer(realFileLayer, [{ pathIncludes: '', op: 'write', bytesMax: 100 }]);
  const file = path.join(dir, 'f.dat');
  const f = await fl.open(file, 'w+');
  t.after(() => f.close());
  await f.write(pattern(60, 1), 0, 60, 0);
  assert.equal(await fl.freeBytes(dir), 40);
  await assert.rejects(f.write(pattern(60, 2), 0, 60, 60), { code: 'ENOSPC' });
  assert.equal(await f.size(), 100);
  assert.deepEqual((await fs.readFile(file)).subarray(60, 100), pattern(60, 2).subarray(0, 40));
  await assert.rejects(f.write(pattern(1, 3), 0, 1, 100), { code: 'ENOSPC' });
  await assert.rejects(f.writev([pattern(1, 3)], 100), { code: 'ENOSPC' });
  assert.equal(await fl.freeBytes(dir), 0);
  assert.deepEqual(
    fl.injected().map((i) => i.bytesWritten),
    [40, 0, 0],
  );
  // Space "returns": new rules, the same open file writes again.
  fl.setRules([]);
  await f.write(pattern(10, 4), 0, 10, 100);
  assert.equal(await f.size(), 110);
  assert.ok((await fl.freeBytes(dir)) > 110);
});

test('a torn write leaves exactly the first half (or bytesMax bytes) on disk, then fails with EIO', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'torn.dat');
  const fl = new FaultFileLayer(realFileLayer, [{ pathIncludes: 'torn', op: 'write', nth: 2, tear: true }]);
  const f = await fl.open(file, 'w+');
  t.after(() => f.close());
  await f.write(pattern(4096, 1), 0, 4096, 0);
  await assert.rejects(f.write(pattern(4096, 2), 0, 4096, 4096), { code: 'EIO' });
  const content = await fs.readFile(file);
  assert.equal(content.length, 4096 + 2048);
  assert.deepEqual(content.subarray(4096), pattern(4096, 2).subarray(0, 2048));
  assert.deepEqual(fl.injected()[0], { op: 'write', path: file, code: 'EIO', bytesWritten: 2048 });

  // writev tears across buffer boundaries; bytesMax sets the torn length.
  fl.setRules([{ pathIncludes: 'torn', op: 'write', tear: true, bytesMax: 1500 }]);
  await assert.rejects(f.writev([pattern(1000, 3), pattern(3000, 4)], 8192), { code: 'EIO' });
  const after = await fs.readFile(file);
  assert.equal(after.length, 8192 + 1500);
  assert.deepEqual(after.subarray(8192, 9192), pattern(1000, 3));
  assert.deepEqual(after.subarray(9192), pattern(3000, 4).subarray(0, 500));
});

test('setRules at run time reaches files opened before, and restarts the nth count', async (t) => {
  const dir = await tempDir(t);
  const fl = new FaultFileLayer();
  const f = await fl.open(path.join(dir, 'x.dat'), 'w+');
  t.after(() => f.close());
  await f.write(pattern(4, 1), 0, 4, 0);
  fl.setRules([{ pathIncludes: 'x.dat', op: 'write', nth: 2 }]);
  await f.write(pattern(4, 2), 0, 4, 4); // 1st since setRules
  await assert.rejects(f.write(pattern(4, 3), 0, 4, 8), { code: 'EIO' }); // 2nd
  await f.write(pattern(4, 4), 0, 4, 8);
  fl.setRules([{ pathIncludes: 'x.dat', op: 'write', nth: 2 }]);
  await f.write(pattern(4, 5), 0, 4, 12);
  await assert.rejects(f.write(pattern(4, 6), 0, 4, 16), { code: 'EIO' });
  assert.deepEqual(
    fl.rules().map((r) => r.seen),
    [2],
  );
});

test('sync, open and rename rules fail exactly those operations', async (t) => {
  const dir = await tempDir(t);
  const rules: FileFaultRule[] = [
    { pathIncludes: 's.dat', op: 'sync' },
    { pathIncludes: 'o.dat', op: 'open', nth: 1, error: 'ENOSPC' },
    { pathIncludes: 'target', op: 'rename' },
  ];
  const fl = new FaultFileLayer(realFileLayer, rules);
  const s = await fl.open(path.join(dir, 's.dat'), 'w+');
  t.after(() => s.close());
  await s.write(pattern(4, 1), 0, 4, 0); // writes are not covered by a sync rule
  await assert.rejects(s.sync(), { code: 'EIO', syscall: 'fsync' });
  await assert.rejects(s.datasync(), { code: 'EIO', syscall: 'fdatasync' });
  await assert.rejects(fl.open(path.join(dir, 'o.dat'), 'w+'), { code: 'ENOSPC', syscall: 'open' });
  assert.equal(await fl.exists(path.join(dir, 'o.dat')), false, 'a failed open creates nothing');
  const o = await fl.open(path.join(dir, 'o.dat'), 'w+'); // only the 1st open failed
  await o.sync();
  await o.close();
  await assert.rejects(fl.rename(path.join(dir, 'o.dat'), path.join(dir, 'target.dat')), { code: 'EIO', syscall: 'rename' });
  assert.equal(await fl.exists(path.join(dir, 'o.dat')), true, 'a failed rename moves nothing');
  await fl.rename(path.join(dir, 'o.dat'), path.join(dir, 'other.dat'));
  fl.setRules([{ pathIncludes: dir, op: 'sync' }]);
  await assert.rejects(fl.syncDir(dir), { code: 'EIO' });
});

test('rules the layer cannot honour are refused with ERR_CONFIG_INVALID', () => {
  const bad: FileFaultRule[] = [
    { pathIncludes: 'x', op: 'sync', tear: true },
    { pathIncludes: 'x', op: 'open', bytesMax: 10 },
    { pathIncludes: 'x', op: 'write', bytesMax: 10, nth: 2 },
    { pathIncludes: 'x', op: 'write', nth: 0 },
    { pathIncludes: 'x', op: 'delete' as never },
    { pathIncludes: 'x', op: 'write', error: 'EPERM' as never },
  ];
  for (const r of bad) assert.throws(() => new FaultFileLayer(realFileLayer, [r]), { code: 'ERR_CONFIG_INVALID' }, JSON.stringify(r));
});

test('a store on the fault layer fails a put with ERR_DISK_FULL when its WAL runs out of space, and still reads', async (t) => {
  const dir = await tempDir(t);
  const fl = new FaultFileLayer();
  const store = await Store.open({ config: defaultConfig({ dataDir: dir }), fileLayer: fl, periodicCheckpoints: false });
  t.after(() => store.close().catch(() => {}));
  await store.createCache({ name: 'c', partitions: 2, backups: 0 });
  await store.put('c', 'before', { valueKind: 0, value: Buffer.from('v1') });
  fl.setRules([{ pathIncludes: `${path.sep}wal${path.sep}`, op: 'write', error: 'ENOSPC' }]);
  await assert.rejects(store.put('c', 'after', { valueKind: 0, value: Buffer.from('v2') }), { code: 'ERR_DISK_FULL' });
  assert.ok(fl.injectedCount >= 1);
  assert.ok(fl.injected().every((i) => i.path.includes(`${path.sep}wal${path.sep}`)));
  const r = await store.get('c', 'before');
  assert.equal(r?.value.toString(), 'v1');
});
