/**
 * Decoder fuzzer. Every case is a seeded random RESP2/RESP3 stream, cut at
 * random points into random chunks and fed to a fresh `RespDecoder`:
 *
 * - valid streams (frames from `testing/resp_writer.ts`) must decode to exactly
 *   the values `expectedValue` gives, leaving no byte behind;
 * - mutated streams (byte flips, truncations, inserted junk, deleted ranges,
 *   huge declared lengths, deep nesting, bad scalar lines, splices; run with
 *   the default limits or small random ones) must either throw
 *   `ProtocolError` or decode to what an independent reference decoder (below:
 *   whole-buffer, regular expressions, written apart from lib/) says, value
 *   for value, erroring at the same reply.
 *
 * Anything else counts as a failure: another exception, a wrong value, a
 * disagreement with the reference, or a case taking more than 2 s.
 *
 * Usage: deno task fuzz [--cases N] [--seed S] [--start I] [--json]
 *        bun scripts/fuzz_decoder.ts [--cases N] [--seed S] [--start I]
 * Case i of seed S is the same on every run of a runtime: `--start i --cases 1`
 * replays it. Deno and Bun differ in a few cases: the frame generator's
 * doubles use `10 ** k`, and V8 gives `10 ** 23` as 1.0000000000000001e+23
 * where JavaScriptCore gives 1e23.
 *
 * @module
 */

import process from "node:process";
import { ProtocolError, ReplyError } from "../lib/errors.ts";
import {
  type DecoderLimits,
  DEFAULT_DECODER_LIMITS,
  NEED_MORE,
  Push,
  RespDecoder,
} from "../lib/resp/decoder.ts";
import {
  concatBytes,
  expectedValue,
  type Frame,
  normalize,
  randomBytes,
  randomTopFrame,
  writeFrames,
} from "../testing/resp_writer.ts";
import { mulberry32, Rand } from "../testing/random.ts";

/** What a fuzz run found. */
export interface FuzzReport {
  cases: number;
  seed: number;
  /** Valid streams that decoded to exactly the expected values. */
  validOk: number;
  /** Mutated streams that threw ProtocolError where the reference fails. */
  mutatedError: number;
  /** Mutated streams that still decoded, to the reference's values. */
  mutatedDecoded: number;
  /** Everything else; must be 0. */
  failures: number;
  /** The first few failures, with their case numbers. */
  failureSamples: string[];
  ms: number;
  /** Slowest single case, ms. */
  slowestMs: number;
  /** heapUsed at the start, at the end, and the most seen (sampled), bytes. */
  heapStart: number;
  heapEnd: number;
  heapMax: number;
}

/** Options of {@linkcode fuzzDecoder}. */
export interface FuzzOptions {
  cases: number;
  seed: number;
  /** First case number (default 0): `start: i, cases: 1` replays case i. */
  start?: number;
  /** Called every 10,000 cases. */
  progress?: (done: number, report: FuzzReport) => void;
}

const SLOW_MS = 2_000;
/** The decoder's fixed limit on a header or simple line (not configurable). */
const MAX_LINE = 1024 * 1024;

// ---------------------------------------------------------------------------
// Reference decoder: whole buffer in, values out, no incremental state.

const TYPES = new Set("+-:$*_#,(=!%~>|");
const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });
const INTEGER = /^[+-]?[0-9]+$/;
const LENGTH = /^[0-9]{1,20}$/;
const DOUBLE = /^[+-]?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$/;
const INF = /^[+-]?inf$/i;
const NAN = /^[+-]?nan(\([0-9A-Za-z_]*\))?$/i;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

interface Outcome {
  values: unknown[];
  /** True when the stream is not valid RESP (after `values`). */
  error: boolean;
}

function ascii(b: Uint8Array, from: number, to: number): string {
  let s = "";
  for (let i = from; i < to; i++) s += String.fromCharCode(b[i]);
  return s;
}

/** Decodes all of `b` the slow, obvious way. */
export function referenceDecode(
  b: Uint8Array,
  rawAt: (reply: number) => boolean,
  limits: Required<DecoderLimits>,
): Outcome {
  interface Open {
    type: string;
    want: number;
    items: unknown[];
  }
  const values: unknown[] = [];
  const stack: Open[] = [];
  const fail = (): Outcome => ({ values, error: true });
  const incomplete = (): Outcome => ({ values, error: false });
  /** An aggregate's value, or `undefined` for an attribute (dropped). */
  const close = (o: Open): unknown => {
    switch (o.type) {
      case "*":
        return o.items;
      case ">":
        return new Push(o.items as never[]);
      case "~":
        return new Set(o.items);
      case "|":
        return undefined;
      default: {
        const m = new Map();
        for (let i = 0; i < o.items.length; i += 2) {
          m.set(o.items[i], o.items[i + 1]);
        }
        return m;
      }
    }
  };
  let p = 0;
  for (;;) {
    if (p >= b.length) return incomplete();
    const type = String.fromCharCode(b[p]);
    if (!TYPES.has(type)) return fail();
    const cr = b.indexOf(13, p + 1);
    if (cr === -1) return b.length - p > MAX_LINE ? fail() : incomplete();
    if (cr - p > MAX_LINE) return fail();
    if (cr + 1 >= b.length) return incomplete();
    if (b[cr + 1] !== 10) return fail();
    const body = p + 1;
    let after = cr + 2;
    let value: unknown = undefined;
    let have = true;
    const line = () => ascii(b, body, cr);
    switch (type) {
      case "+":
        value = utf8.decode(b.subarray(body, cr));
        break;
      case "-":
        value = new ReplyError(utf8.decode(b.subarray(body, cr)));
        break;
      case ":": {
        const s = line();
        if (!INTEGER.test(s)) return fail();
        const n = BigInt(s);
        value = n >= -MAX_SAFE && n <= MAX_SAFE ? Number(n) : n;
        break;
      }
      case "_":
        if (cr !== body) return fail();
        value = null;
        break;
      case "#": {
        const s = line();
        if (s !== "t" && s !== "f") return fail();
        value = s === "t";
        break;
      }
      case ",": {
        const s = line();
        if (DOUBLE.test(s)) value = Number(s);
        else if (INF.test(s)) value = s[0] === "-" ? -Infinity : Infinity;
        else if (NAN.test(s)) value = NaN;
        else return fail();
        break;
      }
      case "(": {
        const s = line();
        if (!INTEGER.test(s)) return fail();
        value = BigInt(s);
        break;
      }
      case "$":
      case "=":
      case "!": {
        const s = line();
        if (s === "-1" && type === "$") {
          value = null;
          break;
        }
        if (!LENGTH.test(s)) return fail();
        const n = Number(s);
        if (n > limits.maxBulkLength) return fail();
        const end = after + n;
        if (end + 2 > b.length) return incomplete();
        if (b[end] !== 13 || b[end + 1] !== 10) return fail();
        const data = b.subarray(after, end);
        const raw = rawAt(values.length);
        if (type === "!") value = new ReplyError(utf8.decode(data));
        else if (type === "=") {
          if (n < 4 || data[3] !== 58) return fail();
          value = raw ? data.slice(4) : utf8.decode(data.subarray(4));
        } else value = raw ? data.slice() : utf8.decode(data);
        after = end + 2;
        break;
      }
      default: { // * % ~ > |
        const s = line();
        if (s === "-1" && type === "*") {
          value = null;
          break;
        }
        if (!LENGTH.test(s)) return fail();
        const n = Number(s);
        if (n > limits.maxAggregateLength) return fail();
        if (stack.length >= limits.maxDepth) return fail();
        const o: Open = {
          type,
          want: type === "%" || type === "|" ? 2 * n : n,
          items: [],
        };
        if (o.want > 0) {
          stack.push(o);
          have = false;
        } else {
          value = close(o);
          have = value !== undefined;
        }
      }
    }
    p = after;
    while (have) {
      const top = stack[stack.length - 1];
      if (top === undefined) {
        values.push(value);
        break;
      }
      top.items.push(value);
      if (top.items.length < top.want) break;
      stack.pop();
      value = close(top);
      have = value !== undefined;
    }
  }
}

// ---------------------------------------------------------------------------
// Cases.

/** A per-case seed, so any case can be replayed alone. */
function caseSeed(seed: number, i: number): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  h = Math.imul(h ^ (i >>> 0), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16) ^ Math.floor(i / 2 ** 32)) >>> 0;
}

/** How a case cuts its stream into chunks. */
function chunker(r: Rand, length: number): () => number {
  switch (r.int(6)) {
    case 0:
      return () => length;
    case 1: // one byte at a time (long streams: a few bytes)
      return length <= 4096 ? () => 1 : () => 1 + r.int(8);
    case 2:
      return () => 1 + r.int(16);
    case 3:
      return () => 1 + r.int(512);
    case 4:
      return () => 1 + r.int(Math.max(1, length));
    default:
      return () => (r.chance(0.5) ? 1 : 1 + r.int(r.chance(0.5) ? 64 : 9000));
  }
}

interface Decoded {
  values: unknown[];
  error: unknown;
  buffered: number;
}

function decodeChunked(
  b: Uint8Array,
  size: () => number,
  rawAt: (reply: number) => boolean,
  limits: DecoderLimits | undefined,
): Decoded {
  const d = new RespDecoder(limits);
  const values: unknown[] = [];
  try {
    for (let off = 0; off < b.length;) {
      const n = Math.max(1, size());
      d.feed(b.subarray(off, off + n));
      off += n;
      for (;;) {
        const v = d.read(rawAt(values.length));
        if (v === NEED_MORE) break;
        values.push(v);
      }
    }
  } catch (error) {
    return { values, error, buffered: -1 };
  }
  return { values, error: null, buffered: d.buffered };
}

const enc = new TextEncoder();
const SPECIAL = [
  13,
  10,
  0,
  36,
  42,
  43,
  45,
  58,
  44,
  40,
  35,
  95,
  37,
  126,
  62,
  124,
];
const HEADER_TYPES = new Set([36, 42, 37, 126, 61, 33, 62, 124]);
const SCALAR_TYPES = new Set([44, 58, 40, 35, 95, 43, 45]);
const LINE_VALUES = [
  "0x10",
  "1_0",
  " 1",
  "1 ",
  "",
  "Infinity",
  ".5",
  "1.",
  "1e",
  "+inf",
  "-nan",
  "nan(1)",
  "1e+5",
  "007",
  "-0",
  "t",
  "f",
  "tt",
  "9".repeat(30),
  "-" + "9".repeat(30),
  "1.5",
  "inf",
  "nan",
  "١",
];

/** Offsets where a line starts (after CRLF, or 0) with one of `types`. */
function lineStarts(b: Uint8Array, types: Set<number>): number[] {
  const out: number[] = [];
  for (let i = 0; i < b.length; i++) {
    if ((i === 0 || (b[i - 1] === 10 && b[i - 2] === 13)) && types.has(b[i])) {
      out.push(i);
    }
  }
  return out;
}

/** Replaces what follows the type byte at `at`, up to the next CR. */
function replaceLine(b: Uint8Array, at: number, text: string): Uint8Array {
  let cr = b.indexOf(13, at + 1);
  if (cr === -1) cr = b.length;
  return concatBytes([b.subarray(0, at + 1), enc.encode(text), b.subarray(cr)]);
}

function mutate(
  r: Rand,
  b: Uint8Array,
  limits: Required<DecoderLimits>,
  resp3: boolean,
): Uint8Array {
  const at = () => r.int(b.length + 1);
  switch (r.int(20)) {
    case 0:
    case 1: { // a byte replaced
      if (b.length === 0) return b;
      const c = b.slice();
      c[r.int(c.length)] = r.chance(0.5) ? r.pick(SPECIAL) : r.int(256);
      return c;
    }
    case 2:
    case 3: { // a bit flipped
      if (b.length === 0) return b;
      const c = b.slice();
      c[r.int(c.length)] ^= 1 << r.int(8);
      return c;
    }
    case 4:
    case 5: // truncated
      return b.subarray(0, r.int(b.length));
    case 6:
    case 7: { // junk inserted
      const i = at();
      return concatBytes([b.subarray(0, i), randomBytes(r, 24), b.subarray(i)]);
    }
    case 8: { // a range deleted
      const i = at();
      return concatBytes([b.subarray(0, i), b.subarray(i + 1 + r.int(24))]);
    }
    case 9:
    case 10:
    case 11: { // a huge (or odd) declared length
      const starts = lineStarts(b, HEADER_TYPES);
      if (starts.length === 0) return b;
      const { maxBulkLength: bulk, maxAggregateLength: agg } = limits;
      const n = r.pick([
        bulk,
        bulk + 1,
        agg,
        agg + 1,
        2 * agg + 1,
        1_000_000_000,
        2 ** 31,
        2 ** 32,
        2 ** 53 + 1,
        1e25,
        r.int(100),
      ]);
      const text = r.chance(0.8)
        ? BigInt(n).toString()
        : r.pick(["-2", "-0", "+1", "01", "", " 1", "1 ", "1e3", "0x10"]);
      return replaceLine(b, r.pick(starts), text);
    }
    case 12:
    case 13: { // deep nesting in front
      const max = limits.maxDepth;
      const k = r.pick([max - 1, max, max + 1, max + 2, r.int(2 * max + 3)]);
      const level = r.pick(
        resp3
          ? [
            "*1\r\n",
            "%1\r\n+k\r\n",
            "~1\r\n",
            ">1\r\n",
            "|1\r\n+a\r\n+b\r\n*1\r\n",
          ]
          : ["*1\r\n"],
      );
      return concatBytes([enc.encode(level.repeat(Math.max(0, k))), b]);
    }
    case 14: { // a slice duplicated elsewhere
      const i = r.int(b.length + 1);
      const j = Math.min(b.length, i + r.int(64));
      const k = at();
      return concatBytes([b.subarray(0, k), b.subarray(i, j), b.subarray(k)]);
    }
    case 15:
    case 16:
    case 17: { // a scalar line rewritten
      const starts = lineStarts(b, SCALAR_TYPES);
      if (starts.length === 0) return b;
      const i = r.pick(starts);
      const c = b.slice();
      if (r.chance(0.3)) c[i] = r.pick([44, 58, 40, 35, 95]);
      return replaceLine(c, i, r.pick(LINE_VALUES));
    }
    default: { // two streams spliced
      const other = writeFrames([randomTopFrame(r, resp3)]);
      return concatBytes([
        b.subarray(0, at()),
        other.subarray(r.int(other.length)),
      ]);
    }
  }
}

/**
 * Whether two decoded values are the same by the rules of `normalize` from
 * testing/resp_writer.ts (type by type: a number never equals a bigint, -0 is
 * not 0, bytes by content, errors by message, code and name, Maps and Sets
 * in order). Scalars go through `normalize`; aggregates are walked without
 * recursion, since fuzzed values nest 10,000 deep, more than a recursive
 * `normalize` or `JSON.stringify` has stack for.
 */
function same(a: unknown, b: unknown): boolean {
  const work: unknown[] = [a, b];
  while (work.length > 0) {
    const y = work.pop();
    const x = work.pop();
    if (!isAggregate(x) || !isAggregate(y)) {
      if (isAggregate(x) || isAggregate(y)) return false;
      if (typeof x === "string" && typeof y === "string") {
        if (x !== y) return false;
        continue;
      }
      if (x instanceof Uint8Array && y instanceof Uint8Array) {
        // What normalize would say, without joining every byte into text.
        if (x.length !== y.length || x.some((v, i) => v !== y[i])) {
          return false;
        }
        continue;
      }
      if (JSON.stringify(normalize(x)) !== JSON.stringify(normalize(y))) {
        return false;
      }
      continue;
    }
    let xs: unknown[];
    let ys: unknown[];
    if (Array.isArray(x) && Array.isArray(y)) [xs, ys] = [x, y];
    else if (x instanceof Map && y instanceof Map) {
      [xs, ys] = [[...x].flat(), [...y].flat()];
    } else if (x instanceof Set && y instanceof Set) {
      [xs, ys] = [[...x], [...y]];
    } else if (x instanceof Push && y instanceof Push) {
      [xs, ys] = [x.data, y.data];
    } else return false;
    if (xs.length !== ys.length) return false;
    for (let i = 0; i < xs.length; i++) work.push(xs[i], ys[i]);
  }
  return true;
}

function isAggregate(v: unknown): boolean {
  return Array.isArray(v) || v instanceof Map || v instanceof Set ||
    v instanceof Push;
}

function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/**
 * Runs `cases` fuzz cases from `seed` and counts the outcomes.
 *
 * @param options Cases, seed, first case, progress callback.
 * @returns The counts; `failures` must be 0.
 */
export function fuzzDecoder(options: FuzzOptions): FuzzReport {
  const { cases, seed } = options;
  const start = options.start ?? 0;
  const report: FuzzReport = {
    cases: 0,
    seed,
    validOk: 0,
    mutatedError: 0,
    mutatedDecoded: 0,
    failures: 0,
    failureSamples: [],
    ms: 0,
    slowestMs: 0,
    heapStart: process.memoryUsage().heapUsed,
    heapEnd: 0,
    heapMax: 0,
  };
  report.heapMax = report.heapStart;
  const t0 = performance.now();
  const failed = (i: number, what: string) => {
    report.failures++;
    if (report.failureSamples.length < 20) {
      report.failureSamples.push(`case ${i} (seed ${seed}): ${what}`);
    }
  };
  for (let i = start; i < start + cases; i++) {
    const c0 = performance.now();
    const r = new Rand(mulberry32(caseSeed(seed, i)));
    const resp3 = r.chance(0.6);
    const frames: Frame[] = Array.from(
      { length: 1 + r.int(4) },
      () => randomTopFrame(r, resp3),
    );
    const raws = Array.from({ length: 64 }, () => r.chance(0.3));
    const rawAt = (n: number) => raws[n] ?? false;
    let b = writeFrames(frames);
    try {
      if (r.chance(0.5)) {
        // Valid: exactly the expected values, nothing left over.
        const expected = frames.map((f, n) => expectedValue(f, rawAt(n)));
        const got = decodeChunked(b, chunker(r, b.length), rawAt, undefined);
        const ref = referenceDecode(b, rawAt, DEFAULT_DECODER_LIMITS);
        if (got.error !== null) {
          failed(i, `valid: threw ${describe(got.error)}`);
        } else if (!same(got.values, expected)) {
          failed(i, "valid: wrong values");
        } else if (got.buffered !== 0) failed(i, `valid: ${got.buffered} left`);
        else if (ref.error || !same(ref.values, expected)) {
          failed(i, "valid: the reference decoder disagrees (oracle bug)");
        } else report.validOk++;
      } else {
        const limits: Required<DecoderLimits> = r.chance(0.15)
          ? {
            maxBulkLength: 1 + r.int(100),
            maxAggregateLength: 1 + r.int(8),
            maxDepth: 1 + r.int(5),
          }
          : DEFAULT_DECODER_LIMITS;
        const rounds = 1 + r.int(3);
        for (let m = 0; m < rounds; m++) b = mutate(r, b, limits, resp3);
        const ref = referenceDecode(b, rawAt, limits);
        const got = decodeChunked(
          b,
          chunker(r, b.length),
          rawAt,
          limits === DEFAULT_DECODER_LIMITS ? undefined : limits,
        );
        const isProtocol = got.error instanceof ProtocolError;
        if (got.error !== null && !isProtocol) {
          failed(i, `mutated: threw ${describe(got.error)}`);
        } else if (isProtocol !== ref.error) {
          failed(
            i,
            isProtocol
              ? `mutated: ProtocolError (${
                describe(got.error)
              }) where the reference decodes`
              : "mutated: decoded where the reference finds an error",
          );
        } else if (!same(got.values, ref.values)) {
          failed(i, "mutated: values differ from the reference's");
        } else if (isProtocol) report.mutatedError++;
        else report.mutatedDecoded++;
      }
    } catch (e) {
      failed(i, `harness: ${describe(e)}`);
    }
    const ms = performance.now() - c0;
    if (ms > report.slowestMs) report.slowestMs = ms;
    if (ms > SLOW_MS) failed(i, `slow: ${ms.toFixed(0)} ms`);
    report.cases++;
    if (report.cases % 10_000 === 0) {
      const heap = process.memoryUsage().heapUsed;
      if (heap > report.heapMax) report.heapMax = heap;
      report.ms = performance.now() - t0;
      options.progress?.(report.cases, report);
    }
  }
  report.ms = performance.now() - t0;
  report.heapEnd = process.memoryUsage().heapUsed;
  if (report.heapEnd > report.heapMax) report.heapMax = report.heapEnd;
  return report;
}

// ---------------------------------------------------------------------------
// Command line.

function runtimeName(): string {
  const g = globalThis as {
    Deno?: { version: { deno: string } };
    Bun?: { version: string };
  };
  if (g.Bun) return `Bun ${g.Bun.version}`;
  if (g.Deno) return `Deno ${g.Deno.version.deno}`;
  return `Node ${process.version}`;
}

function option(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(name);
  if (i === -1) return fallback;
  const n = Number(args[i + 1]);
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`${name} needs a non-negative integer`);
  }
  return n;
}

if (import.meta.main) {
  const args = (globalThis as { Deno?: { args: string[] } }).Deno?.args ??
    process.argv.slice(2);
  const cases = option(args, "--cases", 100_000);
  const seed = option(args, "--seed", 1);
  const start = option(args, "--start", 0);
  const json = args.includes("--json");
  const mb = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MB`;
  console.error(`${runtimeName()}: ${cases} cases from ${start}, seed ${seed}`);
  const report = fuzzDecoder({
    cases,
    seed,
    start,
    progress: (done, r) => {
      if (done % 100_000 === 0) {
        console.error(
          `  ${done} cases, ${r.failures} failures, ${
            (r.ms / 1000).toFixed(1)
          } s`,
        );
      }
    },
  });
  if (json) console.log(JSON.stringify({ runtime: runtimeName(), ...report }));
  else {
    console.log(`\nDecoder fuzz, ${runtimeName()}, seed ${seed}\n`);
    console.log(
      "| cases | valid → decoded right | mutated → ProtocolError | mutated → decoded (still a valid stream) | other failures | time |",
    );
    console.log("|---:|---:|---:|---:|---:|---:|");
    console.log(
      `| ${report.cases} | ${report.validOk} | ${report.mutatedError} | ${report.mutatedDecoded} | ${report.failures} | ${
        (report.ms / 1000).toFixed(1)
      } s |`,
    );
    console.log(
      `\nslowest case ${report.slowestMs.toFixed(1)} ms; heapUsed ${
        mb(report.heapStart)
      } at start, ${mb(report.heapEnd)} at end, ${
        mb(report.heapMax)
      } most seen`,
    );
    for (const f of report.failureSamples) console.log(`FAIL ${f}`);
  }
  if (report.failures > 0) process.exit(1);
}
