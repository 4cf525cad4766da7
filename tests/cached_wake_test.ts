/**
 * Waiters on another client (a separate process, as far as Redis can tell):
 * woken by the write, not by a timer; a failing leader hands over at once;
 * the bounded wait and its fallbacks.
 */
import assert from "node:assert/strict";
import {
  cached,
  CachedTimeoutError,
  type CachedWaitEvent,
  connect,
  type RedisClient,
} from "../mod.ts";
import { sharedRedis } from "../testing/redis.ts";
import { encodeEntry } from "../lib/cache/entry.ts";
import { cacheKeys } from "../lib/keys.ts";
import { sleep, teardown, test } from "./_harness.ts";

const server = await sharedRedis();
const url = server.url;
let n = 0;
const key = (s: string) => `test:cachedwake:${Date.now()}:${n++}:${s}`;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

test("waiters get the value within a few ms of the write, far below any polling interval", async () => {
  await using leaderClient = await connect(url);
  await using waiterClient = await connect(url);
  const gaps: number[] = [];
  const waits: CachedWaitEvent[] = [];
  for (let round = 0; round < 7; round++) {
    const k = key("gap");
    let returnedAt = 0;
    const make = (redis: RedisClient) =>
      cached(async () => {
        await sleep(100);
        returnedAt = performance.now();
        return { round };
      }, {
        redis,
        key: k,
        ttl: 60_000,
        // A missed wake-up would cost the whole lease: 10 s.
        lockTtl: 10_000,
        hooks: { wait: (e) => waits.push(e) },
      });
    const leader = make(leaderClient);
    const waiter = make(waiterClient);
    const led = leader();
    await sleep(20); // the leader holds the lock and computes
    const waited = waiter().then((v) => {
      gaps.push(performance.now() - returnedAt);
      return v;
    });
    assert.deepEqual(await led, { round });
    assert.deepEqual(await waited, { round });
    await leader.invalidate();
  }
  // The gap covers encoding, the write, the PUBLISH, and the waiter's GET.
  const m = median(gaps);
  assert.ok(
    m < 20,
    `median wake gap ${m.toFixed(2)} ms (${gaps.map((g) => g.toFixed(1))})`,
  );
  assert.ok(Math.max(...gaps) < 500, `max gap ${Math.max(...gaps)}`);
  assert.equal(waits.length, 7);
  assert.ok(waits.every((w) => w.outcome === "value"));
  console.log(`wake gaps (ms): ${gaps.map((g) => g.toFixed(2)).join(", ")}`);
});

test("a waiter uses an entry that came with a wake-up even when another message follows it before the waiter looks", async () => {
  await using leaderClient = await connect(url);
  await using waiterClient = await connect(url);
  await using publisher = await connect(url);
  const k = key("sent");
  const gate = Promise.withResolvers<void>();
  const waits: CachedWaitEvent[] = [];
  const make = (redis: RedisClient) =>
    cached(async () => {
      await gate.promise;
      return { from: "the leader" };
    }, {
      redis,
      key: k,
      ttl: 60_000,
      lockTtl: 10_000,
      hooks: { wait: (e) => waits.push(e) },
    });
  const leader = make(leaderClient);
  const waiter = make(waiterClient);
  const led = leader();
  await sleep(20); // the leader holds the lock and computes
  const waited = waiter();
  await sleep(50); // the waiter is subscribed and asleep
  // An entry (never stored: only the message has it), then another message,
  // in one write: both arrive before the waiter looks.
  const now = Date.now();
  const entry = encodeEntry(
    {
      createdAt: now,
      delta: 1,
      freshUntil: now + 60_000,
      staleUntil: now + 60_000,
    },
    "value",
    JSON.stringify({ from: "the message" }),
  );
  const channel = cacheKeys(k).lock.wake;
  await Promise.all([
    publisher.send("PUBLISH", channel, entry),
    publisher.send("PUBLISH", channel, "released"),
  ]);
  // (Bounded, so a waiter that missed the entry fails here rather than
  // waiting for the leader.)
  let timer: ReturnType<typeof setTimeout> | undefined;
  const got = await Promise.race([
    waited,
    new Promise((r) => timer = setTimeout(() => r("still waiting"), 2_000)),
  ]);
  clearTimeout(timer);
  gate.resolve();
  assert.deepEqual(got, { from: "the message" });
  assert.deepEqual(waits.map((w) => w.outcome), ["value"]);
  assert.deepEqual(await led, { from: "the leader" });
  await waited;
  await leader.invalidate();
});

test("a leader whose function throws releases the lock at once; a waiter computes", async () => {
  await using a = await connect(url);
  await using b = await connect(url);
  const k = key("throw");
  let failedAt = 0;
  let takeoverAt = 0;
  const failing = cached(async () => {
    await sleep(80);
    failedAt = performance.now();
    throw new Error("leader failed");
  }, { redis: a, key: k, ttl: 60_000, lockTtl: 10_000 });
  const waits: CachedWaitEvent[] = [];
  const working = cached(() => {
    takeoverAt = performance.now();
    return "from the waiter";
  }, {
    redis: b,
    key: k,
    ttl: 60_000,
    lockTtl: 10_000,
    hooks: { wait: (e) => waits.push(e) },
  });
  const led = failing();
  await sleep(20);
  const waited = working();
  await assert.rejects(led, /leader failed/);
  assert.equal(await waited, "from the waiter");
  const handover = takeoverAt - failedAt;
  assert.ok(
    handover >= 0 && handover < 50,
    `handover ${handover.toFixed(1)} ms`,
  );
  assert.deepEqual(waits.map((w) => w.outcome), ["lead"]);
  // The error was not cached: the next call on the failing side gets the value.
  assert.equal(await failing(), "from the waiter");
  await failing.invalidate();
});

test("the bounded wait: stale value first, then compute (default) or CachedTimeoutError", async () => {
  await using a = await connect(url);
  await using b = await connect(url);
  const k = key("bounded");
  const stuck = Promise.withResolvers<string>();
  // A leader that holds the lock (renewed) for as long as this test wants.
  const leader = cached(() => stuck.promise, {
    redis: a,
    key: k,
    ttl: 60_000,
    lockTtl: 300,
  });
  const led = leader();
  await sleep(30);

  const thrower = cached(() => "unused", {
    redis: b,
    key: k,
    ttl: 60_000,
    wait: 150,
    onWaitTimeout: "throw",
  });
  let t0 = performance.now();
  await assert.rejects(thrower(), (err: unknown) => {
    assert.ok(err instanceof CachedTimeoutError);
    assert.equal(err.wait, 150);
    return true;
  });
  let took = performance.now() - t0;
  assert.ok(took >= 140 && took < 600, `gave up after ${took.toFixed(0)} ms`);

  let runs = 0;
  const computer = cached(() => {
    runs++;
    return "computed after the wait";
  }, { redis: b, key: k, ttl: 60_000, wait: 150 });
  t0 = performance.now();
  assert.equal(await computer(), "computed after the wait");
  took = performance.now() - t0;
  assert.ok(took >= 140 && took < 600, `computed after ${took.toFixed(0)} ms`);
  assert.equal(runs, 1);

  stuck.resolve("the leader's value");
  assert.equal(await led, "the leader's value");
  await leader.invalidate();
});

test("the bounded wait serves a stale value when there is one", async () => {
  await using a = await connect(url);
  await using b = await connect(url);
  const k = key("bounded-stale");
  let slow = false;
  const gate = Promise.withResolvers<void>();
  const leader = cached(async () => {
    if (slow) await gate.promise;
    return slow ? "new" : "old";
  }, { redis: a, key: k, ttl: 100, staleIfError: 60_000 });
  assert.equal(await leader(), "old");
  await sleep(150); // expired, kept for staleIfError
  slow = true;
  const led = leader(); // recomputing, slowly
  await sleep(30);
  const waiter = cached(() => "unused", {
    redis: b,
    key: k,
    ttl: 100,
    staleIfError: 60_000,
    wait: 100,
    onWaitTimeout: "throw",
  });
  assert.equal(await waiter(), "old");
  gate.resolve();
  assert.equal(await led, "new");
  await leader.invalidate();
});

test("a 1 MB value reaches the waiters; the wake-up carries a marker, not the value", async () => {
  await using a = await connect(url);
  await using b = await connect(url);
  await using watcher = await connect(url);
  const k = key("large");
  const big = "x".repeat(1024 * 1024);
  const gate = Promise.withResolvers<void>();
  let leading = false;
  const make = (redis: RedisClient) =>
    cached(async () => {
      leading = true;
      await gate.promise;
      return big;
    }, { redis, key: k, ttl: 60_000, beta: 0 });
  const leader = make(a);
  const waiter = make(b);
  const messages: string[] = [];
  const unsubscribe = await watcher.subscribe(
    `respite:cache:lock:{${k}}:wake`,
    (m) => messages.push(m),
  );
  const led = leader();
  while (!leading) await sleep(5); // the test waits for its own setup
  const waits: CachedWaitEvent[] = [];
  const waiting = cached(() => "unused", {
    redis: b,
    key: k,
    ttl: 60_000,
    beta: 0,
    hooks: { wait: (e) => waits.push(e) },
  })();
  await sleep(50);
  gate.resolve();
  assert.equal(await led, big);
  assert.equal(await waiting, big);
  assert.deepEqual(waits.map((w) => w.outcome), ["value"]);
  assert.equal(await waiter(), big);
  await sleep(20);
  await unsubscribe();
  assert.ok(messages.length > 0, "nothing was published");
  assert.ok(
    messages.every((m) => m.length < 64 * 1024),
    `published ${messages.map((m) => m.length)} characters`,
  );
  await leader.invalidate();
});

teardown(async () => {
  await server.stop();
});
