/**
 * `invalidate()` against computations that started before it: however long
 * they run and whoever wrote since, their (older) results are never stored.
 * Clients on separate connections stand in for separate processes.
 */
import assert from "node:assert/strict";
import { cached, connect, type RedisClient } from "../mod.ts";
import { sharedRedis } from "../testing/redis.ts";
import { sleep, teardown, test } from "./_harness.ts";

const server = await sharedRedis();
const url = server.url;
let n = 0;
const key = (s: string) => `test:cachedinv:${Date.now()}:${n++}:${s}`;

/** Resolves when `cond()` holds (the test waits for its own setup). */
async function until(cond: () => boolean | Promise<boolean>, what: string) {
  const deadline = Date.now() + 5_000;
  while (!await cond()) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await sleep(5);
  }
}

test("an older computation never overwrites the newer value written after invalidate()", async () => {
  await using a = await connect(url);
  await using b = await connect(url);
  await using c = await connect(url);
  const k = key("older");
  let db = "v1";
  const started = new Set<string>();
  const gates = {
    A: Promise.withResolvers<void>(),
    B: Promise.withResolvers<void>(),
  };
  const make = (redis: RedisClient, name: "A" | "B" | "C", wait?: number) =>
    cached(async () => {
      const seen = db; // the computation reads the data first...
      started.add(name);
      if (name !== "C") await gates[name].promise; // ...and takes a while
      return seen;
    }, { redis, key: k, ttl: 60_000, beta: 0, wait, logger: null });
  const A = make(a, "A");
  const B = make(b, "B", 50);
  const C = make(c, "C");
  // A leads from v1; B waits 50 ms for it, gives up and computes (unlocked)
  // from v1 as well.
  const pa = A();
  await until(() => started.has("A"), "A to compute");
  const pb = B();
  await until(() => started.has("B"), "B to compute after its wait");
  // The data changes and is invalidated while both are computing.
  db = "v2";
  await C.invalidate();
  // A finishes: not written; it releases the lock.
  gates.A.resolve();
  assert.equal(await pa, "v1");
  assert.equal(await C.peek(), null);
  // C misses, leads and writes v2.
  assert.equal(await C(), "v2");
  assert.equal((await C.peek())?.kind, "value");
  // B finishes last: its v1 must not replace v2.
  gates.B.resolve();
  assert.equal(await pb, "v1");
  const after = await C.peek();
  assert.ok(
    after?.kind === "value" && after.value === "v2",
    `got ${after?.kind === "value" ? after.value : after}`,
  );
  assert.equal(await A(), "v2");
  assert.equal(await B(), "v2");
  await a.send("DEL", A.redisKey());
});

test("a computation that outlives the invalidation marker's lifetime still does not store its pre-invalidate value", async () => {
  await using a = await connect(url);
  await using other = await connect(url);
  const k = key("long");
  let db = "v1";
  let started = false;
  const gate = Promise.withResolvers<void>();
  // lockTtl 100: the marker invalidate() leaves lives max(1 s, 2 × lockTtl).
  const opts = { key: k, ttl: 60_000, beta: 0, lockTtl: 100, logger: null };
  const A = cached(async () => {
    const seen = db;
    started = true;
    await gate.promise;
    return seen;
  }, { redis: a, ...opts });
  const O = cached(() => db, { redis: other, ...opts });
  const pa = A();
  await until(() => started, "A to compute");
  db = "v2";
  await O.invalidate();
  // Whatever invalidate() left next to the entry goes away meanwhile (an
  // earlier version's tombstone expired after its lifetime; here: gone).
  await other.send("DEL", O.redisKey());
  // Computing for several times the marker's nominal lifetime.
  await sleep(2_500);
  gate.resolve();
  assert.equal(await pa, "v1");
  assert.equal(await O.peek(), null, "the pre-invalidate value was stored");
  assert.equal(await O(), "v2");
  // Nothing invalidate() wrote stays forever.
  const keys = await other.send("KEYS", `*{${k}}*`) as string[];
  for (const name of keys) {
    const pttl = await other.send("PTTL", name) as number;
    assert.ok(pttl > 0, `${name} never expires`);
  }
  await other.send("DEL", O.redisKey());
});

test("a refresh() made after invalidate() does not join one in flight from before: it computes anew", async () => {
  await using a = await connect(url);
  const k = key("refresh");
  let runs = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  const f = cached(async () => {
    const run = ++runs;
    if (run === 1) await gate; // the old computation, held
    return { run };
  }, { redis: a, key: k, ttl: 60_000, lockTtl: 5_000 });
  const old = f.refresh();
  await until(() => runs === 1, "the first computation to start");
  await f.invalidate();
  const late = f.refresh();
  await sleep(50);
  release();
  assert.deepEqual(await old, { run: 1 });
  assert.deepEqual(await late, { run: 2 }, "joined the refresh from before");
  assert.deepEqual(await f(), { run: 2 });
  assert.equal(runs, 2);
});

teardown(async () => {
  await server.stop();
});
