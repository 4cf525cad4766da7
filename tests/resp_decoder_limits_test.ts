/**
 * The decoder's defences against a hostile or broken server: configurable
 * limits on declared bulk length, aggregate length and nesting depth (refused
 * at the header, before anything is allocated for the element), linear time
 * in the bytes received however they are chunked, and a smoke run of the
 * decoder fuzzer (`deno task fuzz` runs the full one).
 */
import assert from "node:assert/strict";
import process from "node:process";
import { ProtocolError } from "../lib/errors.ts";
import {
  DEFAULT_DECODER_LIMITS,
  NEED_MORE,
  type Reply,
  RespDecoder,
} from "../lib/resp/decoder.ts";
import { fuzzDecoder } from "../scripts/fuzz_decoder.ts";
import { test } from "./_harness.ts";

const enc = new TextEncoder();
const bytes = (s: string) => enc.encode(s);
const MiB = 1024 * 1024;

function heapUsed(): number {
  return process.memoryUsage().heapUsed;
}

/** Feeds `input` whole and reads until NEED_MORE; returns the replies. */
function readAll(d: RespDecoder, input: string | Uint8Array): unknown[] {
  d.feed(typeof input === "string" ? bytes(input) : input);
  const out: unknown[] = [];
  for (let v = d.read(); v !== NEED_MORE; v = d.read()) out.push(v);
  return out;
}

/** Asserts that `fn` throws a ProtocolError whose message matches `match`. */
function throwsProtocol(fn: () => unknown, match: RegExp, what: string): void {
  assert.throws(
    fn,
    (e: unknown) => {
      assert.ok(
        e instanceof ProtocolError,
        `${what}: not a ProtocolError: ${e}`,
      );
      assert.match((e as Error).message, match, what);
      return true;
    },
    `${what}: expected a ProtocolError`,
  );
}

// ---------------------------------------------------------------------------
// Linear time, however the bytes are chunked.

/**
 * Feeds `input` one byte per chunk, reading after each. Returns the time in
 * ms and the replies, or, once `budget` ms have passed, the fraction of the
 * input fed so far.
 */
function feedBytewise(
  input: Uint8Array,
  budget: number,
): { ms: number; out: unknown[] } | { over: number } {
  const d = new RespDecoder();
  const out: unknown[] = [];
  const t0 = performance.now();
  for (let off = 0; off < input.length; off++) {
    d.feed(input.subarray(off, off + 1));
    for (let v = d.read(); v !== NEED_MORE; v = d.read()) out.push(v);
    if ((off & 1023) === 0 && performance.now() - t0 > budget) {
      return { over: off / input.length };
    }
  }
  return { ms: performance.now() - t0, out };
}

/**
 * Linear work takes ~8x the time for 8x the bytes; quadratic work ~64x. The
 * bound, 16x, tells the two apart with a wide margin for a noisy machine (N
 * against 2N would give 2x against 4x, too close to tell apart when the
 * machine is shared; measured on the quadratic decoder it gave only 2.3x to
 * 2.8x at these sizes). The small input's time is the median of three runs
 * after a warm-up; the large one gets two tries within the bound, and the
 * second only if the first came close.
 */
function assertLinear(
  what: string,
  make: (n: number) => Uint8Array,
  n: number,
  check: (out: unknown[], n: number) => void,
): void {
  const small = make(n);
  const big = make(8 * n);
  const times: number[] = [];
  for (let i = 0; i < 4; i++) {
    const r = feedBytewise(small, Infinity);
    assert.ok("ms" in r);
    check(r.out, n);
    if (i > 0) times.push(r.ms);
  }
  const tSmall = times.sort((a, b) => a - b)[1];
  const budget = 16 * Math.max(tSmall, 5);
  let last: { ms: number; out: unknown[] } | { over: number } = { over: 0 };
  for (let i = 0; i < 2; i++) {
    last = feedBytewise(big, budget);
    if ("ms" in last || last.over < 0.7) break;
  }
  assert.ok(
    "ms" in last,
    `${what}: ${8 * n} bytes in 1-byte chunks took more than 16x the time of ` +
      `${n} bytes (${tSmall.toFixed(1)} ms); only ${
        ((last as { over: number }).over * 100).toFixed(0)
      }% of them were fed within ${budget.toFixed(0)} ms: superlinear`,
  );
  check(last.out, 8 * n);
  console.log(
    `  ${what}: ${n} B ${tSmall.toFixed(1)} ms, ${8 * n} B ${
      last.ms.toFixed(1)
    } ms (x${(last.ms / tSmall).toFixed(1)})`,
  );
}

test("linear: an unterminated simple-string line in 1-byte chunks", () => {
  // 64 KiB and 512 KiB: both under the 1 MiB line limit.
  assertLinear(
    "unterminated line",
    (n) => bytes("+" + "a".repeat(n - 1)),
    64 * 1024,
    (out) => assert.deepEqual(out, []),
  );
  // And the line, once ended, is the right value.
  const d = new RespDecoder();
  const line = bytes("+" + "b".repeat(100_000));
  for (let i = 0; i < line.length; i++) {
    d.feed(line.subarray(i, i + 1));
    assert.equal(d.read(), NEED_MORE);
  }
  d.feed(bytes("\r"));
  assert.equal(d.read(), NEED_MORE);
  d.feed(bytes("\n+next\r\n"));
  assert.equal(d.read(), "b".repeat(100_000));
  assert.equal(d.read(), "next");
  assert.equal(d.buffered, 0);
}, { timeout: 120_000 });

test("linear: a long bulk string in 1-byte chunks", () => {
  assertLinear(
    "bulk string",
    (n) => bytes(`$${n}\r\n${"x".repeat(n)}\r\n`),
    256 * 1024,
    (out, n) => {
      assert.equal(out.length, 1);
      assert.equal(out[0], "x".repeat(n));
    },
  );
}, { timeout: 120_000 });

test("linear: a big aggregate of small elements in 1-byte chunks", () => {
  // n bytes of ":1\r\n" elements: n / 4 of them.
  assertLinear(
    "aggregate",
    (n) => bytes(`*${n / 4}\r\n` + ":1\r\n".repeat(n / 4)),
    128 * 1024,
    (out, n) => {
      assert.equal(out.length, 1);
      const arr = out[0] as Reply[];
      assert.equal(arr.length, n / 4);
      assert.ok(arr.every((x) => x === 1));
    },
  );
}, { timeout: 120_000 });

test("linear: many top-level replies, each cut in two", () => {
  // Every chunk ends in the middle of a reply: the unread rest must not be
  // copied again and again.
  const reply = "$20\r\n" + "v".repeat(20) + "\r\n";
  assertLinear(
    "replies cut in two",
    (n) => bytes(reply.repeat(n / reply.length)),
    27 * 4096,
    (out, n) => assert.equal(out.length, n / reply.length),
  );
}, { timeout: 120_000 });

// ---------------------------------------------------------------------------
// Limits.

test("the default limits, and the limits a decoder reports", () => {
  assert.deepEqual({ ...DEFAULT_DECODER_LIMITS }, {
    maxBulkLength: 512 * MiB,
    maxAggregateLength: 2 ** 31 - 1,
    maxDepth: 10_000,
  });
  assert.ok(Object.isFrozen(DEFAULT_DECODER_LIMITS));
  assert.deepEqual({ ...new RespDecoder().limits }, DEFAULT_DECODER_LIMITS);
  assert.deepEqual({ ...new RespDecoder({}).limits }, DEFAULT_DECODER_LIMITS);
  assert.deepEqual(
    { ...new RespDecoder({ maxDepth: 3, maxBulkLength: undefined }).limits },
    { ...DEFAULT_DECODER_LIMITS, maxDepth: 3 },
  );
  assert.deepEqual(
    {
      ...new RespDecoder({
        maxBulkLength: 7,
        maxAggregateLength: 8,
        maxDepth: 9,
      }).limits,
    },
    { maxBulkLength: 7, maxAggregateLength: 8, maxDepth: 9 },
  );
});

test("bad limit values throw TypeError or RangeError", () => {
  const range = [0, -1, 1.5, NaN, Infinity, -Infinity, 2 ** 53];
  for (const key of ["maxBulkLength", "maxAggregateLength", "maxDepth"]) {
    for (const v of range) {
      assert.throws(
        () => new RespDecoder({ [key]: v }),
        RangeError,
        `${key}: ${v}`,
      );
    }
    for (const v of ["5", 5n, null, true, {}, [5]]) {
      assert.throws(
        // deno-lint-ignore no-explicit-any
        () => new RespDecoder({ [key]: v } as any),
        TypeError,
        `${key}: ${String(v)}`,
      );
    }
  }
  for (const v of [null, "x", 5, true, [], () => {}]) {
    // deno-lint-ignore no-explicit-any
    assert.throws(() => new RespDecoder(v as any), TypeError, String(v));
  }
  // A misspelt option is refused, not silently ignored.
  assert.throws(
    // deno-lint-ignore no-explicit-any
    () => new RespDecoder({ maxdepth: 5 } as any),
    (e: unknown) =>
      e instanceof TypeError && /maxdepth/.test((e as Error).message),
  );
  // The largest accepted values.
  const max = Number.MAX_SAFE_INTEGER;
  assert.equal(new RespDecoder({ maxDepth: max }).limits.maxDepth, max);
});

test("maxBulkLength: refused at the header, before the body arrives", () => {
  const def = DEFAULT_DECODER_LIMITS.maxBulkLength;
  for (const type of ["$", "=", "!"]) {
    // At the limit: accepted, and nothing is allocated for it yet.
    const d = new RespDecoder();
    const before = heapUsed();
    assert.deepEqual(readAll(d, `${type}${def}\r\n`), []);
    assert.ok(
      heapUsed() - before < 64 * MiB,
      `${type}${def}: the heap grew by ${(heapUsed() - before) / MiB} MiB`,
    );
    assert.ok(d.buffered < 20);
    throwsProtocol(
      () => readAll(new RespDecoder(), `${type}${def + 1}\r\n`),
      /exceeds.*maxBulkLength/,
      `${type}${def + 1}`,
    );
  }
  // A custom limit: at it decodes, past it fails without waiting for a body.
  const five = { maxBulkLength: 5 };
  assert.deepEqual(readAll(new RespDecoder(five), "$5\r\nhello\r\n"), [
    "hello",
  ]);
  assert.deepEqual(readAll(new RespDecoder(five), "$0\r\n\r\n$-1\r\n"), [
    "",
    null,
  ]);
  throwsProtocol(
    () => readAll(new RespDecoder(five), "$6\r\n"),
    /bulk length 6 exceeds the limit of 5 \(maxBulkLength\)/,
    "$6",
  );
  // The declared length of a verbatim string includes its "txt:" prefix.
  assert.deepEqual(readAll(new RespDecoder(five), "=5\r\ntxt:a\r\n"), ["a"]);
  throwsProtocol(
    () => readAll(new RespDecoder(five), "=9\r\ntxt:hello\r\n"),
    /maxBulkLength/,
    "=9",
  );
  throwsProtocol(
    () => readAll(new RespDecoder(five), "!6\r\nERR xx\r\n"),
    /maxBulkLength/,
    "!6",
  );
  // Raised above the default: longer declared lengths are accepted.
  const big = new RespDecoder({ maxBulkLength: 2 ** 40 });
  assert.deepEqual(readAll(big, `$${2 ** 40}\r\n`), []);
  throwsProtocol(
    () =>
      readAll(
        new RespDecoder({ maxBulkLength: 2 ** 40 }),
        `$${2 ** 40 + 1}\r\n`,
      ),
    /maxBulkLength/,
    "2^40 + 1",
  );
  throwsProtocol(
    () => readAll(new RespDecoder(), "$" + "9".repeat(400) + "\r\n"),
    /exceeds/,
    "400 digits",
  );
});

test("maxAggregateLength: counts the declared length (pairs for maps), refused at the header", () => {
  const def = DEFAULT_DECODER_LIMITS.maxAggregateLength;
  for (const type of ["*", "%", "~", ">", "|"]) {
    const d = new RespDecoder();
    const before = heapUsed();
    assert.deepEqual(readAll(d, `${type}${def}\r\n:1\r\n`), []);
    assert.ok(
      heapUsed() - before < 64 * MiB,
      `${type}${def}: the heap grew by ${(heapUsed() - before) / MiB} MiB`,
    );
    throwsProtocol(
      () => readAll(new RespDecoder(), `${type}${def + 1}\r\n`),
      new RegExp(`length ${def + 1} exceeds the limit of ${def}`),
      `${type}${def + 1}`,
    );
  }
  // A declared billion elements costs nothing until they arrive.
  const d = new RespDecoder();
  const before = heapUsed();
  assert.deepEqual(readAll(d, "*1000000000\r\n" + ":1\r\n".repeat(10)), []);
  assert.ok(heapUsed() - before < 64 * MiB);
  // A custom limit.
  const three = { maxAggregateLength: 3 };
  assert.deepEqual(
    readAll(new RespDecoder(three), "*3\r\n:1\r\n:2\r\n:3\r\n"),
    [
      [1, 2, 3],
    ],
  );
  throwsProtocol(
    () => readAll(new RespDecoder(three), "*4\r\n"),
    /aggregate length 4 exceeds the limit of 3 \(maxAggregateLength\)/,
    "*4",
  );
  // A map of 3 pairs (6 elements) is within a limit of 3; 4 pairs is not.
  const map = readAll(
    new RespDecoder(three),
    "%3\r\n+a\r\n:1\r\n+b\r\n:2\r\n+c\r\n:3\r\n",
  );
  assert.deepEqual(map, [new Map([["a", 1], ["b", 2], ["c", 3]])]);
  throwsProtocol(
    () => readAll(new RespDecoder(three), "%4\r\n"),
    /4 exceeds/,
    "%4",
  );
  throwsProtocol(
    () => readAll(new RespDecoder(three), "~4\r\n"),
    /4 exceeds/,
    "~4",
  );
  throwsProtocol(
    () => readAll(new RespDecoder(three), ">4\r\n"),
    /4 exceeds/,
    ">4",
  );
  throwsProtocol(
    () => readAll(new RespDecoder(three), "|4\r\n"),
    /4 exceeds/,
    "|4",
  );
  // Nested aggregates are each held to it.
  throwsProtocol(
    () => readAll(new RespDecoder(three), "*1\r\n*4\r\n"),
    /4 exceeds/,
    "nested *4",
  );
});

test("maxDepth: the default decodes the deepest reply Redis's Lua can produce, and refuses one more level", () => {
  const max = DEFAULT_DECODER_LIMITS.maxDepth;
  let v = readAll(new RespDecoder(), "*1\r\n".repeat(max) + ":7\r\n")[0];
  for (let i = 0; i < max; i++) {
    assert.ok(Array.isArray(v) && v.length === 1);
    v = v[0];
  }
  assert.equal(v, 7);
  // One level more fails at that header: no leaf needed.
  throwsProtocol(
    () => readAll(new RespDecoder(), "*1\r\n".repeat(max + 1)),
    /nesting depth exceeds the limit of 10000 \(maxDepth\)/,
    "max + 1",
  );
});

test("maxDepth: a 4 MB frame of 1M levels throws quickly without growing the heap", () => {
  const levels = 1_000_000;
  const frame = bytes("*1\r\n".repeat(levels) + ":1\r\n");
  assert.equal(frame.length, 4_000_004);
  const d = new RespDecoder();
  d.feed(frame);
  const before = heapUsed();
  const t0 = performance.now();
  throwsProtocol(() => d.read(), /nesting depth/, "1M levels");
  const ms = performance.now() - t0;
  const grown = heapUsed() - before;
  console.log(
    `  1M levels: threw after ${ms.toFixed(1)} ms, heap +${
      (grown / MiB).toFixed(1)
    } MiB`,
  );
  // Decoding all 1M levels took +350 MB; 10,000 levels take a few MB.
  assert.ok(
    grown < 64 * MiB,
    `the heap grew by ${(grown / MiB).toFixed(0)} MiB`,
  );
  assert.ok(ms < 5_000, `took ${ms.toFixed(0)} ms`);
});

test("maxDepth: custom limits, every aggregate type counts, attributes included", () => {
  const three = { maxDepth: 3 };
  assert.deepEqual(
    readAll(new RespDecoder(three), "*1\r\n*1\r\n*1\r\n:1\r\n"),
    [
      [[[1]]],
    ],
  );
  assert.deepEqual(readAll(new RespDecoder(three), "*1\r\n*1\r\n*0\r\n"), [
    [[[]]],
  ]);
  throwsProtocol(
    () => readAll(new RespDecoder(three), "*1\r\n*1\r\n*1\r\n*0\r\n"),
    /maxDepth/,
    "empty array at depth 4",
  );
  throwsProtocol(
    () => readAll(new RespDecoder(three), "%1\r\n+k\r\n~1\r\n>1\r\n*1\r\n"),
    /maxDepth/,
    "map, set, push, array",
  );
  // An attribute inside two arrays is at depth 3: allowed with 3, not with 2.
  const attr = "*1\r\n*1\r\n|1\r\n+a\r\n+b\r\n:5\r\n";
  assert.deepEqual(readAll(new RespDecoder(three), attr), [[[5]]]);
  throwsProtocol(
    () => readAll(new RespDecoder({ maxDepth: 2 }), attr),
    /maxDepth/,
    "attribute at depth 3",
  );
  // A null array is no aggregate.
  assert.deepEqual(readAll(new RespDecoder({ maxDepth: 1 }), "*1\r\n*-1\r\n"), [
    [null],
  ]);
  // Depth is counted again for each top-level reply.
  const one = new RespDecoder({ maxDepth: 1 });
  assert.deepEqual(readAll(one, "*1\r\n:1\r\n".repeat(50)).length, 50);
});

// ---------------------------------------------------------------------------
// Fuzz smoke run (the full run: deno task fuzz --cases 1000000).

test(
  "fuzz smoke: 5,000 random and mutated streams decode right or throw ProtocolError",
  () => {
    const report = fuzzDecoder({ cases: 5_000, seed: 20261122 });
    assert.equal(
      report.failures,
      0,
      `fuzz failures:\n${report.failureSamples.join("\n")}`,
    );
    assert.equal(report.cases, 5_000);
    assert.ok(report.validOk > 1_000, `only ${report.validOk} valid cases`);
    assert.ok(report.mutatedError > 500, `only ${report.mutatedError} errors`);
    assert.ok(report.mutatedDecoded > 100, `only ${report.mutatedDecoded}`);
  },
  { timeout: 120_000 },
);
