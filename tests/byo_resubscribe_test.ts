/**
 * Review findings: lost wake-ups after the adapted client's subscriber
 * connection is cut and reconnects (CLIENT KILL TYPE pubsub). respite's own
 * client and node-redis subscribe again; these did not:
 *
 * - ioredis: the subscriber is `client.duplicate()`, which inherits the
 *   app's options; with `autoResubscribe: false` (a documented ioredis
 *   option) a reconnect left every wake channel unsubscribed while the
 *   adapter's Channels still counted them as subscribed. Fixed on this
 *   branch: `duplicate({ autoResubscribe: true })`.
 * - Bun's RedisClient (Bun only, default options): Bun 1.4.4 reconnects the
 *   `duplicate()` subscriber but does not subscribe again (`PUBSUB NUMSUB`
 *   is 0 afterwards; a new `subscribe()` works; `onconnect` fires on the
 *   reconnect; subscribing again with the same listener delivers each
 *   message twice). From then on no release wakes a waiter on those
 *   channels: a lock waiter sleeps out the holder's lease, a cached waiter
 *   times out and computes itself (a stampede), until every listener of
 *   the channel has gone. Suggested fix: on the subscriber's `onconnect`
 *   after the first, UNSUBSCRIBE and SUBSCRIBE again every channel that
 *   still has listeners (through Channels' per-channel op queue).
 *
 * Each: a holder on respite's client, a waiter on the adapted client
 * (lease 10 s, wait 4 s); the pub/sub connections are cut while it waits;
 * after its subscriber reconnected, the release must wake it.
 */
import assert from "node:assert/strict";
import { connect, Lock } from "../mod.ts";
import { load } from "../testing/byo_clients.ts";
import { sharedRedis } from "../testing/redis.ts";
import { isBun, sleep, teardown, test } from "./_harness.ts";

const server = await sharedRedis();
const url = server.url;

/** Fails unless a waiter on `redis` is woken by a release after the cut. */
async function wokenAfterSubscriberCut(redis: object, kind: string) {
  await using control = await connect(url);
  const name = `review:resub:${kind}:${Date.now()}`;
  const holder = new Lock(control, name, { ttl: 10_000, autoRenew: false });
  const waiter = new Lock(redis as never, name, {
    ttl: 10_000,
    autoRenew: false,
  });
  try {
    assert.equal(await holder.acquire(), true);
    const waiting = waiter.acquire({ wait: 4_000 });
    await sleep(300); // the waiter subscribed, tried, and sleeps
    await control.send("CLIENT", "KILL", "TYPE", "pubsub");
    await sleep(700); // the client reconnected its subscriber
    const released = performance.now();
    await holder.release();
    assert.equal(await waiting, true, "the waiter was never woken");
    const ms = performance.now() - released;
    assert.ok(ms < 1_000, `woken ${Math.round(ms)} ms after the release`);
  } finally {
    await waiter.release().catch(() => {});
    await holder.release().catch(() => {});
  }
}

test("ioredis with autoResubscribe: false: a waiter is still woken by a release after its subscriber reconnected", async () => {
  type M = typeof import("ioredis");
  const { Redis } = await load<M>("ioredis");
  const io = new Redis(url, { autoResubscribe: false });
  try {
    await wokenAfterSubscriberCut(io, "ioredis");
  } finally {
    const ended = new Promise((r) => io.once("end", r));
    await io.quit();
    await ended;
  }
});

const g = globalThis as {
  Bun?: {
    RedisClient: new (url: string) => {
      connect(): Promise<void>;
      close(): void;
    };
  };
};

test(
  "Bun RedisClient: a waiter is still woken by a release after its subscriber reconnected",
  async () => {
    const bun = new g.Bun!.RedisClient(url);
    await bun.connect();
    try {
      await wokenAfterSubscriberCut(bun, "bun");
    } finally {
      bun.close();
    }
  },
  { skip: isBun ? false : "Bun's RedisClient exists only under Bun" },
);

teardown(async () => {
  await server.stop();
});
