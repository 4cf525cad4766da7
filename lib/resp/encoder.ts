/**
 * RESP command encoder: turns commands into the bytes Redis reads, appending
 * every command to one growing buffer so that a whole tick's worth of commands
 * leaves in a single write. Pure: no I/O, no runtime APIs.
 *
 * @module
 */

import { describe } from "../validate.ts";

/** A value that can be sent to Redis as one command argument. */
export type Arg = string | number | bigint | Uint8Array;

const textEncoder = new TextEncoder();
const CR = 13;
const LF = 10;

/**
 * Checks one command's arguments and throws `TypeError`/`RangeError` for the
 * first bad one, before any byte is written anywhere.
 *
 * @param args The command name followed by its arguments.
 */
export function validateArgs(args: readonly unknown[]): asserts args is Arg[] {
  if (!Array.isArray(args) || args.length === 0) {
    throw new TypeError("A command needs at least its name, e.g. ['PING']");
  }
  if (typeof args[0] !== "string" || args[0].length === 0) {
    throw new TypeError("A command's name must be a non-empty string");
  }
  for (let i = 1; i < args.length; i++) {
    const a = args[i];
    switch (typeof a) {
      case "string":
      case "bigint":
        continue;
      case "number":
        if (!Number.isFinite(a)) {
          throw new RangeError(
            `Argument ${i} of ${
              args[0]
            } is ${a}: numbers sent to Redis must be finite`,
          );
        }
        continue;
      default:
        if (a instanceof Uint8Array) continue;
        throw new TypeError(
          `Argument ${i} of ${args[0]} is ${describe(a)}: ` +
            "arguments must be a string, number, bigint or Uint8Array",
        );
    }
  }
}

/**
 * Accumulates encoded commands; `take()` hands over everything encoded since
 * the last call as one `Uint8Array`.
 */
export class CommandEncoder {
  #buf: Uint8Array = new Uint8Array(16 * 1024);
  #len = 0;
  /** The other buffer of {@linkcode CommandEncoder.takeView}'s pair. */
  #spare: Uint8Array | null = null;

  /** Number of bytes waiting to be taken. */
  get length(): number {
    return this.#len;
  }

  /**
   * Validates and appends one command. Throws before writing anything if an
   * argument is bad.
   *
   * @param args The command name followed by its arguments.
   */
  encode(args: readonly unknown[]): void {
    validateArgs(args);
    const start = this.#len;
    try {
      this.#header(42, /* '*' */ args.length);
      for (let i = 0; i < args.length; i++) this.#arg(args[i]);
    } catch (err) {
      this.#len = start;
      throw err;
    }
  }

  /**
   * Appends bytes that are already RESP (e.g. commands taken out earlier and
   * put back).
   *
   * @param bytes Encoded commands.
   */
  append(bytes: Uint8Array): void {
    this.#reserve(bytes.length);
    this.#buf.set(bytes, this.#len);
    this.#len += bytes.length;
  }

  /**
   * Drops what was encoded after the first `length` bytes (to undo a group of
   * commands of which one failed to encode).
   *
   * @param length The length to go back to.
   */
  truncate(length: number): void {
    if (length < this.#len) this.#len = length;
  }

  /**
   * Returns the bytes encoded since the last call (a copy the caller owns) and
   * empties the encoder.
   *
   * @returns The encoded commands.
   */
  take(): Uint8Array {
    const out = this.#buf.slice(0, this.#len);
    this.#len = 0;
    if (this.#buf.length > 1024 * 1024) this.#buf = new Uint8Array(16 * 1024);
    return out;
  }

  /**
   * Like {@linkcode CommandEncoder.take}, without a copy: returns a view of
   * the encoder's buffer and goes on encoding into a second one. The view
   * stays valid until the next `takeView()`, so the caller must be done with
   * it (e.g. its write finished) before calling `takeView()` again.
   * Saves an allocation per write, which costs about as much as encoding a
   * short command on Deno.
   *
   * @returns The encoded commands, as a view into the encoder's memory.
   */
  takeView(): Uint8Array {
    const out = this.#buf.subarray(0, this.#len);
    const spare = this.#spare;
    this.#spare = this.#buf.length > 1024 * 1024 ? null : this.#buf;
    this.#buf = spare ?? new Uint8Array(16 * 1024);
    this.#len = 0;
    return out;
  }

  #reserve(n: number): void {
    const need = this.#len + n;
    if (need <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < need) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
  }

  #header(type: number, n: number): void {
    this.#reserve(24);
    const buf = this.#buf;
    let p = this.#len;
    buf[p++] = type;
    p = writeUint(buf, p, n);
    buf[p++] = CR;
    buf[p++] = LF;
    this.#len = p;
  }

  #arg(a: Arg): void {
    if (typeof a === "string") return this.#string(a);
    if (typeof a === "number" || typeof a === "bigint") {
      return this.#string(String(a));
    }
    this.#bytes(a);
  }

  #string(s: string): void {
    const n = s.length;
    // Short strings: write them as ASCII, which is by far the common case,
    // in one pass; on the first non-ASCII char, undo and encode as UTF-8.
    if (n < 256) {
      const start = this.#len;
      this.#reserve(n + 16);
      const buf = this.#buf;
      let p = start;
      buf[p++] = 36; // '$'
      p = writeUint(buf, p, n);
      buf[p++] = CR;
      buf[p++] = LF;
      for (let i = 0; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c > 0x7f) return this.#bytes(textEncoder.encode(wellFormed(s)));
        buf[p++] = c;
      }
      buf[p++] = CR;
      buf[p++] = LF;
      this.#len = p;
      return;
    }
    this.#bytes(textEncoder.encode(wellFormed(s)));
  }

  #bytes(b: Uint8Array): void {
    this.#header(36, /* '$' */ b.length);
    this.#reserve(b.length + 2);
    this.#buf.set(b, this.#len);
    let p = this.#len + b.length;
    this.#buf[p++] = CR;
    this.#buf[p++] = LF;
    this.#len = p;
  }
}

const hasIsWellFormed =
  typeof (String.prototype as { isWellFormed?: unknown }).isWellFormed ===
    "function";
const LONE_SURROGATE =
  /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Returns `s` if it is well-formed UTF-16. A lone surrogate cannot be encoded
 * as UTF-8: TextEncoder would turn it into U+FFFD, so `"a\uD800"` and
 * `"a\uDFFF"` would reach Redis as the same key. Refused instead.
 */
function wellFormed(s: string): string {
  if (!isWellFormed(s)) {
    throw new TypeError(
      "A string sent to Redis contains a lone UTF-16 surrogate, which has no UTF-8 form " +
        "(it would arrive as U+FFFD and collide with other strings); send well-formed text, or bytes as a Uint8Array",
    );
  }
  return s;
}

/**
 * Whether `s` is well-formed UTF-16 (no lone surrogate), so that it survives
 * the trip to Redis as UTF-8 unchanged.
 *
 * @param s The string.
 * @returns `true` when it has no lone surrogate.
 */
export function isWellFormed(s: string): boolean {
  return hasIsWellFormed
    ? (s as unknown as { isWellFormed(): boolean }).isWellFormed()
    : !LONE_SURROGATE.test(s);
}

function writeUint(buf: Uint8Array, p: number, n: number): number {
  if (n < 10) {
    buf[p++] = 48 + n;
    return p;
  }
  const s = String(n);
  for (let i = 0; i < s.length; i++) buf[p++] = s.charCodeAt(i);
  return p;
}

/**
 * Encodes one command into a fresh buffer.
 *
 * @param args The command name followed by its arguments.
 * @returns The RESP bytes of the command.
 */
export function encodeCommand(args: readonly unknown[]): Uint8Array {
  const enc = new CommandEncoder();
  enc.encode(args);
  return enc.take();
}
