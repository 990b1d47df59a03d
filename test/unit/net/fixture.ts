// Shared set-up for the net tests: configs, identities, and a fixture that owns every server and
// connection a test opens and closes them all in `cleanup()` (call it from after/afterEach).
import type { NetConfig } from '../../../src/config.js';
import { defaultConfig } from '../../../src/config.js';
import { NetServer, type NetServerOptions } from '../../../src/net/server.js';
import { dial, type DialOptions } from '../../../src/net/client.js';
import type { Connection, NetIdentity } from '../../../src/net/connection.js';

export const CLUSTER = 'test-cluster';
export const SECRET = 'test-secret-0123';

/** Net config with test-friendly timings; override per test. */
export function netConfig(overrides: Partial<NetConfig> = {}): NetConfig {
  return { ...defaultConfig().net, handshakeTimeoutMs: 2000, requestTimeoutMs: 5000, reconnectRetries: 0, ...overrides };
}

export function identity(nodeId: string, overrides: Partial<NetIdentity> = {}): NetIdentity {
  return { nodeId, clusterId: CLUSTER, secret: SECRET, ...overrides };
}

export interface LogLine {
  level: string;
  msg: string;
  extra?: object;
}

export { seededRandom } from '../../../src/util/seeded-random.js';

/** Owns servers and connections; `cleanup()` closes all of them. */
export class NetFixture {
  readonly servers: NetServer[] = [];
  readonly conns: Connection[] = [];
  readonly logs: LogLine[] = [];
  readonly log = (level: string, msg: string, extra?: object) => {
    this.logs.push({ level, msg, extra });
  };
  readonly #cleanups: Array<() => unknown> = [];

  /** Starts a server on 127.0.0.1, ephemeral port. Accepted connections are tracked too. */
  async server(opts: Partial<NetServerOptions> = {}): Promise<{ server: NetServer; port: number; address: string; accepted: Connection[] }> {
    const accepted: Connection[] = [];
    const server = new NetServer({
      host: '127.0.0.1',
      port: 0,
      identity: identity('server'),
      config: netConfig(),
      log: this.log,
      ...opts,
      onConnection: (conn) => {
        accepted.push(conn);
        this.conns.push(conn);
        opts.onConnection?.(conn);
      },
    });
    this.servers.push(server);
    const { port } = await server.listen();
    return { server, port, address: `127.0.0.1:${port}`, accepted };
  }

  async dial(address: string, opts: Partial<DialOptions> = {}): Promise<Connection> {
    const conn = await dial(address, { identity: identity('client'), config: netConfig(), log: this.log, ...opts });
    this.conns.push(conn);
    return conn;
  }

  /** Registers extra cleanup (raw sockets, pending handler promises …). */
  onCleanup(fn: () => unknown): void {
    this.#cleanups.push(fn);
  }

  async cleanup(): Promise<void> {
    for (const fn of this.#cleanups.splice(0)) await fn();
    await Promise.all(this.conns.splice(0).map((c) => c.close()));
    await Promise.all(this.servers.splice(0).map((s) => s.close()));
    this.logs.length = 0;
  }
}

/** Polls `fn` until it returns a value (or true); fails after `limitMs` so a broken test cannot hang. */
export async function waitFor<T>(fn: () => T | undefined, what: string, limitMs = 5000): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
