/**
 * A partition-aware client: sends each key's writes straight to its partition's primary, as an
 * Ignite thin client with partition awareness or a Redis Cluster client does, instead of to one
 * node that forwards half of them once a second node owns partitions.
 *
 * The route map comes from the cluster status (each partition's primary, each node's address) and
 * is refreshed every `refreshMs` while in use. A stale route is still correct — any node forwards a
 * write to the primary it knows — it only costs the extra hop, so routing never waits for a refresh.
 * Connections are opened per node on first use, `perNode` of them, used round robin; a node that
 * cannot be reached is routed around (through the first connection) until the next refresh.
 *
 * Lifecycle: `open()` → `route(key)` … → `close()` (closes every connection; idempotent).
 * Bounds: at most `perNode` connections per node of the topology; one status request at a time.
 */
import { partitionOfKey } from '../cluster/affinity.js';
import type { Connection } from '../net/connection.js';
import { type ClientSettings, connectClient } from './client.js';

interface StatusRoutes {
  nodes: Array<{ id: string; address: string }>;
  caches: Array<{ name: string; partitions: number }>;
  partitions: Record<string, Array<{ primary: string }>>;
}

export interface PrimaryRouterOptions {
  cache: string;
  /** Connections per node (default 2). */
  perNode?: number;
  /** How often the route map is fetched again while in use, ms (default 250). */
  refreshMs?: number;
  /** Opens a connection to a node (default: connectClient with the settings; tests pass fakes). */
  connect?: (address: string) => Promise<Connection>;
}

export class PrimaryRouter {
  private readonly conns = new Map<string, Connection[]>();
  private readonly dialing = new Map<string, Promise<void>>();
  private primaries: string[] = [];
  private partitions = 0;
  private nextConn = 0;
  private refreshing: Promise<void> | undefined;
  private lastRefresh = 0;
  private closed = false;
  /** Writes routed to the primary the map named / through the fallback connection. */
  readonly counts = { direct: 0, fallback: 0, refreshes: 0 };

  private constructor(
    private readonly settings: ClientSettings,
    private readonly fallback: Connection,
    private readonly o: Required<Omit<PrimaryRouterOptions, 'connect'>> & Pick<PrimaryRouterOptions, 'connect'>,
  ) {}

  /** Reads the route map through `fallback` (a connection to any node, which stays the caller's). */
  static async open(settings: ClientSettings, fallback: Connection, o: PrimaryRouterOptions): Promise<PrimaryRouter> {
    const r = new PrimaryRouter(settings, fallback, { perNode: o.perNode ?? 2, refreshMs: o.refreshMs ?? 250, cache: o.cache, connect: o.connect });
    await r.refresh();
    return r;
  }

  /** Waits for a route-map refresh begun after this call and the dials it started (tests; the load never waits). */
  async settle(): Promise<void> {
    await this.refreshing;
    await this.refreshSoon();
    await Promise.allSettled([...this.dialing.values()]);
  }

  /** The connection to send `key`'s write on: its primary's when known and connected, else the fallback. */
  route(key: string): Connection {
    if (!this.closed && performance.now() - this.lastRefresh >= this.o.refreshMs) void this.refreshSoon();
    const primary = this.partitions > 0 ? this.primaries[partitionOfKey(key, this.partitions)] : undefined;
    const list = primary ? this.conns.get(primary) : undefined;
    if (list && list.length > 0) {
      this.counts.direct++;
      return list[this.nextConn++ % list.length]!;
    }
    this.counts.fallback++;
    return this.fallback;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.refreshing?.catch(() => undefined);
    await Promise.allSettled([...this.dialing.values()]);
    for (const list of this.conns.values()) for (const c of list) await c.close().catch(() => undefined);
    this.conns.clear();
  }

  private refreshSoon(): Promise<void> {
    this.refreshing ??= this.refresh()
      .catch(() => undefined) // keep the old map; the fallback still forwards
      .finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  private async refresh(): Promise<void> {
    this.lastRefresh = performance.now();
    const s = (await this.fallback.request('status', {})) as unknown as StatusRoutes;
    this.counts.refreshes++;
    const def = s.caches.find((c) => c.name === this.o.cache);
    const parts = s.partitions[this.o.cache];
    if (!def || !parts) return;
    this.primaries = parts.map((p) => p.primary);
    this.partitions = def.partitions;
    for (const n of s.nodes) {
      if (!this.conns.has(n.id) && !this.dialing.has(n.id) && this.primaries.includes(n.id)) this.dial(n.id, n.address);
    }
  }

  private dial(nodeId: string, address: string): void {
    const p = (async () => {
      const list: Connection[] = [];
      try {
        for (let i = 0; i < this.o.perNode; i++) list.push(await (this.o.connect ? this.o.connect(address) : connectClient(this.settings, { address, retries: 0 })));
      } catch {
        for (const c of list) await c.close().catch(() => undefined);
        return; // routed through the fallback; tried again at a later refresh
      }
      if (this.closed) {
        for (const c of list) await c.close().catch(() => undefined);
        return;
      }
      for (const c of list) c.on('close', () => this.forget(nodeId, c));
      this.conns.set(nodeId, list);
    })().finally(() => this.dialing.delete(nodeId));
    this.dialing.set(nodeId, p);
  }

  private forget(nodeId: string, c: Connection): void {
    const list = this.conns.get(nodeId);
    if (!list) return;
    const rest = list.filter((x) => x !== c);
    if (rest.length > 0) this.conns.set(nodeId, rest);
    else this.conns.delete(nodeId);
  }
}
