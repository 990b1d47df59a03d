#!/usr/bin/env node
// Runs N random fault schedules (test/fault/random-schedule.test.ts), one child process per seed,
// and prints a summary table: seed, faults fired, faults armed and topology events, outcome.
//
//   npm run test:fault -- --seeds 20          # 20 fresh seeds
//   PTN_SEED=123 npm run test:fault -- --seeds 1   # rerun one seed
//
// A failing seed prints the tail of its output and the command that reruns it; exit status 1.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// Also part of `npm test` (2 fresh seeds there); here one seed per child process.
const TEST_FILE = 'test/fault/random-schedule.test.ts';
const OUTPUT_TAIL_LINES = 60;

function parseSeeds(argv) {
  const i = argv.indexOf('--seeds');
  const raw = i >= 0 ? argv[i + 1] : argv.find((a) => a.startsWith('--seeds='))?.slice('--seeds='.length);
  const n = raw === undefined ? 1 : Number(raw);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`usage: npm run test:fault -- --seeds N   (N >= 1, got ${raw})`);
    process.exit(2);
  }
  return n;
}

const count = parseSeeds(process.argv.slice(2));
const fixed = process.env.PTN_SEED;
const seeds = Array.from({ length: count }, (_, i) => (fixed !== undefined && i === 0 ? Number(fixed) : Math.floor(Math.random() * 2 ** 31)));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptn-fault-'));
const rows = [];
try {
  for (const [i, seed] of seeds.entries()) {
    const summary = path.join(dir, `${seed}.jsonl`);
    process.stdout.write(`[${i + 1}/${seeds.length}] seed ${seed} … `);
    const env = { ...process.env, PTN_SEED: String(seed), PTN_FAULT_SUMMARY: summary };
    const res = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-timeout=900000', '--test-reporter=spec', TEST_FILE], { env, encoding: 'utf8', maxBuffer: 64 << 20 });
    const line = fs.existsSync(summary) ? JSON.parse(fs.readFileSync(summary, 'utf8').trim().split('\n').pop()) : undefined;
    const ok = res.status === 0;
    const outcome = ok ? 'pass' : (line?.outcome ?? `FAIL (exit ${res.status ?? res.signal})`);
    rows.push({ seed, fired: line?.fired ?? '?', armed: line?.faults?.length ?? '?', outcome, faults: line?.faults ?? [] });
    console.log(ok ? 'pass' : 'FAIL');
    if (!ok) {
      const out = `${res.stdout}\n${res.stderr}`.trimEnd().split('\n').slice(-OUTPUT_TAIL_LINES).join('\n');
      console.log(`${out}\n--- seed ${seed} failed; rerun: PTN_SEED=${seed} npm run test:fault -- --seeds 1\n`);
    }
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}

const header = ['seed', 'fired', 'armed+events', 'outcome'];
const table = [header, ...rows.map((r) => [String(r.seed), String(r.fired), String(r.armed), r.outcome])];
const widths = header.map((_, c) => Math.max(...table.map((row) => row[c].length)));
console.log('');
for (const row of table) console.log(row.map((cell, c) => (c === 3 ? cell : cell.padEnd(widths[c]))).join('  '));
const failed = rows.filter((r) => r.outcome !== 'pass');
console.log(`\n${rows.length - failed.length}/${rows.length} schedules passed`);
for (const r of failed) console.log(`rerun: PTN_SEED=${r.seed} npm run test:fault -- --seeds 1`);
process.exit(failed.length === 0 ? 0 : 1);
