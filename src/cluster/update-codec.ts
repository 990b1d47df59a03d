/**
 * Binary encoding of updates as they travel between nodes (replication, entry-by-entry
 * rebalance batches, temp-WAL records, WAL history). The frame around it carries the CRC.
 *
 * Layout of one update (big-endian):
 *
 * | offset | size | field                                   |
 * |--------|------|-----------------------------------------|
 * | 0      | 1    | version (1)                             |
 * | 1      | 1    | op: 1 put, 2 remove                     |
 * | 2      | 4    | cacheId (u32)                           |
 * | 6      | 2    | partition (u16)                         |
 * | 8      | 8    | counter (u64, a safe JS integer)        |
 * | 16     | 1    | valueKind (u8)                          |
 * | 17     | 2    | key length K (u16)                      |
 * | 19     | 4    | value length V (u32; 0 for remove)      |
 * | 23     | K    | key (UTF-8)                             |
 * | 23+K   | V    | value                                   |
 *
 * A batch is `count (u32)` followed by that many updates back to back.
 */
import { ErrorCode, ptnError } from '../errors.js';
import type { Update } from '../store/store.js';

export const UPDATE_HEADER_BYTES = 23;
const VERSION = 1;

function bad(msg: string): never {
  throw ptnError(ErrorCode.ERR_PROTOCOL_BAD_FRAME, `update codec: ${msg}`);
}

/** Encoded size of one update. */
export function updateSize(u: Update): number {
  return UPDATE_HEADER_BYTES + Buffer.byteLength(u.key, 'utf8') + (u.op === 'put' ? (u.value?.length ?? 0) : 0);
}

/** Encodes one update into `buf` at `offset`; returns the offset after it. */
export function encodeUpdateInto(u: Update, buf: Buffer, offset: number): number {
  const keyLen = buf.write(u.key, offset + UPDATE_HEADER_BYTES, 'utf8');
  const value = u.op === 'put' ? (u.value ?? Buffer.alloc(0)) : Buffer.alloc(0);
  buf.writeUInt8(VERSION, offset);
  buf.writeUInt8(u.op === 'put' ? 1 : 2, offset + 1);
  buf.writeUInt32BE(u.cacheId, offset + 2);
  buf.writeUInt16BE(u.partition, offset + 6);
  buf.writeBigUInt64BE(BigInt(u.counter), offset + 8);
  buf.writeUInt8(u.valueKind ?? 0, offset + 16);
  buf.writeUInt16BE(keyLen, offset + 17);
  buf.writeUInt32BE(value.length, offset + 19);
  value.copy(buf, offset + UPDATE_HEADER_BYTES + keyLen);
  return offset + UPDATE_HEADER_BYTES + keyLen + value.length;
}

/** Encodes one update into a new buffer. */
export function encodeUpdate(u: Update): Buffer {
  const buf = Buffer.allocUnsafe(updateSize(u));
  encodeUpdateInto(u, buf, 0);
  return buf;
}

/** Decodes one update at `offset`; returns it and the offset after it. Values are copies. */
export function decodeUpdateAt(buf: Buffer, offset: number): { update: Update; next: number } {
  if (buf.length - offset < UPDATE_HEADER_BYTES) bad('truncated header');
  if (buf.readUInt8(offset) !== VERSION) bad(`unknown version ${buf.readUInt8(offset)}`);
  const opByte = buf.readUInt8(offset + 1);
  if (opByte !== 1 && opByte !== 2) bad(`unknown op ${opByte}`);
  const counter = Number(buf.readBigUInt64BE(offset + 8));
  if (!Number.isSafeInteger(counter) || counter < 1) bad('counter out of range');
  const keyLen = buf.readUInt16BE(offset + 17);
  const valueLen = buf.readUInt32BE(offset + 19);
  const end = offset + UPDATE_HEADER_BYTES + keyLen + valueLen;
  if (end > buf.length) bad('truncated body');
  if (opByte === 2 && valueLen !== 0) bad('remove with a value');
  const keyStart = offset + UPDATE_HEADER_BYTES;
  const update: Update = {
    op: opByte === 1 ? 'put' : 'remove',
    cacheId: buf.readUInt32BE(offset + 2),
    partition: buf.readUInt16BE(offset + 6),
    counter,
    valueKind: buf.readUInt8(offset + 16),
    key: buf.toString('utf8', keyStart, keyStart + keyLen),
  };
  if (update.op === 'put') update.value = Buffer.from(buf.subarray(keyStart + keyLen, end));
  return { update, next: end };
}

/** Decodes a buffer holding exactly one update. */
export function decodeUpdate(buf: Buffer): Update {
  const { update, next } = decodeUpdateAt(buf, 0);
  if (next !== buf.length) bad('trailing bytes');
  return update;
}

/** Encodes a batch: count then updates. */
export function encodeUpdateBatch(updates: readonly Update[]): Buffer {
  let size = 4;
  for (const u of updates) size += updateSize(u);
  const buf = Buffer.allocUnsafe(size);
  buf.writeUInt32BE(updates.length, 0);
  let off = 4;
  for (const u of updates) off = encodeUpdateInto(u, buf, off);
  return buf;
}

/** Decodes a batch; `countMax` bounds what a peer may claim. */
export function decodeUpdateBatch(buf: Buffer, countMax = 1_000_000): Update[] {
  if (buf.length < 4) bad('truncated batch');
  const count = buf.readUInt32BE(0);
  if (count > countMax) bad(`batch of ${count} updates exceeds ${countMax}`);
  const out: Update[] = [];
  let off = 4;
  for (let i = 0; i < count; i++) {
    const { update, next } = decodeUpdateAt(buf, off);
    out.push(update);
    off = next;
  }
  if (off !== buf.length) bad('trailing bytes after batch');
  return out;
}
