/**
 * Where the demander keeps what a restart needs: `<dataDir>/tmp/rebalance/`.
 *
 * | name                                         | what                                               |
 * |----------------------------------------------|----------------------------------------------------|
 * | `task-<cacheId>-<partition>.json`            | the task record (json-file.ts: kind, version, CRC) |
 * | `part-<cacheId>-<partition>-<transferId>.ptn`| the partition file being received                  |
 * | `twal-<cacheId>-<partition>/`                | the partition's temporary (catch-up) WAL           |
 *
 * Records are written atomically (temp file, fsync, rename, directory fsync), so a crash leaves the
 * old or the new record. Anything else in the directory (a `.tmp` of an interrupted record write, a
 * temp file or temp WAL no record names) is a leftover the manager removes at start-up.
 */
import path from 'node:path';
import { fsError, isPtnError } from '../errors.js';
import type { FileLayer } from '../util/file-layer.js';
import { readJsonFile, writeJsonFileAtomic } from '../util/json-file.js';
import { isTaskRecord, type TaskRecord } from './task-state.js';

const KIND = 'ptn-rebalance-task';
const VERSION = 1;

const RECORD_RE = /^task-(\d+)-(\d+)\.json$/;
const TEMP_FILE_RE = /^part-(\d+)-(\d+)-[A-Za-z0-9_.-]+\.ptn$/;
const TEMP_WAL_RE = /^twal-(\d+)-(\d+)$/;

/** What a scan of the directory found. */
export interface TaskDirScan {
  records: TaskRecord[];
  /** Names of record files that could not be read (bad CRC, unknown version, wrong shape). */
  unreadable: string[];
  /** Names of temporary partition files. */
  tempFiles: string[];
  /** Temporary WAL directories by partition key `cacheId:partition`. */
  tempWals: Map<string, string>;
  /** Anything else (interrupted writes …). */
  other: string[];
}

/** `cacheId:partition`, the key of a task everywhere in the demander. */
export function taskKey(cacheId: number, partition: number): string {
  return `${cacheId}:${partition}`;
}

/** Persisted task records and the names of their files. */
export class TaskStore {
  constructor(
    readonly dir: string,
    private readonly fl: FileLayer,
  ) {}

  async open(): Promise<void> {
    try {
      await this.fl.mkdir(this.dir);
    } catch (err) {
      throw fsError(err, `creating ${this.dir}`);
    }
  }

  recordPath(cacheId: number, partition: number): string {
    return path.join(this.dir, `task-${cacheId}-${partition}.json`);
  }

  tempWalDir(cacheId: number, partition: number): string {
    return path.join(this.dir, `twal-${cacheId}-${partition}`);
  }

  /** Base name of a new temporary file for a transfer. */
  tempFileName(cacheId: number, partition: number, transferId: string): string {
    return `part-${cacheId}-${partition}-${transferId}.ptn`;
  }

  tempFilePath(name: string): string {
    return path.join(this.dir, name);
  }

  /** Writes the record atomically. */
  save(r: TaskRecord): Promise<void> {
    return writeJsonFileAtomic(this.recordPath(r.cacheId, r.partition), KIND, VERSION, r, this.fl);
  }

  /** Reads one record; undefined when absent or unreadable. */
  async load(cacheId: number, partition: number): Promise<TaskRecord | undefined> {
    try {
      const doc = await readJsonFile<unknown>(this.recordPath(cacheId, partition), KIND, [VERSION], this.fl);
      return doc && isTaskRecord(doc.body) ? doc.body : undefined;
    } catch (err) {
      if (isPtnError(err)) return undefined;
      throw err;
    }
  }

  /** Removes a record (absent is fine). */
  async remove(cacheId: number, partition: number): Promise<void> {
    await this.rm(this.recordPath(cacheId, partition));
  }

  /** Removes a file or directory by path (absent is fine). */
  async rm(p: string): Promise<void> {
    try {
      await this.fl.rm(p);
    } catch (err) {
      throw fsError(err, `removing ${p}`);
    }
  }

  /** Lists the directory and reads every record. */
  async scan(): Promise<TaskDirScan> {
    const out: TaskDirScan = { records: [], unreadable: [], tempFiles: [], tempWals: new Map(), other: [] };
    let names: string[];
    try {
      names = (await this.fl.exists(this.dir)) ? (await this.fl.readdir(this.dir)).sort() : [];
    } catch (err) {
      throw fsError(err, `listing ${this.dir}`);
    }
    for (const name of names) {
      let m: RegExpExecArray | null;
      if ((m = RECORD_RE.exec(name))) {
        const r = await this.load(Number(m[1]), Number(m[2]));
        if (r && r.cacheId === Number(m[1]) && r.partition === Number(m[2])) out.records.push(r);
        else out.unreadable.push(name);
      } else if (TEMP_FILE_RE.test(name)) {
        out.tempFiles.push(name);
      } else if ((m = TEMP_WAL_RE.exec(name))) {
        out.tempWals.set(taskKey(Number(m[1]), Number(m[2])), name);
      } else {
        out.other.push(name);
      }
    }
    return out;
  }
}
