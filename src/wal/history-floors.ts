/**
 * The history floors file `<walDir>/history.floors`: what the node WAL must remember about
 * history it no longer has, so that ERR_WAL_HISTORY_GONE survives a restart.
 *
 * Retention deletes old segments; after that, a scan of the remaining segments cannot tell
 * whether a partition had records in them. So before any segment is unlinked, the WAL writes
 * this file (tmp + fsync + rename + fsync dir) with, per partition, its floor (history with
 * fromExclusive below the floor is incomplete) and whether it is "pending" (destroyed / dropped
 * with no record since: no history at all), plus the caches that were dropped.
 * All integers little-endian.
 *
 * | offset   | size | field                                                              |
 * |----------|------|--------------------------------------------------------------------|
 * | 0        | 4    | magic "PTNH" (0x50 0x54 0x4E 0x48)                                 |
 * | 4        | 2    | format version, u16 (1)                                            |
 * | 6        | 2    | reserved, zero                                                     |
 * | 8        | 4    | entry count n, u32                                                 |
 * | 12       | 16·n | entries: cacheId u32, partition u16, flags u16, floor u64          |
 * | 12 + 16n | 4    | CRC-32 of bytes 0 .. 12 + 16n                                      |
 *
 * Entry flags: bit 0 = pending; bit 1 = the entry is a dropped cache (partition and floor zero).
 * The file size must be exactly 16 + 16n and at most FLOORS_FILE_BYTES_MAX.
 */
import path from 'node:path';
import { ErrorCode, fsError, ptnError } from '../errors.js';
import { crc32 } from '../util/crc32.js';
import type { FileLayer } from '../util/file-layer.js';

/** Floor state of one partition. */
export interface PartitionFloor {
  cacheId: number;
  partition: number;
  floor: number;
  pending: boolean;
}

/** Contents of the floors file. */
export interface HistoryFloors {
  partitions: PartitionFloor[];
  droppedCaches: number[];
}

/** Name of the floors file inside the WAL directory. */
export const FLOORS_FILE_NAME = 'history.floors';
const FLOORS_MAGIC = 0x484e5450; // "PTNH"
const FLOORS_VERSION = 1;
const ENTRY_BYTES = 16;
/** Largest floors file accepted (about four million partitions); bounds the read buffer. */
export const FLOORS_FILE_BYTES_MAX = 64 << 20;
const FLAG_PENDING = 1;
const FLAG_CACHE = 2;
const U32 = 0x1_0000_0000;

/** Encodes the floors file. */
export function encodeFloors(f: HistoryFloors): Buffer {
  const n = f.partitions.length + f.droppedCaches.length;
  const buf = Buffer.alloc(16 + ENTRY_BYTES * n);
  buf.writeUInt32LE(FLOORS_MAGIC, 0);
  buf.writeUInt16LE(FLOORS_VERSION, 4);
  buf.writeUInt32LE(n, 8);
  let off = 12;
  for (const p of f.partitions) {
    buf.writeUInt32LE(p.cacheId, off);
    buf.writeUInt16LE(p.partition, off + 4);
    buf.writeUInt16LE(p.pending ? FLAG_PENDING : 0, off + 6);
    buf.writeUInt32LE(p.floor % U32, off + 8);
    buf.writeUInt32LE(Math.floor(p.floor / U32), off + 12);
    off += ENTRY_BYTES;
  }
  for (const c of f.droppedCaches) {
    buf.writeUInt32LE(c, off);
    buf.writeUInt16LE(FLAG_CACHE, off + 6);
    off += ENTRY_BYTES;
  }
  buf.writeUInt32LE(crc32(buf.subarray(0, off)), off);
  return buf;
}

/** Decodes and checks the floors file. Bad size/magic/CRC → ERR_WAL_CORRUPT, unknown version → ERR_WAL_VERSION. */
export function decodeFloors(buf: Buffer, file: string): HistoryFloors {
  const corrupt = (why: string) => ptnError(ErrorCode.ERR_WAL_CORRUPT, `${file}: ${why}`, { details: { file } });
  if (buf.length < 16 || buf.readUInt32LE(0) !== FLOORS_MAGIC) throw corrupt('not a history floors file');
  const version = buf.readUInt16LE(4);
  if (version !== FLOORS_VERSION) {
    throw ptnError(ErrorCode.ERR_WAL_VERSION, `${file}: history floors version ${version} is unknown`, { details: { file, version } });
  }
  const n = buf.readUInt32LE(8);
  if (buf.length !== 16 + ENTRY_BYTES * n) throw corrupt('size does not match its entry count');
  const end = 12 + ENTRY_BYTES * n;
  if (buf.readUInt32LE(end) !== crc32(buf.subarray(0, end))) throw corrupt('fails its CRC');
  const out: HistoryFloors = { partitions: [], droppedCaches: [] };
  for (let off = 12; off < end; off += ENTRY_BYTES) {
    const flags = buf.readUInt16LE(off + 6);
    const hi = buf.readUInt32LE(off + 12);
    if ((flags & ~(FLAG_PENDING | FLAG_CACHE)) !== 0 || hi > 0x1f_ffff) throw corrupt('has a bad entry');
    const cacheId = buf.readUInt32LE(off);
    if (flags & FLAG_CACHE) out.droppedCaches.push(cacheId);
    else {
      const floor = hi * U32 + buf.readUInt32LE(off + 8);
      out.partitions.push({ cacheId, partition: buf.readUInt16LE(off + 4), floor, pending: (flags & FLAG_PENDING) !== 0 });
    }
  }
  return out;
}

/** Reads `<dir>/history.floors`; undefined when there is none. */
export async function readFloorsFile(fl: FileLayer, dir: string): Promise<HistoryFloors | undefined> {
  const file = path.join(dir, FLOORS_FILE_NAME);
  try {
    if (!(await fl.exists(file))) return undefined;
    const f = await fl.open(file, 'r');
    try {
      const size = await f.size();
      if (size > FLOORS_FILE_BYTES_MAX) {
        throw ptnError(ErrorCode.ERR_WAL_CORRUPT, `${file}: ${size} bytes is more than a floors file can hold`, { details: { file } });
      }
      const buf = Buffer.alloc(size);
      if ((await f.read(buf, 0, size, 0)) !== size) throw ptnError(ErrorCode.ERR_WAL_CORRUPT, `${file}: short read`);
      return decodeFloors(buf, file);
    } finally {
      await f.close();
    }
  } catch (err) {
    throw fsError(err, `reading ${file}`);
  }
}

/** Replaces `<dir>/history.floors` atomically and durably (tmp, fsync, rename, fsync dir). */
export async function writeFloorsFile(fl: FileLayer, dir: string, floors: HistoryFloors): Promise<void> {
  const file = path.join(dir, FLOORS_FILE_NAME);
  const tmp = `${file}.tmp`;
  const buf = encodeFloors(floors);
  try {
    const f = await fl.open(tmp, 'w');
    try {
      await f.write(buf, 0, buf.length, 0);
      await f.sync();
    } finally {
      await f.close();
    }
    await fl.rename(tmp, file);
    await fl.syncDir(dir);
  } catch (err) {
    throw fsError(err, `writing ${file}`);
  }
}
