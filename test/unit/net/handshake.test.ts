// The handshake state machines on their own (no sockets); over real sockets in connection.test.ts
// and hostile.test.ts.
import test from 'node:test';
import assert from 'node:assert/strict';
import { isPtnError } from '../../../src/errors.js';
import { ClientHandshake, ServerHandshake } from '../../../src/net/handshake.js';
import { identity } from './fixture.js';

function throwsCode(fn: () => unknown, code: string, what = code) {
  assert.throws(fn, (err: unknown) => isPtnError(err) && err.code === code, what);
}

test('server and client handshakes prove the secret to each other and learn ids and role', () => {
  const server = new ServerHandshake(identity('srv'));
  const client = new ClientHandshake(identity('cli', { role: 'client' }));
  const hello = client.onChallenge(server.challenge());
  assert.ok(!JSON.stringify(hello).includes(identity('x').secret), 'the secret is never sent');
  const { welcome, remote } = server.onHello(hello);
  assert.deepEqual(remote, { nodeId: 'cli', role: 'client' });
  assert.deepEqual(client.onWelcome(welcome), { nodeId: 'srv', role: 'peer' });
});

test('a dialer that does not say its role is a peer', () => {
  const server = new ServerHandshake(identity('srv'));
  const client = new ClientHandshake(identity('n2'));
  assert.equal(server.onHello(client.onChallenge(server.challenge())).remote.role, 'peer');
});

test('a client with the wrong secret is refused with ERR_HANDSHAKE_AUTH', () => {
  const server = new ServerHandshake(identity('srv'));
  const client = new ClientHandshake(identity('cli', { secret: 'not-the-secret' }));
  throwsCode(() => server.onHello(client.onChallenge(server.challenge())), 'ERR_HANDSHAKE_AUTH');
});

test('a server that cannot prove the secret is refused by the client with ERR_HANDSHAKE_AUTH', () => {
  const impostor = new ServerHandshake(identity('srv', { secret: 'impostor-secret' }));
  const client = new ClientHandshake(identity('cli'));
  client.onChallenge(impostor.challenge());
  throwsCode(() => client.onWelcome({ proof: 'ab'.repeat(32) }), 'ERR_HANDSHAKE_AUTH');
});

test('a HELLO replayed on another connection fails (the server nonce differs)', () => {
  const first = new ServerHandshake(identity('srv'));
  const hello = new ClientHandshake(identity('cli')).onChallenge(first.challenge());
  first.onHello(hello);
  throwsCode(() => new ServerHandshake(identity('srv')).onHello(hello), 'ERR_HANDSHAKE_AUTH');
});

test('a client proof reflected back as the server proof fails', () => {
  const server = new ServerHandshake(identity('srv'));
  const client = new ClientHandshake(identity('cli'));
  const hello = client.onChallenge(server.challenge());
  throwsCode(() => client.onWelcome({ proof: hello.proof }), 'ERR_HANDSHAKE_AUTH');
});

test('the proof covers the role: a client cannot upgrade itself to peer', () => {
  const server = new ServerHandshake(identity('srv'));
  const hello = new ClientHandshake(identity('cli', { role: 'client' })).onChallenge(server.challenge());
  throwsCode(() => server.onHello({ ...hello, role: 'peer' }), 'ERR_HANDSHAKE_AUTH');
});

test('another cluster is refused with ERR_HANDSHAKE_CLUSTER on both sides', () => {
  const server = new ServerHandshake(identity('srv'));
  const other = new ClientHandshake(identity('cli', { clusterId: 'other' }));
  throwsCode(() => other.onChallenge(server.challenge()), 'ERR_HANDSHAKE_CLUSTER', 'client sees a foreign server');
  const hello = new ClientHandshake(identity('cli')).onChallenge(server.challenge());
  throwsCode(() => server.onHello({ ...hello, clusterId: 'other' }), 'ERR_HANDSHAKE_CLUSTER', 'server sees a foreign client');
});

test('an unknown protocol version is refused with ERR_PROTOCOL_VERSION on both sides', () => {
  const server = new ServerHandshake(identity('srv'));
  throwsCode(() => new ClientHandshake(identity('cli')).onChallenge({ ...server.challenge(), protocolVersion: 2 }), 'ERR_PROTOCOL_VERSION');
  const hello = new ClientHandshake(identity('cli')).onChallenge(server.challenge());
  throwsCode(() => server.onHello({ ...hello, protocolVersion: 99 }), 'ERR_PROTOCOL_VERSION');
});

test('malformed handshake bodies are refused with ERR_PROTOCOL_BAD_FRAME', () => {
  const server = new ServerHandshake(identity('srv'));
  const hello = new ClientHandshake(identity('cli')).onChallenge(server.challenge()) as unknown as Record<string, unknown>;
  const bad: Array<[string, unknown]> = [
    ['null', null],
    ['a number', 7],
    ['an array', [hello]],
    ['raw bytes', Buffer.from('{}')],
    ['no protocolVersion', { ...hello, protocolVersion: undefined }],
    ['no clusterId', { ...hello, clusterId: 5 }],
    ['bad nodeId', { ...hello, nodeId: 'a b' }],
    ['long nodeId', { ...hello, nodeId: 'n'.repeat(65) }],
    ['bad role', { ...hello, role: 'admin' }],
    ['short nonce', { ...hello, nonce: 'abcd' }],
    ['proof not hex', { ...hello, proof: 'zz'.repeat(32) }],
    ['no proof', { ...hello, proof: undefined }],
  ];
  for (const [what, body] of bad) throwsCode(() => new ServerHandshake(identity('srv')).onHello(body), 'ERR_PROTOCOL_BAD_FRAME', what);
  const client = new ClientHandshake(identity('cli'));
  throwsCode(() => client.onChallenge('hello'), 'ERR_PROTOCOL_BAD_FRAME', 'challenge not an object');
  client.onChallenge(server.challenge());
  throwsCode(() => client.onWelcome({ proof: 42 }), 'ERR_PROTOCOL_BAD_FRAME', 'welcome proof not a string');
});
