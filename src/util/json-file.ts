/**
 * Small persisted JSON documents (cache registry, node state, rebalance task state).
 *
 * Layout on disk (text): {"kind":K,"version":V,"crc":C,"body":B} where C is the CRC-32 of the
 * exact JSON text of B. Written atomically: temp file, fsync, rename, fsync of the directory,
 * so a crash leaves either the old or the new document, never a mix.
 * A wrong kind, unknown version or bad CRC is ERR_META_CORRUPT.
 */
import path from 'node:path';
import { ErrorCode, fsError, ptnError } from '../errors.js';
import { crc32 } from './crc32.js';
import { type FileLayer, realFileLayer } from './file-layer.js';

/** Writes `body` atomically as a versioned, CRC'd JSON document. */
export async function writeJsonFileAtomic(file: string, kind: string, version: number, body: unknown, fl: FileLayer = realFileLayer): Promise<void> {
  const bodyText = JSON.stringify(body);
  const text = `{"kind":${JSON.stringify(kind)},"version":${version},"crc":${crc32(Buffer.from(bodyText))},"body":${bodyText}}\n`;
  const tmp = `${file}.tmp`;
  try {
    await fl.mkdir(path.dirname(file));
    const fh = await fl.open(tmp, 'w');
    try {
      const buf = Buffer.from(text);
      await fh.write(buf, 0, buf.length, 0);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fl.rename(tmp, file);
    await fl.syncDir(path.dirname(file));
  } catch (err) {
    throw fsError(err, `writing ${file}`);
  }
}

/** Reads a document written by writeJsonFileAtomic; undefined when the file does not exist. */
export async function readJsonFile<T>(file: string, kind: string, versions: readonly number[], fl: FileLayer = realFileLayer): Promise<{ version: number; body: T } | undefined> {
  if (!(await fl.exists(file))) return undefined;
  let text: string;
  try {
    const fh = await fl.open(file, 'r');
    try {
      const size = await fh.size();
      const buf = Buffer.alloc(size);
      await fh.read(buf, 0, size, 0);
      text = buf.toString('utf8');
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw fsError(err, `reading ${file}`);
  }
  const m = /^\{"kind":("(?:[^"\\]|\\.)*"),"version":(\d+),"crc":(\d+),"body":([\s\S]*)\}\n?$/.exec(text);
  if (!m) throw ptnError(ErrorCode.ERR_META_CORRUPT, `${file}: not a ${kind} document`);
  if (JSON.parse(m[1]!) !== kind) throw ptnError(ErrorCode.ERR_META_CORRUPT, `${file}: kind is ${m[1]}, expected ${kind}`);
  const version = Number(m[2]);
  if (!versions.includes(version)) throw ptnError(ErrorCode.ERR_META_CORRUPT, `${file}: unknown version ${version}`);
  const bodyText = m[4]!;
  if (crc32(Buffer.from(bodyText)) !== Number(m[3])) throw ptnError(ErrorCode.ERR_META_CORRUPT, `${file}: CRC mismatch`);
  return { version, body: JSON.parse(bodyText) as T };
}
