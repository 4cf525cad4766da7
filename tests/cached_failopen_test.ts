/**
 * Redis unreachable: `cached` fails open (computes, once per key in this
 * process, and reports through the error hook) or closed, by option; a hung
 * server is given up on after `timeout`.
 */
import assert from "node:assert/strict";
import {
  cached,
  type CachedErrorEvent,
  connect,
  ConnectionError,
  TimeoutError,
} from "../mod.ts";
import { startRedis } from "../testing/redis.ts";
import { sleep, test } from "./_harness.ts";

const FAST = { minDelay: 20, maxDelay: 100 };

test("Redis killed: fail open computes (singleflighted), reports, and recovers when Redis is back", async () => {
  const server = await startRedis();
  try {
    await using redis = await connect({ url: server.url, reconnect: FAST });
    const errors: CachedErrorEvent[] = [];
    const warnings: string[] = [];
    let runs = 0;
    const f = cached(async () => {
      runs++;
      await sleep(30);
      return "computed";
    }, {
      redis,
      key: "failopen",
      ttl: 60_000,
      hooks: { error: (e) => errors.push(e) },
      logger: { warn: (m) => warnings.push(m) },
    });
    assert.equal(await f(), "computed");
    assert.equal(runs, 1);
    // The fresh server did not have the scripts yet: one warning per script.
    const scripts = [
      "ACQUIRE_SCRIPT not cached.",
      "CACHE_WRITE_SCRIPT not cached.",
      "UNLOCK_SCRIPT not cached.",
    ];
    assert.deepEqual([...warnings].sort(), scripts);
    warnings.length = 0;
    await server.stop(); // SIGKILL
    await sleep(50);
    const t0 = performance.now();
    const results = await Promise.all(Array.from({ length: 100 }, () => f()));
    assert.ok(results.every((r) => r === "computed"));
    assert.ok(performance.now() - t0 < 1_000, "did not wait for Redis");
    assert.equal(runs, 2, "one computation for 100 concurrent calls");
    assert.equal(errors.length, 1);
    assert.equal(errors[0].phase, "redis");
    assert.ok(errors[0].error instanceof ConnectionError);
    // Back on the same port (empty): cached again.
    await server.start();
    const deadline = Date.now() + 5_000;
    while (redis.status !== "ready") {
      assert.ok(Date.now() < deadline, "client did not reconnect");
      await sleep(20);
    }
    assert.equal(await f(), "computed");
    assert.equal(await f(), "computed");
    assert.equal(runs, 3);
    assert.equal((await f.peek())?.kind, "value");
    // Falling open was logged, once for the outage (rate-limited).
    const failOpen = warnings.filter((w) => w.includes("(failOpen)"));
    assert.equal(failOpen.length, 1, failOpen.join("\n"));
    assert.match(
      failOpen[0],
      /cached\(\) could not use Redis for key "failopen"/,
    );
    // The restarted server lost its scripts: one warning per script again,
    // each naming it.
    assert.deepEqual(
      warnings.filter((w) => !failOpen.includes(w)).sort(),
      scripts,
    );
  } finally {
    await server.stop();
  }
});

test("failOpen: false rejects with the Redis error instead of computing", async () => {
  const server = await startRedis();
  try {
    await using redis = await connect({ url: server.url, reconnect: FAST });
    let runs = 0;
    const errors: CachedErrorEvent[] = [];
    const f = cached(() => ++runs, {
      redis,
      key: "failclosed",
      ttl: 60_000,
      failOpen: false,
      hooks: { error: (e) => errors.push(e) },
    });
    await server.stop();
    await sleep(50);
    await assert.rejects(f(), ConnectionError);
    assert.equal(runs, 0);
    assert.equal(errors.length, 1);
  } finally {
    await server.stop();
  }
});

test("a hung Redis (SIGSTOP) is given up on after `timeout`, and the call fails open", async () => {
  const server = await startRedis();
  try {
    await using redis = await connect({ url: server.url, reconnect: FAST });
    const errors: CachedErrorEvent[] = [];
    const f = cached(() => "computed anyway", {
      redis,
      key: "hung",
      ttl: 60_000,
      timeout: 200,
      hooks: { error: (e) => errors.push(e) },
    });
    server.signal("SIGSTOP");
    const t0 = performance.now();
    assert.equal(await f(), "computed anyway");
    const took = performance.now() - t0;
    assert.ok(took >= 190 && took < 1_000, `took ${took.toFixed(0)} ms`);
    assert.ok(errors[0]?.error instanceof TimeoutError);
    server.signal("SIGCONT");
    await sleep(50);
  } finally {
    await server.stop();
  }
});

test("Redis hangs (SIGSTOP) after a miss lost the lock race: the subscription is given up on after `timeout`, and this and later calls fail open", async () => {
  const server = await startRedis();
  let cleanup = () => {};
  try {
    await using leaderClient = await connect({
      url: server.url,
      reconnect: FAST,
    });
    await using redis = await connect({ url: server.url, reconnect: FAST });
    const gate = Promise.withResolvers<void>();
    let leading = false;
    const leader = cached(async () => {
      leading = true;
      await gate.promise;
      return "leader";
    }, { redis: leaderClient, key: "hung-wait", ttl: 60_000, timeout: 200 });
    const errors: CachedErrorEvent[] = [];
    let runs = 0;
    const f = cached(() => {
      runs++;
      return "computed anyway";
    }, {
      redis,
      key: "hung-wait",
      ttl: 60_000,
      timeout: 200,
      hooks: { error: (e) => errors.push(e) },
    });
    const led = leader();
    while (!leading) await sleep(5); // the test waits for its own setup
    // The server stops answering right between this caller's failed lock
    // attempt and its subscription to the wake channel.
    const subscribe = redis.subscribe.bind(redis);
    redis.subscribe = (channel, listener) => {
      server.signal("SIGSTOP");
      return subscribe(channel, listener);
    };
    const t0 = performance.now();
    const first = f();
    const joined = f(); // joins the same lookup in this process
    let timer: ReturnType<typeof setTimeout> | undefined;
    const hung = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve("hung"), 3_000);
    });
    cleanup = () => {
      clearTimeout(timer);
      server.signal("SIGCONT");
      gate.resolve();
    };
    assert.equal(await Promise.race([first, hung]), "computed anyway");
    assert.equal(await Promise.race([joined, hung]), "computed anyway");
    const took = performance.now() - t0;
    assert.ok(took < 1_000, `took ${took.toFixed(0)} ms`);
    assert.equal(runs, 1);
    assert.equal(errors[0]?.phase, "redis");
    assert.ok(errors[0]?.error instanceof TimeoutError);
    // A later call does not hang either.
    assert.equal(await Promise.race([f(), hung]), "computed anyway");
    cleanup();
    assert.equal(await led, "leader");
    await sleep(50);
  } finally {
    cleanup();
    await server.stop();
  }
});
