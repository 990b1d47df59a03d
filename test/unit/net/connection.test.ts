// Connections over real sockets on 127.0.0.1: requests both ways, coded remote errors, timeouts,
// closing with requests pending, notifications, raw prepared frames, heartbeats, backpressure.
import { afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { ErrorCode, isPtnError, ptnError } from '../../../src/errors.js';
import { FrameType, prepareFrame } from '../../../src/net/frames.js';
import { BufferPool } from '../../../src/util/buffer-pool.js';
import type { Body, Connection } from '../../../src/net/connection.js';
import { RawPeer, SilentServer } from '../../helpers/hostile-peer.js';
import { NetFixture, identity, netConfig, waitFor } from './fixture.js';

const fx = new NetFixture();
afterEach(() => fx.cleanup());

async function rejectsCode(p: Promise<unknown>, code: string, what = code) {
  await assert.rejects(p, (err: unknown) => isPtnError(err) && err.code === code, what);
}

/** A server with an echo handler and one dialed connection; returns both ends. */
async function pair(serverOpts = {}, dialOpts = {}) {
  const s = await fx.server(serverOpts);
  s.server.handle('echo', (body) => body);
  const dialer = await fx.dial(s.address, dialOpts);
  const accepted = await waitFor(() => s.accepted[0], 'the accepted connection');
  return { ...s, dialer, accepted };
}

describe('handshake over sockets', () => {
  test('both sides learn who the other is', async () => {
    const s = await fx.server({ identity: identity('srv') });
    const cli = await fx.dial(s.address, { identity: identity('cli-1', { role: 'client' }) });
    const peer = await fx.dial(s.address, { identity: identity('node-2') });
    await waitFor(() => s.accepted.length === 2, 'two accepted connections');
    assert.equal(cli.remoteNodeId, 'srv');
    assert.equal(cli.remoteRole, 'peer');
    assert.equal(cli.dialed, true);
    assert.equal(cli.remoteAddress, s.address);
    const byId = new Map(s.accepted.map((c) => [c.remoteNodeId, c]));
    assert.equal(byId.get('cli-1')?.remoteRole, 'client');
    assert.equal(byId.get('node-2')?.remoteRole, 'peer');
    assert.equal(byId.get('cli-1')?.dialed, false);
    assert.match(byId.get('cli-1')!.remoteAddress, /^127\.0\.0\.1:\d+$/);
    assert.equal(peer.isOpen, true);
    assert.equal(s.server.stats.connections, 2);
  });
});

describe('requests', () => {
  test('the dialer calls the server with JSON and binary bodies', async () => {
    const { dialer } = await pair();
    for (const body of [null, 0, true, 'text', { a: [1, { b: 'c' }] }]) assert.deepEqual(await dialer.request('echo', body), body);
    const bytes = Buffer.from([0, 1, 2, 254, 255]);
    assert.deepEqual(await dialer.request('echo', bytes), bytes);
    assert.ok(dialer.stats.framesSent >= 6 && dialer.stats.bytesReceived > 0);
  });

  test('the accepting side calls the dialer (dial-level and per-connection handlers)', async () => {
    const handlers = new Map([['who', () => 'dialer']]);
    const { dialer, accepted } = await pair({}, { handlers });
    dialer.handle('add', (b) => (b as number[]).reduce((x, y) => x + y, 0));
    assert.equal(await accepted.request('who', null), 'dialer');
    assert.equal(await accepted.request('add', [1, 2, 3]), 6);
  });

  test('a connection handler takes precedence over the server-level one', async () => {
    const { dialer, accepted, server } = await pair();
    server.handle('name', () => 'server-level');
    assert.equal(await dialer.request('name', null), 'server-level');
    accepted.handle('name', () => 'connection-level');
    assert.equal(await dialer.request('name', null), 'connection-level');
  });

  test('a remote PtnError keeps its code; other errors become ERR_REMOTE; unknown methods ERR_UNKNOWN_METHOD', async () => {
    const { dialer, server } = await pair();
    server.handle('full', () => {
      throw ptnError(ErrorCode.ERR_DISK_FULL, 'no space');
    });
    server.handle('async-owned', async () => {
      throw ptnError(ErrorCode.ERR_PARTITION_NOT_OWNED, 'not mine');
    });
    server.handle('bug', () => {
      throw new TypeError('oops');
    });
    await assert.rejects(dialer.request('full', null), (err: unknown) => {
      return isPtnError(err, 'ERR_DISK_FULL') && err.details?.remote === true && err.details?.method === 'full';
    });
    await rejectsCode(dialer.request('async-owned', null), 'ERR_PARTITION_NOT_OWNED');
    await rejectsCode(dialer.request('bug', null), 'ERR_REMOTE');
    await rejectsCode(dialer.request('missing', null), 'ERR_UNKNOWN_METHOD');
    assert.equal(await dialer.request('echo', 'still fine'), 'still fine');
    assert.ok(fx.logs.some((l) => l.level === 'error' && /uncoded/.test(l.msg)), 'an uncoded handler error is logged');
  });

  test('a request without an answer in time fails with ERR_REQUEST_TIMEOUT and the late answer is ignored', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    fx.onCleanup(() => release());
    const { dialer, server } = await pair();
    server.handle('slow', async () => {
      await gate;
      return 'late';
    });
    await rejectsCode(dialer.request('slow', null, { timeoutMs: 30 }), 'ERR_REQUEST_TIMEOUT');
    release();
    assert.equal(await dialer.request('echo', 1), 1);
    assert.equal(dialer.isOpen, true);
  });

  test('a response above frameBytesMax reaches the caller as ERR_PROTOCOL_FRAME_TOO_LARGE; the connection stays up', async () => {
    const config = netConfig({ frameBytesMax: 8192 });
    const { dialer, server } = await pair({ config }, { config });
    server.handle('big', () => Buffer.alloc(10_000));
    await rejectsCode(dialer.request('big', null), 'ERR_PROTOCOL_FRAME_TOO_LARGE');
    assert.equal(await dialer.request('echo', 'ok'), 'ok');
    await rejectsCode(dialer.request('echo', Buffer.alloc(10_000)), 'ERR_PROTOCOL_FRAME_TOO_LARGE', 'local refusal');
  });

  test('prepared raw frames travel without a copy in requests, responses and notifications', async () => {
    const got: Buffer[] = [];
    const { dialer, accepted } = await pair();
    dialer.handle('chunk', (b) => void got.push(b as Buffer));
    dialer.handle('read', (b) => {
      const n = (b as { bytes: number }).bytes;
      const out = prepareFrame(n);
      out.body.fill(0x5a);
      return out;
    });
    const chunk = prepareFrame(1000, 'chunk');
    chunk.body.fill(7);
    await accepted.notify('chunk', chunk);
    const reply = (await accepted.request('read', { bytes: 3000 })) as Buffer;
    assert.deepEqual(reply, Buffer.alloc(3000, 0x5a));
    const req = prepareFrame(5, 'echo');
    req.body.set([1, 2, 3, 4, 5]);
    assert.deepEqual(await dialer.request('echo', req), Buffer.from([1, 2, 3, 4, 5]));
    await waitFor(() => got.length === 1, 'the chunk');
    assert.deepEqual(got[0], Buffer.alloc(1000, 7));
  });
});

describe('closing', () => {
  test('closing locally rejects pending requests with ERR_CONNECTION_CLOSED; close is idempotent', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    fx.onCleanup(() => release());
    const { dialer, server } = await pair();
    server.handle('hang', () => gate.then(() => null));
    const pending = [dialer.request('hang', 1), dialer.request('hang', 2)];
    const closed = once(dialer, 'close');
    const c1 = dialer.close();
    const c2 = dialer.close();
    for (const p of pending) await rejectsCode(p, 'ERR_CONNECTION_CLOSED');
    await Promise.all([c1, c2, closed]);
    assert.equal(dialer.isOpen, false);
    await rejectsCode(dialer.request('echo', 1), 'ERR_CONNECTION_CLOSED', 'request after close');
    await rejectsCode(dialer.notify('echo', 1), 'ERR_CONNECTION_CLOSED', 'notify after close');
    await rejectsCode(dialer.drained(), 'ERR_CONNECTION_CLOSED', 'drained after close');
  });

  test('the remote end closing rejects pending requests with ERR_CONNECTION_CLOSED', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    fx.onCleanup(() => release());
    const { dialer, server, accepted } = await pair();
    server.handle('hang', () => gate.then(() => null));
    const pending = rejectsCode(dialer.request('hang', null), 'ERR_CONNECTION_CLOSED');
    await waitFor(() => accepted.stats.framesReceived >= 2, 'the request to arrive');
    const [[code]] = await Promise.all([once(dialer, 'close'), accepted.close(4321, 'bye')]);
    assert.equal(code, 4321);
    await pending;
  });

  test('closing while reading is paused behind a slow handler still completes the closing handshake', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    fx.onCleanup(() => release());
    // A closing handshake that never completes would only end at closeTimeout (= failureTimeoutMs).
    const config = netConfig({ failureTimeoutMs: 20_000 });
    const { dialer, accepted, server } = await pair({ config }, { config, handlersInflightMax: 1 });
    dialer.handle('slow', () => gate);
    await accepted.notify('slow', null);
    await waitFor(() => dialer.stats.readPauses === 1, 'reading to pause');
    await Promise.race([
      Promise.all([dialer.close(), once(accepted, 'close')]),
      new Promise((_, reject) => setTimeout(() => reject(new Error('closing handshake stuck behind the read pause')), 10_000)),
    ]);
    assert.equal(server.stats.connections, 0);
  });

  test('a peer that never reads our close frame is cut off after closeTimeout (= failureTimeoutMs)', async () => {
    const s = await fx.server({ config: netConfig({ failureTimeoutMs: 300 }) });
    const raw = await RawPeer.connect(s.address);
    fx.onCleanup(() => raw.close());
    assert.equal(await raw.handshake(identity('deaf')), 'ok');
    await waitFor(() => s.accepted[0], 'the accepted connection');
    raw.ws.pause(); // reads nothing more, so never answers the close frame
    // Without the option ws would wait its default 30 s for the closing handshake.
    await Promise.race([
      s.server.close(),
      new Promise((_, reject) => setTimeout(() => reject(new Error('server.close() waited for a deaf peer')), 10_000)),
    ]);
    assert.equal(s.server.stats.connections, 0);
  });

  test('a plain HTTP request still being served does not hold server.close()', async () => {
    let sawRequest!: () => void;
    const requested = new Promise<void>((r) => (sawRequest = r));
    const s = await fx.server({ onHttpRequest: () => sawRequest() }); // never answers
    const res = fetch(`http://${s.address}/slow`).catch((err: Error) => err);
    await requested;
    await Promise.race([
      s.server.close(),
      new Promise((_, reject) => setTimeout(() => reject(new Error('server.close() waited for an HTTP request')), 10_000)),
    ]);
    assert.ok((await res) instanceof Error, 'the unanswered request was cut');
  });

  test('a server closing shuts every connection with 1001 and stops listening', async () => {
    const { dialer, server, address } = await pair();
    const closed = once(dialer, 'close');
    await Promise.all([server.close(), server.close()]);
    const [code] = await closed;
    assert.equal(code, 1001);
    await rejectsCode(fx.dial(address, { retries: 0 }), 'ERR_CONNECTION_CLOSED', 'nobody listens');
    await rejectsCode(server.listen(), 'ERR_CLOSED');
  });
});

describe('notifications', () => {
  test('notifications arrive in order and run one at a time', async () => {
    const seen: number[] = [];
    let running = 0;
    let maxRunning = 0;
    const { dialer, server } = await pair();
    server.handle('n', async (b) => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await new Promise((r) => setTimeout(r, (b as number) % 3));
      seen.push(b as number);
      running--;
    });
    for (let i = 0; i < 50; i++) await dialer.notify('n', i);
    await waitFor(() => seen.length === 50, '50 notifications');
    assert.deepEqual(seen, Array.from({ length: 50 }, (_, i) => i));
    assert.equal(maxRunning, 1);
  });

  test('a notification whose handler throws is logged and the next one still runs', async () => {
    const seen: Body[] = [];
    const { dialer, server } = await pair();
    server.handle('n', (b) => {
      if (b === 'bad') throw ptnError(ErrorCode.ERR_IO, 'disk');
      seen.push(b);
    });
    await dialer.notify('n', 'bad');
    await dialer.notify('n', 'good');
    await dialer.notify('nobody-listens', 1);
    await waitFor(() => seen.length === 1, 'the good notification');
    assert.deepEqual(seen, ['good']);
    await waitFor(() => fx.logs.some((l) => /nobody-listens/.test(l.msg)), 'a log line for the unknown notification');
    assert.ok(fx.logs.some((l) => l.level === 'warn' && (l.extra as { code?: string }).code === 'ERR_IO'));
  });
});

describe('heartbeats', () => {
  const fast = netConfig({ heartbeatIntervalMs: 20, failureTimeoutMs: 300 });

  test('an idle connection stays alive on heartbeats and measures the round trip', async () => {
    const { dialer, accepted } = await pair({ config: fast }, { config: fast });
    await new Promise((r) => setTimeout(r, 900)); // three failure timeouts without traffic
    assert.equal(dialer.isOpen && accepted.isOpen, true);
    assert.equal(typeof dialer.stats.rttMs, 'number');
    assert.equal(typeof accepted.stats.rttMs, 'number');
    assert.equal(await dialer.request('echo', 'alive'), 'alive');
  });

  test('the server declares a client that handshakes and then stays silent dead', async () => {
    const s = await fx.server({ config: fast });
    const raw = await RawPeer.connect(s.address);
    fx.onCleanup(() => raw.close());
    assert.equal(await raw.handshake(identity('mute')), 'ok');
    const conn = await waitFor(() => s.accepted[0], 'the accepted connection');
    const dead = once(conn, 'dead');
    const closed = once(conn, 'close');
    await dead;
    await closed;
    assert.equal(conn.isOpen, false);
    assert.equal(s.server.stats.connections, 0);
    assert.ok(fx.logs.some((l) => /declared dead/.test(l.msg)));
  });

  test('a dialer declares a server that handshakes and then stays silent dead', async () => {
    const { server, address } = await SilentServer.start(identity('mute-server'));
    fx.onCleanup(() => server.close());
    const conn = await fx.dial(address, { config: fast });
    await rejectsCode(
      Promise.all([once(conn, 'dead'), conn.request('anything', null, { timeoutMs: 10_000 })]),
      'ERR_CONNECTION_CLOSED',
      'the pending request fails when the peer is declared dead',
    );
    assert.equal(conn.isOpen, false);
  });
});

describe('backpressure', () => {
  test('a fast sender to a slow receiver keeps its queued bytes under sendBufferBytesMax + one frame', async () => {
    const MiB = 1 << 20;
    const chunks = 32;
    const config = netConfig({ sendBufferBytesMax: MiB, frameBytesMax: 2 * MiB });
    const received: number[] = [];
    const handlers = new Map([
      [
        'chunk',
        async (b: Body) => {
          const buf = b as Buffer;
          assert.equal(buf.length, MiB);
          assert.ok(buf[0] === buf[MiB - 1] && buf[0] === received.length % 256, 'chunk content and order');
          received.push(buf[0]!);
          await new Promise((r) => setTimeout(r, 3)); // a slow disk
        },
      ],
    ]);
    // File bytes flow server → client, so the accepting side sends and the dialer receives.
    const { accepted, dialer } = await pair({ config }, { config, handlers, receiveBufferBytesMax: MiB });
    let maxQueued = 0;
    const sampler = setInterval(() => (maxQueued = Math.max(maxQueued, accepted.bufferedAmount)), 1);
    fx.onCleanup(() => clearInterval(sampler));
    for (let i = 0; i < chunks; i++) {
      const frame = prepareFrame(MiB, 'chunk');
      frame.body.fill(i % 256);
      await accepted.notify('chunk', frame);
      maxQueued = Math.max(maxQueued, accepted.bufferedAmount);
    }
    await waitFor(() => received.length === chunks, 'every chunk', 60_000);
    clearInterval(sampler);
    const frameBytes = MiB + 24 + 'chunk'.length;
    assert.ok(maxQueued <= MiB + frameBytes, `queued ${maxQueued} bytes, bound ${MiB + frameBytes}`);
    assert.ok(maxQueued >= MiB, 'the sender did fill its budget');
    assert.ok(accepted.stats.drainWaits > 0, 'the sender had to wait for room');
    assert.ok(dialer.stats.readPauses > 0, 'the receiver paused reading');
    assert.equal(received.length, chunks);
  });
});

describe('requests both ways on one socket', () => {
  test('handlers that wait for the peer never deadlock it: beyond the limit requests are refused busy, and all finish', async () => {
    // The dialer is limited to 8 handlers; each 'fwd' it serves asks the other side 'rep' on the
    // same socket and waits (a forwarded write waiting for its replication). Pausing the socket
    // at 8 would also stop the 'rep' answers: nothing would ever finish.
    const { dialer, accepted } = await pair({}, { handlersInflightMax: 8 });
    accepted.handle('rep', async (b) => {
      await new Promise((r) => setTimeout(r, 5));
      return b;
    });
    dialer.handle('fwd', async (b) => dialer.request('rep', b));
    let busy = 0;
    const results = await Promise.all(
      Array.from({ length: 64 }, async (_, i) => {
        for (;;) {
          try {
            return await accepted.request('fwd', { i }, { timeoutMs: 10_000 });
          } catch (err) {
            if (!isPtnError(err, 'ERR_PEER_BUSY')) throw err;
            busy++;
            await new Promise((r) => setTimeout(r, 2));
          }
        }
      }),
    );
    results.forEach((r, i) => assert.deepEqual(r, { i }));
    assert.ok(busy > 0, 'some requests were refused busy and retried');
    assert.equal(dialer.stats.busyRefusals, busy);
    // It may pause while nothing of its own is pending, but resumes as soon as it asks (else: timeouts above).
  });
});

describe('busy refusals are bounded', () => {
  test('a peer that floods requests beyond the limit and never reads the refusals is failed with ERR_PEER_BUSY', async () => {
    const config = netConfig({ sendBufferBytesMax: 64 * 1024, frameBytesMax: 16 * 1024 });
    const s = await fx.server({ config, handlersInflightMax: 4 });
    s.server.handle('hang', () => new Promise(() => {})); // never finishes: the limit stays reached
    const raw = await RawPeer.connect(s.address);
    fx.onCleanup(() => raw.close());
    assert.equal(await raw.handshake(identity('flooder')), 'ok');
    const accepted = await waitFor(() => s.accepted[0], 'the accepted connection');
    accepted.request('ask', {}, { timeoutMs: 60_000 }).catch(() => undefined); // ours pending: no pause, refusals instead
    raw.ws.pause(); // reads nothing: the refusals pile up on the server
    let sent = 0;
    let closed = false;
    void raw.closed.then(() => (closed = true));
    const failed = once(accepted, 'close');
    while (!closed && accepted.isOpen && sent < 2_000_000) {
      for (let i = 0; i < 2000; i++) raw.sendFrame(FrameType.REQUEST, {}, 'hang', ++sent);
      await new Promise((r) => setImmediate(r));
    }
    await Promise.race([failed, new Promise((_, reject) => setTimeout(() => reject(new Error('the flooding peer was not failed')), 30_000))]);
    assert.ok(accepted.stats.busyRefusals > 0);
    assert.ok(sent < 2_000_000, `failed while the peer was still flooding (${sent} requests sent)`);
    assert.ok(fx.logs.some((l) => /ERR_PEER_BUSY|without reading the refusals/.test(`${l.msg} ${JSON.stringify(l.extra ?? {})}`)), 'the failure was logged with its code');
  });
});

describe('pooled frames', () => {
  test('a pooled response buffer goes back to its pool only after the socket took it, and every reuse arrives intact', async () => {
    const pool = new BufferPool(24 + 64 * 1024, 2);
    const { dialer, accepted } = await pair();
    let served = 0;
    accepted.handle('read', (b) => {
      const { fill } = b as { fill: number };
      const out = prepareFrame(64 * 1024, '', { pool });
      out.body.fill(fill);
      served++;
      return out;
    });
    // Waves of 10 at once: within a wave the frames leave together; between waves the buffers return.
    for (let wave = 0; wave < 4; wave++) {
      const fills = Array.from({ length: 10 }, (_, i) => wave * 10 + i);
      const replies = await Promise.all(fills.map((fill) => dialer.request('read', { fill })));
      replies.forEach((r, i) => assert.deepEqual(r, Buffer.alloc(64 * 1024, fills[i]), `reply ${fills[i]}`));
      await waitFor(() => pool.freeCount === 2, 'the buffers back in the pool');
    }
    assert.equal(served, 40);
    assert.ok(pool.reused > 0, 'buffers were reused');
    assert.ok(pool.allocated < 40, `${pool.allocated} slots allocated for 40 replies`);
  });

  test('a pooled frame that cannot be sent is released all the same', async () => {
    const pool = new BufferPool(24 + 16 * 1024, 4);
    const config = netConfig({ frameBytesMax: 8192 });
    const { dialer, accepted } = await pair({ config }, { config });
    accepted.handle('big', () => prepareFrame(16 * 1024, '', { pool }));
    await rejectsCode(dialer.request('big', null), 'ERR_PROTOCOL_FRAME_TOO_LARGE');
    assert.equal(pool.freeCount, 1);
  });
});

describe('connection stats', () => {
  test('bytes and frames are counted on both sides', async () => {
    const { dialer, accepted } = await pair();
    const before: Pick<Connection['stats'], 'framesSent' | 'bytesSent'> = { ...dialer.stats };
    await dialer.request('echo', Buffer.alloc(1000));
    assert.ok(dialer.stats.framesSent > before.framesSent);
    assert.ok(dialer.stats.bytesSent >= before.bytesSent + 1000 + 24);
    assert.ok(accepted.stats.bytesReceived >= 1024);
  });
});
