/**
 * What the demander needs from its node, as a narrow interface: the cluster node provides it
 * (`clusterNodeHost`), unit tests provide a fake with a real Store and a fake supplier.
 */
import type { NodeConfig } from '../config.js';
import { ErrorCode, ptnError } from '../errors.js';
import type { Logger } from '../util/log.js';
import type { FileLayer } from '../util/file-layer.js';
import type { Store } from '../store/store.js';
import type { Body } from '../net/connection.js';
import { dial } from '../net/client.js';
import type { Topology } from '../cluster/topology.js';
import type { RebalancePacer } from '../cluster/foreground-pacer.js';
import type { ClusterNode } from '../cluster/node.js';
import type { SupplierLink } from './file-receiver.js';

/** Result of an entry-by-entry pull (full path): the supplier's counter state when its scan began. */
export interface FullPullResult {
  counter?: { lwm: number; gaps: Array<[number, number]> };
}

export interface DemanderHost {
  readonly selfId: string;
  readonly config: NodeConfig;
  readonly log: Logger;
  readonly store: Store;
  /** The node's storage file layer (the fault layer under test faults); the manager's default. */
  readonly fileLayer?: FileLayer;
  /** Yields to foreground work before each unit of rebalance work (ForegroundPacer.turn); none when absent. */
  readonly pacer?: RebalancePacer;
  topology(): Topology;
  /** Resolves when topology `version` is applied (and ready when `ready`). */
  waitFor(version: number, ready: boolean, timeoutMs: number): Promise<void>;
  /** A request to the coordinator (`partitionOwning`). */
  toCoordinator(method: string, body: Body): Promise<Body>;
  /** Opens a DEDICATED connection to a node (this node dials: file bytes travel server → client). */
  connect(nodeId: string, signal: AbortSignal): Promise<SupplierLink>;
  /** A request over the shared peer connection (best-effort releases). */
  request(nodeId: string, method: string, body: Body, timeoutMs?: number): Promise<Body>;
  /** Full path: pulls every entry of the partition from `supplier` into the store (full-rebalance.ts). */
  pullFull(supplier: string, cacheId: number, partition: number, signal: AbortSignal, onBatch: (bytes: number, entries: number) => void): Promise<FullPullResult>;
}

/** The demander host of a cluster node. */
export function clusterNodeHost(node: ClusterNode): DemanderHost {
  return {
    get selfId() {
      return node.selfId;
    },
    get config() {
      return node.config;
    },
    log: node.log.child({ part: 'demander' }),
    get store() {
      return node.store;
    },
    get fileLayer() {
      return node.fileLayer;
    },
    get pacer() {
      return node.pacer;
    },
    topology: () => node.topology(),
    waitFor: (v, ready, ms) => node.waitFor(v, ready, ms),
    toCoordinator: (m, b) => node.toCoordinator(m, b),
    request: (id, m, b, ms) => node.peers.request(id, m, b, ms),
    pullFull: (supplier, cacheId, partition, signal, onBatch) => node.rebalancer.pull(supplier, cacheId, partition, signal, onBatch),
    connect: async (nodeId, signal) => {
      const address = node.topology().nodes.find((n) => n.id === nodeId)?.address;
      if (!address) throw ptnError(ErrorCode.ERR_CONNECTION_CLOSED, `node ${nodeId} is not in the topology`);
      const conn = await dial(address, {
        identity: { nodeId: node.selfId, clusterId: node.config.clusterId, secret: node.config.clusterSecret, role: 'peer' },
        config: node.config.net,
        retries: 0,
        handlers: node.handlers,
        signal,
        log: (level, msg, extra) => node.log.debug({ ...extra, level }, msg),
      });
      if (conn.remoteNodeId !== nodeId) {
        await conn.close();
        throw ptnError(ErrorCode.ERR_CONNECTION_CLOSED, `${address} is node ${conn.remoteNodeId}, expected ${nodeId}`);
      }
      return conn;
    },
  };
}
