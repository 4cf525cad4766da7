import assert from "node:assert/strict";
import { ProtocolError, ReplyError } from "../lib/errors.ts";
import {
  type DecoderLimits,
  NEED_MORE,
  Push,
  type Reply,
  RespDecoder,
} from "../lib/resp/decoder.ts";
import { test } from "./_harness.ts";
import {
  concatBytes,
  expectedValue,
  type Frame,
  normalize,
  randomTopFrame,
  writeFrame,
  writeFrames,
} from "../testing/resp_writer.ts";
import { mulberry32, Rand } from "../testing/random.ts";

const enc = new TextEncoder();
const bytes = (s: string) => enc.encode(s);
/** Latin-1: one byte per char, for writing arbitrary bytes in test strings. */
const latin1 = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));

/** Decodes all of `input` fed at once; expects exactly one reply. */
function decodeOne(
  input: string | Uint8Array,
  raw = false,
  limits?: DecoderLimits,
): Reply | Push {
  const d = new RespDecoder(limits);
  d.feed(typeof input === "string" ? bytes(input) : input);
  const v = d.read(raw);
  assert.notEqual(v, NEED_MORE, "expected a complete reply");
  assert.equal(d.read(raw), NEED_MORE, "expected nothing after the reply");
  return v as Reply | Push;
}

/** Decodes `input` fed in chunks of `size` bytes; returns all replies. */
function decodeAll(
  input: Uint8Array,
  size: number | (() => number),
  raw: boolean | ((i: number) => boolean) = false,
): (Reply | Push)[] {
  const d = new RespDecoder();
  const out: (Reply | Push)[] = [];
  const rawAt = typeof raw === "function" ? raw : () => raw;
  for (let off = 0; off < input.length;) {
    const n = Math.max(1, typeof size === "number" ? size : size());
    d.feed(input.subarray(off, off + n));
    off += n;
    for (;;) {
      const v = d.read(rawAt(out.length));
      if (v === NEED_MORE) break;
      out.push(v);
    }
  }
  assert.equal(d.buffered, 0, "bytes left over in the decoder");
  return out;
}

function same(actual: unknown, expected: unknown, message?: string): void {
  assert.deepStrictEqual(normalize(actual), normalize(expected), message);
}

function protocolError(input: string | Uint8Array, match?: RegExp): void {
  const d = new RespDecoder();
  d.feed(typeof input === "string" ? bytes(input) : input);
  assert.throws(
    () => {
      // Read until it throws; a complete valid prefix may come first.
      for (let i = 0; i < 10; i++) {
        if (d.read() === NEED_MORE) return;
      }
    },
    (e: unknown) => {
      assert.ok(e instanceof ProtocolError, `not a ProtocolError: ${e}`);
      assert.equal((e as Error).name, "ProtocolError");
      if (match) assert.match((e as Error).message, match);
      return true;
    },
    `expected a ProtocolError for ${JSON.stringify(String(input))}`,
  );
}

test("simple strings and errors", () => {
  assert.equal(decodeOne("+OK\r\n"), "OK");
  assert.equal(decodeOne("+\r\n"), "");
  assert.equal(decodeOne("+héllo ✓\r\n"), "héllo ✓");
  assert.equal(decodeOne("+OK\r\n", true), "OK", "raw does not apply");
  const e = decodeOne("-WRONGTYPE Operation against a key\r\n");
  assert.ok(e instanceof ReplyError);
  assert.equal(e.code, "WRONGTYPE");
  assert.equal(e.message, "WRONGTYPE Operation against a key");
  const bare = decodeOne("-ERR\r\n");
  assert.ok(bare instanceof ReplyError);
  assert.equal(bare.code, "ERR");
});

test("integers, with bigint beyond 2^53", () => {
  const cases: [string, number | bigint][] = [
    ["0", 0],
    ["1", 1],
    ["-1", -1],
    ["+7", 7],
    ["1000", 1000],
    ["999999999999999", 999999999999999],
    ["-999999999999999", -999999999999999],
    ["9007199254740991", Number.MAX_SAFE_INTEGER],
    ["-9007199254740991", -Number.MAX_SAFE_INTEGER],
    ["9007199254740992", 2n ** 53n],
    ["-9007199254740992", -(2n ** 53n)],
    ["9007199254740993", 2n ** 53n + 1n],
    ["9223372036854775807", 2n ** 63n - 1n],
    ["-9223372036854775808", -(2n ** 63n)],
  ];
  for (const [text, want] of cases) {
    const got = decodeOne(`:${text}\r\n`);
    assert.equal(typeof got, typeof want, text);
    assert.equal(got, want, text);
  }
});

test("bulk strings: CRLF and NUL inside, empty, UTF-8, BOM, raw bytes", () => {
  assert.equal(decodeOne("$5\r\nhello\r\n"), "hello");
  assert.equal(decodeOne("$0\r\n\r\n"), "");
  assert.equal(decodeOne("$4\r\n\r\n\r\n\r\n"), "\r\n\r\n");
  assert.equal(decodeOne("$5\r\na\0b\rc\r\n"), "a\0b\rc");
  assert.equal(decodeOne("$3\r\n$3\r\r\n"), "$3\r");
  const utf8 = bytes("héllo wörld ✓ 🚀");
  assert.equal(
    decodeOne(concatBytes([bytes(`$${utf8.length}\r\n`), utf8, bytes("\r\n")])),
    "héllo wörld ✓ 🚀",
  );
  // Long text goes through another path than short text.
  const long = "ü".repeat(500) + "x\r\n".repeat(100);
  const longBytes = bytes(long);
  assert.equal(
    decodeOne(
      concatBytes([
        bytes(`$${longBytes.length}\r\n`),
        longBytes,
        bytes("\r\n"),
      ]),
    ),
    long,
  );
  // A byte-order mark at the start of a value is data, not to be dropped.
  assert.equal(decodeOne(latin1("$4\r\n\xEF\xBB\xBFx\r\n")), "\uFEFFx");
  const longBom = "\uFEFF" + "y".repeat(100);
  assert.equal(
    decodeOne(concatBytes([bytes("$103\r\n"), bytes(longBom), bytes("\r\n")])),
    longBom,
  );
  const all = new Uint8Array(256).map((_, i) => i);
  const raw = decodeOne(
    concatBytes([bytes("$256\r\n"), all, bytes("\r\n")]),
    true,
  );
  assert.ok(raw instanceof Uint8Array);
  assert.deepEqual([...raw], [...all]);
  assert.deepEqual([...(decodeOne("$0\r\n\r\n", true) as Uint8Array)], []);
});

test("raw bulk strings are copies, not views of the fed chunk", () => {
  const d = new RespDecoder();
  const chunk = bytes("$3\r\nabc\r\n");
  d.feed(chunk);
  const first = d.read(true) as Uint8Array;
  assert.deepEqual([...first], [97, 98, 99]);
  assert.notEqual(first.buffer, chunk.buffer);
});

test("null bulk string, null array, RESP3 null", () => {
  assert.equal(decodeOne("$-1\r\n"), null);
  assert.equal(decodeOne("*-1\r\n"), null);
  assert.equal(decodeOne("_\r\n"), null);
  assert.equal(decodeOne("$-1\r\n", true), null);
});

test("arrays: empty, nested, mixed, with errors and nulls inside", () => {
  same(decodeOne("*0\r\n"), []);
  same(
    decodeOne(
      "*5\r\n:1\r\n*2\r\n$1\r\na\r\n*0\r\n*-1\r\n$-1\r\n-ERR inner\r\n",
    ),
    [1, ["a", []], null, null, new ReplyError("ERR inner")],
  );
  same(decodeOne("*1\r\n*1\r\n*1\r\n*1\r\n+deep\r\n"), [[[["deep"]]]]);
  same(decodeOne("*2\r\n$1\r\nx\r\n$1\r\ny\r\n", true), [
    bytes("x"),
    bytes("y"),
  ]);
  // Deep nesting does not recurse on the call stack (100,000 levels is ten
  // times the default maxDepth, so this decoder is given a higher limit).
  const depth = 100_000;
  const deep = "*1\r\n".repeat(depth) + ":7\r\n";
  let v = decodeOne(deep, false, { maxDepth: depth });
  for (let i = 0; i < depth; i++) {
    assert.ok(Array.isArray(v) && v.length === 1);
    v = v[0];
  }
  assert.equal(v, 7);
});

test("RESP3 maps and sets", () => {
  same(
    decodeOne("%2\r\n+a\r\n:1\r\n$1\r\nb\r\n*2\r\n:2\r\n:3\r\n"),
    new Map<Reply, Reply>([["a", 1], ["b", [2, 3]]]),
  );
  same(decodeOne("%0\r\n"), new Map());
  same(decodeOne("~3\r\n+x\r\n:1\r\n+y\r\n"), new Set(["x", 1, "y"]));
  same(decodeOne("~0\r\n"), new Set());
  same(
    decodeOne("%1\r\n+m\r\n%1\r\n+n\r\n~1\r\n#t\r\n"),
    new Map([["m", new Map([["n", new Set([true])]])]]),
  );
});

test("RESP3 doubles, including inf, -inf and nan", () => {
  const cases: [string, number][] = [
    ["1.5", 1.5],
    ["-2.25", -2.25],
    ["0", 0],
    ["10", 10],
    ["3.0000000000000001e+20", 3.0000000000000001e+20],
    ["1e-300", 1e-300],
    ["inf", Infinity],
    ["+inf", Infinity],
    ["-inf", -Infinity],
    ["INF", Infinity],
  ];
  for (const [text, want] of cases) {
    assert.equal(decodeOne(`,${text}\r\n`), want, text);
  }
  assert.ok(Number.isNaN(decodeOne(",nan\r\n")));
  assert.ok(Number.isNaN(decodeOne(",-nan\r\n")));
});

test("RESP3 doubles follow the spec's grammar, strictly", () => {
  // redis-specifications RESP3.md: an integral part of one or more digits,
  // an optional fraction (a dot and one or more digits), an optional exponent
  // (E or e, an optional sign, one or more digits); a sign in front (Redis
  // writes negative doubles with "-"); inf, -inf and nan.
  const valid: [string, number][] = [
    ["1.23", 1.23],
    ["-1.5", -1.5],
    ["+1.5", 1.5],
    ["0", 0],
    ["-0", -0],
    ["007", 7],
    ["10", 10],
    ["1e5", 1e5],
    ["1E5", 1e5],
    ["1e+5", 1e5],
    ["1e-5", 1e-5],
    ["-1.5e-300", -1.5e-300],
    ["2.5E+10", 2.5e10],
    ["1e400", Infinity], // beyond double range: rounds, as strtod does
    ["5e-324", 5e-324],
    ["inf", Infinity],
    ["-inf", -Infinity],
  ];
  for (const [text, want] of valid) {
    assert.ok(Object.is(decodeOne(`,${text}\r\n`), want), text);
  }
  // Number() would read all of these; none is a RESP3 double.
  const invalid = [
    "0x10",
    "0X10",
    "0b1",
    "0o7",
    "1_0",
    " 1",
    "1 ",
    "\t1",
    "1\t",
    "",
    "+",
    "-",
    "Infinity",
    "-Infinity",
    "infinity",
    "infx",
    ".5",
    "-.5",
    "1.",
    "1.e5",
    "e5",
    "1e",
    "1e+",
    "1e5.5",
    "1.5.5",
    "--1",
    "+-1",
    "1,5",
    "nan(",
    "nan(1",
    "nan(1)x",
    "nan(-)",
    "nann",
    "١", // ARABIC-INDIC DIGIT ONE
    "１", // FULLWIDTH DIGIT ONE
    "1\0",
  ];
  for (const text of invalid) protocolError(`,${text}\r\n`, /double/);
  // NaN as Redis 7.2+ writes it, and as older servers may (the spec notes
  // libc's "-nan", "NAN" and "nan(char-sequence)").
  for (const text of ["nan", "-nan", "NAN", "nan(1)", "NaN(ind_0)", "nan()"]) {
    assert.ok(Number.isNaN(decodeOne(`,${text}\r\n`)), text);
  }
});

test("big numbers, integers and verbatim strings are strict too", () => {
  for (
    const text of ["0x10", " 1", "1 ", "+", "-", "1_0", "1e5", "1.0", "١", ""]
  ) {
    protocolError(`(${text}\r\n`, /big number/);
  }
  // An integer has no negative zero.
  assert.ok(Object.is(decodeOne(":-0\r\n"), 0));
  assert.ok(Object.is(decodeOne(":0\r\n"), 0));
  // A verbatim string is a three-byte format, ":", then the text.
  protocolError("=3\r\ntxt\r\n", /verbatim/);
  protocolError("=0\r\n\r\n", /verbatim/);
  protocolError("=5\r\ntxt;a\r\n", /verbatim/);
  assert.equal(decodeOne("=5\r\nmkd:a\r\n"), "a");
});

test("RESP3 booleans, big numbers, verbatim strings, blob errors", () => {
  assert.equal(decodeOne("#t\r\n"), true);
  assert.equal(decodeOne("#f\r\n"), false);
  assert.equal(
    decodeOne("(3492890328409238509324850943850943825024385\r\n"),
    3492890328409238509324850943850943825024385n,
  );
  assert.equal(decodeOne("(-12\r\n"), -12n);
  assert.equal(decodeOne("(0\r\n"), 0n);
  assert.equal(decodeOne("=15\r\ntxt:Some string\r\n"), "Some string");
  assert.equal(decodeOne("=8\r\nmkd:a\r\nb\r\n"), "a\r\nb");
  assert.equal(decodeOne("=4\r\ntxt:\r\n"), "");
  assert.deepEqual(
    [...(decodeOne("=7\r\ntxt:a\0b\r\n", true) as Uint8Array)],
    [97, 0, 98],
  );
  const e = decodeOne("!21\r\nSYNTAX invalid syntax\r\n");
  assert.ok(e instanceof ReplyError);
  assert.equal(e.code, "SYNTAX");
  assert.equal(e.message, "SYNTAX invalid syntax");
  const crlf = decodeOne("!10\r\nERR a\r\nb c\r\n");
  assert.ok(crlf instanceof ReplyError);
  assert.equal(crlf.message, "ERR a\r\nb c");
});

test("RESP3 attributes are skipped, at top level and inside aggregates", () => {
  assert.equal(
    decodeOne("|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n:42\r\n"),
    42,
  );
  same(
    decodeOne("*3\r\n:1\r\n|1\r\n+ttl\r\n:3600\r\n+two\r\n:3\r\n"),
    [1, "two", 3],
  );
  same(decodeOne("|0\r\n*1\r\n|1\r\n+a\r\n+b\r\n#t\r\n"), [true]);
  // An attribute as the last thing before a top-level value that is split.
  const d = new RespDecoder();
  d.feed(bytes("|1\r\n+a\r\n+b\r\n"));
  assert.equal(d.read(), NEED_MORE);
  d.feed(bytes(":5\r\n"));
  assert.equal(d.read(), 5);
});

test("RESP3 push frames come out as Push", () => {
  const p = decodeOne(">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n");
  assert.ok(p instanceof Push);
  assert.deepEqual(p.data, ["message", "ch", "hi"]);
  const d = new RespDecoder();
  d.feed(bytes(">2\r\n+invalidate\r\n*1\r\n+k\r\n+OK\r\n"));
  const first = d.read();
  assert.ok(first instanceof Push);
  same(first.data, ["invalidate", ["k"]]);
  assert.equal(d.read(), "OK");
});

test("several replies in one chunk, and a reply split at every byte", () => {
  const input = bytes("+OK\r\n:12\r\n$3\r\nabc\r\n*2\r\n$-1\r\n+x\r\n");
  const want = ["OK", 12, "abc", [null, "x"]];
  same(decodeAll(input, input.length), want);
  same(decodeAll(input, 1), want);
  for (let cut = 1; cut < input.length; cut++) {
    const d = new RespDecoder();
    const out: unknown[] = [];
    for (const part of [input.subarray(0, cut), input.subarray(cut)]) {
      d.feed(part);
      for (let v = d.read(); v !== NEED_MORE; v = d.read()) out.push(v);
    }
    same(out, want, `cut at ${cut}`);
  }
});

test("malformed input throws ProtocolError", () => {
  protocolError("?what\r\n", /type byte 0x3f/);
  protocolError("hello\r\n", /type byte/);
  protocolError("\r\n", /type byte/);
  protocolError("?", /type byte 0x3f/); // at once, without waiting for CRLF
  protocolError("HTTP/1.1", /type byte 0x48/);
  protocolError("+OK\rX\n", /CR not followed by LF/);
  protocolError("+OK\r\n:1\rx", /CR not followed by LF/);
  protocolError("$abc\r\nabc\r\n", /length/);
  protocolError("$\r\n\r\n", /length/);
  protocolError("$-2\r\n", /length/);
  protocolError("$+3\r\nabc\r\n", /length/);
  protocolError("$99999999999\r\n", /length/);
  protocolError(`$${2 ** 30}\r\n`, /length/);
  protocolError("*x\r\n", /length/);
  protocolError("*-5\r\n", /length/);
  protocolError("%-1\r\n", /length/);
  protocolError("~-1\r\n", /length/);
  protocolError("$3\r\nabcde\r\n", /CRLF/);
  protocolError("$3\r\nabc\n\r", /CRLF/);
  protocolError(":\r\n", /integer/);
  protocolError(":-\r\n", /integer/);
  protocolError(":12a\r\n", /integer/);
  protocolError(":1.5\r\n", /integer/);
  protocolError(":12345678901234567890x\r\n", /integer/);
  protocolError("#x\r\n", /boolean/);
  protocolError("#tt\r\n", /boolean/);
  protocolError("#\r\n", /boolean/);
  protocolError("_x\r\n", /null/);
  protocolError(",\r\n", /double/);
  protocolError(",abc\r\n", /double/);
  protocolError("(12x\r\n", /big number/);
  protocolError("(\r\n", /big number/);
  protocolError("*2\r\n:1\r\n?\r\n", /type byte/);
  // A line that never ends is refused once it is absurdly long.
  protocolError("+" + "a".repeat(1024 * 1024 + 10), /longer than/);
});

test("a truncated reply is NEED_MORE, not an error or a wrong value", () => {
  for (
    const s of [
      "+OK",
      "+OK\r",
      "$5\r\nhel",
      "$5\r\nhello",
      "$5\r\nhello\r",
      "*2\r\n:1\r\n",
      "%1\r\n+a\r\n",
      ":12",
    ]
  ) {
    const d = new RespDecoder();
    d.feed(bytes(s));
    assert.equal(d.read(), NEED_MORE, s);
  }
});

const SEEDS = [1, 2, 3, 0xdecaf, 20261122];

test("property: random replies cut at random points decode to the same values", () => {
  for (const seed of SEEDS) {
    const r = new Rand(mulberry32(seed));
    const resp3 = seed % 2 === 1;
    const frames: Frame[] = Array.from(
      { length: 1500 },
      () => randomTopFrame(r, resp3),
    );
    const raws = frames.map(() => r.chance(0.3));
    const expected = frames.map((f, i) => expectedValue(f, raws[i]));
    const stream = writeFrames(frames);
    const rawAt = (i: number) => raws[i];
    const sizes: [string, number | (() => number)][] = [
      ["whole", stream.length],
      ["random 1..16", () => 1 + r.int(16)],
      ["random 1..4096", () => 1 + r.int(4096)],
      ["random 1..70000", () => 1 + r.int(70_000)],
      [
        "mixed",
        () => (r.chance(0.5) ? 1 : 1 + r.int(r.chance(0.5) ? 64 : 9000)),
      ],
    ];
    for (const [what, size] of sizes) {
      same(
        decodeAll(stream, size, rawAt),
        expected,
        `seed ${seed}, chunks ${what}`,
      );
    }
  }
});

test("property: every frame alone, fed one byte at a time", () => {
  const r = new Rand(mulberry32(77));
  for (let i = 0; i < 400; i++) {
    const f = randomTopFrame(r, i % 2 === 0);
    const raw = r.chance(0.5);
    const b = writeFrame(f);
    const d = new RespDecoder();
    let got: unknown = NEED_MORE;
    for (let off = 0; off < b.length; off++) {
      assert.equal(got, NEED_MORE, `frame ${i} complete before its end`);
      d.feed(b.subarray(off, off + 1));
      got = d.read(raw);
    }
    same(got, expectedValue(f, raw), `frame ${i}`);
    assert.equal(d.read(raw), NEED_MORE);
  }
});

test("resuming is cheap: a 100k-element array in 1-byte to 4 KB chunks", () => {
  const n = 100_000;
  const parts: string[] = [`*${n}\r\n`];
  for (let i = 0; i < n; i++) {
    parts.push(i % 2 ? `:${i}\r\n` : `$${String(i).length}\r\n${i}\r\n`);
  }
  const stream = bytes(parts.join(""));
  for (const size of [1, 7, 64, 4096]) {
    const t0 = performance.now();
    const out = decodeAll(stream, size);
    const ms = performance.now() - t0;
    assert.equal(out.length, 1);
    const arr = out[0] as Reply[];
    assert.equal(arr.length, n);
    assert.equal(arr[n - 1], n - 1);
    assert.equal(arr[n - 2], String(n - 2));
    // Linear work is well under a second even on a busy machine; reparsing
    // from the start at every chunk would take minutes.
    assert.ok(ms < 5_000, `${size}-byte chunks took ${ms.toFixed(0)} ms`);
  }
});

test("resuming is cheap: a 20 MB bulk string in 1 KB chunks, and many small values", () => {
  const size = 20 * 1024 * 1024;
  const value = new Uint8Array(size).map((_, i) => (i * 7) & 0xff);
  const stream = concatBytes([bytes(`$${size}\r\n`), value, bytes("\r\n")]);
  const t0 = performance.now();
  const out = decodeAll(stream, 1024, true);
  const ms = performance.now() - t0;
  assert.equal(out.length, 1);
  const got = out[0] as Uint8Array;
  assert.equal(got.length, size);
  assert.ok(got.every((b, i) => b === value[i]));
  assert.ok(ms < 5_000, `took ${ms.toFixed(0)} ms`);
  // 200k small top-level replies in 3-byte chunks.
  const many = bytes("+OK\r\n".repeat(200_000));
  const t1 = performance.now();
  assert.equal(decodeAll(many, 3).length, 200_000);
  const ms2 = performance.now() - t1;
  assert.ok(ms2 < 5_000, `took ${ms2.toFixed(0)} ms`);
});
