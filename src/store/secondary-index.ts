/**
 * A secondary index on one JSON field of the value (DESIGN.md "Data model").
 *
 * Role: maps the value of a configured field (a dotted path, `"address.city"`) to the keys whose
 * value has it, kept per partition so that one partition's part can be suspended while the partition
 * is MOVING here (its updates go to the temporary WAL instead) and rebuilt from its pages after the
 * swap-in (demander step 5). In memory; rebuilt from the pages when the store opens.
 *
 * Data flow: the store calls onPut/onRemove after applying an update to a partition; query() reads
 * every part that is not suspended; the demander calls suspend(p), later rebuild(p, scan of p).
 *
 * Invariants:
 *   - Index keys are `JSON.stringify` of the field's scalar, so 1, "1", true and null all differ.
 *   - Only JSON values (valueKind 1) whose field, reached through plain objects only, is a string,
 *     number, boolean or null are indexed. Not JSON, missing field, an object or an array on the
 *     path's end, or an array on the way → not indexed (silently: the value is still stored).
 *   - Each part keeps key → index key, so onPut/onRemove cost O(1) plus one JSON parse.
 *   - A suspended partition has no part (its old part is stale from that moment, so it is dropped)
 *     and ignores onPut/onRemove until rebuild() installs a fresh part and lifts the suspension.
 *   - Numbers go through JSON.parse, so integers above 2^53 lose precision the same way on put and
 *     query; -0 and 0 are the same key.
 */
import { assert, ErrorCode, ptnError } from '../errors.js';

/** valueKind of a JSON value (UTF-8 text). Raw bytes (0) are never indexed. */
export const VALUE_KIND_JSON = 1;

/** Scalar types a field can be queried by. */
export type IndexScalar = string | number | boolean | null;

interface IndexPart {
  /** index key → keys of this partition whose field has that value */
  byValue: Map<string, Set<string>>;
  /** key → its index key (the reverse map that makes updates O(1)) */
  byKey: Map<string, string>;
}

/** An entry as the partition scan yields it. */
export interface IndexableEntry {
  key: string;
  tombstone?: boolean;
  valueKind: number;
  value: Buffer;
}

/** The in-memory secondary index of one cache on one field, in per-partition parts. */
export class SecondaryIndex {
  /** The dotted field path this index is on. */
  readonly field: string;
  readonly #path: string[];
  readonly #parts = new Map<number, IndexPart>();
  readonly #suspended = new Set<number>();
  /** Bumped by suspend/rebuild/drop of a partition, so that a rebuild overtaken by one of them installs nothing. */
  readonly #generation = new Map<number, number>();

  /** @param field dotted path of the JSON field; an empty path or segment → ERR_CONFIG_INVALID. */
  constructor(field: string) {
    const path = typeof field === 'string' ? field.split('.') : [];
    if (path.length === 0 || path.some((s) => s.length === 0)) {
      throw ptnError(ErrorCode.ERR_CONFIG_INVALID, `secondary index field ${JSON.stringify(field)}: expected a dotted path like "address.city"`, {
        details: { field },
      });
    }
    this.field = field;
    this.#path = path;
  }

  /** The index key for a value, or undefined when not indexable. valueKind 1 = JSON (UTF-8 text), 0 = raw bytes (never indexed). */
  extract(valueKind: number, value: Buffer): string | undefined {
    if (valueKind !== VALUE_KIND_JSON) return undefined;
    let cur: unknown;
    try {
      cur = JSON.parse(value.toString('utf8'));
    } catch {
      return undefined;
    }
    for (const segment of this.#path) {
      if (typeof cur !== 'object' || cur === null || Array.isArray(cur) || !Object.hasOwn(cur, segment)) return undefined;
      cur = (cur as Record<string, unknown>)[segment];
    }
    if (cur === null || typeof cur === 'string' || typeof cur === 'number' || typeof cur === 'boolean') {
      return JSON.stringify(cur);
    }
    return undefined;
  }

  /** Record key's new value in partition p (a value that is not indexable removes the key). Ignored while p is suspended. */
  onPut(partition: number, key: string, valueKind: number, value: Buffer): void {
    assertPartition(partition);
    if (this.#suspended.has(partition)) return;
    const indexKey = this.extract(valueKind, value);
    if (indexKey === undefined) {
      this.onRemove(partition, key);
      return;
    }
    let part = this.#parts.get(partition);
    if (!part) {
      part = newPart();
      this.#parts.set(partition, part);
    }
    setKey(part, key, indexKey);
  }

  /** Record key's removal in partition p. Ignored while p is suspended. */
  onRemove(partition: number, key: string): void {
    assertPartition(partition);
    if (this.#suspended.has(partition)) return;
    const part = this.#parts.get(partition);
    if (!part) return;
    removeKey(part, key);
    if (part.byKey.size === 0) this.#parts.delete(partition);
  }

  /** Keys whose field equals `fieldValue` (a JS scalar), over all non-suspended partitions, sorted in UTF-8 byte order. */
  query(fieldValue: IndexScalar): string[] {
    const t = typeof fieldValue;
    assert(
      fieldValue === null || t === 'string' || t === 'boolean' || (t === 'number' && Number.isFinite(fieldValue)),
      'query: fieldValue must be a string, a finite number, a boolean or null',
    );
    const indexKey = JSON.stringify(fieldValue);
    const out: string[] = [];
    for (const part of this.#parts.values()) {
      const keys = part.byValue.get(indexKey);
      if (keys) for (const k of keys) out.push(k);
    }
    return out.sort(compareUtf8Order);
  }

  /** Stops indexing p: its part is dropped (it goes stale from now on) and its updates are ignored until rebuild(p). */
  suspend(partition: number): void {
    assertPartition(partition);
    this.#bump(partition);
    this.#suspended.add(partition);
    this.#parts.delete(partition);
  }

  /** True while p is suspended. */
  isSuspended(partition: number): boolean {
    return this.#suspended.has(partition);
  }

  /**
   * Drops p's part, re-adds every entry from `entries` (tombstones skipped), un-suspends p. Returns
   * entries indexed. p stays suspended while the scan runs (live updates go to the temporary WAL and
   * are replayed afterwards), and the new part is installed in one step at the end. If the scan
   * throws, p stays suspended with no part. If suspend/dropPartition/rebuild of p happens meanwhile,
   * this rebuild stops and installs nothing (the later call wins); it then returns what it had indexed so far.
   */
  async rebuild(partition: number, entries: AsyncIterable<IndexableEntry>): Promise<number> {
    assertPartition(partition);
    const generation = this.#bump(partition);
    this.#suspended.add(partition);
    this.#parts.delete(partition);
    const part = newPart();
    for await (const e of entries) {
      if (this.#generation.get(partition) !== generation) return part.byKey.size;
      // Tombstones and non-indexable values are skipped; should a key come twice, the later entry wins.
      const indexKey = e.tombstone ? undefined : this.extract(e.valueKind, e.value);
      if (indexKey === undefined) removeKey(part, e.key);
      else setKey(part, e.key, indexKey);
    }
    if (this.#generation.get(partition) !== generation) return part.byKey.size;
    if (part.byKey.size > 0) this.#parts.set(partition, part);
    this.#suspended.delete(partition);
    return part.byKey.size;
  }

  /** Forgets p entirely (its part and its suspension); a rebuild of p in flight installs nothing. */
  dropPartition(partition: number): void {
    assertPartition(partition);
    this.#bump(partition);
    this.#parts.delete(partition);
    this.#suspended.delete(partition);
  }

  /** Partitions with indexed keys, indexed keys in total, suspended partitions (sorted). */
  stats(): { partitions: number; keys: number; suspended: number[] } {
    let keys = 0;
    for (const part of this.#parts.values()) keys += part.byKey.size;
    return { partitions: this.#parts.size, keys, suspended: [...this.#suspended].sort((a, b) => a - b) };
  }

  #bump(partition: number): number {
    const g = (this.#generation.get(partition) ?? 0) + 1;
    this.#generation.set(partition, g);
    return g;
  }
}

function newPart(): IndexPart {
  return { byValue: new Map(), byKey: new Map() };
}

function setKey(part: IndexPart, key: string, indexKey: string): void {
  const old = part.byKey.get(key);
  if (old === indexKey) return;
  if (old !== undefined) removeFromValue(part, old, key);
  part.byKey.set(key, indexKey);
  let keys = part.byValue.get(indexKey);
  if (!keys) {
    keys = new Set();
    part.byValue.set(indexKey, keys);
  }
  keys.add(key);
}

function removeKey(part: IndexPart, key: string): void {
  const old = part.byKey.get(key);
  if (old === undefined) return;
  part.byKey.delete(key);
  removeFromValue(part, old, key);
}

function removeFromValue(part: IndexPart, indexKey: string, key: string): void {
  const keys = part.byValue.get(indexKey);
  if (!keys) return;
  keys.delete(key);
  if (keys.size === 0) part.byValue.delete(indexKey);
}

function assertPartition(p: number): void {
  assert(Number.isInteger(p) && p >= 0 && p <= 0xffff, `partition out of range: ${p}`);
}

/**
 * Orders strings by code point, which is the UTF-8 byte order of the primary index. Plain `<` on JS
 * strings compares UTF-16 code units, which puts astral characters (surrogates) before U+E000–U+FFFF.
 */
export function compareUtf8Order(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    // Move surrogates (0xD800–0xDFFF) above 0xE000–0xFFFF, and those down by 0x800.
    if (x >= 0xd800) x += x <= 0xdfff ? 0x2000 : -0x800;
    if (y >= 0xd800) y += y <= 0xdfff ? 0x2000 : -0x800;
    return x - y;
  }
  return a.length - b.length;
}
