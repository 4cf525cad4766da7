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
 * string and a `Map` or `Set` into `{}`: use {@linkcode richJsonCodec} (or
 * your own codec) for those.
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

/** The tag key of {@linkcode richJsonCodec}'s typed values. */
const TAG = "$rsp";

/** The typed arrays {@linkcode richJsonCodec} keeps, by name. */
const TYPED_ARRAYS = {
  Uint8Array,
  Int8Array,
  Uint8ClampedArray,
  Uint16Array,
  Int16Array,
  Uint32Array,
  Int32Array,
  Float32Array,
  Float64Array,
  BigUint64Array,
  BigInt64Array,
} as const;
type TypedArrayName = keyof typeof TYPED_ARRAYS;

function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** One typed value as `{ "$rsp": type, "v": data }`, or `undefined`. */
function tagged(raw: unknown): unknown {
  if (raw instanceof Date) {
    return {
      [TAG]: "Date",
      v: Number.isNaN(raw.getTime()) ? null : raw.toISOString(),
    };
  }
  if (typeof raw === "bigint") return { [TAG]: "BigInt", v: raw.toString() };
  if (typeof raw === "number" && !Number.isFinite(raw)) {
    return { [TAG]: "Number", v: String(raw) };
  }
  if (raw instanceof Map) return { [TAG]: "Map", v: [...raw.entries()] };
  if (raw instanceof Set) return { [TAG]: "Set", v: [...raw.values()] };
  if (ArrayBuffer.isView(raw) && !(raw instanceof DataView)) {
    const name = raw.constructor.name as TypedArrayName;
    if (name in TYPED_ARRAYS) {
      const bytes = new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
      return { [TAG]: name, v: toBase64(bytes) };
    }
  }
  if (
    raw !== null && typeof raw === "object" && !Array.isArray(raw) &&
    Object.hasOwn(raw, TAG)
  ) {
    // A plain object that happens to have the tag key: kept as its entries
    // (an array is never read as a tag, and its values are revived first).
    return { [TAG]: "Object", v: Object.entries(raw) };
  }
  return undefined;
}

/**
 * A JSON codec that also round-trips what plain JSON changes or refuses:
 * `Date`, `Map`, `Set`, `BigInt`, `NaN`/`Infinity` and typed arrays
 * (`Uint8Array`, `Float64Array`...), at any depth. Each such value is stored
 * as `{"$rsp": "<type>", "v": ...}` (a plain object with a `$rsp` key of its
 * own is escaped the same way, so it comes back unchanged). Cycles, functions
 * and symbols are refused as by {@linkcode jsonCodec}. Opt in with
 * `codec: richJsonCodec`: entries written by `jsonCodec` decode the same, but
 * a `Date` they hold stays a string.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { richJsonCodec } from "@respite/respite";
 * const value = {
 *   at: new Date(0),
 *   seen: new Set(["a"]),
 *   by: new Map([[1, "one"]]),
 *   big: 2n ** 70n,
 *   bytes: new Uint8Array([0, 255]),
 * };
 * assert.deepEqual(richJsonCodec.decode(richJsonCodec.encode(value)), value);
 * ```
 */
export const richJsonCodec: TextCodec<unknown> = {
  encode(value: unknown): string {
    const text = JSON.stringify(
      value,
      function (this: Record<string, unknown>, key, v) {
        // `this[key]` is the value before toJSON (a Date's is a string).
        const t = tagged(this[key]);
        return t === undefined ? v : t;
      },
    );
    if (typeof text !== "string") {
      throw new TypeError(
        `JSON cannot represent a value of type ${typeof value}`,
      );
    }
    return text;
  },
  decode(text: string): unknown {
    return JSON.parse(text, (_key, v) => {
      if (
        v === null || typeof v !== "object" || Array.isArray(v) ||
        !Object.hasOwn(v, TAG)
      ) {
        return v;
      }
      const type = v[TAG];
      const data = v.v;
      switch (type) {
        case "Date":
          return new Date(data === null ? Number.NaN : String(data));
        case "BigInt":
          return BigInt(String(data));
        case "Number":
          return Number(String(data));
        case "Map":
          if (!Array.isArray(data)) break;
          return new Map(data as [unknown, unknown][]);
        case "Set":
          if (!Array.isArray(data)) break;
          return new Set(data);
        case "Object":
          if (!Array.isArray(data)) break;
          return Object.fromEntries(data as [string, unknown][]);
        default:
          if (typeof type === "string" && type in TYPED_ARRAYS) {
            const bytes = fromBase64(String(data));
            const T = TYPED_ARRAYS[type as TypedArrayName];
            const size = T.BYTES_PER_ELEMENT;
            if (bytes.byteLength % size !== 0) break;
            return new T(
              bytes.buffer as ArrayBuffer,
              0,
              bytes.byteLength / size,
            );
          }
      }
      throw new TypeError(`not a value written by richJsonCodec: ${type}`);
    });
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
