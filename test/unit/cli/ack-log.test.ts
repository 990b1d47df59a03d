import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AckLogWriter, formatAckLine, parseAckLog, readAckLog, valueDigest } from '../../../src/cli/ack-log.js';
import { isPtnError } from '../../../src/errors.js';

let dir: string;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptn-'));
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const D1 = valueDigest('{"i":1}');
const D2 = valueDigest('{"i":2}');

test('the digest is the sha1 hex of the JSON text', () => {
  assert.equal(valueDigest('abc'), 'a9993e364706816aba3e25717850c26c9cd0d89d');
});

test('a line round-trips, keys with spaces and unicode included', () => {
  for (const key of ['k1', 'a key with spaces', 'ключ', 'x%y\nz']) {
    const parsed = parseAckLog(formatAckLine(key, 42, D1));
    assert.deepEqual([...parsed.byKey], [[key, { counter: 42, digest: D1 }]]);
    assert.equal(parsed.lines, 1);
    assert.equal(parsed.tornTail, false);
  }
});

test('the highest counter per key wins, in any order', () => {
  const text = formatAckLine('k', 5, D1) + formatAckLine('k', 9, D2) + formatAckLine('k', 7, D1) + formatAckLine('j', 1, D1);
  const p = parseAckLog(text);
  assert.deepEqual(p.byKey.get('k'), { counter: 9, digest: D2 });
  assert.deepEqual(p.byKey.get('j'), { counter: 1, digest: D1 });
  assert.equal(p.lines, 4);
  assert.deepEqual(p.conflicts, []);
});

test('two digests acknowledged with the same counter are reported as a conflict', () => {
  const p = parseAckLog(formatAckLine('k', 3, D1) + formatAckLine('k', 3, D2) + formatAckLine('k', 3, D2));
  assert.deepEqual(p.conflicts, ['k']);
});

test('a torn last line (writer killed mid-line) is skipped and reported', () => {
  const p = parseAckLog(formatAckLine('k1', 1, D1) + 'k2 2 ' + D2.slice(0, 10));
  assert.equal(p.tornTail, true);
  assert.equal(p.lines, 1);
  assert.deepEqual([...p.byKey.keys()], ['k1']);
});

test('an empty file is an empty log', () => {
  const p = parseAckLog('');
  assert.equal(p.byKey.size, 0);
  assert.equal(p.tornTail, false);
});

test('a malformed complete line is ERR_FILE_FORMAT with its line number', () => {
  for (const bad of ['k1 1\n', 'k1 x ' + D1 + '\n', 'k1 1 ' + D1.toUpperCase() + '\n', 'k1  1 ' + D1 + '\n', '%E0%A4%A 1 ' + D1 + '\n']) {
    assert.throws(
      () => parseAckLog(formatAckLine('ok', 1, D1) + bad, 'acks.log'),
      (err: unknown) => isPtnError(err, 'ERR_FILE_FORMAT') && (err.details as { line: number }).line === 2,
      JSON.stringify(bad),
    );
  }
});

test('AckLogWriter appends lines that readAckLog reads back, across two writers', async () => {
  const file = path.join(dir, 'acks.log');
  const w1 = new AckLogWriter(file);
  for (let i = 0; i < 1000; i++) await w1.append(`k${i}`, i + 1, D1);
  await w1.close();
  await w1.close(); // idempotent
  const w2 = new AckLogWriter(file);
  await w2.append('k0', 5000, D2);
  await w2.close();
  const p = readAckLog(file);
  assert.equal(p.lines, 1001);
  assert.equal(p.byKey.size, 1000);
  assert.deepEqual(p.byKey.get('k0'), { counter: 5000, digest: D2 });
  assert.deepEqual(p.byKey.get('k999'), { counter: 1000, digest: D1 });
});

test('reading a missing ack log is ERR_IO', () => {
  assert.throws(() => readAckLog(path.join(dir, 'nope.log')), (err: unknown) => isPtnError(err, 'ERR_IO'));
});
