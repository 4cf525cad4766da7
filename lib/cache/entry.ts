/**
 * The stored form of one `cached` entry: a one-line header with its metadata,
 * then the codec's payload, and the XFetch early-refresh rule.
 *
 * Layout (all times are Unix ms, written by the process that computed it):
 *
 * ```
 * rsp1 <createdAt> <delta> <freshUntil> <staleUntil> <kind>[ <generation>]\n<payload>
 * ```
 *
 * `kind` is `v` (a value; payload from the codec), `u` (`undefined`) or `n`
 * (`null`), both without payload, or `e` (a remembered failure; payload is
 * JSON `{name, message}`). Anything else found at an entry's key (another
 * application's value, an older format) does not parse: `cached` reports it
 * once and treats it as a miss, which overwrites it. `generation` is there for
 * a function with a `namespace`: the namespace's generation token the writer
 * read before computing (see `cacheGenerationKey`); an entry whose token is
 * not the namespace's current one is a miss.
 *
 * {@linkcode EntryCodec} turns results into entries and entries back into
 * results, with the user's codec for the payload.
 *
 * @module
 */

import type { Codec } from "./codec.ts";
import { jsonCodec } from "./codec.ts";
import { CachedFailureError, CodecError } from "../errors.ts";
import { cacheEntryKey } from "../keys.ts";

/** What kind of result an entry holds. */
export type EntryKind = "value" | "undefined" | "null" | "error";

/** An entry's metadata, as stored. */
export interface EntryMeta {
  /** When the value was computed (Unix ms). */
  createdAt: number;
  /** How long computing it took (ms): XFetch's Δ. */
  delta: number;
  /** Until when it is fresh (Unix ms). */
  freshUntil: number;
  /** Until when it may be served stale while one caller refreshes it (Unix ms). */
  staleUntil: number;
  /** Its namespace's generation token when written ("" or absent: none). */
  gen?: string;
}

/** A decoded entry, before the codec ran on its payload. */
export interface RawEntry extends EntryMeta {
  kind: EntryKind;
  /** The payload: text, or bytes when read raw. */
  payload: string | Uint8Array;
}

const MAGIC = "rsp1";
/** How every entry (and so every wake message that carries one) starts. */
export const ENTRY_START = "rsp1 ";
const KINDS: Record<string, EntryKind> = {
  v: "value",
  u: "undefined",
  n: "null",
  e: "error",
};
const KIND_CODES: Record<EntryKind, string> = {
  value: "v",
  undefined: "u",
  null: "n",
  error: "e",
};
const NL = 10;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The header line of an entry, newline included. */
export function entryHeader(meta: EntryMeta, kind: EntryKind): string {
  return `${MAGIC} ${Math.round(meta.createdAt)} ${Math.round(meta.delta)} ${
    Math.round(meta.freshUntil)
  } ${Math.round(meta.staleUntil)} ${KIND_CODES[kind]}${
    meta.gen ? " " + meta.gen : ""
  }\n`;
}

/**
 * Builds the stored form of an entry.
 *
 * @param meta Its metadata.
 * @param kind What it holds.
 * @param payload The codec's output (empty for `undefined`).
 * @returns A string, or bytes when the payload is bytes.
 */
export function encodeEntry(
  meta: EntryMeta,
  kind: EntryKind,
  payload: string | Uint8Array,
): string | Uint8Array {
  const header = entryHeader(meta, kind);
  if (typeof payload === "string") return header + payload;
  const head = encoder.encode(header);
  const out = new Uint8Array(head.length + payload.length);
  out.set(head);
  out.set(payload, head.length);
  return out;
}

/** Why a stored value is not an entry. */
export class EntryFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EntryFormatError";
  }
}

/**
 * Parses a stored entry.
 *
 * @param stored What GET returned (text, or bytes for binary codecs).
 * @returns The entry.
 * @throws {EntryFormatError} When it is not an entry this version wrote.
 */
export function parseEntry(stored: string | Uint8Array): RawEntry {
  let header: string;
  let payload: string | Uint8Array;
  if (typeof stored === "string") {
    const nl = stored.indexOf("\n");
    if (nl === -1) throw new EntryFormatError("no header line");
    header = stored.slice(0, nl);
    payload = stored.slice(nl + 1);
  } else {
    const nl = stored.indexOf(NL);
    if (nl === -1) throw new EntryFormatError("no header line");
    header = decoder.decode(stored.subarray(0, nl));
    payload = stored.subarray(nl + 1);
  }
  // "rsp1 <createdAt> <delta> <freshUntil> <staleUntil> <kind>[ <gen>]"
  if (!header.startsWith(ENTRY_START)) {
    throw new EntryFormatError("not an entry written by respite's cached()");
  }
  let at = 5;
  const field = (): number => {
    const end = header.indexOf(" ", at);
    if (end === -1) throw new EntryFormatError("malformed entry header");
    const text = header.slice(at, end);
    at = end + 1;
    const n = Number(text);
    if (text.length === 0 || !Number.isSafeInteger(n)) {
      throw new EntryFormatError("malformed entry header");
    }
    return n;
  };
  const createdAt = field();
  const delta = field();
  const freshUntil = field();
  const staleUntil = field();
  let gen = "";
  if (header.length > at + 1) {
    gen = header.slice(at + 2);
    if (header[at + 1] !== " " || gen.length === 0 || gen.includes(" ")) {
      throw new EntryFormatError("malformed entry header");
    }
  }
  const kind = header.length > at ? KINDS[header[at]] : undefined;
  if (kind === undefined) {
    throw new EntryFormatError("malformed entry header");
  }
  return { createdAt, delta, freshUntil, staleUntil, gen, kind, payload };
}

/**
 * The XFetch rule ("Optimal Probabilistic Cache Stampede Prevention",
 * Vattani, Chierichetti, Lowenstein, VLDB 2015): recompute early when
 * `now - Δ·β·ln(u) ≥ freshUntil`, with `u` uniform in (0, 1]. The chance
 * grows as expiry nears, and faster for values that take long to compute.
 * With `gap = freshUntil - now`, it is `exp(-gap / (Δ·β))`.
 *
 * @param meta The entry's `delta` and `freshUntil`.
 * @param now The current time (Unix ms).
 * @param beta β: 1 is the paper's optimum, above 1 refreshes earlier, 0 never.
 * @param random A uniform PRNG in [0, 1), like `Math.random`.
 * @returns Whether this read should trigger an early refresh.
 */
export function xfetchEarly(
  meta: Pick<EntryMeta, "delta" | "freshUntil">,
  now: number,
  beta: number,
  random: () => number,
): boolean {
  if (beta === 0 || meta.delta <= 0) return false;
  const u = 1 - random(); // (0, 1]
  return now - meta.delta * beta * Math.log(u) >= meta.freshUntil;
}

/**
 * A decoded entry: its metadata and the result it holds.
 *
 * @typeParam T The cached function's result type.
 */
export interface Entry<T> extends EntryMeta {
  /** What it holds. */
  kind: EntryKind;
  /** The value (`undefined` for a remembered failure). */
  value: T;
  /** The remembered failure, for kind `"error"`. */
  failure?: { name: string; message: string };
}

/** The stored form of an entry and how long Redis keeps it (ms). */
export interface Encoded {
  /** What the write script stores. */
  stored: string | Uint8Array;
  /** Its Redis expiry (PX). */
  px: number;
}

/** The options that decide how entries are encoded. */
export interface EntryOptions<T> {
  /** The user's codec for the payload. */
  codec: Codec<T>;
  /** The key prefix (only for messages). */
  prefix: string;
  /** How long a value stays fresh (ms), checked. */
  ttl: (value: T) => number;
  /** Checks a value before it is used or written, or `null`. */
  validate: ((value: T) => boolean) | null;
  /** The most the fresh time is shortened by, at random (ms). */
  jitter: number;
  /** The stale-while-revalidate window after freshness (ms). */
  staleWhileRevalidate: number;
  /** The stale-if-error window after freshness (ms). */
  staleIfError: number;
  /** How long a failure is remembered (ms). */
  negativeTtl: number;
  /** Whether `null` and `undefined` results are stored. */
  cacheNullish: boolean;
  /** Uniform in [0, 1), for the jitter. */
  random: () => number;
}

/**
 * Encodes results into entries and decodes entries into results, for one
 * cached function. An entry that cannot be decoded is a miss; it is handed
 * to `report` once per stored value (the same corrupt value read again and
 * again is reported once).
 *
 * @typeParam T The cached function's result type.
 */
export class EntryCodec<T> {
  readonly #options: EntryOptions<T>;
  readonly #report: (
    key: string,
    err: CodecError,
    phase: "decode" | "validate",
  ) => void;
  /** The last undecodable value reported per key, so one is reported once. */
  readonly #reported = new Map<string, string>();

  /**
   * @param options The cache's options.
   * @param report Told of each undecodable value (once per stored value),
   *   and of each that fails the `validate` option (`phase`).
   */
  constructor(
    options: EntryOptions<T>,
    report: (
      key: string,
      err: CodecError,
      phase: "decode" | "validate",
    ) => void,
  ) {
    this.#options = options;
    this.#report = report;
  }

  /** Reports an undecodable entry, once per stored value. */
  #corrupt(
    k: string,
    stored: string | Uint8Array,
    err: CodecError,
    phase: "decode" | "validate" = "decode",
  ): void {
    const text = typeof stored === "string"
      ? stored
      : new TextDecoder().decode(stored);
    if (this.#reported.get(k) === text) return;
    if (this.#reported.size >= 1_000) this.#reported.clear();
    this.#reported.set(k, text);
    this.#report(k, err, phase);
  }

  /**
   * Why `value` fails the `validate` option (`null`: it passes, or there is
   * none). A validator that throws fails it.
   */
  invalid(value: T): string | null {
    const validate = this.#options.validate;
    if (validate === null) return null;
    try {
      return validate(value) === true
        ? null
        : "failed the validate option (it returned false)";
    } catch (err) {
      return `failed the validate option (it threw: ${
        (err as Error)?.message ?? err
      })`;
    }
  }

  /** An entry was written at `k`: a corrupt value there is gone. */
  written(k: string): void {
    this.#reported.delete(k);
  }

  /** Reports a stored value that cannot be decoded; it counts as a miss. */
  #undecodable(
    k: string,
    stored: string | Uint8Array,
    what: string,
    err: unknown,
  ): null {
    this.#corrupt(
      k,
      stored,
      new CodecError(
        `The entry at ${cacheEntryKey(k, this.#options.prefix)} ${what} (${
          (err as Error)?.message ?? err
        }); treated as a miss and will be overwritten`,
        { key: k, cause: err },
      ),
    );
    return null;
  }

  /**
   * Decodes what GET returned for key `k`.
   *
   * @param gen For a function with a `namespace`: the namespace's current
   *   generation token (`null`: none yet, so no entry is current); an entry
   *   written under another is a miss (not reported: `invalidateAll()` made
   *   it so). `undefined`: no namespace, not checked.
   * @returns The entry, or `null` for none, one of another generation, or
   *   one that cannot be decoded (reported).
   */
  decode(
    k: string,
    stored: string | Uint8Array | null,
    gen?: string | null,
  ): Entry<T> | null {
    if (stored === null) return null;
    let raw;
    try {
      raw = parseEntry(stored);
    } catch (err) {
      return this.#undecodable(k, stored, "is not a cached() entry", err);
    }
    return this.decodeParsed(k, raw, gen, stored);
  }

  /**
   * {@linkcode EntryCodec.decode} after {@linkcode parseEntry}: for an entry
   * parsed once and kept (the memory tier), whose payload is decoded anew.
   *
   * @param stored What `raw` was parsed from, for the report of a value that
   *   cannot be decoded (default: rebuilt from `raw`'s payload).
   */
  decodeParsed(
    k: string,
    raw: RawEntry,
    gen?: string | null,
    stored: string | Uint8Array = raw.payload,
  ): Entry<T> | null {
    if (gen !== undefined && raw.gen !== gen) return null;
    try {
      let value: T;
      let failure: Entry<T>["failure"];
      switch (raw.kind) {
        case "undefined":
          value = undefined as T;
          break;
        case "null":
          value = null as T;
          break;
        case "error": {
          const text = typeof raw.payload === "string"
            ? raw.payload
            : new TextDecoder().decode(raw.payload);
          const f = JSON.parse(text) as { name: string; message: string };
          if (typeof f?.name !== "string" || typeof f.message !== "string") {
            throw new TypeError("malformed failure record");
          }
          value = undefined as T;
          failure = f;
          break;
        }
        default: {
          const codec = this.#options.codec;
          value = codec.binary === true
            ? codec.decode(raw.payload as Uint8Array)
            : codec.decode(raw.payload as string);
          const why = this.invalid(value);
          if (why !== null) {
            this.#corrupt(
              k,
              stored,
              new CodecError(
                `The value at ${
                  cacheEntryKey(k, this.#options.prefix)
                } ${why}; treated as a miss and will be overwritten`,
                { key: k },
              ),
              "validate",
            );
            return null;
          }
        }
      }
      return {
        createdAt: raw.createdAt,
        delta: raw.delta,
        freshUntil: raw.freshUntil,
        staleUntil: raw.staleUntil,
        gen: raw.gen,
        kind: raw.kind,
        value,
        failure,
      };
    } catch (err) {
      return this.#undecodable(k, stored, "could not be decoded", err);
    }
  }

  /**
   * The stored form of a value, with its metadata and Redis expiry; `null`
   * for a nullish value that is not to be cached.
   *
   * @param gen The namespace's generation token the writer read ("": no
   *   namespace).
   * @throws {CodecError} When the codec cannot encode it.
   */
  encodeValue(
    k: string,
    value: T,
    createdAt: number,
    delta: number,
    gen: string,
  ): Encoded | null {
    const o = this.#options;
    let kind: EntryKind;
    let payload: string | Uint8Array = "";
    if (value === undefined || value === null) {
      if (!o.cacheNullish) return null;
      kind = value === undefined ? "undefined" : "null";
    } else {
      kind = "value";
      const codec = o.codec;
      try {
        payload = codec.binary === true
          ? codec.encode(value)
          : codec.encode(value);
      } catch (err) {
        throw new CodecError(
          `cached(): the result for key "${k}" cannot be encoded by the ${
            o.codec === jsonCodec ? "JSON" : "configured"
          } codec (${
            String((err as Error)?.message ?? err).replace(/\s+/g, " ")
          }); nothing was written. ` +
            "Return a value the codec can store (JSON: no BigInt, no cycles), or pass a codec option.",
          { key: k, cause: err },
        );
      }
      const ok = codec.binary === true
        ? payload instanceof Uint8Array
        : typeof payload === "string";
      if (!ok) {
        throw new CodecError(
          `cached(): the codec's encode() returned ${typeof payload}, not ${
            codec.binary === true ? "a Uint8Array" : "a string"
          }, for key "${k}"; nothing was written`,
          { key: k },
        );
      }
    }
    const now = Date.now();
    const ttl = o.ttl(value); // throws a RangeError for a bad result
    // A jitter below a fixed ttl is checked up front; a ttl function's
    // result may be shorter: the jitter then leaves at least 1 ms.
    const jitter = Math.min(o.jitter, ttl - 1);
    const fresh = ttl -
      (jitter > 0 ? Math.floor(o.random() * (jitter + 1)) : 0);
    const freshUntil = now + fresh;
    const staleUntil = freshUntil + o.staleWhileRevalidate;
    const keep = fresh + Math.max(o.staleWhileRevalidate, o.staleIfError);
    return {
      stored: encodeEntry(
        { createdAt, delta, freshUntil, staleUntil, gen },
        kind,
        payload,
      ),
      px: keep,
    };
  }

  /** The stored form of a failure that negative caching remembers. */
  encodeFailure(
    err: unknown,
    createdAt: number,
    delta: number,
    gen: string,
  ): Encoded {
    const e = err as { name?: unknown; message?: unknown } | null;
    const name = typeof e?.name === "string" ? e.name : "Error";
    const message = typeof e?.message === "string" ? e.message : String(err);
    const freshUntil = Date.now() + this.#options.negativeTtl;
    return {
      stored: encodeEntry(
        { createdAt, delta, freshUntil, staleUntil: freshUntil, gen },
        "error",
        JSON.stringify({ name, message }),
      ) as string,
      px: this.#options.negativeTtl,
    };
  }
}

/** The error a remembered failure rejects with. */
export function failureOf<T>(k: string, e: Entry<T>): CachedFailureError {
  return new CachedFailureError(e.failure!.message, {
    key: k,
    errorName: e.failure!.name,
  });
}

/** The value of an acceptable entry (throws for a remembered failure). */
export function valueOf<T>(k: string, e: Entry<T>): T {
  if (e.kind === "error") throw failureOf(k, e);
  return e.value;
}

/** Whether a waiter (or a new leader) can use this entry. */
export function acceptable<T>(
  e: Entry<T> | null,
  now: number,
  minCreatedAt: number,
): e is Entry<T> {
  return e !== null && now < e.freshUntil && e.createdAt >= minCreatedAt;
}

/**
 * The newer of a stale value kept to serve (`prev`) and an entry just read:
 * `e` when it holds a value and was computed after `prev`.
 */
export function newerValue<T>(
  prev: Entry<T> | null,
  e: Entry<T> | null,
): Entry<T> | null {
  return e !== null && e.kind !== "error" &&
      (prev === null || e.createdAt > prev.createdAt)
    ? e
    : prev;
}
