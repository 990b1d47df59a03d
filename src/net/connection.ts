/**
 * One authenticated WebSocket: the same class on the dialing and on the accepting side.
 *
 * Role: runs the handshake (handshake.ts), then carries requests/responses, one-way
 * notifications and heartbeats in both directions, so the accepting side (a supplier
 * streaming file chunks server → client, the fast direction) can send as freely as the dialer.
 *
 * Lifecycle: 'handshake' → 'open' → 'closing' → 'closed'. Nothing but handshake frames is
 * accepted before 'open'. `close()` is idempotent, rejects every pending request and every
 * sender waiting for buffer room with ERR_CONNECTION_CLOSED, stops the timers and resolves once
 * the socket is closed (ws's `closeTimeout` bounds the closing handshake).
 *
 * Backpressure, both ways:
 * - sending: every send path awaits `drained()`, which holds senders while `ws.bufferedAmount`
 *   is at or above `net.sendBufferBytesMax`; a send then adds at most one frame, so queued
 *   bytes stay below sendBufferBytesMax + one frame.
 * - receiving: frames whose handlers (and responses) have not finished are counted; at
 *   `receiveBufferBytesMax` bytes or `handlersInflightMax` frames the socket stops reading
 *   (`ws.pause()`), so a peer that outruns our handlers (a slow disk) is slowed by TCP — unless
 *   requests of ours are pending on this socket: their answers may sit behind the peer's
 *   requests, so the socket keeps reading and requests beyond the limits are refused with
 *   ERR_PEER_BUSY (inbound.ts says why: two nodes would deadlock).
 * - coalescing: frames sent in one turn of the event loop leave in one `writev` (#coalesce).
 * Notifications run one at a time in arrival order (file chunks stay in order);
 * requests run concurrently.
 *
 * Errors: no socket event or bad frame ever throws out of an event handler; each is turned
 * into a coded error, logged as one line and the connection closed with the matching close
 * code (close-codes.ts). Heartbeat: a PING when nothing was sent for half an interval; any
 * received frame counts as life; nothing for `failureTimeoutMs` → 'dead', then closed.
 */
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { WebSocket, RawData } from 'ws';
import type { NetConfig } from '../config.js';
import { ErrorCode, PtnError, assert, ptnError } from '../errors.js';
import { CLOSE_NORMAL, closeCodeFor, errorFromClose, errorFromSocket } from './close-codes.js';
import {
  type Body,
  type Frame,
  FrameType,
  PreparedFrame,
  assertMethod,
  decodeFrame,
  encodeFrame,
  frameTypeName,
  sealFrame,
} from './frames.js';
import { ClientHandshake, type NetIdentity, type RemoteInfo, type RemoteRole, ServerHandshake } from './handshake.js';
import { InboundFlow } from './inbound.js';

export type { Body } from './frames.js';
export type { NetIdentity, RemoteRole } from './handshake.js';

/** Serves one method. May return a `PreparedFrame` (made with method '') to answer with a large raw body without a copy. */
export type Handler = (body: Body, conn: Connection) => Promise<Body | PreparedFrame | void> | Body | PreparedFrame | void;
/** Log callback; the node passes one that writes one structured line. */
export type NetLog = (level: 'info' | 'warn' | 'error', msg: string, extra?: object) => void;
/** Where a connection looks for a handler it does not have itself (server- or dial-level registry). */
export type HandlerLookup = (method: string) => Handler | undefined;

/** Counters of one connection. */
export interface ConnectionStats {
  bytesSent: number;
  bytesReceived: number;
  framesSent: number;
  framesReceived: number;
  /** Last measured PING round trip. */
  rttMs?: number;
  /** Times a sender waited in `drained()` for buffer room. */
  drainWaits: number;
  /** Times reading paused because received work was not finished. */
  readPauses: number;
  /** Requests refused with ERR_PEER_BUSY (at the limits while answers of ours were pending). */
  busyRefusals: number;
}

/** Limits on received work not yet finished, per connection. */
export interface ConnectionLimits {
  /** Bytes of received frames whose handling is not finished before reading pauses. Default `net.sendBufferBytesMax`. */
  receiveBufferBytesMax?: number;
  /** Received frames whose handling is not finished before reading pauses. Default 256. */
  handlersInflightMax?: number;
}

/** @internal what `Connection.open()` needs. */
export interface ConnectionInit extends ConnectionLimits {
  ws: WebSocket;
  dialed: boolean;
  identity: NetIdentity;
  config: NetConfig;
  remoteAddress: string;
  fallback?: HandlerLookup;
  log?: NetLog;
}

type Phase = 'handshake' | 'open' | 'closing' | 'closed';

interface Pending {
  resolve: (body: Body) => void;
  reject: (err: PtnError) => void;
  timer: NodeJS.Timeout;
  method: string;
}

const HANDLERS_INFLIGHT_MAX_DEFAULT = 256;
/** Busy refusals queued unread beyond the send budget before the peer is failed (#refuseBusy). */
const REFUSALS_QUEUED_BYTES_MAX = 1 << 20;
const noop = () => {};

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

function isPromiseLike(v: unknown): v is PromiseLike<unknown> {
  return typeof (v as PromiseLike<unknown> | null)?.then === 'function';
}

/** The error a request rejects with when its peer answered with an ERROR frame. */
function remoteError(body: Body, method: string): PtnError {
  const b = (typeof body === 'object' && body !== null ? body : {}) as { code?: unknown; message?: unknown };
  const message = `remote ${method}: ${typeof b.message === 'string' ? b.message : 'error'}`;
  if (typeof b.code === 'string' && Object.hasOwn(ErrorCode, b.code)) {
    return ptnError(b.code as ErrorCode, message, { details: { remote: true, method } });
  }
  return ptnError(ErrorCode.ERR_REMOTE, message, { details: { remote: true, method, remoteCode: b.code } });
}

/** One authenticated socket; see the file comment. Made by `NetServer` and `dial()`, never directly. */
export class Connection extends EventEmitter {
  readonly dialed: boolean;
  readonly remoteAddress: string;
  readonly #stats = { bytesSent: 0, bytesReceived: 0, framesSent: 0, framesReceived: 0, drainWaits: 0, busyRefusals: 0, rttMs: undefined as number | undefined };

  readonly #ws: WebSocket;
  readonly #config: NetConfig;
  readonly #log: NetLog;
  readonly #fallback: HandlerLookup | undefined;
  readonly #handlers = new Map<string, Handler>();
  readonly #inbound: InboundFlow;
  #phase: Phase = 'handshake';
  #remote: RemoteInfo = { nodeId: '', role: 'peer' };
  #serverHandshake: ServerHandshake | undefined;
  #clientHandshake: ClientHandshake | undefined;
  #helloSent = false;
  readonly #ready: Promise<Connection>;
  #resolveReady: (c: Connection) => void = noop;
  #rejectReady: (e: PtnError) => void = noop;
  readonly #closed: Promise<void>;
  #resolveClosed: () => void = noop;
  #closeError: PtnError | undefined;
  #socketError: PtnError | undefined;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #drainWaiters: Array<{ resolve: () => void; reject: (e: PtnError) => void }> = [];
  readonly #notifyQueue: Frame[] = [];
  #notifyRunning = false;
  #lastReceivedAtMs = performance.now();
  #lastSentAtMs = performance.now();
  #handshakeTimer: NodeJS.Timeout | undefined;
  /** The socket is corked until the next check phase (#coalesce). */
  #corked = false;
  #heartbeatTimer: NodeJS.Timeout | undefined;

  /** @internal use `Connection.open()`. */
  private constructor(init: ConnectionInit) {
    super();
    this.dialed = init.dialed;
    this.remoteAddress = init.remoteAddress;
    this.#ws = init.ws;
    this.#config = init.config;
    this.#log = init.log ?? noop;
    this.#fallback = init.fallback;
    this.#inbound = new InboundFlow(
      {
        bytesMax: init.receiveBufferBytesMax ?? init.config.sendBufferBytesMax,
        framesMax: init.handlersInflightMax ?? HANDLERS_INFLIGHT_MAX_DEFAULT,
      },
      init.ws,
    );
    this.#ready = new Promise<Connection>((resolve, reject) => {
      this.#resolveReady = resolve;
      this.#rejectReady = reject;
    });
    this.#ready.catch(noop); // the opener awaits it; never an unhandled rejection
    this.#closed = new Promise<void>((resolve) => (this.#resolveClosed = resolve));
    if (init.dialed) this.#clientHandshake = new ClientHandshake(init.identity);
    else this.#serverHandshake = new ServerHandshake(init.identity);
    this.#ws.on('message', (data, isBinary) => this.#onMessage(data, isBinary));
    this.#ws.on('error', (err) => this.#onSocketError(err));
    this.#ws.on('close', (code, reason) => this.#onClose(code, reason));
    this.#handshakeTimer = setTimeout(() => this.#fail(this.#handshakeTimeout()), init.config.handshakeTimeoutMs);
  }

  /**
   * @internal Wraps a WebSocket (OPEN on the accepting side, CONNECTING on the dialing side)
   * and runs the handshake. `ready` resolves with the open connection or rejects with the
   * coded reason the handshake failed (the socket is then being closed with its close code).
   */
  static open(init: ConnectionInit): { connection: Connection; ready: Promise<Connection> } {
    const connection = new Connection(init);
    if (!init.dialed) connection.#startServerHandshake();
    return { connection, ready: connection.#ready };
  }

  /** Node id the peer proved in the handshake ('' before). */
  get remoteNodeId(): string {
    return this.#remote.nodeId;
  }

  /** 'client' for a CLI, 'peer' for a node. A dialer always sees 'peer'. */
  get remoteRole(): RemoteRole {
    return this.#remote.role;
  }

  /** True from the end of the handshake until closing starts. */
  get isOpen(): boolean {
    return this.#phase === 'open';
  }

  /** Counters of this connection (a snapshot). */
  get stats(): ConnectionStats {
    return { ...this.#stats, readPauses: this.#inbound.pauses };
  }

  /** Bytes queued on the socket and not yet handed to the kernel. */
  get bufferedAmount(): number {
    return this.#ws.bufferedAmount;
  }

  /** Registers a handler for requests/notifications on this connection (before the server-/dial-level registry). */
  handle(method: string, fn: Handler): void {
    assertMethod(method);
    this.#handlers.set(method, fn);
  }

  /**
   * Sends a request and resolves with the response body. Rejects with ERR_REQUEST_TIMEOUT,
   * ERR_CONNECTION_CLOSED, the remote PtnError's own code (details.remote = true) or ERR_REMOTE.
   * `body` may be a `PreparedFrame` made with the same method (zero-copy raw body).
   */
  request(method: string, body: Body | PreparedFrame, opts: { timeoutMs?: number } = {}): Promise<Body> {
    assertMethod(method);
    if (this.#phase !== 'open') {
      if (body instanceof PreparedFrame) body.release();
      return Promise.reject(this.#closedError('request'));
    }
    const id = this.#takeId();
    const timeoutMs = opts.timeoutMs ?? this.#config.requestTimeoutMs;
    return new Promise<Body>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(ptnError(ErrorCode.ERR_REQUEST_TIMEOUT, `request ${method} to ${this.remoteNodeId}: no response in ${timeoutMs} ms`, {
          details: { method, timeoutMs },
        }));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer, method });
      // Our answer may arrive behind the peer's requests: reading must not stay paused (inbound.ts).
      this.#inbound.unpause();
      this.#send(FrameType.REQUEST, id, method, body).catch((err) => this.#settleWith(id, err));
    });
  }

  /** Sends a one-way message; resolves once it is queued within the send budget. */
  async notify(method: string, body: Body | PreparedFrame): Promise<void> {
    assertMethod(method);
    await this.#send(FrameType.NOTIFY, 0, method, body);
  }

  /**
   * Resolves when the bytes queued on this socket are below `net.sendBufferBytesMax`
   * (nothing else is queued by this class). Rejects with ERR_CONNECTION_CLOSED once closing.
   */
  async drained(): Promise<void> {
    for (;;) {
      if (this.#phase !== 'open') throw this.#closedError('send');
      if (this.#ws.bufferedAmount < this.#config.sendBufferBytesMax) return;
      this.#stats.drainWaits++;
      await new Promise<void>((resolve, reject) => this.#drainWaiters.push({ resolve, reject }));
    }
  }

  /** Closes the connection (idempotent); resolves when the socket is closed. */
  close(code = CLOSE_NORMAL, reason = ''): Promise<void> {
    this.#beginClose(code, reason, ptnError(ErrorCode.ERR_CONNECTION_CLOSED, 'connection closed locally'));
    return this.#closed;
  }

  // ── handshake ────────────────────────────────────────────────────────────────────────────

  #startServerHandshake(): void {
    try {
      this.#sendNow(encodeFrame(FrameType.CHALLENGE, 0, '', this.#serverHandshake!.challenge(), this.#config.frameBytesMax));
    } catch (err) {
      this.#fail(err);
    }
  }

  #onHandshakeFrame(frame: Frame): void {
    const max = this.#config.frameBytesMax;
    if (this.#serverHandshake) {
      this.#expect(frame, FrameType.HELLO);
      const { welcome, remote } = this.#serverHandshake.onHello(frame.body);
      this.#sendNow(encodeFrame(FrameType.WELCOME, 0, '', welcome, max));
      this.#opened(remote);
    } else if (!this.#helloSent) {
      this.#expect(frame, FrameType.CHALLENGE);
      const hello = this.#clientHandshake!.onChallenge(frame.body);
      this.#sendNow(encodeFrame(FrameType.HELLO, 0, '', hello, max));
      this.#helloSent = true;
    } else {
      this.#expect(frame, FrameType.WELCOME);
      this.#opened(this.#clientHandshake!.onWelcome(frame.body));
    }
  }

  #expect(frame: Frame, type: FrameType): void {
    if (frame.type !== type) {
      throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, `handshake: expected ${frameTypeName(type)}, got ${frameTypeName(frame.type)}`);
    }
  }

  #opened(remote: RemoteInfo): void {
    this.#remote = remote;
    this.#phase = 'open';
    this.#serverHandshake = undefined;
    this.#clientHandshake = undefined;
    clearTimeout(this.#handshakeTimer);
    const interval = this.#config.heartbeatIntervalMs;
    this.#heartbeatTimer = setInterval(() => this.#tick(), interval);
    this.#heartbeatTimer.unref();
    this.#resolveReady(this);
  }

  #handshakeTimeout(): PtnError {
    const ms = this.#config.handshakeTimeoutMs;
    return ptnError(ErrorCode.ERR_HANDSHAKE_TIMEOUT, `no complete handshake within ${ms} ms`, { details: { handshakeTimeoutMs: ms } });
  }

  // ── receiving ────────────────────────────────────────────────────────────────────────────

  #onMessage(data: RawData, isBinary: boolean): void {
    try {
      if (this.#phase === 'closing' || this.#phase === 'closed') return;
      const buf = toBuffer(data);
      this.#stats.bytesReceived += buf.length;
      this.#stats.framesReceived++;
      this.#lastReceivedAtMs = performance.now();
      if (!isBinary) throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, 'text WebSocket message; frames are binary');
      const frame = decodeFrame(buf, this.#config.frameBytesMax);
      if (this.#phase === 'handshake') this.#onHandshakeFrame(frame);
      else this.#onFrame(frame);
    } catch (err) {
      this.#fail(err);
    }
  }

  #onFrame(frame: Frame): void {
    switch (frame.type) {
      case FrameType.REQUEST:
        // With answers of ours pending on this socket it must keep reading (inbound.ts): beyond
        // the limits a request is refused at once, and the sender retries.
        if (this.#pending.size > 0 && this.#inbound.full) return this.#refuseBusy(frame);
        this.#inbound.admit(frame.frameBytes, this.#pending.size === 0);
        void this.#serveRequest(frame);
        return;
      case FrameType.NOTIFY:
        this.#inbound.admit(frame.frameBytes, this.#pending.size === 0);
        this.#notifyQueue.push(frame);
        if (!this.#notifyRunning) void this.#runNotifications();
        return;
      case FrameType.RESPONSE:
      case FrameType.ERROR:
        this.#settle(frame);
        return;
      case FrameType.PING:
        if (typeof frame.body !== 'number') throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, 'PING body is not a number');
        // A PONG does not count as sending for our own heartbeat: else the side that answers
        // never pings and never measures its round trip (which side that is depends on timing).
        this.#sendNow(encodeFrame(FrameType.PONG, 0, '', frame.body, this.#config.frameBytesMax), undefined, false);
        return;
      case FrameType.PONG:
        if (typeof frame.body !== 'number') throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, 'PONG body is not a number');
        this.#stats.rttMs = performance.now() - frame.body;
        return;
      default:
        throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, `unexpected ${frameTypeName(frame.type)} frame after the handshake`);
    }
  }

  #lookup(method: string): Handler | undefined {
    return this.#handlers.get(method) ?? this.#fallback?.(method);
  }

  async #serveRequest(frame: Frame): Promise<void> {
    let type: FrameType = FrameType.RESPONSE;
    let reply: Body | PreparedFrame | void;
    try {
      const fn = this.#lookup(frame.method);
      if (!fn) throw ptnError(ErrorCode.ERR_UNKNOWN_METHOD, `no handler for ${frame.method}`, { details: { method: frame.method } });
      reply = await fn(frame.body, this);
    } catch (err) {
      type = FrameType.ERROR;
      reply = this.#errorBody(err, frame.method);
    }
    try {
      await this.#send(type, frame.id, '', reply);
    } catch (err) {
      // The reply could not be encoded (too large, not JSON-able): answer with that error instead.
      if (this.#phase === 'open' && type === FrameType.RESPONSE) {
        await this.#send(FrameType.ERROR, frame.id, '', this.#errorBody(err, frame.method)).catch(noop);
      }
    } finally {
      this.#release(frame);
    }
  }

  /**
   * Answers a request ERR_PEER_BUSY without running it: a small frame, sent past the send budget
   * (one per request read). Senders hold at sendBufferBytesMax, so bytes queued beyond it plus one
   * frame plus REFUSALS_QUEUED_BYTES_MAX are refusals the peer does not read while it keeps
   * sending requests: that peer is failed (coded close) rather than allowed to grow our queue.
   */
  #refuseBusy(frame: Frame): void {
    if (this.#ws.bufferedAmount > this.#config.sendBufferBytesMax + this.#config.frameBytesMax + REFUSALS_QUEUED_BYTES_MAX) {
      this.#fail(ptnError(ErrorCode.ERR_PEER_BUSY, `peer ${this.remoteNodeId} keeps sending requests beyond the limits without reading the refusals`));
      return;
    }
    this.#stats.busyRefusals++;
    const body = { code: ErrorCode.ERR_PEER_BUSY, message: `${frame.method}: ${this.#inbound.bytes} bytes of requests being handled already; retry` };
    this.#sendNow(encodeFrame(FrameType.ERROR, frame.id, '', body, this.#config.frameBytesMax));
  }

  #errorBody(err: unknown, method: string): { code: string; message: string } {
    if (err instanceof PtnError) return { code: err.code, message: err.message };
    const message = (err as Error | undefined)?.message ?? String(err);
    this.#log('error', `handler ${method} failed with an uncoded error`, { method, error: message });
    return { code: ErrorCode.ERR_REMOTE, message };
  }

  async #runNotifications(): Promise<void> {
    this.#notifyRunning = true;
    try {
      while (this.#notifyQueue.length > 0 && this.#phase === 'open') {
        const frame = this.#notifyQueue.shift()!;
        try {
          const fn = this.#lookup(frame.method);
          if (!fn) this.#log('warn', `no handler for notification ${frame.method}`, { method: frame.method, node: this.remoteNodeId });
          else {
            const r = fn(frame.body, this);
            if (isPromiseLike(r)) await r;
          }
        } catch (err) {
          const code = (err as PtnError).code;
          this.#log('warn', `notification handler ${frame.method} failed`, { method: frame.method, code, error: (err as Error)?.message });
        } finally {
          this.#release(frame);
        }
      }
    } finally {
      this.#notifyRunning = false;
    }
  }

  #release(frame: Frame): void {
    // The silence while reading was paused was ours, not the peer's.
    if (this.#inbound.release(frame.frameBytes)) this.#lastReceivedAtMs = performance.now();
  }

  #settle(frame: Frame): void {
    const p = this.#pending.get(frame.id);
    if (!p) return; // a late answer to a request that already timed out
    this.#pending.delete(frame.id);
    clearTimeout(p.timer);
    if (frame.type === FrameType.RESPONSE) p.resolve(frame.body);
    else p.reject(remoteError(frame.body, p.method));
  }

  #settleWith(id: number, err: unknown): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    clearTimeout(p.timer);
    p.reject(err instanceof PtnError ? err : ptnError(ErrorCode.ERR_CONNECTION_CLOSED, String((err as Error)?.message ?? err), { cause: err }));
  }

  // ── sending ──────────────────────────────────────────────────────────────────────────────

  #takeId(): number {
    do {
      this.#nextId = this.#nextId >= 0xffffffff ? 1 : this.#nextId + 1;
    } while (this.#pending.has(this.#nextId));
    return this.#nextId;
  }

  /** Sends a frame; a PreparedFrame is owned from here on and released once the socket took it (or on failure). */
  async #send(type: FrameType, id: number, method: string, body: Body | PreparedFrame | void): Promise<void> {
    const prepared = body instanceof PreparedFrame ? body : undefined;
    let handedOver = false;
    try {
      if (prepared) assert(prepared.method === method, `prepared frame for ${prepared.method} sent as ${method}`);
      await this.drained();
      // No await between here and the write: the room checked above is still there.
      let buf: Buffer;
      if (prepared) {
        if (prepared.buffer.length > this.#config.frameBytesMax) {
          throw ptnError(ErrorCode.ERR_PROTOCOL_FRAME_TOO_LARGE, `frame of ${prepared.buffer.length} bytes exceeds frameBytesMax`, {
            details: { frameBytes: prepared.buffer.length, frameBytesMax: this.#config.frameBytesMax },
          });
        }
        buf = sealFrame(prepared, type, id);
      } else {
        buf = encodeFrame(type, id, method, body ?? null, this.#config.frameBytesMax);
      }
      this.#sendNow(buf, prepared);
      handedOver = true;
    } finally {
      if (!handedOver) prepared?.release();
    }
  }

  /** `heartbeat` false: the frame does not count as sending for our heartbeat (a PONG). */
  #sendNow(buf: Buffer, prepared?: PreparedFrame, heartbeat = true): void {
    this.#stats.bytesSent += buf.length;
    this.#stats.framesSent++;
    if (heartbeat) this.#lastSentAtMs = performance.now();
    this.#coalesce();
    // ws calls back once the socket took the bytes (or failed to): only then may a pooled buffer be reused.
    this.#ws.send(buf, { binary: true }, prepared ? () => { prepared.release(); this.#onWritten(); } : this.#onWritten);
  }

  /**
   * Corks the socket until the end of this turn of the event loop, so every frame sent meanwhile
   * (responses to a batch of requests, replicated updates, chunk requests) leaves in one `writev`
   * instead of one system call each: on loopback each call also runs the peer's receive path,
   * and at 10k writes/s per-frame writes took a third of a node's main thread. ws corks around
   * each frame itself; the socket counts corks, so the bytes wait for this uncork. Nothing is
   * held longer than the current loop turn, and `end()` on close uncorks at once.
   */
  #coalesce(): void {
    if (this.#corked) return;
    const socket = (this.#ws as unknown as { _socket?: Duplex | null })._socket;
    if (!socket || socket.destroyed || typeof socket.cork !== 'function') return;
    socket.cork();
    this.#corked = true;
    setImmediate(() => {
      this.#corked = false;
      socket.uncork();
    });
  }

  /** Called by ws when a frame reached the kernel: senders re-check the room. */
  readonly #onWritten = (): void => {
    const waiters = this.#drainWaiters;
    if (waiters.length === 0) return;
    this.#drainWaiters = [];
    for (const w of waiters) w.resolve();
  };

  #tick(): void {
    try {
      if (this.#phase !== 'open') return;
      const now = performance.now();
      if (this.#inbound.paused) this.#lastReceivedAtMs = now;
      const silentMs = now - this.#lastReceivedAtMs;
      if (silentMs >= this.#config.failureTimeoutMs) {
        this.#log('warn', `peer ${this.remoteNodeId} at ${this.remoteAddress} silent for ${Math.round(silentMs)} ms: declared dead`, {
          node: this.remoteNodeId,
        });
        this.#emitSafely('dead');
        const why = ptnError(ErrorCode.ERR_CONNECTION_CLOSED, `peer silent for ${Math.round(silentMs)} ms`);
        this.#beginClose(closeCodeFor(why.code), why.code, why, true);
        return;
      }
      const idle = now - this.#lastSentAtMs >= this.#config.heartbeatIntervalMs / 2;
      if (idle && this.#ws.bufferedAmount < this.#config.sendBufferBytesMax) {
        this.#sendNow(encodeFrame(FrameType.PING, 0, '', now, this.#config.frameBytesMax));
      }
    } catch (err) {
      this.#fail(err);
    }
  }

  // ── closing ──────────────────────────────────────────────────────────────────────────────

  #closedError(what: string): PtnError {
    return ptnError(ErrorCode.ERR_CONNECTION_CLOSED, `${what}: connection to ${this.remoteNodeId || this.remoteAddress} is closed`, {
      cause: this.#closeError ?? this.#socketError,
    });
  }

  /** Closes for an error found on this connection: one log line once open, the matching close code. */
  #fail(err: unknown): void {
    if (this.#phase === 'closing' || this.#phase === 'closed') return;
    let e: PtnError;
    if (err instanceof PtnError) e = err;
    else {
      e = ptnError(ErrorCode.ERR_REMOTE, `internal error: ${(err as Error)?.message ?? String(err)}`, { cause: err });
      this.#log('error', `internal error on connection to ${this.remoteAddress}`, { error: (err as Error)?.stack ?? String(err) });
    }
    if (this.#phase === 'open') {
      this.#log('warn', `closing connection to ${this.remoteNodeId} at ${this.remoteAddress}: ${e.code}`, {
        code: e.code,
        error: e.message,
      });
    }
    this.#beginClose(closeCodeFor(e.code), e.code, e);
  }

  #beginClose(code: number, reason: string, why: PtnError, hard = false): void {
    if (this.#phase === 'closing' || this.#phase === 'closed') return;
    this.#phase = 'closing';
    this.#closeError = why;
    this.#stopTimers();
    this.#rejectAll(why);
    this.#inbound.unpause(); // or the peer's close frame would wait behind the pause until closeTimeout
    try {
      if (hard) this.#ws.terminate();
      else this.#ws.close(code, reason);
    } catch {
      this.#ws.terminate();
    }
  }

  /** ws emits 'error' then 'close'; the error names why the close happened. */
  #onSocketError(err: unknown): void {
    const e = errorFromSocket(err);
    this.#socketError ??= e;
    if (this.#phase === 'open') {
      this.#log('warn', `connection to ${this.remoteNodeId} at ${this.remoteAddress} failed: ${e.code}`, { code: e.code, error: e.message });
    }
  }

  #onClose(code: number, reasonBuf: Buffer): void {
    try {
      const reason = reasonBuf.toString('utf8');
      this.#phase = 'closed';
      this.#stopTimers();
      this.#rejectAll(this.#closeError ?? this.#socketError ?? errorFromClose(code, reason));
      this.#notifyQueue.length = 0;
      this.#resolveClosed();
      this.#emitSafely('close', code, reason);
    } catch (err) {
      this.#log('error', 'error while closing a connection', { error: (err as Error)?.message });
    }
  }

  #rejectAll(why: PtnError): void {
    this.#rejectReady(why);
    if (this.#pending.size > 0) {
      const closed = ptnError(ErrorCode.ERR_CONNECTION_CLOSED, `connection to ${this.remoteNodeId} closed with the request pending`, {
        cause: why,
        details: { reason: why.code },
      });
      for (const p of this.#pending.values()) {
        clearTimeout(p.timer);
        p.reject(closed);
      }
      this.#pending.clear();
    }
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const w of waiters) w.reject(this.#closedError('send'));
  }

  #stopTimers(): void {
    clearTimeout(this.#handshakeTimer);
    clearInterval(this.#heartbeatTimer);
  }

  #emitSafely(event: string, ...args: unknown[]): void {
    try {
      this.emit(event, ...args);
    } catch (err) {
      this.#log('error', `a '${event}' listener threw`, { error: (err as Error)?.message });
    }
  }
}
