// Hostile and misbehaving peers for net tests: a raw `ws` client that speaks frames by hand,
// a raw TCP client, a raw `ws` server that handshakes and then goes silent, and a frame builder
// that writes any header (with a valid header CRC) so the decoder's checks can be reached.
// Everything here is closed by `close()`; tests call it in their cleanup.
import net from 'node:net';
import { once } from 'node:events';
import { type ClientOptions, WebSocket, WebSocketServer } from 'ws';
import { crc32 } from '../../src/util/crc32.js';
import { FRAME_HEADER_BYTES, type Frame, FrameType, decodeFrame, encodeFrame } from '../../src/net/frames.js';
import { ClientHandshake, type NetIdentity, ServerHandshake } from '../../src/net/handshake.js';

const FRAME_BYTES_MAX = 1 << 30;

/** What a raw peer saw when its socket closed. */
export interface CloseInfo {
  code: number;
  reason: string;
}

/** Header fields for `craftFrame`; anything left out gets a valid value. */
export interface CraftFields {
  magic?: [number, number];
  version?: number;
  type?: number;
  flags?: number;
  methodBytes?: number;
  reserved?: number;
  id?: number;
  bodyBytes?: number;
  bodyCrc?: number;
  method?: string;
  body?: Buffer;
}

/** Builds a frame from raw fields; the header CRC is always valid, the body CRC unless given. */
export function craftFrame(f: CraftFields = {}): Buffer {
  const method = Buffer.from(f.method ?? '', 'latin1');
  const body = f.body ?? Buffer.alloc(0);
  const buf = Buffer.alloc(FRAME_HEADER_BYTES + method.length + body.length);
  method.copy(buf, FRAME_HEADER_BYTES);
  body.copy(buf, FRAME_HEADER_BYTES + method.length);
  const [m0, m1] = f.magic ?? [0x50, 0x54];
  buf[0] = m0;
  buf[1] = m1;
  buf[2] = f.version ?? 1;
  buf[3] = f.type ?? FrameType.NOTIFY;
  buf[4] = f.flags ?? 0x02;
  buf[5] = f.methodBytes ?? method.length;
  buf.writeUInt16LE(f.reserved ?? 0, 6);
  buf.writeUInt32LE(f.id ?? 0, 8);
  buf.writeUInt32LE(f.bodyBytes ?? body.length, 12);
  buf.writeUInt32LE(f.bodyCrc ?? crc32(buf.subarray(FRAME_HEADER_BYTES)), 16);
  buf.writeUInt32LE(crc32(buf.subarray(0, 20)), 20);
  return buf;
}

/** A raw `ws` client: sends whatever it is told, records frames and the close it got. */
export class RawPeer {
  readonly ws: WebSocket;
  readonly closed: Promise<CloseInfo>;
  readonly #frames: Buffer[] = [];
  #waiting: ((b: Buffer) => void) | undefined;

  constructor(url: string, options: ClientOptions = {}) {
    this.ws = new WebSocket(url, { perMessageDeflate: false, ...options });
    this.ws.on('error', () => {}); // the close event carries what the tests check
    this.closed = new Promise((resolve) => this.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    this.ws.on('message', (data: Buffer) => {
      if (this.#waiting) {
        const w = this.#waiting;
        this.#waiting = undefined;
        w(data);
      } else this.#frames.push(data);
    });
  }

  static async connect(address: string, options?: ClientOptions): Promise<RawPeer> {
    const peer = new RawPeer(`ws://${address}/`, options);
    await once(peer.ws, 'open');
    return peer;
  }

  /** Next received message, decoded. Rejects if the socket closes first. */
  async nextFrame(): Promise<Frame> {
    const buf =
      this.#frames.shift() ??
      (await Promise.race([
        new Promise<Buffer>((resolve) => (this.#waiting = resolve)),
        this.closed.then((c) => Promise.reject(new Error(`closed ${c.code} ${c.reason} while waiting for a frame`))),
      ]));
    return decodeFrame(buf, FRAME_BYTES_MAX);
  }

  send(data: Buffer | string): void {
    this.ws.send(data);
  }

  sendFrame(type: FrameType, body: unknown, method = '', id = 0): void {
    this.ws.send(encodeFrame(type, id, method, body as object, FRAME_BYTES_MAX));
  }

  /**
   * Runs the client handshake by hand. `tamper` may rewrite the HELLO body before it is sent.
   * Resolves after WELCOME (or when the server closes instead, with the close info).
   */
  async handshake(id: NetIdentity, tamper?: (hello: Record<string, unknown>) => Record<string, unknown>): Promise<CloseInfo | 'ok'> {
    const hs = new ClientHandshake(id);
    const challenge = await this.nextFrame();
    const hello = hs.onChallenge(challenge.body) as unknown as Record<string, unknown>;
    this.sendFrame(FrameType.HELLO, tamper ? tamper(hello) : hello);
    try {
      const welcome = await this.nextFrame();
      hs.onWelcome(welcome.body);
      return 'ok';
    } catch {
      return this.closed;
    }
  }

  close(): void {
    this.ws.terminate();
  }
}

/** A raw TCP client: sends bytes, collects everything the server answers until it closes. */
export class RawTcp {
  readonly socket: net.Socket;
  readonly received: Promise<string>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('error', () => {});
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (text += d));
    this.received = new Promise((resolve) => socket.once('close', () => resolve(text)));
  }

  static async connect(port: number): Promise<RawTcp> {
    const socket = net.connect(port, '127.0.0.1');
    await once(socket, 'connect');
    return new RawTcp(socket);
  }

  close(): void {
    this.socket.destroy();
  }
}

/**
 * A raw `ws` server that runs the server handshake (optionally with a bogus WELCOME) and then
 * never sends another byte: the silent or impostor peer a dialer must detect.
 */
export class SilentServer {
  readonly wss: WebSocketServer;
  readonly sockets: WebSocket[] = [];

  private constructor(wss: WebSocketServer) {
    this.wss = wss;
  }

  /**
   * `bogusWelcome`: answer HELLO with a proof made without the secret. `challenge`: rewrite the
   * CHALLENGE body. `mute`: never even send the CHALLENGE.
   */
  static async start(
    id: NetIdentity,
    opts: { bogusWelcome?: boolean; challenge?: (c: Record<string, unknown>) => Record<string, unknown>; mute?: boolean } = {},
  ): Promise<{ server: SilentServer; address: string }> {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
    await once(wss, 'listening');
    const server = new SilentServer(wss);
    wss.on('connection', (ws) => {
      server.sockets.push(ws);
      ws.on('error', () => {});
      if (opts.mute) return;
      const hs = new ServerHandshake(id);
      const challenge = hs.challenge() as unknown as Record<string, unknown>;
      ws.send(encodeFrame(FrameType.CHALLENGE, 0, '', opts.challenge ? opts.challenge(challenge) : challenge, FRAME_BYTES_MAX));
      ws.once('message', (data: Buffer) => {
        let welcome: object;
        try {
          welcome = opts.bogusWelcome ? { proof: 'ab'.repeat(32) } : hs.onHello(decodeFrame(data, FRAME_BYTES_MAX).body).welcome;
        } catch {
          ws.terminate();
          return;
        }
        ws.send(encodeFrame(FrameType.WELCOME, 0, '', welcome, FRAME_BYTES_MAX));
      });
    });
    return { server, address: `127.0.0.1:${(wss.address() as net.AddressInfo).port}` };
  }

  async close(): Promise<void> {
    for (const ws of this.sockets) ws.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }
}
