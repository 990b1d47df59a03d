/**
 * Redis as the peer the catch-up benchmark compares against: the same data and the same
 * fixed-rate write load go through a Redis replica full sync (REPLICAOF, diskless send on the
 * master), timed until the replica reports it is in sync.
 *
 * Pieces: `findRedisServer()` (PATH lookup, no install), `RedisServer` (one redis-server process on
 * 127.0.0.1, an ephemeral port, its own temp dir, no persistence; killed on `stop()`), and
 * `RespClient`, a tiny RESP2 client: commands are arrays of bulk strings, replies are matched to
 * requests in order, so any number of commands may be pipelined. Only what the bench needs is
 * there (SET, INFO, REPLICAOF, PING, DBSIZE through `call`).
 *
 * Bounds: a client's pipeline is bounded by its caller (the fixed-rate load's in-flight limit,
 * `fill`'s batch); the reply parser keeps at most one partial reply in its buffer.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { freePort } from './lib.js';

/** Absolute path of `redis-server` on the PATH, or undefined. */
export function findRedisServer(env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const p = path.join(dir, 'redis-server');
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

/** How to get Redis when it is missing (printed by the bench). */
export const REDIS_INSTALL_HINT = 'redis-server is not on the PATH: install it (Debian/Ubuntu: `apt-get install redis-server`) to add the Redis full-sync column';

/** A reply: simple string, integer, bulk string (null when absent), array, or an Error for `-ERR`. */
export type RespValue = string | number | Buffer | null | Error | RespValue[];

/** Encodes one command as a RESP array of bulk strings. */
export function encodeCommand(args: ReadonlyArray<string | Buffer>): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = typeof a === 'string' ? Buffer.from(a) : a;
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/**
 * Parses one reply at `pos` of `buf`; returns it with the position after it, or undefined when
 * the buffer does not hold a whole reply yet.
 */
export function parseReply(buf: Buffer, pos: number): { value: RespValue; next: number } | undefined {
  if (pos >= buf.length) return undefined;
  const eol = buf.indexOf('\r\n', pos);
  if (eol < 0) return undefined;
  const type = String.fromCharCode(buf[pos]!);
  const line = buf.toString('utf8', pos + 1, eol);
  switch (type) {
    case '+':
      return { value: line, next: eol + 2 };
    case '-':
      return { value: new Error(line), next: eol + 2 };
    case ':':
      return { value: Number(line), next: eol + 2 };
    case '$': {
      const n = Number(line);
      if (n < 0) return { value: null, next: eol + 2 };
      if (buf.length < eol + 2 + n + 2) return undefined;
      return { value: buf.subarray(eol + 2, eol + 2 + n), next: eol + 2 + n + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, next: eol + 2 };
      const items: RespValue[] = [];
      let at = eol + 2;
      for (let i = 0; i < n; i++) {
        const r = parseReply(buf, at);
        if (!r) return undefined;
        items.push(r.value);
        at = r.next;
      }
      return { value: items, next: at };
    }
    default:
      throw new Error(`RESP: unexpected reply type byte 0x${buf[pos]!.toString(16)}`);
  }
}

/** A pipelining RESP2 client over one TCP connection; see the file comment. */
export class RespClient {
  private buf: Buffer = Buffer.alloc(0);
  private readonly pending: Array<{ resolve: (v: RespValue) => void; reject: (e: Error) => void }> = [];
  private failure: Error | undefined;

  private constructor(private readonly sock: net.Socket) {
    sock.setNoDelay(true);
    sock.on('data', (d: Buffer) => this.onData(d));
    const fail = (err: Error) => {
      this.failure ??= err;
      for (const p of this.pending.splice(0)) p.reject(this.failure);
    };
    sock.on('error', fail);
    sock.on('close', () => fail(new Error('redis connection closed')));
  }

  /** Connects to 127.0.0.1:`port`. */
  static connect(port: number): Promise<RespClient> {
    return new Promise((resolve, reject) => {
      const sock = net.connect(port, '127.0.0.1');
      sock.once('connect', () => {
        sock.off('error', reject);
        resolve(new RespClient(sock));
      });
      sock.once('error', reject);
    });
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    let pos = 0;
    for (;;) {
      const r = parseReply(this.buf, pos);
      if (!r) break;
      pos = r.next;
      const p = this.pending.shift();
      if (!p) continue; // a reply nobody asked for (cannot happen with RESP2 request/reply)
      if (r.value instanceof Error) p.reject(r.value);
      else p.resolve(r.value);
    }
    this.buf = pos === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(pos);
  }

  /** Sends one command; resolves its reply (rejects on `-ERR`). Calls may overlap (pipelining). */
  call(...args: Array<string | Buffer>): Promise<RespValue> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.sock.write(encodeCommand(args));
    });
  }

  /** `INFO section` parsed into key → value. */
  async info(section: string): Promise<Map<string, string>> {
    const text = String(await this.call('INFO', section));
    const out = new Map<string, string>();
    for (const line of text.split('\r\n')) {
      const i = line.indexOf(':');
      if (i > 0 && !line.startsWith('#')) out.set(line.slice(0, i), line.slice(i + 1));
    }
    return out;
  }

  /** Closes the connection; what is in flight, and every later call, is rejected. */
  close(): void {
    this.failure ??= new Error('redis connection closed');
    for (const p of this.pending.splice(0)) p.reject(this.failure);
    this.sock.destroy();
  }
}

/** One redis-server process on 127.0.0.1 with no persistence, in `dir`. */
export class RedisServer {
  private exited = false;

  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly proc: ChildProcess,
  ) {
    proc.once('exit', () => (this.exited = true));
  }

  /**
   * Starts redis-server (`bin`) on an ephemeral port in `dir` with `extra` config directives
   * (`['repl-diskless-sync', 'yes']` …) and waits until it answers PING.
   */
  static async start(bin: string, dir: string, extra: string[] = []): Promise<RedisServer> {
    fs.mkdirSync(dir, { recursive: true });
    const port = await freePort();
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--logfile', path.join(dir, 'redis.log'), ...extra.map((a, i) => (i % 2 === 0 ? `--${a}` : a))];
    const proc = spawn(bin, args, { stdio: 'ignore' });
    const server = new RedisServer(port, dir, proc);
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (server.exited) throw new Error(`redis-server exited at start; see ${path.join(dir, 'redis.log')}`);
      try {
        const c = await RespClient.connect(port);
        await c.call('PING');
        c.close();
        return server;
      } catch (err) {
        if (Date.now() > deadline) {
          await server.stop();
          throw new Error(`redis-server did not answer on port ${port}: ${(err as Error).message}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  /** Process id (for status lines). */
  get pid(): number | undefined {
    return this.proc.pid;
  }

  /** Kills the process (SIGKILL: nothing to persist) and waits for it; idempotent. */
  async stop(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((r) => this.proc.once('exit', () => r()));
    this.proc.kill('SIGKILL');
    await gone;
  }
}

/** Writes keys `keyOf(0..n-1)` with `valueOf(i)` through pipelined SETs, `batch` at a time. */
export async function redisFill(c: RespClient, n: number, keyOf: (i: number) => string, valueOf: (i: number) => string, batch = 1000): Promise<number> {
  const t0 = performance.now();
  for (let start = 0; start < n; start += batch) {
    const end = Math.min(n, start + batch);
    const calls: Promise<RespValue>[] = [];
    for (let i = start; i < end; i++) calls.push(c.call('SET', keyOf(i), valueOf(i)));
    await Promise.all(calls);
  }
  return n / ((performance.now() - t0) / 1000);
}

/** True when a replica's INFO replication says it is in sync with its master. */
export function replicaInSync(info: Map<string, string>): boolean {
  return info.get('role') === 'slave' && info.get('master_link_status') === 'up' && info.get('master_sync_in_progress') === '0';
}
