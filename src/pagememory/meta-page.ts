/**
 * Page 0 of every partition file: what the file is, whom it belongs to, and where its state lives.
 *
 * Opening a partition reads and validates this one page and nothing else (O(1) in the entry
 * count): the B+tree root, the counts, the counter state and the free-list head are all here.
 * It is rewritten (through the checkpoint journal) by every checkpoint that touches the file.
 *
 * | offset | size | field                                                                |
 * |--------|------|----------------------------------------------------------------------|
 * | 0      | 16   | common page header (page.ts), type META, page index 0                |
 * | 16     | 4    | magic "PTNP" (bytes 50 54 4E 50)                                     |
 * | 20     | 2    | file format version (1), u16 LE                                      |
 * | 22     | 2    | reserved, 0                                                          |
 * | 24     | 4    | page size in bytes, u32                                              |
 * | 28     | 4    | cache id, u32                                                        |
 * | 32     | 2    | partition id, u16                                                    |
 * | 34     | 1    | cluster id length in bytes (1..64)                                   |
 * | 35     | 1    | reserved, 0                                                          |
 * | 36     | 64   | cluster id, UTF-8, zero padded                                       |
 * | 100    | 4    | reserved, 0                                                          |
 * | 104    | 8    | id of the checkpoint that wrote this state, u64                      |
 * | 112    | 8    | live entry count (tombstones excluded), u64                          |
 * | 120    | 8    | tombstone count, u64                                                 |
 * | 128    | 4    | page count (file length in pages), u32                               |
 * | 132    | 4    | B+tree root page (0 = empty tree), u32                               |
 * | 136    | 2    | B+tree height (0 = empty, 1 = the root is a leaf), u16               |
 * | 138    | 2    | counter state length n, u16                                          |
 * | 140    | 4    | free-list head page (0 = no free pages), u32                         |
 * | 144    | 4    | free page count, u32                                                 |
 * | 148    | 4    | reserved, 0                                                          |
 * | 152    | n    | update counter state (`UpdateCounter.encode`, bounded by gapsMax)    |
 *
 * All integers little-endian. u64 fields must hold safe integers.
 *
 * Checks on decode, in this order (so a foreign file gets the most telling code):
 * magic → ERR_FILE_FORMAT; version → ERR_FILE_VERSION; page size → ERR_FILE_FORMAT;
 * page CRC/header → ERR_PAGE_CORRUPT; field consistency and counter state → ERR_FILE_FORMAT;
 * then `checkIdentity`: cluster → ERR_FILE_WRONG_CLUSTER, cache/partition → ERR_FILE_WRONG_PARTITION.
 */
import { assert, ErrorCode, isPtnError, ptnError } from '../errors.js';
import { checkPage, initPage, isValidPageSize, PageType } from './page.js';
import { UpdateCounter } from './update-counter.js';

/** Magic at offset 16 of page 0. */
export const META_MAGIC = Buffer.from('PTNP', 'latin1');
/** File format version written by this build. */
export const PARTITION_FORMAT_VERSION = 1;
/** Bytes of the meta page before the counter state. */
export const META_FIXED_BYTES = 152;
/** Longest cluster id, in UTF-8 bytes. */
export const CLUSTER_ID_BYTES_MAX = 64;
/** Deepest B+tree accepted on decode (a sanity bound: 32 levels of fanout ≥ 4 is astronomically large). */
export const TREE_HEIGHT_MAX = 32;

const OFF_MAGIC = 16;
const OFF_VERSION = 20;
const OFF_PAGE_SIZE = 24;
const OFF_CACHE = 28;
const OFF_PARTITION = 32;
const OFF_CLUSTER_LEN = 34;
const OFF_CLUSTER = 36;
const OFF_CHECKPOINT = 104;
const OFF_ENTRIES = 112;
const OFF_TOMBSTONES = 120;
const OFF_PAGE_COUNT = 128;
const OFF_ROOT = 132;
const OFF_HEIGHT = 136;
const OFF_COUNTER_LEN = 138;
const OFF_FREE_HEAD = 140;
const OFF_FREE_COUNT = 144;

/** Which partition of which cache of which cluster a file belongs to. */
export interface PartitionIdentity {
  clusterId: string;
  cacheId: number;
  partition: number;
}

/** Everything page 0 holds, decoded. */
export interface MetaState {
  pageSize: number;
  identity: PartitionIdentity;
  checkpointId: number;
  entryCount: number;
  tombstoneCount: number;
  pageCount: number;
  rootPage: number;
  treeHeight: number;
  freeListHead: number;
  freePageCount: number;
  /** `UpdateCounter.encode()` bytes. */
  counterState: Buffer;
}

function formatError(msg: string, details?: Record<string, unknown>, cause?: unknown): never {
  throw ptnError(ErrorCode.ERR_FILE_FORMAT, msg, { details, cause });
}

function writeU64(buf: Buffer, off: number, v: number): void {
  assert(Number.isSafeInteger(v) && v >= 0, `meta u64 field must be a safe integer, got ${v}`);
  buf.writeUInt32LE(v % 0x1_0000_0000, off);
  buf.writeUInt32LE(Math.floor(v / 0x1_0000_0000), off + 4);
}

function readU64(buf: Buffer, off: number, what: string): number {
  const high = buf.readUInt32LE(off + 4);
  if (high > 0x1f_ffff) formatError(`meta page: ${what} is above 2^53`);
  return high * 0x1_0000_0000 + buf.readUInt32LE(off);
}

/** Largest counter state a page of `pageSize` can hold. */
export function counterStateBytesMax(pageSize: number): number {
  return pageSize - META_FIXED_BYTES;
}

/** Validates an identity (programmer error when out of range). */
export function assertIdentity(id: PartitionIdentity): void {
  const n = Buffer.byteLength(id.clusterId, 'utf8');
  assert(n >= 1 && n <= CLUSTER_ID_BYTES_MAX, `cluster id must be 1..${CLUSTER_ID_BYTES_MAX} bytes, got ${n}`);
  assert(Number.isInteger(id.cacheId) && id.cacheId >= 0 && id.cacheId <= 0xffff_ffff, `cache id out of range: ${id.cacheId}`);
  assert(Number.isInteger(id.partition) && id.partition >= 0 && id.partition <= 0xffff, `partition out of range: ${id.partition}`);
}

/** Encodes `m` into a new, unsealed meta page of `m.pageSize` bytes. */
export function encodeMetaPage(m: MetaState): Buffer {
  assertIdentity(m.identity);
  assert(isValidPageSize(m.pageSize), `bad page size ${m.pageSize}`);
  assert(m.counterState.length <= counterStateBytesMax(m.pageSize), 'counter state does not fit the meta page');
  const buf = Buffer.allocUnsafe(m.pageSize);
  initPage(buf, PageType.META, 0);
  META_MAGIC.copy(buf, OFF_MAGIC);
  buf.writeUInt16LE(PARTITION_FORMAT_VERSION, OFF_VERSION);
  buf.writeUInt32LE(m.pageSize, OFF_PAGE_SIZE);
  buf.writeUInt32LE(m.identity.cacheId, OFF_CACHE);
  buf.writeUInt16LE(m.identity.partition, OFF_PARTITION);
  const clusterLen = buf.write(m.identity.clusterId, OFF_CLUSTER, CLUSTER_ID_BYTES_MAX, 'utf8');
  buf[OFF_CLUSTER_LEN] = clusterLen;
  writeU64(buf, OFF_CHECKPOINT, m.checkpointId);
  writeU64(buf, OFF_ENTRIES, m.entryCount);
  writeU64(buf, OFF_TOMBSTONES, m.tombstoneCount);
  buf.writeUInt32LE(m.pageCount, OFF_PAGE_COUNT);
  buf.writeUInt32LE(m.rootPage, OFF_ROOT);
  buf.writeUInt16LE(m.treeHeight, OFF_HEIGHT);
  buf.writeUInt16LE(m.counterState.length, OFF_COUNTER_LEN);
  buf.writeUInt32LE(m.freeListHead, OFF_FREE_HEAD);
  buf.writeUInt32LE(m.freePageCount, OFF_FREE_COUNT);
  m.counterState.copy(buf, META_FIXED_BYTES);
  return buf;
}

/**
 * Reads magic, version and page size from the first bytes of a file (at least META_FIXED_BYTES).
 * Throws ERR_FILE_FORMAT / ERR_FILE_VERSION. Used to learn how big page 0 is before checking it.
 */
export function peekMetaHeader(head: Buffer, path = '<file>'): { version: number; pageSize: number } {
  if (head.length < META_FIXED_BYTES) formatError(`${path}: ${head.length} bytes is too short for a partition file`);
  if (!head.subarray(OFF_MAGIC, OFF_MAGIC + 4).equals(META_MAGIC)) formatError(`${path}: not a partition file (bad magic)`);
  const version = head.readUInt16LE(OFF_VERSION);
  if (version !== PARTITION_FORMAT_VERSION) {
    throw ptnError(ErrorCode.ERR_FILE_VERSION, `${path}: partition file format version ${version} is not supported (this build: ${PARTITION_FORMAT_VERSION})`, {
      details: { path, version },
    });
  }
  const pageSize = head.readUInt32LE(OFF_PAGE_SIZE);
  if (!isValidPageSize(pageSize)) formatError(`${path}: bad page size ${pageSize}`, { path, pageSize });
  return { version, pageSize };
}

/** Decodes and validates a whole meta page (see the check order in the file comment). */
export function decodeMetaPage(buf: Buffer, gapsMax: number, path = '<file>'): MetaState {
  const { pageSize } = peekMetaHeader(buf, path);
  if (buf.length !== pageSize) formatError(`${path}: meta page is ${buf.length} bytes, page size ${pageSize}`);
  checkPage(buf, 0, PageType.META, path);
  const clusterLen = buf[OFF_CLUSTER_LEN]!;
  if (clusterLen < 1 || clusterLen > CLUSTER_ID_BYTES_MAX) formatError(`${path}: bad cluster id length ${clusterLen}`);
  const m: MetaState = {
    pageSize,
    identity: {
      clusterId: buf.toString('utf8', OFF_CLUSTER, OFF_CLUSTER + clusterLen),
      cacheId: buf.readUInt32LE(OFF_CACHE),
      partition: buf.readUInt16LE(OFF_PARTITION),
    },
    checkpointId: readU64(buf, OFF_CHECKPOINT, 'checkpoint id'),
    entryCount: readU64(buf, OFF_ENTRIES, 'entry count'),
    tombstoneCount: readU64(buf, OFF_TOMBSTONES, 'tombstone count'),
    pageCount: buf.readUInt32LE(OFF_PAGE_COUNT),
    rootPage: buf.readUInt32LE(OFF_ROOT),
    treeHeight: buf.readUInt16LE(OFF_HEIGHT),
    freeListHead: buf.readUInt32LE(OFF_FREE_HEAD),
    freePageCount: buf.readUInt32LE(OFF_FREE_COUNT),
    counterState: Buffer.from(buf.subarray(META_FIXED_BYTES, META_FIXED_BYTES + buf.readUInt16LE(OFF_COUNTER_LEN))),
  };
  checkMetaFields(m, buf.readUInt16LE(OFF_COUNTER_LEN), path);
  try {
    UpdateCounter.decode(m.counterState, gapsMax);
  } catch (err) {
    if (isPtnError(err, ErrorCode.ERR_META_CORRUPT)) formatError(`${path}: meta page counter state: ${err.message}`, { path }, err);
    throw err;
  }
  return m;
}

function checkMetaFields(m: MetaState, counterLen: number, path: string): void {
  const bad = (what: string) => formatError(`${path}: meta page: ${what}`, { path });
  if (m.pageCount < 1) bad(`page count ${m.pageCount}`);
  if (m.rootPage >= m.pageCount) bad(`root page ${m.rootPage} beyond page count ${m.pageCount}`);
  if ((m.rootPage === 0) !== (m.treeHeight === 0)) bad(`root ${m.rootPage} with height ${m.treeHeight}`);
  if (m.treeHeight > TREE_HEIGHT_MAX) bad(`tree height ${m.treeHeight}`);
  if (m.freeListHead >= m.pageCount) bad(`free-list head ${m.freeListHead} beyond page count`);
  if (m.freePageCount >= m.pageCount) bad(`free page count ${m.freePageCount} not below page count ${m.pageCount}`);
  if ((m.freeListHead === 0) !== (m.freePageCount === 0)) bad(`free-list head ${m.freeListHead} with ${m.freePageCount} free pages`);
  if (counterLen > counterStateBytesMax(m.pageSize)) bad(`counter state length ${counterLen}`);
}

/** Refuses a file that belongs to another cluster, cache or partition. */
export function checkIdentity(m: MetaState, want: PartitionIdentity, path = '<file>'): void {
  const have = m.identity;
  if (have.clusterId !== want.clusterId) {
    throw ptnError(ErrorCode.ERR_FILE_WRONG_CLUSTER, `${path} belongs to cluster ${have.clusterId}, not ${want.clusterId}`, {
      details: { path, have, want },
    });
  }
  if (have.cacheId !== want.cacheId || have.partition !== want.partition) {
    throw ptnError(
      ErrorCode.ERR_FILE_WRONG_PARTITION,
      `${path} holds cache ${have.cacheId} partition ${have.partition}, not cache ${want.cacheId} partition ${want.partition}`,
      { details: { path, have, want } },
    );
  }
}
