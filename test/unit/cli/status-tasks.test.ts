// The rebalance task table of `ptn status`: both task shapes, column content and alignment,
// sorting, and the formatting of bytes, rates, ETAs and phase times.
import test from 'node:test';
import assert from 'node:assert/strict';
import {
  REASON_CHARS_MAX,
  TASK_COLUMNS,
  formatBytes,
  formatClock,
  formatDuration,
  formatPhaseTimes,
  formatRate,
  formatStatus,
  formatTaskTable,
  normalizeTask,
  rebalanceLine,
  sortTasks,
  taskStage,
  type RebalanceTask,
} from '../../../src/cli/status-format.js';
import { T0, fileTask, legacyTask, statusWith } from './rebalance-fixtures.js';

/** Splits a table into rows of cells by the header's column starts (cells may hold single spaces). */
function cells(table: string): { header: string; rows: Record<string, string>[] } {
  const lines = table.trimEnd().split('\n');
  const header = lines[0]!;
  const starts = TASK_COLUMNS.map((c) => header.indexOf(c));
  const rows = lines.slice(1).filter((l) => !l.startsWith('  ')).map((l) => {
    const row: Record<string, string> = {};
    TASK_COLUMNS.forEach((c, i) => (row[c] = l.slice(starts[i], i + 1 < starts.length ? starts[i + 1] : undefined).trim()));
    return row;
  });
  return { header, rows };
}

test('a file-path task is read as the node reports it', () => {
  const t = normalizeTask(fileTask())!;
  assert.equal(t.node, 'node-3');
  assert.equal(t.phase, 'STREAMING');
  assert.equal(t.bytesDone, 3_000_000);
  assert.equal(t.bytesTotal, 8_388_608);
  assert.equal(t.mbPerSec, 25.5);
  assert.deepEqual(t.phaseTimes, { STREAMING: T0 + 400, PENDING: T0 });
});

test('an older full-path task maps state to phase, bytes to bytesDone and its start/end to phase times', () => {
  const running = normalizeTask(legacyTask())!;
  assert.equal(running.phase, 'running');
  assert.equal(running.bytesDone, 40_960);
  assert.equal(running.bytesTotal, undefined);
  assert.equal(running.entries, 120);
  assert.deepEqual(running.phaseTimes, { running: T0 });
  const done = normalizeTask(legacyTask({ state: 'done', finishedAt: T0 + 2500 }))!;
  assert.deepEqual(done.phaseTimes, { running: T0, done: T0 + 2500 });
  const failed = normalizeTask(legacyTask({ state: 'failed', finishedAt: T0 + 100, error: 'supplier gone' }))!;
  assert.deepEqual(failed.phaseTimes, { running: T0, failed: T0 + 100 });
  assert.equal(failed.error, 'supplier gone');
});

test('a total of 0 or one already passed is unknown, and wrongly typed fields are dropped', () => {
  assert.equal(normalizeTask(fileTask({ bytesTotal: 0 }))!.bytesTotal, undefined);
  assert.equal(normalizeTask(fileTask({ bytesDone: 78_762, bytesTotal: 4096 }))!.bytesTotal, undefined);
  const t = normalizeTask(fileTask({ mbPerSec: 'fast', etaSec: Number.NaN, supplier: 42, phaseTimes: { PENDING: T0, STREAMING: 'soon' } }))!;
  assert.equal(t.mbPerSec, undefined);
  assert.equal(t.etaSec, undefined);
  assert.equal(t.supplier, undefined);
  assert.deepEqual(t.phaseTimes, { PENDING: T0 });
});

test('something without cache and partition is not a task', () => {
  assert.equal(normalizeTask(null), undefined);
  assert.equal(normalizeTask('STREAMING'), undefined);
  assert.equal(normalizeTask({ cache: 'default' }), undefined);
  assert.equal(normalizeTask({ partition: 1 }), undefined);
  assert.equal(normalizeTask({ cache: 'default', partition: 1 })!.phase, '?');
});

test('phases are grouped into active, waiting and finished, unknown ones counting as active', () => {
  for (const p of ['STREAMING', 'SWAPPING', 'FILLING', 'INDEXING', 'REPLAYING', 'HISTORICAL', 'running', 'SOMETHING_NEW']) assert.equal(taskStage(p), 'active', p);
  for (const p of ['PENDING', 'queued', 'FAILED', 'failed']) assert.equal(taskStage(p), 'waiting', p);
  for (const p of ['OWNING', 'done', 'CANCELLED']) assert.equal(taskStage(p), 'finished', p);
});

test('tasks sort active first, then waiting, then finished, each by cache, partition and node', () => {
  const t = (cache: string, partition: number, phase: string, node = 'node-3') => normalizeTask({ cache, partition, phase, node })!;
  const sorted = sortTasks([t('default', 1, 'OWNING'), t('b', 9, 'PENDING'), t('default', 2, 'REPLAYING', 'node-4'), t('default', 2, 'STREAMING', 'node-2'), t('a', 5, 'FAILED'), t('default', 0, 'running')]);
  assert.deepEqual(
    sorted.map((x) => `${x.cache}/${x.partition}@${x.node}:${x.phase}`),
    ['default/0@node-3:running', 'default/2@node-2:STREAMING', 'default/2@node-4:REPLAYING', 'a/5@node-3:FAILED', 'b/9@node-3:PENDING', 'default/1@node-3:OWNING'],
  );
});

test('the task table shows every column for a file task and what is there for an older full task', () => {
  const { header, rows } = cells(formatTaskTable([legacyTask(), fileTask()]));
  assert.equal(header.replace(/\s+/g, ' '), TASK_COLUMNS.join(' '));
  assert.equal(rows.length, 2);
  // Both are active: same stage, so default/3 sorts before default/7.
  assert.deepEqual(rows[0], {
    NODE: 'node-2', CACHE: 'default', PART: '3', PATH: 'full', SUPPLIER: 'node-1', PHASE: 'running', BYTES: '41.0 kB', 'MB/S': '-', ETA: '-',
    'TEMP-WAL': '-', LAG: '-', RESTARTS: '0', 'PHASE TIMES': `running ${formatClock(T0)}`, REASON: '-',
  });
  assert.deepEqual(rows[1], {
    NODE: 'node-3', CACHE: 'default', PART: '7', PATH: 'file', SUPPLIER: 'node-1', PHASE: 'STREAMING', BYTES: '3.0 MB/8.4 MB', 'MB/S': '25.5', ETA: '4.2s',
    'TEMP-WAL': '65.5 kB', LAG: '12', RESTARTS: '1', 'PHASE TIMES': `PENDING ${formatClock(T0)} STREAMING +0.40s`, REASON: 'partition file of 8388608 bytes is at o…',
  });
});

test('task table columns line up: every cell starts under its header', () => {
  const table = formatTaskTable([fileTask({ partition: 123, supplier: 'a-much-longer-node-name' }), legacyTask(), fileTask({ node: 'n', phase: 'PENDING', bytesDone: 0, bytesTotal: 0 })]);
  const lines = table.trimEnd().split('\n');
  const starts = TASK_COLUMNS.map((c) => lines[0]!.indexOf(c));
  assert.ok(starts.every((s, i) => i === 0 || s > starts[i - 1]!), 'header columns in order');
  for (const l of lines.slice(1)) {
    for (const s of starts.slice(1)) {
      assert.equal(l[s - 1], ' ', `a blank before column at ${s} in ${JSON.stringify(l)}`);
      assert.notEqual(l[s], ' ', `a cell starts at ${s} in ${JSON.stringify(l)}`);
    }
    assert.equal(l, l.trimEnd(), 'no trailing blanks');
  }
});

test('a long reason is cut with an ellipsis, errors follow the table, and a non-task is printed as JSON', () => {
  const long = 'x'.repeat(100);
  const text = formatTaskTable([fileTask({ reason: long, error: 'supplier node-1 is gone;\nfailing over' }), 17]);
  const { rows } = cells(text);
  assert.equal(rows[0]!.REASON, `${'x'.repeat(REASON_CHARS_MAX - 1)}…`);
  assert.ok(text.includes('\n  error node-3 default/7: supplier node-1 is gone; failing over\n'));
  assert.ok(text.endsWith('  unreadable task: 17\n'));
});

test('the rebalance line counts running and waiting tasks', () => {
  const s = statusWith([fileTask(), fileTask({ partition: 8, phase: 'PENDING' }), legacyTask(), legacyTask({ partition: 4, state: 'queued' }), legacyTask({ partition: 5, state: 'done' })], 4);
  assert.equal(rebalanceLine(s), 'rebalance: 4 of 4 partitions left, 2 tasks running, 2 waiting');
  assert.equal(rebalanceLine(statusWith([fileTask()], 1)), 'rebalance: 1 of 1 partitions left, 1 task running, 0 waiting');
});

test('ptn status text carries the task table below the rebalance line', () => {
  const text = formatStatus(statusWith([fileTask()], 1), { partitionRows: false });
  const lines = text.split('\n');
  const at = lines.findIndex((l) => l.startsWith('rebalance: '));
  assert.ok(lines[at + 1]!.startsWith('NODE '));
  assert.match(lines[at + 2]!, /^node-3\s+default\s+7\s+file\s+node-1\s+STREAMING\s+3\.0 MB\/8\.4 MB\s+25\.5\s+4\.2s\s/);
});

test('bytes use decimal units like MB/s, switching unit before 1000', () => {
  assert.deepEqual(
    [0, 999, 1000, 1499, 999_949, 999_950, 8_388_608, 2_500_000_000, 3e15].map(formatBytes),
    ['0 B', '999 B', '1.0 kB', '1.5 kB', '999.9 kB', '1.0 MB', '8.4 MB', '2.5 GB', '3000.0 TB'],
  );
});

test('rates keep three significant digits and show a dash when unknown or zero', () => {
  assert.deepEqual([undefined, 0, -1, 0.054, 5.123, 9.999, 12.34, 99.96, 512.4].map(formatRate), ['-', '-', '-', '0.05', '5.12', '10.0', '12.3', '100', '512']);
});

test('durations read as seconds, minutes or hours, with a dash when unknown', () => {
  assert.deepEqual(
    [undefined, -1, Number.POSITIVE_INFINITY, 0, 0.4, 4.24, 9.96, 42.4, 59.6, 245, 3599.6, 7620].map(formatDuration),
    ['-', '-', '-', '0.00s', '0.40s', '4.2s', '10s', '42s', '1m00s', '4m05s', '1h00m', '2h07m'],
  );
});

test('phase times list the first phase at its clock time and later ones as offsets, in time order', () => {
  assert.equal(formatClock(T0), '14:02:11');
  assert.equal(formatPhaseTimes({}), '-');
  assert.equal(
    formatPhaseTimes({ REPLAYING: T0 + 65_000, PENDING: T0, STREAMING: T0 + 250, SWAPPING: T0 + 3100 }),
    'PENDING 14:02:11 STREAMING +0.25s SWAPPING +3.1s REPLAYING +1m05s',
  );
});

test('a task with only cache, partition and phase renders dashes, not undefined', () => {
  const text = formatTaskTable([{ cache: 'c', partition: 0, phase: 'PENDING' }]);
  assert.doesNotMatch(text, /undefined|NaN/);
  const row = cells(text).rows[0] as Record<string, string>;
  assert.equal(row.BYTES, '-');
  assert.equal(row['PHASE TIMES'], '-');
  const t: RebalanceTask = normalizeTask({ cache: 'c', partition: 0, phase: 'PENDING' })!;
  assert.deepEqual(t.phaseTimes, {});
});
