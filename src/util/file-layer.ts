/**
 * The file layer: every byte the storage engine reads or writes goes through this interface,
 * so that tests can put a fault layer underneath (fail the Nth write, ENOSPC, torn writes)
 * without touching the engine. `realFileLayer` is the production implementation over node:fs.
 *
 * Invariant: implementations never swallow errors; callers map them with `fsError()`.
 */
import fsp from 'node:fs/promises';
import fs from 'node:fs';

/** An open file. Positions and lengths are in bytes. */
export interface FileLike {
  readonly path: string;
  /** Reads up to `length` bytes at `position` into `buffer[offset..]`; returns bytes read (0 at EOF). */
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number>;
  /** The same read on the calling thread (a synchronous pread), where the file offers it: for reads the OS page cache serves (pagememory/page-reads.ts). */
  readSync?(buffer: Uint8Array, offset: number, length: number, position: number): number;
  /** Writes `length` bytes of `buffer[offset..]` at `position`; resolves when all were written. */
  write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<void>;
  /** Writes several buffers at `position`, back to back (one syscall where possible). */
  writev(buffers: Uint8Array[], position: number): Promise<void>;
  /** fsync: data and metadata durable. */
  sync(): Promise<void>;
  /** fdatasync: data durable. */
  datasync(): Promise<void>;
  truncate(length: number): Promise<void>;
  size(): Promise<number>;
  close(): Promise<void>;
}

/** Directory and path operations plus `open`. */
export interface FileLayer {
  /** Flags as in fs.open: 'r', 'r+', 'w+', 'a+', 'wx+' … */
  open(path: string, flags: string): Promise<FileLike>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  rm(path: string): Promise<void>; // recursive, force
  mkdir(path: string): Promise<void>; // recursive
  readdir(path: string): Promise<string[]>;
  exists(path: string): Promise<boolean>;
  fileSize(path: string): Promise<number>;
  /** fsync a directory so that creates/renames/unlinks in it are durable. */
  syncDir(path: string): Promise<void>;
  /** Free bytes available to this process on the file system holding `path`. */
  freeBytes(path: string): Promise<number>;
}

class RealFile implements FileLike {
  constructor(readonly path: string, private readonly fh: fsp.FileHandle) {}

  async read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(buffer, offset + done, length - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done;
  }

  readSync(buffer: Uint8Array, offset: number, length: number, position: number): number {
    let done = 0;
    while (done < length) {
      const n = fs.readSync(this.fh.fd, buffer, offset + done, length - done, position + done);
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  async write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<void> {
    let done = 0;
    while (done < length) {
      const { bytesWritten } = await this.fh.write(buffer, offset + done, length - done, position + done);
      done += bytesWritten;
    }
  }

  async writev(buffers: Uint8Array[], position: number): Promise<void> {
    let total = 0;
    for (const b of buffers) total += b.byteLength;
    const { bytesWritten } = await this.fh.writev(buffers as NodeJS.ArrayBufferView[], position);
    if (bytesWritten === total) return;
    // Short write: finish the rest with plain writes.
    let skip = bytesWritten;
    let pos = position + bytesWritten;
    for (const b of buffers) {
      if (skip >= b.byteLength) {
        skip -= b.byteLength;
        continue;
      }
      await this.write(b, skip, b.byteLength - skip, pos);
      pos += b.byteLength - skip;
      skip = 0;
    }
  }

  sync(): Promise<void> {
    return this.fh.sync();
  }

  datasync(): Promise<void> {
    return this.fh.datasync();
  }

  truncate(length: number): Promise<void> {
    return this.fh.truncate(length);
  }

  async size(): Promise<number> {
    return (await this.fh.stat()).size;
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}

/** The production file layer over node:fs. */
export const realFileLayer: FileLayer = {
  async open(path, flags) {
    return new RealFile(path, await fsp.open(path, flags));
  },
  rename: (from, to) => fsp.rename(from, to),
  unlink: (path) => fsp.unlink(path),
  rm: (path) => fsp.rm(path, { recursive: true, force: true }),
  mkdir: async (path) => {
    await fsp.mkdir(path, { recursive: true });
  },
  readdir: (path) => fsp.readdir(path),
  exists: async (path) => {
    try {
      await fsp.access(path, fs.constants.F_OK);
      return true;
    } catch {
      return false;
    }
  },
  fileSize: async (path) => (await fsp.stat(path)).size,
  syncDir: async (path) => {
    const fh = await fsp.open(path, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
  freeBytes: async (path) => {
    const s = await fsp.statfs(path);
    return s.bavail * s.bsize;
  },
};
