// The progress tracker behind `ptn rebalance watch` (copies and bytes across refreshes, the
// aggregate rate) and its renderers (bars, terminal frame, plain line, summary).
import test from 'node:test';
import assert from 'node:assert/strict';
import {
  BAR_CHARS,
  ProgressTracker,
  TASK_BARS_MAX,
  fitLine,
  overallLine,
  renderBar,
  renderFrame,
  renderPlainLine,
  renderSummary,
  taskFraction,
  type ProgressSnapshot,
} from '../../../src/cli/progress.js';
import { normalizeTask } from '../../../src/cli/status-format.js';
import { fileTask, legacyTask, statusWith } from './rebalance-fixtures.js';

const MB = 1_000_000;

test('copies done grow with every drop of partitionsLeft and the total with new work, never shrinking', () => {
  const tr = new ProgressTracker();
  let s = tr.update(statusWith([], 4), 0);
  assert.deepEqual([s.copiesDone, s.copiesLeft, s.copiesTotal, s.done], [0, 4, 4, false]);
  s = tr.update(statusWith([], 3), 500);
  assert.deepEqual([s.copiesDone, s.copiesLeft, s.copiesTotal], [1, 3, 4]);
  // A node joins mid-watch: 5 more copies to build.
  s = tr.update(statusWith([], 8), 1000);
  assert.deepEqual([s.copiesDone, s.copiesLeft, s.copiesTotal], [1, 8, 9]);
  s = tr.update(statusWith([], 2), 1500);
  assert.deepEqual([s.copiesDone, s.copiesLeft, s.copiesTotal], [7, 2, 9]);
  s = tr.update(statusWith([], 0), 2000);
  assert.deepEqual([s.copiesDone, s.copiesLeft, s.copiesTotal, s.done, s.elapsedMs], [9, 0, 9, true, 2000]);
});

test('when rebalanced the overall count ends full even if a copy vanished without finishing', () => {
  const tr = new ProgressTracker();
  tr.update(statusWith([], 4), 0);
  // Two MOVING copies disappear with their node: left drops, but the status is not done yet.
  tr.update(statusWith([], 2), 100);
  const s = tr.update(statusWith([], 0), 200);
  assert.equal(s.copiesDone, s.copiesTotal);
});

test('partitionsLeft missing falls back to counting MOVING copies in the map', () => {
  const st = statusWith([], 3);
  delete st.rebalance;
  assert.equal(new ProgressTracker().update(st, 0).copiesLeft, 3);
});

test('bytes: a task that leaves the list counts whole, a restart counts its resent bytes, the rate is over the window', () => {
  const tr = new ProgressTracker({ rateWindowMs: 2000 });
  const a = (bytesDone: number, phase = 'STREAMING') => fileTask({ partition: 1, bytesDone, bytesTotal: 4 * MB, phase });
  const b = (bytesDone: number) => fileTask({ partition: 2, bytesDone, bytesTotal: 2 * MB });
  let s = tr.update(statusWith([a(1 * MB), b(0)], 2), 0);
  assert.deepEqual([s.bytesDone, s.bytesTotal, s.bytesTotalKnown, s.bytesMoved, s.mbPerSec], [1 * MB, 6 * MB, true, 0, undefined]);
  s = tr.update(statusWith([a(2 * MB), b(1 * MB)], 1), 1000);
  assert.deepEqual([s.bytesDone, s.bytesMoved, s.mbPerSec], [3 * MB, 2 * MB, 2]);
  // b is gone (finished): its last MB counts; a started over at 0.5 MB: those were sent again.
  s = tr.update(statusWith([a(0.5 * MB)], 1), 2000);
  assert.deepEqual([s.bytesDone, s.bytesMoved], [2.5 * MB, 3.5 * MB]);
  assert.equal(s.mbPerSec, 3.5 / 2);
  s = tr.update(statusWith([a(4 * MB, 'SWAPPING')], 1), 3000);
  assert.deepEqual([s.bytesDone, s.bytesMoved], [6 * MB, 7 * MB]);
  // The window now starts at the refresh of t=1000 (2 MB moved by then).
  assert.equal(s.mbPerSec, (7 - 2) / 2);
});

test('a total stays unknown while a running task has not said its size; a finished task without one counts what it moved', () => {
  const tr = new ProgressTracker();
  let s = tr.update(statusWith([fileTask({ partition: 1, bytesTotal: 0, bytesDone: 0, phase: 'PENDING' }), fileTask({ partition: 2 })], 2), 0);
  assert.equal(s.bytesTotalKnown, false);
  s = tr.update(statusWith([fileTask({ partition: 1, bytesTotal: 1 * MB, bytesDone: 0 }), fileTask({ partition: 2 })], 2), 500);
  assert.deepEqual([s.bytesTotalKnown, s.bytesTotal], [true, 1 * MB + 8_388_608]);
  const tr2 = new ProgressTracker();
  s = tr2.update(statusWith([legacyTask({ partition: 1 }), fileTask({ partition: 2 })], 2), 0);
  assert.equal(s.bytesTotalKnown, false);
  s = tr2.update(statusWith([fileTask({ partition: 2 })], 1), 500);
  assert.deepEqual([s.bytesTotalKnown, s.bytesDone, s.bytesTotal], [true, 40_960 + 3_000_000, 40_960 + 8_388_608]);
});

test('with a cache filter only that cache counts, and it is done when that cache has no MOVING copy', () => {
  const st = (movingInB: number, clusterMoving: boolean) => {
    const s = statusWith([fileTask({ cache: 'a' }), fileTask({ cache: 'b', partition: 3 })], movingInB, {}, 'b');
    s.partitions.a = [{ partition: 0, primary: 'node-1', copies: { 'node-1': 'OWNING', 'node-2': clusterMoving ? 'MOVING' : 'OWNING' } }];
    s.rebalanced = false;
    s.rebalance!.partitionsLeft = movingInB + (clusterMoving ? 1 : 0);
    return s;
  };
  const tr = new ProgressTracker({ cache: 'b' });
  let s = tr.update(st(2, true), 0);
  assert.deepEqual([s.copiesLeft, s.tasks.map((t) => t.cache)], [2, ['b']]);
  s = tr.update(st(0, true), 500);
  assert.equal(s.done, true, 'cache b is done although cache a still moves');
  assert.equal(s.copiesDone, 2);
});

test('the snapshot lists unfinished tasks only, active before waiting', () => {
  const s = new ProgressTracker().update(
    statusWith([fileTask({ partition: 1, phase: 'PENDING' }), fileTask({ partition: 2, phase: 'OWNING' }), legacyTask({ state: 'done' }), fileTask({ partition: 9 })], 3),
    0,
  );
  assert.deepEqual(s.tasks.map((t) => `${t.partition}:${t.phase}`), ['9:STREAMING', '1:PENDING']);
});

test('bars have a fixed width, clamp to 0..1 and are empty when the fraction is unknown', () => {
  assert.equal(renderBar(0.5, 10), '█████░░░░░');
  assert.equal(renderBar(0.999, 10), '█████████░');
  assert.equal(renderBar(2, 4), '████');
  assert.equal(renderBar(-1, 4), '░░░░');
  assert.equal(renderBar(undefined, 4), '░░░░');
  assert.equal(renderBar(Number.NaN).length, BAR_CHARS);
});

test('a task is full once past streaming, by bytes while streaming, unknown without a total', () => {
  const f = (o: Record<string, unknown>) => taskFraction(normalizeTask(fileTask(o))!);
  assert.equal(f({}), 3_000_000 / 8_388_608);
  assert.equal(f({ phase: 'REPLAYING' }), 1);
  assert.equal(f({ phase: 'PENDING', bytesTotal: 0, bytesDone: 0 }), undefined);
  assert.equal(taskFraction(normalizeTask(legacyTask())!), undefined);
  assert.equal(f({ path: 'full', phase: 'INDEXING', bytesTotal: 0 }), undefined);
});

function snapshot(over: Partial<ProgressSnapshot> = {}): ProgressSnapshot {
  return {
    elapsedMs: 12_300,
    done: false,
    copiesDone: 3,
    copiesLeft: 9,
    copiesTotal: 12,
    bytesDone: 30 * MB,
    bytesTotal: 120 * MB,
    bytesTotalKnown: true,
    bytesMoved: 25 * MB,
    mbPerSec: 85.25,
    tasks: [],
    topologyVersion: 9,
    nodeCount: 3,
    ...over,
  };
}

test('the overall line shows the copies bar, copies, bytes, rate and elapsed time', () => {
  assert.equal(overallLine(snapshot(), 8), 'overall ██░░░░░░  25%  3/12 copies  30.0 MB/120.0 MB  85.3 MB/s  elapsed 12s');
  assert.equal(overallLine(snapshot({ bytesTotalKnown: false, mbPerSec: undefined }), 8), 'overall ██░░░░░░  25%  3/12 copies  30.0 MB  - MB/s  elapsed 12s');
});

test('a frame shows a heading, the overall bar and at most TASK_BARS_MAX partition rows, then "+N more"', () => {
  const tasks = Array.from({ length: TASK_BARS_MAX + 3 }, (_, p) => normalizeTask(fileTask({ partition: p, replayLagRecords: p === 0 ? 40 : 0, restarts: 0 }))!);
  const lines = renderFrame(snapshot({ tasks }), { heading: 'watching x' });
  assert.equal(lines[0], 'watching x');
  assert.match(lines[1]!, /^overall /);
  assert.match(lines[2]!, /^PARTITION\s+NODE\s+FROM\s+PATH\s+PHASE\s+PROGRESS\s+BYTES\s+MB\/S\s+ETA\s+NOTE$/);
  const rows = lines.slice(3, -1);
  assert.equal(rows.length, TASK_BARS_MAX);
  assert.match(rows[0]!, /^default\/0\s+node-3\s+node-1\s+file\s+STREAMING\s+█{8}░{16}\s+35%\s+3\.0 MB\/8\.4 MB\s+25\.5\s+4\.2s\s+lag 40$/);
  const barAt = lines[2]!.indexOf('PROGRESS');
  for (const r of rows) assert.equal(r.indexOf('█'), barAt, 'bars start under PROGRESS');
  assert.equal(lines.at(-1), '+3 more');
});

test('frame lines are cut to the terminal width so they never wrap', () => {
  const tasks = [normalizeTask(fileTask({ error: 'x'.repeat(300) }))!];
  const lines = renderFrame(snapshot({ tasks }), { columns: 60 });
  for (const l of lines) assert.ok(l.length <= 59, `${l.length}: ${l}`);
  assert.ok(lines.some((l) => l.endsWith('…')));
  assert.equal(fitLine('short', 60), 'short');
  assert.equal(fitLine('abcdef', undefined), 'abcdef');
});

test('a frame without tasks says whether it is waiting or finished', () => {
  assert.equal(renderFrame(snapshot())[1], 'no task running yet');
  assert.equal(renderFrame(snapshot({ done: true }))[1], 'no task left');
});

test('the plain line names progress, bytes, rate and the first tasks, without control characters', () => {
  const tasks = [fileTask(), legacyTask(), fileTask({ partition: 8, phase: 'PENDING', bytesTotal: 0, bytesDone: 0 }), fileTask({ partition: 9 }), fileTask({ partition: 10 }), fileTask({ partition: 11 })].map((t) => normalizeTask(t)!);
  const line = renderPlainLine(snapshot({ tasks }));
  assert.equal(
    line,
    '[12s] partitions 3/12 done, 9 left; 30.0 MB/120.0 MB; 85.3 MB/s; tasks: default/7@node-3 STREAMING 35%, default/3@node-2 running, default/8@node-3 PENDING, default/9@node-3 STREAMING 35%, +2 more',
  );
  assert.doesNotMatch(line, /[\x00-\x1f]/);
  assert.match(renderPlainLine(snapshot()), /; tasks: none$/);
});

test('the summary gives copies, bytes, time and the average rate of the bytes moved while watching', () => {
  assert.equal(renderSummary(snapshot({ copiesDone: 12, copiesLeft: 0, done: true, elapsedMs: 10_000 })), 'rebalanced: 12/12 copies, 30.0 MB in 10s, 2.50 MB/s average');
  assert.equal(renderSummary(snapshot({ copiesDone: 12, bytesMoved: 0, elapsedMs: 0 })), 'rebalanced: 12/12 copies, 30.0 MB in 0.00s');
});
