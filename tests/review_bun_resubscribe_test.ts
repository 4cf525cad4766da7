/**
 * Review finding (Bun's RedisClient adapter, Bun only, default options):
 * when the subscriber connection (`await client.duplicate()`) is cut, Bun
 * 1.4.4 reconnects it but does not subscribe again to its channels
 * (`PUBSUB NUMSUB` is 0 after the reconnect; a new `subscribe()` works).
 * The adapter's Channels still count them as subscribed, so no release
 * wakes a waiter on those channels any more: a lock waiter sleeps out the
 * holder's lease, a cached waiter times out and computes itself (a
 * stampede), until every listener of the channel has gone.
 *
 * Suggested fix: watch the subscriber's `onclose`/`onconnect` and, on a
 * reconnect, SUBSCRIBE every channel that still has listeners, then wake
 * their listeners once (messages in the gap are lost); or close the
 * subscriber on `onclose` and let Channels open a new one and subscribe
 * again.
 */
import assert from "node:assert/strict";
import { connect, Lock } from "../mod.ts";
import { sharedRedis } from "../testing/redis.ts";
import { isBun, sleep, teardown, test } from "./_harness.ts";

const server = await sharedRedis();
const url = server.url;
const g = globalThis as {
  Bun?: {
    RedisClient: new (
      url: string,
    ) => { connect(): Promise<void>; close(): void };
  };
};

test(
  "Bun RedisClient: a waiter is still woken by a release after its subscriber reconnected",
  async () => {
    const bun = new g.Bun!.RedisClient(url);
    await bun.connect();
    await using control = await connect(url);
    const name = `review:bunresub:${Date.now()}`;
    const holder = new Lock(control, name, { ttl: 10_000, autoRenew: false });
    const waiter = new Lock(bun as never, name, {
      ttl: 10_000,
      autoRenew: false,
    });
    try {
      assert.equal(await holder.acquire(), true);
      const waiting = waiter.acquire({ wait: 4_000 });
      await sleep(300);
      await control.send("CLIENT", "KILL", "TYPE", "pubsub");
      await sleep(700);
      const released = performance.now();
      await holder.release();
      assert.equal(await waiting, true, "the waiter was never woken");
      const ms = performance.now() - released;
      assert.ok(ms < 1_000, `woken ${Math.round(ms)} ms after the release`);
    } finally {
      await waiter.release().catch(() => {});
      await holder.release().catch(() => {});
      bun.close();
    }
  },
  { skip: isBun ? false : "Bun's RedisClient exists only under Bun" },
);

teardown(async () => {
  await server.stop();
});
