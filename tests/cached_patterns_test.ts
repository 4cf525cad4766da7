/**
 * The caching patterns beyond cache-aside: write-through (`set`), a ttl that
 * depends on the value, and `validate` for values read from Redis. Clients on
 * separate connections stand in for separate processes.
 */
import assert from "node:assert/strict";
import {
  cached,
  type CachedErrorEvent,
  type CachedWarmResult,
  CodecError,
  connect,
  jsonCodec,
  type RedisClient,
  richJsonCodec,
} from "../mod.ts";
import { sharedRedis } from "../testing/redis.ts";
import { startFaultProxy } from "../testing/fault_proxy.ts";
import { sleep, teardown, test } from "./_harness.ts";

const server = await sharedRedis();
const url = server.url;
let n = 0;
const key = (s: string) => `test:patterns:${Date.now()}:${n++}:${s}`;

async function until(cond: () => boolean | Promise<boolean>, what: string) {
  const deadline = Date.now() + 5_000;
  while (!await cond()) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await sleep(5);
  }
}

test("set(): the value is served without computing, in every process, fresh for ttl from the write", async () => {
  await using a = await connect(url);
  await using b = await connect(url);
  const k = key("set");
  let runs = 0;
  const make = (redis: RedisClient) =>
    cached((id: number) => {
      runs++;
      return { id, v: "computed" };
    }, { redis, key: (id) => `${k}:${id}`, ttl: 60_000 });
  const fa = make(a);
  const fb = make(b);
  const before = Date.now();
  await fa.set([1], { id: 1, v: "set" });
  assert.deepEqual(await fb(1), { id: 1, v: "set" });
  assert.deepEqual(await fa(1), { id: 1, v: "set" });
  assert.equal(runs, 0);
  const entry = await fb.peek(1);
  assert.equal(entry?.kind, "value");
  assert.ok(entry!.fresh);
  assert.ok(entry!.createdAt >= before && entry!.createdAt <= Date.now());
  assert.ok(entry!.freshUntil - entry!.createdAt <= 60_050); // ms ticks
  assert.ok(entry!.freshUntil - entry!.createdAt >= 59_000);
  const pttl = await a.send<number>("PTTL", fa.redisKey(1));
  assert.ok(pttl > 59_000 && pttl <= 60_000, `PTTL ${pttl}`);
  // A second set replaces the value at once.
  await fb.set([1], { id: 1, v: "set again" });
  assert.deepEqual(await fa(1), { id: 1, v: "set again" });
  assert.equal(runs, 0);
});

test("set() while another process computes: its waiters get the set value at once, and the older computation does not overwrite it", async () => {
  await using a = await connect(url);
  await using b = await connect(url);
  await using c = await connect(url);
  const k = key("race");
  const gate = Promise.withResolvers<void>();
  let started = false;
  const leader = cached(async () => {
    started = true;
    await gate.promise; // a slow read of the old row
    return "old";
  }, { redis: a, key: k, ttl: 60_000 });
  const waiter = cached(() => "computed by the waiter", {
    redis: b,
    key: k,
    ttl: 60_000,
    wait: 30_000,
  });
  const writer = cached(() => "unused", {
    redis: c,
    key: k,
    ttl: 60_000,
  });
  const leading = leader();
  await until(() => started, "the leader to compute");
  const t0 = Date.now();
  const waiting = waiter();
  await sleep(50); // the waiter is subscribed and sleeping
  await writer.set([], "new");
  assert.equal(await waiting, "new", "woken with the set value");
  assert.ok(Date.now() - t0 < 1_000, "woken, not timed out");
  gate.resolve();
  assert.equal(await leading, "old", "the leader's caller gets its own result");
  // ...which was not written over the newer value.
  assert.equal(await waiter(), "new");
  assert.equal((await writer.peek())?.kind, "value");
  assert.equal(
    (await writer.peek() as { value: string }).value,
    "new",
  );
});

test("set() with bad input rejects and writes nothing", async () => {
  await using redis = await connect(url);
  const k = key("bad");
  const f = cached((id: number) => ({ id, big: 0 as unknown }), {
    redis,
    key: (id) => `${k}:${id}`,
    ttl: 60_000,
    validate: (v) => typeof v.id === "number",
  });
  await assert.rejects(f.set(1 as never, { id: 1, big: 0 }), TypeError);
  await assert.rejects(f.set([1], undefined as never), TypeError);
  await assert.rejects(f.set([1], null as never), TypeError);
  await assert.rejects(
    f.set([1], { id: 1, big: 10n }), // JSON cannot hold a BigInt
    CodecError,
  );
  await assert.rejects(f.set([1], { id: "1" as never, big: 0 }), TypeError);
  assert.equal(await redis.send("EXISTS", f.redisKey(1)), 0);
  // With cacheNullish, null is a value like any other.
  const g = cached(() => 1 as number | null, {
    redis,
    key: `${k}:nullish`,
    ttl: 60_000,
    cacheNullish: true,
  });
  await g.set([], null);
  assert.equal(await g(), null);
  await g.invalidate();
});

test("ttl as a function of the value: each entry is fresh for its own ttl; a bad result rejects and writes nothing", async () => {
  await using redis = await connect(url);
  const k = key("ttlfn");
  const f = cached(
    (kind: string) => ({ kind }),
    {
      redis,
      key: (kind) => `${k}:${kind}`,
      ttl: (v) => v.kind === "price" ? 5_000 : 3_600_000,
      jitter: 4_000,
      random: () => 0.999, // the most jitter
    },
  );
  await f("price");
  await f("profile");
  const price = (await f.peek("price"))!;
  const profile = (await f.peek("profile"))!;
  // 5 s less a jitter of up to 4 s; 1 h less up to 4 s.
  const pf = price.freshUntil - price.createdAt;
  const rf = profile.freshUntil - profile.createdAt;
  assert.ok(pf >= 900 && pf <= 5_000 + 50, `price fresh for ${pf} ms`);
  assert.ok(
    rf >= 3_596_000 - 50 && rf <= 3_600_000 + 50,
    `profile fresh for ${rf} ms`,
  );
  const pp = await redis.send<number>("PTTL", f.redisKey("price"));
  const rp = await redis.send<number>("PTTL", f.redisKey("profile"));
  assert.ok(pp <= 5_000, `price PTTL ${pp}`);
  assert.ok(rp > 3_000_000, `profile PTTL ${rp}`);
  // A jitter larger than a short ttl leaves at least 1 ms.
  const short = cached(() => "v", {
    redis,
    key: `${k}:short`,
    ttl: () => 2,
    jitter: 1_000,
    random: () => 0.999,
  });
  assert.equal(await short(), "v");
  for (const bad of [0, -1, 1.5, Number.NaN, "60000", Infinity]) {
    const g = cached(() => "v", {
      redis,
      key: `${k}:bad`,
      ttl: () => bad as number,
    });
    await assert.rejects(
      g(),
      (e: unknown) => e instanceof RangeError || e instanceof TypeError,
    );
    await assert.rejects(
      g.set([], "v"),
      (e: unknown) => e instanceof RangeError || e instanceof TypeError,
    );
    assert.equal(await redis.send("EXISTS", g.redisKey()), 0, String(bad));
  }
  // A fixed ttl is still checked up front, and a jitter against it.
  assert.throws(
    () => cached(() => 1, { redis, key: k, ttl: 0 }),
    RangeError,
  );
  assert.throws(
    () => cached(() => 1, { redis, key: k, ttl: 100, jitter: 100 }),
    RangeError,
  );
  assert.throws(
    () => cached(() => 1, { redis, key: k, ttl: "1" as never }),
    TypeError,
  );
});

test("validate: a stored value that fails it is a miss (reported once, never returned), a computed one that fails is returned but not written", async () => {
  await using redis = await connect(url);
  await using other = await connect(url);
  const k = key("validate");
  const errors: CachedErrorEvent[] = [];
  let runs = 0;
  let next: unknown = { version: 2, name: "fresh" };
  const f = cached(() => {
    runs++;
    return next as { version: number; name: string };
  }, {
    redis,
    key: k,
    ttl: 60_000,
    validate: (v) => v?.version === 2,
    hooks: { error: (e) => void errors.push(e) },
  });
  // An entry of an older app version, written by another process.
  const old = cached(() => ({ version: 1, name: "old" }), {
    redis: other,
    key: k,
    ttl: 60_000,
  });
  await old();
  for (let i = 0; i < 3; i++) {
    // The old entry is replaced at the first call, so later ones hit.
    assert.deepEqual(await f(), { version: 2, name: "fresh" });
  }
  assert.equal(runs, 1);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].phase, "validate");
  assert.match(String(errors[0].error), /validate/);
  // A computed value that fails: returned, not written, reported.
  await f.invalidate();
  next = { version: 3, name: "unexpected" };
  assert.deepEqual(await f(), next);
  assert.equal(await redis.send("EXISTS", f.redisKey()), 0);
  assert.equal(errors.length, 2);
  assert.equal(errors[1].phase, "validate");
  // A validator that throws fails the value.
  const t = cached(() => ({ version: 1 }), {
    redis,
    key: `${k}:throws`,
    ttl: 60_000,
    validate: () => {
      throw new Error("schema mismatch");
    },
  });
  assert.deepEqual(await t(), { version: 1 });
  assert.equal(await redis.send("EXISTS", t.redisKey()), 0);
  assert.throws(
    () =>
      cached(() => 1, {
        redis,
        key: k,
        ttl: 1_000,
        validate: "yes" as never,
      }),
    TypeError,
  );
});

test("warm(): missing and stale entries are filled, fresh ones skipped; two processes warming at once and a caller compute each key once", async () => {
  await using a = await connect(url);
  await using b = await connect(url);
  await using c = await connect(url);
  const k = key("warm");
  const runs = new Map<number, number>();
  const make = (redis: RedisClient) =>
    cached(async (id: number) => {
      runs.set(id, (runs.get(id) ?? 0) + 1);
      await sleep(30);
      if (id === 13) throw new Error("no row 13");
      return { id };
    }, {
      redis,
      key: (id) => `${k}:${id}`,
      ttl: 60_000,
      staleWhileRevalidate: 60_000,
    });
  const fa = make(a);
  const fb = make(b);
  const fc = make(c);
  // 0 is fresh; 1 is stale (written with an old entry's metadata).
  await fa(0);
  await fa.set([1], { id: 1 });
  const staleEntry = (await a.send<string>("GET", fa.redisKey(1)))
    .replace(/^rsp1 (\d+) (\d+) (\d+) /, (_, c, d) => `rsp1 ${c} ${d} 1 `);
  await a.send("SET", fa.redisKey(1), staleEntry, "PX", 60_000);
  assert.equal((await fa.peek(1))?.fresh, false);
  runs.clear();
  const list = Array.from({ length: 20 }, (_, i) => [i] as [number]);
  const [ra, rb] = await Promise.all([
    fa.warm(list, { concurrency: 4 }),
    fb.warm(list, { concurrency: 7 }),
    ...list.map(([id]) => fc(id).catch(() => null)),
  ]) as [CachedWarmResult, CachedWarmResult];
  for (let id = 1; id < 20; id++) {
    // A failure is not cached: its lock is released and a waiter tries.
    if (id === 13) continue;
    assert.equal(runs.get(id), 1, `key ${id} computed ${runs.get(id)} times`);
  }
  assert.equal(runs.get(0), undefined, "the fresh key was not computed");
  for (const r of [ra, rb]) {
    assert.equal(r.fresh + r.filled + r.failed.length, 20);
    assert.ok(r.fresh >= 1);
  }
  assert.deepEqual(ra.failed.map((f) => f.args), [[13]]);
  assert.match(String(ra.failed[0].error), /no row 13/);
  for (let id = 0; id < 20; id++) {
    if (id !== 13) assert.equal((await fa.peek(id))?.fresh, true, `key ${id}`);
  }
  // Everything fresh now: a second warm computes nothing.
  runs.clear();
  const again = await fb.warm(list.filter(([id]) => id !== 13));
  assert.deepEqual([again.fresh, again.filled, again.failed], [19, 0, []]);
  assert.equal(runs.size, 0);
  // Bad input is refused before anything is sent.
  await assert.rejects(fa.warm([1, 2] as never), TypeError);
  await assert.rejects(fa.warm("x" as never), TypeError);
  await assert.rejects(fa.warm(list, { concurrency: 0 }), RangeError);
  await assert.rejects(fa.warm(list, { concurrency: 1.5 }), RangeError);
  await assert.rejects(fa.warm(list, { parallel: 2 } as never), TypeError);
  await assert.rejects(fa.warm(list, { signal: {} as never }), TypeError);
  const aborted = AbortSignal.abort(new Error("stop"));
  await assert.rejects(fa.warm(list, { signal: aborted }), /stop/);
});

test("tags: invalidateTag removes every entry of a tag, in every cached function of the prefix and every process, and leaves other tags alone", async () => {
  await using a = await connect(url);
  await using b = await connect(url);
  const k = key("tags");
  let runs = 0;
  const orders = cached((user: number, page: number) => {
    runs++;
    return { user, page };
  }, {
    redis: a,
    key: (user, page) => `${k}:orders:${user}:${page}`,
    ttl: 60_000,
    tags: (user) => [`${k}:user:${user}`, `${k}:all`],
  });
  const profile = cached((user: number) => {
    runs++;
    return { user };
  }, {
    redis: b,
    key: (user) => `${k}:profile:${user}`,
    ttl: 60_000,
    tags: (user) => [`${k}:user:${user}`],
  });
  for (const page of [1, 2, 3]) await orders(7, page);
  await orders(8, 1);
  await profile(7);
  await profile(8);
  assert.equal(runs, 6);
  const tagSet = `respite:cache:tag:{${k}:user:7}`;
  assert.equal(await a.send("ZCARD", tagSet), 4);
  const pttl = await a.send<number>("PTTL", tagSet);
  assert.ok(pttl >= 60_000, `the tag set outlives its entries: ${pttl}`);
  // From the other process's function: all four entries of user 7 go.
  assert.equal(await profile.invalidateTag(`${k}:user:7`), 4);
  // Its keys stay until their entries' lifetime is over (see the test of a
  // join racing an invalidateTag).
  assert.equal(await a.send("ZCARD", tagSet), 4);
  for (const page of [1, 2, 3]) {
    assert.equal(await a.send("EXISTS", orders.redisKey(7, page)), 0);
  }
  assert.equal(await a.send("EXISTS", profile.redisKey(7)), 0);
  assert.equal(await a.send("EXISTS", orders.redisKey(8, 1)), 1);
  assert.equal(await a.send("EXISTS", profile.redisKey(8)), 1);
  await orders(7, 1);
  await orders(8, 1); // a hit
  assert.equal(runs, 7);
  assert.equal(await orders.invalidateTag(`${k}:nothing`), 0);
  assert.equal(await orders.invalidateTag(`${k}:all`), 4); // 3 of 7, 1 of 8
  await assert.rejects(orders.invalidateTag(""), TypeError);
  await assert.rejects(orders.invalidateTag(1 as never), TypeError);
});

test("tags: a computation running when invalidateTag comes does not write; a bad tags result rejects before anything is sent", async () => {
  await using a = await connect(url);
  const k = key("tagrace");
  const gate = Promise.withResolvers<void>();
  let started = false;
  let version = 1;
  const f = cached(async () => {
    const seen = version;
    started = true;
    await gate.promise;
    return { seen };
  }, { redis: a, key: `${k}:e`, ttl: 60_000, tags: () => [`${k}:t`] });
  const running = f();
  await until(() => started, "the computation");
  version = 2; // the data changes, then the tag is invalidated
  assert.equal(await f.invalidateTag(`${k}:t`), 1);
  gate.resolve();
  assert.deepEqual(await running, { seen: 1 });
  assert.equal(await a.send("EXISTS", f.redisKey()), 0, "not written");
  const bad = (tags: unknown) =>
    cached(() => 1, {
      redis: a,
      key: `${k}:bad`,
      ttl: 60_000,
      tags: () => tags as string[],
    });
  for (const tags of ["x", [""], [1], ["}x"], null]) {
    await assert.rejects(bad(tags)(), TypeError, JSON.stringify(tags));
  }
  assert.equal(await a.send("EXISTS", `respite:cache:{${k}:bad}`), 0);
  assert.throws(
    () => cached(() => 1, { redis: a, key: k, ttl: 1, tags: [] as never }),
    TypeError,
  );
});

test("richJsonCodec: Date, Map, Set, BigInt, NaN/Infinity and typed arrays come back as themselves on later hits, at any depth; a tag-shaped object is kept; a foreign tag is a reported miss", async () => {
  await using redis = await connect(url);
  const k = key("rich");
  const value = {
    at: new Date("2026-12-03T10:00:00.000Z"),
    never: new Date(Number.NaN),
    tags: new Set(["a", "b"]),
    byId: new Map<unknown, unknown>([[1, { when: new Date(0) }], ["x", 2n]]),
    big: -(2n ** 80n),
    nums: [Number.NaN, Infinity, -Infinity, -0, 1.5],
    bytes: new Uint8Array([0, 1, 254, 255]),
    floats: new Float64Array([1.5, -2.25]),
    wide: new BigInt64Array([-1n, 2n ** 62n]),
    view: new Uint16Array(new Uint8Array([1, 0, 2, 0, 3, 0]).buffer, 2, 2),
    tricky: { $rsp: "Date", v: "not a date" },
    plain: { nested: [{ at: new Date(1) }] },
  };
  let runs = 0;
  const f = cached(() => {
    runs++;
    return value;
  }, { redis, key: k, ttl: 60_000, codec: richJsonCodec as never });
  await f(); // computed
  const hit = await f(); // decoded from Redis
  assert.equal(runs, 1);
  assert.ok(hit.at instanceof Date && hit.byId instanceof Map);
  assert.deepEqual(hit, {
    ...value,
    nums: [Number.NaN, Infinity, -Infinity, 0, 1.5],
  });
  assert.deepEqual([...hit.view], [2, 3]);
  // The plain JSON codec changes them: the reason to opt in.
  const plain = jsonCodec.decode(jsonCodec.encode({ at: value.at })) as {
    at: unknown;
  };
  assert.equal(typeof plain.at, "string");
  // Refused as by JSON: cycles, functions.
  const cyc: Record<string, unknown> = {};
  cyc.self = cyc;
  assert.throws(() => richJsonCodec.encode(cyc), TypeError);
  assert.throws(() => richJsonCodec.encode(() => 1), TypeError);
  // A foreign or malformed tag is not a value: a miss, reported.
  for (
    const bad of [
      '{"$rsp":"Nope","v":1}',
      '{"$rsp":"Map","v":3}',
      '{"$rsp":"Float64Array","v":"AAA="}',
    ]
  ) {
    assert.throws(() => richJsonCodec.decode(bad), Error, bad);
  }
  await f.invalidate();
});

test("tags: a tag's set holds only the keys whose entries may still exist: a tag used for ever does not grow for ever", async () => {
  await using a = await connect(url);
  const k = key("tagbound");
  const f = cached((i: number) => ({ i }), {
    redis: a,
    key: (i) => `${k}:${i}`,
    ttl: 50,
    tags: () => [`${k}:t`],
  });
  const tagKey = `respite:cache:tag:{${k}:t}`;
  const size = async () =>
    await a.send<string>("TYPE", tagKey) === "zset"
      ? await a.send<number>("ZCARD", tagKey)
      : await a.send<number>("SCARD", tagKey);
  // A new key every 20 ms for 3 s: each entry lives 50 ms, but the tag is
  // always in use, so its set never expires as a whole.
  let i = 0;
  const t0 = Date.now();
  while (Date.now() - t0 < 3_000) {
    await f.set([i], { i });
    i++;
    await sleep(20);
  }
  const held = await size();
  // Kept: the keys of about the last 1.05 s (50 ms and the 1 s slack).
  const perSecond = i / ((Date.now() - t0) / 1_000);
  assert.ok(
    held <= Math.ceil(perSecond * 1.05) + 5 && held < i / 2,
    `${held} of ${i} keys still in the tag's set`,
  );
  await sleep(1_100);
  await f.set([i], { i });
  assert.equal(await size(), 1, "the expired keys were dropped");
  assert.equal(await f.invalidateTag(`${k}:t`), 1);
});

test("tags: an invalidateTag that lands between a computation joining the tag and reading its marker does not drop the entry from the tag: the next invalidateTag still removes what that computation wrote", async () => {
  // The computing process is 150 ms away (each way): its join reaches Redis
  // 300 ms before its marker read does, and an invalidateTag from here
  // runs in between.
  const proxy = await startFaultProxy({ port: server.port });
  try {
    await using far = await connect(proxy.url);
    await using near = await connect(url);
    const k = key("tagjoin");
    let version = 1;
    let runs = 0;
    const opts = {
      key: `${k}:e`,
      ttl: 60_000,
      tags: () => [`${k}:t`],
    };
    const fFar = cached(() => ({ version, run: ++runs }), {
      ...opts,
      redis: far,
    });
    const fNear = cached(() => ({ version, run: ++runs }), {
      ...opts,
      redis: near,
    });
    await fFar.invalidate(); // connections and scripts ready
    proxy.latency(150);
    const running = fFar();
    const tagKey = `respite:cache:tag:{${k}:t}`;
    await until(
      async () => Number(await near.send("EXISTS", tagKey)) === 1,
      "the far computation's join",
    );
    await fNear.invalidateTag(`${k}:t`); // nothing written yet
    assert.deepEqual(await running, { version: 1, run: 1 });
    proxy.resume();
    // Written (its marker was read after that invalidateTag: fine, its data
    // is newer than it).
    assert.equal(await near.send("EXISTS", fNear.redisKey()), 1);
    version = 2; // the data changes, then its tag is invalidated
    await fNear.invalidateTag(`${k}:t`);
    assert.deepEqual(
      await fNear(),
      { version: 2, run: 2 },
      "the entry written before survived invalidateTag",
    );
  } finally {
    proxy.resume();
    await proxy.close();
  }
});

teardown(() => server.stop());
