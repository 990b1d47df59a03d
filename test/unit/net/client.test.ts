// dial(): retries with backoff until a server appears; refusals that retrying cannot fix
// (cluster, auth, version) reject at once with their code.
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { isPtnError } from '../../../src/errors.js';
import { NetServer } from '../../../src/net/server.js';
import { dial } from '../../../src/net/client.js';
import { SilentServer } from '../../helpers/hostile-peer.js';
import { NetFixture, identity, netConfig, waitFor } from './fixture.js';

const fx = new NetFixture();
afterEach(() => fx.cleanup());

const quickRetries = { retryDelayMinMs: 10, retryDelayMaxMs: 50 };

async function rejectsCode(p: Promise<unknown>, code: string, what = code) {
  await assert.rejects(p, (err: unknown) => isPtnError(err) && err.code === code, what);
}

/** A port nobody listens on (bound once, then released). */
async function freePort(): Promise<number> {
  const probe = net.createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as net.AddressInfo;
  await new Promise((r) => probe.close(r));
  return port;
}

test('dial retries until a server appears, then connects', async () => {
  const port = await freePort();
  const dialing = fx.dial(`127.0.0.1:${port}`, { retries: 200, ...quickRetries });
  let attemptsBefore = 0;
  while (attemptsBefore < 3) {
    await new Promise((r) => setTimeout(r, 10));
    attemptsBefore = fx.logs.filter((l) => /retrying/.test(l.msg)).length;
  }
  const server = new NetServer({ host: '127.0.0.1', port, identity: identity('late'), config: netConfig() });
  fx.servers.push(server);
  server.handle('echo', (b) => b);
  await server.listen();
  const conn = await dialing;
  assert.equal(conn.remoteNodeId, 'late');
  assert.equal(await conn.request('echo', 'hi'), 'hi');
  assert.ok(fx.logs.some((l) => (l.extra as { code?: string })?.code === 'ERR_CONNECTION_CLOSED'), 'failed attempts are logged with their code');
});

test('dial gives up after its retries with ERR_CONNECTION_CLOSED', async () => {
  const port = await freePort();
  await rejectsCode(fx.dial(`127.0.0.1:${port}`, { retries: 2, ...quickRetries }), 'ERR_CONNECTION_CLOSED');
  assert.equal(fx.logs.filter((l) => /retrying/.test(l.msg)).length, 2);
});

test('a wrong secret is not retried: ERR_HANDSHAKE_AUTH after one attempt', async () => {
  const s = await fx.server();
  await rejectsCode(fx.dial(s.address, { identity: identity('c', { secret: 'wrong-secret!' }), retries: 5, ...quickRetries }), 'ERR_HANDSHAKE_AUTH');
  assert.deepEqual(s.server.stats.refused, { ERR_HANDSHAKE_AUTH: 1 });
});

test('another cluster is not retried: ERR_HANDSHAKE_CLUSTER after one attempt', async () => {
  const s = await fx.server();
  await rejectsCode(fx.dial(s.address, { identity: identity('c', { clusterId: 'elsewhere' }), retries: 5, ...quickRetries }), 'ERR_HANDSHAKE_CLUSTER');
  // The dialer refuses the foreign server itself, and closes with 4004; the server counts that.
  await waitFor(() => s.server.stats.refused.ERR_HANDSHAKE_CLUSTER === 1, 'the server to count the refusal');
  assert.deepEqual(s.server.stats.refused, { ERR_HANDSHAKE_CLUSTER: 1 });
});

test('a server that cannot prove the secret is refused with ERR_HANDSHAKE_AUTH, not retried', async () => {
  const { server, address } = await SilentServer.start(identity('impostor'), { bogusWelcome: true });
  fx.onCleanup(() => server.close());
  await rejectsCode(fx.dial(address, { retries: 5, ...quickRetries }), 'ERR_HANDSHAKE_AUTH');
  assert.equal(server.sockets.length, 1);
});

test('a server of another protocol version is refused with ERR_PROTOCOL_VERSION, not retried', async () => {
  const { server, address } = await SilentServer.start(identity('future'), { challenge: (c) => ({ ...c, protocolVersion: 2 }) });
  fx.onCleanup(() => server.close());
  await rejectsCode(fx.dial(address, { retries: 5, ...quickRetries }), 'ERR_PROTOCOL_VERSION');
  assert.equal(server.sockets.length, 1);
});

test('a server that never sends its challenge fails the dial with ERR_HANDSHAKE_TIMEOUT (retried)', async () => {
  const { server, address } = await SilentServer.start(identity('mute'), { mute: true });
  fx.onCleanup(() => server.close());
  await rejectsCode(fx.dial(address, { config: netConfig({ handshakeTimeoutMs: 50 }), retries: 1, ...quickRetries }), 'ERR_HANDSHAKE_TIMEOUT');
  assert.equal(server.sockets.length, 2);
});

test('an aborted dial stops retrying and rejects with the abort reason', async () => {
  const port = await freePort();
  const controller = new AbortController();
  const dialing = dial(`127.0.0.1:${port}`, { identity: identity('c'), config: netConfig(), retries: 1000, ...quickRetries, signal: controller.signal });
  setTimeout(() => controller.abort(new Error('shutting down')), 30);
  await assert.rejects(dialing, /shutting down/);
});

test('an address that is not HOST:PORT is a usage error', async () => {
  await rejectsCode(dial('127.0.0.1:99999999', { identity: identity('c'), config: netConfig() }), 'ERR_USAGE');
  await rejectsCode(dial('no port here', { identity: identity('c'), config: netConfig() }), 'ERR_USAGE');
});
