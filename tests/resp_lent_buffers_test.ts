/**
 * The zero-copy paths of the RESP codec: a decoder fed chunks lent from one
 * reused read buffer (`release`), and an encoder that hands out views of its
 * own memory (`takeView`).
 */
import assert from "node:assert/strict";
import { NEED_MORE, type Reply, RespDecoder } from "../lib/resp/decoder.ts";
import { CommandEncoder } from "../lib/resp/encoder.ts";
import { test } from "./_harness.ts";
import {
  expectedValue,
  type Frame,
  normalize,
  randomTopFrame,
  writeFrames,
} from "../testing/resp_writer.ts";
import { mulberry32, Rand } from "../testing/random.ts";

/**
 * Feeds `stream` through one reused buffer the way the Deno transport does:
 * copy a chunk in, feed a view of it, read every complete reply, release,
 * then scribble over the buffer so any byte still referenced would show.
 */
function decodeLent(
  stream: Uint8Array,
  size: () => number,
  raw: (i: number) => boolean,
): unknown[] {
  const lent = new Uint8Array(80_000);
  const d = new RespDecoder();
  const out: unknown[] = [];
  for (let off = 0; off < stream.length;) {
    const n = Math.min(Math.max(1, size()), lent.length);
    const part = stream.subarray(off, off + n);
    off += part.length;
    lent.set(part);
    const chunk = lent.subarray(0, part.length);
    d.feed(chunk);
    for (;;) {
      const v = d.read(raw(out.length));
      if (v === NEED_MORE) break;
      out.push(v);
    }
    d.release(chunk);
    lent.fill(0x2a); // '*': would decode as garbage if still referenced
  }
  assert.equal(d.buffered, 0, "bytes left over in the decoder");
  return out;
}

test("property: replies fed from one reused buffer and released decode to the same values", () => {
  for (const seed of [3, 4, 5, 6]) {
    const r = new Rand(mulberry32(seed));
    const resp3 = seed % 2 === 1;
    const frames: Frame[] = Array.from(
      { length: 1500 },
      () => randomTopFrame(r, resp3),
    );
    const raws = frames.map(() => r.chance(0.3));
    const expected = frames.map((f, i) => expectedValue(f, raws[i]));
    const stream = writeFrames(frames);
    const sizes: [string, () => number][] = [
      ["random 1..16", () => 1 + r.int(16)],
      ["random 1..4096", () => 1 + r.int(4096)],
      ["random 1..70000", () => 1 + r.int(70_000)],
      [
        "mixed",
        () => (r.chance(0.5) ? 1 : 1 + r.int(r.chance(0.5) ? 64 : 9000)),
      ],
    ];
    for (const [what, size] of sizes) {
      assert.deepStrictEqual(
        normalize(decodeLent(stream, size, (i) => raws[i])),
        normalize(expected),
        `seed ${seed}, chunks ${what}`,
      );
    }
  }
});

test("a bulk string longer than the lent buffer, released chunk by chunk", () => {
  const value = "x".repeat(200_000) + "\r\n" + "y".repeat(50_000);
  const stream = new TextEncoder().encode(
    `$${value.length}\r\n${value}\r\n+OK\r\n`,
  );
  const out = decodeLent(stream, () => 65_536, () => false) as Reply[];
  assert.equal(out.length, 2);
  assert.equal(out[0], value);
  assert.equal(out[1], "OK");
});

test("takeView: each view holds its commands until the next takeView", () => {
  const e = new CommandEncoder();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  e.encode(["GET", "a"]);
  const first = e.takeView();
  assert.equal(e.length, 0);
  e.encode(["SET", "b", "2"]);
  // Encoding goes into the other buffer: the first view is intact.
  assert.equal(text(first), "*2\r\n$3\r\nGET\r\n$1\r\na\r\n");
  const second = e.takeView();
  assert.equal(text(second), "*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$1\r\n2\r\n");
  assert.notEqual(first.buffer, second.buffer);
  e.encode(["PING"]);
  assert.equal(text(second), "*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$1\r\n2\r\n");
  assert.equal(text(e.takeView()), "*1\r\n$4\r\nPING\r\n");
  // Growing past the buffer size, and take() mixed in, still work.
  const big = "z".repeat(3 * 1024 * 1024);
  e.encode(["SET", "k", big]);
  const view = e.takeView();
  assert.equal(view.length, 3 * 1024 * 1024 + 32);
  e.encode(["ECHO", "after"]);
  assert.equal(text(view.subarray(view.length - 2)), "\r\n");
  assert.equal(text(e.take()), "*2\r\n$4\r\nECHO\r\n$5\r\nafter\r\n");
  e.encode(["PING"]);
  assert.equal(text(e.takeView()), "*1\r\n$4\r\nPING\r\n");
});
