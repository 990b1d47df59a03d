/**
 * CRC-32 (IEEE, as zlib computes it) of a concatenation from the CRCs of its parts:
 * crc32(A ‖ B) = crc32Combine(crc32(A), crc32(B), |B|), without reading A or B again.
 *
 * Why: the supplier needs both the CRC of each chunk (its header) and the running CRC of the whole
 * image (the trailer); combining saves a second pass over every byte. Method: appending |B| zero
 * bytes to A is a linear map on the 32-bit CRC register over GF(2) (zlib's crc32_combine); its
 * 32×32 matrix for a given length is built once by repeated squaring and cached, so combining is
 * then 32 XORs at most.
 */

/** Lengths whose operator is cached (a transfer uses its chunk size and one last-chunk size). */
const OPERATORS_CACHED_MAX = 16;
const operators = new Map<number, Uint32Array>();

function times(mat: Uint32Array, vec: number): number {
  let sum = 0;
  for (let i = 0; vec !== 0; i++, vec >>>= 1) if (vec & 1) sum ^= mat[i]!;
  return sum >>> 0;
}

function square(out: Uint32Array, mat: Uint32Array): void {
  for (let n = 0; n < 32; n++) out[n] = times(mat, mat[n]!);
}

/** The register after feeding `bytes` zero bytes, applied to `crc` (zlib's crc32_combine core). */
function shiftByZeros(crc: number, bytes: number): number {
  const even = new Uint32Array(32);
  const odd = new Uint32Array(32);
  odd[0] = 0xedb88320; // the CRC-32 polynomial, reflected: the operator for one zero bit
  for (let n = 1, row = 1; n < 32; n++, row <<= 1) odd[n] = row;
  square(even, odd); // two zero bits
  square(odd, even); // four zero bits
  let len = bytes;
  do {
    square(even, odd); // first pass: one zero byte
    if (len % 2 === 1) crc = times(even, crc);
    len = Math.floor(len / 2);
    if (len === 0) break;
    square(odd, even);
    if (len % 2 === 1) crc = times(odd, crc);
    len = Math.floor(len / 2);
  } while (len !== 0);
  return crc >>> 0;
}

function operatorFor(bytes: number): Uint32Array {
  let op = operators.get(bytes);
  if (op === undefined) {
    op = new Uint32Array(32);
    for (let i = 0; i < 32; i++) op[i] = shiftByZeros((1 << i) >>> 0, bytes);
    if (operators.size >= OPERATORS_CACHED_MAX) operators.delete(operators.keys().next().value!);
    operators.set(bytes, op);
  }
  return op;
}

/** CRC-32 of A ‖ B given crc32(A), crc32(B) and the length of B in bytes. */
export function crc32Combine(crcA: number, crcB: number, bytesB: number): number {
  if (bytesB <= 0) return crcA >>> 0;
  return (times(operatorFor(bytesB), crcA >>> 0) ^ crcB) >>> 0;
}
