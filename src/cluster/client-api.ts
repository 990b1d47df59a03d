/**
 * Request handlers for clients (docs/protocol.md) and the peer-side pieces they fan out to.
 *
 * Any node accepts any client request: writes and reads are routed to the partition's primary
 * (write-path.ts); queries, digests and status are gathered from every node of the topology;
 * cache creation and drops go through the coordinator.
 */
import { ErrorCode, ptnError } from '../errors.js';
import type { Body } from '../net/connection.js';
import { decodeUpdate } from './update-codec.js';
import { partitionOfKey } from './affinity.js';
import { isRebalanced, lostPartitions } from './topology.js';
import type { ClusterNode } from './node.js';

function str(body: Record<string, unknown>, name: string): string {
  const v = body[name];
  if (typeof v !== 'string' || v.length === 0) throw ptnError(ErrorCode.ERR_USAGE, `${name} must be a non-empty string`);
  return v;
}

function obj(body: Body): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Buffer.isBuffer(body) || Array.isArray(body)) {
    throw ptnError(ErrorCode.ERR_USAGE, 'request body must be a JSON object');
  }
  return body as Record<string, unknown>;
}

function encodeClientValue(b: Record<string, unknown>): { valueKind: number; value: Buffer } {
  if (b.valueKind === 'bytes') {
    if (typeof b.value !== 'string') throw ptnError(ErrorCode.ERR_USAGE, 'bytes values are base64 strings');
    return { valueKind: 0, value: Buffer.from(b.value, 'base64') };
  }
  if (b.valueKind !== undefined && b.valueKind !== 'json') throw ptnError(ErrorCode.ERR_USAGE, 'valueKind must be "json" or "bytes"');
  if (!('value' in b)) throw ptnError(ErrorCode.ERR_USAGE, 'value is missing');
  return { valueKind: 1, value: Buffer.from(JSON.stringify(b.value), 'utf8') };
}

/** Run-time settings `configSet` may change, with their checks. */
const RUNTIME_SETTINGS: Record<string, (v: unknown) => boolean> = {
  'rebalance.throttleBytesPerSec': (v) => Number.isInteger(v) && (v as number) >= 0,
  'rebalance.receiveSlots': (v) => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 256,
  'rebalance.sendSlots': (v) => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 256,
  'rebalance.fullBatchBytesMax': (v) => Number.isInteger(v) && (v as number) >= 1024 && (v as number) <= 67108864,
  'rebalance.compression': (v) => v === 'none' || v === 'lz4',
  'rebalance.chunkWindow': (v) => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 64,
  'rebalance.yieldLagMs': (v) => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 10_000,
  'rebalance.yieldWaitMaxMs': (v) => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 60_000,
  'rebalance.yieldUtilization': (v) => typeof v === 'number' && v > 0 && v <= 1,
  'rebalance.receiveChunksMax': (v) => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 1024,
};

export function registerClientApi(node: ClusterNode): void {
  const h = node.handlers;
  const gatherTimeoutMs = () => node.config.net.requestTimeoutMs;

  /** Asks every node of the topology (self locally); failures become `undefined`. */
  async function gather(method: string, body: Body): Promise<Map<string, Body | undefined>> {
    const out = new Map<string, Body | undefined>();
    await Promise.all(
      node.topology().nodes.map(async (n) => {
        try {
          out.set(n.id, n.id === node.selfId ? ((await h.get(method)!(body, undefined as never)) as Body) : await node.peers.request(n.id, method, body, gatherTimeoutMs()));
        } catch (err) {
          node.log.debug({ err, nodeId: n.id, method }, 'gather failed');
          out.set(n.id, undefined);
        }
      }),
    );
    return out;
  }

  h.set('put', async (body) => {
    const b = obj(body);
    const v = encodeClientValue(b);
    return (await node.writes.clientWrite(str(b, 'cache'), str(b, 'key'), 'put', v.valueKind, v.value)) as unknown as Body;
  });
  h.set('del', async (body) => {
    const b = obj(body);
    return (await node.writes.clientWrite(str(b, 'cache'), str(b, 'key'), 'remove')) as unknown as Body;
  });
  h.set('get', (body) => {
    const b = obj(body);
    return node.writes.clientRead(str(b, 'cache'), str(b, 'key'));
  });
  h.set('read', (body) => {
    const b = obj(body);
    return node.writes.localRead(str(b, 'cache'), str(b, 'key'));
  });
  h.set('primaryWrite', async (body) => {
    if (!Buffer.isBuffer(body)) throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, 'primaryWrite takes a binary update');
    return (await node.writes.primaryWrite(decodeUpdate(body))) as unknown as Body;
  });
  h.set('replicate', (body, conn) => {
    if (!Buffer.isBuffer(body)) throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, 'replicate takes a binary update');
    return node.writes.onReplicate(body, conn);
  });

  h.set('query', async (body) => {
    const b = obj(body);
    const cache = str(b, 'cache');
    const field = str(b, 'field');
    const def = node.topology().caches.find((c) => c.name === cache);
    if (!def) throw ptnError(ErrorCode.ERR_CACHE_NOT_FOUND, `no cache named ${JSON.stringify(cache)}`);
    if (!def.indexFields.includes(field)) throw ptnError(ErrorCode.ERR_INDEX_NOT_FOUND, `cache ${cache} has no index on ${JSON.stringify(field)}`);
    const parts = await gather('localQuery', { cache, field, value: b.value as Body });
    const keys = new Set<string>();
    for (const [nodeId, r] of parts) {
      if (r === undefined) throw ptnError(ErrorCode.ERR_CONNECTION_CLOSED, `query: node ${nodeId} did not answer`);
      for (const k of (r as { keys: string[] }).keys) keys.add(k);
    }
    return { keys: [...keys].sort() };
  });
  h.set('localQuery', (body) => {
    const b = obj(body);
    const cache = str(b, 'cache');
    const t = node.topology();
    const def = t.caches.find((c) => c.name === cache);
    if (!def || !node.store.hasCache(cache)) return { keys: [] };
    const parts = t.partitions[cache] ?? [];
    const keys = node.store
      .query(cache, str(b, 'field'), b.value as string | number | boolean | null)
      .filter((k) => parts[partitionOfKey(k, def.partitions)]?.primary === node.selfId);
    return { keys };
  });

  h.set('cacheCreate', async (body) => {
    const b = obj(body);
    return node.toCoordinator('coordCacheCreate', {
      name: str(b, 'name'),
      partitions: b.partitions as number | undefined,
      backups: b.backups as number | undefined,
      indexFields: (b.indexFields as string[] | undefined) ?? [],
    });
  });
  h.set('cacheDrop', async (body) => node.toCoordinator('coordCacheDrop', { name: str(obj(body), 'name') }));
  h.set('cacheList', () => ({ caches: node.topology().caches }));

  h.set('localDigests', async (body) => {
    const cache = str(obj(body), 'cache');
    const t = node.topology();
    const def = t.caches.find((c) => c.name === cache);
    if (!def || !node.store.hasCache(cache)) return { partitions: {} };
    const out: Record<number, { state: string; digest: string; entries: number }> = {};
    for (const p of node.store.localPartitions(def.cacheId)) {
      const state = t.partitions[cache]?.[p]?.copies[node.selfId];
      if (!state) continue;
      out[p] = { state, ...(await node.store.digest(def.cacheId, p)) };
    }
    return { partitions: out };
  });
  h.set('digests', async (body) => {
    const cache = str(obj(body), 'cache');
    const def = node.topology().caches.find((c) => c.name === cache);
    if (!def) throw ptnError(ErrorCode.ERR_CACHE_NOT_FOUND, `no cache named ${JSON.stringify(cache)}`);
    const all = await gather('localDigests', { cache });
    const partitions = Array.from({ length: def.partitions }, (_, p) => ({ partition: p, copies: {} as Record<string, unknown> }));
    for (const [nodeId, r] of all) {
      if (r === undefined) continue;
      for (const [p, d] of Object.entries((r as { partitions: Record<string, unknown> }).partitions)) partitions[Number(p)]!.copies[nodeId] = d;
    }
    return { cache, topologyVersion: node.topology().version, unreachable: [...all].filter(([, r]) => r === undefined).map(([id]) => id), partitions };
  });

  h.set('localStatus', () => ({
    nodeId: node.selfId,
    tasks: node.demander ? node.demander.list() : node.rebalancer.list(),
    supplying: node.supplier?.list() ?? [],
    counters: { demander: node.demander?.counters, supplier: node.supplier?.counters, yield: { ...node.pacer.counts, waitedMs: Math.round(node.pacer.counts.waitedMs) } },
  }));
  h.set('status', async () => buildStatus(node, await gather('localStatus', {})));

  h.set('checkpoint', async () => {
    const r = await node.store.checkpoint('request');
    return { checkpointId: r.checkpointId, pages: r.pages, bytes: r.bytes, durationMs: r.durationMs };
  });

  h.set('configSet', (body) => {
    const b = obj(body);
    const key = str(b, 'key');
    const check = RUNTIME_SETTINGS[key];
    if (!check) throw ptnError(ErrorCode.ERR_USAGE, `${key} cannot be changed at run time (one of: ${Object.keys(RUNTIME_SETTINGS).join(', ')})`);
    if (!check(b.value)) throw ptnError(ErrorCode.ERR_USAGE, `bad value for ${key}: ${JSON.stringify(b.value)}`);
    const [section, name] = key.split('.') as [keyof typeof node.config, string];
    (node.config[section] as unknown as Record<string, unknown>)[name] = b.value;
    node.log.info({ key, value: b.value }, 'setting changed at run time');
    return { key, value: b.value as Body };
  });
}

/** The cluster status document (docs/protocol.md). */
export function buildStatus(node: ClusterNode, perNode?: Map<string, Body | undefined>): Record<string, unknown> {
  const t = node.topology();
  const partitions: Record<string, unknown[]> = {};
  let left = 0;
  let total = 0;
  for (const [cache, parts] of Object.entries(t.partitions)) {
    partitions[cache] = parts.map((pc, p) => {
      const moving = Object.values(pc.copies).filter((s) => s === 'MOVING').length;
      left += moving;
      return { partition: p, primary: pc.primary, copies: pc.copies };
    });
  }
  const tasks: unknown[] = [];
  const supplying: unknown[] = [];
  /** Per node: how often its rebalance steps yielded to foreground work (ForegroundPacer). */
  const yields: Record<string, unknown> = {};
  for (const [nodeId, r] of perNode ?? []) {
    const local = r as { tasks?: Array<Record<string, unknown>>; supplying?: Array<Record<string, unknown>> } | undefined;
    for (const task of local?.tasks ?? []) {
      tasks.push({ node: nodeId, ...task });
      total++;
    }
    for (const tr of local?.supplying ?? []) supplying.push({ node: nodeId, ...tr });
    const y = (r as { counters?: { yield?: unknown } } | undefined)?.counters?.yield;
    if (y) yields[nodeId] = y;
  }
  return {
    nodeId: node.selfId,
    clusterId: t.clusterId,
    topologyVersion: t.version,
    coordinator: t.coordinator,
    rebalanced: isRebalanced(t),
    nodes: t.nodes,
    caches: t.caches,
    partitions,
    rebalance: { partitionsLeft: left, partitionsTotal: Math.max(total, left), tasks, supplying, yield: yields },
    lostPartitions: lostPartitions(t),
    unreachable: [...(perNode ?? [])].filter(([, r]) => r === undefined).map(([id]) => id),
  };
}
