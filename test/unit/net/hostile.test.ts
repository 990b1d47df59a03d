// Hostile peers against one server: each is refused with the right code (read on the hostile
// side: WebSocket close code + reason, or the HTTP status + body), counted in stats.refused,
// logged as one line, and a good client keeps being served during and after each.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameType } from '../../../src/net/frames.js';
import type { Connection } from '../../../src/net/connection.js';
import { CLOSE_CODE_BY_ERROR } from '../../../src/net/close-codes.js';
import { RawPeer, RawTcp, craftFrame } from '../../helpers/hostile-peer.js';
import { NetFixture, identity, netConfig, seededRandom, waitFor } from './fixture.js';

const FRAME_BYTES_MAX = 65536;
const config = netConfig({ handshakeTimeoutMs: 500, frameBytesMax: FRAME_BYTES_MAX });
const fx = new NetFixture();
let address = '';
let port = 0;
let server: Awaited<ReturnType<NetFixture['server']>>['server'];
let good: Connection;

before(async () => {
  const s = await fx.server({ config });
  ({ address, port, server } = s);
  server.handle('echo', (b) => b);
  good = await fx.dial(address, { config, identity: identity('good') });
});
after(() => fx.cleanup());

/** The good client is served, and a new client can still connect. */
async function stillServing(what: string) {
  assert.equal(await good.request('echo', what), what, `good client after: ${what}`);
  const fresh = await fx.dial(address, { config, identity: identity('fresh') });
  assert.equal(await fresh.request('echo', 1), 1);
  await fresh.close();
}

/** Runs `attack`, then checks the refusal was counted under `code` and the server still serves. */
async function refused(code: string, attack: () => Promise<void>) {
  const before = server.stats.refused[code] ?? 0;
  await attack();
  await waitFor(() => (server.stats.refused[code] ?? 0) === before + 1, `refused[${code}] to reach ${before + 1}`);
  await stillServing(code);
}

/** A raw WebSocket peer whose close code/reason must name `code`. */
async function rawRefused(code: keyof typeof CLOSE_CODE_BY_ERROR, act: (peer: RawPeer) => Promise<unknown> | void) {
  await refused(code, async () => {
    const peer = await RawPeer.connect(address);
    try {
      await act(peer);
      assert.deepEqual(await peer.closed, { code: CLOSE_CODE_BY_ERROR[code], reason: code });
    } finally {
      peer.close();
    }
  });
}

async function handshakeWith(peer: RawPeer, tamper: (h: Record<string, unknown>) => Record<string, unknown>) {
  await peer.handshake(identity('hostile'), tamper);
}

describe('handshake refusals', () => {
  test('a peer of another cluster is closed with 4004 ERR_HANDSHAKE_CLUSTER', async () => {
    await rawRefused('ERR_HANDSHAKE_CLUSTER', (p) => handshakeWith(p, (h) => ({ ...h, clusterId: 'other-cluster' })));
  });

  test('a peer with the wrong secret is closed with 4005 ERR_HANDSHAKE_AUTH', async () => {
    await rawRefused('ERR_HANDSHAKE_AUTH', (p) => p.handshake(identity('hostile', { secret: 'guessed-secret' })));
  });

  test('a peer announcing another protocol version is closed with 4003 ERR_PROTOCOL_VERSION', async () => {
    await rawRefused('ERR_PROTOCOL_VERSION', (p) => handshakeWith(p, (h) => ({ ...h, protocolVersion: 2 })));
  });

  test('a frame of another format version is closed with 4003 ERR_PROTOCOL_VERSION', async () => {
    await rawRefused('ERR_PROTOCOL_VERSION', (p) => p.send(craftFrame({ version: 7, type: FrameType.HELLO, flags: 0x03, body: Buffer.from('{}') })));
  });

  test('a request before the handshake is closed with 4001 ERR_PROTOCOL_BAD_FRAME', async () => {
    await rawRefused('ERR_PROTOCOL_BAD_FRAME', (p) => p.sendFrame(FrameType.REQUEST, 'hi', 'echo', 1));
  });
});

describe('malformed and oversized frames', () => {
  test('garbage binary frames are closed with 4001 ERR_PROTOCOL_BAD_FRAME', async () => {
    const seed = 4242;
    const random = seededRandom(seed);
    const junk = Buffer.alloc(200);
    for (let i = 0; i < junk.length; i++) junk[i] = Math.floor(random() * 256);
    junk[0] = 0xff; // never the magic
    await rawRefused('ERR_PROTOCOL_BAD_FRAME', (p) => p.send(junk));
  });

  test('a text frame is closed with 4001 ERR_PROTOCOL_BAD_FRAME', async () => {
    await rawRefused('ERR_PROTOCOL_BAD_FRAME', (p) => p.send('{"hello":"world"}'));
  });

  test('a frame declaring more than frameBytesMax in its header is closed with 4002 ERR_PROTOCOL_FRAME_TOO_LARGE', async () => {
    await rawRefused('ERR_PROTOCOL_FRAME_TOO_LARGE', (p) => p.send(craftFrame({ type: FrameType.HELLO, bodyBytes: 1 << 30, body: Buffer.from('{}') })));
  });

  test('a WebSocket message longer than frameBytesMax is refused by ws with 1009 and counted as ERR_PROTOCOL_FRAME_TOO_LARGE', async () => {
    await refused('ERR_PROTOCOL_FRAME_TOO_LARGE', async () => {
      const peer = await RawPeer.connect(address);
      try {
        peer.send(Buffer.alloc(FRAME_BYTES_MAX + 1));
        assert.equal((await peer.closed).code, 1009);
      } finally {
        peer.close();
      }
    });
  });

  test('an authenticated peer that sends garbage is closed with 4001; the server logs it and stays up', async () => {
    const peer = await RawPeer.connect(address);
    try {
      assert.equal(await peer.handshake(identity('turncoat')), 'ok');
      peer.send(craftFrame({ type: 99 }));
      assert.deepEqual(await peer.closed, { code: 4001, reason: 'ERR_PROTOCOL_BAD_FRAME' });
    } finally {
      peer.close();
    }
    assert.ok(fx.logs.some((l) => /closing connection to turncoat/.test(l.msg)));
    await stillServing('after a turncoat');
  });
});

describe('not WebSocket at all', () => {
  test('a TCP client sending junk gets HTTP 400 with ERR_PROTOCOL_BAD_FRAME', async () => {
    await refused('ERR_PROTOCOL_BAD_FRAME', async () => {
      const tcp = await RawTcp.connect(port);
      tcp.socket.write('\x16\x03\x01 this is not HTTP\r\n\r\n');
      const answer = await tcp.received;
      assert.match(answer, /^HTTP\/1\.1 400 /);
      assert.match(answer, /ERR_PROTOCOL_BAD_FRAME/);
    });
  });

  test('an upgrade without a WebSocket key gets HTTP 400 with ERR_PROTOCOL_BAD_FRAME', async () => {
    await refused('ERR_PROTOCOL_BAD_FRAME', async () => {
      const tcp = await RawTcp.connect(port);
      tcp.socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n');
      const answer = await tcp.received;
      assert.match(answer, /^HTTP\/1\.1 400 /);
      assert.match(answer, /ERR_PROTOCOL_BAD_FRAME/);
    });
  });

  test('a plain HTTP request gets 426 and is not counted as a refusal', async () => {
    const before = { ...server.stats.refused };
    const res = await fetch(`http://${address}/status`);
    assert.equal(res.status, 426);
    await res.text();
    assert.deepEqual(server.stats.refused, before);
  });
});

describe('slowloris', () => {
  test('a WebSocket that never handshakes is closed with 4006 ERR_HANDSHAKE_TIMEOUT while others are served', async () => {
    await refused('ERR_HANDSHAKE_TIMEOUT', async () => {
      const peer = await RawPeer.connect(address);
      try {
        await peer.nextFrame(); // the challenge, never answered
        await stillServing('during a WebSocket slowloris');
        assert.deepEqual(await peer.closed, { code: 4006, reason: 'ERR_HANDSHAKE_TIMEOUT' });
      } finally {
        peer.close();
      }
    });
  });

  test('a TCP client that never finishes its HTTP request gets 408 ERR_HANDSHAKE_TIMEOUT while others are served', async () => {
    await refused('ERR_HANDSHAKE_TIMEOUT', async () => {
      const tcp = await RawTcp.connect(port);
      try {
        tcp.socket.write('GET / HTTP/1.1\r\nHost: x\r\n'); // headers never end
        await stillServing('during a TCP slowloris');
        const answer = await tcp.received;
        assert.match(answer, /^HTTP\/1\.1 408 /);
        assert.match(answer, /ERR_HANDSHAKE_TIMEOUT/);
      } finally {
        tcp.close();
      }
    });
  });

  test('a TCP client that connects and sends nothing is dropped with ERR_HANDSHAKE_TIMEOUT', async () => {
    await refused('ERR_HANDSHAKE_TIMEOUT', async () => {
      const tcp = await RawTcp.connect(port);
      try {
        assert.match(await tcp.received, /ERR_HANDSHAKE_TIMEOUT/);
      } finally {
        tcp.close();
      }
    });
  });
});

describe('accounting', () => {
  test('every refused connection was logged exactly once and the good client is still connected', () => {
    const total = Object.values(server.stats.refused).reduce((a, b) => a + b, 0);
    const lines = fx.logs.filter((l) => l.msg.startsWith('refused connection'));
    assert.ok(total >= 14, `refused ${total}`);
    assert.equal(lines.length, total);
    assert.equal(good.isOpen, true);
    assert.equal(server.stats.handshaking, 0);
  });
});
