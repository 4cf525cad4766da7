/**
 * `invalidateAll()` and the `namespace` option: every entry of a namespace
 * invalidated by one SET of a new generation token, across clients (each
 * client stands in for a process), with computations in flight, with the
 * token lost from Redis, and with memory tiers on.
 */
import assert from "node:assert/strict";
import { cached, connect, type RedisClient } from "../mod.ts";
import { commandCalls, sharedRedis } from "../testing/redis.ts";
import { startFaultProxy } from "../testing/fault_proxy.ts";
import { sleep, teardown, test } from "./_harness.ts";

const server = await sharedRedis();
const url = server.url;
let n = 0;
const unique = (s: string) => `test:gen:${Date.now()}:${n++}:${s}`;

async function until(cond: () => boolean | Promise<boolean>, what: string) {
  const deadline = Date.now() + 5_000;
  while (!await cond()) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** Commands the server ran between two `commandCalls` snapshots, by name. */
function delta(
  before: Map<string, number>,
  after: Map<string, number>,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, calls] of after) {
    const d = calls - (before.get(name) ?? 0);
    if (d > 0) out[name] = d;
  }
  return out;
}

test("invalidateAll(): one SET makes every entry of the namespace a miss, in every client, whatever their number; another namespace and a function without one keep theirs", async () => {
  await using a = await connect(url);
  await using b = await connect(url);
  await using admin = await connect(url);
  const ns = unique("ns");
  const other = unique("other");
  const k = unique("k");
  let runs = 0;
  const make = (redis: RedisClient, namespace?: string, tag = "") =>
    cached((i: number) => ({ i, run: ++runs }), {
      redis,
      key: (i) => `${k}${tag}:${i}`,
      ttl: 60_000,
      ...(namespace === undefined ? {} : { namespace }),
    });
  const fa = make(a, ns);
  const fb = make(b, ns);
  const fOther = make(a, other, ":o");
  const fNone = make(a, undefined, ":n");
  for (let i = 0; i < 300; i++) {
    await fa(i);
    await fOther(i);
    await fNone(i);
  }
  assert.equal(runs, 900);
  for (let i = 0; i < 300; i++) await fb(i); // hits, from another client
  assert.equal(runs, 900);

  const before = await commandCalls(admin);
  await fb.invalidateAll();
  const after = await commandCalls(admin);
  // One SET, and nothing that walks or deletes entries (the INFO is ours).
  assert.deepEqual(delta(before, after), { set: 1, info: 1 });
  for (let i = 0; i < 300; i++) {
    assert.equal(await admin.send("EXISTS", fa.redisKey(i)), 1); // left to expire
  }

  for (let i = 0; i < 300; i++) assert.equal((await fa(i)).run > 900, true);
  assert.equal(runs, 1200);
  for (let i = 0; i < 300; i++) await fb(i); // the new entries: hits
  for (let i = 0; i < 300; i++) await fOther(i);
  for (let i = 0; i < 300; i++) await fNone(i);
  assert.equal(runs, 1200);
  assert.equal(await fa.peek(0).then((e) => e?.kind), "value");
  await fa.invalidateAll();
  assert.equal(await fa.peek(0), null, "peek sees the entry as gone");
  assert.equal(await fb.peek(0), null);
});

test("invalidateAll() while a computation runs: its result is not served to a call made after, nor to one that waits for it from after; that call computes anew", async () => {
  await using a = await connect(url);
  await using b = await connect(url);
  await using c = await connect(url);
  const namespace = unique("ns");
  const k = unique("k");
  let runs = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  const make = (redis: RedisClient) =>
    cached(async () => {
      const run = ++runs;
      if (run === 1) await gate; // the old computation, held
      return { run };
    }, { redis, key: k, ttl: 60_000, namespace, lockTtl: 5_000 });
  const fa = make(a);
  const fb = make(b);
  const fc = make(c);
  const old = fa();
  await until(() => runs === 1, "the first computation to start");
  await fb.invalidateAll();
  // c's call starts after invalidateAll: it waits on a's lock.
  const fresh = fc();
  await sleep(50);
  release();
  assert.deepEqual(await old, { run: 1 }); // a's own caller: before
  assert.deepEqual(await fresh, { run: 2 });
  assert.deepEqual(await fb(), { run: 2 });
  assert.deepEqual(await fa(), { run: 2 });
  assert.equal(runs, 2);
});

test("invalidateAll() while another process waits for a computation that read the old token: a call it serves from after (joining its flight) gets a value computed anew, not the old token's entry the wake-up carries", async () => {
  await using a = await connect(url);
  await using b = await connect(url);
  await using c = await connect(url);
  const namespace = unique("ns");
  const k = unique("k");
  let runs = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  const make = (redis: RedisClient) =>
    cached(async () => {
      const run = ++runs;
      if (run === 1) await gate; // the old computation, held
      return { run };
    }, { redis, key: k, ttl: 60_000, namespace, lockTtl: 5_000 });
  const fa = make(a);
  const fb = make(b);
  const fc = make(c);
  const old = fa();
  await until(() => runs === 1, "the first computation to start");
  // b waits on a's lock, having read the old token.
  const early = fb();
  await sleep(100);
  await fc.invalidateAll();
  // Made after invalidateAll returned: joins b's wait in b's process.
  const late = fb();
  release();
  assert.deepEqual(await old, { run: 1 }); // a's own caller: before
  assert.deepEqual(await late, { run: 2 }, "the old token's entry was served");
  assert.deepEqual(await early, { run: 2 });
  assert.equal(runs, 2);
});

test("a refresh() made after invalidateAll() does not join one in flight from before: it computes anew", async () => {
  await using a = await connect(url);
  const namespace = unique("ns");
  const k = unique("k");
  let runs = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  const f = cached(async () => {
    const run = ++runs;
    if (run === 1) await gate; // the old computation, held
    return { run };
  }, { redis: a, key: k, ttl: 60_000, namespace, lockTtl: 5_000 });
  const old = f.refresh();
  await until(() => runs === 1, "the first computation to start");
  await f.invalidateAll();
  const late = f.refresh();
  await sleep(50);
  release();
  assert.deepEqual(await old, { run: 1 });
  assert.deepEqual(await late, { run: 2 }, "joined the refresh from before");
  assert.deepEqual(await f(), { run: 2 });
  assert.equal(runs, 2);
});

test("the generation token lost from Redis (deleted, evicted): every entry misses, and none written under an older token comes back", async () => {
  await using a = await connect(url);
  await using admin = await connect(url);
  const namespace = unique("ns");
  const k = unique("k");
  let runs = 0;
  const f = cached((i: number) => ({ i, run: ++runs }), {
    redis: a,
    key: (i) => `${k}:${i}`,
    ttl: 60_000,
    namespace,
  });
  const genKey = `respite:cache:{${namespace}}:gen`;
  for (let i = 0; i < 5; i++) await f(i); // under token 1
  const first = await admin.send<string>("GET", genKey);
  assert.ok(typeof first === "string" && first.length > 0);
  await f.invalidateAll();
  for (let i = 0; i < 3; i++) await f(i); // 0..2 under token 2; 3, 4 still token 1
  assert.equal(runs, 8);
  await admin.send("DEL", genKey);
  for (let i = 0; i < 5; i++) {
    assert.equal((await f(i)).run > 8, true, `entry ${i} missed`);
  }
  assert.equal(runs, 13);
  const third = await admin.send<string>("GET", genKey);
  assert.ok(third !== null && third !== first, "a new token was made");
  for (let i = 0; i < 5; i++) await f(i);
  assert.equal(runs, 13);
});

test("set() and warm() with a namespace write under the current generation; after invalidateAll their entries are gone too", async () => {
  await using a = await connect(url);
  const namespace = unique("ns");
  const k = unique("k");
  let runs = 0;
  const f = cached((i: number) => ({ i, v: "computed", run: ++runs }), {
    redis: a,
    key: (i) => `${k}:${i}`,
    ttl: 60_000,
    namespace,
  });
  await f.set([1], { i: 1, v: "set", run: 0 });
  assert.deepEqual(await f(1), { i: 1, v: "set", run: 0 });
  const w = await f.warm([[1], [2], [3]]);
  assert.deepEqual({ fresh: w.fresh, filled: w.filled }, {
    fresh: 1,
    filled: 2,
  });
  assert.equal(runs, 2);
  await f.invalidateAll();
  const w2 = await f.warm([[1], [2], [3]]);
  assert.deepEqual({ fresh: w2.fresh, filled: w2.filled }, {
    fresh: 0,
    filled: 3,
  });
  assert.equal((await f(1)).v, "computed");
  assert.equal(runs, 5);
});

test("memory tiers with a namespace: hits cost no command; an invalidateAll from another client, or the token SET from outside, reaches every tier, and no tier serves an old entry once it has", async () => {
  await using a = await connect(url);
  await using b = await connect(url);
  await using admin = await connect(url);
  const namespace = unique("ns");
  const k = unique("k");
  let runs = 0;
  const make = (redis: RedisClient) =>
    cached((i: number) => ({ i, run: ++runs }), {
      redis,
      key: (i) => `${k}:${i}`,
      ttl: 60_000,
      namespace,
      memory: { maxEntries: 100 },
    });
  const fa = make(a);
  const fb = make(b);
  for (let i = 0; i < 10; i++) await fa(i);
  for (let i = 0; i < 10; i++) await fb(i);
  // Written here, so dropped from a's own tier: this read puts them back.
  for (let i = 0; i < 10; i++) await fa(i);
  assert.equal(runs, 10);
  const before = await commandCalls(admin);
  for (let round = 0; round < 50; round++) {
    for (let i = 0; i < 10; i++) await fa(i);
  }
  const after = await commandCalls(admin);
  assert.deepEqual(
    delta(before, after),
    { info: 1 },
    "memory hits sent nothing",
  );
  assert.ok(fa.memory!.hits >= 500);

  const seen = fa.memory!.invalidations;
  await fb.invalidateAll();
  // b's own tier drops the token at once; a's when the push arrives.
  assert.ok((await fb(0)).run > 10);
  await until(() => fa.memory!.invalidations > seen, "a's tier to hear of it");
  for (let i = 0; i < 10; i++) assert.ok((await fa(i)).run > 10);
  assert.equal(runs, 20);

  const seen2 = fb.memory!.invalidations;
  for (let i = 0; i < 10; i++) await fb(i); // into b's tier again
  await admin.send("SET", `respite:cache:{${namespace}}:gen`, "fromoutside");
  await until(() => fb.memory!.invalidations > seen2, "b's tier to hear of it");
  for (let i = 0; i < 10; i++) assert.ok((await fb(i)).run > 20);
  assert.equal(runs, 30);
  assert.equal(
    await admin.send("GET", `respite:cache:{${namespace}}:gen`),
    "fromoutside",
    "the entries were written under the token found",
  );
});

test("invalidateAll() through one client: once it resolved, this process serves no old entry from the memory tier of another of its clients (fn.with), even while Redis's invalidation has not reached that tier (its tracking connection stalled)", async () => {
  const proxy = await startFaultProxy({ port: server.port });
  try {
    await using a = await connect(url);
    await using b = await connect(proxy.url);
    const namespace = unique("ns");
    const k = unique("k");
    let runs = 0;
    const f = cached((i: number) => ({ i, run: ++runs }), {
      redis: a,
      key: (i) => `${k}:${i}`,
      ttl: 60_000,
      namespace,
      memory: { maxEntries: 100 },
    });
    const fb = f.with(b);
    await until(async () => {
      await fb(1);
      return (fb.memory?.entries ?? 0) > 0;
    }, "b's tier to remember the entry");
    const hits = fb.memory!.hits;
    const old = (await fb(1)).run;
    assert.equal(fb.memory!.hits, hits + 1, "served from b's tier");
    // Redis's invalidations to b's tier are held back.
    proxy.stall("down", { only: "TRACKING" });
    await f.invalidateAll();
    assert.notEqual((await fb(1)).run, old, "b's tier served the old entry");
    assert.notEqual((await f(1)).run, old);
  } finally {
    proxy.resume();
    await proxy.close();
  }
});

test("a token SET from outside that is not a plain word (a space, a newline, empty) still caches, and an entry written without a token is not current under the empty one", async () => {
  await using a = await connect(url);
  await using admin = await connect(url);
  for (const token of ["a b", "x\ny", "", "~7e", "%20"]) {
    const namespace = unique("ns");
    const k = unique("k");
    await admin.send("SET", `respite:cache:{${namespace}}:gen`, token);
    let runs = 0;
    const errors: unknown[] = [];
    const f = cached((i: number) => ({ i, run: ++runs }), {
      redis: a,
      key: (i) => `${k}:${i}`,
      ttl: 60_000,
      namespace,
      hooks: { error: (e) => void errors.push(e) },
    });
    for (let j = 0; j < 3; j++) assert.deepEqual(await f(1), { i: 1, run: 1 });
    assert.deepEqual(errors, [], `token ${JSON.stringify(token)}`);
    // The same key, cached without a namespace: its entry has no token.
    const plain = cached((i: number) => ({ i, run: -1 }), {
      redis: a,
      key: (i) => `${k}:${i}`,
      ttl: 60_000,
    });
    assert.deepEqual(await plain(2), { i: 2, run: -1 });
    assert.deepEqual(await f(2), { i: 2, run: 2 }, "the token-less entry");
  }
});

test("a binary codec with a namespace: entries and token read together as bytes, hits served, invalidateAll makes them miss", async () => {
  await using a = await connect(url);
  await using b = await connect(url);
  const namespace = unique("ns");
  const k = unique("k");
  let runs = 0;
  const make = (redis: RedisClient) =>
    cached((i: number): Uint8Array => new Uint8Array([i, ++runs, 0xff]), {
      redis,
      key: (i) => `${k}:${i}`,
      ttl: 60_000,
      namespace,
      codec: {
        binary: true,
        encode: (v: Uint8Array) => v,
        decode: (v: Uint8Array) => v,
      },
    });
  const fa = make(a);
  const fb = make(b);
  for (let i = 0; i < 5; i++) await fa(i);
  for (let i = 0; i < 5; i++) {
    assert.deepEqual([...await fb(i)], [i, i + 1, 0xff]);
  }
  assert.equal(runs, 5);
  await fa.invalidateAll();
  for (let i = 0; i < 5; i++) assert.ok((await fb(i))[1] > 5);
  assert.equal(runs, 10);
});

test("bad input: a bad namespace throws a TypeError; invalidateAll() without one rejects with a TypeError and sends nothing", async () => {
  await using a = await connect(url);
  await using admin = await connect(url);
  const k = unique("k");
  for (const bad of ["", 5, "}x", "a\ud800"]) {
    assert.throws(
      () =>
        cached(() => 1, {
          redis: a,
          key: k,
          ttl: 1_000,
          namespace: bad as string,
        }),
      TypeError,
      `namespace ${JSON.stringify(bad)}`,
    );
  }
  const f = cached(() => 1, { redis: a, key: k, ttl: 1_000 });
  const before = await commandCalls(admin);
  await assert.rejects(f.invalidateAll(), (err: Error) => {
    assert.ok(err instanceof TypeError);
    assert.match(err.message, /namespace/);
    return true;
  });
  const after = await commandCalls(admin);
  assert.deepEqual(delta(before, after), { info: 1 });
});

teardown(() => server.stop());
