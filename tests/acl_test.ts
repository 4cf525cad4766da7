/**
 * ACL: the exact commands respite sends. A Redis user allowed only
 * {@linkcode RESPITE_COMMANDS} (plus `config|get` for the eviction warning)
 * runs every feature end to end, over RESP2 and RESP3, as a named user or as
 * the default user, with keys and channels restricted to `respite:*`; a user
 * lacking any one of them sees named features fail with Redis's ACL error.
 * Commands run from Lua are ACL-checked too, so the scripts' `redis.call`s
 * are in the list.
 */
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import {
  cached,
  type CachedErrorEvent,
  CachedFailureError,
  connect,
  type ConnectOptions,
  Lock,
  type RedisClient,
  ReplyError,
  Semaphore,
  withLock,
} from "../mod.ts";
import { BLOCKING_COMMANDS } from "../lib/client/blocking.ts";
import { type RedisServer, startRedis } from "../testing/redis.ts";
import { preloadScripts } from "../testing/scripts.ts";
import { sleep, teardown, test } from "./_harness.ts";

/**
 * Every command respite needs, as ACL rules name them (`+<name>`), with what
 * needs it. Dropping any one makes a feature in {@linkcode NEEDED_BY} fail.
 */
export const RESPITE_COMMANDS = [
  // Scripts: every Lock and cached() write runs one.
  "evalsha", // every script run
  "eval", // a script's first run on a server that lacks it (NOSCRIPT fallback)
  // Called from the Lua scripts, and some directly:
  "set", // acquire (SET NX PX); cached() write and invalidate
  "get", // release/extend (token check), owner(); cached() hit, marker, lock holder
  "del", // release, reset/resetAll; cached() invalidate
  "incr", // acquire with fencing (the fence counter)
  "pttl", // acquire finding the lock held; cached() waiting (the holder's lease)
  "pexpire", // extend, autoRenew; cached() keeps its invalidation marker alive
  "publish", // release and reset wake waiters; a cached() write wakes waiters
  "exists", // Lock.locked()
  "mget", // a cached() hit with a namespace: the entry and its namespace's token
  "time", // acquire: a token is max(counter + 1, the server's clock in µs)
  "scan", // Lock.resetAll() (SCAN ... MATCH ... TYPE string)
  // The Semaphore's holders and queue (ZSETs), from its Lua scripts:
  "zadd",
  "zrem",
  "zcard",
  "zscore",
  "zrange",
  "zremrangebyscore",
  "zpopmin",
  "zmscore",
  // cached()'s tags: a sorted set per tag (zadd, zscore and
  // zremrangebyscore in Lua, above), filled on a miss, read by invalidateTag.
  "zscan",
  // Pub/sub, on the client's subscriber connection:
  "subscribe", // waiting for a lock or a cached() value; redis.subscribe()
  "unsubscribe", // when the last waiter on a channel is gone; unsubscribe()
  // The handshake, only with these connect options:
  "client|setname", // `name` over RESP2 (RESP3 sends it with HELLO)
  "select", // `db` other than 0
] as const;

/**
 * Optional: `CONFIG GET maxmemory-policy`, for the one-time eviction warning
 * (without it the check is silently skipped), and `PING`, the client's
 * health check after a command timed out (without it Redis answers NOPERM,
 * which proves the connection alive just as well).
 */
export const OPTIONAL_COMMANDS = ["config|get", "ping"] as const;

/**
 * Sent, but needing no ACL permission: Redis always lets a connection run
 * AUTH and HELLO (they carry the `no-auth` flag), HELLO's `AUTH` and
 * `SETNAME` included.
 */
export const ALWAYS_ALLOWED = ["auth", "hello"] as const;

/**
 * Sent only with `cached`'s `memory` option, on the tracking connection's
 * handshake: `CLIENT TRACKING ON BCAST PREFIX <prefix>cache:{` (and its
 * PINGs, optional as above: NOPERM proves the connection alive as well).
 */
export const MEMORY_TIER_COMMANDS = ["client|tracking"] as const;

/**
 * Sent only by the cluster client (`connectCluster`): reading the slot map,
 * following an ASK redirection, and sharded pub/sub on Redis 7+ (waiters
 * SSUBSCRIBE, the scripts' wake-ups SPUBLISH in place of PUBLISH).
 */
export const CLUSTER_COMMANDS = [
  "cluster|shards",
  "cluster|slots",
  "asking",
  "ssubscribe",
  "sunsubscribe",
  "spublish",
] as const;

type Command = typeof RESPITE_COMMANDS[number];

/** Which features fail without a command (each must). */
export const NEEDED_BY: Record<Command, FeatureName[]> = {
  evalsha: ["Lock.acquire", "withLock", "cached: miss, then hit"],
  eval: ["Lock.acquire on a fresh script cache (EVALSHA falls back to EVAL)"],
  set: ["Lock.acquire", "cached: invalidate", "cached: namespace"],
  get: ["Lock.release", "Lock.owner", "cached: miss, then hit"],
  del: ["Lock.release", "Lock.reset", "cached: invalidate"],
  incr: ["Lock.acquire", "withLock"],
  pttl: [
    "Lock.acquire, held elsewhere (wait: 0)",
    "cached: a second client waits for the first's computation",
  ],
  pexpire: ["Lock.extend"],
  publish: ["Lock.release", "Lock.reset", "cached: miss, then hit"],
  exists: ["Lock.locked"],
  mget: ["cached: namespace"],
  time: ["Lock.acquire", "cached: tags"],
  scan: ["Lock.resetAll"],
  zadd: ["Semaphore, waiting until released", "cached: tags"],
  zrem: ["Semaphore, waiting until released"],
  zcard: ["Semaphore, waiting until released"],
  zscore: ["Semaphore.extend", "cached: tags"],
  zrange: ["Semaphore, waiting until released"],
  zremrangebyscore: ["Semaphore, waiting until released", "cached: tags"],
  zpopmin: ["Semaphore, waiting until released"],
  zmscore: ["Semaphore, waiting until released"],
  zscan: ["cached: tags"],
  subscribe: [
    "redis.subscribe",
    "Lock.acquire, waiting until released",
    "cached: a second client waits for the first's computation",
  ],
  unsubscribe: ["redis.subscribe"],
  "client|setname": ["connect with a name"],
  select: ["connect with a db"],
};

/** The source of each file in lib/ and its folders, by path under lib/. */
const LIB = new Map<string, string>();
{
  const dir = fileURLToPath(new URL("../lib/", import.meta.url));
  const files = (await readdir(dir, { recursive: true })).filter((f) =>
    f.endsWith(".ts")
  );
  for (const file of files) LIB.set(file, await readFile(dir + file, "utf8"));
  // Every folder of lib/ is read: the scripts live in lib/lock/ and lib/cache/.
  assert.ok(files.some((f) => f.startsWith("lock/")), "lib/lock/ not read");
}

/** The Lua scripts in lib/ (`new Script(NAME, `...`)`), by SHA-1: their lines. */
const SCRIPTS = new Map<string, string[]>();
for (const text of LIB.values()) {
  for (const m of text.matchAll(/new Script\(\s*"[A-Z_]+",\s*`([^`]*)`/g)) {
    const digest = await crypto.subtle.digest(
      "SHA-1",
      new TextEncoder().encode(m[1]),
    );
    const sha = Array.from(
      new Uint8Array(digest),
      (b) => b.toString(16).padStart(2, "0"),
    ).join("");
    SCRIPTS.set(sha, m[1].split("\n"));
  }
}

/** Rows that do not apply to RESP3 (HELLO sets the name; no CLIENT SETNAME). */
const RESP2_ONLY = new Set<Command>(["client|setname"]);

// Our own server: the tests change ACL users and flush the script cache. Its
// policy makes the eviction check warn (maxmemory is 0: nothing is evicted).
const server = await startRedis({
  args: ["--maxmemory-policy", "allkeys-lru"],
});
/** An unrestricted client (one per test: Deno's sanitizers watch its reads). */
const openAdmin = () => connect(server.url);
let seq = 0;
const uniq = (s: string) => `acl${Date.now()}-${seq++}-${s}`;

interface Ctx {
  /** A new client as the restricted user. */
  open(extra?: ConnectOptions): Promise<RedisClient>;
  /** An unrestricted client, for setup and checks. */
  admin: RedisClient;
  /** Whether the user may run CONFIG GET (so the eviction check warns). */
  config: boolean;
  /** What the clients opened with `open()` warned (unless given a logger). */
  warnings: string[];
}

/** A cached() that rejects on Redis errors and rethrows reported ones. */
function strictHooks() {
  const errors: CachedErrorEvent[] = [];
  return {
    errors,
    hooks: { error: (e: CachedErrorEvent) => void errors.push(e) },
    check() {
      if (errors.length > 0) throw errors[0].error;
    },
  };
}

/** Waits until `channel` has `n` subscribers, or `stop()` says to give up. */
async function subscribers(
  a: RedisClient,
  channel: string,
  n: number,
  stop: () => boolean,
): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!stop() && Date.now() < deadline) {
    const [, count] = await a.send<[string, number]>(
      "PUBSUB",
      "NUMSUB",
      channel,
    );
    if (count === n) return;
    await sleep(5);
  }
}

/** Marks a promise handled (it is awaited later) and tells when it settled. */
function track<T>(p: Promise<T>): { p: Promise<T>; done: () => boolean } {
  let settled = false;
  p.then(() => settled = true, () => settled = true);
  return { p, done: () => settled };
}

const FEATURES = {
  async "Semaphore, waiting until released"(c: Ctx) {
    await using r = await c.open();
    const name = uniq("sem");
    const a = new Semaphore(r, name, { limit: 1, ttl: 5_000 });
    const b = new Semaphore(r, name, { limit: 1, ttl: 5_000 });
    assert.equal(await a.acquire({ wait: 0 }), true);
    const ac = new AbortController();
    const waiting = b.acquire({ wait: 5_000, signal: ac.signal });
    waiting.catch(() => {}); // awaited below, unless the release fails first
    try {
      // b is in line before a releases, so the release hands the permit
      // over (ZPOPMIN, ZMSCORE): a fixed sleep let a loaded machine release
      // first, and b then took a free permit without those commands.
      const queue = `respite:sem:{${name}}:queue`;
      let settled = false;
      waiting.then(() => settled = true, () => settled = true);
      const deadline = Date.now() + 5_000;
      while (!settled && await c.admin.send("ZCARD", queue) === 0) {
        if (Date.now() > deadline) throw new Error("b never got in line");
        await sleep(2);
      }
      if (settled) await waiting; // b failed (an ACL refusal): its error
      await a.release();
    } catch (err) {
      ac.abort(err);
      throw err;
    }
    assert.equal(await waiting, true);
    await b.release();
  },
  async "Semaphore.extend"(c: Ctx) {
    await using r = await c.open();
    const s = new Semaphore(r, uniq("sem"), { limit: 1, ttl: 5_000 });
    assert.equal(await s.acquire({ wait: 0 }), true);
    await s.extend(10_000);
    await s.release();
  },
  async "connect"(c: Ctx) {
    await using r = await c.open();
    assert.equal(r.status, "ready");
  },
  async "connect with a name"(c: Ctx) {
    const name = uniq("name");
    await using r = await c.open({ name });
    assert.equal(r.status, "ready");
    const list = await c.admin.send<string>("CLIENT", "LIST");
    assert.match(list, new RegExp(` name=${name} `));
  },
  async "connect with a db"(c: Ctx) {
    await using r = await c.open({ db: 1 });
    const lock = new Lock(r, uniq("db"), { ttl: 5_000 });
    assert.equal(await lock.acquire({ wait: 0 }), true);
    assert.equal(await c.admin.send("EXISTS", lock.keys.key), 0, "not in db 0");
    await lock.release();
  },
  async "redis.subscribe"(c: Ctx) {
    await using r = await c.open();
    const channel = `respite:${uniq("news")}`;
    const got = Promise.withResolvers<string>();
    const unsubscribe = await r.subscribe(channel, (m) => got.resolve(m));
    assert.equal(await c.admin.send("PUBLISH", channel, "hello"), 1);
    assert.equal(await got.promise, "hello");
    await unsubscribe();
    const [, n] = await c.admin.send<[string, number]>(
      "PUBSUB",
      "NUMSUB",
      channel,
    );
    assert.equal(n, 0, "unsubscribed on the server");
  },
  async "Lock.acquire on a fresh script cache (EVALSHA falls back to EVAL)"(
    c: Ctx,
  ) {
    await c.admin.send("SCRIPT", "FLUSH");
    await using r = await c.open();
    const lock = new Lock(r, uniq("fresh"), { ttl: 5_000 });
    assert.equal(await lock.acquire({ wait: 0 }), true);
    assert.equal(typeof lock.fence, "number");
    await c.admin.send("DEL", lock.keys.key, lock.keys.fence);
    // The fallback warned (see runAll); the other scripts are back for the
    // features after this one.
    await preloadScripts(c.admin);
  },
  async "Lock.acquire"(c: Ctx) {
    await using r = await c.open();
    const lock = new Lock(r, uniq("acquire"), { ttl: 5_000 });
    // A token is max(counter + 1, the server's clock in µs): the first of a
    // name comes from the clock (TIME), one after a counter ahead of the
    // clock from the counter (INCR).
    assert.equal(await lock.acquire({ wait: 0 }), true);
    const first = lock.fence!;
    assert.ok(first > 1e15, `a clock-seeded token, got ${first}`);
    assert.ok(await c.admin.send<number>("PTTL", lock.keys.key) > 0);
    await lock.release();
    await c.admin.send("SET", lock.keys.fence, String(2 ** 52));
    assert.equal(await lock.acquire({ wait: 0 }), true);
    assert.equal(lock.fence, 2 ** 52 + 1);
    await c.admin.send("DEL", lock.keys.key, lock.keys.fence);
  },
  async "Lock.acquire without fencing"(c: Ctx) {
    await using r = await c.open();
    const lock = new Lock(r, uniq("nofence"), { ttl: 5_000, fencing: false });
    assert.equal(await lock.acquire({ wait: 0 }), true);
    assert.equal(lock.fence, null);
    await c.admin.send("DEL", lock.keys.key);
  },
  async "Lock.acquire, held elsewhere (wait: 0)"(c: Ctx) {
    await using r = await c.open();
    const lock = new Lock(r, uniq("held"), { ttl: 5_000 });
    await c.admin.send("SET", lock.keys.key, "someone", "PX", 5_000);
    assert.equal(await lock.acquire({ wait: 0 }), false);
    await c.admin.send("DEL", lock.keys.key);
  },
  async "Lock.acquire, waiting until released"(c: Ctx) {
    await using r = await c.open();
    const lock = new Lock(r, uniq("wait"), { ttl: 5_000 });
    await c.admin.send("SET", lock.keys.key, "someone", "PX", 30_000);
    const t0 = performance.now();
    const got = track(lock.acquire({ wait: 10_000 }));
    await subscribers(c.admin, lock.keys.wake, 1, got.done);
    // What a holder's release does (UNLOCK_SCRIPT): delete, then wake.
    await c.admin.send("DEL", lock.keys.key);
    await c.admin.send("PUBLISH", lock.keys.wake, "released");
    assert.equal(await got.p, true);
    assert.ok(performance.now() - t0 < 5_000, "woken, not timed out");
    await c.admin.send("DEL", lock.keys.key, lock.keys.fence);
  },
  async "Lock.release"(c: Ctx) {
    await using r = await c.open();
    const lock = new Lock(r, uniq("release"), { ttl: 5_000 });
    assert.equal(await lock.acquire({ wait: 0 }), true);
    await lock.release();
    assert.equal(await c.admin.send("EXISTS", lock.keys.key), 0);
    await c.admin.send("DEL", lock.keys.fence);
  },
  async "Lock.release wakes a waiter on another client"(c: Ctx) {
    await using a = await c.open();
    await using b = await c.open();
    const name = uniq("handoff");
    const first = new Lock(a, name, { ttl: 30_000 });
    const second = new Lock(b, name, { ttl: 5_000 });
    // A counter ahead of the clock: the next token is exactly counter + 1.
    await c.admin.send("SET", first.keys.fence, String(2 ** 52));
    assert.equal(await first.acquire({ wait: 0 }), true);
    const firstFence = first.fence!;
    const t0 = performance.now();
    const got = track(second.acquire({ wait: 10_000 }));
    await subscribers(c.admin, first.keys.wake, 1, got.done);
    await first.release();
    assert.equal(await got.p, true);
    assert.ok(performance.now() - t0 < 5_000, "woken, not timed out");
    assert.equal(second.fence, firstFence + 1);
    await second.release();
    await c.admin.send("DEL", first.keys.fence);
  },
  async "Lock.extend"(c: Ctx) {
    await using r = await c.open();
    const lock = new Lock(r, uniq("extend"), { ttl: 2_000 });
    assert.equal(await lock.acquire({ wait: 0 }), true);
    await lock.extend(60_000);
    assert.ok(await c.admin.send<number>("PTTL", lock.keys.key) > 30_000);
    await c.admin.send("DEL", lock.keys.key, lock.keys.fence);
  },
  async "Lock autoRenew"(c: Ctx) {
    await using r = await c.open();
    const lock = new Lock(r, uniq("renew"), { ttl: 300, autoRenew: true });
    assert.equal(await lock.acquire({ wait: 0 }), true);
    await sleep(700);
    assert.equal(lock.held, true, String(lock.signal.reason?.cause));
    assert.ok(await c.admin.send<number>("PTTL", lock.keys.key) > 0);
    await lock.release();
    await c.admin.send("DEL", lock.keys.fence);
  },
  async "Lock.owner"(c: Ctx) {
    await using r = await c.open();
    const lock = new Lock(r, uniq("owner"), { ttl: 5_000, id: "worker-7" });
    assert.equal(await lock.owner(), null);
    assert.equal(await lock.acquire({ wait: 0 }), true);
    assert.equal(await lock.owner(), "worker-7");
    await c.admin.send("DEL", lock.keys.key, lock.keys.fence);
  },
  async "Lock.locked"(c: Ctx) {
    await using r = await c.open();
    const lock = new Lock(r, uniq("locked"));
    assert.equal(await lock.locked(), false);
    await c.admin.send("SET", lock.keys.key, "someone", "PX", 5_000);
    assert.equal(await lock.locked(), true);
    await c.admin.send("DEL", lock.keys.key);
  },
  async "Lock.reset"(c: Ctx) {
    await using r = await c.open();
    const name = uniq("reset");
    const lock = new Lock(r, name);
    await c.admin.send("SET", lock.keys.key, "someone", "PX", 5_000);
    assert.equal(await Lock.reset(r, name), true);
    assert.equal(await c.admin.send("EXISTS", lock.keys.key), 0);
  },
  async "Lock.resetAll"(c: Ctx) {
    await using r = await c.open();
    const prefix = `respite:${uniq("all")}:`;
    const locks = ["a", "b", "c"].map((n) => new Lock(r, n, { prefix }));
    for (const l of locks) {
      await c.admin.send("SET", l.keys.key, "someone", "PX", 5_000);
    }
    await c.admin.send("SET", `${prefix}lock:{a}:fence`, 9);
    assert.equal(await Lock.resetAll(r, { prefix }), 3);
    for (const l of locks) {
      assert.equal(await c.admin.send("EXISTS", l.keys.key), 0);
    }
    assert.equal(await c.admin.send("GET", `${prefix}lock:{a}:fence`), "9");
    await c.admin.send("DEL", `${prefix}lock:{a}:fence`);
  },
  async "withLock"(c: Ctx) {
    await using r = await c.open();
    const name = uniq("with");
    const f = withLock(function (x: number) {
      return [x * 2, this.fence];
    }, { redis: r, name, ttl: 5_000 });
    // A counter ahead of the clock: the next token is exactly counter + 1.
    await c.admin.send("SET", `respite:lock:{${name}}:fence`, String(2 ** 52));
    const [doubled, fence] = await f(21) as [number, number];
    assert.equal(fence, 2 ** 52 + 1);
    assert.equal(doubled, 42);
    assert.deepEqual(await f(1), [2, fence + 1]);
    await c.admin.send("DEL", `respite:lock:{${name}}:fence`);
  },
  async "cached: miss, then hit"(c: Ctx) {
    await using r = await c.open();
    const s = strictHooks();
    let runs = 0;
    const f = cached(() => ++runs, {
      redis: r,
      key: uniq("hit"),
      ttl: 60_000,
      failOpen: false,
      hooks: s.hooks,
    });
    assert.equal(await f(), 1);
    assert.equal(await f(), 1);
    s.check();
    assert.equal(runs, 1);
    assert.equal(await c.admin.send("EXISTS", f.redisKey()), 1);
    await c.admin.send("DEL", f.redisKey());
  },
  async "cached: a second client waits for the first's computation"(c: Ctx) {
    await using a = await c.open();
    await using b = await c.open();
    const key = uniq("waits");
    const s = strictHooks();
    const outcomes: string[] = [];
    let runs = 0;
    const make = (redis: RedisClient) =>
      cached(async () => {
        runs++;
        await sleep(300);
        return "value";
      }, {
        redis,
        key,
        ttl: 60_000,
        failOpen: false,
        hooks: { ...s.hooks, wait: (e) => void outcomes.push(e.outcome) },
      });
    const fa = make(a), fb = make(b);
    const first = track(fa());
    try {
      await sleep(50); // a holds the entry's lock and computes
      assert.deepEqual(await Promise.all([first.p, fb()]), ["value", "value"]);
    } finally {
      await first.p.catch(() => {}); // b failed: let a finish before closing
    }
    s.check();
    assert.equal(runs, 1, "computed once, across both clients");
    assert.deepEqual(outcomes, ["value"], "b waited and got a's value");
    await c.admin.send("DEL", fa.redisKey());
  },
  async "cached: invalidate"(c: Ctx) {
    await using r = await c.open();
    const s = strictHooks();
    let runs = 0;
    const f = cached(() => ++runs, {
      redis: r,
      key: uniq("inv"),
      ttl: 60_000,
      failOpen: false,
      hooks: s.hooks,
    });
    await c.admin.send("SET", f.redisKey(), "junk");
    await f.invalidate();
    assert.equal(await c.admin.send("EXISTS", f.redisKey()), 0);
    assert.equal(await f(), 1);
    await f.invalidate();
    assert.equal(await f(), 2);
    s.check();
    await c.admin.send("DEL", f.redisKey());
  },
  async "cached: tags"(c: Ctx) {
    await using r = await c.open();
    const s = strictHooks();
    let runs = 0;
    const tag = uniq("tag");
    const f = cached(() => ++runs, {
      redis: r,
      key: uniq("tagged"),
      ttl: 60_000,
      failOpen: false,
      hooks: s.hooks,
      tags: () => [tag],
    });
    assert.equal(await f(), 1);
    assert.equal(await f.invalidateTag(tag), 1);
    assert.equal(await c.admin.send("EXISTS", f.redisKey()), 0);
    assert.equal(await f(), 2);
    s.check();
    await f.invalidateTag(tag);
  },
  async "cached: namespace"(c: Ctx) {
    await using r = await c.open();
    const s = strictHooks();
    let runs = 0;
    const f = cached(() => ++runs, {
      redis: r,
      key: uniq("ns"),
      ttl: 60_000,
      failOpen: false,
      hooks: s.hooks,
      namespace: uniq("namespace"),
    });
    assert.equal(await f(), 1);
    assert.equal(await f(), 1); // a hit: the entry and the token, one MGET
    await f.invalidateAll();
    assert.equal(await f(), 2);
    s.check();
    await c.admin.send("DEL", f.redisKey());
  },
  async "cached: refresh"(c: Ctx) {
    await using r = await c.open();
    const s = strictHooks();
    let runs = 0;
    const f = cached(() => ++runs, {
      redis: r,
      key: uniq("refresh"),
      ttl: 60_000,
      failOpen: false,
      hooks: s.hooks,
    });
    assert.equal(await f(), 1);
    await sleep(5); // a refresh returns a value computed after it was called
    assert.equal(await f.refresh(), 2);
    assert.equal(await f(), 2);
    s.check();
    await c.admin.send("DEL", f.redisKey());
  },
  async "cached: peek"(c: Ctx) {
    await using r = await c.open();
    const s = strictHooks();
    const f = cached(() => "v", {
      redis: r,
      key: uniq("peek"),
      ttl: 60_000,
      failOpen: false,
      hooks: s.hooks,
    });
    assert.equal(await f.peek(), null);
    await f();
    const e = await f.peek();
    assert.equal(e?.kind, "value");
    assert.equal(e?.fresh, true);
    s.check();
    await c.admin.send("DEL", f.redisKey());
  },
  async "cached: stale-while-revalidate"(c: Ctx) {
    await using r = await c.open();
    const s = strictHooks();
    let runs = 0;
    const f = cached(() => ++runs, {
      redis: r,
      key: uniq("swr"),
      ttl: 100,
      staleWhileRevalidate: 60_000,
      beta: 0,
      failOpen: false,
      hooks: s.hooks,
    });
    assert.equal(await f(), 1);
    await sleep(150);
    assert.equal(await f(), 1, "served stale");
    await f.idle();
    assert.equal(runs, 2, "refreshed in the background");
    assert.equal((await f.peek())?.fresh, true);
    s.check();
    await c.admin.send("DEL", f.redisKey());
  },
  async "cached: negative caching"(c: Ctx) {
    await using r = await c.open();
    const s = strictHooks();
    let runs = 0;
    const f = cached((): number => {
      runs++;
      throw new Error("not found");
    }, {
      redis: r,
      key: uniq("neg"),
      ttl: 60_000,
      negativeTtl: 60_000,
      failOpen: false,
      hooks: s.hooks,
    });
    await assert.rejects(f(), /not found/);
    await assert.rejects(f(), CachedFailureError);
    assert.equal(runs, 1);
    s.check();
    await c.admin.send("DEL", f.redisKey());
  },
  async "cached: a long computation after invalidate() is still written"(
    c: Ctx,
  ) {
    await using r = await c.open();
    const s = strictHooks();
    // Marker lifetime max(1 s, 2 × lockTtl) = 1 s: the write needs the marker
    // proven alive within the last 0.5 s, so PEXPIRE must have run.
    const f = cached(async () => {
      await sleep(700);
      return "slow";
    }, {
      redis: r,
      key: uniq("slow"),
      ttl: 60_000,
      lockTtl: 200,
      failOpen: false,
      hooks: s.hooks,
    });
    await f.invalidate();
    assert.equal(await f(), "slow");
    assert.equal((await f.peek())?.kind, "value");
    s.check();
    await c.admin.send("DEL", f.redisKey());
  },
  async "eviction check"(c: Ctx) {
    const lines: string[] = [];
    await using r = await c.open({ logger: { warn: (m) => lines.push(m) } });
    const lock = new Lock(r, uniq("evict"), { ttl: 5_000 });
    assert.equal(await lock.acquire({ wait: 0 }), true);
    await lock.release();
    const f = cached(() => 1, { redis: r, key: uniq("evict"), ttl: 1_000 });
    await f();
    const warned = lines.filter((l) => l.includes("maxmemory-policy"));
    assert.equal(warned.length, c.config ? 1 : 0, JSON.stringify(lines));
    assert.deepEqual(lines, warned, "no other warning");
    await c.admin.send("DEL", lock.keys.fence, f.redisKey());
  },
};

type FeatureName = keyof typeof FEATURES;

/** Redis's answer to a command the user may not run (directly, or from Lua). */
function aclDenied(command: string) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof ReplyError, `not a ReplyError: ${err}`);
    if (err.code === "NOPERM") {
      assert.ok(
        err.message.includes(`'${command}'`),
        `NOPERM for another command: ${err.message}`,
      );
      return true;
    }
    // Redis 7.0 reports a refused redis.call() from a script as ERR, naming
    // the script and the line, not the command: that line must call it.
    const m =
      /user executing the script can't run this command or subcommand script: ([0-9a-f]{40}), on @user_script:(\d+)/
        .exec(err.message);
    assert.ok(m, `not an ACL refusal: ${err.message}`);
    const lines = SCRIPTS.get(m[1]);
    assert.ok(lines, `a script not in lib/: ${err.message}`);
    const line = lines[Number(m[2]) - 1];
    assert.ok(
      line.includes(`redis.call('${command.toUpperCase()}'`),
      `refused at line ${m[2]}, which does not call ${command}: ${line}`,
    );
    return true;
  };
}

async function setUser(
  a: RedisClient,
  user: string,
  commands: readonly string[],
  narrow: boolean,
): Promise<void> {
  await a.send(
    "ACL",
    "SETUSER",
    user,
    "reset",
    "on",
    ">pw",
    ...(narrow ? ["~respite:*", "&respite:*"] : ["~*", "&*"]),
    "-@all",
    ...commands.map((c) => `+${c}`),
  );
}

async function runAll(c: Ctx): Promise<void> {
  // A server that has the scripts: the only script warning is the one the
  // SCRIPT FLUSH feature causes.
  await preloadScripts(c.admin);
  for (const [name, feature] of Object.entries(FEATURES)) {
    try {
      await feature(c);
    } catch (err) {
      throw new Error(`feature "${name}" failed: ${err}`, { cause: err });
    }
  }
  // The eviction warning (the server's policy is allkeys-lru), once per
  // client, the fresh script cache's one warning, and nothing else: no
  // failed resubscription, no other script warning.
  const other = c.warnings.filter((w) => !w.includes("maxmemory-policy"));
  assert.deepEqual(other, ["ACQUIRE_SCRIPT not cached."]);
  if (!c.config) assert.deepEqual(c.warnings, other);
}

function ctxFor(
  url: string,
  auth: { username?: string; password: string },
  protocol: 2 | 3,
  a: RedisClient,
  config: boolean,
): Ctx {
  const warnings: string[] = [];
  return {
    open: (extra = {}) =>
      connect({
        url,
        ...auth,
        protocol,
        logger: { warn: (m) => void warnings.push(m) },
        ...extra,
      }),
    admin: a,
    config,
    warnings,
  };
}

for (
  const { label, narrow, config } of [
    { label: "keys ~*, channels &*", narrow: false, config: true },
    {
      label: "keys ~respite:*, channels &respite:*",
      narrow: true,
      config: true,
    },
    {
      label: "~respite:* &respite:*, no CONFIG (no eviction warning)",
      narrow: true,
      config: false,
    },
  ]
) {
  for (const protocol of [2, 3] as const) {
    test(`a user allowed only the listed commands runs every feature (RESP${protocol}; ${label})`, async () => {
      await using admin = await openAdmin();
      const user = uniq("user");
      await setUser(
        admin,
        user,
        config ? [...RESPITE_COMMANDS, ...OPTIONAL_COMMANDS] : RESPITE_COMMANDS,
        narrow,
      );
      await runAll(
        ctxFor(
          server.url,
          { username: user, password: "pw" },
          protocol,
          admin,
          config,
        ),
      );
      await admin.send("ACL", "DELUSER", user);
    });
  }
}

test("the restriction is real: other commands, and keys or channels outside respite:*, are refused", async () => {
  await using admin = await openAdmin();
  const user = uniq("user");
  await setUser(admin, user, RESPITE_COMMANDS, true);
  {
    await using r = await connect({
      url: server.url,
      username: user,
      password: "pw",
      logger: { warn() {} },
    });
    await assert.rejects(r.send("FLUSHALL"), aclDenied("flushall"));
    await assert.rejects(r.send("PING"), aclDenied("ping"));
    await assert.rejects(
      r.send("CONFIG", "GET", "port"),
      aclDenied("config|get"),
    );
    await assert.rejects(r.send("GET", "other:key"), /NOPERM.*key/);
    assert.equal(await r.send("GET", `respite:${uniq("k")}`), null);
    const outside = new Lock(r, uniq("outside"), { prefix: "app:" });
    await assert.rejects(outside.acquire({ wait: 0 }), /NOPERM|can't access/);
    await assert.rejects(r.subscribe("app:news", () => {}), /NOPERM/);
    assert.equal(r.subscriptions, 0);
  }
  await admin.send("ACL", "DELUSER", user);
});

test("AUTH and HELLO need no permission; RESP3 sets the name without client|setname", async () => {
  await using admin = await openAdmin();
  const user = uniq("user");
  await setUser(
    admin,
    user,
    RESPITE_COMMANDS.filter((c) => c !== "client|setname"),
    true,
  );
  const rules = await admin.send<string[]>("ACL", "GETUSER", user);
  const commands = String(rules[rules.indexOf("commands") + 1]);
  for (const c of [...ALWAYS_ALLOWED, "client|setname", "client"]) {
    assert.doesNotMatch(commands, new RegExp(`\\+${c.replace("|", "\\|")}\\b`));
  }
  await FEATURES["connect with a name"](
    ctxFor(server.url, { username: user, password: "pw" }, 3, admin, false),
  );
  await admin.send("ACL", "DELUSER", user);
});

test("the default user with a password only (no username), restricted the same way, runs every feature", async () => {
  // A server of its own: its default user is restricted.
  const own: RedisServer = await startRedis({
    args: ["--maxmemory-policy", "allkeys-lru"],
  });
  try {
    {
      await using first = await connect(own.url);
      await first.send(
        "ACL",
        "SETUSER",
        "admin",
        "reset",
        "on",
        ">adminpw",
        "~*",
        "&*",
        "+@all",
      );
    }
    await using ownAdmin = await connect({
      url: own.url,
      username: "admin",
      password: "adminpw",
    });
    await setUser(
      ownAdmin,
      "default",
      [...RESPITE_COMMANDS, ...OPTIONAL_COMMANDS],
      true,
    );
    for (const protocol of [2, 3] as const) {
      await runAll(
        ctxFor(own.url, { password: "pw" }, protocol, ownAdmin, true),
      );
    }
  } finally {
    await own.stop();
  }
});

test("NEEDED_BY covers every listed command, with features that exist", () => {
  assert.deepEqual(
    Object.keys(NEEDED_BY).sort(),
    [...RESPITE_COMMANDS].sort(),
  );
  for (const features of Object.values(NEEDED_BY)) {
    assert.ok(features.length > 0);
    for (const f of features) assert.ok(f in FEATURES, f);
  }
});

for (const protocol of [2, 3] as const) {
  test(
    `dropping any one command makes the features that need it fail with Redis's ACL error (RESP${protocol})`,
    async () => {
      await using admin = await openAdmin();
      for (const command of RESPITE_COMMANDS) {
        const user = uniq("without");
        await setUser(
          admin,
          user,
          [...RESPITE_COMMANDS, ...OPTIONAL_COMMANDS].filter((c) =>
            c !== command
          ),
          true,
        );
        const c = ctxFor(
          server.url,
          { username: user, password: "pw" },
          protocol,
          admin,
          true,
        );
        for (const feature of NEEDED_BY[command]) {
          if (protocol === 3 && RESP2_ONLY.has(command)) {
            await FEATURES[feature](c); // HELLO does it
            continue;
          }
          await assert.rejects(
            FEATURES[feature](c),
            aclDenied(command),
            `without ${command}: ${feature}`,
          );
        }
        await admin.send("ACL", "DELUSER", user);
      }
    },
    { timeout: 120_000 },
  );
}

/** Strings in lib/ that look like commands but are arguments or names. */
const NOT_COMMANDS = new Set([
  "PX",
  "NX",
  "WITHSCORES", // ZRANGE's option (the semaphore's scripts)
  "MATCH",
  "COUNT",
  "TYPE",
  "SETNAME", // CLIENT SETNAME's subcommand, and HELLO's option
  "NOSCRIPT", // an error code
  "ERR_REDIS_SERVER_ERROR", // Bun's RedisClient's error codes (lib/adapters/bun.ts)
  "ERR_REDIS_CONNECTION_CLOSED",
  "JSON",
  "REDIS_URL",
  // Error codes the client reads, and arguments it looks at.
  "WRONGPASS",
  "LOADING",
  "BUSY",
  "TRYAGAIN",
  "MOVED", // cluster redirections (lib/cluster/client.ts)
  "ASK",
  "CLUSTERDOWN",
  "SHARDS", // CLUSTER's subcommands
  "SLOTS",
  "ERR",
  "REPLY",
  "STREAMS",
  "BLOCK",
  // Blocking commands, refused on a shared client, never sent by respite.
  ...BLOCKING_COMMANDS,
  "READONLY", // an error code (a demoted master; connectSentinel re-resolves)
  // Sent only by connectSentinel, not by connect(): ROLE to the master (its
  // user needs it, as README's "### Sentinel" says), SENTINEL to sentinels.
  "ROLE",
  "SENTINEL",
  // Sent only for the caller's own redis.multi([...]): the caller's ACL.
  "MULTI",
  "EXEC",
  // Signal names (the command line forwards them; lib/cli/).
  "SIGINT",
  "SIGTERM",
  "SIGHUP",
  "SIGKILL",
  // CLIENT TRACKING's arguments (the memory tier's handshake).
  "TRACKING",
  "ON",
  "BCAST",
  "PREFIX",
]);

test("every command name in lib/ is listed (keep RESPITE_COMMANDS and the README current)", () => {
  // The lock's four scripts and cached()'s two, at least, were found.
  assert.ok(SCRIPTS.size >= 6, `${SCRIPTS.size} scripts found in lib/`);
  const known = new Set<string>([
    ...[
      ...RESPITE_COMMANDS,
      ...OPTIONAL_COMMANDS,
      ...ALWAYS_ALLOWED,
      ...CLUSTER_COMMANDS,
      ...MEMORY_TIER_COMMANDS,
    ].map((
      c,
    ) => c.split("|")[0].toUpperCase()),
  ]);
  const unknown: string[] = [];
  for (const [file, text] of LIB) {
    for (const line of text.split("\n")) {
      const t = line.trim();
      if (t.startsWith("*") || t.startsWith("//") || t.startsWith("/*")) {
        continue; // docs and comments (their examples use other commands)
      }
      for (const m of t.matchAll(/["']([A-Z][A-Z_]+)["']/g)) {
        const word = m[1];
        if (word.endsWith("_SCRIPT") || NOT_COMMANDS.has(word)) continue;
        if (!known.has(word)) unknown.push(`${file}: ${word}`);
      }
    }
  }
  assert.deepEqual(
    unknown,
    [],
    "a command respite now sends: add it to RESPITE_COMMANDS, NEEDED_BY and the README's ACL list",
  );
});

teardown(async () => {
  await server.stop();
});
