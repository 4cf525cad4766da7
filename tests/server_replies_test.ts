/**
 * What respite does when Redis answers OOM, READONLY or NOSCRIPT, each
 * produced by a real server (LOADING and BUSY, which are sent again, are in
 * tests/client_reliability_test.ts): a clear, typed error that changes
 * nothing, or the EVAL fallback.
 */
import assert from "node:assert/strict";
import {
  cached,
  connect,
  Lock,
  type Logger,
  ReplyError,
  withLock,
} from "../mod.ts";
import { startRedis } from "../testing/redis.ts";
import { sleep, test } from "./_harness.ts";

let n = 0;
const uniq = (s: string) => `rep-${Date.now()}-${n++}-${s}`;

function capture(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, warn: (m: string) => lines.push(m) };
}

test("OOM: acquire, withLock and cached reject with a ReplyError carrying OOM; nothing is left behind", async () => {
  const server = await startRedis({
    args: ["--maxmemory", "1", "--maxmemory-policy", "noeviction"],
  });
  try {
    await using r = await connect(server.url);
    // maxmemory 1 byte: every write is refused, reads still work.
    const lock = new Lock(r, uniq("oom"), { logger: null });
    await assert.rejects(
      lock.acquire({ wait: 0 }),
      (e: unknown) => e instanceof ReplyError && e.code === "OOM",
    );
    assert.equal(lock.held, false);
    let ran = false;
    await assert.rejects(
      withLock(() => {
        ran = true;
      }, { redis: r, name: uniq("oom-wl"), wait: 1_000, logger: null })(),
      (e: unknown) => e instanceof ReplyError && e.code === "OOM",
    );
    assert.equal(ran, false, "fn ran without the lock");
    const get = cached(() => Promise.resolve("v"), {
      redis: r,
      key: uniq("oom-c"),
      ttl: 1_000,
      failOpen: false,
      logger: null,
    });
    await assert.rejects(get());
    assert.equal(await r.send("DBSIZE"), 0, "something was written");
  } finally {
    await server.stop();
  }
});

test("READONLY: a lock on a replica rejects with a ReplyError carrying READONLY", async () => {
  const master = await startRedis();
  const replica = await startRedis({
    args: ["--replicaof", "127.0.0.1", String(master.port)],
  });
  try {
    await using r = await connect(replica.url);
    const lock = new Lock(r, uniq("ro"), { logger: null });
    const t0 = performance.now();
    await assert.rejects(
      lock.acquire({ wait: 2_000 }),
      (e: unknown) => e instanceof ReplyError && e.code === "READONLY",
    );
    assert.ok(performance.now() - t0 < 1_500, "it kept retrying a refusal");
    assert.equal(lock.held, false);
  } finally {
    await replica.stop();
    await master.stop();
  }
});

test("NOSCRIPT after a server restart: the lock falls back to EVAL, warns once per script, and works", async () => {
  const server = await startRedis();
  try {
    const logger = capture();
    await using r = await connect({
      url: server.url,
      logger,
      reconnect: { minDelay: 10, maxDelay: 50 },
    });
    const name = uniq("noscript");
    const a = new Lock(r, name);
    assert.equal(await a.acquire({ wait: 0 }), true);
    await a.release();
    // A fresh server does not have the scripts yet: each warns once.
    assert.deepEqual([...logger.lines].sort(), [
      "ACQUIRE_SCRIPT not cached.",
      "UNLOCK_SCRIPT not cached.",
    ]);
    logger.lines.length = 0;
    for (let i = 0; i < 3; i++) {
      assert.equal(await a.acquire({ wait: 0 }), true);
      await a.release();
    }
    assert.deepEqual(logger.lines, [], "the server has them now");
    // An empty server: its script cache is gone. Down long enough for a
    // failed reconnect attempt, so it is an outage (a connection that comes
    // back at the first attempt is not one, and logs nothing).
    await server.stop();
    await sleep(200);
    await server.start();
    for (let i = 0; i < 3; i++) {
      assert.equal(await a.acquire({ wait: 5_000 }), true);
      await a.release();
    }
    // The restart is one outage: one line when it starts, one when it ends.
    const lines: string[] = logger.lines; // (deepEqual above narrowed it)
    const outage = lines.filter((l) => l.startsWith("respite: "));
    assert.equal(outage.length, 2, lines.join("\n"));
    assert.match(
      outage[0],
      /^respite: lost the connection to .*; reconnecting$/,
    );
    assert.match(outage[1], /^respite: the connection to .* is back after /);
    assert.deepEqual(lines.filter((l) => !outage.includes(l)).sort(), [
      "ACQUIRE_SCRIPT not cached.",
      "UNLOCK_SCRIPT not cached.",
    ]);
  } finally {
    await server.stop();
  }
});
