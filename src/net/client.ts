/**
 * Dialing a node: WebSocket connect + handshake, with retries and exponential backoff.
 *
 * Retried: connection refused/reset, HTTP-level refusals, handshake timeouts, bad frames.
 * Not retried (retrying cannot fix them): ERR_HANDSHAKE_CLUSTER, ERR_HANDSHAKE_AUTH,
 * ERR_PROTOCOL_VERSION, and anything that is not a PtnError (a programmer error).
 * The dialing side is the WebSocket client: it receives the fast (unmasked) direction, so
 * a demander dials its supplier.
 */
import pRetry from 'p-retry';
import { WebSocket, type ClientOptions } from 'ws';
import type { NetConfig } from '../config.js';
import { ErrorCode, PtnError, ptnError } from '../errors.js';
import { Connection, type ConnectionLimits, type Handler, type NetLog } from './connection.js';
import type { NetIdentity } from './handshake.js';

export interface DialOptions extends ConnectionLimits {
  identity: NetIdentity;
  config: NetConfig;
  /** Retries after the first attempt. Default `config.reconnectRetries`. */
  retries?: number;
  log?: NetLog;
  /** Handlers for requests/notifications the server sends on this connection. */
  handlers?: Map<string, Handler>;
  /** First backoff delay (doubles, randomized ×1–2). Default 100. */
  retryDelayMinMs?: number;
  /** Longest backoff delay. Default 2000. */
  retryDelayMaxMs?: number;
  /** Aborts the retries (rejects with the signal's reason). */
  signal?: AbortSignal;
}

const NOT_RETRIED: ReadonlySet<string> = new Set([
  ErrorCode.ERR_HANDSHAKE_CLUSTER,
  ErrorCode.ERR_HANDSHAKE_AUTH,
  ErrorCode.ERR_PROTOCOL_VERSION,
]);

function isRetryable(err: unknown): boolean {
  return err instanceof PtnError && !NOT_RETRIED.has(err.code);
}

/** `HOST:PORT` (or a ws:// URL) → ws:// URL. */
function toUrl(address: string): string {
  const url = /^wss?:\/\//.test(address) ? address : `ws://${address}/`;
  try {
    new URL(url);
  } catch (err) {
    throw ptnError(ErrorCode.ERR_USAGE, `not a HOST:PORT address: ${address}`, { cause: err });
  }
  return url;
}

function dialOnce(url: string, address: string, opts: DialOptions): Promise<Connection> {
  const { config, handlers } = opts;
  const wsOptions = {
    perMessageDeflate: false,
    maxPayload: config.frameBytesMax,
    handshakeTimeout: config.handshakeTimeoutMs,
    followRedirects: false,
    // Bounds the closing handshake with a peer that never answers our close frame.
    closeTimeout: config.failureTimeoutMs,
  } as ClientOptions;
  const ws = new WebSocket(url, wsOptions);
  const { ready } = Connection.open({
    ws,
    dialed: true,
    identity: opts.identity,
    config,
    remoteAddress: address,
    fallback: handlers ? (method) => handlers.get(method) : undefined,
    log: opts.log,
    receiveBufferBytesMax: opts.receiveBufferBytesMax,
    handlersInflightMax: opts.handlersInflightMax,
  });
  return ready;
}

/**
 * Dials HOST:PORT and handshakes; retries with backoff (`retries`, default
 * `config.reconnectRetries`). Rejects with the last attempt's coded error; refusals that
 * retrying cannot fix (cluster, auth, version) reject at once.
 */
export async function dial(address: string, opts: DialOptions): Promise<Connection> {
  const url = toUrl(address);
  const log = opts.log;
  return pRetry(() => dialOnce(url, address, opts), {
    retries: opts.retries ?? opts.config.reconnectRetries,
    factor: 2,
    minTimeout: opts.retryDelayMinMs ?? 100,
    maxTimeout: opts.retryDelayMaxMs ?? 2000,
    randomize: true,
    signal: opts.signal,
    shouldRetry: ({ error }) => isRetryable(error),
    onFailedAttempt: ({ error, attemptNumber, retriesLeft }) => {
      if (retriesLeft > 0 && isRetryable(error)) {
        log?.('info', `dial ${address}: attempt ${attemptNumber} failed (${(error as PtnError).code}), retrying`, {
          address,
          code: (error as PtnError).code,
          retriesLeft,
        });
      }
    },
  });
}
