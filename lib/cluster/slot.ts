/**
 * Redis Cluster key slots: CRC16 (XMODEM, as the cluster spec defines it) of
 * the key, or of its `{hash tag}` when the key has a non-empty one, modulo
 * 16384.
 *
 * @module
 */

import type { Arg } from "../resp/encoder.ts";

/** Number of hash slots in a Redis Cluster. */
export const SLOT_COUNT = 16384;

const TABLE = /* @__PURE__ */ (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1;
    }
    table[i] = crc & 0xffff;
  }
  return table;
})();

const encoder = new TextEncoder();

/**
 * CRC16-XMODEM (polynomial 0x1021, initial value 0) of `bytes[start, end)`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { crc16 } from "./slot.ts";
 * assert.equal(crc16(new TextEncoder().encode("123456789")), 0x31c3);
 * ```
 *
 * @param bytes The bytes.
 * @param start First byte (default 0).
 * @param end One past the last byte (default `bytes.length`).
 * @returns The checksum, 0..65535.
 */
export function crc16(
  bytes: Uint8Array,
  start = 0,
  end = bytes.length,
): number {
  let crc = 0;
  for (let i = start; i < end; i++) {
    crc = ((crc << 8) & 0xff00) ^ TABLE[((crc >> 8) ^ bytes[i]) & 0xff];
  }
  return crc;
}

/**
 * The cluster slot of a key. Only the part between the first `{` and the
 * next `}` is hashed when that part is not empty (`{user1}.a` and
 * `{user1}.b` share a slot; `{}x` hashes whole).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { keySlot } from "./slot.ts";
 * assert.equal(keySlot("foo"), 12182);
 * assert.equal(keySlot("{user1}.a"), keySlot("user1"));
 * ```
 *
 * @param key The key (a string is hashed as UTF-8).
 * @returns The slot, 0..16383.
 */
export function keySlot(key: Arg): number {
  const bytes = typeof key === "string"
    ? encoder.encode(key)
    : key instanceof Uint8Array
    ? key
    : encoder.encode(String(key));
  const open = bytes.indexOf(0x7b); // {
  if (open !== -1) {
    const close = bytes.indexOf(0x7d, open + 1); // }
    if (close > open + 1) return crc16(bytes, open + 1, close) & 0x3fff;
  }
  return crc16(bytes) & 0x3fff;
}
