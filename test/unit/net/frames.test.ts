import test from 'node:test';
import assert from 'node:assert/strict';
import { isPtnError } from '../../../src/errors.js';
import {
  FRAME_HEADER_BYTES,
  FrameFlag,
  FrameType,
  METHOD_BYTES_MAX,
  PROTOCOL_VERSION,
  decodeFrame,
  encodeFrame,
  prepareFrame,
  sealFrame,
} from '../../../src/net/frames.js';
import { craftFrame } from '../../helpers/hostile-peer.js';
import { seededRandom } from './fixture.js';

const MAX = 1 << 20;

function throwsCode(fn: () => unknown, code: string, what: string) {
  assert.throws(fn, (err: unknown) => isPtnError(err) && err.code === code, `${what}: expected ${code}`);
}

test('the frame header is 24 bytes and a frame is header + method + body', () => {
  assert.equal(FRAME_HEADER_BYTES, 24);
  assert.equal(PROTOCOL_VERSION, 1);
  assert.equal(encodeFrame(FrameType.PING, 0, '', null, MAX).length, 24 + 'null'.length);
  assert.equal(encodeFrame(FrameType.NOTIFY, 0, 'abc', Buffer.alloc(10), MAX).length, 24 + 3 + 10);
  assert.equal(prepareFrame(100, 'chunk').buffer.length, 24 + 5 + 100);
  const f = encodeFrame(FrameType.REQUEST, 0x01020304, 'm', Buffer.alloc(7), MAX);
  assert.deepEqual([...f.subarray(0, 6)], [0x50, 0x54, 1, FrameType.REQUEST, FrameFlag.CRC, 1]);
  assert.equal(f.readUInt32LE(8), 0x01020304);
  assert.equal(f.readUInt32LE(12), 7);
});

test('every frame type round-trips with JSON bodies', () => {
  const bodies = [null, true, false, 0, -1.5, 'text ✓', [], [1, 'a', null], { a: { b: [1, 2] }, s: 'é' }];
  for (const [name, type] of Object.entries(FrameType)) {
    const method = type === FrameType.REQUEST || type === FrameType.NOTIFY ? `m.${name}` : '';
    for (const body of bodies) {
      const frame = decodeFrame(encodeFrame(type, 77, method, body, MAX), MAX);
      assert.equal(frame.type, type, name);
      assert.equal(frame.id, 77);
      assert.equal(frame.method, method);
      assert.deepEqual(frame.body, body, `${name} ${JSON.stringify(body)}`);
      assert.equal(frame.flags, FrameFlag.JSON | FrameFlag.CRC);
    }
  }
});

test('raw byte bodies round-trip as a view of the received buffer', () => {
  for (const body of [Buffer.alloc(0), Buffer.from([0, 1, 2, 255]), new Uint8Array([9, 8, 7]), Buffer.alloc(70_000, 0xab)]) {
    for (const type of [FrameType.REQUEST, FrameType.RESPONSE, FrameType.NOTIFY]) {
      const method = type === FrameType.RESPONSE ? '' : 'data';
      const wire = encodeFrame(type, 5, method, body, MAX);
      const frame = decodeFrame(wire, MAX);
      assert.ok(Buffer.isBuffer(frame.body));
      assert.deepEqual(new Uint8Array(frame.body as Buffer), new Uint8Array(body));
      assert.equal(frame.flags, FrameFlag.CRC);
      assert.equal((frame.body as Buffer).buffer, wire.buffer, 'decoded body shares memory with the frame');
    }
  }
});

test('a prepared frame filled in place is byte-identical to an encoded one', () => {
  const body = Buffer.alloc(4096);
  for (let i = 0; i < body.length; i++) body[i] = (i * 31) & 0xff;
  const prepared = prepareFrame(body.length, 'file.chunk');
  body.copy(prepared.body);
  const sealed = sealFrame(prepared, FrameType.NOTIFY, 0);
  assert.equal(sealed, prepared.buffer, 'sealing does not copy');
  assert.deepEqual(sealed, encodeFrame(FrameType.NOTIFY, 0, 'file.chunk', body, MAX));
  const response = prepareFrame(3);
  response.body.set([1, 2, 3]);
  assert.deepEqual(decodeFrame(sealFrame(response, FrameType.RESPONSE, 9), MAX).body, Buffer.from([1, 2, 3]));
});

test('a frame above frameBytesMax is refused on encode with ERR_PROTOCOL_FRAME_TOO_LARGE', () => {
  throwsCode(() => encodeFrame(FrameType.NOTIFY, 0, 'm', Buffer.alloc(4096), 4096), 'ERR_PROTOCOL_FRAME_TOO_LARGE', 'raw');
  throwsCode(() => encodeFrame(FrameType.NOTIFY, 0, 'm', { s: 'x'.repeat(5000) }, 4096), 'ERR_PROTOCOL_FRAME_TOO_LARGE', 'json');
  assert.doesNotThrow(() => encodeFrame(FrameType.NOTIFY, 0, 'm', Buffer.alloc(4096 - 25), 4096));
});

test('a frame without the CRC flag and with a zero CRC field is accepted', () => {
  const frame = decodeFrame(craftFrame({ type: FrameType.PONG, flags: FrameFlag.JSON, body: Buffer.from('12'), bodyCrc: 0 }), MAX);
  assert.equal(frame.body, 12);
});

test('every malformed frame is refused with its error code', () => {
  const good = craftFrame({ type: FrameType.NOTIFY, method: 'm', flags: FrameFlag.JSON | FrameFlag.CRC, body: Buffer.from('{}') });
  assert.doesNotThrow(() => decodeFrame(good, MAX));
  const json = FrameFlag.JSON | FrameFlag.CRC;
  const cases: Array<[string, Buffer, string]> = [
    ['empty message', Buffer.alloc(0), 'ERR_PROTOCOL_BAD_FRAME'],
    ['two bytes', Buffer.from([0x50, 0x54]), 'ERR_PROTOCOL_BAD_FRAME'],
    ['wrong magic', craftFrame({ magic: [0x50, 0x55] }), 'ERR_PROTOCOL_BAD_FRAME'],
    ['unknown version', craftFrame({ version: 2 }), 'ERR_PROTOCOL_VERSION'],
    ['version 0', craftFrame({ version: 0 }), 'ERR_PROTOCOL_VERSION'],
    ['shorter than the header', good.subarray(0, 23), 'ERR_PROTOCOL_BAD_FRAME'],
    ['unknown type 0', craftFrame({ type: 0 }), 'ERR_PROTOCOL_BAD_FRAME'],
    ['unknown type 200', craftFrame({ type: 200 }), 'ERR_PROTOCOL_BAD_FRAME'],
    ['unknown flag bit', craftFrame({ type: FrameType.PING, flags: 0x82 }), 'ERR_PROTOCOL_BAD_FRAME'],
    ['reserved bytes set', craftFrame({ type: FrameType.PING, reserved: 1 }), 'ERR_PROTOCOL_BAD_FRAME'],
    ['method too long', craftFrame({ method: 'x'.repeat(METHOD_BYTES_MAX + 1) }), 'ERR_PROTOCOL_BAD_FRAME'],
    ['method on a RESPONSE', craftFrame({ type: FrameType.RESPONSE, method: 'm' }), 'ERR_PROTOCOL_BAD_FRAME'],
    ['REQUEST without a method', craftFrame({ type: FrameType.REQUEST }), 'ERR_PROTOCOL_BAD_FRAME'],
    ['method not printable ASCII', craftFrame({ method: 'a\u0001b' }), 'ERR_PROTOCOL_BAD_FRAME'],
    ['declared length above the max', craftFrame({ bodyBytes: MAX, method: 'm' }), 'ERR_PROTOCOL_FRAME_TOO_LARGE'],
    ['declared length ≠ actual (short)', craftFrame({ method: 'm', body: Buffer.alloc(5), bodyBytes: 4 }), 'ERR_PROTOCOL_BAD_FRAME'],
    ['declared length ≠ actual (long)', craftFrame({ method: 'm', body: Buffer.alloc(5), bodyBytes: 6 }), 'ERR_PROTOCOL_BAD_FRAME'],
    ['bad body CRC', craftFrame({ method: 'm', body: Buffer.alloc(5), bodyCrc: 1 }), 'ERR_PROTOCOL_BAD_FRAME'],
    ['CRC field without CRC flag', craftFrame({ method: 'm', flags: 0, body: Buffer.alloc(5), bodyCrc: 1 }), 'ERR_PROTOCOL_BAD_FRAME'],
    ['JSON that does not parse', craftFrame({ method: 'm', flags: json, body: Buffer.from('{"a":') }), 'ERR_PROTOCOL_BAD_FRAME'],
    ['JSON that is not UTF-8', craftFrame({ method: 'm', flags: json, body: Buffer.from([0x22, 0xff, 0x22]) }), 'ERR_PROTOCOL_BAD_FRAME'],
    ['empty JSON body', craftFrame({ method: 'm', flags: json }), 'ERR_PROTOCOL_BAD_FRAME'],
  ];
  for (const [what, buf, code] of cases) throwsCode(() => decodeFrame(buf, MAX), code, what);
  // A header whose CRC does not match is refused before any of its fields are trusted.
  const badHeaderCrc = Buffer.from(good);
  badHeaderCrc.writeUInt32LE(badHeaderCrc.readUInt32LE(20) ^ 1, 20);
  throwsCode(() => decodeFrame(badHeaderCrc, MAX), 'ERR_PROTOCOL_BAD_FRAME', 'header CRC');
});

test('any single flipped bit in a frame is caught (bad CRC, or unknown version for the version byte)', () => {
  const seed = Number(process.env.TEST_SEED ?? 20251121);
  const random = seededRandom(seed);
  const body = Buffer.alloc(300);
  for (let i = 0; i < body.length; i++) body[i] = Math.floor(random() * 256);
  const frames = [
    encodeFrame(FrameType.NOTIFY, 3, 'file.chunk', body, MAX),
    encodeFrame(FrameType.REQUEST, 12345, 'put', { key: 'k', value: [1, 2, 3] }, MAX),
  ];
  for (const frame of frames) {
    for (let pos = 0; pos < frame.length; pos++) {
      const bit = 1 << Math.floor(random() * 8);
      const flipped = Buffer.from(frame);
      flipped[pos]! ^= bit;
      const want = pos === 2 ? 'ERR_PROTOCOL_VERSION' : 'ERR_PROTOCOL_BAD_FRAME';
      throwsCode(() => decodeFrame(flipped, MAX), want, `seed ${seed}: byte ${pos} bit ${bit}`);
    }
  }
});
