/**
 * Review findings on per-call clients: `fn.with(a)` and `fn.with(b)` share
 * one singleflight keyed by the cache key alone, so concurrent calls through
 * clients of two different Redis servers join one lookup, which runs on the
 * first caller's client:
 *
 * - a call through a healthy client rejects with the other server's
 *   ConnectionError (`failOpen: false`);
 * - the second server never gets the entry, so its next call computes again.
 *
 * Suggested fix: key the flights (and background refreshes) by the store
 * as well as the cache key (`Map<CacheStore, Singleflight>`, or the key
 * prefixed with a per-store id), keeping one flight per server.
 */
import assert from "node:assert/strict";
import { cached, connect } from "../mod.ts";
import { sharedRedis, startRedis } from "../testing/redis.ts";
import { sleep, teardown, test } from "./_harness.ts";

const server = await sharedRedis();
const other = await startRedis();
let n = 0;
const key = (s: string) => `review:percall:${Date.now()}:${n++}:${s}`;

test("with(): a call through a healthy client does not get another server's failure", async () => {
  const down = await startRedis();
  await using a = await connect(down.url);
  await using b = await connect(server.url);
  await down.stop(); // a's server is gone: a is reconnecting
  const k = key("down");
  const f = cached(async (id: number) => {
    await sleep(20);
    return `v${id}`;
  }, { key: (id) => `${k}:${id}`, ttl: 60_000, failOpen: false, logger: null });
  const [ra, rb] = await Promise.allSettled([f.with(a)(1), f.with(b)(1)]);
  assert.equal(ra.status, "rejected"); // a's server is down, failOpen: false
  assert.deepEqual(
    rb,
    { status: "fulfilled", value: "v1" },
    `b's server is up, but b's call got: ${
      rb.status === "rejected" ? rb.reason : ""
    }`,
  );
  await f.with(b).invalidate(1);
});

test("with(): concurrent calls through clients of two servers write the entry on both", async () => {
  await using a = await connect(server.url);
  await using b = await connect(other.url);
  const k = key("both");
  let runs = 0;
  const f = cached(async (id: number) => {
    runs++;
    await sleep(20);
    return `v${id}`;
  }, { key: (id) => `${k}:${id}`, ttl: 60_000 });
  await Promise.all([f.with(a)(1), f.with(b)(1)]);
  await f.idle();
  assert.equal((await f.with(a).peek(1))?.kind, "value");
  assert.equal(
    (await f.with(b).peek(1))?.kind,
    "value",
    `b's server has no entry (fn ran ${runs} time(s), on a's server only)`,
  );
  await f.with(a).invalidate(1);
  await f.with(b).invalidate(1);
});

teardown(async () => {
  await other.stop();
  await server.stop();
});
