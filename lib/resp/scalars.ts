/**
 * The scalars of RESP lines, parsed where they lie in the buffer: text,
 * header lengths (checked against a limit), integers, RESP3 doubles and big
 * numbers. Pure: no I/O, no runtime APIs.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";

// ignoreBOM: a value that starts with U+FEFF keeps it (it is data, not a mark).
const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * Below this length a string is built char by char; from it on TextDecoder
 * is faster (measured on Deno 2.9 and Bun 1.4: for 32 ASCII bytes,
 * TextDecoder is ~2x faster on Deno and ~4x on Bun than appending chars).
 */
const SHORT_TEXT = 12;

/**
 * Decodes `buf[from..to)` as UTF-8 text.
 *
 * @param buf The bytes.
 * @param from Where the text starts.
 * @param to Where it ends (exclusive).
 * @returns The text.
 */
export function text(buf: Uint8Array, from: number, to: number): string {
  const n = to - from;
  if (n < SHORT_TEXT) {
    let s = "";
    for (let i = from; i < to; i++) {
      const c = buf[i];
      if (c > 0x7f) return utf8.decode(buf.subarray(from, to));
      s += String.fromCharCode(c);
    }
    return s;
  }
  return utf8.decode(buf.subarray(from, to));
}

/** A length on a bulk header (`$ = !`), for messages. */
export const BULK = "bulk";
/** A length on an aggregate header (`* % ~ > |`), for messages. */
export const AGGREGATE = "aggregate";
/** Longest length field accepted: 20 digits already exceed any limit. */
const MAX_LENGTH_DIGITS = 20;

/**
 * Parses the length on a `$ = ! * % ~ > |` header: `-1` (returned as -1), or
 * one or more decimal digits no greater than `max`.
 *
 * @param buf The bytes.
 * @param from Where the length starts (after the type byte).
 * @param to Where it ends (the CR).
 * @param max The limit it may not exceed.
 * @param what The kind of header, for messages.
 * @returns The length, or -1.
 * @throws {ProtocolError} If it is malformed or over `max`.
 */
export function parseLength(
  buf: Uint8Array,
  from: number,
  to: number,
  max: number,
  what: typeof BULK | typeof AGGREGATE,
): number {
  const digits = to - from;
  if (digits === 2 && buf[from] === 45 && buf[from + 1] === 49) return -1;
  if (digits === 0) throw new ProtocolError(`malformed ${what} length`);
  let n = 0;
  for (let i = from; i < to; i++) {
    const d = buf[i] - 48;
    if (d < 0 || d > 9) throw new ProtocolError(`malformed ${what} length`);
    n = n * 10 + d;
  }
  if (n > max || digits > MAX_LENGTH_DIGITS) {
    throw new ProtocolError(
      `${what} length ${
        digits > MAX_LENGTH_DIGITS ? `of ${digits} digits` : n
      } exceeds the limit of ${max} (${
        what === BULK ? "maxBulkLength" : "maxAggregateLength"
      })`,
    );
  }
  return n;
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/**
 * Parses a RESP3 double, exactly as redis-specifications' RESP3.md gives it:
 * an optional sign, one or more digits, an optional fraction (`.` and one or
 * more digits), an optional exponent (`e` or `E`, an optional sign, one or
 * more digits); or `inf`, `-inf`, `nan`. The spellings older servers may send
 * for these (libc's `-nan`, `NAN`, `nan(chars)`, as the spec notes) are read
 * too, case-insensitively. Anything else (`.5`, `1.`, `0x10`, `1_0`,
 * `Infinity`, spaces) is refused, although `Number()` reads most of it.
 *
 * @param buf The bytes.
 * @param from Where the double starts (after the type byte).
 * @param to Where it ends (the CR).
 * @returns Its value.
 * @throws {ProtocolError} If it is malformed.
 */
export function parseDouble(buf: Uint8Array, from: number, to: number): number {
  let i = from;
  if (i < to && (buf[i] === 43 || buf[i] === 45)) i++;
  const int = i;
  while (i < to && isDigit(buf[i])) i++;
  if (i === int) return parseSpecialDouble(buf, from, to);
  if (i < to && buf[i] === 46) {
    const frac = ++i;
    while (i < to && isDigit(buf[i])) i++;
    if (i === frac) throw malformedDouble(buf, from, to);
  }
  if (i < to && (buf[i] | 32) === 101) {
    i++;
    if (i < to && (buf[i] === 43 || buf[i] === 45)) i++;
    const exp = i;
    while (i < to && isDigit(buf[i])) i++;
    if (i === exp) throw malformedDouble(buf, from, to);
  }
  if (i !== to) throw malformedDouble(buf, from, to);
  // The grammar above is a subset of JavaScript's decimal literals.
  return Number(text(buf, from, to));
}

const SPECIAL_DOUBLE = /^[+-]?(?:(inf)|nan(?:\([0-9a-z_]*\))?)$/i;

function parseSpecialDouble(buf: Uint8Array, from: number, to: number): number {
  const m = to - from <= 64 ? SPECIAL_DOUBLE.exec(text(buf, from, to)) : null;
  if (m === null) throw malformedDouble(buf, from, to);
  if (m[1] === undefined) return NaN;
  return buf[from] === 45 ? -Infinity : Infinity;
}

function malformedDouble(buf: Uint8Array, from: number, to: number): Error {
  const shown = text(buf, from, Math.min(to, from + 40));
  return new ProtocolError(`malformed double ${JSON.stringify(shown)}`);
}

/**
 * Parses a RESP integer (`:`): an optional sign and one or more decimal
 * digits. Beyond the safe range of `number` it is a `bigint`.
 *
 * @param buf The bytes.
 * @param from Where the integer starts (after the type byte).
 * @param to Where it ends (the CR).
 * @returns Its value.
 * @throws {ProtocolError} If it is malformed.
 */
export function parseInteger(
  buf: Uint8Array,
  from: number,
  to: number,
): number | bigint {
  let i = from;
  let neg = false;
  if (buf[i] === 45 || buf[i] === 43) {
    neg = buf[i] === 45;
    i++;
  }
  if (i === to) throw new ProtocolError("malformed integer");
  if (to - i > 15) {
    const s = text(buf, from, to);
    if (!/^[+-]?\d+$/.test(s)) throw new ProtocolError("malformed integer");
    const big = BigInt(s);
    const asNumber = Number(big);
    return Number.isSafeInteger(asNumber) ? asNumber : big;
  }
  let n = 0;
  for (; i < to; i++) {
    const d = buf[i] - 48;
    if (d < 0 || d > 9) throw new ProtocolError("malformed integer");
    n = n * 10 + d;
  }
  return neg ? 0 - n : n; // 0 - 0 is 0: an integer has no negative zero
}

/**
 * Parses a RESP3 big number (`(`): an optional sign and one or more decimal
 * digits.
 *
 * @param buf The bytes.
 * @param from Where the number starts (after the type byte).
 * @param to Where it ends (the CR).
 * @returns Its value.
 * @throws {ProtocolError} If it is malformed.
 */
export function parseBigNumber(
  buf: Uint8Array,
  from: number,
  to: number,
): bigint {
  const s = text(buf, from, to);
  if (!/^[+-]?[0-9]+$/.test(s)) {
    throw new ProtocolError("malformed big number");
  }
  return BigInt(s);
}
