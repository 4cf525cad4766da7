/**
 * How `cached` turns values into the bytes stored in Redis, and back.
 *
 * @module
 */

import { fail } from "../validate.ts";

/**
 * A codec that stores values as text. `decode` receives exactly what `encode`
 * returned (it may also receive text some other writer put there: throw if it
 * is not yours; `cached` then treats the entry as a miss and reports it).
 *
 * @typeParam T The type of the values.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { TextCodec } from "@respite/respite";
 * const dates: TextCodec<Date> = {
 *   encode: (d) => d.toISOString(),
 *   decode: (text) => {
 *     const d = new Date(text);
 *     if (Number.isNaN(d.getTime())) throw new TypeError("not a date");
 *     return d;
 *   },
 * };
 * assert.equal(dates.decode(dates.encode(new Date(0))).getTime(), 0);
 * ```
 */
export interface TextCodec<T> {
  /** Absent or `false`: this codec works on strings. */
  binary?: false;
  /**
   * Turns a value into text. Throw if the value cannot be stored.
   *
   * @param value The value to store.
   * @returns Its text form.
   */
  encode(value: T): string;
  /**
   * Turns stored text back into a value. Throw if the text is not valid.
   *
   * @param text What `encode` produced.
   * @returns The value.
   */
  decode(text: string): T;
}

/**
 * A codec that stores values as bytes (MessagePack, CBOR, protobuf, ...).
 *
 * @typeParam T The type of the values.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { BinaryCodec } from "@respite/respite";
 * const bytes: BinaryCodec<Uint8Array> = {
 *   binary: true,
 *   encode: (b) => b,
 *   decode: (b) => b,
 * };
 * assert.equal(bytes.decode(bytes.encode(new Uint8Array([0, 13, 10])))[2], 10);
 * ```
 */
export interface BinaryCodec<T> {
  /** `true`: this codec works on bytes. */
  binary: true;
  /**
   * Turns a value into bytes. Throw if the value cannot be stored.
   *
   * @param value The value to store.
   * @returns Its bytes.
   */
  encode(value: T): Uint8Array;
  /**
   * Turns stored bytes back into a value. Throw if they are not valid.
   *
   * @param bytes What `encode` produced.
   * @returns The value.
   */
  decode(bytes: Uint8Array): T;
}

/**
 * A text or binary codec.
 *
 * @typeParam T The type of the values.
 */
export type Codec<T> = TextCodec<T> | BinaryCodec<T>;

/**
 * The default codec: `JSON.stringify` / `JSON.parse`. Values that JSON cannot
 * represent are refused instead of being silently changed into something
 * else: a `BigInt` or a cycle throws, and so does a value that JSON turns into
 * nothing (a function, a symbol). Note that JSON still changes a `Date` into a
 * string and a `Map` or `Set` into `{}`: use your own codec for those.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { jsonCodec } from "@respite/respite";
 * assert.equal(jsonCodec.encode({ a: [1, 2] }), '{"a":[1,2]}');
 * assert.throws(() => jsonCodec.encode(10n), TypeError);
 * ```
 */
export const jsonCodec: TextCodec<unknown> = {
  encode(value: unknown): string {
    const text = JSON.stringify(value);
    if (typeof text !== "string") {
      throw new TypeError(
        `JSON cannot represent a value of type ${typeof value}`,
      );
    }
    return text;
  },
  decode(text: string): unknown {
    return JSON.parse(text);
  },
};

/**
 * Checks that `codec` looks like a {@linkcode Codec}.
 *
 * @param codec The candidate.
 * @returns It, typed.
 */
export function checkCodec<T>(codec: unknown): Codec<T> {
  const c = codec as Partial<Codec<T>> | null;
  if (
    c === null || typeof c !== "object" || typeof c.encode !== "function" ||
    typeof c.decode !== "function"
  ) {
    fail("codec", "an object with encode(value) and decode(data) methods", c);
  }
  if (c.binary !== undefined && typeof c.binary !== "boolean") {
    fail("codec.binary", "a boolean", c.binary);
  }
  return c as Codec<T>;
}
