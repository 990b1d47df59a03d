/**
 * Receives one snapshot into a temporary file over a dedicated connection (demander step 3).
 *
 * Flow: keep `window` chunk requests in flight (each carries `ackedBytes` = the verified offset,
 * so the supplier keeps the pages above it as checkpoint images) → take the answers in file order →
 * decode and verify each chunk (verifyChunk) → write it at its offset → advance the verified offset
 * and the running CRC (combined from the chunk CRCs, no second pass) → every `persistEveryBytes`
 * fsync the file and persist the offset (so a restart resumes from it) → at the end, check the
 * trailer's whole-file CRC and length, fsync.
 *
 * The periodic fsync + persist runs in the background while chunks keep arriving (one at a time;
 * the offset persisted is the one verified when that fsync began, so it is durable when recorded),
 * which keeps the network busy instead of draining the window at every persist.
 *
 * Bounds: at most `window` chunks (≤ chunkBytes each) are held in memory, and, with `credits`, the
 * node-wide count of chunks in flight over every transfer stays at its limit; the next request is sent
 * only when an answer was written, so the disk paces the network (socket → file write → next
 * request). A chunk that fails verification is asked for again, at most `corruptRetries` times in
 * a row, and never written: no corrupt byte lands in the file. A broken connection rejects the
 * requests in flight; the caller resumes from `state.verifiedOffset` with a new connection.
 */
import { ErrorCode, fsError, isPtnError, ptnError } from '../errors.js';
import type { Body } from '../net/connection.js';
import type { FileLike } from '../util/file-layer.js';
import { decodeChunk } from '../supplier/chunk-format.js';
import { crc32Combine } from '../supplier/crc32-combine.js';
import type { ChunkCredits } from './chunk-credits.js';
import { Method, parseTrailer } from './protocol.js';

/** The requests a receiver sends (a Connection fits; tests pass fakes). */
export interface SupplierLink {
  request(method: string, body: Body, opts?: { timeoutMs?: number }): Promise<Body>;
  close(): Promise<void>;
  readonly isOpen: boolean;
}

/** Where a transfer stands; updated in place as chunks are verified. */
export interface ReceiveState {
  transferId: string;
  fileBytes: number;
  chunkBytes: number;
  verifiedOffset: number;
  runningCrc: number;
}

export interface ReceiveOptions {
  link: SupplierLink;
  file: FileLike;
  state: ReceiveState;
  /** Chunk requests in flight. */
  window: number;
  /** The node-wide limit on chunks in flight over all transfers (chunk-credits.ts); none when absent. */
  credits?: Pick<ChunkCredits, 'tryTake' | 'take' | 'give'>;
  /** fsync + persist the verified offset at least this often (bytes). */
  persistEveryBytes: number;
  /** Records that everything up to `at.verifiedOffset` is durable (called after the fsync that covered it). */
  persist: (at: { verifiedOffset: number; runningCrc: number }) => Promise<void>;
  corruptRetries?: number;
  signal?: AbortSignal;
  /** Before more chunks are asked for: yields to foreground work (ForegroundPacer.turn); none when absent. */
  pace?: () => Promise<void>;
  /** After each verified chunk (progress; tests cut the connection here). */
  onVerified?: (chunkBytes: number, state: ReceiveState) => void | Promise<void>;
  /** A chunk failed verification and is asked for again. */
  onCorrupt?: (err: unknown) => void;
}

const CORRUPT_RETRIES_DEFAULT = 3;
const noop = () => {};

/** Receives from `state.verifiedOffset` to the end, then checks the trailer. Resolves with the bytes verified by this call. */
export async function receiveFile(o: ReceiveOptions): Promise<number> {
  const s = o.state;
  const inflight = new Map<number, Promise<Body>>();
  let next = s.verifiedOffset;
  let received = 0;
  let sincePersist = 0;
  let corruptInARow = 0;
  let persisting: Promise<void> | undefined;
  let credits = 0; // credits held by this call: one per request in flight
  const giveCredit = () => {
    if (o.credits && credits > 0) {
      credits--;
      o.credits.give();
    }
  };
  const ask = (offset: number) => {
    const p = o.link.request(Method.snapshotChunk, { transferId: s.transferId, offset, ackedBytes: s.verifiedOffset });
    p.catch(noop); // awaited in order below; a broken link rejects them all at once
    inflight.set(offset, p);
  };
  try {
    while (s.verifiedOffset < s.fileBytes) {
      if (o.signal?.aborted) throw ptnError(ErrorCode.ERR_REBALANCE_CANCELLED, 'transfer cancelled');
      if (o.pace && inflight.size < o.window && next < s.fileBytes) await o.pace();
      while (inflight.size < o.window && next < s.fileBytes) {
        if (o.credits && !o.credits.tryTake()) {
          if (inflight.size > 0) break; // process what is in flight; ask for more next round
          await o.credits.take(o.signal);
        }
        if (o.credits) credits++;
        ask(next);
        next += s.chunkBytes;
      }
      const at = s.verifiedOffset;
      const body = await inflight.get(at)!;
      inflight.delete(at);
      let raw: Buffer;
      let rawCrc: number;
      try {
        ({ raw, crc: rawCrc } = verifyChunkWithCrc(body, at, Math.min(s.chunkBytes, s.fileBytes - at)));
      } catch (err) {
        if (!isPtnError(err, ErrorCode.ERR_TRANSFER_CORRUPT) || ++corruptInARow > (o.corruptRetries ?? CORRUPT_RETRIES_DEFAULT)) throw err;
        o.onCorrupt?.(err);
        ask(at);
        continue;
      }
      corruptInARow = 0;
      await writeAt(o.file, raw, at);
      giveCredit();
      s.runningCrc = crc32Combine(s.runningCrc, rawCrc, raw.length);
      s.verifiedOffset = at + raw.length;
      received += raw.length;
      sincePersist += raw.length;
      if (sincePersist >= o.persistEveryBytes && s.verifiedOffset < s.fileBytes && !persisting) {
        sincePersist = 0;
        const at = { verifiedOffset: s.verifiedOffset, runningCrc: s.runningCrc };
        persisting = (async () => {
          await syncFile(o.file);
          await o.persist(at);
        })().finally(() => {
          persisting = undefined;
        });
        persisting.catch(noop); // awaited before the next persist and at the end
      }
      await o.onVerified?.(raw.length, s);
    }
    if (persisting) await persisting;
    const trailer = parseTrailer(await o.link.request(Method.snapshotTrailer, { transferId: s.transferId }));
    if (trailer.fileBytes !== s.fileBytes || trailer.fileCrc !== s.runningCrc) {
      throw ptnError(ErrorCode.ERR_TRANSFER_CORRUPT, `whole-file check failed: ${s.fileBytes} bytes with CRC ${s.runningCrc}, trailer says ${trailer.fileBytes} bytes with CRC ${trailer.fileCrc}`, {
        details: { wholeFile: true, fileBytes: s.fileBytes, crc: s.runningCrc, trailer },
      });
    }
    await syncFile(o.file);
    return received;
  } finally {
    inflight.clear();
    while (credits > 0) giveCredit();
    if (persisting) await persisting.catch(noop);
  }
}

/**
 * Decodes a chunk (src/supplier/chunk-format.ts: header, LZ4, CRC of the raw bytes) and checks it
 * answers the request: its offset and exactly the raw length the request covers.
 * ERR_TRANSFER_CORRUPT otherwise.
 */
export function verifyChunk(body: Body, offset: number, rawBytes: number): Buffer {
  return verifyChunkWithCrc(body, offset, rawBytes).raw;
}

/** verifyChunk, also returning the (checked) CRC of the raw bytes. */
export function verifyChunkWithCrc(body: Body, offset: number, rawBytes: number): { raw: Buffer; crc: number } {
  if (!Buffer.isBuffer(body)) throw ptnError(ErrorCode.ERR_TRANSFER_CORRUPT, `chunk at ${offset}: not a binary body`, { details: { offset } });
  const { header, raw } = decodeChunk(body);
  if (header.offset !== offset || header.rawBytes !== rawBytes) {
    throw ptnError(ErrorCode.ERR_TRANSFER_CORRUPT, `chunk for offset ${offset} (${rawBytes} bytes) holds offset ${header.offset} (${header.rawBytes} bytes)`, {
      details: { offset, rawBytes, got: { offset: header.offset, rawBytes: header.rawBytes } },
    });
  }
  return { raw, crc: header.crc };
}

async function writeAt(file: FileLike, raw: Buffer, offset: number): Promise<void> {
  try {
    await file.write(raw, 0, raw.length, offset);
  } catch (err) {
    throw fsError(err, `writing ${file.path}`);
  }
}

async function syncFile(file: FileLike): Promise<void> {
  try {
    await file.sync();
  } catch (err) {
    throw fsError(err, `fsync ${file.path}`);
  }
}
