/**
 * The fault proxy itself (testing/fault_proxy.ts): each fault does what it
 * says, against a real redis-server, seen through raw sockets (bytes, FIN,
 * RST) and respite's client; and its RESP frame counter counts every reply
 * type in any chunking.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { connect } from "../mod.ts";
import { FrameCounter, startFaultProxy } from "../testing/fault_proxy.ts";
import { runArgs, spawn } from "../testing/proc.ts";
import { startFakeServer } from "./_fake_server.ts";
import { sharedRedis } from "../testing/redis.ts";
import { randomTopFrame, writeFrames } from "../testing/resp_writer.ts";
import { mulberry32, Rand } from "../testing/random.ts";
import { sleep, teardown, test } from "./_harness.ts";

const redis = await sharedRedis();
const target = { port: redis.port };
const worker = new URL("../testing/fault_worker.ts", import.meta.url).pathname;
let n = 0;
const key = (s: string) => `respite-test-faultproxy-${Date.now()}-${n++}:${s}`;

/** A raw TCP client that records what happens to it. */
interface Raw {
  sock: net.Socket;
  /** Everything received, latin-1. */
  text: () => string;
  /** How many `data` events arrived. */
  reads: () => number;
  ended: () => boolean;
  closed: () => boolean;
  error: () => string | null;
  send(s: string): void;
  /** Resolves once the received text contains `s` (rejects after `ms`). */
  waitFor(s: string, ms?: number): Promise<void>;
  /** Resolves once `f()` holds (rejects after `ms`). */
  until(what: string, f: () => boolean, ms?: number): Promise<void>;
  close(): Promise<void>;
}

async function raw(port: number): Promise<Raw> {
  const sock = net.connect({ host: "127.0.0.1", port, allowHalfOpen: true });
  let text = "";
  let reads = 0;
  let ended = false;
  let closed = false;
  let error: string | null = null;
  sock.on("data", (d: Uint8Array) => {
    reads++;
    for (const b of d) text += String.fromCharCode(b);
  });
  sock.on("end", () => ended = true);
  sock.on("close", () => closed = true);
  sock.on("error", (e: Error & { code?: string }) => error = e.code ?? e.name);
  // Connected, or refused/reset before that (recorded in `error`).
  await new Promise<void>((resolve) => {
    sock.once("connect", () => resolve());
    sock.once("close", () => resolve());
  });
  const until = async (what: string, f: () => boolean, ms = 3_000) => {
    const deadline = Date.now() + ms;
    while (!f()) {
      if (Date.now() > deadline) {
        throw new Error(
          `timed out waiting for ${what}; got ${JSON.stringify(text)}`,
        );
      }
      await sleep(5);
    }
  };
  return {
    sock,
    text: () => text,
    reads: () => reads,
    ended: () => ended,
    closed: () => closed,
    error: () => error,
    send: (s) => void sock.write(s),
    waitFor: (s, ms) => until(JSON.stringify(s), () => text.includes(s), ms),
    until,
    close: async () => {
      if (!closed) {
        sock.destroy();
        await until("close", () => closed);
      }
    },
  };
}

const cmd = (...args: string[]) =>
  `*${args.length}\r\n` + args.map((a) => `$${a.length}\r\n${a}\r\n`).join("");

test("clean pipe: 2,000 pipelined commands through the proxy, every reply matched and counted", async () => {
  const proxy = await startFaultProxy(target);
  try {
    await using r = await connect(proxy.url);
    const before = proxy.stats;
    const k = key("clean");
    const results = await Promise.all(
      Array.from(
        { length: 2_000 },
        (_, i) => i % 2 === 0 ? r.send("INCR", k) : r.send("ECHO", `v${i}`),
      ),
    );
    for (let i = 0; i < results.length; i++) {
      assert.equal(results[i], i % 2 === 0 ? i / 2 + 1 : `v${i}`);
    }
    const after = proxy.stats;
    assert.equal(after.requests - before.requests, 2_000);
    assert.equal(after.replies - before.replies, 2_000);
    assert.equal(after.outstanding, 0);
    assert.equal(after.inFlightCut, 0);
    assert.ok(after.bytesUp > 0 && after.bytesDown > 0);
    assert.equal(after.open, 1);
    await r.send("DEL", k);
  } finally {
    await proxy.close();
  }
});

test("latency(150): a round trip takes ≥ 300 ms (both directions delayed); latency(0) makes it fast again", async () => {
  const proxy = await startFaultProxy(target);
  try {
    await using r = await connect(proxy.url);
    proxy.latency(150);
    let t0 = performance.now();
    assert.equal(await r.send("PING"), "PONG");
    const slow = performance.now() - t0;
    assert.ok(slow >= 295, `round trip ${slow.toFixed(0)} ms`);
    // A delay line, not a queue: 10 commands in one go take one round trip.
    t0 = performance.now();
    await Promise.all(Array.from({ length: 10 }, () => r.send("PING")));
    const ten = performance.now() - t0;
    assert.ok(ten < 2 * slow + 150, `10 pipelined took ${ten.toFixed(0)} ms`);
    assert.ok(proxy.stats.chunksDelayed >= 2);
    proxy.latency(0);
    t0 = performance.now();
    await r.send("PING");
    const fast = performance.now() - t0;
    assert.ok(fast < 150, `round trip ${fast.toFixed(0)} ms after latency(0)`);
  } finally {
    await proxy.close();
  }
});

async function readsThroughProxy(port: number, send: string, expect: number) {
  const [exe, args] = runArgs(worker, [
    JSON.stringify({ mode: "reads", port, send, expect }),
  ]);
  const p = spawn(exe, args);
  assert.equal(await p.exited, 0, await p.stderr());
  return JSON.parse(await p.stdout()) as { text: string; reads: number };
}

test("chunk(1, { gapMs: 0 }): a reader in another process gets a reply one byte per read; requests reach the server intact", async () => {
  const proxy = await startFaultProxy(target);
  try {
    proxy.chunk(1, { gapMs: 0 });
    const k = key("chunk");
    const value = "x\r\n$5\r\n".repeat(20); // looks like RESP inside a value
    const reply = `+OK\r\n$${value.length}\r\n${value}\r\n`;
    const out = await readsThroughProxy(
      proxy.port,
      cmd("SET", k, value) + cmd("GET", k),
      reply.length,
    );
    assert.equal(out.text, reply);
    // Unchunked, these 153 bytes come in one read.
    assert.ok(
      out.reads >= 100,
      `${reply.length} bytes came in ${out.reads} reads`,
    );
    // The last piece's write callback may come after the reader is done.
    const by = Date.now() + 2_000;
    while (proxy.stats.replies < 2 && Date.now() < by) await sleep(5);
    const s = proxy.stats;
    assert.ok(s.chunksSplit >= 2, `chunksSplit ${s.chunksSplit}`);
    assert.equal(s.requests, 2);
    assert.equal(s.replies, 2);
    proxy.chunk(null);
    await using r = await connect(proxy.url);
    assert.equal(await r.send("DEL", k), 1);
  } finally {
    await proxy.close();
  }
});

test("chunk(1) without a gap: 500 pipelined commands and their replies cut into 1-byte writes, every reply matched", async () => {
  const proxy = await startFaultProxy(target);
  try {
    await using r = await connect(proxy.url);
    proxy.chunk(1);
    const k = key("chunk-fast");
    const results = await Promise.all(
      Array.from(
        { length: 500 },
        (_, i) => i % 2 === 0 ? r.send("INCR", k) : r.send("ECHO", `v${i}\r\n`),
      ),
    );
    for (let i = 0; i < results.length; i++) {
      assert.equal(results[i], i % 2 === 0 ? i / 2 + 1 : `v${i}\r\n`);
    }
    assert.ok(proxy.stats.chunksSplit >= 2);
    proxy.resume();
    await r.send("DEL", k);
  } finally {
    await proxy.close();
  }
});

test("stall(): bytes are held both ways with the connection open; resume() delivers them in order", async () => {
  const proxy = await startFaultProxy(target);
  const c = await raw(proxy.port);
  try {
    const k = key("stall");
    // One request out when the stall begins (BLPOP answers in 400 ms).
    c.send(cmd("BLPOP", k, "0.4"));
    await sleep(50);
    proxy.stall();
    c.send(cmd("ECHO", "during"));
    await sleep(700);
    assert.equal(c.text(), "", "nothing came through");
    assert.equal(c.ended() || c.closed(), false, "still open");
    let s = proxy.stats;
    assert.equal(s.outstanding, 2);
    assert.equal(s.inFlightCut, 2, "the one out and the one sent during");
    assert.ok(s.chunksDelayed >= 1);
    proxy.resume();
    await c.waitFor("$6\r\nduring\r\n");
    assert.equal(c.text(), "*-1\r\n$6\r\nduring\r\n");
    s = proxy.stats;
    assert.equal(s.outstanding, 0);
    assert.equal(s.bytesDiscarded, 0);
  } finally {
    await c.close();
    await proxy.close();
  }
});

test('stall("down") lets requests reach the server and holds the replies; stall("up") holds the requests', async () => {
  const proxy = await startFaultProxy(target);
  const c = await raw(proxy.port);
  await using direct = await connect(redis.url);
  try {
    const k = key("stall-way");
    proxy.stall("down");
    c.send(cmd("SET", k, "1"));
    const by = Date.now() + 3_000;
    while (await direct.send("GET", k) !== "1") {
      assert.ok(Date.now() < by, "the SET never reached the server");
      await sleep(5);
    }
    await sleep(50);
    assert.equal(c.text(), "", "the reply is held");
    assert.equal(proxy.stats.outstanding, 1);
    proxy.resume();
    await c.waitFor("+OK\r\n");
    proxy.stall("up");
    c.send(cmd("SET", k, "2"));
    await sleep(100);
    assert.equal(await direct.send("GET", k), "1", "the SET is held");
    proxy.resume();
    await c.waitFor("+OK\r\n+OK\r\n");
    assert.equal(await direct.send("GET", k), "2");
    await direct.send("DEL", k);
  } finally {
    await c.close();
    await proxy.close();
  }
});

test("blackhole(): bytes vanish both ways with no FIN or RST; the connection stays dead after resume(), new ones work", async () => {
  const proxy = await startFaultProxy(target);
  const c = await raw(proxy.port);
  await using direct = await connect(redis.url);
  try {
    const k = key("blackhole");
    c.send(cmd("PING"));
    await c.waitFor("+PONG\r\n");
    proxy.blackhole();
    c.send(cmd("SET", k, "lost"));
    await sleep(300);
    assert.equal(await direct.send("EXISTS", k), 0, "the server got nothing");
    assert.equal(c.text(), "+PONG\r\n");
    assert.equal(c.ended() || c.closed() || c.error() !== null, false);
    // Accepted while black-holed: dead too.
    const d = await raw(proxy.port);
    d.send(cmd("PING"));
    await sleep(200);
    assert.equal(d.text(), "");
    const s = proxy.stats;
    assert.ok(s.bytesDiscarded > 0);
    assert.equal(s.inFlightCut, 2, "two requests went into the hole");
    proxy.resume();
    c.send(cmd("PING"));
    await sleep(200);
    assert.equal(c.text(), "+PONG\r\n", "a connection with a hole stays dead");
    const e = await raw(proxy.port);
    e.send(cmd("PING"));
    await e.waitFor("+PONG\r\n");
    await d.close();
    await e.close();
    await c.until("the proxy to let go of them", () => proxy.stats.open === 1);
  } finally {
    await c.close();
    await proxy.close();
  }
});

test("halfClose(): the client gets a FIN and can still send; the server still runs what it sends", async () => {
  const proxy = await startFaultProxy(target);
  const c = await raw(proxy.port);
  await using direct = await connect(redis.url);
  try {
    const k = key("half");
    c.send(cmd("BLPOP", key("half-pending"), "0.3"));
    await sleep(50);
    proxy.halfClose();
    await c.until("the FIN", () => c.ended());
    assert.equal(c.error(), null, "no RST");
    c.send(cmd("SET", k, "after-fin"));
    const deadline = Date.now() + 3_000;
    while (await direct.send("GET", k) !== "after-fin") {
      assert.ok(Date.now() < deadline, "the write after the FIN never arrived");
      await sleep(10);
    }
    assert.equal(c.text(), "", "no reply after the FIN");
    const s = proxy.stats;
    assert.equal(s.connectionsCut, 1);
    assert.equal(
      s.inFlightCut,
      2,
      "the BLPOP that was out, and the SET sent after the FIN",
    );
    c.sock.end();
    await c.until("close", () => c.closed());
    await direct.send("DEL", k);
  } finally {
    await c.close();
    await proxy.close();
  }
});

test("drop(): every connection ends with a FIN (no RST); the requests out are counted", async () => {
  const proxy = await startFaultProxy(target);
  const a = await raw(proxy.port);
  const b = await raw(proxy.port);
  try {
    a.send(cmd("BLPOP", key("drop"), "5"));
    b.send(cmd("BLPOP", key("drop"), "5") + cmd("PING"));
    await sleep(100);
    assert.equal(proxy.stats.outstanding, 3);
    assert.deepEqual(
      proxy.outstandingRequests().map((a) => a[0]).sort(),
      ["BLPOP", "BLPOP", "PING"],
    );
    proxy.drop();
    await a.until("a's FIN", () => a.ended());
    await b.until("b's FIN", () => b.ended());
    assert.equal(a.error(), null);
    assert.equal(b.error(), null);
    a.sock.end();
    b.sock.end();
    await a.until("a closed", () => a.closed());
    await b.until("b closed", () => b.closed());
    const s = proxy.stats;
    assert.equal(s.connectionsCut, 2);
    assert.equal(s.inFlightCut, 3);
    await a.until("the proxy to let go", () => proxy.stats.open === 0);
  } finally {
    await a.close();
    await b.close();
    await proxy.close();
  }
});

test("reset(): every connection is destroyed with an RST (ECONNRESET at the client)", async () => {
  const proxy = await startFaultProxy(target);
  const a = await raw(proxy.port);
  try {
    a.send(cmd("BLPOP", key("reset"), "5"));
    await sleep(100);
    proxy.reset();
    await a.until("the reset", () => a.closed());
    assert.equal(a.error(), "ECONNRESET");
    const s = proxy.stats;
    assert.equal(s.connectionsCut, 1);
    assert.equal(s.inFlightCut, 1);
    assert.equal(s.open, 0);
  } finally {
    await a.close();
    await proxy.close();
  }
});

test("refuse(true): new connections are closed at once; refuse(false) lets them through again", async () => {
  const proxy = await startFaultProxy(target);
  try {
    proxy.refuse(true);
    const a = await raw(proxy.port);
    if (!a.closed()) a.send(cmd("PING"));
    await a.until("the refusal", () => a.closed());
    assert.equal(a.text(), "");
    proxy.refuse(false);
    const b = await raw(proxy.port);
    b.send(cmd("PING"));
    await b.waitFor("+PONG\r\n");
    await b.close();
    assert.equal(proxy.stats.connectionsCut, 1);
  } finally {
    await proxy.close();
  }
});

test("the server dies (SIGKILL): clients get a FIN, the requests out are counted; with the server down, new connections close at once", async () => {
  const { startRedis } = await import("../testing/redis.ts");
  const own = await startRedis();
  const proxy = await startFaultProxy({ port: own.port });
  const a = await raw(proxy.port);
  try {
    a.send(cmd("BLPOP", "k", "5"));
    await sleep(100);
    own.signal("SIGKILL");
    await a.until("the FIN", () => a.ended());
    let s = proxy.stats;
    assert.equal(s.serverClosed, 1);
    assert.equal(s.inFlightCut, 1);
    await own.stop();
    const b = await raw(proxy.port);
    await b.until("closed", () => b.ended() || b.closed());
    await b.close();
    s = proxy.stats;
    assert.equal(s.upstreamFailed, 1);
  } finally {
    await a.close();
    await proxy.close();
    await own.stop();
  }
});

test("a subscriber connection's messages are not counted as replies", async () => {
  const proxy = await startFaultProxy(target);
  try {
    await using r = await connect(proxy.url);
    await using pub = await connect(redis.url);
    const got: string[] = [];
    const ch = key("ch");
    const unsubscribe = await r.subscribe(ch, (m) => got.push(String(m)));
    for (let i = 0; i < 20; i++) await pub.send("PUBLISH", ch, `m${i}`);
    const deadline = Date.now() + 3_000;
    while (got.length < 20) {
      assert.ok(Date.now() < deadline, `got ${got.length} messages`);
      await sleep(5);
    }
    await r.send("PING");
    const s = proxy.stats;
    assert.equal(s.outstanding, 0);
    assert.equal(s.requests, s.replies, JSON.stringify(s));
    await unsubscribe();
  } finally {
    await proxy.close();
  }
});

test("frame counter: 5,000 random RESP3 replies (nested aggregates, attributes, pushes, bulk strings holding CRLF) fed 1 byte at a time, and in random cuts: every top-level frame counted, pushes told apart", () => {
  const r = new Rand(mulberry32(11));
  const frames = Array.from({ length: 5_000 }, () => randomTopFrame(r, true));
  const bytes = writeFrames(frames);
  for (const cutting of ["1 byte", "random"]) {
    const types: number[] = [];
    const counter = new FrameCounter((type) => types.push(type));
    for (let i = 0; i < bytes.length;) {
      const n = cutting === "1 byte" ? 1 : 1 + r.int(300);
      counter.feed(bytes.subarray(i, i + n));
      i += n;
    }
    assert.equal(types.length, frames.length, cutting);
    const pushes = types.filter((t) => t === 0x3e).length;
    assert.equal(pushes, frames.filter((f) => f.t === "push").length);
  }
  // A request's leading arguments are passed on (SUBSCRIBE is told apart).
  const names: Array<string[]> = [];
  const up = new FrameCounter((_t, args) => names.push(args));
  up.feed(
    new TextEncoder().encode(
      cmd("SUBSCRIBE", "ch") + cmd("GET", "k") + "PING\r\n",
    ),
  );
  assert.deepEqual(names, [["SUBSCRIBE", "ch"], ["GET", "k"], []]);
});

test(
  "frame counter through the proxy: 300 random RESP3 replies from a fake server, 1-byte chunks: replies counted exactly, pushes left out",
  async () => {
    const r = new Rand(mulberry32(7));
    const frames = Array.from({ length: 300 }, () => randomTopFrame(r, true));
    const replies = frames.filter((f) => f.t !== "push").length;
    const bytes = writeFrames(frames);
    const fake = startFakeServer((conn) => {
      void conn.waitFor("go", 5_000).then(() => conn.write(bytes)).catch(
        () => {},
      );
    });
    const proxy = await startFaultProxy({ port: fake.port });
    const c = await raw(proxy.port);
    try {
      proxy.chunk(1);
      c.send("go\r\n");
      await c.until(
        "every byte",
        () => c.text().length >= bytes.length,
        30_000,
      );
      assert.equal(proxy.stats.replies, replies);
      assert.equal(proxy.stats.requests, 1, "an inline command counts as one");
    } finally {
      await c.close();
      await proxy.close();
      await fake.close();
    }
  },
  { timeout: 60_000 },
);

teardown(async () => {
  await redis.stop();
});
