/**
 * `cached`'s in-process memory tier, kept coherent by Redis's own
 * server-assisted client-side caching (CLIENT TRACKING, broadcast mode).
 * Clients on separate connections stand in for separate processes (each has
 * its own tracking connection and tier); one test uses real processes.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { cached, connect, type RedisClient } from "../mod.ts";
import { commandCalls, startRedis } from "../testing/redis.ts";
import { runArgs, spawn } from "../testing/proc.ts";
import { preloadScripts } from "../testing/scripts.ts";
import { startFaultProxy } from "../testing/fault_proxy.ts";
import { LIVE_MS, PING_EVERY_MS } from "../lib/cache/tracking.ts";
import { isDeno, sleep, teardown, test } from "./_harness.ts";

// Our own server: a test flushes it.
const server = await startRedis();
const url = server.url;
let n = 0;
const key = (s: string) => `test:memory:${Date.now()}:${n++}:${s}`;
{
  await using admin = await connect(url);
  await preloadScripts(admin);
}

function p99(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(0.99 * s.length) - 1)];
}

const make = (redis: RedisClient, k: string, runs = { n: 0 }) =>
  cached((id: number) => ({ id, at: ++runs.n, tags: ["a"] }), {
    redis,
    key: (id) => `${k}:${id}`,
    ttl: 60_000,
    memory: { maxEntries: 100 },
  });

/** Tracking connections on the server (CLIENT LIST name=...-tracking). */
async function trackingIds(admin: RedisClient): Promise<string[]> {
  const list = await admin.send<string>("CLIENT", "LIST");
  return [...list.matchAll(/^id=(\d+) .*name=respite-tracking /gm)].map((m) =>
    m[1]
  );
}

test("a memory hit costs no I/O and gives each caller its own copy; an entry is never served past its freshness", async () => {
  await using redis = await connect(url);
  await using admin = await connect(url);
  const k = key("hit");
  const runs = { n: 0 };
  const f = make(redis, k, runs);
  const none = f.memory;
  assert.ok(none === null, "no tier before the first call");
  await f(1); // computed and written
  await f(1); // read from Redis: remembered
  assert.equal(f.memory?.entries, 1);
  const gets = (await commandCalls(admin)).get("get") ?? 0;
  const evalshas = (await commandCalls(admin)).get("evalsha") ?? 0;
  for (let i = 0; i < 1_000; i++) await f(1);
  assert.equal((await commandCalls(admin)).get("get") ?? 0, gets, "no GET");
  assert.equal((await commandCalls(admin)).get("evalsha") ?? 0, evalshas);
  assert.equal(f.memory?.hits, 1_000);
  assert.equal(runs.n, 1);
  const a = await f(1);
  a.tags.push("mutated");
  (a as { id: number }).id = 99;
  assert.deepEqual(await f(1), { id: 1, at: 1, tags: ["a"] });
  // Freshness: a 150 ms ttl is served from memory only within it.
  const short = cached(() => ({ at: Date.now() }), {
    redis,
    key: `${k}:short`,
    ttl: 150,
    memory: { maxEntries: 10 },
  });
  const first = await short();
  await short(); // remembered
  await sleep(200);
  const later = await short();
  assert.ok(later.at > first.at, "expired in memory as in Redis: recomputed");
  // Bad options.
  for (
    const [memory, E] of [
      [{}, TypeError],
      [{ maxEntries: 0 }, RangeError],
      [{ maxEntries: 1.5 }, RangeError],
      [{ maxEntries: "10" }, TypeError],
      [{ maxEntries: 10, maxBytes: -1 }, RangeError],
      [{ maxEntries: 10, size: 1 }, TypeError],
      [10, TypeError],
    ] as [unknown, typeof TypeError][]
  ) {
    assert.throws(
      () =>
        cached(() => 1, {
          redis,
          key: k,
          ttl: 1_000,
          memory: memory as never,
        }),
      E,
      JSON.stringify(memory),
    );
  }
});

test("memory hits in one tick (100 concurrent callers) each get their own copy: one caller's mutation reaches no other", async () => {
  await using redis = await connect(url);
  const k = key("concurrent");
  const f = make(redis, k);
  await f(1); // computed
  await f(1); // read from Redis: remembered
  const hitsBefore = f.memory!.hits;
  const got = await Promise.all(Array.from({ length: 100 }, () => f(1)));
  assert.equal(f.memory!.hits - hitsBefore, 100, "all from memory");
  assert.equal(new Set(got).size, 100, "100 distinct objects");
  got[0].tags.push("mutated");
  for (const v of got.slice(1)) assert.deepEqual(v.tags, ["a"]);
});

test("a binary codec whose decode returns a view of the bytes (identity): a caller that changes them changes no other caller's value", async () => {
  await using redis = await connect(url);
  const k = key("bytes");
  const f = cached((): Uint8Array => new Uint8Array([1, 2, 3]), {
    redis,
    key: k,
    ttl: 60_000,
    memory: { maxEntries: 10 },
    codec: { binary: true, encode: (b) => b, decode: (b) => b },
  });
  await f(); // computed
  const read = await f(); // read from Redis, and remembered
  assert.equal(f.memory!.entries, 1);
  read[0] = 99;
  const hit = await f();
  assert.equal(f.memory!.hits, 1);
  assert.deepEqual([...hit], [1, 2, 3], "the remembered bytes were changed");
  hit[1] = 98;
  assert.deepEqual([...await f()], [1, 2, 3], "a hit's bytes are shared");
});

test("LRU bounds: maxEntries and maxBytes", async () => {
  await using redis = await connect(url);
  const k = key("lru");
  const f = cached((id: number) => "x".repeat(id), {
    redis,
    key: (id) => `${k}:${id}`,
    ttl: 60_000,
    memory: { maxEntries: 3, maxBytes: 400 },
  });
  for (const id of [10, 20, 30, 40]) {
    await f(id);
    await f(id); // remembered at the second read
  }
  assert.equal(f.memory?.entries, 3, "the least recently used went");
  await f(300); // computed
  await f(300); // 300+ bytes: pushes others out to stay under 400
  assert.ok(f.memory!.bytes <= 400, `${f.memory!.bytes} bytes`);
  await f(1_000); // larger than maxBytes on its own: never kept
  await f(1_000);
  assert.ok(f.memory!.bytes <= 400);
});

test("LRU order: an entry hit once it is in the older half is moved to the young end and outlives the puts that follow", async () => {
  await using redis = await connect(url);
  const k = key("lru-order");
  const f = cached((id: number) => `v${id}`, {
    redis,
    key: (id) => `${k}:${id}`,
    ttl: 60_000,
    memory: { maxEntries: 4 },
  });
  const remember = async (id: number) => {
    await f(id); // computed
    await f(id); // read from Redis: remembered
  };
  for (const id of [1, 2, 3, 4]) await remember(id);
  let hits = f.memory!.hits;
  await f(1); // the oldest: a hit moves it
  assert.equal(f.memory!.hits, ++hits);
  await remember(5); // evicts 2, not 1
  await remember(6); // evicts 3
  assert.equal(f.memory!.entries, 4);
  await f(1);
  assert.equal(f.memory!.hits, ++hits, "1 was kept");
  await f(2); // read from Redis, not memory
  assert.equal(f.memory!.hits, hits, "2 went");
});

test("coherence: after a write through respite, a plain SET or DEL, and a FLUSHDB from another connection, no other client serves the old value once the invalidation reached it; p99 delay measured", async () => {
  await using a = await connect(url);
  await using b = await connect(url);
  await using c = await connect(url);
  await using raw = await connect(url);
  const k = key("coherent");
  const fa = make(a, k);
  const fb = make(b, k);
  const fc = make(c, k);
  const delays: Record<string, number[]> = { set: [], SET: [], DEL: [] };
  for (let round = 0; round < 60; round++) {
    const how = (["set", "SET", "DEL"] as const)[round % 3];
    // Both remember the current value (a read that an invalidation
    // overtook, such as the one of the write that made it, is not kept).
    for (const f of [fb, fc]) {
      const deadline = Date.now() + 5_000;
      while ((f.memory?.entries ?? 0) < 1) {
        assert.ok(Date.now() < deadline, "never remembered");
        await f(1);
        await sleep(1);
      }
    }
    const old = (await fb(1)).at;
    assert.equal((await fc(1)).at, old);
    const next = 1_000_000 + round;
    if (how === "set") {
      await fa.set([1], { id: 1, at: next, tags: [] });
    } else if (how === "SET") {
      // A valid entry written by hand: copy one made elsewhere.
      const tmp = make(raw, `${k}:tmp`);
      await tmp.set([1], { id: 1, at: next, tags: [] });
      const stored = await raw.send<string>("GET", tmp.redisKey(1));
      await raw.send("SET", fa.redisKey(1), stored, "PX", 60_000);
    } else {
      await raw.send("DEL", fa.redisKey(1));
    }
    const t0 = performance.now();
    for (const f of [fb, fc]) {
      // Poll until the new value shows (the invalidation arrived); from
      // then on the old one must never come back.
      let v = (await f(1)).at;
      while (v === old) {
        assert.ok(performance.now() - t0 < 5_000, `${how}: still old`);
        await sleep(0);
        v = (await f(1)).at;
      }
      delays[how].push(performance.now() - t0);
      for (let i = 0; i < 20; i++) assert.notEqual((await f(1)).at, old);
      if (how !== "DEL") assert.equal(v, next);
    }
  }
  const line = Object.entries(delays).map(([how, d]) =>
    `${how}: p99 ${p99(d).toFixed(2)} ms`
  ).join(", ");
  console.log(`write -> old value gone from the other clients' tiers: ${line}`);
  for (const d of Object.values(delays)) assert.ok(p99(d) < 250, line);
  // FLUSHDB: everything goes (Redis sends a null key list).
  for (let i = 0; i < 100 && fb.memory!.entries < 1; i++) {
    await fb(2);
    await sleep(1);
  }
  assert.ok(fb.memory!.entries >= 1);
  const before = fb.memory!.flushes;
  await raw.send("FLUSHDB");
  await preloadScripts(raw);
  const deadline = Date.now() + 5_000;
  while (fb.memory!.flushes === before) {
    assert.ok(Date.now() < deadline, "no flush after FLUSHDB");
    await sleep(5);
  }
  assert.equal(fb.memory!.entries, 0);
});

test("outage: the tracking connection killed (CLIENT KILL), then a write: the old value is never served once the loss is known; the tier comes back", async () => {
  await using b = await connect({ url, reconnect: { minDelay: 200 } });
  await using raw = await connect(url);
  const k = key("outage");
  const fb = make(b, k);
  await fb(1);
  await fb(1);
  const old = (await fb(1)).at;
  assert.ok(fb.memory!.hits >= 1);
  const ids = await trackingIds(raw);
  assert.ok(ids.length >= 1, "a tracking connection");
  for (const id of ids) await raw.send("CLIENT", "KILL", "ID", id);
  await sleep(50); // the loss is seen (EOF); reconnecting takes 200 ms
  await fb.set([1], { id: 1, at: -1, tags: [] }); // ...via b's own client
  await raw.send("DEL", fb.redisKey(1)); // and a write from elsewhere
  // Neither invalidation reached the killed connection: the tier must not
  // answer while it is down.
  assert.notEqual((await fb(1)).at, old);
  const fresh = (await fb(1)).at;
  assert.equal(fb.memory!.entries, 0, "bypassed while down");
  // Back (its handshake turned tracking on again): used again, and coherent.
  const deadline = Date.now() + 5_000;
  while ((await trackingIds(raw)).length === 0) {
    assert.ok(Date.now() < deadline, "the tracking connection came back");
    await sleep(20);
  }
  await sleep(20);
  await fb(1);
  await fb(1);
  const hits = fb.memory!.hits;
  assert.equal((await fb(1)).at, fresh);
  assert.equal(fb.memory!.hits, hits + 1, "served from memory again");
  await raw.send("DEL", fb.redisKey(1));
  await sleep(50);
  assert.notEqual((await fb(1)).at, fresh);
});

test("own writes: once set(), invalidate(), refresh() or invalidateTag() resolved, this process does not serve the value they replaced from memory, even while Redis's invalidation has not reached it (tracking connection stalled)", async () => {
  const proxy = await startFaultProxy({ port: server.port });
  try {
    await using redis = await connect(proxy.url);
    const k = key("own");
    const runs = { n: 0 };
    const f = cached((id: number) => ({ id, at: ++runs.n }), {
      redis,
      key: (id) => `${k}:${id}`,
      ttl: 60_000,
      memory: { maxEntries: 100 },
      tags: (id) => [`${k}:tag:${id}`],
    });
    const remember = async () => {
      const deadline = Date.now() + 5_000;
      while ((f.memory?.entries ?? 0) < 1) {
        assert.ok(Date.now() < deadline, "never remembered");
        await f(1);
        await sleep(1);
      }
      const hits = f.memory!.hits;
      const v = await f(1);
      assert.equal(f.memory!.hits, hits + 1, "served from memory");
      return v.at;
    };
    await remember();
    // Redis's invalidations for this process's own writes are held back.
    proxy.stall("down", { only: "TRACKING" });
    await f.set([1], { id: 1, at: -1 });
    assert.equal((await f(1)).at, -1, "set()");
    assert.equal(await remember(), -1);
    await f.invalidate(1);
    const computed = (await f(1)).at;
    assert.ok(computed > 0, "invalidate()");
    assert.equal(await remember(), computed);
    const refreshed = (await f.refresh(1)).at;
    assert.ok(refreshed > computed);
    assert.equal((await f(1)).at, refreshed, "refresh()");
    assert.equal(await remember(), refreshed);
    assert.equal(await f.invalidateTag(`${k}:tag:1`), 1);
    assert.ok((await f(1)).at > refreshed, "invalidateTag()");
  } finally {
    proxy.resume();
    await proxy.close();
  }
});

test("a tracking connection gone silent (its bytes held, the socket still open) is not trusted: a change made elsewhere is not served from memory for more than LIVE_MS", async () => {
  const proxy = await startFaultProxy({ port: server.port });
  try {
    await using redis = await connect(proxy.url);
    await using raw = await connect(url);
    const k = key("silent");
    const f = make(redis, k);
    const deadline = Date.now() + 5_000;
    while ((f.memory?.entries ?? 0) < 1) {
      assert.ok(Date.now() < deadline, "never remembered");
      await f(1);
      await sleep(1);
    }
    const old = (await f(1)).at;
    proxy.stall("down", { only: "TRACKING" });
    await raw.send("DEL", f.redisKey(1)); // its invalidation is held
    const t0 = performance.now();
    while ((await f(1)).at === old) {
      assert.ok(
        performance.now() - t0 < LIVE_MS + 1_500,
        "the old value is still served from memory",
      );
      await sleep(10);
    }
    const gone = performance.now() - t0;
    assert.ok(gone >= LIVE_MS - PING_EVERY_MS - 50, `${gone} ms`);
    assert.equal(f.memory!.hits > 0, true);
  } finally {
    proxy.resume();
    await proxy.close();
  }
});

test("the server's idle timeout does not close the tracking connection (it PINGs): the tier is not flushed every `timeout` seconds", async () => {
  await using redis = await connect(url);
  await using raw = await connect(url);
  const k = key("idle");
  const f = make(redis, k);
  await f(1);
  await f(1);
  assert.equal(f.memory!.entries, 1);
  const ids = await trackingIds(raw);
  await raw.send("CONFIG", "SET", "timeout", "1");
  try {
    const t0 = Date.now();
    while (Date.now() - t0 < 3_500) {
      await f(1);
      await sleep(20);
    }
    assert.equal(f.memory!.flushes, 0, "flushed: the connection was closed");
    assert.equal(f.memory!.entries, 1);
    assert.deepEqual(await trackingIds(raw), ids, "the same connection");
  } finally {
    await raw.send("CONFIG", "SET", "timeout", "0");
  }
});

test("memory hits need the tracking connection, not the command one: while the latter reconnects (the server's idle timeout closed it: hits sent nothing on it), they are still served, and nothing is computed here", async () => {
  const lines: string[] = [];
  await using redis = await connect({
    url,
    logger: { warn: (m) => lines.push(m) },
  });
  await using raw = await connect(url);
  const k = key("idle-cmd");
  const runs = { n: 0 };
  const f = make(redis, k, runs);
  await f(1);
  await f(1);
  assert.equal(f.memory!.entries, 1);
  await raw.send("CONFIG", "SET", "timeout", "1");
  try {
    const t0 = Date.now();
    while (Date.now() - t0 < 3_500) {
      await f(1);
      await sleep(5);
    }
  } finally {
    await raw.send("CONFIG", "SET", "timeout", "0");
  }
  assert.equal(runs.n, 1, lines.join("\n"));
  assert.deepEqual(lines.filter((l) => l.includes("failOpen")), []);
});

test("a server that refuses the tracking connection (ACL without CLIENT TRACKING): the tier stays off, with one warning and one attempt, not one per call; values still right", async () => {
  await using admin = await connect(url);
  const user = `notrack${n++}`;
  await admin.send(
    "ACL",
    "SETUSER",
    user,
    "on",
    ">pw",
    "~*",
    "&*",
    "+@all",
    "-client",
  );
  try {
    const lines: string[] = [];
    await using redis = await connect({
      url,
      username: user,
      password: "pw",
      logger: { warn: (m) => lines.push(m) },
    });
    const k = key("refused");
    const runs = { n: 0 };
    const f = make(redis, k, runs);
    const conns = async () =>
      Number(
        (await admin.send<string>("INFO", "stats")).match(
          /total_connections_received:(\d+)/,
        )![1],
      );
    const before = await conns();
    for (let i = 0; i < 100; i++) await f(1);
    await admin.send("DEL", f.redisKey(1));
    assert.equal((await f(1)).at, 2, "recomputed: nothing served from memory");
    assert.equal(f.memory!.hits, 0);
    const tried = (await conns()) - before;
    assert.ok(tried <= 2, `${tried} tracking connections tried`);
    const warned = lines.filter((l) => l.includes("memory tier is off"));
    assert.equal(warned.length, 1, warned.join("\n"));
    assert.ok(!warned[0].includes("pw"), warned[0]);
  } finally {
    await admin.send("ACL", "DELUSER", user);
  }
});

test("an ACL without PING (optional for respite): the tracking connection's PINGs get NOPERM, which proves it alive all the same; the tier keeps serving", async () => {
  await using admin = await connect(url);
  const user = `noping${n++}`;
  await admin.send(
    "ACL",
    "SETUSER",
    user,
    "on",
    ">pw",
    "~*",
    "&*",
    "+@all",
    "-ping",
  );
  try {
    await using redis = await connect({
      url,
      username: user,
      password: "pw",
      logger: null,
    });
    const f = make(redis, key("noping"));
    await f(1);
    await f(1);
    await sleep(LIVE_MS + 2 * PING_EVERY_MS);
    const hits = f.memory!.hits;
    await f(1);
    assert.equal(f.memory!.hits, hits + 1, "served from memory");
  } finally {
    await admin.send("ACL", "DELUSER", user);
  }
});

test("client.close() while the tracking connection is still opening: none is left open once it resolves", async () => {
  await using admin = await connect(url);
  for (let i = 0; i < 5; i++) {
    const redis = await connect(url);
    const f = make(redis, key("closing"));
    const call = f(1); // opens the tracking connection
    await redis.close();
    await call.catch(() => {});
    assert.deepEqual(await trackingIds(admin), [], `round ${i}`);
  }
});

test("tiers of cached functions made and dropped (one per request) are left to the garbage collector: the tracker keeps none of them", async () => {
  const worker = fileURLToPath(
    new URL("./fixtures/memory_gc_worker.ts", import.meta.url),
  );
  const [cmd, args] = runArgs(worker, [url, key("gc")]);
  if (isDeno) args.splice(1, 0, "--v8-flags=--expose-gc"); // after "run"
  const p = spawn(cmd, args);
  assert.equal(await p.exited, 0, await p.stderr());
  const out = JSON.parse((await p.stdout()).trim().split("\n").pop()!) as {
    before: number;
    after: number;
  };
  assert.ok(out.before >= 1, JSON.stringify(out));
  assert.ok(out.after <= 5, `${out.after} of 200 tiers still held`);
});

test("processes: 3 workers with the tier; a plain DEL from here; none serves the old value after it reached them", async () => {
  await using raw = await connect(url);
  const k = key("procs");
  const worker = fileURLToPath(
    new URL("./fixtures/memory_worker.ts", import.meta.url),
  );
  const procs = Array.from({ length: 3 }, (_, i) => {
    const [cmd, args] = runArgs(worker, [url, k, String(i)]);
    return spawn(cmd, args);
  });
  try {
    const deadline = Date.now() + 30_000;
    while (Number(await raw.send("GET", `${k}:ready`) ?? 0) < 3) {
      assert.ok(Date.now() < deadline, "workers did not start");
      await sleep(20);
    }
    await raw.send("DEL", `respite:cache:{${k}:v}`);
    await raw.send("SET", `${k}:deleted-at`, String(Date.now()));
    for (const p of procs) {
      assert.equal(await p.exited, 0, await p.stderr());
      const out = JSON.parse((await p.stdout()).trim().split("\n").pop()!) as {
        staleAfterSeen: number;
        delayMs: number;
        memoryHitsBefore: number;
      };
      assert.ok(out.memoryHitsBefore > 10, "it was serving from memory");
      assert.equal(out.staleAfterSeen, 0);
      assert.ok(out.delayMs < 1_000, `${out.delayMs} ms`);
    }
  } finally {
    for (const p of procs) p.kill("SIGKILL");
  }
});

teardown(() => server.stop());
