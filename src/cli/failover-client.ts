/**
 * A client connection that moves to another node when its node goes away: used by the load
 * generator, which must keep writing while nodes are stopped, killed or added.
 *
 * It knows a list of addresses (the target first, then the nodes of --dir's cluster.json and of
 * the cluster status, learned again on every new connection). At most one dial is in flight; a
 * caller that sees its connection fail reports it with `broken(conn)`, which makes the next
 * `get()` dial the next address in the list.
 */
import { ErrorCode, isPtnError } from '../errors.js';
import type { Connection } from '../net/connection.js';
import { type ClientSettings, connectClient } from './client.js';
import { requestStatus } from './health.js';

/** Error codes after which the connection cannot be used again. */
const CONNECTION_GONE: readonly string[] = [ErrorCode.ERR_CONNECTION_CLOSED, ErrorCode.ERR_HANDSHAKE_TIMEOUT];

/** True when `err` means the connection (or the node behind it) is gone. */
export function isConnectionGone(err: unknown): boolean {
  return isPtnError(err) && CONNECTION_GONE.includes(err.code);
}

/** A client connection with fail-over to the other known nodes; see the file comment. */
export class FailoverClient {
  private readonly addresses: string[];
  private index = 0;
  private conn: Connection | undefined;
  private connecting: Promise<Connection> | undefined;
  private closed = false;
  /** Connections made after the first one. */
  failovers = 0;
  private connects = 0;

  constructor(
    private readonly settings: ClientSettings,
    extraAddresses: readonly string[] = [],
  ) {
    this.addresses = [...new Set([settings.address, ...extraAddresses])];
  }

  /** Every address known so far. */
  get knownAddresses(): readonly string[] {
    return this.addresses;
  }

  /** The current connection, dialing one when there is none. */
  get(): Promise<Connection> {
    if (this.closed) return Promise.reject(new Error('FailoverClient is closed'));
    if (this.conn) return Promise.resolve(this.conn);
    this.connecting ??= this.dialNext().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async dialNext(): Promise<Connection> {
    const address = this.addresses[this.index % this.addresses.length]!;
    let conn: Connection;
    try {
      conn = await connectClient(this.settings, { address, retries: 0 });
    } catch (err) {
      this.index++;
      throw err;
    }
    if (this.closed) {
      await conn.close().catch(() => {});
      throw new Error('FailoverClient is closed');
    }
    if (this.connects++ > 0) this.failovers++;
    conn.once('close', () => this.broken(conn));
    this.conn = conn;
    await this.learnAddresses(conn);
    return conn;
  }

  /** Adds the nodes of the cluster status to the address list (best effort). */
  private async learnAddresses(conn: Connection): Promise<void> {
    try {
      const s = await requestStatus(conn);
      for (const n of s.nodes) if (!this.addresses.includes(n.address)) this.addresses.push(n.address);
    } catch {
      /* an old or busy node: keep the list we have */
    }
  }

  /** Reports that `conn` failed; the next get() moves on to the next address. */
  broken(conn: Connection): void {
    if (this.conn !== conn) return;
    this.conn = undefined;
    this.index++;
    void conn.close().catch(() => {});
  }

  /** Closes the current connection; idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    const c = this.conn;
    this.conn = undefined;
    await this.connecting?.catch(() => {});
    await c?.close().catch(() => {});
  }
}
