/**
 * `cached` checks its arguments when it is called, not on first use: wrong
 * types are `TypeError`s, values out of range `RangeError`s, and nothing is
 * sent to Redis.
 */
import assert from "node:assert/strict";
import { cached, connect, Lock } from "../mod.ts";
import { commandCalls, sharedRedis } from "../testing/redis.ts";
import { teardown, test } from "./_harness.ts";

const server = await sharedRedis();
const url = server.url;

test("bad options throw TypeError or RangeError at cached() time, sending nothing", async () => {
  await using redis = await connect(url);
  const base = { redis, key: "k", ttl: 1_000 };
  const fn = () => 1;
  // deno-lint-ignore no-explicit-any
  const bad = (f: unknown, o: unknown) => () => cached(f as any, o as any);
  const rangeErrors: Array<[string, Record<string, unknown>]> = [
    ["ttl 0", { ttl: 0 }],
    ["ttl negative", { ttl: -5 }],
    ["ttl non-integer", { ttl: 1.5 }],
    ["ttl NaN", { ttl: NaN }],
    ["ttl Infinity", { ttl: Infinity }],
    ["negative staleWhileRevalidate", { staleWhileRevalidate: -1 }],
    ["negative staleIfError", { staleIfError: -1 }],
    ["non-integer staleIfError", { staleIfError: 0.5 }],
    ["negative negativeTtl", { negativeTtl: -1 }],
    ["beta < 0", { beta: -0.1 }],
    ["beta NaN", { beta: NaN }],
    ["beta Infinity", { beta: Infinity }],
    ["negative jitter", { jitter: -1 }],
    ["jitter >= ttl", { jitter: 1_000 }],
    ["lockTtl 0", { lockTtl: 0 }],
    ["wait negative", { wait: -1 }],
    ["wait NaN", { wait: NaN }],
    ["timeout 0", { timeout: 0 }],
  ];
  for (const [what, o] of rangeErrors) {
    assert.throws(bad(fn, { ...base, ...o }), RangeError, what);
  }
  const typeErrors: Array<[string, unknown, unknown]> = [
    ["no function", 42, base],
    ["no options", fn, undefined],
    ["redis not a client", fn, { ...base, redis: {} }],
    ["ttl missing", fn, { redis, key: "k" }],
    ["ttl a string", fn, { ...base, ttl: "1000" }],
    ["empty key", fn, { ...base, key: "" }],
    ["key a number", fn, { ...base, key: 7 }],
    ["key missing, fn with parameters", (id: number) => id, { redis, ttl: 1 }],
    ["key missing, anonymous fn", (() => () => 1)(), { redis, ttl: 1 }],
    ["prefix with a brace", fn, { ...base, prefix: "a{b" }],
    ["codec without decode", fn, { ...base, codec: { encode: String } }],
    ["cacheNullish not boolean", fn, { ...base, cacheNullish: 1 }],
    ["failOpen not boolean", fn, { ...base, failOpen: "no" }],
    ["onWaitTimeout unknown", fn, { ...base, onWaitTimeout: "retry" }],
    ["hooks not callbacks", fn, { ...base, hooks: { hit: 1 } }],
    ["unknown hook", fn, { ...base, hooks: { hitt: () => {} } }],
    ["unknown option", fn, { ...base, staleWhileRevalidat: 5 }],
    ["random not a function", fn, { ...base, random: 0.5 }],
    ["logger without warn", fn, { ...base, logger: {} }],
  ];
  for (const [what, f, o] of typeErrors) {
    assert.throws(bad(f, o), TypeError, what);
  }
  // No key is a TypeError, also for a named function without parameters:
  // its name would change under a minifier, splitting the fleet's cache.
  function dailyReport() {
    return "report";
  }
  assert.throws(
    () => cached(dailyReport, { redis, ttl: 1_000 } as never),
    (err: unknown) =>
      err instanceof TypeError && /key.*minifier/.test(err.message),
  );
  // Zero windows, beta 0, wait 0 and Infinity are fine.
  cached(fn, { ...base, staleWhileRevalidate: 0, beta: 0, wait: Infinity });
  cached(fn, { ...base, wait: 0, jitter: 999 });
  // No `redis` is fine at cached() time (each call may give its client),
  // but a call with no client anywhere is a TypeError naming the rule.
  const noClient = cached(fn, { key: "k", ttl: 1_000 });
  await assert.rejects(
    noClient(),
    (err: Error) =>
      err instanceof TypeError &&
      /no Redis client for this call.*fn\.get\(args, \{ redis \}\)/.test(
        err.message,
      ),
  );
  // A per-call `redis` that is not a client is a TypeError too.
  await assert.rejects(noClient.get([], { redis: {} as never }), TypeError);
  // Nothing was written by any of this.
  assert.equal(await redis.send("EXISTS", "respite:cache:{k}"), 0);
});

test("a static key starting with '}' is a TypeError at cached() time, with the lock name check's reason; nothing is sent", async () => {
  await using redis = await connect(url);
  const before = await commandCalls(redis);
  let lockReason = "";
  try {
    new Lock(redis, "}x");
  } catch (err) {
    assert.ok(err instanceof TypeError);
    lockReason = err.message.slice(err.message.indexOf("("));
  }
  assert.match(lockReason, /^\(it would leave the .* hash tag .* empty\)/);
  const reason = lockReason.slice(0, lockReason.indexOf(")") + 1);
  for (
    const [what, f, o] of [
      ["key '}'", () => "v", { key: "}" }],
      ["key '}x'", () => "v", { key: "}x" }],
      ["key '}}'", () => "v", { key: "}}" }],
    ] as const
  ) {
    assert.throws(
      () => cached(f, { redis, ttl: 1_000, ...o }),
      (err: unknown) => {
        assert.ok(err instanceof TypeError, what);
        assert.ok(
          err.message.includes(reason),
          `${what}: ${err.message} should give the reason ${reason}`,
        );
        return true;
      },
      what,
    );
  }
  // Other braces are fine, as for lock names.
  for (const key of ["a}b", "x}", "{a}", "a{b"]) {
    assert.equal(
      cached(() => 1, { redis, ttl: 1_000, key }).redisKey(),
      `respite:cache:{${key}}`,
    );
  }
  const after = await commandCalls(redis);
  for (const cmd of ["get", "set", "evalsha", "eval"]) {
    assert.equal(after.get(cmd), before.get(cmd), `${cmd} was called`);
  }
});

teardown(async () => {
  await server.stop();
});
