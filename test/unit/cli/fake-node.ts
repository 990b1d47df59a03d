// A stand-in for a cluster node in CLI unit tests: a real NetServer (real sockets, real
// handshake) answering put/get/status/digests from an in-memory map that several fake nodes may
// share. Hooks let a test fail, swallow or delay requests.
import { defaultConfig } from '../../../src/config.js';
import { NetServer } from '../../../src/net/server.js';
import type { Body } from '../../../src/net/connection.js';

export const FAKE_CLUSTER_ID = 'ptn-local';
export const FAKE_SECRET = 'fake-secret-123';

/** What the fake cluster stores per key. */
export interface FakeEntry {
  value: unknown;
  counter: number;
}

export class FakeStore {
  readonly entries = new Map<string, FakeEntry>();
  counter = 0;
  /** Counters handed out, in order, with the key. */
  readonly writes: { key: string; counter: number; value: unknown }[] = [];
  put(key: string, value: unknown): FakeEntry {
    const e = { value, counter: ++this.counter };
    this.entries.set(key, e);
    this.writes.push({ key, counter: e.counter, value });
    return e;
  }
}

export interface FakeNodeHooks {
  /** Called before a put is applied; may throw (an error reply) or return 'swallow' (apply, never answer, close the server). */
  beforePut?: (n: number) => void | 'swallow';
}

export class FakeNode {
  server!: NetServer;
  address = '';
  puts = 0;
  /** Counters applied but never answered. */
  readonly swallowed: number[] = [];
  digests: Record<number, Record<string, { state: string; digest: string; entries: number }>> = {};
  peers: FakeNode[] = [];

  constructor(readonly id: string, readonly store: FakeStore, readonly hooks: FakeNodeHooks = {}) {}

  async start(): Promise<this> {
    const net = { ...defaultConfig().net, heartbeatIntervalMs: 200, failureTimeoutMs: 2000 };
    this.server = new NetServer({ host: '127.0.0.1', port: 0, identity: { nodeId: this.id, clusterId: FAKE_CLUSTER_ID, secret: FAKE_SECRET }, config: net });
    this.server.handle('put', (body) => this.onPut(body as { cache: string; key: string; value: unknown }));
    this.server.handle('get', (body) => {
      const e = this.store.entries.get((body as { key: string }).key);
      return e ? { found: true, value: e.value, valueKind: 'json', counter: e.counter } : { found: false };
    });
    this.server.handle('status', () => this.status());
    this.server.handle('digests', (body) => ({
      cache: (body as { cache: string }).cache,
      partitions: Object.entries(this.digests).map(([p, copies]) => ({ partition: Number(p), copies })),
    }));
    const { port } = await this.server.listen();
    this.address = `127.0.0.1:${port}`;
    return this;
  }

  private onPut(b: { cache: string; key: string; value: unknown }): Body | Promise<Body> {
    const n = ++this.puts;
    if (this.hooks.beforePut?.(n) === 'swallow') {
      this.swallowed.push(this.store.put(b.key, b.value).counter);
      void this.server.close();
      return new Promise<Body>(() => {});
    }
    const e = this.store.put(b.key, b.value);
    return { counter: e.counter, partition: 0 };
  }

  status(): Body {
    const all = [this, ...this.peers];
    return {
      nodeId: this.id,
      clusterId: FAKE_CLUSTER_ID,
      topologyVersion: 1,
      coordinator: all[0]!.id,
      rebalanced: true,
      nodes: all.map((n, i) => ({ id: n.id, address: n.address, adminAddress: n.address, order: i + 1 })),
      caches: [{ name: 'default', cacheId: 1, partitions: Object.keys(this.digests).length, backups: 1, indexFields: [] }],
      partitions: {},
      rebalance: { partitionsLeft: 0, partitionsTotal: 0, tasks: [] },
    };
  }

  close(): Promise<void> {
    return this.server.close();
  }
}
