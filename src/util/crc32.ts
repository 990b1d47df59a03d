/**
 * CRC-32 (IEEE) for everything persisted or framed.
 *
 * The hot path uses `zlib.crc32` (built into Node ≥ 20.15, ~5 GB/s on the development machine);
 * `crc-32` (pure JS, ~0.8 GB/s) is the reference the tests compare against and the fallback
 * when zlib lacks it. Both give the same values.
 */
import zlib from 'node:zlib';
import CRC32 from 'crc-32';

type Crc32Fn = (data: Uint8Array, seed?: number) => number;

const zlibCrc32 = (zlib as unknown as { crc32?: Crc32Fn }).crc32;

/** Reference implementation (pure JS), unsigned result. */
export function crc32Reference(data: Uint8Array, seed = 0): number {
  return CRC32.buf(data, seed) >>> 0;
}

/** True when the fast native CRC path is in use. */
export const crc32IsNative = typeof zlibCrc32 === 'function';

/** CRC-32 of `data`, continuing from `seed` (a previous result) when given. Unsigned. */
export const crc32: (data: Uint8Array, seed?: number) => number = crc32IsNative
  ? (data, seed = 0) => zlibCrc32!(data, seed) >>> 0
  : crc32Reference;
