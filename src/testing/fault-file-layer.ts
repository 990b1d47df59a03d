/**
 * TEST ONLY — a FileLayer that injects file-system faults under another one (default the real
 * layer): fail the Nth write, return ENOSPC, tear a write, make the disk "full" after N bytes.
 *
 * Role: the node builds one when `testFaults.enabled` and passes it to the store (every WAL,
 * checkpoint and partition file goes through it); tests replace its rules at run time with
 * `setRules` (or `POST /faults` on the admin port), e.g. to make space "return".
 *
 * A rule matches an operation when `op` matches and the path contains `pathIncludes` ('' matches
 * every path). Operations: `write` (FileLike.write and writev), `sync` (sync, datasync and
 * syncDir), `open`, `rename` (either path). Rules are read at operation time, so files opened
 * before `setRules` see the new rules.
 *
 * | rule                          | effect on matching operations                                                  | default error |
 * |-------------------------------|--------------------------------------------------------------------------------|---------------|
 * | no `nth`                      | every one fails, nothing written                                               | EIO           |
 * | `nth: N`                      | only the Nth fails (1-based, counted from the last `setRules`)                  | EIO           |
 * | `tear` (write)                | the failing write writes its first half (or its first `bytesMax` bytes), then fails | EIO     |
 * | `bytesMax` without `tear` (write) | writes pass until `bytesMax` bytes were written in total; the write that crosses writes what fits, then it and every later one fail | ENOSPC |
 *
 * Errors are real `Error`s shaped like node's (`code`, `errno`, `syscall`, `path`), so the code
 * under test maps them with `fsError()` exactly as it would map the real thing. When several rules
 * are due, the first in rule order decides. `freeBytes(path)` also reports what a byte budget has
 * left, for every budget rule whose `pathIncludes` is part of `path` (so `pathIncludes: ''` is a
 * whole disk of `bytesMax` bytes).
 */
import os from 'node:os';
import type { FileFaultRule } from '../config.js';
import { ErrorCode, ptnError } from '../errors.js';
import { type FileLayer, type FileLike, realFileLayer } from '../util/file-layer.js';

export type { FileFaultRule };
export type FileFaultOp = FileFaultRule['op'];
export type FileFaultCode = NonNullable<FileFaultRule['error']>;

/** Injected faults remembered in `FaultFileLayer.injected` (the oldest are dropped). */
export const FILE_FAULT_LOG_MAX = 256;

const OPS: readonly FileFaultOp[] = ['write', 'sync', 'open', 'rename'];
const DESCRIPTIONS: Record<FileFaultCode, string> = { ENOSPC: 'no space left on device', EIO: 'i/o error' };

/** A node-style file-system error (`code`, negative `errno`, `syscall`, `path`). */
export function fileFaultError(code: FileFaultCode, syscall: string, filePath: string): NodeJS.ErrnoException {
  const err = new Error(`${code}: ${DESCRIPTIONS[code]}, ${syscall} '${filePath}'`) as NodeJS.ErrnoException;
  err.code = code;
  err.errno = -(os.constants.errno[code] ?? 5);
  err.syscall = syscall;
  err.path = filePath;
  return err;
}

/** One injected fault, for assertions and the admin view. */
export interface InjectedFileFault {
  op: FileFaultOp;
  path: string;
  code: FileFaultCode;
  /** Bytes the failing write still wrote (torn or partial); 0 for other operations. */
  bytesWritten: number;
}

interface RuleState {
  rule: FileFaultRule;
  /** Matching operations seen since setRules. */
  seen: number;
  /** Bytes matching writes wrote (budget rules). */
  bytesWritten: number;
}

/** What happens to one operation: nothing, or fail after writing `allowBytes`. */
interface Decision {
  code: FileFaultCode;
  allowBytes: number;
}

/**
 * Checks one rule; a bad one is ERR_CONFIG_INVALID (rules come from configs and POST /faults).
 * The schema (config/node.schema.json) checks types; this checks what it cannot.
 */
export function checkFileFaultRule(r: FileFaultRule, where = 'fileRules'): FileFaultRule {
  const bad = (msg: string) => ptnError(ErrorCode.ERR_CONFIG_INVALID, `${where}: ${msg}`, { details: { rule: r } });
  if (typeof r?.pathIncludes !== 'string') throw bad('pathIncludes must be a string');
  if (!OPS.includes(r.op)) throw bad(`op must be one of ${OPS.join(', ')}`);
  if (r.error !== undefined && !(r.error in DESCRIPTIONS)) throw bad('error must be ENOSPC or EIO');
  if (r.nth !== undefined && !(Number.isInteger(r.nth) && r.nth >= 1)) throw bad('nth must be an integer >= 1');
  if (r.bytesMax !== undefined && !(Number.isInteger(r.bytesMax) && r.bytesMax >= 0)) throw bad('bytesMax must be an integer >= 0');
  if ((r.tear || r.bytesMax !== undefined) && r.op !== 'write') throw bad('tear and bytesMax apply to op "write" only');
  if (r.bytesMax !== undefined && !r.tear && r.nth !== undefined) throw bad('a byte budget (bytesMax without tear) takes no nth');
  return { ...r };
}

/** The fault-injecting file layer; see the file comment. */
export class FaultFileLayer implements FileLayer {
  private states: RuleState[] = [];
  private readonly log: InjectedFileFault[] = [];
  /** Faults injected since construction (not reset by setRules). */
  injectedCount = 0;

  constructor(readonly inner: FileLayer = realFileLayer, rules: readonly FileFaultRule[] = []) {
    this.setRules(rules);
  }

  /** Replaces every rule; counters (nth, byte budgets) start again from zero. */
  setRules(rules: readonly FileFaultRule[]): void {
    this.states = rules.map((r, i) => ({ rule: checkFileFaultRule(r, `fileRules[${i}]`), seen: 0, bytesWritten: 0 }));
  }

  /** The rules with their counters. */
  rules(): Array<FileFaultRule & { seen: number; bytesWritten: number }> {
    return this.states.map((s) => ({ ...s.rule, seen: s.seen, bytesWritten: s.bytesWritten }));
  }

  /** The last injected faults, oldest first (at most FILE_FAULT_LOG_MAX). */
  injected(): InjectedFileFault[] {
    return [...this.log];
  }

  private record(f: InjectedFileFault): void {
    this.injectedCount++;
    this.log.push(f);
    if (this.log.length > FILE_FAULT_LOG_MAX) this.log.shift();
  }

  /** Decides a non-write operation on `paths`; throws when a rule fails it. */
  check(op: Exclude<FileFaultOp, 'write'>, syscall: string, ...paths: string[]): void {
    let decided: FileFaultCode | undefined;
    for (const s of this.states) {
      if (s.rule.op !== op || !paths.some((p) => p.includes(s.rule.pathIncludes))) continue;
      s.seen++;
      if (decided === undefined && (s.rule.nth === undefined || s.seen === s.rule.nth)) decided = s.rule.error ?? 'EIO';
    }
    if (decided === undefined) return;
    this.record({ op, path: paths[0]!, code: decided, bytesWritten: 0 });
    throw fileFaultError(decided, syscall, paths[0]!);
  }

  /** Decides a write of `length` bytes to `filePath`: undefined to let it through. */
  decideWrite(filePath: string, length: number): Decision | undefined {
    let decision: Decision | undefined;
    const matching: RuleState[] = [];
    for (const s of this.states) {
      if (s.rule.op !== 'write' || !filePath.includes(s.rule.pathIncludes)) continue;
      matching.push(s);
      if (s.rule.bytesMax !== undefined && !s.rule.tear) {
        const left = Math.max(0, s.rule.bytesMax - s.bytesWritten);
        if (length > left && !decision) decision = { code: s.rule.error ?? 'ENOSPC', allowBytes: left };
        continue;
      }
      s.seen++;
      if (decision || (s.rule.nth !== undefined && s.seen !== s.rule.nth)) continue;
      const allowBytes = s.rule.tear ? Math.min(length, s.rule.bytesMax ?? Math.floor(length / 2)) : 0;
      decision = { code: s.rule.error ?? 'EIO', allowBytes };
    }
    const written = decision ? decision.allowBytes : length;
    for (const s of matching) s.bytesWritten += written;
    if (decision) this.record({ op: 'write', path: filePath, code: decision.code, bytesWritten: decision.allowBytes });
    return decision;
  }

  async open(filePath: string, flags: string): Promise<FileLike> {
    this.check('open', 'open', filePath);
    return new FaultFile(this, await this.inner.open(filePath, flags));
  }

  async rename(from: string, to: string): Promise<void> {
    this.check('rename', 'rename', from, to);
    return this.inner.rename(from, to);
  }

  unlink(filePath: string): Promise<void> {
    return this.inner.unlink(filePath);
  }

  rm(filePath: string): Promise<void> {
    return this.inner.rm(filePath);
  }

  mkdir(filePath: string): Promise<void> {
    return this.inner.mkdir(filePath);
  }

  readdir(filePath: string): Promise<string[]> {
    return this.inner.readdir(filePath);
  }

  exists(filePath: string): Promise<boolean> {
    return this.inner.exists(filePath);
  }

  fileSize(filePath: string): Promise<number> {
    return this.inner.fileSize(filePath);
  }

  async syncDir(filePath: string): Promise<void> {
    this.check('sync', 'fsync', filePath);
    return this.inner.syncDir(filePath);
  }

  /** The real free space, capped by what any byte budget covering `filePath` has left. */
  async freeBytes(filePath: string): Promise<number> {
    let free = await this.inner.freeBytes(filePath);
    for (const s of this.states) {
      if (s.rule.op !== 'write' || s.rule.tear || s.rule.bytesMax === undefined || !filePath.includes(s.rule.pathIncludes)) continue;
      free = Math.min(free, Math.max(0, s.rule.bytesMax - s.bytesWritten));
    }
    return free;
  }
}

/** An open file under the fault layer: writes and syncs are checked against the current rules. */
class FaultFile implements FileLike {
  /** Reads pass through, synchronous ones too when the file has them (no read faults). */
  readonly readSync?: (buffer: Uint8Array, offset: number, length: number, position: number) => number;

  constructor(private readonly layer: FaultFileLayer, private readonly file: FileLike) {
    if (file.readSync) this.readSync = (b, o, l, p) => file.readSync!(b, o, l, p);
  }

  get path(): string {
    return this.file.path;
  }

  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    return this.file.read(buffer, offset, length, position);
  }

  async write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<void> {
    const d = this.layer.decideWrite(this.file.path, length);
    if (!d) return this.file.write(buffer, offset, length, position);
    if (d.allowBytes > 0) await this.file.write(buffer, offset, d.allowBytes, position);
    throw fileFaultError(d.code, 'write', this.file.path);
  }

  async writev(buffers: Uint8Array[], position: number): Promise<void> {
    let total = 0;
    for (const b of buffers) total += b.byteLength;
    const d = this.layer.decideWrite(this.file.path, total);
    if (!d) return this.file.writev(buffers, position);
    if (d.allowBytes > 0) await this.file.writev(prefixOf(buffers, d.allowBytes), position);
    throw fileFaultError(d.code, 'writev', this.file.path);
  }

  async sync(): Promise<void> {
    this.layer.check('sync', 'fsync', this.file.path);
    return this.file.sync();
  }

  async datasync(): Promise<void> {
    this.layer.check('sync', 'fdatasync', this.file.path);
    return this.file.datasync();
  }

  truncate(length: number): Promise<void> {
    return this.file.truncate(length);
  }

  size(): Promise<number> {
    return this.file.size();
  }

  close(): Promise<void> {
    return this.file.close();
  }
}

/** The first `bytes` bytes of `buffers`, as views (no copy). */
function prefixOf(buffers: readonly Uint8Array[], bytes: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let left = bytes;
  for (const b of buffers) {
    if (left <= 0) break;
    const n = Math.min(left, b.byteLength);
    out.push(b.subarray(0, n));
    left -= n;
  }
  return out;
}
