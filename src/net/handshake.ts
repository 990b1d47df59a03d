/**
 * Connection handshake: mutual proof of the shared cluster secret, never sending it.
 *
 *   server → client  CHALLENGE {protocolVersion, clusterId, nodeId, nonce: Ns}
 *   client → server  HELLO     {protocolVersion, clusterId, nodeId, role, nonce: Nc,
 *                               proof: HMAC(secret, ["ptn-hello-v1", Ns, Nc, clientId, serverId, clusterId, role])}
 *   server → client  WELCOME   {proof: HMAC(secret, ["ptn-welcome-v1", Nc, Ns, serverId, clientId, clusterId])}
 *
 * Why this shape: each side proves knowledge of the secret over a nonce the OTHER side chose
 * (no replay); both proofs cover both nonces and both node ids, and carry different labels, so
 * a proof cannot be reflected back or replayed on another connection. Proofs are compared with
 * `timingSafeEqual`. Fields are hashed as a JSON array, so no two field lists hash alike.
 *
 * Checks, in order, and the error each one raises (the connection is then closed with the
 * matching close code, see close-codes.ts):
 *
 * | check                                         | error                  |
 * |-----------------------------------------------|------------------------|
 * | body is an object with the expected fields    | ERR_PROTOCOL_BAD_FRAME |
 * | protocolVersion === PROTOCOL_VERSION          | ERR_PROTOCOL_VERSION   |
 * | clusterId equals ours                         | ERR_HANDSHAKE_CLUSTER  |
 * | node id, role, nonce and proof well formed    | ERR_PROTOCOL_BAD_FRAME |
 * | proof matches                                 | ERR_HANDSHAKE_AUTH     |
 *
 * The classes here are pure state machines (no sockets, no timers): `Connection` feeds them
 * frames and sends what they return; the handshake timeout lives in `Connection`.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { ErrorCode, assert, ptnError } from '../errors.js';
import { PROTOCOL_VERSION } from './frames.js';

/** Who this process is on the network. `role` is what a dialer announces (default 'peer'). */
export interface NetIdentity {
  nodeId: string;
  clusterId: string;
  secret: string;
  role?: 'peer' | 'client';
}

/** Role of the remote end of a connection. */
export type RemoteRole = 'peer' | 'client';

/** What a completed handshake tells about the other side. */
export interface RemoteInfo {
  nodeId: string;
  role: RemoteRole;
}

export interface ChallengeBody {
  protocolVersion: number;
  clusterId: string;
  nodeId: string;
  nonce: string;
}
export interface HelloBody extends ChallengeBody {
  role: RemoteRole;
  proof: string;
}
export interface WelcomeBody {
  proof: string;
}

const NONCE_BYTES = 32;
const HEX_64 = /^[0-9a-f]{64}$/;
const NODE_ID = /^[A-Za-z0-9_.-]{1,64}$/;
const ROLES: readonly RemoteRole[] = ['peer', 'client'];

function bad(message: string): never {
  throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, `handshake: ${message}`);
}

function proofOf(secret: string, fields: string[]): string {
  return createHmac('sha256', secret).update(JSON.stringify(fields)).digest('hex');
}

function proofMatches(expectedHex: string, gotHex: string): boolean {
  const expected = Buffer.from(expectedHex, 'hex');
  const got = Buffer.from(gotHex, 'hex');
  return got.length === expected.length && timingSafeEqual(expected, got);
}

function asObject(body: unknown, what: string): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body) || Buffer.isBuffer(body)) bad(`${what} is not an object`);
  return body as Record<string, unknown>;
}

/** Version, then cluster, then the node id and nonce shared by CHALLENGE and HELLO. */
function checkCommon(b: Record<string, unknown>, clusterId: string, what: string): { nodeId: string; nonce: string } {
  if (typeof b.protocolVersion !== 'number') bad(`${what} without protocolVersion`);
  if (b.protocolVersion !== PROTOCOL_VERSION) {
    throw ptnError(ErrorCode.ERR_PROTOCOL_VERSION, `peer speaks protocol ${b.protocolVersion}, this build ${PROTOCOL_VERSION}`, {
      details: { version: b.protocolVersion },
    });
  }
  if (typeof b.clusterId !== 'string') bad(`${what} without clusterId`);
  if (b.clusterId !== clusterId) {
    throw ptnError(ErrorCode.ERR_HANDSHAKE_CLUSTER, `peer belongs to cluster ${JSON.stringify(b.clusterId.slice(0, 64))}, not ${clusterId}`, {
      details: { clusterId: b.clusterId.slice(0, 64) },
    });
  }
  if (typeof b.nodeId !== 'string' || !NODE_ID.test(b.nodeId)) bad(`${what} with a bad nodeId`);
  if (typeof b.nonce !== 'string' || !HEX_64.test(b.nonce)) bad(`${what} with a bad nonce`);
  return { nodeId: b.nodeId, nonce: b.nonce };
}

function checkIdentity(identity: NetIdentity): void {
  assert(NODE_ID.test(identity.nodeId), `bad local nodeId ${identity.nodeId}`);
  assert(identity.secret.length > 0, 'empty cluster secret');
}

/** Server side: `challenge()` first, then `onHello()` with the client's HELLO body. */
export class ServerHandshake {
  readonly #identity: NetIdentity;
  readonly #nonce = randomBytes(NONCE_BYTES).toString('hex');

  constructor(identity: NetIdentity) {
    checkIdentity(identity);
    this.#identity = identity;
  }

  /** Body of the CHALLENGE frame. */
  challenge(): ChallengeBody {
    const { clusterId, nodeId } = this.#identity;
    return { protocolVersion: PROTOCOL_VERSION, clusterId, nodeId, nonce: this.#nonce };
  }

  /** Checks a HELLO body; returns the WELCOME body to send and who the client is. Throws coded errors. */
  onHello(body: unknown): { welcome: WelcomeBody; remote: RemoteInfo } {
    const b = asObject(body, 'HELLO');
    const { clusterId, nodeId, secret } = this.#identity;
    const client = checkCommon(b, clusterId, 'HELLO');
    if (!ROLES.includes(b.role as RemoteRole)) bad('HELLO with a bad role');
    if (typeof b.proof !== 'string' || !HEX_64.test(b.proof)) bad('HELLO with a malformed proof');
    const role = b.role as RemoteRole;
    const expected = proofOf(secret, ['ptn-hello-v1', this.#nonce, client.nonce, client.nodeId, nodeId, clusterId, role]);
    if (!proofMatches(expected, b.proof)) {
      throw ptnError(ErrorCode.ERR_HANDSHAKE_AUTH, `node ${client.nodeId} failed the shared-secret proof`, {
        details: { nodeId: client.nodeId },
      });
    }
    const proof = proofOf(secret, ['ptn-welcome-v1', client.nonce, this.#nonce, nodeId, client.nodeId, clusterId]);
    return { welcome: { proof }, remote: { nodeId: client.nodeId, role } };
  }
}

/** Client side: `onChallenge()` returns the HELLO body, `onWelcome()` checks the server's proof. */
export class ClientHandshake {
  readonly #identity: NetIdentity;
  readonly #nonce = randomBytes(NONCE_BYTES).toString('hex');
  #server: { nodeId: string; nonce: string } | undefined;

  constructor(identity: NetIdentity) {
    checkIdentity(identity);
    this.#identity = identity;
  }

  /** Checks the server's CHALLENGE body; returns the HELLO body to send. */
  onChallenge(body: unknown): HelloBody {
    assert(this.#server === undefined, 'challenge received twice');
    const b = asObject(body, 'CHALLENGE');
    const { clusterId, nodeId, secret } = this.#identity;
    this.#server = checkCommon(b, clusterId, 'CHALLENGE');
    const role = this.#identity.role ?? 'peer';
    const proof = proofOf(secret, ['ptn-hello-v1', this.#server.nonce, this.#nonce, nodeId, this.#server.nodeId, clusterId, role]);
    return { protocolVersion: PROTOCOL_VERSION, clusterId, nodeId, role, nonce: this.#nonce, proof };
  }

  /** Checks the server's WELCOME body; returns who the server is. */
  onWelcome(body: unknown): RemoteInfo {
    assert(this.#server !== undefined, 'welcome before challenge');
    const b = asObject(body, 'WELCOME');
    if (typeof b.proof !== 'string' || !HEX_64.test(b.proof)) bad('WELCOME with a malformed proof');
    const { clusterId, nodeId, secret } = this.#identity;
    const expected = proofOf(secret, ['ptn-welcome-v1', this.#nonce, this.#server.nonce, this.#server.nodeId, nodeId, clusterId]);
    if (!proofMatches(expected, b.proof)) {
      throw ptnError(ErrorCode.ERR_HANDSHAKE_AUTH, `server ${this.#server.nodeId} failed the shared-secret proof`, {
        details: { nodeId: this.#server.nodeId },
      });
    }
    return { nodeId: this.#server.nodeId, role: 'peer' };
  }
}
