/**
 * Peer pool: one usable connection per other node, dialed on demand and re-dialed after a drop.
 *
 * Connections come from two sides: the ones this node dials (to an address taken from the
 * topology) and the ones other nodes dial to us (accepted by the NetServer). Either serves for
 * requests in both directions; the pool prefers an open one it already has and dials only when
 * it has none. Concurrent callers share one dial attempt per node.
 *
 * Events: 'down' (nodeId) when the last open connection to a node closes or is declared dead.
 */
import { EventEmitter } from 'node:events';
import type { NetConfig } from '../config.js';
import { ErrorCode, ptnError } from '../errors.js';
import { dial } from '../net/client.js';
import type { Body, Connection, Handler, NetIdentity } from '../net/connection.js';
import type { Logger } from '../util/log.js';

export class PeerPool extends EventEmitter {
  private readonly conns = new Map<string, Set<Connection>>();
  private readonly dialing = new Map<string, Promise<Connection>>();
  private closed = false;

  constructor(
    private readonly identity: NetIdentity,
    private readonly netConfig: NetConfig,
    private readonly handlers: Map<string, Handler>,
    private readonly log: Logger,
    /** Address of a node id, from the current topology. */
    private readonly addressOf: (nodeId: string) => string | undefined,
  ) {
    super();
  }

  /** Registers a connection (accepted or dialed) to a peer node. */
  adopt(conn: Connection): void {
    if (conn.remoteRole !== 'peer') return;
    const id = conn.remoteNodeId;
    let set = this.conns.get(id);
    if (!set) {
      set = new Set();
      this.conns.set(id, set);
    }
    set.add(conn);
    const drop = () => {
      const s = this.conns.get(id);
      if (!s || !s.delete(conn)) return;
      if (s.size === 0) {
        this.conns.delete(id);
        if (!this.closed) this.emit('down', id);
      }
    };
    conn.once('close', drop);
    conn.once('dead', drop);
  }

  /** True when an open connection to the node exists. */
  isConnected(nodeId: string): boolean {
    return (this.conns.get(nodeId)?.size ?? 0) > 0;
  }

  /** An open connection to `nodeId`, dialing when there is none. */
  async get(nodeId: string, retries = 2): Promise<Connection> {
    if (this.closed) throw ptnError(ErrorCode.ERR_CLOSED, 'peer pool closed');
    const have = this.conns.get(nodeId);
    if (have && have.size > 0) return have.values().next().value as Connection;
    const pending = this.dialing.get(nodeId);
    if (pending) return pending;
    const address = this.addressOf(nodeId);
    if (!address) throw ptnError(ErrorCode.ERR_CONNECTION_CLOSED, `no address known for node ${nodeId}`);
    const p = this.dialAddress(address, retries)
      .then((conn) => {
        if (conn.remoteNodeId !== nodeId) {
          void conn.close(4000, 'ERR_HANDSHAKE_AUTH');
          throw ptnError(ErrorCode.ERR_CONNECTION_CLOSED, `${address} is node ${conn.remoteNodeId}, expected ${nodeId}`);
        }
        return conn;
      })
      .finally(() => this.dialing.delete(nodeId));
    this.dialing.set(nodeId, p);
    return p;
  }

  /** Dials an address (a seed whose id is not known yet) and adopts the connection. */
  async dialAddress(address: string, retries = 2): Promise<Connection> {
    const conn = await dial(address, {
      identity: this.identity,
      config: this.netConfig,
      retries,
      handlers: this.handlers,
      log: (level: string, msg: string, extra?: object) => this.log.debug({ ...extra, level }, msg),
    });
    this.adopt(conn);
    return conn;
  }

  /** Request to a node by id. */
  async request(nodeId: string, method: string, body: Body, timeoutMs?: number): Promise<Body> {
    const conn = await this.get(nodeId);
    return conn.request(method, body, timeoutMs === undefined ? undefined : { timeoutMs });
  }

  /** One-way message to a node by id; failures are logged, not thrown. */
  async notify(nodeId: string, method: string, body: Body): Promise<void> {
    try {
      const conn = await this.get(nodeId, 0);
      await conn.notify(method, body);
    } catch (err) {
      this.log.debug({ err, nodeId, method }, 'notify failed');
    }
  }

  /** Closes every connection. */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.conns.values()].flatMap((s) => [...s]);
    this.conns.clear();
    await Promise.all(all.map((c) => c.close().catch(() => undefined)));
  }
}
