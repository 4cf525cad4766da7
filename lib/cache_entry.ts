/**
 * The stored form of one `cached` entry: a one-line header with its metadata,
 * then the codec's payload, and the XFetch early-refresh rule.
 *
 * Layout (all times are Unix ms, written by the process that computed it):
 *
 * ```
 * rsp1 <createdAt> <delta> <freshUntil> <staleUntil> <kind>\n<payload>
 * ```
 *
 * `kind` is `v` (a value; payload from the codec), `u` (`undefined`) or `n`
 * (`null`), both without payload, or `e` (a remembered failure; payload is
 * JSON `{name, message}`).
 * A tombstone, `rsp1-tomb <token>` (what `invalidate` wrote before it kept a
 * separate invalidation marker), reads as a miss.
 *
 * @module
 */

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
}

/** A decoded entry, before the codec ran on its payload. */
export interface RawEntry extends EntryMeta {
  kind: EntryKind;
  /** The payload: text, or bytes when read raw. */
  payload: string | Uint8Array;
}

const MAGIC = "rsp1";
const TOMB = "rsp1-tomb ";
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
  } ${Math.round(meta.staleUntil)} ${KIND_CODES[kind]}\n`;
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
 * @returns The entry, `"tombstone"` for an invalidation marker.
 * @throws {EntryFormatError} When it is not an entry this version wrote.
 */
export function parseEntry(
  stored: string | Uint8Array,
): RawEntry | "tombstone" {
  let header: string;
  let payload: string | Uint8Array;
  if (typeof stored === "string") {
    if (stored.startsWith(TOMB)) return "tombstone";
    const nl = stored.indexOf("\n");
    if (nl === -1) throw new EntryFormatError("no header line");
    header = stored.slice(0, nl);
    payload = stored.slice(nl + 1);
  } else {
    const nl = stored.indexOf(NL);
    const head = decoder.decode(stored.subarray(0, nl === -1 ? 64 : nl));
    if (head.startsWith(TOMB)) return "tombstone";
    if (nl === -1) throw new EntryFormatError("no header line");
    header = head;
    payload = stored.subarray(nl + 1);
  }
  // "rsp1 <createdAt> <delta> <freshUntil> <staleUntil> <kind>"
  if (!header.startsWith("rsp1 ")) {
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
  const kind = header.length === at + 1 ? KINDS[header[at]] : undefined;
  if (kind === undefined) {
    throw new EntryFormatError("malformed entry header");
  }
  return { createdAt, delta, freshUntil, staleUntil, kind, payload };
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
