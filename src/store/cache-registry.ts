/**
 * The caches a node knows: name, numeric id, partition count, backups, indexed fields.
 * Persisted as `<dataDir>/caches.json` (a versioned, CRC'd JSON document, written atomically).
 */
import { ErrorCode, ptnError } from '../errors.js';
import { type FileLayer, realFileLayer } from '../util/file-layer.js';
import { readJsonFile, writeJsonFileAtomic } from '../util/json-file.js';

/** Definition of one cache. */
export interface CacheDef {
  name: string;
  cacheId: number;
  partitions: number;
  backups: number;
  indexFields: string[];
}

const KIND = 'ptn-caches';
const VERSION = 1;
export const CACHE_NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;
export const PARTITIONS_MAX = 65536;

/** Validates a cache definition (user input) and returns it normalized. */
export function checkCacheDef(def: CacheDef): CacheDef {
  if (!CACHE_NAME_RE.test(def.name)) throw ptnError(ErrorCode.ERR_USAGE, `cache name must match ${CACHE_NAME_RE}, got ${JSON.stringify(def.name)}`);
  if (!Number.isInteger(def.partitions) || def.partitions < 1 || def.partitions > PARTITIONS_MAX) {
    throw ptnError(ErrorCode.ERR_USAGE, `partitions must be an integer in 1..${PARTITIONS_MAX}, got ${def.partitions}`);
  }
  if (!Number.isInteger(def.backups) || def.backups < 0 || def.backups > 16) {
    throw ptnError(ErrorCode.ERR_USAGE, `backups must be an integer in 0..16, got ${def.backups}`);
  }
  if (!Number.isInteger(def.cacheId) || def.cacheId < 1 || def.cacheId > 0xffffffff) {
    throw ptnError(ErrorCode.ERR_USAGE, `cacheId must be an integer in 1..2^32-1, got ${def.cacheId}`);
  }
  for (const f of def.indexFields) {
    if (!/^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$/.test(f)) throw ptnError(ErrorCode.ERR_USAGE, `bad index field ${JSON.stringify(f)}`);
  }
  return { name: def.name, cacheId: def.cacheId, partitions: def.partitions, backups: def.backups, indexFields: [...new Set(def.indexFields)] };
}

/** In-memory registry backed by caches.json. */
export class CacheRegistry {
  private readonly byName = new Map<string, CacheDef>();
  private readonly byId = new Map<number, CacheDef>();

  private constructor(private readonly file: string, private readonly fl: FileLayer) {}

  static async open(file: string, fl: FileLayer = realFileLayer): Promise<CacheRegistry> {
    const reg = new CacheRegistry(file, fl);
    const doc = await readJsonFile<{ caches: CacheDef[] }>(file, KIND, [VERSION], fl);
    for (const def of doc?.body.caches ?? []) reg.put(def);
    return reg;
  }

  private put(def: CacheDef): void {
    this.byName.set(def.name, def);
    this.byId.set(def.cacheId, def);
  }

  list(): CacheDef[] {
    return [...this.byId.values()].sort((a, b) => a.cacheId - b.cacheId);
  }

  byNameOrUndefined(name: string): CacheDef | undefined {
    return this.byName.get(name);
  }

  byIdOrUndefined(cacheId: number): CacheDef | undefined {
    return this.byId.get(cacheId);
  }

  get(name: string): CacheDef {
    const def = this.byName.get(name);
    if (!def) throw ptnError(ErrorCode.ERR_CACHE_NOT_FOUND, `no cache named ${JSON.stringify(name)}`);
    return def;
  }

  getById(cacheId: number): CacheDef {
    const def = this.byId.get(cacheId);
    if (!def) throw ptnError(ErrorCode.ERR_CACHE_NOT_FOUND, `no cache with id ${cacheId}`);
    return def;
  }

  nextCacheId(): number {
    let max = 0;
    for (const id of this.byId.keys()) max = Math.max(max, id);
    return max + 1;
  }

  async add(def: CacheDef): Promise<void> {
    const existing = this.byName.get(def.name);
    if (existing) throw ptnError(ErrorCode.ERR_CACHE_EXISTS, `cache ${JSON.stringify(def.name)} already exists`);
    if (this.byId.has(def.cacheId)) throw ptnError(ErrorCode.ERR_CACHE_EXISTS, `cache id ${def.cacheId} already in use`);
    this.put(def);
    await this.save();
  }

  async remove(cacheId: number): Promise<void> {
    const def = this.byId.get(cacheId);
    if (!def) return;
    this.byId.delete(cacheId);
    this.byName.delete(def.name);
    await this.save();
  }

  private save(): Promise<void> {
    return writeJsonFileAtomic(this.file, KIND, VERSION, { caches: this.list() }, this.fl);
  }
}
