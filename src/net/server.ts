/**
 * The node's one WebSocket port for peers and clients.
 *
 * Data flow: TCP connection → (HTTP upgrade within handshakeTimeoutMs) → WebSocket →
 * `Connection` handshake → `onConnection(conn)`. Anything that fails on the way is refused:
 * counted in `stats.refused` by error code, logged as ONE line, and closed with a coded
 * WebSocket close (4000–4999, reason = error code) or, before the upgrade, with an HTTP
 * status whose body is the error code. The server keeps serving everyone else.
 *
 * | what arrives                                  | refused with                         |
 * |-----------------------------------------------|--------------------------------------|
 * | TCP bytes that are not HTTP                   | HTTP 400, ERR_PROTOCOL_BAD_FRAME     |
 * | an HTTP upgrade `ws` rejects (bad key …)      | HTTP 400, ERR_PROTOCOL_BAD_FRAME     |
 * | no upgrade within handshakeTimeoutMs          | HTTP 408, ERR_HANDSHAKE_TIMEOUT      |
 * | a failed handshake                            | close 4001–4006 (handshake.ts table) |
 * | a message above frameBytesMax (ws length)     | close 1009 by ws, ERR_PROTOCOL_FRAME_TOO_LARGE |
 * | a plain HTTP request                          | 426, or `onHttpRequest` (not counted) |
 *
 * Limits: `connectionsMax` TCP connections at once (Node drops the rest); each unauthenticated
 * connection may buffer at most one message of frameBytesMax (ws checks the declared length
 * before buffering) and lives at most 2 × handshakeTimeoutMs.
 */
import http from 'node:http';
import type net from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import type { NetConfig } from '../config.js';
import { ErrorCode, PtnError, ptnError } from '../errors.js';
import { CLOSE_GOING_AWAY } from './close-codes.js';
import { Connection, type ConnectionLimits, type Handler, type NetLog } from './connection.js';
import { assertMethod } from './frames.js';
import type { NetIdentity } from './handshake.js';

export interface NetServerOptions extends ConnectionLimits {
  host: string;
  /** 0 → an ephemeral port; `listen()` returns the bound one. */
  port: number;
  identity: NetIdentity;
  config: NetConfig;
  log?: NetLog;
  /** Called once per authenticated connection. */
  onConnection?: (conn: Connection) => void;
  /** Optional: plain HTTP requests on the same port (admin has its own port). Default: 426 Upgrade Required. */
  onHttpRequest?: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  /** TCP connections at once, authenticated or not; more are dropped. Default 1024. */
  connectionsMax?: number;
}

/** Counters of a server. */
export interface NetServerStats {
  /** Open authenticated connections. */
  connections: number;
  /** Connections still in the handshake. */
  handshaking: number;
  /** Refused connections by error code. */
  refused: Record<string, number>;
}

type Status = 'new' | 'listening' | 'closing' | 'closed';

const CONNECTIONS_MAX_DEFAULT = 1024;
const noop = () => {};

/** Accepts peers and clients on one WebSocket port; see the file comment. */
export class NetServer {
  readonly #opts: NetServerOptions;
  readonly #log: NetLog;
  readonly #http: http.Server;
  readonly #wss: WebSocketServer;
  readonly #handlers = new Map<string, Handler>();
  /** TCP sockets not yet upgraded, with their upgrade deadline. */
  readonly #raw = new Map<net.Socket, NodeJS.Timeout>();
  readonly #handshaking = new Set<Connection>();
  readonly #open = new Set<Connection>();
  readonly #refused: Record<string, number> = {};
  #status: Status = 'new';
  #closing: Promise<void> | undefined;

  constructor(opts: NetServerOptions) {
    this.#opts = opts;
    this.#log = opts.log ?? noop;
    this.#wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: opts.config.frameBytesMax,
      clientTracking: false,
      // Bounds the closing handshake with a peer that never answers our close frame.
      closeTimeout: opts.config.failureTimeoutMs,
    } as ConstructorParameters<typeof WebSocketServer>[0]);
    this.#wss.on('wsClientError', (err: Error, socket: net.Socket) => this.#refuseRaw(socket, 400, this.#badFrame(err)));
    this.#http = http.createServer();
    this.#http.maxConnections = opts.connectionsMax ?? CONNECTIONS_MAX_DEFAULT;
    this.#http.on('connection', (socket: net.Socket) => this.#onTcp(socket));
    this.#http.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => this.#onUpgrade(req, socket, head));
    this.#http.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => this.#onHttpRequest(req, res));
    this.#http.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => this.#onClientError(err, socket));
    this.#http.on('drop', (data?: { remoteAddress?: string }) =>
      this.#log('warn', `dropped a connection from ${data?.remoteAddress}: connectionsMax reached`, { remoteAddress: data?.remoteAddress }),
    );
  }

  /** Registers a handler for every accepted connection (a connection's own `handle()` comes first). */
  handle(method: string, fn: Handler): void {
    assertMethod(method);
    this.#handlers.set(method, fn);
  }

  /** Starts listening; resolves with the bound address (port 0 → ephemeral). */
  async listen(): Promise<{ host: string; port: number }> {
    if (this.#status !== 'new') throw ptnError(ErrorCode.ERR_CLOSED, `server is ${this.#status}`);
    const { host, port } = this.#opts;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) =>
        reject(ptnError(ErrorCode.ERR_IO, `cannot listen on ${host}:${port}: ${err.message}`, { cause: err }));
      this.#http.once('error', onError);
      this.#http.listen(port, host, () => {
        this.#http.off('error', onError);
        resolve();
      });
    });
    this.#http.on('error', (err) => this.#log('error', `server error: ${err.message}`));
    this.#status = 'listening';
    const addr = this.#http.address() as { address: string; port: number };
    return { host: addr.address, port: addr.port };
  }

  /** Snapshot of the counters. */
  get stats(): NetServerStats {
    return { connections: this.#open.size, handshaking: this.#handshaking.size, refused: { ...this.#refused } };
  }

  /** The open authenticated connections. */
  connections(): Connection[] {
    return [...this.#open];
  }

  /** Stops listening and closes every connection (close code 1001); idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#closeAll();
    return this.#closing;
  }

  async #closeAll(): Promise<void> {
    this.#status = 'closing';
    const stopped = new Promise<void>((resolve) => this.#http.close(() => resolve()));
    this.#http.closeAllConnections(); // plain HTTP keep-alive sockets; upgraded ones are ours below
    for (const [socket, timer] of this.#raw) {
      clearTimeout(timer);
      socket.destroy();
    }
    this.#raw.clear();
    await Promise.all([...this.#handshaking, ...this.#open].map((c) => c.close(CLOSE_GOING_AWAY, 'server closing')));
    await stopped;
    this.#status = 'closed';
  }

  // ── before the WebSocket exists ──────────────────────────────────────────────────────────

  #onTcp(socket: net.Socket): void {
    if (this.#status !== 'listening') {
      socket.destroy();
      return;
    }
    const ms = this.#opts.config.handshakeTimeoutMs;
    const timer = setTimeout(() => {
      const err = ptnError(ErrorCode.ERR_HANDSHAKE_TIMEOUT, `no WebSocket upgrade within ${ms} ms`);
      this.#refuseRaw(socket, 408, err);
    }, ms);
    this.#raw.set(socket, timer);
    socket.once('close', () => this.#forgetRaw(socket));
    socket.on('error', noop); // errors end in 'close'; 'clientError' reports parse errors
  }

  #forgetRaw(socket: net.Socket): void {
    clearTimeout(this.#raw.get(socket));
    this.#raw.delete(socket);
  }

  #badFrame(err: Error): PtnError {
    return ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, `not a WebSocket upgrade: ${err.message}`, { cause: err });
  }

  #onClientError(err: NodeJS.ErrnoException, socket: net.Socket): void {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    this.#refuseRaw(socket, 400, this.#badFrame(err));
  }

  /** Refuses a connection that has no WebSocket yet: HTTP status, error code as the body. */
  #refuseRaw(socket: net.Socket, status: number, err: PtnError): void {
    this.#forgetRaw(socket);
    this.#countRefused(err, `${socket.remoteAddress}:${socket.remotePort}`);
    const body = `${err.code}\n`;
    const head = `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: text/plain\r\n`;
    try {
      if (socket.writable) socket.end(`${head}Content-Length: ${body.length}\r\n\r\n${body}`, () => socket.destroy());
      else socket.destroy();
    } catch {
      socket.destroy();
    }
  }

  #onHttpRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.#forgetRaw(req.socket);
    try {
      if (this.#opts.onHttpRequest) return this.#opts.onHttpRequest(req, res);
      res.writeHead(426, { 'Content-Type': 'text/plain', Connection: 'close' });
      res.end('this port speaks WebSocket only\n');
    } catch (err) {
      this.#log('error', `HTTP request handler failed: ${(err as Error)?.message}`);
      req.socket.destroy();
    }
  }

  #onUpgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer): void {
    this.#forgetRaw(socket);
    if (this.#status !== 'listening') {
      socket.destroy();
      return;
    }
    try {
      this.#wss.handleUpgrade(req, socket, head, (ws) => this.#accept(ws, `${req.socket.remoteAddress}:${req.socket.remotePort}`));
    } catch (err) {
      this.#refuseRaw(socket, 400, this.#badFrame(err as Error));
    }
  }

  // ── the WebSocket and its handshake ──────────────────────────────────────────────────────

  #accept(ws: WebSocket, remoteAddress: string): void {
    const { connection, ready } = Connection.open({
      ws,
      dialed: false,
      identity: this.#opts.identity,
      config: this.#opts.config,
      remoteAddress,
      fallback: (method) => this.#handlers.get(method),
      log: this.#log,
      receiveBufferBytesMax: this.#opts.receiveBufferBytesMax,
      handlersInflightMax: this.#opts.handlersInflightMax,
    });
    this.#handshaking.add(connection);
    ready.then(
      (conn) => this.#onAuthenticated(conn),
      (err: PtnError) => {
        this.#handshaking.delete(connection);
        if (this.#status === 'listening') this.#countRefused(err, remoteAddress);
      },
    );
  }

  #onAuthenticated(conn: Connection): void {
    this.#handshaking.delete(conn);
    if (!conn.isOpen) return;
    if (this.#status !== 'listening') {
      void conn.close(CLOSE_GOING_AWAY, 'server closing');
      return;
    }
    this.#open.add(conn);
    conn.once('close', () => this.#open.delete(conn));
    this.#log('info', `connection from ${conn.remoteNodeId} (${conn.remoteRole}) at ${conn.remoteAddress}`, {
      node: conn.remoteNodeId,
      role: conn.remoteRole,
    });
    try {
      this.#opts.onConnection?.(conn);
    } catch (err) {
      this.#log('error', `onConnection failed: ${(err as Error)?.message}`);
    }
  }

  #countRefused(err: PtnError, remoteAddress: string): void {
    const code = err instanceof PtnError ? err.code : ErrorCode.ERR_REMOTE;
    this.#refused[code] = (this.#refused[code] ?? 0) + 1;
    this.#log('warn', `refused connection from ${remoteAddress}: ${code}`, { code, remoteAddress, error: err?.message });
  }
}
