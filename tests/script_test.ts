/**
 * Script: its SHA-1 matches Redis's, run() passes keys and args, EVALSHA
 * falls back to EVAL on NOSCRIPT with one `NAME not cached.` warning per loss
 * of the script on a server — a fresh server's first use included, shared by
 * hundreds of concurrent callers on several clients — and none where the
 * server has the script; `logger: null` silences it, and Lua errors reject
 * with ReplyError.
 */
import assert from "node:assert/strict";
import { connect, type RedisClient, ReplyError, Script } from "../mod.ts";
import { startRedis } from "../testing/redis.ts";
import { teardown, test } from "./_harness.ts";

// Our own server: the tests flush its script cache and read its error stats.
const server = await startRedis();
const url = server.url;
let n = 0;
const key = (s: string) => `respite:test:script:${n++}:${s}`;

/** A client whose warnings are collected in `warnings`. */
async function capturing(): Promise<{ r: RedisClient; warnings: string[] }> {
  const warnings: string[] = [];
  const r = await connect({ url, logger: { warn: (m) => warnings.push(m) } });
  return { r, warnings };
}

/** How many NOSCRIPT errors the server sent since the last CONFIG RESETSTAT. */
async function noscriptCount(r: RedisClient): Promise<number> {
  const info = await r.send<string>("INFO", "errorstats");
  return Number(/errorstat_NOSCRIPT:count=(\d+)/.exec(info)?.[1] ?? 0);
}

test("sha() equals SCRIPT LOAD's answer (ASCII and UTF-8 sources)", async () => {
  await using r = await connect(url);
  for (
    const lua of [
      "return 1",
      "return redis.call('GET', KEYS[1])",
      "-- ünïcödé ✓ 🚀\nreturn 'héllo'",
      "return '" + "x".repeat(10_000) + "'",
    ]
  ) {
    const s = new Script("S", lua);
    const sha = await s.sha();
    assert.match(sha, /^[0-9a-f]{40}$/);
    assert.equal(sha, await r.send("SCRIPT", "LOAD", lua));
    assert.equal(await s.sha(), sha, "stable");
  }
  assert.notEqual(
    await new Script("A", "return 1").sha(),
    await new Script("B", "return 2").sha(),
  );
});

test("run() passes keys and args and returns the reply", async () => {
  await using r = await connect(url);
  const s = new Script(
    "ECHO_SCRIPT",
    "return {#KEYS, #ARGV, KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3]}",
  );
  const k1 = key("a");
  const k2 = key("b");
  const bytes = new Uint8Array([104, 13, 10, 0, 105]); // "h\r\n\0i"
  assert.deepEqual(
    await s.run(r, { keys: [k1, k2], args: ["x y", 42, bytes], logger: null }),
    [2, 3, k1, k2, "x y", "42", "h\r\n\0i"],
  );
  assert.deepEqual(
    await s.run(r, { logger: null }),
    [0, 0],
    "Lua arrays stop at the first nil",
  );
  const incr = new Script(
    "INCRBY_SCRIPT",
    "return redis.call('INCRBY', KEYS[1], ARGV[1])",
  );
  const k = key("n");
  assert.equal(await incr.run(r, { keys: [k], args: [5], logger: null }), 5);
  assert.equal(await incr.run(r, { keys: [k], args: [-2n], logger: null }), 3);
  assert.equal(await r.send("GET", k), "3");
});

test("first run on a fresh server falls back to EVAL and warns `NAME not cached.` once; each later loss warns once", async () => {
  const { r, warnings } = await capturing();
  try {
    await r.send("SCRIPT", "FLUSH");
    await r.send("CONFIG", "RESETSTAT");
    const s = new Script("FRESH_SCRIPT", "return 'fresh:' .. ARGV[1]");
    assert.deepEqual(
      await r.send("SCRIPT", "EXISTS", await s.sha()),
      [0],
    );
    assert.equal(await s.run(r, { args: ["1"] }), "fresh:1");
    assert.deepEqual(warnings, ["FRESH_SCRIPT not cached."]);
    assert.equal(await noscriptCount(r), 1, "EVALSHA was tried first");
    // EVAL cached it: from now on EVALSHA works, and nothing more is logged.
    assert.deepEqual(await r.send("SCRIPT", "EXISTS", await s.sha()), [1]);
    for (let i = 2; i <= 5; i++) {
      assert.equal(await s.run(r, { args: [String(i)] }), `fresh:${i}`);
    }
    assert.equal(await noscriptCount(r), 1, "EVALSHA failed again");
    assert.deepEqual(warnings, ["FRESH_SCRIPT not cached."]);
    // A loss (a flush after the script ran) warns once ...
    await r.send("SCRIPT", "FLUSH");
    assert.equal(await s.run(r, { args: ["6"] }), "fresh:6");
    assert.equal(await s.run(r, { args: ["7"] }), "fresh:7");
    assert.deepEqual(warnings, [
      "FRESH_SCRIPT not cached.",
      "FRESH_SCRIPT not cached.",
    ]);
    assert.equal(await noscriptCount(r), 2);
    // ... and a loss right after a fallback (no EVALSHA worked in between:
    // EVAL had loaded it) once more.
    await r.send("SCRIPT", "FLUSH");
    assert.equal(await s.run(r, { args: ["8"] }), "fresh:8");
    await r.send("SCRIPT", "FLUSH");
    assert.equal(await s.run(r, { args: ["9"] }), "fresh:9");
    assert.deepEqual(warnings, Array(4).fill("FRESH_SCRIPT not cached."));
  } finally {
    await r.close();
  }
});

test("a server that already has the script prints nothing", async () => {
  const { r, warnings } = await capturing();
  try {
    const s = new Script("PRELOADED_SCRIPT", "return 'pre'");
    assert.equal(await r.send("SCRIPT", "LOAD", s.lua), await s.sha());
    await r.send("CONFIG", "RESETSTAT");
    await Promise.all(Array.from({ length: 20 }, () => s.run(r)));
    assert.equal(await s.run(r), "pre");
    assert.equal(await noscriptCount(r), 0);
    assert.deepEqual(warnings, []);
  } finally {
    await r.close();
  }
});

test("100 concurrent first uses on 5 clients of one fresh server: one warning in all, every call runs once", async () => {
  const clients = await Promise.all(
    Array.from({ length: 5 }, () => capturing()),
  );
  try {
    const s = new Script(
      "FLEET_SCRIPT",
      "return redis.call('INCR', KEYS[1])",
    );
    const counter = key("fleet");
    await clients[0].r.send("SCRIPT", "FLUSH");
    await clients[0].r.send("CONFIG", "RESETSTAT");
    await s.sha();
    const results = await Promise.all(
      Array.from(
        { length: 100 },
        (_, i) => s.run<number>(clients[i % 5].r, { keys: [counter] }),
      ),
    );
    assert.deepEqual(
      results.sort((a, b) => a - b),
      Array.from({ length: 100 }, (_, i) => i + 1),
    );
    const all = clients.flatMap((c) => c.warnings);
    assert.deepEqual(all, ["FLEET_SCRIPT not cached."]);
    assert.ok(await noscriptCount(clients[0].r) > 1, "they did fall back");
    // The next loss warns once more, on whichever client meets it first.
    await clients[0].r.send("SCRIPT", "FLUSH");
    await Promise.all(clients.map((c) => s.run(c.r, { keys: [counter] })));
    assert.deepEqual(clients.flatMap((c) => c.warnings), [
      "FLEET_SCRIPT not cached.",
      "FLEET_SCRIPT not cached.",
    ]);
  } finally {
    await Promise.all(clients.map((c) => c.r.close()));
  }
});

test("SCRIPT FLUSH mid-run with 200 concurrent run() calls: one warning, every call succeeds", async () => {
  const { r, warnings } = await capturing();
  try {
    const s = new Script(
      "CONCURRENT_SCRIPT",
      "return {ARGV[1], redis.call('INCR', KEYS[1])}",
    );
    const counter = key("counter");
    await s.run(r, { keys: [counter], args: ["warm"] }); // cached now
    await r.send("DEL", counter);
    warnings.length = 0;
    await r.send("CONFIG", "RESETSTAT");
    await s.sha(); // run() below sends EVALSHA one microtask after it is called
    const runs: Promise<unknown>[] = [];
    for (let i = 0; i < 100; i++) {
      runs.push(s.run(r, { keys: [counter], args: [`r${i}`] }));
    }
    await Promise.resolve(); // the first 100 EVALSHAs are queued now
    const flushed = r.send("SCRIPT", "FLUSH");
    for (let i = 100; i < 200; i++) {
      runs.push(s.run(r, { keys: [counter], args: [`r${i}`] }));
    }
    assert.equal(await flushed, "OK");
    const results = await Promise.all(runs) as [string, number][];
    results.forEach(([arg], i) => assert.equal(arg, `r${i}`));
    // Each call ran exactly once.
    assert.deepEqual(
      results.map(([, count]) => count).sort((a, b) => a - b),
      Array.from({ length: 200 }, (_, i) => i + 1),
    );
    assert.equal(await r.send("GET", counter), "200");
    assert.deepEqual(warnings, ["CONCURRENT_SCRIPT not cached."]);
    const lost = await noscriptCount(r);
    assert.ok(
      lost > 0 && lost < 200,
      `the flush was not mid-run: ${lost} NOSCRIPT replies`,
    );
  } finally {
    await r.close();
  }
});

test("each server warns once for its own loss", async () => {
  const other = await startRedis();
  const a = await capturing();
  const warnings: string[] = [];
  const b = await connect({
    url: other.url,
    logger: { warn: (m) => void warnings.push(m) },
  });
  try {
    const s = new Script("TWO_SERVERS_SCRIPT", "return 'two'");
    await s.run(a.r); // first uses: one warning per server
    await s.run(b);
    assert.deepEqual(a.warnings, ["TWO_SERVERS_SCRIPT not cached."]);
    assert.deepEqual(warnings, ["TWO_SERVERS_SCRIPT not cached."]);
    await a.r.send("SCRIPT", "FLUSH");
    await Promise.all([s.run(a.r), s.run(a.r)]);
    // b's server still has it.
    assert.equal(await s.run(b), "two");
    assert.deepEqual(
      a.warnings,
      Array(2).fill("TWO_SERVERS_SCRIPT not cached."),
    );
    assert.deepEqual(warnings, ["TWO_SERVERS_SCRIPT not cached."]);
    await b.send("SCRIPT", "FLUSH");
    await s.run(b);
    assert.deepEqual(warnings, Array(2).fill("TWO_SERVERS_SCRIPT not cached."));
    assert.equal(a.warnings.length, 2);
  } finally {
    await a.r.close();
    await b.close();
    await other.stop();
  }
});

test("logger: null silences the warning; a run logger overrides the client's", async () => {
  const { r, warnings } = await capturing();
  try {
    const quiet = new Script("QUIET_SCRIPT", "return 'quiet'");
    const loud = new Script("LOUD_SCRIPT", "return 'loud'");
    await quiet.run(r, { logger: null }); // first uses, silenced
    await loud.run(r, { logger: null });
    assert.deepEqual(warnings, []);
    await r.send("SCRIPT", "FLUSH");
    await r.send("CONFIG", "RESETSTAT");
    assert.equal(await quiet.run(r, { logger: null }), "quiet");
    assert.equal(await noscriptCount(r), 1, "it did fall back");
    assert.deepEqual(warnings, []);
    const own: string[] = [];
    assert.equal(
      await loud.run(r, { logger: { warn: (m) => own.push(m) } }),
      "loud",
    );
    assert.deepEqual(own, ["LOUD_SCRIPT not cached."]);
    assert.deepEqual(warnings, []);
  } finally {
    await r.close();
  }
});

test("the default logger is console.warn", async () => {
  const original = console.warn;
  const seen: unknown[][] = [];
  console.warn = (...a: unknown[]) => void seen.push(a);
  try {
    await using r = await connect(url);
    const s = new Script("CONSOLE_SCRIPT", "return 1");
    assert.equal(await s.run(r), 1);
    assert.equal(await s.run(r), 1);
    await r.send("SCRIPT", "FLUSH");
    assert.equal(await s.run(r), 1);
  } finally {
    console.warn = original;
  }
  assert.deepEqual(seen, [
    ["CONSOLE_SCRIPT not cached."],
    ["CONSOLE_SCRIPT not cached."],
  ]);
});

test("Lua errors reject with ReplyError, cached or not", async () => {
  const { r, warnings } = await capturing();
  try {
    const k = key("str");
    await r.send("SET", k, "not a number");
    const incr = new Script(
      "INCR_SCRIPT",
      "return redis.call('INCR', KEYS[1])",
    );
    await r.send("SCRIPT", "FLUSH");
    // Through the EVAL fallback ...
    await assert.rejects(incr.run(r, { keys: [k] }), (e: unknown) => {
      assert.ok(e instanceof ReplyError, `got ${e}`);
      assert.equal(e.code, "ERR");
      assert.match(e.message, /not an integer/);
      return true;
    });
    // ... and through EVALSHA.
    await assert.rejects(incr.run(r, { keys: [k] }), ReplyError);
    const thrower = new Script("THROW_SCRIPT", "error('boom')");
    await assert.rejects(thrower.run(r), (e: unknown) => {
      assert.ok(e instanceof ReplyError);
      assert.match(e.message, /boom/);
      return true;
    });
    const custom = new Script(
      "CUSTOM_SCRIPT",
      "return redis.error_reply('MYCODE custom failure')",
    );
    await assert.rejects(custom.run(r), (e: unknown) => {
      assert.ok(e instanceof ReplyError);
      assert.equal(e.code, "MYCODE");
      return true;
    });
    const broken = new Script("BROKEN_SCRIPT", "return (");
    await assert.rejects(broken.run(r), (e: unknown) => {
      assert.ok(e instanceof ReplyError);
      assert.match(e.message, /compil/i);
      return true;
    });
    // Each script's first use fell back (and warned); runtime errors are not
    // NOSCRIPT, so the second INCR_SCRIPT run did not.
    assert.deepEqual(warnings, [
      "INCR_SCRIPT not cached.",
      "THROW_SCRIPT not cached.",
      "CUSTOM_SCRIPT not cached.",
      "BROKEN_SCRIPT not cached.",
    ]);
    // The connection is still in order.
    assert.equal(await r.send("ECHO", "fine"), "fine");
  } finally {
    await r.close();
  }
});

test("bad constructor arguments are TypeErrors; an aborted signal rejects", async () => {
  assert.throws(() => new Script("", "return 1"), TypeError);
  assert.throws(() => new Script("X", ""), TypeError);
  assert.throws(
    () => new Script(1 as unknown as string, "return 1"),
    TypeError,
  );
  await using r = await connect(url);
  const reason = new Error("stop");
  await assert.rejects(
    new Script("ABORTED_SCRIPT", "return 1").run(r, {
      signal: AbortSignal.abort(reason),
      logger: null,
    }),
    (e: unknown) => e === reason,
  );
});

test("Script.run refuses unknown, null or array options with a TypeError and sends nothing", async () => {
  await using r = await connect(url);
  await using admin = await connect(url);
  const k = `respite:test:script:opts:${Date.now()}`;
  const s = new Script("OPTS_SCRIPT", "return redis.call('SET', KEYS[1], 'x')");
  for (
    const bad of [{ keys: [k], kyes: [k] }, null, [k]] as unknown[]
  ) {
    await assert.rejects(
      s.run(r, bad as { keys: string[] }),
      TypeError,
      JSON.stringify(bad),
    );
  }
  assert.equal(await admin.send("EXISTS", k), 0);
  assert.equal(await s.run(r, { keys: [k], logger: null }), "OK");
  assert.equal(await admin.send("EXISTS", k), 1);
  await admin.send("DEL", k);
});

teardown(() => server.stop());
