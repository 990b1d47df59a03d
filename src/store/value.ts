/**
 * Values are bytes or JSON. `valueKind` is stored with every entry and every WAL record:
 *   0 = raw bytes, 1 = JSON (UTF-8 text of the JSON document).
 */
export const ValueKind = { BYTES: 0, JSON: 1 } as const;
export type ValueKind = (typeof ValueKind)[keyof typeof ValueKind];

/** A value as the storage layer sees it. */
export interface EncodedValue {
  valueKind: number;
  value: Buffer;
}

/** Buffers are stored as bytes; anything else as JSON. */
export function encodeValue(v: unknown): EncodedValue {
  if (Buffer.isBuffer(v)) return { valueKind: ValueKind.BYTES, value: v };
  if (v instanceof Uint8Array) return { valueKind: ValueKind.BYTES, value: Buffer.from(v.buffer, v.byteOffset, v.byteLength) };
  return { valueKind: ValueKind.JSON, value: Buffer.from(JSON.stringify(v) ?? 'null', 'utf8') };
}

/** Inverse of encodeValue. */
export function decodeValue(e: EncodedValue): unknown {
  return e.valueKind === ValueKind.JSON ? JSON.parse(e.value.toString('utf8')) : e.value;
}
