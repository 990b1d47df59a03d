/**
 * Readiness probes for local clusters: the admin port's `GET /healthz`, and the `status` request
 * that tells whether the cluster lists the expected nodes and has finished rebalancing.
 */
import http from 'node:http';
import type { Connection } from '../net/connection.js';
import { splitAddress } from './args.js';
import { type ClientSettings, connectClient } from './client.js';
import { asClusterStatus, type ClusterStatus } from './status-format.js';

/** True when `GET http://ADMIN/healthz` answers 2xx within `timeoutMs`. */
export function healthz(adminAddress: string, timeoutMs = 1_000): Promise<boolean> {
  const { host, port } = splitAddress(adminAddress);
  return new Promise((resolve) => {
    const req = http.get({ host, port, path: '/healthz', timeout: timeoutMs, agent: false }, (res) => {
      res.resume();
      resolve((res.statusCode ?? 500) >= 200 && (res.statusCode ?? 500) < 300);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

/** Asks one connection for the cluster status. */
export async function requestStatus(conn: Connection, timeoutMs?: number): Promise<ClusterStatus> {
  return asClusterStatus(await conn.request('status', {}, timeoutMs === undefined ? {} : { timeoutMs }));
}

/** Dials `address`, asks for the status, closes. */
export async function fetchStatus(s: ClientSettings, address = s.address): Promise<ClusterStatus> {
  const conn = await connectClient(s, { address, retries: 0 });
  try {
    return await requestStatus(conn);
  } finally {
    await conn.close().catch(() => {});
  }
}

/** Why a status does not (yet) show a ready cluster, or undefined when it does. */
export function notReadyReason(s: ClusterStatus, expectedIds: readonly string[]): string | undefined {
  const listed = s.nodes.map((n) => n.id).sort();
  const expected = [...expectedIds].sort();
  if (listed.join(',') !== expected.join(',')) return `${s.nodeId} lists [${listed.join(', ')}], expected [${expected.join(', ')}]`;
  if (!s.rebalanced) return `${s.nodeId} is still rebalancing (${s.rebalance?.partitionsLeft ?? '?'} partitions left)`;
  return undefined;
}
