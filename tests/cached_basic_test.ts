/**
 * `cached` in one process: singleflight, the hit path, nullish values,
 * codecs, corrupt entries, unencodable results, invalidate, refresh, peek,
 * negative caching, staleIfError, jitter, hooks, signals and keys.
 */
import assert from "node:assert/strict";
import {
  type BinaryCodec,
  cached,
  type CachedErrorEvent,
  CachedFailureError,
  CodecError,
  connect,
  type RedisClient,
} from "../mod.ts";
import { commandCalls, scanKeys, sharedRedis } from "../testing/redis.ts";
import { sleep, teardown, test } from "./_harness.ts";
import { mulberry32 as seeded } from "../testing/random.ts";

const server = await sharedRedis();
const url = server.url;
let n = 0;
const key = (s: string) => `test:cachedbasic:${Date.now()}:${n++}:${s}`;

/** Commands Redis has processed so far, by name (INFO commandstats). */
async function commandStats(
  redis: RedisClient,
): Promise<Record<string, number>> {
  return Object.fromEntries(await commandCalls(redis));
}

function statsDelta(
  before: Record<string, number>,
  after: Record<string, number>,
): Record<string, number> {
  const d: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) {
    const diff = v - (before[k] ?? 0);
    if (diff !== 0) d[k] = diff;
  }
  return d;
}

test("1,000 concurrent calls in one process on a cold key: 1 computation, one lookup", async () => {
  await using redis = await connect(url);
  let runs = 0;
  const k = key("thousand");
  const f = cached(async () => {
    runs++;
    await sleep(50);
    return { answer: 42 };
  }, { redis, key: k, ttl: 60_000 });
  const before = await commandStats(redis);
  const results = await Promise.all(Array.from({ length: 1_000 }, () => f()));
  const d = statsDelta(before, await commandStats(redis));
  assert.equal(runs, 1);
  assert.ok(results.every((r) => r.answer === 42));
  // One lookup for all: GET (miss), GET of the entry and of its invalidation
  // marker after taking the lock, the marker check in the write script, the
  // token check in the unlock script; nothing per call.
  assert.ok((d.get ?? 0) <= 5, `GETs: ${JSON.stringify(d)}`);
  await f.invalidate();
});

test("a hit costs exactly one command (GET) and returns the decoded value", async () => {
  await using redis = await connect(url);
  const k = key("hit");
  let runs = 0;
  const f = cached(() => {
    runs++;
    return { list: [1, "two", null], nested: { ok: true } };
  }, { redis, key: k, ttl: 60_000 });
  await f();
  const before = await commandStats(redis);
  for (let i = 0; i < 100; i++) {
    assert.deepEqual(await f(), {
      list: [1, "two", null],
      nested: { ok: true },
    });
  }
  const d = statsDelta(before, await commandStats(redis));
  delete d.info; // the first INFO itself
  assert.deepEqual(d, { get: 100 });
  assert.equal(runs, 1);
  await f.invalidate();
});

test("keys: a function of the arguments; entry and lock share one hash tag", async () => {
  await using redis = await connect(url);
  const base = key("args");
  const f = cached(
    (a: number, b: string) => `${a}-${b}`,
    { redis, key: (a, b) => `${base}:${a}:${b}`, ttl: 60_000 },
  );
  assert.equal(await f(1, "x"), "1-x");
  assert.equal(await f(2, "y"), "2-y");
  assert.equal(f.redisKey(1, "x"), `respite:cache:{${base}:1:x}`);
  assert.equal((await f.peek(2, "y"))?.kind, "value");
  // A key function that returns nothing usable rejects at call time.
  const bad = cached((_a: number) => 1, {
    redis,
    key: () => "" as string,
    ttl: 1_000,
  });
  await assert.rejects(bad(1), TypeError);
  // Custom prefix.
  const p = cached(() => 1, { redis, key: base, ttl: 1_000, prefix: "app:" });
  assert.equal(p.redisKey(), `app:cache:{${base}}`);
  await Promise.all([f.invalidate(1, "x"), f.invalidate(2, "y")]);
});

test("keys: after a computation the entry is the only key left for its cache key (no lock, no fencing counter)", async () => {
  await using redis = await connect(url);
  const base = key("onlyentry");
  const f = cached((a: number) => a * 2, {
    redis,
    key: (a) => `${base}:${a}`,
    ttl: 60_000,
    staleWhileRevalidate: 60_000,
  });
  assert.equal(await f(1), 2);
  assert.equal(await f.refresh(1), 2);
  const keysOf = () => scanKeys(redis, `*${base}*`);
  assert.deepEqual(await keysOf(), [f.redisKey(1)]);
  await f.invalidate(1);
});

test("null and undefined are returned but not cached, unless cacheNullish", async () => {
  await using redis = await connect(url);
  let runs = 0;
  const plain = cached((v: null | undefined) => {
    runs++;
    return v;
  }, { redis, key: (v) => key(`nullish-${v}`), ttl: 60_000 });
  assert.equal(await plain(null), null);
  assert.equal(await plain(null), null);
  assert.equal(await plain(undefined), undefined);
  assert.equal(runs, 3, "not cached by default");

  runs = 0;
  const base = key("nullish-cached");
  const kept = cached((v: null | undefined) => {
    runs++;
    return v;
  }, { redis, key: (v) => `${base}-${v}`, ttl: 60_000, cacheNullish: true });
  assert.equal(await kept(null), null);
  assert.equal(await kept(null), null);
  assert.equal(await kept(undefined), undefined);
  assert.equal(await kept(undefined), undefined);
  assert.equal(runs, 2, "each cached once");
  const peeked = await kept.peek(undefined);
  assert.ok(peeked?.kind === "value" && peeked.value === undefined);
  await Promise.all([kept.invalidate(null), kept.invalidate(undefined)]);
});

test("codecs: a binary codec stores bytes with CRLF and NUL intact; a text codec its own text", async () => {
  await using redis = await connect(url);
  const bytes: BinaryCodec<Uint8Array> = {
    binary: true,
    encode: (b) => b,
    decode: (b) => b.slice(),
  };
  const value = new Uint8Array([0, 13, 10, 255, 36, 13, 10, 0]);
  let runs = 0;
  const k = key("bin");
  const f = cached(() => {
    runs++;
    return value;
  }, { redis, key: k, ttl: 60_000, codec: bytes });
  assert.deepEqual(await f(), value);
  assert.deepEqual(await f(), value);
  assert.equal(runs, 1);

  const k2 = key("dates");
  const dates = cached(() => new Date(86_400_000), {
    redis,
    key: k2,
    ttl: 60_000,
    codec: {
      encode: (d: Date) => d.toISOString(),
      decode: (t: string) => new Date(t),
    },
  });
  await dates();
  const again = await dates();
  assert.ok(again instanceof Date && again.getTime() === 86_400_000);
  await Promise.all([f.invalidate(), dates.invalidate()]);
});

test("a corrupt or foreign entry is a miss, reported, and overwritten", async () => {
  await using redis = await connect(url);
  const errors: unknown[] = [];
  let runs = 0;
  const base = key("corrupt");
  const f = cached((_name: string) => {
    runs++;
    return { fine: true };
  }, {
    redis,
    key: (s: string) => `${base}-${s}`,
    ttl: 60_000,
    hooks: { error: (e) => errors.push(e) },
  });
  // Foreign text, a truncated header, and a valid header with bad JSON.
  const samples = {
    foreign: "hello from another app",
    truncated: "rsp1 1 2",
    badjson: `rsp1 ${Date.now()} 1 ${Date.now() + 60_000} ${
      Date.now() + 60_000
    } v\n{not json`,
  };
  for (const [name, stored] of Object.entries(samples)) {
    await redis.send("SET", f.redisKey(name), stored);
    assert.deepEqual(await f(name), { fine: true }, name);
    assert.deepEqual(await f(name), { fine: true }, name);
  }
  assert.equal(runs, 3, "one computation per corrupt entry, then hits");
  assert.equal(errors.length, 3);
  for (const e of errors as Array<{ phase: string; error: unknown }>) {
    assert.equal(e.phase, "decode");
    assert.ok(e.error instanceof CodecError);
  }
  await Promise.all(Object.keys(samples).map((s) => f.invalidate(s)));
});

test("a result the codec cannot encode rejects with a CodecError and writes nothing", async () => {
  await using redis = await connect(url);
  const k = key("unencodable");
  const cycle: Record<string, unknown> = {};
  cycle.self = cycle;
  const results: unknown[] = [10n, cycle, () => 1];
  for (const bad of results) {
    const f = cached(() => bad, { redis, key: k, ttl: 60_000 });
    await assert.rejects(f(), (err: unknown) => {
      assert.ok(err instanceof CodecError);
      assert.match(err.message, /cannot be encoded.*nothing was written/);
      return true;
    });
    assert.equal(await redis.send("EXISTS", f.redisKey()), 0);
    // The lock was released at once: a second call computes right away.
    const t0 = performance.now();
    await assert.rejects(f(), CodecError);
    assert.ok(performance.now() - t0 < 500);
  }
});

test("invalidate during a computation: the running computation does not write, the next call recomputes", async () => {
  await using redis = await connect(url);
  const k = key("invalidate");
  let version = 1;
  let runs = 0;
  const gate = Promise.withResolvers<void>();
  const f = cached(async () => {
    runs++;
    const v = version;
    if (runs === 1) await gate.promise;
    return { v };
  }, { redis, key: k, ttl: 60_000 });
  const first = f();
  await sleep(50); // computing, holding the lock
  version = 2;
  await f.invalidate();
  gate.resolve();
  assert.deepEqual(await first, { v: 1 }, "its own caller still gets it");
  assert.equal(await f.peek(), null, "but it was not stored");
  assert.deepEqual(await f(), { v: 2 });
  assert.equal(runs, 2);
  assert.deepEqual(await f(), { v: 2 });
  assert.equal(runs, 2);
  // invalidate with nothing running: next call recomputes.
  version = 3;
  await f.invalidate();
  assert.deepEqual(await f(), { v: 3 });
  await f.invalidate();
});

test("refresh recomputes now, deduplicated; peek reads without computing", async () => {
  await using redis = await connect(url);
  await using other = await connect(url);
  const k = key("refresh");
  let runs = 0;
  const make = (r: RedisClient) =>
    cached(async () => {
      runs++;
      await sleep(30);
      return runs;
    }, { redis: r, key: k, ttl: 60_000 });
  const f = make(redis);
  const g = make(other);
  assert.equal(await f.peek(), null);
  assert.equal(runs, 0, "peek does not compute");
  assert.equal(await f(), 1);
  assert.equal(await f(), 1);
  const [a, b, c] = await Promise.all([f.refresh(), f.refresh(), f.refresh()]);
  assert.deepEqual([a, b, c], [2, 2, 2], "one refresh for concurrent calls");
  assert.equal(await f(), 2);
  assert.equal(await g(), 2, "another client sees the refreshed value");
  const p = await g.peek();
  assert.ok(p?.kind === "value" && p.value === 2 && p.fresh);
  assert.ok(p.delta >= 25 && p.delta < 1_000, `delta ${p.delta}`);
  assert.ok(p.freshUntil - p.createdAt >= 60_000);
  assert.equal(p.staleUntil, p.freshUntil);
  // A refresh in another process waits for a refresh that started after it
  // was called... and one that started before does not count.
  const [x, y] = await Promise.all([f.refresh(), g.refresh()]);
  assert.ok(x >= 3 && y >= 3);
  await f.invalidate();
});

test("negative caching: failures remembered for negativeTtl, never without it", async () => {
  await using redis = await connect(url);
  let runs = 0;
  class NotFound extends Error {
    override name = "NotFound";
  }
  const opts = { redis, ttl: 60_000 };
  const plain = cached(() => {
    runs++;
    throw new NotFound("no such user");
  }, { ...opts, key: key("neg-plain") });
  await assert.rejects(plain(), NotFound);
  await assert.rejects(plain(), NotFound);
  assert.equal(runs, 2, "errors are not cached by default");
  assert.equal(await plain.peek(), null);

  runs = 0;
  const neg = cached(() => {
    runs++;
    throw new NotFound("no such user");
  }, { ...opts, key: key("neg"), negativeTtl: 300 });
  await assert.rejects(
    neg(),
    NotFound,
    "the computing caller gets the original",
  );
  for (let i = 0; i < 3; i++) {
    await assert.rejects(neg(), (err: unknown) => {
      assert.ok(err instanceof CachedFailureError);
      assert.equal(err.errorName, "NotFound");
      assert.equal(err.message, "no such user");
      return true;
    });
  }
  assert.equal(runs, 1);
  const p = await neg.peek();
  assert.ok(p?.kind === "error" && p.error.errorName === "NotFound");
  await sleep(350);
  await assert.rejects(neg(), NotFound);
  assert.equal(runs, 2, "recomputed once the negative entry expired");

  // isNegative picks which failures to remember.
  runs = 0;
  const picky = cached(() => {
    runs++;
    throw new TypeError("transient");
  }, {
    ...opts,
    key: key("neg-picky"),
    negativeTtl: 10_000,
    isNegative: (e) => e instanceof NotFound,
  });
  await assert.rejects(picky(), TypeError);
  await assert.rejects(picky(), TypeError);
  assert.equal(runs, 2);
  await neg.invalidate();
});

test("staleIfError: a failing recompute serves the last value and reports the error", async () => {
  await using redis = await connect(url);
  const errors: Array<{ phase: string }> = [];
  let fail = false;
  const f = cached(() => {
    if (fail) throw new Error("database down");
    return "good";
  }, {
    redis,
    key: key("sie"),
    ttl: 100,
    staleIfError: 60_000,
    hooks: { error: (e) => errors.push(e) },
  });
  assert.equal(await f(), "good");
  await sleep(150);
  fail = true;
  assert.equal(await f(), "good");
  assert.deepEqual(errors.map((e) => e.phase), ["stale"]);
  // Without staleIfError the error reaches the caller.
  const g = cached(() => {
    if (fail) throw new Error("database down");
    return "good";
  }, { redis, key: key("no-sie"), ttl: 100 });
  fail = false;
  await g();
  await sleep(150);
  fail = true;
  await assert.rejects(g(), /database down/);
  await f.invalidate();
});

test("jitter: every entry's fresh lifetime lies within [ttl - jitter, ttl] and spreads over it", async () => {
  await using redis = await connect(url);
  const ttl = 60_000;
  const jitter = 10_000;
  const base = key("jitter");
  const f = cached((i: number) => i, {
    redis,
    key: (i) => `${base}:${i}`,
    ttl,
    jitter,
    random: seeded(7),
  });
  const lifetimes: number[] = [];
  for (let i = 0; i < 200; i++) {
    await f(i);
    const p = await f.peek(i);
    assert.ok(p !== null);
    // The entry is written right after the computation ends.
    lifetimes.push(p.freshUntil - p.createdAt - p.delta);
    const pttl = await redis.send<number>("PTTL", f.redisKey(i));
    assert.ok(pttl <= ttl && pttl > ttl - jitter - 1_000, `pttl ${pttl}`);
  }
  const min = Math.min(...lifetimes);
  const max = Math.max(...lifetimes);
  assert.ok(min >= ttl - jitter - 2, `min ${min}`);
  assert.ok(max <= ttl + 2, `max ${max}`);
  assert.ok(max - min > jitter * 0.8, `spread ${max - min}`);
  await Promise.all(Array.from({ length: 200 }, (_, i) => f.invalidate(i)));
});

test("hooks: hit, stale, miss, compute with duration; a throwing hook is reported, not thrown", async () => {
  await using redis = await connect(url);
  const events: string[] = [];
  const durations: number[] = [];
  const errors: Array<{ phase: string }> = [];
  const f = cached(async () => {
    await sleep(40);
    return 1;
  }, {
    redis,
    key: key("hooks"),
    ttl: 100,
    staleWhileRevalidate: 60_000,
    beta: 0,
    hooks: {
      hit: () => events.push("hit"),
      stale: () => events.push("stale"),
      miss: () => {
        events.push("miss");
        throw new Error("a broken metrics hook");
      },
      compute: (e) => {
        events.push(`compute:${e.reason}:${e.background}`);
        durations.push(e.duration);
      },
      error: (e) => errors.push(e),
    },
  });
  await f(); // miss, compute
  await f(); // hit
  await sleep(150);
  await f(); // stale, background compute
  await f.idle();
  assert.deepEqual(events, [
    "miss",
    "compute:miss:false",
    "hit",
    "stale",
    "compute:stale:true",
  ]);
  assert.ok(durations.every((d) => d >= 35 && d < 1_000), `${durations}`);
  assert.deepEqual(errors.map((e) => e.phase), ["hook"]);
  await f.invalidate();
});

test("an async hook that rejects is reported like one that throws (to the error hook, else the logger), never an unhandled rejection", async () => {
  await using redis = await connect(url);
  const errors: CachedErrorEvent[] = [];
  const warnings: string[] = [];
  const f = cached(() => "v", {
    redis,
    key: key("asynchook"),
    ttl: 60_000,
    hooks: {
      miss: async () => {
        await sleep(1);
        throw new Error("an async metrics hook failed");
      },
      error: (e) => void errors.push(e),
    },
  });
  assert.equal(await f(), "v");
  await sleep(20);
  assert.deepEqual(errors.map((e) => e.phase), ["hook"]);
  assert.match(String(errors[0].error), /async metrics hook/);
  const g = cached(() => "w", {
    redis,
    key: key("asyncerrorhook"),
    ttl: 60_000,
    logger: { warn: (m) => void warnings.push(m) },
    hooks: { error: () => Promise.reject(new Error("the error hook too")) },
  });
  // A decode failure is an error event: its async hook rejects.
  await redis.send("SET", g.redisKey(), "junk");
  assert.equal(await g(), "w");
  await sleep(20);
  assert.ok(
    warnings.some((w) => w.includes("error hook threw") && w.includes("too")),
    warnings.join("\n"),
  );
  await f.invalidate();
  await g.invalidate();
});

test("signal: an aborted caller stops waiting at once; the shared computation goes on", async () => {
  await using redis = await connect(url);
  let runs = 0;
  const f = cached(async () => {
    runs++;
    await sleep(200);
    return "done";
  }, { redis, key: key("signal"), ttl: 60_000 });
  const ac = new AbortController();
  const leaving = f.get([], { signal: ac.signal });
  const staying = f();
  await sleep(30);
  const t0 = performance.now();
  ac.abort(new Error("client went away"));
  await assert.rejects(leaving, /client went away/);
  assert.ok(performance.now() - t0 < 50);
  assert.equal(await staying, "done");
  assert.equal(runs, 1);
  assert.equal(await f(), "done");
  await assert.rejects(
    f.get([], { signal: AbortSignal.abort(new Error("already")) }),
    /already/,
  );
  await f.invalidate();
});

teardown(async () => {
  await server.stop();
});
