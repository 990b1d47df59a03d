/**
 * Crash test of the storage engine: a child writes in fsync mode and is SIGKILLed at seeded
 * random points; after every kill the store is reopened and every acknowledged write must be
 * there with its latest value, and every page must read back clean (CRC-checked scans).
 * A failure prints the seed; rerun with PTN_SEED=<seed>.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultConfig } from '../../src/config.js';
import { Store } from '../../src/store/store.js';
import { rng, tempDir, testSeed } from '../helpers/tmp.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const WRITER = path.join(here, '..', 'helpers', 'crash-writer.ts');
const KILLS = Number(process.env.PTN_CRASH_KILLS ?? 20);

interface Ack {
  counter: number;
  op: 'put' | 'remove';
  sha1: string;
  run: number;
}

/** Per key: the latest acknowledged write, and the runs in which a remove was started but not acknowledged. */
interface Model {
  latest: Map<string, Ack>;
  unackedRemoveRuns: Map<string, Set<number>>;
}

/** Runs the writer until it has acknowledged `acks` writes (plus a little), then SIGKILLs it. */
function runAndKill(dataDir: string, seed: number, acks: number, extraMs: number, model: Model, run: number): Promise<number> {
  const startedRemoves = new Map<string, number>();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', WRITER, dataDir, String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    let seen = 0;
    let killing = false;
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith('S ')) {
          const [, key, op] = line.split(' ');
          if (op === 'remove') startedRemoves.set(key!, (startedRemoves.get(key!) ?? 0) + 1);
          continue;
        }
        if (!line.startsWith('A ')) continue;
        const [, key, counter, op, sha1] = line.split(' ');
        if (op === 'remove') startedRemoves.set(key!, startedRemoves.get(key!)! - 1);
        const prev = model.latest.get(key!);
        if (!prev || prev.counter < Number(counter)) model.latest.set(key!, { counter: Number(counter), op: op as Ack['op'], sha1: sha1!, run });
        seen++;
        if (seen >= acks && !killing) {
          killing = true;
          setTimeout(() => child.kill('SIGKILL'), extraMs);
        }
      }
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      for (const [key, n] of startedRemoves) {
        if (n <= 0) continue;
        const runs = model.unackedRemoveRuns.get(key) ?? new Set<number>();
        runs.add(run);
        model.unackedRemoveRuns.set(key, runs);
      }
      if (signal === 'SIGKILL' && killing) resolve(seen);
      else reject(new Error(`writer exited early (code ${code}, signal ${signal}): ${stderr.slice(-2000)}`));
    });
  });
}

async function checkStore(dataDir: string, model: Model): Promise<void> {
  const store = await Store.open({ config: defaultConfig({ dataDir, storage: { pageCacheBytesMax: 1024 * 1024 } }), periodicCheckpoints: false });
  try {
    const def = store.cache('c');
    for (const [key, ack] of model.latest) {
      const p = store.partitionOf('c', key);
      const e = await store.getEntry(def.cacheId, p, key);
      if (!e) {
        // Gone is right after an acknowledged remove, or when a remove started in the same or a
        // later run was never acknowledged (it may have happened, its tombstone since purged).
        const removedLater = [...(model.unackedRemoveRuns.get(key) ?? [])].some((r) => r >= ack.run);
        assert.ok(ack.op === 'remove' || removedLater, `acknowledged put of ${key} (counter ${ack.counter}) is missing`);
        continue;
      }
      assert.ok(e.counter >= ack.counter, `${key}: stored counter ${e.counter} < acknowledged ${ack.counter}`);
      if (e.counter === ack.counter) {
        assert.equal(e.tombstone, ack.op === 'remove', `${key}: wrong operation at counter ${ack.counter}`);
        if (!e.tombstone) assert.equal(createHash('sha1').update(e.value).digest('hex'), ack.sha1, `${key}: wrong value at counter ${ack.counter}`);
      }
    }
    // Every page of every partition reads back clean, in key order.
    for (const p of store.localPartitions(def.cacheId)) {
      let prev: string | undefined;
      for await (const e of store.scan(def.cacheId, p, { includeTombstones: true })) {
        if (prev !== undefined) assert.ok(Buffer.compare(Buffer.from(prev), Buffer.from(e.key)) < 0, 'scan out of order');
        prev = e.key;
      }
    }
  } finally {
    await store.close();
  }
}

test(`every acknowledged write survives ${KILLS} SIGKILLs of a writer in fsync mode`, async (t) => {
  const seed = testSeed();
  const dir = await tempDir(t);
  const r = rng(seed);
  const model: Model = { latest: new Map(), unackedRemoveRuns: new Map() };
  let total = 0;
  try {
    for (let i = 0; i < KILLS; i++) {
      const acks = 20 + Math.floor(r() * 400);
      const extraMs = Math.floor(r() * 40);
      total += await runAndKill(dir, Math.floor(r() * 2 ** 31), acks, extraMs, model, i);
      await checkStore(dir, model);
    }
  } catch (err) {
    console.error(`storage crash test failed; rerun with PTN_SEED=${seed}`);
    throw err;
  }
  assert.ok(total >= KILLS * 20);
  t.diagnostic(`seed ${seed}: ${KILLS} kills, ${total} acknowledged writes, ${model.latest.size} keys checked`);
});
