import assert from "node:assert/strict";
import {
  CommandEncoder,
  encodeCommand,
  validateArgs,
} from "../lib/resp/encoder.ts";
import { NEED_MORE, RespDecoder } from "../lib/resp/decoder.ts";
import { test } from "./_harness.ts";

const enc = new TextEncoder();
const bytes = (s: string) => enc.encode(s);
/** Bytes as a latin-1 string, so that expected encodings are easy to write. */
const latin1 = (b: Uint8Array) => String.fromCharCode(...b);
const utf8 = (b: Uint8Array) => new TextDecoder().decode(b);

function encoded(...args: unknown[]): string {
  return utf8(encodeCommand(args));
}

/** Parses one encoded command back with the decoder (a RESP array of bulks). */
function roundTrip(args: unknown[]): Uint8Array[] {
  const d = new RespDecoder();
  d.feed(encodeCommand(args));
  const v = d.read(true);
  assert.notEqual(v, NEED_MORE);
  assert.equal(d.read(true), NEED_MORE);
  return v as Uint8Array[];
}

test("ASCII strings: the exact RESP bytes", () => {
  assert.equal(encoded("PING"), "*1\r\n$4\r\nPING\r\n");
  assert.equal(
    encoded("SET", "key", "value"),
    "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n",
  );
  assert.equal(encoded("ECHO", ""), "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n");
  assert.equal(
    encoded("SET", "k", "a\r\nb\0c"),
    "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$6\r\na\r\nb\0c\r\n",
  );
  const args = Array.from({ length: 12 }, (_, i) => `a${i}`);
  assert.ok(encoded("MSET", ...args).startsWith("*13\r\n$4\r\nMSET\r\n"));
});

test("non-ASCII strings are UTF-8 with their byte length", () => {
  assert.equal(
    latin1(encodeCommand(["SET", "k", "é"])),
    "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\xC3\xA9\r\n",
  );
  for (const s of ["héllo wörld", "✓", "🚀", "日本語テキスト", "\uFEFFbom"]) {
    const [, , v] = roundTrip(["SET", "k", s]);
    assert.deepEqual([...v], [...bytes(s)], s);
  }
  // Non-ASCII after a long ASCII run, and a long non-ASCII string.
  for (const s of ["a".repeat(200) + "é", "é".repeat(1000), "x".repeat(255)]) {
    const [, , v] = roundTrip(["SET", "k", s]);
    assert.equal(v.length, bytes(s).length);
    assert.equal(utf8(v), s);
  }
});

test("long strings: 255, 256, 64 KB and 2 MB", () => {
  for (const n of [255, 256, 257, 65_536, 2 * 1024 * 1024]) {
    const s = "abcdefghij".repeat(Math.ceil(n / 10)).slice(0, n);
    const out = encodeCommand(["SET", "k", s]);
    const head = `*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$${n}\r\n`;
    assert.equal(latin1(out.subarray(0, head.length)), head, `n=${n}`);
    assert.equal(out.length, head.length + n + 2);
    assert.equal(latin1(out.subarray(out.length - 2)), "\r\n");
    assert.equal(utf8(out.subarray(head.length, head.length + n)), s);
  }
});

test("numbers and bigints are sent as their decimal text", () => {
  assert.equal(
    encoded("INCRBY", "k", 42),
    "*3\r\n$6\r\nINCRBY\r\n$1\r\nk\r\n$2\r\n42\r\n",
  );
  const cases: [number | bigint, string][] = [
    [0, "0"],
    [-0, "0"],
    [-17, "-17"],
    [1.5, "1.5"],
    [-0.25, "-0.25"],
    [Number.MAX_SAFE_INTEGER, "9007199254740991"],
    [2n ** 64n, "18446744073709551616"],
    [-(2n ** 63n), "-9223372036854775808"],
    [0n, "0"],
  ];
  for (const [n, text] of cases) {
    const [, v] = roundTrip(["ECHO", n]);
    assert.equal(utf8(v), text, String(n));
  }
});

test("Uint8Array arguments are sent byte for byte, views included", () => {
  const all = new Uint8Array(256).map((_, i) => i);
  const [, , v] = roundTrip(["SET", "k", all]);
  assert.deepEqual([...v], [...all]);
  const view = all.subarray(10, 15);
  assert.equal(
    latin1(encodeCommand(["SET", "k", view])),
    "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\n\n\x0B\x0C\r\x0E\r\n",
  );
  const [, , empty] = roundTrip(["SET", "k", new Uint8Array(0)]);
  assert.equal(empty.length, 0);
  const big = new Uint8Array(1024 * 1024).map((_, i) => (i * 13) & 0xff);
  const [, , got] = roundTrip(["SET", "k", big]);
  assert.equal(got.length, big.length);
  assert.ok(got.every((b, i) => b === big[i]));
});

test("one encoder: commands accumulate in order and take() empties it", () => {
  const e = new CommandEncoder();
  assert.equal(e.length, 0);
  e.encode(["PING"]);
  e.encode(["GET", "k"]);
  const want = "*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
  assert.equal(e.length, want.length);
  const first = e.take();
  assert.equal(utf8(first), want);
  assert.equal(e.length, 0);
  assert.equal(e.take().length, 0);
  // The taken bytes belong to the caller: later encoding does not touch them.
  e.encode(["SET", "x", "y".repeat(100)]);
  assert.equal(utf8(first), want);
  // Growth past the initial buffer, and many commands in one take().
  for (let i = 0; i < 5000; i++) e.encode(["ECHO", `m${i}`, i, BigInt(i)]);
  const d = new RespDecoder();
  d.feed(e.take());
  assert.deepEqual(d.read(), ["SET", "x", "y".repeat(100)]);
  for (let i = 0; i < 5000; i++) {
    assert.deepEqual(d.read(), ["ECHO", `m${i}`, String(i), String(i)]);
  }
  assert.equal(d.read(), NEED_MORE);
  // After a huge take() the encoder still works.
  e.encode(["SET", "k", new Uint8Array(3 * 1024 * 1024)]);
  assert.equal(e.take().length, 3 * 1024 * 1024 + 32);
  e.encode(["PING"]);
  assert.equal(utf8(e.take()), "*1\r\n$4\r\nPING\r\n");
});

const BAD: [string, unknown, typeof TypeError | typeof RangeError][] = [
  ["null", null, TypeError],
  ["undefined", undefined, TypeError],
  ["true", true, TypeError],
  ["false", false, TypeError],
  ["an object", { a: 1 }, TypeError],
  ["an array", ["x"], TypeError],
  ["a Date", new Date(0), TypeError],
  ["an ArrayBuffer", new ArrayBuffer(4), TypeError],
  ["a DataView", new DataView(new ArrayBuffer(4)), TypeError],
  ["a symbol", Symbol("s"), TypeError],
  ["a function", () => 1, TypeError],
  ["NaN", NaN, RangeError],
  ["Infinity", Infinity, RangeError],
  ["-Infinity", -Infinity, RangeError],
];

test("bad arguments: TypeError or RangeError naming the argument", () => {
  for (const [what, value, type] of BAD) {
    assert.throws(
      () => encodeCommand(["SET", "k", value]),
      (e: unknown) => {
        assert.ok(e instanceof type, `${what}: got ${e}`);
        assert.equal((e as Error).constructor, type, what);
        assert.match((e as Error).message, /Argument 2 of SET/, what);
        return true;
      },
      what,
    );
    assert.throws(() => validateArgs(["SET", "k", value]), type, what);
  }
});

test("bad commands: empty, or a name that is not a non-empty string", () => {
  assert.throws(() => encodeCommand([]), TypeError);
  assert.throws(() => encodeCommand([""]), TypeError);
  assert.throws(() => encodeCommand([42]), TypeError);
  assert.throws(() => encodeCommand([new Uint8Array([80])]), TypeError);
  assert.throws(() => encodeCommand([null]), TypeError);
  assert.throws(
    () => encodeCommand("PING" as unknown as unknown[]),
    TypeError,
  );
});

test("a failed encode leaves the encoder's buffer unchanged", () => {
  const e = new CommandEncoder();
  e.encode(["SET", "a", "1"]);
  const before = e.length;
  const cases: unknown[][] = [
    [],
    [""],
    ["SET", "b", null],
    ["SET", "b", "2", "EX", NaN],
    ["MSET", "x", "1", "y", "2", "z", undefined],
    ["SET", "c".repeat(5000), { big: true }],
  ];
  for (const bad of cases) {
    assert.throws(() => e.encode(bad));
    assert.equal(e.length, before, `after ${String(bad[bad.length - 1])}`);
  }
  e.encode(["GET", "a"]);
  assert.equal(
    utf8(e.take()),
    "*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n",
  );
});
