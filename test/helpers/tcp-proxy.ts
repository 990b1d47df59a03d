/**
 * Test helper: a TCP proxy to put between a client (or a node) and a node, to stall, cut, slow
 * down or corrupt the stream.
 *
 *   const proxy = await TcpProxy.start({ target: '127.0.0.1:7402' });
 *   // dial proxy.address instead of the target (for a node: its config's advertiseAddress)
 *   proxy.stall(); … proxy.resume();            // hold bytes (sockets stay open), then deliver them
 *   proxy.cut();                                 // destroy every current connection; keeps listening
 *   proxy.setBandwidth(256 * 1024, 'down');      // bytes/s; 0 = unlimited
 *   proxy.flipBytes({ seed: 7, direction: 'down', everyNBytes: 65536 });
 *   after(() => proxy.close());
 *
 * Directions: `up` = from the side that dialed the proxy to the target; `down` = back.
 *
 * Data flow per connection and direction: source socket → flips (at stream offsets counted from
 * the connection's first byte) → a queue bounded by `queueBytesMax` (the source is paused when it
 * is full, so a stall or a slow link pushes back on the sender through TCP) → the shared
 * token bucket of that direction → destination socket (its own backpressure: wait for 'drain').
 * Half-closes are passed on once the queue is empty; an error on one side destroys the other.
 */
import net from 'node:net';

/** `up`: dialer → target; `down`: target → dialer. */
export type ProxyDirection = 'up' | 'down';
export type ProxyDirections = ProxyDirection | 'both';

export interface TcpProxyOptions {
  /** HOST:PORT the proxy forwards to. */
  target: string;
  /** Host to listen on (default 127.0.0.1; the port is always chosen by the OS). */
  host?: string;
  /** Bytes held per connection and direction before the source socket is paused (default 256 KiB). */
  queueBytesMax?: number;
}

/** Which bytes to corrupt: one at `atOffset`, or one per `everyNBytes` window at a seeded position. */
export interface FlipOptions {
  /** Seeds the flipped positions (everyNBytes) and the XOR masks. */
  seed: number;
  direction?: ProxyDirections;
  everyNBytes?: number;
  atOffset?: number;
  /** Most bytes flipped in total by this rule (default unlimited). */
  limit?: number;
}

/** One flipped byte: connection (1-based, in accept order), direction, stream offset, values. */
export interface FlipRecord {
  connection: number;
  direction: ProxyDirection;
  offset: number;
  before: number;
  after: number;
}

export interface ProxyStats {
  /** Bytes delivered to the target / back to the dialers, over all connections. */
  bytesUp: number;
  bytesDown: number;
  connectionsAccepted: number;
  connectionsOpen: number;
  /** Connections closed by cut(). */
  connectionsCut: number;
  /** Bytes read from a source and not yet delivered (stalled, throttled or waiting for drain). */
  bytesQueued: number;
  flips: number;
}

/** Flip records kept (the oldest are dropped beyond this). */
export const FLIP_LOG_MAX = 10_000;
const DEFAULT_QUEUE_BYTES_MAX = 256 * 1024;
/** Smallest write a throttled pipe waits for, so a slow link does not turn into 1-byte writes. */
const THROTTLE_WRITE_BYTES_MIN = 4096;

function splitTarget(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  const port = Number(address.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`TcpProxy: target must be HOST:PORT, got ${address}`);
  return { host: address.slice(0, i), port };
}

function includes(dirs: ProxyDirections, d: ProxyDirection): boolean {
  return dirs === 'both' || dirs === d;
}

/** 32 pseudo-random bits from (seed, index): the same answer whatever the chunking. */
function hash32(seed: number, index: number, salt: number): number {
  let t = (seed ^ Math.imul(index + 1, 0x9e3779b1) ^ Math.imul(salt + 1, 0x85ebca6b)) >>> 0;
  t = Math.imul(t ^ (t >>> 16), 0x7feb352d);
  t = Math.imul(t ^ (t >>> 15), 0x846ca68b);
  return (t ^ (t >>> 16)) >>> 0;
}

/** A token bucket shared by every connection of one direction. */
class Bucket {
  private tokens = 0;
  private last = performance.now();

  constructor(readonly bytesPerSec: number) {
    this.tokens = this.burstBytes;
  }

  /** At most 50 ms worth of bytes (and at least one minimum write) may go at once. */
  get burstBytes(): number {
    return Math.max(THROTTLE_WRITE_BYTES_MIN, Math.floor(this.bytesPerSec / 20));
  }

  private refill(): void {
    const now = performance.now();
    this.tokens = Math.min(this.burstBytes, this.tokens + ((now - this.last) * this.bytesPerSec) / 1000);
    this.last = now;
  }

  /** Takes up to `want` bytes; returns how many may be sent now (0: wait `waitMs`). */
  take(want: number): number {
    this.refill();
    const n = Math.min(want, Math.floor(this.tokens));
    if (n < Math.min(want, THROTTLE_WRITE_BYTES_MIN)) return 0;
    this.tokens -= n;
    return n;
  }

  waitMs(want: number): number {
    const need = Math.min(want, THROTTLE_WRITE_BYTES_MIN) - this.tokens;
    return Math.max(1, Math.ceil((need * 1000) / this.bytesPerSec));
  }
}

/** One direction of one connection. */
class Pipe {
  private readonly queue: Buffer[] = [];
  private queued = 0;
  /** Bytes read from the source so far (flip offsets count from here). */
  private offset = 0;
  private waitingDrain = false;
  private timer: NodeJS.Timeout | undefined;
  private ended = false;
  private endSent = false;
  private dead = false;

  constructor(
    private readonly proxy: TcpProxy,
    readonly conn: Conn,
    readonly dir: ProxyDirection,
    private readonly src: net.Socket,
    private readonly dst: net.Socket,
  ) {
    src.on('data', (chunk: Buffer) => this.onData(chunk));
    src.on('end', () => {
      this.ended = true;
      this.pump();
    });
  }

  private onData(chunk: Buffer): void {
    if (this.dead) return;
    const data = this.proxy.applyFlips(this.conn.id, this.dir, this.offset, chunk);
    this.offset += chunk.length;
    this.queue.push(data);
    this.queued += data.length;
    if (this.queued >= this.proxy.queueBytesMax) this.src.pause();
    this.pump();
  }

  /** Sends what the stall, the bucket and the destination allow. */
  pump(): void {
    if (this.dead || this.waitingDrain || this.timer) return;
    const stalled = this.proxy.isStalled(this.dir);
    while (this.queue.length > 0 && !stalled) {
      let chunk = this.queue[0]!;
      const bucket = this.proxy.bucket(this.dir);
      if (bucket) {
        const n = bucket.take(chunk.length);
        if (n === 0) {
          this.timer = setTimeout(() => {
            this.timer = undefined;
            this.pump();
          }, bucket.waitMs(chunk.length));
          break;
        }
        if (n < chunk.length) {
          this.queue[0] = chunk.subarray(n);
          chunk = chunk.subarray(0, n);
        } else this.queue.shift();
      } else this.queue.shift();
      this.queued -= chunk.length;
      this.proxy.delivered(this.dir, chunk.length);
      if (!this.dst.write(chunk)) {
        this.waitingDrain = true;
        this.dst.once('drain', () => {
          this.waitingDrain = false;
          this.pump();
        });
        break;
      }
    }
    if (this.queue.length === 0 && this.ended && !this.endSent) {
      this.endSent = true;
      this.dst.end();
    }
    if (stalled) this.src.pause();
    else if (this.queued < this.proxy.queueBytesMax && this.src.isPaused() && !this.ended) this.src.resume();
  }

  /** Bytes read and not yet delivered. */
  get queuedBytes(): number {
    return this.queued;
  }

  /** The destination is gone: drop what is queued. */
  kill(): void {
    this.dead = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
    this.queued = 0;
  }
}

interface Conn {
  id: number;
  client: net.Socket;
  upstream: net.Socket;
  pipes: Pipe[];
}

/** The proxy; see the file comment. */
export class TcpProxy {
  readonly address: string;
  readonly queueBytesMax: number;
  /** Flipped bytes, oldest first (at most FLIP_LOG_MAX). */
  readonly flipped: FlipRecord[] = [];
  private readonly conns = new Set<Conn>();
  private readonly stalled = { up: false, down: false };
  private readonly buckets: { up: Bucket | undefined; down: Bucket | undefined } = { up: undefined, down: undefined };
  private flip: Required<Pick<FlipOptions, 'seed'>> & FlipOptions & { done: number } | undefined;
  private readonly counts = { bytesUp: 0, bytesDown: 0, connectionsAccepted: 0, connectionsCut: 0, flips: 0 };
  private closed = false;

  private constructor(private readonly server: net.Server, private readonly target: { host: string; port: number }, opts: TcpProxyOptions) {
    const a = server.address() as net.AddressInfo;
    this.address = `${opts.host ?? '127.0.0.1'}:${a.port}`;
    this.queueBytesMax = opts.queueBytesMax ?? DEFAULT_QUEUE_BYTES_MAX;
    server.on('connection', (client) => this.accept(client));
  }

  /** Listens on HOST:0 and resolves once it accepts connections. */
  static async start(opts: TcpProxyOptions): Promise<TcpProxy> {
    const target = splitTarget(opts.target);
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, opts.host ?? '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new TcpProxy(server, target, opts);
  }

  private accept(client: net.Socket): void {
    if (this.closed) {
      client.destroy();
      return;
    }
    const id = ++this.counts.connectionsAccepted;
    const upstream = net.connect({ host: this.target.host, port: this.target.port, allowHalfOpen: true });
    upstream.pause();
    const conn: Conn = { id, client, upstream, pipes: [] };
    this.conns.add(conn);
    const drop = (hadError: boolean, from: net.Socket) => {
      const other = from === client ? upstream : client;
      for (const p of conn.pipes) if (p.dir === (from === client ? 'down' : 'up')) p.kill();
      if (hadError) other.destroy();
      if (client.destroyed && upstream.destroyed) this.conns.delete(conn);
    };
    client.on('error', () => drop(true, client));
    upstream.on('error', () => drop(true, upstream));
    client.on('close', (hadError) => drop(hadError, client));
    upstream.on('close', (hadError) => drop(hadError, upstream));
    upstream.once('connect', () => {
      conn.pipes.push(new Pipe(this, conn, 'up', client, upstream), new Pipe(this, conn, 'down', upstream, client));
      for (const p of conn.pipes) p.pump(); // resumes both sources unless stalled
    });
  }

  // ------------------------------------------------------------------ faults

  /** Stops forwarding (sockets stay open; sources are paused once their queue is full). */
  stall(direction: ProxyDirections = 'both'): void {
    if (includes(direction, 'up')) this.stalled.up = true;
    if (includes(direction, 'down')) this.stalled.down = true;
    this.pumpAll();
  }

  /** Forwards again, delivering what was held first. */
  resume(direction: ProxyDirections = 'both'): void {
    if (includes(direction, 'up')) this.stalled.up = false;
    if (includes(direction, 'down')) this.stalled.down = false;
    this.pumpAll();
  }

  /**
   * Destroys every current connection, both sides (an RST by default, like a dropped link;
   * `reset: false` sends FIN). The proxy keeps listening for new ones.
   */
  cut(opts: { reset?: boolean } = {}): number {
    const n = this.conns.size;
    for (const c of [...this.conns]) {
      for (const p of c.pipes) p.kill();
      for (const s of [c.client, c.upstream]) {
        if (opts.reset ?? true) {
          try {
            s.resetAndDestroy();
            continue;
          } catch {
            /* not connected yet: plain destroy */
          }
        }
        s.destroy();
      }
      this.conns.delete(c);
    }
    this.counts.connectionsCut += n;
    return n;
  }

  /** Limits a direction (or both, each on its own) to `bytesPerSec`, shared by all connections; 0 lifts it. */
  setBandwidth(bytesPerSec: number, direction: ProxyDirections = 'both'): void {
    if (!Number.isFinite(bytesPerSec) || bytesPerSec < 0) throw new Error(`TcpProxy: bandwidth must be >= 0, got ${bytesPerSec}`);
    for (const d of ['up', 'down'] as const) {
      if (includes(direction, d)) this.buckets[d] = bytesPerSec > 0 ? new Bucket(bytesPerSec) : undefined;
    }
    this.pumpAll();
  }

  /** Corrupts bytes from now on (replacing any earlier rule); `null` stops flipping. */
  flipBytes(opts: FlipOptions | null): void {
    if (opts === null) {
      this.flip = undefined;
      return;
    }
    const every = opts.everyNBytes !== undefined;
    if (every === (opts.atOffset !== undefined)) throw new Error('TcpProxy.flipBytes: give exactly one of everyNBytes and atOffset');
    if (every && !(Number.isInteger(opts.everyNBytes) && opts.everyNBytes! >= 1)) throw new Error('TcpProxy.flipBytes: everyNBytes must be an integer >= 1');
    if (!every && !(Number.isInteger(opts.atOffset) && opts.atOffset! >= 0)) throw new Error('TcpProxy.flipBytes: atOffset must be an integer >= 0');
    this.flip = { direction: 'both', ...opts, done: 0 };
  }

  /** @internal Applies the flip rule to a chunk read at stream `offset` (copies only when it flips). */
  applyFlips(connection: number, direction: ProxyDirection, offset: number, chunk: Buffer): Buffer {
    const f = this.flip;
    if (!f || !includes(f.direction ?? 'both', direction) || chunk.length === 0) return chunk;
    const positions: number[] = [];
    const end = offset + chunk.length;
    if (f.atOffset !== undefined) {
      if (f.atOffset >= offset && f.atOffset < end) positions.push(f.atOffset);
    } else {
      const n = f.everyNBytes!;
      for (let w = Math.floor(offset / n); w * n < end; w++) {
        const pos = w * n + (hash32(f.seed, w, 0) % n);
        if (pos >= offset && pos < end) positions.push(pos);
      }
    }
    if (positions.length === 0) return chunk;
    let out: Buffer | undefined;
    for (const pos of positions) {
      if (f.limit !== undefined && f.done >= f.limit) break;
      out ??= Buffer.from(chunk);
      const before = out[pos - offset]!;
      const after = before ^ (1 + (hash32(f.seed, pos, 1) % 255));
      out[pos - offset] = after;
      f.done++;
      this.counts.flips++;
      this.flipped.push({ connection, direction, offset: pos, before, after });
      if (this.flipped.length > FLIP_LOG_MAX) this.flipped.shift();
    }
    return out ?? chunk;
  }

  // ------------------------------------------------------------------ internals for pipes

  /** @internal */
  isStalled(d: ProxyDirection): boolean {
    return this.stalled[d];
  }

  /** @internal */
  bucket(d: ProxyDirection): Bucket | undefined {
    return this.buckets[d];
  }

  /** @internal */
  delivered(d: ProxyDirection, bytes: number): void {
    if (d === 'up') this.counts.bytesUp += bytes;
    else this.counts.bytesDown += bytes;
  }

  private pumpAll(): void {
    for (const c of this.conns) for (const p of c.pipes) p.pump();
  }

  /** Bytes each way, connections accepted, open and cut, bytes flipped. */
  get stats(): ProxyStats {
    let bytesQueued = 0;
    for (const c of this.conns) for (const p of c.pipes) bytesQueued += p.queuedBytes;
    return { ...this.counts, connectionsOpen: this.conns.size, bytesQueued };
  }

  /** Stops listening and destroys every connection. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const done = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of [...this.conns]) {
      for (const p of c.pipes) p.kill();
      c.client.destroy();
      c.upstream.destroy();
    }
    this.conns.clear();
    await done;
  }
}
