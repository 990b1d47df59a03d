/**
 * Wire frames: one WebSocket binary message = one frame.
 *
 * | offset | size | field                                                                    |
 * |-------:|-----:|--------------------------------------------------------------------------|
 * |      0 |    2 | magic 0x50 0x54 ("PT")                                                   |
 * |      2 |    1 | frame format / protocol version (`PROTOCOL_VERSION`, 1)                  |
 * |      3 |    1 | frame type (`FrameType`)                                                 |
 * |      4 |    1 | flags: bit 0 body is JSON (else raw bytes), bit 1 body CRC present       |
 * |      5 |    1 | method length `m` in bytes (0…`METHOD_BYTES_MAX`; REQUEST/NOTIFY only)   |
 * |      6 |    2 | reserved, 0                                                              |
 * |      8 |    4 | request id (u32 LE; 0 for NOTIFY, PING, PONG and handshake frames)       |
 * |     12 |    4 | body length `n` (u32 LE)                                                 |
 * |     16 |    4 | body CRC-32 over method + body (u32 LE; 0 when the CRC flag is unset)    |
 * |     20 |    4 | header CRC-32 over bytes 0…19 (u32 LE)                                   |
 * |     24 |    m | method name, printable ASCII                                             |
 * |   24+m |    n | body: UTF-8 JSON or raw bytes                                            |
 *
 * Why: the header CRC is separate from the body CRC so a corrupt length is caught before the
 * length is trusted; the version sits right after the magic and is checked before the header
 * CRC so a peer of a newer protocol is reported as such (ERR_PROTOCOL_VERSION), not as garbage.
 * This build always sets the CRC flag (zlib crc32 runs at ~5 GB/s, so it is never the
 * bottleneck); a frame without it is accepted only with a zero CRC field.
 *
 * Encoding allocates the whole frame once. For large binary bodies (file chunks),
 * `prepareFrame()` hands out a buffer with header room and a `body` view to fill in place
 * (e.g. `fs.read` straight into it); `sealFrame()` then writes the header, no copy.
 * Decoding is strict: anything not exactly as above is ERR_PROTOCOL_BAD_FRAME, an unknown
 * version ERR_PROTOCOL_VERSION, a declared size above the limit ERR_PROTOCOL_FRAME_TOO_LARGE.
 * A decoded raw body is a view into the received message (no copy).
 */
import { ErrorCode, assert, ptnError } from '../errors.js';
import { crc32 } from '../util/crc32.js';
import type { BufferPool } from '../util/buffer-pool.js';

/** Body of a request, response or notification: a Buffer (or other byte view) travels raw, anything else as JSON. */
export type Body = Buffer | null | boolean | number | string | object;

/** Version of the frame format and of the protocol; both sides must speak the same. */
export const PROTOCOL_VERSION = 1;
/** Size of the fixed frame header in bytes. */
export const FRAME_HEADER_BYTES = 24;
/** Longest method name in bytes. */
export const METHOD_BYTES_MAX = 64;

const METHOD_PATTERN = new RegExp(`^[!-~]{1,${METHOD_BYTES_MAX}}$`);
const MAGIC_0 = 0x50;
const MAGIC_1 = 0x54;
const HEADER_CRC_OFFSET = 20;

/** Frame types. Handshake types come first, in the order they are exchanged. */
export const FrameType = {
  /** server → client: {protocolVersion, clusterId, nodeId, nonce} */
  CHALLENGE: 1,
  /** client → server: {protocolVersion, clusterId, nodeId, role, nonce, proof} */
  HELLO: 2,
  /** server → client: {proof} */
  WELCOME: 3,
  REQUEST: 4,
  RESPONSE: 5,
  /** response carrying {code, message} */
  ERROR: 6,
  /** one-way message */
  NOTIFY: 7,
  PING: 8,
  PONG: 9,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

const TYPE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(FrameType).map(([k, v]) => [v, k]));

/** Flag bits of byte 4. */
export const FrameFlag = { JSON: 0x01, CRC: 0x02 } as const;
const KNOWN_FLAGS = FrameFlag.JSON | FrameFlag.CRC;

/** A decoded frame. `body` is parsed JSON, or a Buffer view for raw bodies. */
export interface Frame {
  type: FrameType;
  flags: number;
  id: number;
  /** '' unless type is REQUEST or NOTIFY. */
  method: string;
  body: Body;
  /** Whole frame size on the wire (header + method + body). */
  frameBytes: number;
}

/** Name of a frame type, for messages and logs. */
export function frameTypeName(type: number): string {
  return TYPE_NAMES[type] ?? `unknown(${type})`;
}

function typeHasMethod(type: number): boolean {
  return type === FrameType.REQUEST || type === FrameType.NOTIFY;
}

function badFrame(message: string): never {
  throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, message);
}

function isByteView(body: unknown): body is Uint8Array {
  return ArrayBuffer.isView(body) && !(body instanceof DataView);
}

/** Asserts that `method` is a valid method name: 1…METHOD_BYTES_MAX printable ASCII characters. */
export function assertMethod(method: string): void {
  assert(METHOD_PATTERN.test(method), `method must be 1…${METHOD_BYTES_MAX} printable ASCII characters: ${method}`);
}

function checkMethod(type: FrameType, method: string): void {
  assert(TYPE_NAMES[type] !== undefined, `unknown frame type ${type}`);
  if (typeHasMethod(type)) {
    assertMethod(method);
  } else {
    assert(method === '', `frame type ${frameTypeName(type)} carries no method`);
  }
}

/**
 * A frame buffer with room for header and method, and a `body` view to fill in place:
 * the zero-copy path for large binary bodies. Send it through `Connection.request/notify`
 * (or a handler's return value), which seals it with `sealFrame()`.
 */
export class PreparedFrame {
  /** The whole frame: header + method + body. */
  readonly buffer: Buffer;
  /** View of the body part of `buffer`; fill it before sending. */
  readonly body: Buffer;
  readonly method: string;
  /**
   * False for bodies that carry their own CRC over everything that matters (file chunks): the
   * frame then goes without the body-CRC flag, saving a pass over the bytes on each side. The
   * header CRC is always there.
   */
  readonly bodyCrc: boolean;
  #pool: BufferPool | undefined;

  /** @internal use `prepareFrame()`. */
  constructor(buffer: Buffer, method: string, bodyCrc = true, pool?: BufferPool) {
    this.buffer = buffer;
    this.method = method;
    this.bodyCrc = bodyCrc;
    this.body = buffer.subarray(FRAME_HEADER_BYTES + method.length);
    this.#pool = pool;
  }

  /**
   * Gives the buffer back to its pool (if it came from one). The connection calls it once the
   * socket has taken the bytes, or when the frame is not sent after all; whoever drops a
   * prepared frame without sending it calls it. Idempotent; the frame must not be used after.
   */
  release(): void {
    const pool = this.#pool;
    this.#pool = undefined;
    pool?.release(this.buffer);
  }
}

/**
 * Allocates a frame for a raw body of `bodyBytes` bytes; `method` is '' for a response. With
 * `pool`, the buffer is taken from it and goes back when the frame is released (see release()).
 */
export function prepareFrame(bodyBytes: number, method = '', opts: { bodyCrc?: boolean; pool?: BufferPool } = {}): PreparedFrame {
  assert(Number.isSafeInteger(bodyBytes) && bodyBytes >= 0 && bodyBytes <= 0xffffffff, 'bodyBytes out of range');
  assert(method === '' || METHOD_PATTERN.test(method), `bad method name: ${method}`);
  const frameBytes = FRAME_HEADER_BYTES + method.length + bodyBytes;
  const buffer = opts.pool ? opts.pool.acquire(frameBytes) : Buffer.allocUnsafe(frameBytes);
  buffer.write(method, FRAME_HEADER_BYTES, 'latin1');
  return new PreparedFrame(buffer, method, opts.bodyCrc ?? true, opts.pool);
}

/** Writes the header (type, id, CRCs) of a prepared frame in place and returns its buffer. */
export function sealFrame(frame: PreparedFrame, type: FrameType, id: number): Buffer {
  checkMethod(type, frame.method);
  writeHeader(frame.buffer, type, frame.bodyCrc ? FrameFlag.CRC : 0, frame.method.length, id, frame.body.length);
  return frame.buffer;
}

function writeHeader(buf: Buffer, type: FrameType, flags: number, methodBytes: number, id: number, bodyBytes: number) {
  assert(Number.isInteger(id) && id >= 0 && id <= 0xffffffff, 'request id out of range');
  buf[0] = MAGIC_0;
  buf[1] = MAGIC_1;
  buf[2] = PROTOCOL_VERSION;
  buf[3] = type;
  buf[4] = flags;
  buf[5] = methodBytes;
  buf.writeUInt16LE(0, 6);
  buf.writeUInt32LE(id, 8);
  buf.writeUInt32LE(bodyBytes, 12);
  const bodyCrc = flags & FrameFlag.CRC ? crc32(buf.subarray(FRAME_HEADER_BYTES)) : 0;
  buf.writeUInt32LE(bodyCrc, 16);
  buf.writeUInt32LE(crc32(buf.subarray(0, HEADER_CRC_OFFSET)), HEADER_CRC_OFFSET);
}

/**
 * Encodes a frame into one freshly allocated buffer. A byte-view body (Buffer, Uint8Array)
 * is sent raw (copied once into the frame; use `prepareFrame()` to avoid that copy),
 * anything else as JSON (`undefined` becomes `null`). Throws ERR_PROTOCOL_FRAME_TOO_LARGE
 * when the frame would exceed `frameBytesMax`.
 */
export function encodeFrame(type: FrameType, id: number, method: string, body: Body | undefined, frameBytesMax: number): Buffer {
  checkMethod(type, method);
  let raw: Uint8Array | undefined;
  let json: string | undefined;
  if (isByteView(body)) raw = body;
  else json = JSON.stringify(body ?? null) ?? 'null';
  const bodyBytes = raw ? raw.byteLength : Buffer.byteLength(json!, 'utf8');
  const frameBytes = FRAME_HEADER_BYTES + method.length + bodyBytes;
  if (frameBytes > frameBytesMax) {
    throw ptnError(ErrorCode.ERR_PROTOCOL_FRAME_TOO_LARGE, `frame of ${frameBytes} bytes exceeds frameBytesMax ${frameBytesMax}`, {
      details: { frameBytes, frameBytesMax, method },
    });
  }
  const buf = Buffer.allocUnsafe(frameBytes);
  buf.write(method, FRAME_HEADER_BYTES, 'latin1');
  const bodyOffset = FRAME_HEADER_BYTES + method.length;
  if (raw) buf.set(raw, bodyOffset);
  else buf.write(json!, bodyOffset, 'utf8');
  writeHeader(buf, type, FrameFlag.CRC | (raw ? 0 : FrameFlag.JSON), method.length, id, bodyBytes);
  return buf;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Checks magic, version, header CRC and header fields; returns the method length and body length. */
function decodeHeader(buf: Buffer, frameBytesMax: number): { methodBytes: number; bodyBytes: number } {
  if (buf.length < 3) badFrame(`frame of ${buf.length} bytes is shorter than its magic and version`);
  if (buf[0] !== MAGIC_0 || buf[1] !== MAGIC_1) badFrame('bad frame magic');
  if (buf[2] !== PROTOCOL_VERSION) {
    throw ptnError(ErrorCode.ERR_PROTOCOL_VERSION, `unknown protocol version ${buf[2]} (this build speaks ${PROTOCOL_VERSION})`, {
      details: { version: buf[2] },
    });
  }
  if (buf.length < FRAME_HEADER_BYTES) badFrame(`frame of ${buf.length} bytes is shorter than its header`);
  if (crc32(buf.subarray(0, HEADER_CRC_OFFSET)) !== buf.readUInt32LE(HEADER_CRC_OFFSET)) badFrame('frame header CRC mismatch');
  const type = buf[3]!;
  const flags = buf[4]!;
  const methodBytes = buf[5]!;
  if (TYPE_NAMES[type] === undefined) badFrame(`unknown frame type ${type}`);
  if (flags & ~KNOWN_FLAGS) badFrame(`unknown frame flags 0x${flags.toString(16)}`);
  if (buf.readUInt16LE(6) !== 0) badFrame('reserved header bytes are not zero');
  if (methodBytes > METHOD_BYTES_MAX) badFrame(`method of ${methodBytes} bytes is longer than ${METHOD_BYTES_MAX}`);
  if (typeHasMethod(type) !== methodBytes > 0) badFrame(`frame type ${frameTypeName(type)} with method length ${methodBytes}`);
  const bodyBytes = buf.readUInt32LE(12);
  const declared = FRAME_HEADER_BYTES + methodBytes + bodyBytes;
  if (declared > frameBytesMax) {
    throw ptnError(ErrorCode.ERR_PROTOCOL_FRAME_TOO_LARGE, `frame declares ${declared} bytes, above frameBytesMax ${frameBytesMax}`, {
      details: { frameBytes: declared, frameBytesMax },
    });
  }
  if (declared !== buf.length) badFrame(`frame declares ${declared} bytes but has ${buf.length}`);
  if (!(flags & FrameFlag.CRC) && buf.readUInt32LE(16) !== 0) badFrame('body CRC field set without the CRC flag');
  return { methodBytes, bodyBytes };
}

function decodeBody(bytes: Buffer, isJson: boolean): Body {
  if (!isJson) return bytes;
  try {
    return JSON.parse(utf8.decode(bytes)) as Body;
  } catch (err) {
    throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, 'frame body is not valid UTF-8 JSON', { cause: err });
  }
}

/** Decodes and checks one frame (see the table at the top). */
export function decodeFrame(buf: Buffer, frameBytesMax: number): Frame {
  const { methodBytes } = decodeHeader(buf, frameBytesMax);
  const flags = buf[4]!;
  if (flags & FrameFlag.CRC && crc32(buf.subarray(FRAME_HEADER_BYTES)) !== buf.readUInt32LE(16)) badFrame('frame body CRC mismatch');
  const methodEnd = FRAME_HEADER_BYTES + methodBytes;
  const method = buf.toString('latin1', FRAME_HEADER_BYTES, methodEnd);
  if (!/^[!-~]*$/.test(method)) badFrame('method name is not printable ASCII');
  return {
    type: buf[3] as FrameType,
    flags,
    id: buf.readUInt32LE(8),
    method,
    body: decodeBody(buf.subarray(methodEnd), (flags & FrameFlag.JSON) !== 0),
    frameBytes: buf.length,
  };
}
