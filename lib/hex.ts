/**
 * Hex encoding, and random hex tokens drawn in batches.
 *
 * @module
 */

/** Bytes as lowercase hex, two digits each. */
export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += (b < 16 ? "0" : "") + b.toString(16);
  return s;
}

/** Random words, filled in batches: one getRandomValues call per 256 tokens. */
const pool = new Uint32Array(1024);
let pos = pool.length;

/** 32 random hex digits (128 bits from the platform's CSPRNG). */
export function randomHex128(): string {
  if (pos === pool.length) {
    crypto.getRandomValues(pool);
    pos = 0;
  }
  const i = pos;
  pos += 4;
  return pool[i].toString(16).padStart(8, "0") +
    pool[i + 1].toString(16).padStart(8, "0") +
    pool[i + 2].toString(16).padStart(8, "0") +
    pool[i + 3].toString(16).padStart(8, "0");
}
