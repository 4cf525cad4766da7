/**
 * The limits a `RespDecoder` enforces on what a server may declare
 * (bulk lengths, aggregate lengths, nesting depth), their defaults and where
 * each comes from, and the check of the limits a caller gives. Pure: no I/O,
 * no runtime APIs.
 *
 * @module
 */

/**
 * Limits on what a server may declare, each checked at the element's header,
 * before anything is allocated or kept for the element: exceeding one is a
 * {@linkcode ProtocolError} (the connection is then closed). Omitted fields
 * take their default from {@linkcode DEFAULT_DECODER_LIMITS}.
 *
 * A declared length alone never allocates: an aggregate's elements are
 * stored as they arrive, and a bulk string's bytes are held as received
 * until all have come. So memory grows with the bytes actually received; the
 * length limits bound what a single reply may claim, and the depth limit
 * bounds the bookkeeping of open aggregates, where 4 bytes on the wire
 * (`*1\r\n`) open one more level in memory.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ProtocolError } from "../errors.ts";
 * import { type DecoderLimits, RespDecoder } from "./decoder.ts";
 * const limits: DecoderLimits = { maxBulkLength: 1024, maxDepth: 8 };
 * const d = new RespDecoder(limits);
 * d.feed(new TextEncoder().encode("$4096\r\n"));
 * assert.throws(() => d.read(), ProtocolError);
 * ```
 */
export interface DecoderLimits {
  /**
   * Largest declared length of a bulk string (`$`), verbatim string (`=`,
   * its `txt:` prefix included) or bulk error (`!`), in bytes. Default
   * 536,870,912 (512 MiB), the default of Redis's own `proto-max-bulk-len`,
   * which bounds the strings Redis accepts and so the ones it stores; raise
   * both together.
   */
  maxBulkLength?: number;
  /**
   * Largest declared length of an aggregate: the number on the header line
   * of an array (`*`), set (`~`) or push frame (`>`), which counts elements,
   * and of a map (`%`) or attribute (`|`), which counts key-value pairs (so
   * a map may hold twice as many elements). Default 2,147,483,647
   * (2^31 - 1): the largest `*<count>` Redis accepts in a request
   * (`processMultibulkBuffer` in src/networking.c refuses a count over
   * `INT_MAX`).
   */
  maxAggregateLength?: number;
  /**
   * Deepest nesting of aggregates: a top-level array is at depth 1, an array
   * inside it at depth 2, and so on; every aggregate type counts, attributes
   * included. Default 10,000. The deepest reply Redis can build comes from a
   * Lua script (or function) returning nested tables; its conversion to RESP
   * stops at the Lua C stack limit (`LUAI_MAXCSTACK`, 8,000 slots): a
   * script nesting tables 100,000 deep gets 7,995 nested arrays back
   * (measured on Redis 7.0.15), with an error reply at the bottom. Built-in
   * commands nest a few levels. 10,000 leaves room above both; modules can
   * build deeper replies and need a higher limit.
   */
  maxDepth?: number;
}

/**
 * The limits a {@linkcode RespDecoder} uses when not told otherwise; see
 * {@linkcode DecoderLimits} for where each value comes from.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_DECODER_LIMITS } from "./decoder.ts";
 * assert.equal(DEFAULT_DECODER_LIMITS.maxDepth, 10_000);
 * ```
 */
export const DEFAULT_DECODER_LIMITS: Readonly<Required<DecoderLimits>> = Object
  .freeze({
    maxBulkLength: 512 * 1024 * 1024,
    maxAggregateLength: 2 ** 31 - 1,
    maxDepth: 10_000,
  });

const LIMIT_KEYS = Object.keys(
  DEFAULT_DECODER_LIMITS,
) as (keyof DecoderLimits)[];

/**
 * Checks the limits given to a decoder and fills in the defaults.
 *
 * @param limits What the decoder was given (`undefined` for the defaults).
 * @returns The limits, frozen, every field set.
 * @throws {TypeError} If `limits` is not an object, has an unknown field,
 *   or a field is not a number.
 * @throws {RangeError} If a limit is not a positive safe integer.
 */
export function checkLimits(
  limits: unknown,
): Readonly<Required<DecoderLimits>> {
  if (limits === undefined) return DEFAULT_DECODER_LIMITS;
  if (typeof limits !== "object" || limits === null || Array.isArray(limits)) {
    throw new TypeError("decoder limits must be an object");
  }
  const given = limits as Record<string, unknown>;
  for (const key of Object.keys(given)) {
    if (!(LIMIT_KEYS as string[]).includes(key)) {
      throw new TypeError(
        `unknown decoder limit ${JSON.stringify(key)}; expected one of ${
          LIMIT_KEYS.join(", ")
        }`,
      );
    }
  }
  const out = { ...DEFAULT_DECODER_LIMITS };
  for (const key of LIMIT_KEYS) {
    const v = given[key];
    if (v === undefined) continue;
    if (typeof v !== "number") {
      throw new TypeError(`${key} must be a number, got ${typeof v}`);
    }
    if (!Number.isSafeInteger(v) || v < 1) {
      throw new RangeError(`${key} must be a positive integer, got ${v}`);
    }
    out[key] = v;
  }
  return Object.freeze(out);
}
