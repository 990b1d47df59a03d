/**
 * The ack log: one line per ACKNOWLEDGED write, appended by the load generator and read by
 * `ptn verify` to prove that nothing acknowledged was lost.
 *
 * Format (text, one record per line, fields separated by one space):
 *
 * | field   | content                                                                 |
 * |---------|-------------------------------------------------------------------------|
 * | key     | the key, percent-encoded (encodeURIComponent) so it holds no whitespace |
 * | counter | the partition update counter the node acknowledged the write with       |
 * | digest  | sha1 of the value's JSON text, 40 lowercase hex digits                  |
 *
 * Only acknowledged writes are logged, so the file states facts the cluster promised. A writer
 * killed mid-line leaves a torn last line without its newline: the parser skips it and counts it
 * (`tornTail`), since the write it describes was acknowledged but never claimed. Any other bad
 * line is ERR_FILE_FORMAT with its line number: the file is not an ack log.
 */
import fs from 'node:fs';
import { createHash } from 'node:crypto';
import { ErrorCode, fsError, ptnError } from '../errors.js';

/** What the log claims about one key: the highest acknowledged counter and its value digest. */
export interface AckedWrite {
  counter: number;
  digest: string;
}

/** A parsed ack log: per key the highest acknowledged write, plus what was odd about the file. */
export interface ParsedAckLog {
  /** key → highest acknowledged write. */
  byKey: Map<string, AckedWrite>;
  /** Complete lines read. */
  lines: number;
  /** True when the last line had no newline (writer killed mid-line) and was skipped. */
  tornTail: boolean;
  /** Keys logged twice with the same counter but different digests (cannot both be true). */
  conflicts: string[];
}

/** sha1 hex of a value's JSON text, as logged and as checked. */
export function valueDigest(valueJson: string): string {
  return createHash('sha1').update(valueJson, 'utf8').digest('hex');
}

/** One log line (with its newline). */
export function formatAckLine(key: string, counter: number, digest: string): string {
  return `${encodeURIComponent(key)} ${counter} ${digest}\n`;
}

const LINE_RE = /^(\S+) (\d{1,16}) ([0-9a-f]{40})$/;

/** Parses the text of an ack log; `source` names the file in errors. */
export function parseAckLog(text: string, source = '<ack-log>'): ParsedAckLog {
  const byKey = new Map<string, AckedWrite>();
  const conflicts: string[] = [];
  const parts = text.split('\n');
  const last = parts.pop() ?? '';
  const tornTail = last.length > 0;
  let lineNo = 0;
  for (const line of parts) {
    lineNo++;
    if (line === '') continue;
    const m = LINE_RE.exec(line);
    let key: string | undefined;
    try {
      key = m ? decodeURIComponent(m[1]!) : undefined;
    } catch {
      key = undefined;
    }
    if (!m || key === undefined) {
      throw ptnError(ErrorCode.ERR_FILE_FORMAT, `${source}:${lineNo}: not an ack-log line (expected "key counter sha1hex")`, {
        details: { source, line: lineNo },
      });
    }
    const counter = Number(m[2]);
    const digest = m[3]!;
    const prev = byKey.get(key);
    if (!prev || counter > prev.counter) byKey.set(key, { counter, digest });
    else if (counter === prev.counter && digest !== prev.digest && !conflicts.includes(key)) conflicts.push(key);
  }
  return { byKey, lines: lineNo, tornTail, conflicts };
}

/** Reads and parses an ack log file. */
export function readAckLog(file: string): ParsedAckLog {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw fsError(err, `reading ack log ${file}`);
  }
  return parseAckLog(text, file);
}

/**
 * Appends lines to an ack log with backpressure: `append()` resolves once the stream can take
 * more, so a slow disk slows the writers instead of growing a queue without bound.
 */
export class AckLogWriter {
  private readonly stream: fs.WriteStream;
  private failure: Error | undefined;
  private closed = false;

  constructor(readonly file: string) {
    this.stream = fs.createWriteStream(file, { flags: 'a' });
    this.stream.on('error', (err) => {
      this.failure = err;
    });
  }

  /** Appends one acknowledged write. */
  async append(key: string, counter: number, digest: string): Promise<void> {
    if (this.failure) throw fsError(this.failure, `writing ack log ${this.file}`);
    if (!this.stream.write(formatAckLine(key, counter, digest))) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.stream.off('drain', done);
          this.stream.off('error', done);
          this.stream.off('close', done);
          resolve();
        };
        this.stream.on('drain', done).on('error', done).on('close', done);
      });
    }
  }

  /** Flushes and closes the file; idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await new Promise<void>((resolve) => {
      if (this.stream.destroyed) return resolve();
      this.stream.end(() => resolve());
      this.stream.once('error', () => resolve());
    });
    if (this.failure) throw fsError(this.failure, `writing ack log ${this.file}`);
  }
}
