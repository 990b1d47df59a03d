/**
 * One-request commands: put, get, del, query, cache create/drop/list, status, config set.
 * Each dials one node as a client (client.ts), sends one request (docs/protocol.md), prints the
 * answer and closes. `--json` prints the node's answer as JSON for machines.
 */
import { type ClientFlags, resolveClientSettings, withClient } from './client.js';
import { asClusterStatus, formatStatus } from './status-format.js';
import { parseValueArg } from './args.js';
import { formatTable } from './table.js';

/** Flags of put/get/del/query. */
export interface DataFlags extends ClientFlags {
  cache: string;
  json?: boolean;
}

function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

function request(flags: ClientFlags, method: string, body: object): Promise<unknown> {
  return withClient(resolveClientSettings(flags), (conn) => conn.request(method, body));
}

interface WriteAnswer {
  counter: number;
  partition: number;
}

/** `ptn put KEY VALUE`. */
export async function put(key: string, valueText: string, f: DataFlags): Promise<number> {
  const r = (await request(f, 'put', { cache: f.cache, key, value: parseValueArg(valueText) })) as WriteAnswer;
  out(f.json ? JSON.stringify(r) : `OK partition ${r.partition} counter ${r.counter}`);
  return 0;
}

/** Prints the value as JSON; exit 1 with "not found" on stderr when absent. */
export async function get(key: string, f: DataFlags): Promise<number> {
  const r = (await request(f, 'get', { cache: f.cache, key })) as { found: boolean; value?: unknown; valueKind?: string; counter?: number };
  if (f.json) {
    out(JSON.stringify(r));
    return r.found ? 0 : 1;
  }
  if (!r.found) {
    process.stderr.write('not found\n');
    return 1;
  }
  out(JSON.stringify(r.value));
  return 0;
}

/** `ptn del KEY`. */
export async function del(key: string, f: DataFlags): Promise<number> {
  const r = (await request(f, 'del', { cache: f.cache, key })) as WriteAnswer;
  out(f.json ? JSON.stringify(r) : `OK partition ${r.partition} counter ${r.counter}`);
  return 0;
}

/** Prints the matching keys, one per line. */
export async function query(field: string, valueText: string, f: DataFlags): Promise<number> {
  const r = (await request(f, 'query', { cache: f.cache, field, value: parseValueArg(valueText) })) as { keys: string[] };
  if (f.json) out(JSON.stringify(r));
  else if (r.keys.length > 0) out(r.keys.join('\n'));
  return 0;
}

/** `ptn cache create NAME`. */
export async function cacheCreate(name: string, f: ClientFlags & { partitions?: number; backups?: number; index?: string[]; json?: boolean }): Promise<number> {
  const r = (await request(f, 'cacheCreate', { name, partitions: f.partitions, backups: f.backups, indexFields: f.index ?? [] })) as {
    cache: { name: string; cacheId: number; partitions: number; backups: number; indexFields: string[] };
  };
  const c = r.cache;
  out(f.json ? JSON.stringify(r) : `created cache ${c.name} (id ${c.cacheId}, ${c.partitions} partitions, ${c.backups} backup${c.backups === 1 ? '' : 's'}, index ${c.indexFields.join(',') || '-'})`);
  return 0;
}

/** `ptn cache drop NAME`. */
export async function cacheDrop(name: string, f: ClientFlags & { json?: boolean }): Promise<number> {
  const r = await request(f, 'cacheDrop', { name });
  out(f.json ? JSON.stringify(r) : `dropped cache ${name}`);
  return 0;
}

/** `ptn cache list`. */
export async function cacheList(f: ClientFlags & { json?: boolean }): Promise<number> {
  const r = (await request(f, 'cacheList', {})) as { caches: { name: string; cacheId: number; partitions: number; backups: number; indexFields: string[] }[] };
  if (f.json) out(JSON.stringify(r));
  else if (r.caches.length === 0) out('no caches');
  else out(formatTable(['NAME', 'ID', 'PARTITIONS', 'BACKUPS', 'INDEX'], r.caches.map((c) => [c.name, String(c.cacheId), String(c.partitions), String(c.backups), c.indexFields.join(',') || '-'])));
  return 0;
}

/** `--json` prints exactly the node's status; the text form is a readable summary and tables. */
export async function status(f: ClientFlags & { json?: boolean; partitions: boolean }): Promise<number> {
  const r = await request(f, 'status', {});
  out(f.json ? JSON.stringify(r, null, 2) : formatStatus(asClusterStatus(r), { partitionRows: f.partitions }));
  return 0;
}

/** `ptn config set KEY VALUE`: a run-time setting of the node (configSet). */
export async function configSet(key: string, valueText: string, f: ClientFlags & { json?: boolean }): Promise<number> {
  const r = (await request(f, 'configSet', { key, value: parseValueArg(valueText) })) as { key: string; value: unknown };
  out(f.json ? JSON.stringify(r) : `${r.key} = ${JSON.stringify(r.value)}`);
  return 0;
}
