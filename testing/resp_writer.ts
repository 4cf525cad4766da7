/**
 * A test-side RESP2/RESP3 serializer, written independently of lib/ so the
 * decoder can be checked against it: a `Frame` says exactly which RESP type to
 * write (the decoded values alone cannot: a simple string and a bulk string
 * both decode to a `string`), `writeFrame` turns it into bytes, and
 * `expectedValue` says what the decoder should return for it. Also a seeded
 * random frame generator for property tests, and `normalize`, which
 * turns decoded values into plain data that `assert.deepStrictEqual` compares
 * exactly (type by type, Map and Set in order, errors by message).
 */

import { ReplyError } from "../lib/errors.ts";
import { Push, type Reply } from "../lib/resp/decoder.ts";
import type { Rand } from "./random.ts";

export type Frame =
  | { t: "simple"; v: string }
  | { t: "error"; v: string }
  | { t: "int"; v: number | bigint }
  | { t: "bulk"; v: Uint8Array | string | null }
  | { t: "array"; v: Frame[] | null }
  | { t: "null" }
  | { t: "map"; v: [Frame, Frame][] }
  | { t: "set"; v: Frame[] }
  | { t: "double"; v: number }
  | { t: "bool"; v: boolean }
  | { t: "bignum"; v: bigint }
  | { t: "verbatim"; format: string; v: string | Uint8Array }
  | { t: "bloberror"; v: string }
  | { t: "push"; v: Frame[] }
  | { t: "attr"; attrs: [Frame, Frame][]; v: Frame };

const enc = new TextEncoder();
/** UTF-8 decoding as Redis values need it: a leading BOM is data, kept. */
const dec = new TextDecoder("utf-8", { ignoreBOM: true });

function bytes(v: string | Uint8Array): Uint8Array {
  return typeof v === "string" ? enc.encode(v) : v;
}

/** Appends the RESP bytes of `f` to `out`. */
function write(f: Frame, out: Uint8Array[]): void {
  const line = (s: string): void => {
    out.push(enc.encode(s + "\r\n"));
  };
  const blob = (type: string, b: Uint8Array) => {
    line(`${type}${b.length}`);
    out.push(b);
    line("");
  };
  switch (f.t) {
    case "simple":
      return line(`+${f.v}`);
    case "error":
      return line(`-${f.v}`);
    case "int":
      return line(`:${f.v}`);
    case "bulk":
      if (f.v === null) return line("$-1");
      return blob("$", bytes(f.v));
    case "array":
      if (f.v === null) return line("*-1");
      line(`*${f.v.length}`);
      for (const e of f.v) write(e, out);
      return;
    case "null":
      return line("_");
    case "map":
      line(`%${f.v.length}`);
      for (const [k, v] of f.v) {
        write(k, out);
        write(v, out);
      }
      return;
    case "set":
      line(`~${f.v.length}`);
      for (const e of f.v) write(e, out);
      return;
    case "double": {
      const v = f.v;
      const s = Number.isNaN(v)
        ? "nan"
        : v === Infinity
        ? "inf"
        : v === -Infinity
        ? "-inf"
        : Object.is(v, -0)
        ? "-0"
        : String(v);
      return line(`,${s}`);
    }
    case "bool":
      return line(`#${f.v ? "t" : "f"}`);
    case "bignum":
      return line(`(${f.v}`);
    case "verbatim": {
      const body = bytes(f.v);
      const b = new Uint8Array(4 + body.length);
      b.set(enc.encode(`${f.format}:`));
      b.set(body, 4);
      return blob("=", b);
    }
    case "bloberror":
      return blob("!", enc.encode(f.v));
    case "push":
      line(`>${f.v.length}`);
      for (const e of f.v) write(e, out);
      return;
    case "attr":
      line(`|${f.attrs.length}`);
      for (const [k, v] of f.attrs) {
        write(k, out);
        write(v, out);
      }
      return write(f.v, out);
  }
}

/** Joins byte arrays into one. */
export function concatBytes(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** The RESP bytes of one frame. */
export function writeFrame(f: Frame): Uint8Array {
  const out: Uint8Array[] = [];
  write(f, out);
  return concatBytes(out);
}

/** The RESP bytes of many frames, back to back. */
export function writeFrames(frames: Frame[]): Uint8Array {
  const out: Uint8Array[] = [];
  for (const f of frames) write(f, out);
  return concatBytes(out);
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** What the decoder must return for `f` (bulk strings as bytes when `raw`). */
export function expectedValue(f: Frame, raw = false): Reply | Push {
  const blobValue = (v: string | Uint8Array) =>
    raw ? bytes(v) : typeof v === "string" ? v : dec.decode(v);
  switch (f.t) {
    case "simple":
      return f.v;
    case "error":
    case "bloberror":
      return new ReplyError(f.v);
    case "int": {
      const b = BigInt(f.v);
      return b >= -MAX_SAFE && b <= MAX_SAFE ? Number(b) : b;
    }
    case "bulk":
      return f.v === null ? null : blobValue(f.v);
    case "array":
      return f.v === null
        ? null
        : f.v.map((e) => expectedValue(e, raw) as Reply);
    case "null":
      return null;
    case "map":
      return new Map(
        f.v.map((
          [k, v],
        ) => [expectedValue(k, raw) as Reply, expectedValue(v, raw) as Reply]),
      );
    case "set":
      return new Set(f.v.map((e) => expectedValue(e, raw) as Reply));
    case "double":
    case "bool":
    case "bignum":
      return f.v;
    case "verbatim":
      return blobValue(f.v);
    case "push":
      return new Push(f.v.map((e) => expectedValue(e, raw) as Reply));
    case "attr":
      return expectedValue(f.v, raw);
  }
}

/**
 * Plain data for exact comparison: every value is tagged with its type, so a
 * `number` never equals a `bigint`, a string never equals bytes, and Maps and
 * Sets compare in insertion order.
 */
export function normalize(v: unknown): unknown {
  if (v === null) return null;
  switch (typeof v) {
    case "string":
      return { str: v };
    case "number":
      return { num: Object.is(v, -0) ? "-0" : String(v) };
    case "bigint":
      return { big: String(v) };
    case "boolean":
      return { bool: v };
  }
  if (v instanceof Uint8Array) {
    return { bytes: Array.from(v).join(",") };
  }
  if (v instanceof ReplyError) {
    return { error: v.message, code: v.code, name: v.name };
  }
  if (Array.isArray(v)) return v.map(normalize);
  if (v instanceof Map) {
    return { map: [...v].map(([k, x]) => [normalize(k), normalize(x)]) };
  }
  if (v instanceof Set) return { set: [...v].map(normalize) };
  if (v instanceof Push) return { push: v.data.map(normalize) };
  return { unexpected: String(v), type: typeof v };
}

const LINE_CHARS = [
  ..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_:.,;!?$*%~#()=>|+",
  "é",
  "ß",
  "✓",
  "😀",
  "\t",
  "\0",
];

/** A string that may appear on a RESP line (no CR, no LF). */
export function randomLine(r: Rand, max = 20): string {
  let s = "";
  const n = r.int(max + 1);
  for (let i = 0; i < n; i++) s += r.pick(LINE_CHARS);
  return s;
}

/** Random bytes, biased towards the ones that matter to a RESP parser. */
export function randomBytes(r: Rand, max: number): Uint8Array {
  const n = r.chance(0.1) ? 0 : r.int(max + 1);
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    b[i] = r.chance(0.3) ? r.pick([13, 10, 0, 36, 42, 43, 45, 58]) : r.int(256);
  }
  return b;
}

const INTS: (number | bigint)[] = [
  0,
  1,
  -1,
  9,
  10,
  -10,
  999_999_999_999_999,
  -999_999_999_999_999,
  Number.MAX_SAFE_INTEGER,
  -Number.MAX_SAFE_INTEGER,
  2n ** 53n,
  -(2n ** 53n),
  2n ** 53n + 1n,
  2n ** 63n - 1n,
  -(2n ** 63n),
  1234567890123456n,
];

const DOUBLES = [
  0,
  -0,
  1.5,
  -2.25,
  3.141592653589793,
  1e300,
  -1e-300,
  5e-324,
  Infinity,
  -Infinity,
  NaN,
  0.1 + 0.2,
];

function randomScalar(r: Rand, resp3: boolean): Frame {
  const k = r.int(resp3 ? 13 : 7);
  switch (k) {
    case 0:
      return { t: "simple", v: randomLine(r) };
    case 1:
      return { t: "error", v: `ERR ${randomLine(r)}` };
    case 2:
      return {
        t: "int",
        v: r.chance(0.5) ? r.pick(INTS) : r.int(2_000_001) - 1_000_000,
      };
    case 3:
      return { t: "bulk", v: null };
    case 4:
      return {
        t: "bulk",
        v: r.chance(0.02)
          ? randomBytes(r, 70_000) // longer than one read, often
          : randomBytes(r, 80),
      };
    case 5:
      return { t: "bulk", v: (r.chance(0.2) ? "\uFEFF" : "") + randomLine(r) };
    case 6:
      return { t: "array", v: null };
    case 7:
      return { t: "null" };
    case 8:
      return {
        t: "double",
        v: r.chance(0.5) ? r.pick(DOUBLES) : (r.next() - 0.5) * 10 ** r.int(30),
      };
    case 9:
      return { t: "bool", v: r.chance(0.5) };
    case 10:
      return {
        t: "bignum",
        v: (r.chance(0.5) ? -1n : 1n) * BigInt("1" + "7".repeat(r.int(40))),
      };
    case 11:
      return {
        t: "verbatim",
        format: r.pick(["txt", "mkd"]),
        v: r.chance(0.5) ? randomLine(r, 40) : randomBytes(r, 40),
      };
    default:
      return { t: "bloberror", v: `SYNTAX ${randomLine(r)}\r\nmore` };
  }
}

/** A key for a map or set member: strings and integers, like Redis sends. */
function randomKey(r: Rand): Frame {
  return r.chance(0.7)
    ? { t: "bulk", v: randomLine(r, 6) }
    : { t: "int", v: r.int(20) };
}

/**
 * A random reply frame, nesting aggregates up to `depth` levels. RESP3 types
 * (maps, sets, doubles, attributes, ...) only when `resp3`.
 */
export function randomFrame(r: Rand, resp3: boolean, depth = 3): Frame {
  const n = () => (r.chance(0.1) ? 0 : r.int(r.chance(0.1) ? 40 : 6));
  const choice = depth <= 0 ? 0 : r.int(resp3 ? 8 : 4);
  let f: Frame;
  switch (choice) {
    case 1:
    case 2:
      f = {
        t: "array",
        v: Array.from({ length: n() }, () => randomFrame(r, resp3, depth - 1)),
      };
      break;
    case 4:
      f = {
        t: "map",
        v: Array.from(
          { length: n() },
          () => [randomKey(r), randomFrame(r, resp3, depth - 1)],
        ),
      };
      break;
    case 5:
      f = { t: "set", v: Array.from({ length: n() }, () => randomKey(r)) };
      break;
    default:
      f = randomScalar(r, resp3);
  }
  if (resp3 && r.chance(0.05)) {
    f = {
      t: "attr",
      attrs: Array.from(
        { length: r.int(3) },
        () => [randomKey(r), randomFrame(r, resp3, 1)],
      ),
      v: f,
    };
  }
  return f;
}

/** A random top-level frame: sometimes a RESP3 push frame. */
export function randomTopFrame(r: Rand, resp3: boolean): Frame {
  if (resp3 && r.chance(0.05)) {
    return {
      t: "push",
      v: [
        { t: "bulk", v: "message" },
        { t: "bulk", v: randomLine(r, 8) },
        randomFrame(r, resp3, 1),
      ],
    };
  }
  return randomFrame(r, resp3);
}
