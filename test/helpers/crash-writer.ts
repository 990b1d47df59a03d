/**
 * Child process of the storage crash test: opens a store in fsync mode and writes forever,
 * printing a line before every write it starts (`S <key> <op>`) and one per ACKNOWLEDGED write
 * (`A <key> <counter> <op> <sha1 of value | ->`). A write that was started but never acknowledged
 * may or may not have happened; the checker needs the `S` lines to allow for unacknowledged removes.
 * The parent SIGKILLs it at a seeded point and checks every acknowledged write after reopening.
 *
 * argv: dataDir seed
 */
import { createHash } from 'node:crypto';
import { defaultConfig } from '../../src/config.js';
import { Store } from '../../src/store/store.js';
import { rng } from './tmp.js';

const [dataDir, seedText] = process.argv.slice(2);
const seed = Number(seedText);
const r = rng(seed);
const store = await Store.open({
  config: defaultConfig({
    dataDir: dataDir!,
    // A small cache and frequent checkpoints so kills land in evictions and mid-checkpoint too.
    storage: { pageCacheBytesMax: 1024 * 1024, checkpointIntervalMs: 150, checkpointDirtyRatio: 0.3 },
    wal: { durability: 'fsync', segmentBytes: 256 * 1024, historyBytesMax: 0 },
  }),
});
if (!store.hasCache('c')) await store.createCache({ name: 'c', partitions: 4, backups: 0 });
process.stdout.write('READY\n');

let seq = 0;
async function writer(): Promise<void> {
  for (;;) {
    const key = `k${Math.floor(r() * 400)}`;
    if (r() < 0.1) {
      process.stdout.write(`S ${key} remove\n`);
      const { counter } = await store.remove('c', key);
      process.stdout.write(`A ${key} ${counter} remove -\n`);
    } else {
      const size = r() < 0.05 ? 6000 + Math.floor(r() * 20000) : 10 + Math.floor(r() * 2000);
      const value = Buffer.alloc(size, `${seed}:${seq++}:`);
      process.stdout.write(`S ${key} put\n`);
      const { counter } = await store.put('c', key, { valueKind: 0, value });
      process.stdout.write(`A ${key} ${counter} put ${createHash('sha1').update(value).digest('hex')}\n`);
    }
  }
}
await Promise.all(Array.from({ length: 8 }, () => writer()));
