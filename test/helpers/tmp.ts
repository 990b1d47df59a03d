/**
 * Temp directories for tests, removed after the test (also when it fails).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';

/** Makes a temp dir that is removed when the test (or suite) ends. */
export async function tempDir(t: TestContext | { after: (fn: () => unknown) => void }, prefix = 'ptn-'): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

export { seededRandom as rng } from '../../src/util/seeded-random.js';

/** The seed for a randomized test: PTN_SEED when set, else a fresh one. Printed on failure by callers. */
export function testSeed(): number {
  const env = process.env.PTN_SEED;
  return env ? Number(env) : Math.floor(Math.random() * 2 ** 31);
}
