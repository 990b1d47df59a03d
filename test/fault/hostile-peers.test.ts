/**
 * Fault scenario 11 — hostile peers against a real node process.
 *
 * Expected outcome, each attack: the connection is refused with its coded reason (close reason or
 * HTTP status), the node logs exactly ONE "refused connection" line for it, and keeps serving a
 * good client (put + get) and new clients. Oversized length claims (1 GiB in a WebSocket header,
 * 2 GiB in a frame's body length) are refused without allocating: the node's RSS
 * (`ptn_process_resident_memory_bytes`) does not grow with the claimed lengths (40 claims of
 * ≥ 1 GiB; allowed growth 64 MiB, far below one claim).
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { once } from 'node:events';
import { startTestCluster } from '../helpers/cluster.js';
import { RawPeer, RawTcp, craftFrame } from '../helpers/hostile-peer.js';
import { FrameType } from '../../src/net/frames.js';
import { CACHE, logLines, metric } from './scenarios.js';

const RSS = 'ptn_process_resident_memory_bytes'; // prom-client's default metric under the node's 'ptn_' prefix
const GROWTH_BYTES_MAX = 64 * 1024 * 1024;

/** Opens a raw WebSocket by hand (upgrade request), returns the socket once 101 arrived. */
async function rawUpgrade(port: number): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => {});
  await once(s, 'connect');
  const key = crypto.randomBytes(16).toString('base64');
  s.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  const [head] = (await once(s, 'data')) as [Buffer];
  assert.match(head.toString('latin1'), /^HTTP\/1\.1 101/);
  return s;
}

/** A masked binary WebSocket frame header claiming `claimed` payload bytes, then `send` bytes of it. */
function hugeWsFrame(claimed: bigint, send: number): Buffer {
  const head = Buffer.alloc(14);
  head[0] = 0x82; // FIN + binary
  head[1] = 0x80 | 127; // masked, 64-bit length
  head.writeBigUInt64BE(claimed, 2);
  crypto.randomBytes(4).copy(head, 10);
  return Buffer.concat([head, crypto.randomBytes(send)]);
}

test('hostile peers are refused with a coded reason, logged once each, and the node keeps serving with bounded memory', async (t) => {
  const c = await startTestCluster({ nodes: 1, nodeConfig: { logLevel: 'info', net: { handshakeTimeoutMs: 1000 } } });
  t.after(() => c.teardown());
  const node = c.nodes()[0]!;
  const address = c.address(node.id);
  const port = Number(address.split(':')[1]);
  const { secret, clusterId } = c.settings();
  const good = await c.client();
  await good.request('cacheCreate', { name: CACHE, partitions: 4, backups: 0 });
  // Before the handshake the server logs "refused connection from …"; after it, the connection
  // logs "closing connection to …": either way one warn line carrying the code.
  const refusedLines = (code: string) => logLines(node, `"code":"${code}"`).filter((l) => /refused connection from|closing connection to/.test(l)).length;
  let served = 0;
  const stillServing = async (what: string) => {
    served++;
    await good.request('put', { cache: CACHE, key: `after-${served}`, value: what });
    assert.deepEqual(((await good.request('get', { cache: CACHE, key: `after-${served}` })) as { value: unknown }).value, what, `served after ${what}`);
    const fresh = await c.client();
    assert.equal(((await fresh.request('get', { cache: CACHE, key: `after-${served}` })) as { found: boolean }).found, true);
    await fresh.close();
  };
  /** Runs one attack; its refusal must be logged exactly once under `code`. */
  const attack = async (code: string, run: () => Promise<void>) => {
    const before = refusedLines(code);
    await run();
    const deadline = Date.now() + 10_000;
    while (refusedLines(code) < before + 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 200)); // a second line would show up by now
    assert.equal(refusedLines(code), before + 1, `${code} logged once`);
    await stillServing(code);
  };
  const id = { nodeId: 'intruder', clusterId, secret, role: 'peer' as const };
  const peerRefused = async (code: string, act: (p: RawPeer) => Promise<unknown>) =>
    attack(code, async () => {
      const p = await RawPeer.connect(address);
      try {
        await act(p);
        assert.equal((await p.closed).reason, code);
      } finally {
        p.close();
      }
    });

  await peerRefused('ERR_HANDSHAKE_CLUSTER', (p) => p.handshake(id, (h) => ({ ...h, clusterId: 'another-cluster' })));
  await peerRefused('ERR_HANDSHAKE_AUTH', (p) => p.handshake({ ...id, secret: 'guessed-secret-000' }));
  await peerRefused('ERR_PROTOCOL_VERSION', (p) => p.handshake(id, (h) => ({ ...h, protocolVersion: 99 })));
  await peerRefused('ERR_PROTOCOL_BAD_FRAME', async (p) => p.send(Buffer.from('definitely not a frame')));
  await peerRefused('ERR_PROTOCOL_FRAME_TOO_LARGE', async (p) => {
    assert.equal(await p.handshake({ ...id, role: 'client' }), 'ok');
    p.send(craftFrame({ type: FrameType.REQUEST, method: 'put', bodyBytes: 0x7fffffff }));
  });
  // Slowloris: an upgrade request trickled in and never finished → HTTP 408 after handshakeTimeoutMs.
  await attack('ERR_HANDSHAKE_TIMEOUT', async () => {
    const tcp = await RawTcp.connect(port);
    const req = `GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n`;
    let closed = false;
    tcp.socket.once('close', () => (closed = true));
    for (let i = 0; i < req.length && !closed; i++) {
      tcp.socket.write(req[i]!);
      await new Promise((r) => setTimeout(r, 40));
    }
    assert.match(await tcp.received, /^HTTP\/1\.1 408/);
  });
  // Slowloris after the upgrade: a WebSocket that never answers the CHALLENGE.
  await peerRefused('ERR_HANDSHAKE_TIMEOUT', async () => undefined);

  // Length claims: RSS before and after 20 WebSocket headers claiming 1 GiB and 20 frames claiming 2 GiB.
  const rssBefore = (await metric(node.adminAddress, RSS))!;
  assert.ok(rssBefore > 0, 'RSS is exported');
  for (let i = 0; i < 20; i++) {
    const s = await rawUpgrade(port);
    s.write(hugeWsFrame(1n << 30n, 64 * 1024));
    await Promise.race([once(s, 'close'), new Promise((r) => setTimeout(r, 5000))]);
    assert.ok(s.destroyed || s.readableEnded, 'a 1 GiB WebSocket claim is closed');
    s.destroy();
    const p = await RawPeer.connect(address);
    assert.equal(await p.handshake({ ...id, role: 'client' }), 'ok');
    p.send(craftFrame({ type: FrameType.REQUEST, method: 'put', bodyBytes: 0x7fffffff }));
    assert.equal((await p.closed).reason, 'ERR_PROTOCOL_FRAME_TOO_LARGE');
    p.close();
  }
  const rssAfter = (await metric(node.adminAddress, RSS))!;
  t.diagnostic(`RSS ${Math.round(rssBefore / 1e6)} MB → ${Math.round(rssAfter / 1e6)} MB after 40 claims of ≥ 1 GiB`);
  assert.ok(rssAfter - rssBefore < GROWTH_BYTES_MAX, `RSS grew by ${rssAfter - rssBefore} bytes`);
  await stillServing('length claims');
});
