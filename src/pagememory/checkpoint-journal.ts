/**
 * The checkpoint journal: before a checkpoint overwrites pages that the last committed state of a
 * partition file references, it writes their new images here and fsyncs; after the overwrite is
 * durable, it deletes the journal. A crash in between leaves a complete journal, which recovery
 * redoes (writes every image in place again), so every file ends up wholly in the new state.
 * A crash before the journal was complete (and fsynced) leaves an incomplete one, and the files
 * still hold the old state in every page the old state references: recovery deletes it.
 *
 * One journal file per checkpoint, `checkpoint-<id>.journal` in the journal directory. Paths
 * inside are relative to a base directory (the journal directory's parent, i.e. the data dir), so
 * a data dir that moves as a whole keeps working. All integers little-endian.
 *
 * Header (48 bytes):
 *
 * | offset | size | field                                                    |
 * |--------|------|----------------------------------------------------------|
 * | 0      | 4    | magic "PTCJ"                                             |
 * | 4      | 2    | format version (1)                                       |
 * | 6      | 2    | reserved, 0                                              |
 * | 8      | 8    | checkpoint id, u64                                       |
 * | 16     | 4    | file count f                                             |
 * | 20     | 4    | page record count r                                      |
 * | 24     | 4    | file table bytes t                                       |
 * | 28     | 4    | reserved, 0                                              |
 * | 32     | 8    | total journal bytes (header to trailer inclusive), u64   |
 * | 40     | 4    | CRC-32 of bytes [0, 40)                                  |
 * | 44     | 4    | reserved, 0                                              |
 *
 * File table (t bytes), per file: u32 page size, u32 records of this file, u16 path length p,
 * p bytes of path (UTF-8, relative, '/' separators).
 * Records, grouped by file in table order: u32 file index, u32 page index, the sealed page image.
 *
 * Trailer (16 bytes): magic "PTCE", u32 record count, u32 CRC-32 of every byte before the trailer,
 * u32 CRC-32 of the trailer's first 12 bytes.
 *
 * Recovery table (`recoverCheckpointJournals`, run by PageMemory.open() before anything else):
 *
 * | case                                                   | action                                          |
 * |--------------------------------------------------------|-------------------------------------------------|
 * | no journal                                             | nothing                                         |
 * | complete journal (length, trailer, both CRCs good)     | redo every page in place, fsync, delete, fsync dir |
 * | truncated journal (shorter than its header or total)   | delete (crash before step 3 finished: files hold the old state) |
 * | journal with a bad CRC (header, body or trailer)       | delete (same: torn before it was durable)       |
 * | complete journal naming a file that no longer exists   | skip that file, redo the others, delete         |
 * | complete journal of an unknown version, or whose page images fail their check | ERR_CHECKPOINT_JOURNAL_CORRUPT, journal kept for inspection |
 *
 * No write listener can exist during redo (no partition is open yet), so the redo writes directly.
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import path from 'node:path';
import { assert, ErrorCode, fsError, ptnError } from '../errors.js';
import { crc32 } from '../util/crc32.js';
import type { FileLayer, FileLike } from '../util/file-layer.js';
import { isValidPageSize, pageProblem } from './page.js';
import type { PageImage } from './partition-file.js';

/** Bytes CRC'd between two yields to the event loop (about 1 ms). */
const CRC_SLICE_BYTES = 2 << 20;

export const JOURNAL_MAGIC = Buffer.from('PTCJ', 'latin1');
export const JOURNAL_TRAILER_MAGIC = Buffer.from('PTCE', 'latin1');
export const JOURNAL_VERSION = 1;
export const JOURNAL_HEADER_BYTES = 48;
export const JOURNAL_TRAILER_BYTES = 16;
export const JOURNAL_RECORD_HEADER_BYTES = 8;
/** Buffers per writev call while writing a journal. */
const WRITEV_BUFFERS_MAX = 512;
/** Read size while checking and redoing a journal. */
const READ_CHUNK_BYTES = 1 << 20;

/** One partition file's overwrite pages in a journal. */
export interface JournalFile {
  /** Absolute path of the partition file. */
  path: string;
  pageSize: number;
  pages: readonly PageImage[];
}

/** Name of the journal of checkpoint `id`. */
export function journalFileName(id: number): string {
  return `checkpoint-${String(id).padStart(12, '0')}.journal`;
}

const JOURNAL_NAME = /^checkpoint-\d{12}\.journal$/;

function u64(buf: Buffer, off: number, v: number): void {
  buf.writeUInt32LE(v % 0x1_0000_0000, off);
  buf.writeUInt32LE(Math.floor(v / 0x1_0000_0000), off + 4);
}

function readU64(buf: Buffer, off: number): number {
  return buf.readUInt32LE(off + 4) * 0x1_0000_0000 + buf.readUInt32LE(off);
}

function relPathOf(baseDir: string, abs: string): string {
  return path.relative(baseDir, abs).split(path.sep).join('/');
}

/**
 * Writes, fsyncs and closes the journal of checkpoint `checkpointId`, then fsyncs `dir`.
 * Returns its path and size.
 */
export async function writeCheckpointJournal(
  fl: FileLayer,
  dir: string,
  baseDir: string,
  checkpointId: number,
  files: readonly JournalFile[],
): Promise<{ path: string; bytes: number; pages: number }> {
  const table: Buffer[] = [];
  let records = 0;
  let recordBytes = 0;
  for (const f of files) {
    const p = Buffer.from(relPathOf(baseDir, f.path), 'utf8');
    const e = Buffer.alloc(10 + p.length);
    e.writeUInt32LE(f.pageSize, 0);
    e.writeUInt32LE(f.pages.length, 4);
    e.writeUInt16LE(p.length, 8);
    p.copy(e, 10);
    table.push(e);
    records += f.pages.length;
    recordBytes += f.pages.length * (JOURNAL_RECORD_HEADER_BYTES + f.pageSize);
  }
  const tableBytes = table.reduce((n, b) => n + b.length, 0);
  const total = JOURNAL_HEADER_BYTES + tableBytes + recordBytes + JOURNAL_TRAILER_BYTES;
  const header = Buffer.alloc(JOURNAL_HEADER_BYTES);
  JOURNAL_MAGIC.copy(header, 0);
  header.writeUInt16LE(JOURNAL_VERSION, 4);
  u64(header, 8, checkpointId);
  header.writeUInt32LE(files.length, 16);
  header.writeUInt32LE(records, 20);
  header.writeUInt32LE(tableBytes, 24);
  u64(header, 32, total);
  header.writeUInt32LE(crc32(header.subarray(0, 40)), 40);
  const parts: Buffer[] = [header, ...table];
  const recHeads = Buffer.alloc(records * JOURNAL_RECORD_HEADER_BYTES);
  let r = 0;
  files.forEach((f, fi) => {
    for (const p of f.pages) {
      assert(p.image.length === f.pageSize, 'journal image size');
      const h = recHeads.subarray(r * 8, r * 8 + 8);
      h.writeUInt32LE(fi, 0);
      h.writeUInt32LE(p.index, 4);
      parts.push(h, p.image);
      r++;
    }
  });
  let crc = 0;
  let sinceYield = 0;
  for (const b of parts) {
    crc = crc32(b, crc);
    sinceYield += b.length;
    if (sinceYield >= CRC_SLICE_BYTES) {
      sinceYield = 0;
      await yieldToLoop(); // `parts` are the checkpoint's own buffers: nothing changes them meanwhile
    }
  }
  const trailer = Buffer.alloc(JOURNAL_TRAILER_BYTES);
  JOURNAL_TRAILER_MAGIC.copy(trailer, 0);
  trailer.writeUInt32LE(records, 4);
  trailer.writeUInt32LE(crc, 8);
  trailer.writeUInt32LE(crc32(trailer.subarray(0, 12)), 12);
  parts.push(trailer);
  const file = path.join(dir, journalFileName(checkpointId));
  let fh: FileLike | undefined;
  try {
    fh = await fl.open(file, 'w+');
    let pos = 0;
    for (let i = 0; i < parts.length; i += WRITEV_BUFFERS_MAX) {
      const chunk = parts.slice(i, i + WRITEV_BUFFERS_MAX);
      await fh.writev(chunk, pos);
      for (const b of chunk) pos += b.length;
    }
    assert(pos === total, 'journal length');
    await fh.sync();
    await fh.close();
    fh = undefined;
    await fl.syncDir(dir);
  } catch (err) {
    await fh?.close().catch(() => {});
    throw fsError(err, `write checkpoint journal ${file}`);
  }
  return { path: file, bytes: total, pages: records };
}

/** Outcome of recovering one journal. */
export interface JournalRecovery {
  name: string;
  outcome: 'redone' | 'truncated' | 'bad-crc';
  pagesRedone: number;
  skippedFiles: string[];
}

interface JournalLayout {
  files: Array<{ relPath: string; pageSize: number; records: number; firstRecordAt: number }>;
  records: number;
}

function corrupt(file: string, why: string): never {
  throw ptnError(ErrorCode.ERR_CHECKPOINT_JOURNAL_CORRUPT, `checkpoint journal ${file}: ${why}`, { details: { path: file, reason: why } });
}

async function readExactly(fh: FileLike, length: number, position: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  const got = await fh.read(buf, 0, length, position);
  return got === length ? buf : buf.subarray(0, got);
}

/** Checks a journal: its layout when complete, or why it is not. */
async function inspectJournal(fh: FileLike, file: string): Promise<JournalLayout | 'truncated' | 'bad-crc'> {
  const size = await fh.size();
  if (size < JOURNAL_HEADER_BYTES) return 'truncated';
  const h = await readExactly(fh, JOURNAL_HEADER_BYTES, 0);
  if (!h.subarray(0, 4).equals(JOURNAL_MAGIC) || h.readUInt32LE(40) !== crc32(h.subarray(0, 40))) return 'bad-crc';
  const version = h.readUInt16LE(4);
  if (version !== JOURNAL_VERSION) corrupt(file, `unknown version ${version}`);
  const total = readU64(h, 32);
  if (size < total) return 'truncated';
  const fileCount = h.readUInt32LE(16);
  const records = h.readUInt32LE(20);
  const tableBytes = h.readUInt32LE(24);
  if (total < JOURNAL_HEADER_BYTES + tableBytes + JOURNAL_TRAILER_BYTES) return 'bad-crc';
  let crc = 0;
  for (let pos = 0; pos < total - JOURNAL_TRAILER_BYTES; ) {
    const n = Math.min(READ_CHUNK_BYTES, total - JOURNAL_TRAILER_BYTES - pos);
    crc = crc32(await readExactly(fh, n, pos), crc);
    pos += n;
  }
  const t = await readExactly(fh, JOURNAL_TRAILER_BYTES, total - JOURNAL_TRAILER_BYTES);
  const trailerOk =
    t.subarray(0, 4).equals(JOURNAL_TRAILER_MAGIC) && t.readUInt32LE(12) === crc32(t.subarray(0, 12)) && t.readUInt32LE(4) === records && t.readUInt32LE(8) === crc;
  if (!trailerOk) return 'bad-crc';
  // Complete and intact: from here on, anything inconsistent is a real corruption (or a bug).
  const table = await readExactly(fh, tableBytes, JOURNAL_HEADER_BYTES);
  const files: JournalLayout['files'] = [];
  let off = 0;
  let at = JOURNAL_HEADER_BYTES + tableBytes;
  let counted = 0;
  for (let i = 0; i < fileCount; i++) {
    if (off + 10 > table.length) corrupt(file, 'file table too short');
    const pageSize = table.readUInt32LE(off);
    const n = table.readUInt32LE(off + 4);
    const len = table.readUInt16LE(off + 8);
    if (!isValidPageSize(pageSize)) corrupt(file, `bad page size ${pageSize}`);
    const relPath = table.toString('utf8', off + 10, off + 10 + len);
    off += 10 + len;
    files.push({ relPath, pageSize, records: n, firstRecordAt: at });
    at += n * (JOURNAL_RECORD_HEADER_BYTES + pageSize);
    counted += n;
  }
  if (off !== table.length || counted !== records || at !== total - JOURNAL_TRAILER_BYTES) corrupt(file, 'file table does not match the records');
  return { files, records };
}

/** Calls `fn` for every record of file `fi`, in order, after checking it. */
async function forEachRecord(
  fh: FileLike,
  journal: string,
  f: JournalLayout['files'][number],
  fi: number,
  fn: (pageIndex: number, image: Buffer) => Promise<void>,
): Promise<void> {
  const recBytes = JOURNAL_RECORD_HEADER_BYTES + f.pageSize;
  const perChunk = Math.max(1, Math.floor(READ_CHUNK_BYTES / recBytes));
  for (let i = 0; i < f.records; i += perChunk) {
    const n = Math.min(perChunk, f.records - i);
    const chunk = await readExactly(fh, n * recBytes, f.firstRecordAt + i * recBytes);
    for (let j = 0; j < n; j++) {
      const rec = chunk.subarray(j * recBytes, (j + 1) * recBytes);
      const pageIndex = rec.readUInt32LE(4);
      const image = rec.subarray(JOURNAL_RECORD_HEADER_BYTES);
      if (rec.readUInt32LE(0) !== fi) corrupt(journal, `record ${i + j} of file ${fi} names file ${rec.readUInt32LE(0)}`);
      const problem = pageProblem(image, pageIndex);
      if (problem !== undefined) corrupt(journal, `image of page ${pageIndex} of ${f.relPath}: ${problem}`);
      await fn(pageIndex, image);
    }
  }
}

async function redoJournal(fl: FileLayer, fh: FileLike, journal: string, layout: JournalLayout, baseDir: string): Promise<Omit<JournalRecovery, 'name' | 'outcome'>> {
  // Validate every record before writing any, so a bad journal changes nothing.
  for (const [fi, f] of layout.files.entries()) await forEachRecord(fh, journal, f, fi, async () => {});
  let pagesRedone = 0;
  const skippedFiles: string[] = [];
  for (const [fi, f] of layout.files.entries()) {
    const target = path.resolve(baseDir, f.relPath);
    if (!(await fl.exists(target))) {
      skippedFiles.push(target);
      continue;
    }
    const out = await fl.open(target, 'r+');
    try {
      await forEachRecord(fh, journal, f, fi, async (pageIndex, image) => {
        await out.write(image, 0, image.length, pageIndex * f.pageSize);
        pagesRedone++;
      });
      await out.sync();
    } finally {
      await out.close();
    }
  }
  return { pagesRedone, skippedFiles };
}

/**
 * Recovers every journal in `dir` (see the recovery table). `baseDir` resolves the paths inside.
 * Creates `dir` when missing.
 */
export async function recoverCheckpointJournals(
  fl: FileLayer,
  dir: string,
  baseDir: string,
  log?: (msg: string, extra?: object) => void,
): Promise<JournalRecovery[]> {
  const out: JournalRecovery[] = [];
  try {
    await fl.mkdir(dir);
    const names = (await fl.readdir(dir)).filter((n) => JOURNAL_NAME.test(n)).sort();
    for (const name of names) {
      const file = path.join(dir, name);
      const fh = await fl.open(file, 'r');
      let rec: JournalRecovery;
      try {
        const layout = await inspectJournal(fh, file);
        if (typeof layout === 'string') rec = { name, outcome: layout, pagesRedone: 0, skippedFiles: [] };
        else rec = { name, outcome: 'redone', ...(await redoJournal(fl, fh, file, layout, baseDir)) };
      } finally {
        await fh.close();
      }
      await fl.unlink(file);
      await fl.syncDir(dir);
      log?.(`checkpoint journal ${name}: ${rec.outcome}`, rec);
      out.push(rec);
    }
  } catch (err) {
    throw fsError(err, `recover checkpoint journals in ${dir}`);
  }
  return out;
}
