/**
 * `redis` as respite sees it (lib/adapters/mod.ts): respite's own client
 * passes through as it is (no wrapper on the hot path), any other accepted
 * client is recognised by its shape, not `instanceof` (so a second copy of
 * respite is accepted too), its adapter is made once per object, and
 * anything else is a TypeError that names what is accepted.
 */
import assert from "node:assert/strict";
import { cached, connect, Lock, withLock } from "../mod.ts";
import { checkClient } from "../lib/adapters/mod.ts";
import { sharedRedis } from "../testing/redis.ts";
import { openClient } from "../testing/byo_clients.ts";
import { teardown, test } from "./_harness.ts";

const server = await sharedRedis();

const ACCEPTED =
  /^redis must be a respite client from connect\(\), or an ioredis \(v5, v6\), node-redis \(v5, v6: createClient\(\)\), Bun RedisClient or @db\/redis client; got /;

test("respite's own client passes through unwrapped; another copy of it (same shape, another class) too", async () => {
  await using redis = await connect(server.url);
  assert.equal(checkClient(redis), redis);
  // What a second installed copy of respite hands over: another class, the same shape.
  const fake = {
    status: redis.status,
    logger: redis.logger,
    command: redis.command.bind(redis),
    subscribe: redis.subscribe.bind(redis),
  };
  assert.equal(checkClient(fake), fake);
});

test("an adapter is made once per client object", async () => {
  const c = await openClient("ioredis", server.url);
  try {
    const a = checkClient(c.redis);
    assert.notEqual(a, c.redis);
    assert.equal(checkClient(c.redis), a);
    assert.equal(checkClient(a), a, "an adapter is a surface itself");
  } finally {
    await c.close();
  }
});

test("a wrong object is a TypeError naming what is accepted, before anything is sent", () => {
  for (const bad of [undefined, null, 42, "redis://x", {}, { get: () => 1 }]) {
    assert.throws(() => new Lock(bad as never, "x"), {
      name: "TypeError",
      message: ACCEPTED,
    });
    assert.throws(() => withLock(() => 1, { redis: bad as never, name: "x" }), {
      name: "TypeError",
      message: ACCEPTED,
    });
    if (bad === undefined) continue; // cached() without redis: see below
    assert.throws(
      () => cached(() => 1, { redis: bad as never, key: "x", ttl: 1_000 }),
      {
        name: "TypeError",
        message: ACCEPTED,
      },
    );
  }
  assert.throws(() => new Lock({ get: () => 1 } as never, "x"), {
    message: /got Object$/,
  });
});

test("cached() without redis takes the client per call: a call without one, or with a wrong object, rejects with a TypeError", async () => {
  const fn = cached(() => 1, { key: "x", ttl: 1_000 });
  await assert.rejects(fn(), {
    name: "TypeError",
    message: /no Redis client for this call/,
  });
  for (const bad of [42, "redis://x", {}, { get: () => 1 }]) {
    await assert.rejects(fn.get([], { redis: bad as never }), {
      name: "TypeError",
      message: ACCEPTED,
    });
    assert.throws(() => fn.with(bad as never), {
      name: "TypeError",
      message: ACCEPTED,
    });
  }
});

teardown(async () => {
  await server.stop();
});
