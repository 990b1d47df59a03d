import test from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCode } from '../../../src/errors.js';
import { CLOSE_CODE_BY_ERROR, closeCodeFor, errorFromClose, errorFromSocket } from '../../../src/net/close-codes.js';

test('each error code has its own close code in 4000–4999 and maps back to itself', () => {
  const codes = Object.values(CLOSE_CODE_BY_ERROR);
  assert.equal(new Set(codes).size, codes.length, 'one close code per error code');
  for (const [err, close] of Object.entries(CLOSE_CODE_BY_ERROR)) {
    assert.ok(close! >= 4000 && close! <= 4999);
    assert.equal(closeCodeFor(err as ErrorCode), close);
    const back = errorFromClose(close!, err);
    assert.equal(back.code, err);
    assert.deepEqual(back.details, { closeCode: close, closeReason: err });
  }
  assert.equal(closeCodeFor(ErrorCode.ERR_IO), 4008, 'a code without a row closes as an internal error');
});

test('close codes sent by ws map to the nearest error code; anything else is ERR_CONNECTION_CLOSED', () => {
  assert.equal(errorFromClose(1009, 'Max payload size exceeded').code, 'ERR_PROTOCOL_FRAME_TOO_LARGE');
  assert.equal(errorFromClose(1002, '').code, 'ERR_PROTOCOL_BAD_FRAME');
  assert.equal(errorFromClose(1007, '').code, 'ERR_PROTOCOL_BAD_FRAME');
  assert.equal(errorFromClose(1000, '').code, 'ERR_CONNECTION_CLOSED');
  assert.equal(errorFromClose(1006, '').code, 'ERR_CONNECTION_CLOSED');
  assert.equal(errorFromClose(4004, 'NOT_A_CODE').code, 'ERR_CONNECTION_CLOSED', 'an unknown reason is not trusted');
  assert.equal(errorFromClose(1000, 'ERR_HANDSHAKE_AUTH').code, 'ERR_CONNECTION_CLOSED', 'reasons count only in 4000–4999');
});

test('socket and ws errors map to coded errors', () => {
  const ws = (code: string) => Object.assign(new RangeError('x'), { code });
  assert.equal(errorFromSocket(ws('WS_ERR_UNSUPPORTED_MESSAGE_LENGTH')).code, 'ERR_PROTOCOL_FRAME_TOO_LARGE');
  assert.equal(errorFromSocket(ws('WS_ERR_INVALID_OPCODE')).code, 'ERR_PROTOCOL_BAD_FRAME');
  assert.equal(errorFromSocket(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' })).code, 'ERR_CONNECTION_CLOSED');
});
