import test from 'node:test';
import assert from 'node:assert/strict';
import { InboundFlow } from '../../../src/net/inbound.js';

function socket() {
  const calls: string[] = [];
  return { calls, pause: () => void calls.push('pause'), resume: () => void calls.push('resume') };
}

test('reading pauses at the byte limit and resumes once below it', () => {
  const s = socket();
  const flow = new InboundFlow({ bytesMax: 100, framesMax: 1000 }, s);
  flow.admit(60);
  assert.equal(flow.paused, false);
  flow.admit(40);
  assert.equal(flow.paused, true);
  flow.admit(500); // ws may still deliver what it had parsed: counted, no second pause
  assert.deepEqual(s.calls, ['pause']);
  assert.equal(flow.release(500), false, 'still at 100 bytes');
  assert.equal(flow.release(40), true);
  assert.equal(flow.paused, false);
  assert.deepEqual(s.calls, ['pause', 'resume']);
  assert.equal(flow.bytes, 60);
  assert.equal(flow.pauses, 1);
});

test('reading pauses at the frame limit and resumes once below it', () => {
  const s = socket();
  const flow = new InboundFlow({ bytesMax: 1 << 20, framesMax: 3 }, s);
  flow.admit(1);
  flow.admit(1);
  assert.equal(flow.paused, false);
  flow.admit(1);
  assert.equal(flow.paused, true);
  assert.equal(flow.release(1), true);
  assert.deepEqual(s.calls, ['pause', 'resume']);
});

test('unpause resumes reading for closing, and later releases do not resume twice', () => {
  const s = socket();
  const flow = new InboundFlow({ bytesMax: 10, framesMax: 10 }, s);
  flow.admit(10);
  flow.unpause();
  flow.unpause();
  assert.equal(flow.release(10), false);
  assert.deepEqual(s.calls, ['pause', 'resume']);
});

test('a release without a matching admit is a programmer error', () => {
  const flow = new InboundFlow({ bytesMax: 10, framesMax: 10 }, socket());
  assert.throws(() => flow.release(1), /release without admit/);
});
