import test from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { TcpProxy } from '../../helpers/tcp-proxy.js';
import { rng, testSeed } from '../../helpers/tmp.js';

/** Seeded random bytes. */
function randomBytes(n: number, seed: number): Buffer {
  const r = rng(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
  return b;
}

interface Peer {
  socket: net.Socket;
  received: Buffer[];
  bytes(): number;
  all(): Buffer;
  closed: Promise<void>;
}

function track(socket: net.Socket): Peer {
  const received: Buffer[] = [];
  let n = 0;
  socket.on('data', (d: Buffer) => {
    received.push(d);
    n += d.length;
  });
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, received, bytes: () => n, all: () => Buffer.concat(received), closed };
}

/** A target server that records every accepted connection. */
async function startTarget(t: test.TestContext): Promise<{ address: string; accepted: Peer[]; next(): Promise<Peer> }> {
  const accepted: Peer[] = [];
  const waiters: Array<(p: Peer) => void> = [];
  let taken = 0;
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    const p = track(s);
    accepted.push(p);
    const w = waiters.shift();
    if (w) {
      taken++;
      w(p);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        for (const p of accepted) p.socket.destroy();
        server.close(() => resolve());
      }),
  );
  const port = (server.address() as net.AddressInfo).port;
  return {
    address: `127.0.0.1:${port}`,
    accepted,
    /** The next accepted connection not handed out yet. */
    next: () => new Promise((resolve) => (accepted.length > taken ? resolve(accepted[taken++]!) : waiters.push(resolve))),
  };
}

async function startProxy(t: test.TestContext, target: string, queueBytesMax?: number): Promise<TcpProxy> {
  const proxy = await TcpProxy.start({ target, queueBytesMax });
  t.after(() => proxy.close());
  return proxy;
}

async function dial(t: test.TestContext, address: string): Promise<Peer> {
  const [host, port] = address.split(':');
  const socket = net.connect({ host, port: Number(port), allowHalfOpen: true });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  t.after(() => socket.destroy());
  return track(socket);
}

async function until(cond: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('a large random stream passes byte-exact both ways, half-closes included', async (t) => {
  const seed = testSeed();
  t.diagnostic(`seed ${seed} (rerun with PTN_SEED=${seed})`);
  const target = await startTarget(t);
  const proxy = await startProxy(t, target.address);
  const client = await dial(t, proxy.address);
  const server = await target.next();
  const up = randomBytes(3 * 1024 * 1024 + 17, seed);
  const down = randomBytes(2 * 1024 * 1024 + 5, seed + 1);
  const serverEnded = new Promise<void>((resolve) => server.socket.once('end', resolve));
  const clientEnded = new Promise<void>((resolve) => client.socket.once('end', resolve));
  client.socket.end(up);
  server.socket.end(down);
  await Promise.all([serverEnded, clientEnded]);
  assert.ok(server.all().equals(up), `up stream differs (seed ${seed})`);
  assert.ok(client.all().equals(down), `down stream differs (seed ${seed})`);
  const s = proxy.stats;
  assert.equal(s.bytesUp, up.length);
  assert.equal(s.bytesDown, down.length);
  assert.equal(s.connectionsAccepted, 1);
  assert.equal(s.flips, 0);
});

test('a stall holds the bytes within the queue bound (the sender is pushed back) and resume delivers them all', async (t) => {
  const seed = testSeed();
  t.diagnostic(`seed ${seed}`);
  const target = await startTarget(t);
  const queueBytesMax = 64 * 1024;
  const proxy = await startProxy(t, target.address, queueBytesMax);
  const client = await dial(t, proxy.address);
  const server = await target.next();
  client.socket.write('x');
  await until(() => server.bytes() === 1, 'the first byte');
  proxy.stall();
  // Write until the sender is pushed back: the proxy pauses the client's socket, the kernel
  // buffers fill, and then 'drain' stops coming (bounded at 64 MiB in case it never does).
  const chunkBytes = 256 * 1024;
  const parts: Buffer[] = [];
  for (let i = 0; parts.length * chunkBytes < 64 * 1024 * 1024; i++) {
    const part = randomBytes(chunkBytes, seed + i);
    parts.push(part);
    if (client.socket.write(part)) continue;
    const drained = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 300);
      client.socket.once('drain', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    if (!drained) break;
  }
  const data = Buffer.concat(parts);
  assert.ok(client.socket.writableLength > 0, 'the sender holds what the proxy did not take');
  assert.equal(server.bytes(), 1, 'nothing is forwarded while stalled');
  assert.ok(proxy.stats.bytesQueued <= queueBytesMax + 256 * 1024, `queue bounded (${proxy.stats.bytesQueued} bytes held)`);
  proxy.resume();
  await until(() => server.bytes() === 1 + data.length, 'every byte after resume');
  assert.ok(server.all().subarray(1).equals(data), `stream differs (seed ${seed})`);
  assert.equal(proxy.stats.bytesQueued, 0);
});

test('a one-way stall holds that direction only', async (t) => {
  const target = await startTarget(t);
  const proxy = await startProxy(t, target.address);
  const client = await dial(t, proxy.address);
  const server = await target.next();
  proxy.stall('down');
  client.socket.write('ping');
  server.socket.write('pong');
  await until(() => server.bytes() === 4, 'the up bytes');
  for (let i = 0; i < 10; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(client.bytes(), 0);
  proxy.resume('down');
  await until(() => client.bytes() === 4, 'the down bytes');
  assert.equal(client.all().toString(), 'pong');
});

test('cut closes both sides of every connection and the proxy keeps accepting new ones', async (t) => {
  const target = await startTarget(t);
  const proxy = await startProxy(t, target.address);
  const c1 = await dial(t, proxy.address);
  const s1 = await target.next();
  const c2 = await dial(t, proxy.address);
  const s2 = await target.next();
  c1.socket.write('a');
  c2.socket.write('b');
  await until(() => s1.bytes() + s2.bytes() === 2, 'both connections to carry bytes');
  assert.equal(proxy.cut(), 2);
  await Promise.all([c1.closed, s1.closed, c2.closed, s2.closed]);
  assert.equal(proxy.stats.connectionsCut, 2);
  assert.equal(proxy.stats.connectionsOpen, 0);
  const c3 = await dial(t, proxy.address);
  const s3 = await target.next();
  c3.socket.write('again');
  await until(() => s3.bytes() === 5, 'a new connection after the cut');
  assert.equal(proxy.stats.connectionsAccepted, 3);
  // FIN instead of RST: both sides see a clean end (they are half-open sockets, so they stay open).
  const ended = [s3, c3].map((p) => new Promise<void>((resolve) => p.socket.once('end', resolve)));
  assert.equal(proxy.cut({ reset: false }), 1);
  await Promise.all(ended);
});

test('a bandwidth limit caps the bytes delivered per window (generous bounds) and 0 lifts it', async (t) => {
  const seed = testSeed();
  t.diagnostic(`seed ${seed}`);
  const target = await startTarget(t);
  const proxy = await startProxy(t, target.address);
  const client = await dial(t, proxy.address);
  const server = await target.next();
  const bytesPerSec = 1024 * 1024;
  proxy.setBandwidth(bytesPerSec, 'up');
  const data = randomBytes(1536 * 1024, seed);
  const samples: Array<{ atMs: number; bytes: number }> = [{ atMs: performance.now(), bytes: 0 }];
  const sampler = setInterval(() => samples.push({ atMs: performance.now(), bytes: server.bytes() }), 50);
  t.after(() => clearInterval(sampler));
  client.socket.write(data);
  await until(() => server.bytes() >= data.length / 2, 'half the bytes');
  clearInterval(sampler);
  samples.push({ atMs: performance.now(), bytes: server.bytes() });
  // Upper bounds only: a slow machine can make the link slower, never faster. Every window of
  // at least 200 ms carries at most 1.5x the rate plus one burst (50 ms) and a 64 KiB read.
  const slackBytes = bytesPerSec / 20 + 64 * 1024;
  let windows = 0;
  for (let i = 0; i < samples.length; i++) {
    for (let j = i + 1; j < samples.length; j++) {
      const ms = samples[j]!.atMs - samples[i]!.atMs;
      if (ms < 200) continue;
      windows++;
      const bytes = samples[j]!.bytes - samples[i]!.bytes;
      assert.ok(bytes <= (1.5 * bytesPerSec * ms) / 1000 + slackBytes, `${bytes} bytes in ${ms.toFixed(0)} ms at a limit of ${bytesPerSec} B/s`);
    }
  }
  assert.ok(windows > 0, 'at least one window was measured');
  const first = samples[0]!;
  const last = samples[samples.length - 1]!;
  t.diagnostic(`throttled at ${bytesPerSec} B/s: measured ${Math.round((last.bytes * 1000) / (last.atMs - first.atMs))} B/s over ${(last.atMs - first.atMs).toFixed(0)} ms`);
  proxy.setBandwidth(0);
  await until(() => server.bytes() === data.length, 'the rest once the limit is lifted');
  assert.ok(server.all().equals(data), `stream differs (seed ${seed})`);
});

test('flips change exactly the chosen bytes: one per window at seeded positions, or one at an offset', async (t) => {
  const seed = testSeed();
  t.diagnostic(`seed ${seed}`);
  const target = await startTarget(t);
  const proxy = await startProxy(t, target.address);
  const data = randomBytes(300 * 1000, seed);
  const everyNBytes = 10_000;
  proxy.flipBytes({ seed, direction: 'up', everyNBytes });

  const c1 = await dial(t, proxy.address);
  const s1 = await target.next();
  c1.socket.write(data);
  s1.socket.write(data.subarray(0, 50_000)); // the down direction is not flipped
  await until(() => s1.bytes() === data.length && c1.bytes() === 50_000, 'both streams');
  const got = s1.all();
  const differing: number[] = [];
  for (let i = 0; i < data.length; i++) if (got[i] !== data[i]) differing.push(i);
  const recorded = proxy.flipped.filter((f) => f.connection === 1);
  assert.deepEqual(differing, recorded.map((f) => f.offset), `flipped offsets (seed ${seed})`);
  assert.equal(recorded.length, data.length / everyNBytes, 'one flip per window');
  recorded.forEach((f, w) => {
    assert.equal(Math.floor(f.offset / everyNBytes), w);
    assert.equal(f.direction, 'up');
    assert.equal(f.before, data[f.offset]);
    assert.equal(f.after, got[f.offset]);
  });
  assert.ok(c1.all().equals(data.subarray(0, 50_000)));

  // The same seed picks the same positions on another connection (whatever the chunking).
  const c2 = await dial(t, proxy.address);
  const s2 = await target.next();
  for (let off = 0; off < data.length; off += 7_777) c2.socket.write(data.subarray(off, off + 7_777));
  await until(() => s2.bytes() === data.length, 'the second stream');
  assert.deepEqual(
    proxy.flipped.filter((f) => f.connection === 2).map((f) => [f.offset, f.after]),
    recorded.map((f) => [f.offset, f.after]),
  );

  // atOffset with a limit: exactly one byte, on the first connection that reaches it.
  proxy.flipBytes({ seed, atOffset: 12_345, limit: 1 });
  const before = proxy.stats.flips;
  const c3 = await dial(t, proxy.address);
  const s3 = await target.next();
  c3.socket.write(data);
  await until(() => s3.bytes() === data.length, 'the third stream');
  const got3 = s3.all();
  const diff3: number[] = [];
  for (let i = 0; i < data.length; i++) if (got3[i] !== data[i]) diff3.push(i);
  assert.deepEqual(diff3, [12_345]);
  assert.equal(proxy.stats.flips, before + 1);
  proxy.flipBytes(null);
  assert.throws(() => proxy.flipBytes({ seed, everyNBytes: 10, atOffset: 3 }));
});
