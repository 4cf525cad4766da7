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
 *
 * And a release (or a `cached` entry written) published in the gap, while
 * the waiter's subscriber connection is down (`PUBSUB NUMSUB` 0), for each
 * kind of client: the message reaches no one, but once the client has the
 * channel again the waiter is told to look again, so it gets the lock (the
 * entry) within 2 s instead of sleeping out the 10 s lease. respite's own
 * client: `onResubscribed` of `subscribe()`; ioredis, node-redis: their
 * `ready` event after a reconnect; Bun: `Channels.resubscribe`.
 */
import assert from "node:assert/strict";
import { cached, connect, Lock, type RedisClient } from "../mod.ts";
import { cacheKeys, lockKeys } from "../lib/keys.ts";
import {
  type ClientKind,
  load,
  openClient,
  unavailable,
} from "../testing/byo_clients.ts";
import { type FaultProxy, startFaultProxy } from "../testing/fault_proxy.ts";
import { sharedRedis } from "../testing/redis.ts";
import { isBun, sleep, teardown, test } from "./_harness.ts";

const server = await sharedRedis();
const url = server.url;

/**
 * Opens a gap: new connections through `proxy` are refused, and every
 * pub/sub connection is cut; checks that `channel` has no subscriber left,
 * so what is published now reaches no one. Until `proxy.refuse(false)`, the
 * client cannot reconnect (node-redis would at once, within a round trip).
 */
async function openGap(
  control: RedisClient,
  proxy: FaultProxy,
  channel: string,
) {
  proxy.refuse(true);
  await control.send("CLIENT", "KILL", "TYPE", "pubsub");
  assert.deepEqual(
    await control.send("PUBSUB", "NUMSUB", channel),
    [channel, 0],
    "the subscriber reconnected before the release",
  );
}

/**
 * Fails unless a waiter on `redis` is woken by a release after the cut:
 * with `gap` (the proxy `redis` connects through), a release published
 * while the waiter's subscriber is down (so the waiter must be told to look
 * again after its client subscribed again, within 2 s); else after the
 * subscriber reconnected (within 1 s).
 */
async function wokenAfterSubscriberCut(
  redis: object,
  kind: string,
  gap?: FaultProxy,
) {
  const inGap = gap !== undefined;
  await using control = await connect(url);
  const name = `review:resub:${kind}:${inGap}:${Date.now()}`;
  const holder = new Lock(control, name, { ttl: 10_000, autoRenew: false });
  const waiter = new Lock(redis as never, name, {
    ttl: 10_000,
    autoRenew: false,
  });
  try {
    assert.equal(await holder.acquire(), true);
    const waiting = waiter.acquire({ wait: 4_000 });
    await sleep(300); // the waiter subscribed, tried, and sleeps
    if (gap) await openGap(control, gap, lockKeys(name).wake);
    else {
      await control.send("CLIENT", "KILL", "TYPE", "pubsub");
      await sleep(700); // the client reconnected its subscriber
    }
    const released = performance.now();
    await holder.release();
    gap?.refuse(false);
    assert.equal(await waiting, true, "the waiter was never woken");
    const ms = performance.now() - released;
    const bound = inGap ? 2_000 : 1_000;
    assert.ok(ms < bound, `woken ${Math.round(ms)} ms after the release`);
    if (inGap) {
      console.log(
        `  ${kind}: woken ${Math.round(ms)} ms after a release in the gap`,
      );
    }
  } finally {
    await waiter.release().catch(() => {});
    await holder.release().catch(() => {});
  }
}

/**
 * Fails unless a `cached` waiter on `redis` reads the entry promptly when
 * the leader's write (and its message) fell in the gap of a subscriber cut.
 */
async function entryReadAfterWriteInGap(
  redis: object,
  kind: string,
  gap: FaultProxy,
) {
  await using control = await connect(url);
  const k = `review:resub:cached:${kind}:${Date.now()}`;
  const gate = Promise.withResolvers<void>();
  let computed = 0;
  const make = (client: object) =>
    cached(async () => {
      computed++;
      await gate.promise;
      return { by: "leader" };
    }, { redis: client as never, key: k, ttl: 60_000, lockTtl: 10_000 });
  const leader = make(control);
  const waiter = make(redis);
  try {
    const led = leader();
    await sleep(50); // the leader holds the lock and computes
    const waited = waiter();
    await sleep(300); // the waiter subscribed, read, and sleeps
    await openGap(control, gap, cacheKeys(k).lock.wake);
    const written = performance.now();
    gate.resolve();
    assert.deepEqual(await led, { by: "leader" });
    gap.refuse(false);
    assert.deepEqual(await waited, { by: "leader" });
    const ms = performance.now() - written;
    assert.ok(ms < 2_000, `read ${Math.round(ms)} ms after the write`);
    assert.equal(computed, 1, "the waiter computed itself");
    console.log(
      `  ${kind}: read ${Math.round(ms)} ms after a write in the gap`,
    );
  } finally {
    gap.refuse(false);
    gate.resolve();
    await leader.invalidate().catch(() => {});
  }
}

const kinds: ClientKind[] = ["respite", "ioredis", "node-redis", "bun"];

for (const kind of kinds) {
  test(
    `${kind}: a release published while the waiter's subscriber is down still wakes it`,
    async () => {
      const proxy = await startFaultProxy({ port: server.port });
      const c = await openClient(kind, proxy.url);
      try {
        await wokenAfterSubscriberCut(c.redis, kind, proxy);
      } finally {
        await c.close();
        await proxy.close();
      }
    },
    { skip: unavailable(kind) },
  );

  test(
    `${kind}: a cached entry written while the waiter's subscriber is down is read promptly`,
    async () => {
      const proxy = await startFaultProxy({ port: server.port });
      const c = await openClient(kind, proxy.url);
      try {
        await entryReadAfterWriteInGap(c.redis, kind, proxy);
      } finally {
        await c.close();
        await proxy.close();
      }
    },
    { skip: unavailable(kind) },
  );
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
