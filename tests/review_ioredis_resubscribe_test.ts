/**
 * Review finding (ioredis adapter): the subscriber is `client.duplicate()`,
 * which inherits the app's options. With `autoResubscribe: false` (a
 * documented ioredis option) a subscriber reconnect leaves every wake
 * channel unsubscribed while respite's Channels still count them as
 * subscribed: from then on no release wakes a waiter (a lock waiter sleeps
 * out the holder's lease; a cached waiter times out and computes itself).
 *
 * Suggested fix: `client.duplicate({ autoResubscribe: true, lazyConnect:
 * false, enableOfflineQueue: true })` (ioredis's duplicate takes overrides),
 * and likewise fix node-redis's duplicate options that matter for the
 * subscriber.
 */
import assert from "node:assert/strict";
import { connect, Lock } from "../mod.ts";
import { load } from "../testing/byo_clients.ts";
import { sharedRedis } from "../testing/redis.ts";
import { sleep, teardown, test } from "./_harness.ts";

const server = await sharedRedis();
const url = server.url;

test("ioredis with autoResubscribe: false: a waiter is still woken by a release after its subscriber reconnected", async () => {
  type M = typeof import("ioredis");
  const { Redis } = await load<M>("ioredis");
  const io = new Redis(url, { autoResubscribe: false });
  await using control = await connect(url);
  const name = `review:resub:${Date.now()}`;
  const holder = new Lock(control, name, { ttl: 10_000, autoRenew: false });
  const waiter = new Lock(io, name, { ttl: 10_000, autoRenew: false });
  try {
    assert.equal(await holder.acquire(), true);
    const waiting = waiter.acquire({ wait: 4_000 });
    await sleep(300); // the waiter subscribed, tried, and sleeps
    // Cut the pub/sub connections (the waiter's ioredis subscriber).
    await control.send("CLIENT", "KILL", "TYPE", "pubsub");
    await sleep(700); // ioredis reconnected its subscriber
    const released = performance.now();
    await holder.release();
    assert.equal(await waiting, true, "the waiter was never woken");
    const ms = performance.now() - released;
    assert.ok(ms < 1_000, `woken ${Math.round(ms)} ms after the release`);
  } finally {
    await waiter.release().catch(() => {});
    await holder.release().catch(() => {});
    const ended = new Promise((r) => io.once("end", r));
    await io.quit();
    await ended;
  }
});

teardown(async () => {
  await server.stop();
});
