/**
 * WebSocket close codes ⇄ error codes.
 *
 * A node that refuses or drops a connection closes it with a code in 4000–4999 and the error
 * code string as the close reason, so the other side can report the same coded error. Codes
 * that `ws` sends by itself (1002, 1007, 1009 …) map back to the nearest error code.
 *
 * | close code | reason (error code)            | when                                         |
 * |------------|--------------------------------|----------------------------------------------|
 * | 1000       | —                              | normal close by the application              |
 * | 1001       | —                              | server shutting down                         |
 * | 4001       | ERR_PROTOCOL_BAD_FRAME         | malformed frame, text frame, unexpected type |
 * | 4002       | ERR_PROTOCOL_FRAME_TOO_LARGE   | frame announced above `net.frameBytesMax`    |
 * | 4003       | ERR_PROTOCOL_VERSION           | unknown protocol or frame version            |
 * | 4004       | ERR_HANDSHAKE_CLUSTER          | peer belongs to another cluster              |
 * | 4005       | ERR_HANDSHAKE_AUTH             | shared-secret proof failed                   |
 * | 4006       | ERR_HANDSHAKE_TIMEOUT          | no complete handshake in time (slowloris)    |
 * | 4007       | ERR_CONNECTION_CLOSED          | peer declared dead by the heartbeat          |
 * | 4008       | ERR_REMOTE                     | internal error while handling the connection |
 * | 1009 (ws)  | → ERR_PROTOCOL_FRAME_TOO_LARGE | `ws` refused a message above `maxPayload`    |
 * | 1002, 1007 (ws) | → ERR_PROTOCOL_BAD_FRAME  | `ws` refused a malformed WebSocket frame     |
 */
import { ErrorCode, PtnError, ptnError } from '../errors.js';

/** Close code used for an ordinary, error-free close. */
export const CLOSE_NORMAL = 1000;
/** Close code used when the server shuts down. */
export const CLOSE_GOING_AWAY = 1001;

/** One close code per error code a connection can be closed for. */
export const CLOSE_CODE_BY_ERROR: Readonly<Partial<Record<ErrorCode, number>>> = {
  ERR_PROTOCOL_BAD_FRAME: 4001,
  ERR_PROTOCOL_FRAME_TOO_LARGE: 4002,
  ERR_PROTOCOL_VERSION: 4003,
  ERR_HANDSHAKE_CLUSTER: 4004,
  ERR_HANDSHAKE_AUTH: 4005,
  ERR_HANDSHAKE_TIMEOUT: 4006,
  ERR_CONNECTION_CLOSED: 4007,
  ERR_REMOTE: 4008,
};

/** Close codes that `ws` itself sends on a WebSocket-level protocol error. */
const WS_CLOSE_CODES: Readonly<Record<number, ErrorCode>> = {
  1002: ErrorCode.ERR_PROTOCOL_BAD_FRAME,
  1007: ErrorCode.ERR_PROTOCOL_BAD_FRAME,
  1009: ErrorCode.ERR_PROTOCOL_FRAME_TOO_LARGE,
};

/** The close code to send for an error code (4008 for a code without its own row). */
export function closeCodeFor(code: ErrorCode): number {
  return CLOSE_CODE_BY_ERROR[code] ?? 4008;
}

/**
 * The coded error a received close code stands for: the reason string when it is a known
 * error code in the 4000–4999 range, the `ws` table above, else ERR_CONNECTION_CLOSED.
 */
export function errorFromClose(closeCode: number, reason: string): PtnError {
  const details = { closeCode, closeReason: reason };
  if (closeCode >= 4000 && closeCode <= 4999 && Object.hasOwn(ErrorCode, reason)) {
    return ptnError(reason as ErrorCode, `connection closed by peer: ${reason}`, { details });
  }
  const mapped = WS_CLOSE_CODES[closeCode];
  if (mapped) return ptnError(mapped, `connection closed by peer (${closeCode} ${reason})`, { details });
  return ptnError(ErrorCode.ERR_CONNECTION_CLOSED, `connection closed (${closeCode}${reason ? ' ' + reason : ''})`, {
    details,
  });
}

/** Maps an error `ws` emitted (codes WS_ERR_*) or a socket error to a coded error. */
export function errorFromSocket(err: unknown): PtnError {
  if (err instanceof PtnError) return err;
  const code = (err as { code?: unknown } | undefined)?.code;
  const message = (err as Error | undefined)?.message ?? String(err);
  if (code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' || code === 'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH') {
    return ptnError(ErrorCode.ERR_PROTOCOL_FRAME_TOO_LARGE, `websocket: ${message}`, { cause: err });
  }
  if (typeof code === 'string' && code.startsWith('WS_ERR_')) {
    return ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, `websocket: ${message}`, { cause: err });
  }
  return ptnError(ErrorCode.ERR_CONNECTION_CLOSED, `socket error: ${message}`, { cause: err });
}
