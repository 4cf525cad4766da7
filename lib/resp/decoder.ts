/**
 * Incremental RESP2/RESP3 decoder. Feed it chunks as they arrive, cut
 * anywhere; read complete replies out of it. It keeps the elements of a
 * partly received aggregate, so it resumes where it stopped instead of parsing
 * again from the start, reads bulk strings by their declared length (values
 * may hold `\r\n` and NUL), and never awaits. Pure: no I/O, no runtime APIs.
 *
 * @module
 */

import { ProtocolError, ReplyError } from "../errors.ts";
import {
  AGGREGATE,
  BULK,
  parseBigNumber,
  parseDouble,
  parseInteger,
  parseLength,
  text,
} from "./scalars.ts";
import {
  checkLimits,
  type DecoderLimits,
  DEFAULT_DECODER_LIMITS,
} from "./limits.ts";

export { type DecoderLimits, DEFAULT_DECODER_LIMITS };

/**
 * A value decoded from a RESP reply. Strings are returned as `string` unless
 * the command asked for raw bytes, then bulk strings are `Uint8Array`.
 * RESP3 maps become `Map`, sets become `Set`, big numbers `bigint`. Integers
 * outside the safe range of `number` are returned as `bigint`. An error
 * nested inside an aggregate (as in an `EXEC` reply) is a `ReplyError` value.
 */
export type Reply =
  | string
  | number
  | bigint
  | boolean
  | null
  | Uint8Array
  | ReplyError
  | Reply[]
  | Map<Reply, Reply>
  | Set<Reply>;

/**
 * A RESP3 push frame (`>`): pub/sub messages and client-side caching
 * invalidations, delivered out of band rather than as a command's reply.
 */
export class Push {
  /** The frame's elements; the first is its kind, e.g. `"message"`. */
  readonly data: Reply[];
  /**
   * Wraps a push frame's elements.
   *
   * @param data The frame's elements; the first is its kind, e.g. `"message"`.
   */
  constructor(data: Reply[]) {
    this.data = data;
  }
}

/** Returned by {@linkcode RespDecoder.read} when no complete reply is buffered. */
export const NEED_MORE: unique symbol = Symbol("respite.needMore");

const CR = 13;
const LF = 10;
/**
 * Longest line (type byte and text, without CRLF) accepted: headers, simple
 * strings and errors, numbers. A line is refused as soon as it is known to be
 * longer, whether or not its end has arrived.
 */
const MAX_LINE = 1024 * 1024;
/** Smallest buffer allocated to hold bytes across chunks. */
const MIN_STORE = 16 * 1024;
/** A buffer up to this size is kept for reuse when it is emptied. */
const KEEP_STORE = 256 * 1024;
/** Chunks smaller than this are copied while a bulk string is arriving. */
const COPY_CHUNK = 4 * 1024;
/** A bulk string longer than this waits as parked chunks (no doubling). */
const PARK_OVER = 64 * 1024;

const EMPTY = new Uint8Array(0);
/** The first byte of every RESP2/RESP3 element: + - : $ * _ # , ( = ! % ~ > | */
const TYPE_BYTES = new Uint8Array(256);
for (const c of "+-:$*_#,(=!%~>|") TYPE_BYTES[c.charCodeAt(0)] = 1;

const Kind = { Array: 0, Map: 1, Set: 2, Push: 3, Attribute: 4 } as const;
type Kind = typeof Kind[keyof typeof Kind];

interface Frame {
  kind: Kind;
  items: Reply[];
  remaining: number;
}

/**
 * The decoder. One per connection.
 *
 * Work is linear in the bytes received, however they are chunked: a chunk
 * that starts on a reply boundary is read in place (no copy); bytes that must
 * wait for the next chunk are kept in a buffer that grows by doubling; the
 * search for a line's end resumes where it stopped; a partly received
 * aggregate keeps its elements; and a long bulk string waits as a list of
 * chunks, joined once when all of it has come.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NEED_MORE, RespDecoder } from "./decoder.ts";
 * const d = new RespDecoder();
 * d.feed(new TextEncoder().encode("$5\r\nhel"));
 * assert.equal(d.read(), NEED_MORE);
 * d.feed(new TextEncoder().encode("lo\r\n"));
 * assert.equal(d.read(), "hello");
 * ```
 */
export class RespDecoder {
  /**
   * The limits this decoder enforces, defaults filled in.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { RespDecoder } from "./decoder.ts";
   * assert.equal(new RespDecoder({ maxDepth: 64 }).limits.maxDepth, 64);
   * ```
   */
  readonly limits: Readonly<Required<DecoderLimits>>;
  #maxBulk: number;
  #maxAggregate: number;
  #maxDepth: number;
  /** The bytes being read: a fed chunk, or a view of `#store` from 0. */
  #buf: Uint8Array = EMPTY;
  #pos = 0;
  /** Owned memory holding bytes kept across chunks; `#buf` may view it. */
  #store: Uint8Array | null = null;
  /**
   * How many bytes from `#pos` were searched for the current line's CR
   * without finding its end; 0 when none were.
   */
  #scanned = 0;
  /** Chunks held back while a long bulk string is still arriving. */
  #parked: Uint8Array[] | null = null;
  /** Bytes parked, those in `#tail` included. */
  #parkedLen = 0;
  /** While parked: owned memory collecting small chunks, and its fill. */
  #tail: Uint8Array | null = null;
  #tailLen = 0;
  #need = 0;
  #stack: Frame[] = [];

  /**
   * Creates a decoder.
   *
   * @param limits What a server may declare; omitted fields take their
   *   default ({@linkcode DEFAULT_DECODER_LIMITS}).
   * @throws {TypeError} If `limits` is not an object, has an unknown field,
   *   or a field is not a number.
   * @throws {RangeError} If a limit is not a positive safe integer.
   */
  constructor(limits?: DecoderLimits) {
    this.limits = checkLimits(limits);
    this.#maxBulk = this.limits.maxBulkLength;
    this.#maxAggregate = this.limits.maxAggregateLength;
    this.#maxDepth = this.limits.maxDepth;
  }

  /** Bytes received but not yet consumed by a complete element. */
  get buffered(): number {
    return this.#buf.length - this.#pos + this.#parkedLen;
  }

  /**
   * Adds a chunk of bytes. The decoder keeps a reference to it: the caller
   * must not change it afterwards.
   *
   * @param chunk Bytes as they came off the socket.
   */
  feed(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    if (this.#parked !== null) {
      this.#parkChunk(chunk);
      return;
    }
    if (this.#pos >= this.#buf.length) {
      // The usual case: nothing left over, read the chunk where it is.
      this.#buf = chunk;
      this.#pos = 0;
      const store = this.#store;
      if (store !== null && store.length > KEEP_STORE) this.#store = null;
      return;
    }
    this.#keep(chunk);
  }

  /**
   * Stops referring to the memory of `chunk`, copying the unread bytes the
   * decoder still holds from it. Call it after reading every complete reply
   * when `chunk` was fed from a buffer that its owner will reuse.
   *
   * @param chunk A chunk given to {@linkcode RespDecoder.feed}.
   */
  release(chunk: Uint8Array): void {
    const memory = chunk.buffer;
    const parked = this.#parked;
    if (parked !== null) {
      // Earlier chunks were released when they arrived, and small ones are
      // copied: only the first (parked from the buffer) and the newest can
      // still share `memory`.
      const last = parked.length - 1;
      if (parked[0].buffer === memory) parked[0] = parked[0].slice();
      if (last > 0 && parked[last].buffer === memory) {
        parked[last] = parked[last].slice();
      }
      return;
    }
    if (this.#buf.buffer !== memory) return;
    if (this.#pos >= this.#buf.length) {
      this.#buf = EMPTY;
      this.#pos = 0;
      return;
    }
    this.#keep(EMPTY);
  }

  /**
   * Reads the next complete top-level reply.
   *
   * @param raw Return bulk strings as `Uint8Array` instead of `string`.
   * @returns The reply (a `Push` for a RESP3 push frame, a `ReplyError` for an
   *   error reply), or {@linkcode NEED_MORE}.
   * @throws {ProtocolError} If the bytes are not valid RESP or exceed one of
   *   the {@linkcode RespDecoder.limits}; the decoder is unusable afterwards.
   */
  read(raw = false): Reply | Push | typeof NEED_MORE {
    if (this.#parked !== null) return NEED_MORE;
    const stack = this.#stack;
    for (;;) {
      let value = this.#element(raw);
      if (value === NEED_MORE) return NEED_MORE;
      if (value === OPENED) continue;
      for (;;) {
        const top = stack[stack.length - 1];
        if (top === undefined) return value;
        top.items.push(value as Reply);
        if (--top.remaining > 0) break;
        stack.pop();
        if (top.kind === Kind.Attribute) {
          // Attributes describe the next value; we drop them and read on.
          value = OPENED;
          break;
        }
        value = finish(top);
      }
    }
  }

  /**
   * Moves the unread bytes and then `chunk` into owned memory. Amortized
   * O(bytes): memory is appended to until full, then either compacted (when
   * at most half of it is needed) or replaced by one twice the size needed.
   */
  #keep(chunk: Uint8Array): void {
    const buf = this.#buf;
    const end = buf.length;
    const n = chunk.length;
    let store = this.#store;
    const owned = store !== null && buf.buffer === store.buffer;
    if (owned && end + n <= store!.length) {
      store!.set(chunk, end);
      this.#buf = store!.subarray(0, end + n);
      return;
    }
    const pos = this.#pos;
    const rest = end - pos;
    const total = rest + n;
    if (
      store !== null && total <= (owned ? store.length >>> 1 : store.length)
    ) {
      if (!owned) store.set(buf.subarray(pos, end));
      else if (pos > 0) store.copyWithin(0, pos, end);
    } else {
      const next = new Uint8Array(Math.max(MIN_STORE, 2 * total));
      next.set(buf.subarray(pos, end));
      store = this.#store = next;
    }
    if (n > 0) store.set(chunk, rest);
    this.#buf = store.subarray(0, total);
    this.#pos = 0;
  }

  /** Holds the unread bytes aside until `total` of them have arrived. */
  #park(total: number): typeof NEED_MORE {
    const rest = this.#buf.subarray(this.#pos);
    this.#parked = [rest];
    this.#parkedLen = rest.length;
    this.#need = total;
    this.#buf = EMPTY;
    this.#pos = 0;
    return NEED_MORE;
  }

  /** Adds a chunk to the parked ones; joins them once enough have come. */
  #parkChunk(chunk: Uint8Array): void {
    const parked = this.#parked!;
    const n = chunk.length;
    let tail = this.#tail;
    if (n < COPY_CHUNK) {
      // Small chunks are copied, so that one-byte chunks cost one byte each.
      if (tail === null || this.#tailLen + n > tail.length) {
        if (tail !== null) parked.push(tail.subarray(0, this.#tailLen));
        const want = this.#need - this.#parkedLen;
        tail = this.#tail = new Uint8Array(
          Math.max(COPY_CHUNK, Math.min(MIN_STORE * 4, want)),
        );
        this.#tailLen = 0;
      }
      tail.set(chunk, this.#tailLen);
      this.#tailLen += n;
    } else {
      if (tail !== null) {
        parked.push(tail.subarray(0, this.#tailLen));
        tail = this.#tail = null;
        this.#tailLen = 0;
      }
      parked.push(chunk);
    }
    this.#parkedLen += n;
    if (this.#parkedLen < this.#need) return;
    if (tail !== null) parked.push(tail.subarray(0, this.#tailLen));
    this.#buf = concat(parked, this.#parkedLen);
    this.#pos = 0;
    this.#parked = null;
    this.#parkedLen = 0;
    this.#tail = null;
    this.#tailLen = 0;
  }

  /**
   * Parses one element at the current position. Returns its value, `OPENED`
   * when it opened a non-empty aggregate (its elements follow), or
   * `NEED_MORE`. Advances the position only past a complete element.
   */
  #element(raw: boolean): Reply | Push | typeof NEED_MORE | typeof OPENED {
    const buf = this.#buf;
    const start = this.#pos;
    const length = buf.length;
    if (start >= length) return NEED_MORE;
    const type = buf[start];
    if (TYPE_BYTES[type] !== 1) {
      // Fail at once rather than wait for a line end that may never come.
      throw new ProtocolError(
        `unexpected RESP type byte 0x${type.toString(16).padStart(2, "0")}`,
      );
    }
    const scanned = this.#scanned;
    const eol = buf.indexOf(CR, scanned === 0 ? start + 1 : start + scanned);
    if (eol === -1) {
      if (length - start > MAX_LINE) throw lineTooLong();
      this.#scanned = length - start;
      return NEED_MORE;
    }
    if (eol - start > MAX_LINE) throw lineTooLong();
    if (eol + 1 >= length) {
      this.#scanned = eol - start;
      return NEED_MORE;
    }
    if (scanned !== 0) this.#scanned = 0;
    if (buf[eol + 1] !== LF) {
      throw new ProtocolError("RESP line ended with CR not followed by LF");
    }
    const next = eol + 2;
    switch (type) {
      case 43: // '+' simple string
        this.#pos = next;
        return text(buf, start + 1, eol);
      case 45: // '-' error
        this.#pos = next;
        return new ReplyError(text(buf, start + 1, eol));
      case 58: // ':' integer
        this.#pos = next;
        return parseInteger(buf, start + 1, eol);
      case 36: // '$' bulk string
      case 61: // '=' verbatim string
      case 33: { // '!' bulk error
        const len = parseLength(buf, start + 1, eol, this.#maxBulk, BULK);
        if (len === -1) {
          if (type !== 36) throw new ProtocolError("negative length");
          this.#pos = next;
          return null;
        }
        const end = next + len;
        if (end + 2 > length) {
          // A long one waits aside; a short one with the rest (re-reading
          // its header next time costs at most 22 bytes).
          const total = end + 2 - start;
          return total > PARK_OVER ? this.#park(total) : NEED_MORE;
        }
        if (buf[end] !== CR || buf[end + 1] !== LF) {
          throw new ProtocolError("bulk string not followed by CRLF");
        }
        this.#pos = end + 2;
        if (type === 33) return new ReplyError(text(buf, next, end));
        let from = next;
        if (type === 61) {
          // A three-byte format ("txt", "mkd"), ":", then the text.
          if (len < 4 || buf[next + 3] !== 58) {
            throw new ProtocolError("malformed verbatim string");
          }
          from = next + 4;
        }
        return raw ? buf.slice(from, end) : text(buf, from, end);
      }
      case 42: // '*' array
      case 37: // '%' map
      case 126: // '~' set
      case 62: // '>' push
      case 124: { // '|' attribute
        let n = parseLength(buf, start + 1, eol, this.#maxAggregate, AGGREGATE);
        if (n === -1) {
          if (type !== 42) throw new ProtocolError("negative length");
          this.#pos = next;
          return null;
        }
        if (this.#stack.length >= this.#maxDepth) {
          throw new ProtocolError(
            `nesting depth exceeds the limit of ${this.#maxDepth} (maxDepth)`,
          );
        }
        this.#pos = next;
        const kind = type === 42
          ? Kind.Array
          : type === 37
          ? Kind.Map
          : type === 126
          ? Kind.Set
          : type === 62
          ? Kind.Push
          : Kind.Attribute;
        if (kind === Kind.Map || kind === Kind.Attribute) n *= 2;
        if (n === 0) {
          if (kind === Kind.Attribute) return OPENED;
          return finish({ kind, items: [], remaining: 0 });
        }
        this.#stack.push({ kind, items: [], remaining: n });
        return OPENED;
      }
      case 95: // '_' null
        if (eol !== start + 1) throw new ProtocolError("malformed null");
        this.#pos = next;
        return null;
      case 35: // '#' boolean
        if (
          eol !== start + 2 ||
          (buf[start + 1] !== 116 && buf[start + 1] !== 102)
        ) {
          throw new ProtocolError("malformed boolean");
        }
        this.#pos = next;
        return buf[start + 1] === 116;
      case 44: // ',' double
        this.#pos = next;
        return parseDouble(buf, start + 1, eol);
      case 40: { // '(' big number
        const big = parseBigNumber(buf, start + 1, eol);
        this.#pos = next;
        return big;
      }
      default:
        throw new ProtocolError(
          `unexpected RESP type byte 0x${type.toString(16).padStart(2, "0")}`,
        );
    }
  }
}

const OPENED: unique symbol = Symbol("opened");

function finish(frame: Frame): Reply | Push {
  switch (frame.kind) {
    case Kind.Array:
      return frame.items;
    case Kind.Push:
      return new Push(frame.items);
    case Kind.Set:
      return new Set(frame.items);
    default: {
      const map = new Map<Reply, Reply>();
      const items = frame.items;
      for (let i = 0; i < items.length; i += 2) map.set(items[i], items[i + 1]);
      return map;
    }
  }
}

function lineTooLong(): ProtocolError {
  return new ProtocolError(`RESP line longer than ${MAX_LINE} bytes`);
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let p = 0;
  for (const c of chunks) {
    out.set(c, p);
    p += c.length;
  }
  return out;
}
