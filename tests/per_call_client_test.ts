/**
 * The client given per call, for code written once at module scope and run
 * by many requests (Cloudflare Workers, where a client belongs to the
 * request that connected it): `cached` without a `redis` option and
 * `fn.get(args, { redis })` / `fn.with(redis)`; `withLock` whose `redis` is
 * a function of the call's arguments. Each call's client is checked.
 */
import assert from "node:assert/strict";
import { cached, connect, type RedisClient, withLock } from "../mod.ts";
import { sharedRedis } from "../testing/redis.ts";
import { sleep, teardown, test } from "./_harness.ts";

const server = await sharedRedis();
const url = server.url;
let n = 0;
const key = (s: string) => `test:percall:${Date.now()}:${n++}:${s}`;

test("cached without a redis option: each call gives its client; two clients share one cache and one computation", async () => {
  await using a = await connect(url);
  await using b = await connect(url);
  let runs = 0;
  const k = key("shared");
  const f = cached(async (id: number) => {
    runs++;
    await sleep(50);
    return `v${id}`;
  }, { key: (id) => `${k}:${id}`, ttl: 60_000 });
  const got = await Promise.all([
    ...Array.from({ length: 20 }, () => f.get([1], { redis: a })),
    ...Array.from({ length: 20 }, () => f.with(b)(1)),
  ]);
  assert.ok(got.every((v) => v === "v1"));
  assert.equal(runs, 1);
  // Every method works on a bound face; the plain one has no client.
  assert.equal((await f.with(a).peek(1))?.kind, "value");
  assert.equal(await f.with(b).refresh(1), "v1");
  assert.equal(runs, 2);
  await f.with(a).invalidate(1);
  assert.equal(await f.with(b).peek(1), null);
  assert.equal(f.redisKey(1), `respite:cache:{${k}:1}`);
  for (
    const call of [
      () => f(1),
      () => f.invalidate(1),
      () => f.peek(1),
      () => f.refresh(1),
    ]
  ) {
    await assert.rejects(call(), /no Redis client for this call/);
  }
  assert.throws(() => f.with({} as RedisClient), TypeError);
  await assert.rejects(
    f.get([1], { redis: a, sigal: undefined } as never),
    /unknown get\(\) option|sigal/,
  );
});

test("cached: a client given to a call wins over the redis option", async () => {
  await using a = await connect(url);
  await using b = await connect({ url, db: 1 });
  const k = key("override");
  const f = cached(() => "x", { redis: a, key: k, ttl: 60_000 });
  await f.get([], { redis: b });
  assert.equal(await b.send("EXISTS", `respite:cache:{${k}}`), 1);
  assert.equal(await a.send("EXISTS", `respite:cache:{${k}}`), 0);
  await b.send("DEL", `respite:cache:{${k}}`);
});

test("withLock: redis as a function of the call's arguments; checked at each call", async () => {
  await using a = await connect(url);
  await using b = await connect(url);
  const name = key("lock");
  let inside = 0;
  let most = 0;
  const exclusive = withLock(async function (_redis: RedisClient, i: number) {
    inside++;
    most = Math.max(most, inside);
    await sleep(5);
    inside--;
    return i;
  }, { redis: (redis) => redis, name, ttl: 5_000 });
  const got = await Promise.all(
    Array.from({ length: 10 }, (_, i) => exclusive(i % 2 ? a : b, i)),
  );
  assert.deepEqual(got, Array.from({ length: 10 }, (_, i) => i));
  assert.equal(most, 1);
  await assert.rejects(exclusive({} as RedisClient, 0), TypeError);
  assert.throws(
    () => withLock(() => 1, { redis: {} as RedisClient, name }),
    TypeError,
  );
});

teardown(async () => {
  await server.stop();
});
