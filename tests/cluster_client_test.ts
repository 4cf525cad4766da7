import assert from "node:assert/strict";
import { teardown, test } from "./_harness.ts";
import {
  type ClusterNode,
  migrateSlot,
  startCluster,
} from "../testing/cluster.ts";
import { connectCluster } from "../lib/cluster/client.ts";
import { keySlot } from "../lib/cluster/slot.ts";
import { ClusterError, CrossSlotError } from "../lib/errors.ts";
import { fileURLToPath } from "node:url";
import { cached, Lock } from "../mod.ts";
import { runArgs, spawn } from "../testing/proc.ts";

const cluster = await startCluster();
const redis = await connectCluster(cluster.urls[0]);

test("thousands of keys land on every master and read back", async () => {
  await Promise.all(
    Array.from({ length: 3000 }, (_, i) => redis.send("SET", `k${i}`, i)),
  );
  for (const n of cluster.nodes) {
    assert.ok(Number(await n.client.command(["DBSIZE"])) > 500);
  }
  assert.equal(await redis.send("GET", "k1234"), "1234");
  assert.equal((await redis.masters()).length, 3);
});

test("cross-slot commands are refused before anything is sent", async () => {
  await assert.rejects(
    redis.send("MSET", "a1", "1", "b2", "2"),
    CrossSlotError,
  );
  assert.equal(await redis.send("EXISTS", "a1"), 0);
  assert.equal(await redis.send("EXISTS", "b2"), 0);
  assert.equal(await redis.send("MSET", "{t}a", "1", "{t}b", "2"), "OK");
});

test("MOVED, ASK and TRYAGAIN during a hand migration are followed", async () => {
  const slot = keySlot("mv");
  for (let i = 0; i < 4; i++) await redis.send("SET", `{mv}${i}`, i);
  const stale = await connectCluster(cluster.urls[1]);
  const source = await cluster.ownerOf(slot);
  const target = cluster.nodes.find((n) => n !== source)!;
  let tryagain: Promise<unknown> | undefined;
  await migrateSlot(cluster, slot, target, {
    async afterKey(key) {
      assert.equal(await redis.send("GET", key), key.slice(4)); // via ASK
      if (tryagain === undefined) {
        // One key moved, the other not yet: the source answers TRYAGAIN
        // until the migration is over.
        const other = key === "{mv}0" ? "{mv}1" : "{mv}0";
        tryagain = redis.send(
          "EVAL",
          "return redis.call('MGET', KEYS[1], KEYS[2])",
          2,
          key,
          other,
        );
        const end = Date.now() + 5000;
        while (redis.stats.tryagain === 0 && Date.now() < end) {
          await new Promise((r) => setTimeout(r, 5));
        }
      }
    },
  });
  const got = await tryagain as string[];
  assert.equal(got.length, 2);
  assert.ok(got.every((v) => v !== null));
  assert.ok(redis.stats.ask > 0, "ask");
  assert.ok(redis.stats.tryagain > 0, "tryagain");
  // A client whose map predates the migration meets MOVED once, then
  // routes straight to the new owner.
  assert.equal(await stale.send("GET", "{mv}2"), "2");
  assert.equal(stale.stats.moved, 1);
  assert.equal(await stale.send("GET", "{mv}3"), "3");
  assert.equal(stale.stats.moved, 1);
  await stale.close();
});

test("Lock on the cluster client: exclusive, a waiter is woken at release", async () => {
  await using c = await connectCluster(cluster.urls[2]);
  const a = new Lock(c, "cjob", { ttl: 30_000 });
  const b = new Lock(c, "cjob", { ttl: 30_000 });
  assert.equal(await a.acquire({ wait: 0 }), true);
  assert.equal(await b.acquire({ wait: 0 }), false);
  const waiting = b.acquire({ wait: 20_000 });
  await new Promise((r) => setTimeout(r, 200));
  const released = Date.now();
  await a.release();
  assert.equal(await waiting, true);
  // Woken by the release's publish, not by polling a 30 s TTL.
  assert.ok(
    Date.now() - released < 1_000,
    `woke after ${Date.now() - released} ms`,
  );
  await b.release();
});

/** `PUBSUB SHARDNUMSUB` (sharded) or `NUMSUB` (classic) of one node. */
async function subscribers(
  node: ClusterNode,
  channel: string,
  sharded = true,
): Promise<number> {
  const reply = await node.client.command([
    "PUBSUB",
    sharded ? "SHARDNUMSUB" : "NUMSUB",
    channel,
  ]) as [string, number];
  return reply[1];
}

async function until(what: string, ok: () => Promise<boolean> | boolean) {
  const deadline = Date.now() + 10_000;
  while (!await ok()) {
    assert.ok(Date.now() < deadline, `timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test("wake-ups are sharded: a waiter SSUBSCRIBEs on its slot's owner only, and the release's SPUBLISH wakes it", async () => {
  await using c = await connectCluster(cluster.urls[1]);
  assert.equal(c.shardedPubSub, true);
  const a = new Lock(c, "shardwake", { ttl: 30_000 });
  const b = new Lock(c, "shardwake", { ttl: 30_000 });
  assert.equal(await a.acquire({ wait: 0 }), true);
  const waiting = b.acquire({ wait: 20_000 });
  const channel = "respite:lock:{shardwake}:wake";
  const owner = await cluster.ownerOf(keySlot(channel));
  await until(
    "the waiter's SSUBSCRIBE",
    async () => await subscribers(owner, channel) === 1,
  );
  for (const n of cluster.nodes) {
    assert.equal(
      await subscribers(n, channel, false),
      0,
      "no classic SUBSCRIBE",
    );
    if (n !== owner) assert.equal(await subscribers(n, channel), 0);
  }
  const released = Date.now();
  await a.release();
  assert.equal(await waiting, true);
  assert.ok(
    Date.now() - released < 1_000,
    `woke after ${Date.now() - released} ms (a 30 s TTL)`,
  );
  await b.release();
});

test("a sharded subscription follows its slot: migrated, Redis ends it, it is made again on the new owner (onResubscribed), and a lock waiter is still woken", async () => {
  const warnings: string[] = [];
  await using c = await connectCluster(cluster.urls[0], {
    logger: { warn: (m) => void warnings.push(m) },
  });
  const name = "shardmove";
  const channel = `respite:lock:{${name}}:wake`;
  const slot = keySlot(channel);
  const source = await cluster.ownerOf(slot);
  const target = cluster.nodes.find((n) => n !== source)!;
  // A plain subscription, to see the callbacks.
  const got: string[] = [];
  let resubscribed = 0;
  const unsubscribe = await c.subscribe(channel, (m) => got.push(m), {
    onResubscribed: () => resubscribed++,
  });
  // And a lock waiter on the same slot.
  const a = new Lock(c, name, { ttl: 30_000 });
  const b = new Lock(c, name, { ttl: 30_000 });
  assert.equal(await a.acquire({ wait: 0 }), true);
  const waiting = b.acquire({ wait: 20_000 });
  await until(
    "both subscribed on the source",
    async () => await subscribers(source, channel) === 1,
  );
  const list = await source.client.command(["CLIENT", "LIST"]) as string;
  const subscriberId = /^id=(\d+) .* ssub=1 /m.exec(list)?.[1];
  assert.ok(subscriberId !== undefined, list);
  await migrateSlot(cluster, slot, target);
  await until(
    "resubscribed on the new owner",
    async () => resubscribed === 1 && await subscribers(target, channel) === 1,
  );
  assert.equal(await subscribers(source, channel), 0);
  assert.ok(c.stats.resubscribes >= 1);
  await target.client.command(["SPUBLISH", channel, "hello"]);
  await until("the message on the new owner", () => got.includes("hello"));
  const released = Date.now();
  await a.release(); // the lock key moved with its slot
  assert.equal(await waiting, true);
  assert.ok(
    Date.now() - released < 1_000,
    `woke after ${Date.now() - released} ms (a 30 s TTL)`,
  );
  await b.release();
  await unsubscribe();
  await until(
    "unsubscribed",
    async () => await subscribers(target, channel) === 0,
  );
  // Redis's sunsubscribe was read as such: not as a stray reply that drops
  // the subscriber connection (and reconnects to find MOVED).
  assert.notEqual(
    await source.client.command(["CLIENT", "LIST", "ID", subscriberId]),
    "",
    "the subscriber connection to the old owner was dropped",
  );
  assert.deepEqual(warnings.filter((w) => !w.includes("not cached")), []);
});

test("cached on the cluster client computes once for concurrent calls", async () => {
  let runs = 0;
  const f = cached(async () => {
    runs++;
    await new Promise((r) => setTimeout(r, 50));
    return { answer: 42 };
  }, { redis, key: "cluster-cached", ttl: 60_000 });
  const results = await Promise.all(Array.from({ length: 200 }, () => f()));
  assert.equal(runs, 1);
  assert.ok(results.every((r) => r.answer === 42));
});

test("cached tags on the cluster: invalidateTag clears a tag's entries spread over every master, each on its own slot", async () => {
  let runs = 0;
  const f = cached((i: number) => {
    runs++;
    return { i };
  }, {
    redis,
    key: (i) => `cl-tagged:${i}`,
    ttl: 60_000,
    tags: (i) => [i % 2 === 0 ? "cl-even" : "cl-odd"],
  });
  for (let i = 0; i < 30; i++) await f(i);
  const owners = new Set<ClusterNode>();
  for (let i = 0; i < 30; i += 2) {
    owners.add(await cluster.ownerOf(keySlot(f.redisKey(i))));
  }
  assert.equal(owners.size, 3, "the even entries live on every master");
  assert.equal(await f.invalidateTag("cl-even"), 15);
  for (let i = 0; i < 30; i++) {
    assert.equal(
      await redis.send("EXISTS", f.redisKey(i)),
      i % 2 === 0 ? 0 : 1,
    );
  }
  for (let i = 0; i < 30; i++) await f(i);
  assert.equal(runs, 45);
  assert.equal(await f.invalidateTag("cl-odd"), 15);
  assert.equal(await f.invalidateTag("cl-even"), 15);
});

test("cached invalidateAll on the cluster: the namespace's token lives in its own slot, entries on every master; one SET makes them all miss", async () => {
  let runs = 0;
  const f = cached((i: number) => ({ i, run: ++runs }), {
    redis,
    key: (i) => `cl-gen:${i}`,
    ttl: 60_000,
    namespace: "cl-gen-ns",
  });
  await f.invalidateAll();
  for (let i = 0; i < 30; i++) await f(i);
  for (let i = 0; i < 30; i++) await f(i);
  assert.equal(runs, 30);
  const owners = new Set<ClusterNode>();
  for (let i = 0; i < 30; i++) {
    owners.add(await cluster.ownerOf(keySlot(f.redisKey(i))));
  }
  assert.equal(owners.size, 3, "the entries live on every master");
  await f.invalidateAll();
  for (let i = 0; i < 30; i++) assert.ok((await f(i)).run > 30);
  assert.equal(runs, 60);
  for (let i = 0; i < 30; i++) await f(i);
  assert.equal(runs, 60);
});

test("Lock.resetAll clears lock keys on every master", async () => {
  const locks = Array.from(
    { length: 30 },
    (_, i) => new Lock(redis, `r${i}`, { ttl: 60_000 }),
  );
  for (const l of locks) assert.equal(await l.acquire({ wait: 0 }), true);
  await Lock.resetAll(redis);
  for (const l of locks) assert.equal(await l.locked(), false);
});

test("the eviction check asks every master: one warning when any of them may evict", async () => {
  const last = cluster.nodes[cluster.nodes.length - 1];
  await last.client.command([
    "CONFIG",
    "SET",
    "maxmemory-policy",
    "allkeys-lru",
  ]);
  try {
    const warnings: string[] = [];
    const watched = await connectCluster(cluster.urls[0], {
      logger: { warn: (m) => void warnings.push(m) },
    });
    try {
      // A lock on a slot that the evicting node does not own: only asking
      // every master finds it.
      let name = "ev";
      for (let i = 0; (await cluster.ownerOf(keySlot(name))) === last; i++) {
        name = `ev${i}`;
      }
      const lock = new Lock(watched, name);
      assert.equal(await lock.acquire({ wait: 0 }), true);
      await lock.release();
      const t0 = Date.now();
      while (
        !warnings.some((w) => w.includes("maxmemory-policy")) &&
        Date.now() - t0 < 5_000
      ) {
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.equal(
        warnings.filter((w) => w.includes("maxmemory-policy is allkeys-lru"))
          .length,
        1,
        warnings.join("\n"),
      );
    } finally {
      await watched.close();
    }
  } finally {
    await last.client.command([
      "CONFIG",
      "SET",
      "maxmemory-policy",
      "noeviction",
    ]);
  }
});

test("the cached stampede across 4 processes on the cluster: one computation for 100 calls", async () => {
  const ns = `cl:fleet:${Date.now()}:`;
  const worker = fileURLToPath(
    new URL("./fixtures/cached_worker.ts", import.meta.url),
  );
  const procs = Array.from({ length: 4 }, () => {
    const cfg = {
      mode: "calls",
      url: cluster.urls[0],
      cluster: true,
      ns,
      callers: 25,
      computeMs: 300,
    };
    const [cmd, args] = runArgs(worker, [JSON.stringify(cfg)]);
    return spawn(cmd, args);
  });
  try {
    const t0 = Date.now();
    while (Number(await redis.send("GET", `${ns}ready`) ?? 0) < 4) {
      assert.ok(Date.now() - t0 < 30_000, "workers did not start");
      await new Promise((r) => setTimeout(r, 20));
    }
    // The workers' subscribe is sharded (Redis 7): SPUBLISH reaches them.
    assert.equal(redis.shardedPubSub, true);
    await redis.send("SPUBLISH", `${ns}go`, "go");
    const values = new Set<string>();
    let calls = 0;
    for (const p of procs) {
      assert.equal(await p.exited, 0, await p.stderr());
      const out = JSON.parse((await p.stdout()).trim().split("\n").pop()!) as {
        results: { ok: boolean; value: string }[];
      };
      for (const r of out.results) {
        assert.ok(r.ok, r.value);
        values.add(r.value);
        calls++;
      }
    }
    assert.equal(calls, 100);
    assert.equal(await redis.send("GET", `${ns}computations`), "1");
    assert.equal(values.size, 1, "every caller got the one value");
  } finally {
    for (const p of procs) p.kill("SIGKILL");
  }
});

test(
  "3 processes contend for a lock while its slot migrates there and back: MOVED, ASK and TRYAGAIN all met, the count exact, no overlapping holds, one token per acquisition",
  async () => {
    const p = `respite:mig${Date.now()}:`;
    const lockKey = `${p}lock:{mutex}`;
    const slot = keySlot(lockKey);
    assert.equal(keySlot(`${p}{mutex}:counter`), slot);
    await redis.send("SET", `${lockKey}:fence`, String(2 ** 52));
    const procs = 3;
    const cycles = 150;
    const worker = fileURLToPath(
      new URL("./fixtures/lock_worker.ts", import.meta.url),
    );
    const workers = Array.from({ length: procs }, (_, i) => {
      const [cmd, args] = runArgs(worker, [
        "mutex",
        cluster.urls[i],
        p,
        String(cycles),
        `w${i}`,
        "cluster",
      ]);
      return spawn(cmd, args);
    });
    try {
      const counter = () => redis.send("GET", `${p}{mutex}:counter`);
      await until(
        "the workers to start",
        async () => Number(await counter() ?? 0) >= 10,
      );
      const home = await cluster.ownerOf(slot);
      const away = cluster.nodes.find((n) => n !== home)!;
      const pause = () => new Promise<void>((r) => setTimeout(r, 40));
      for (const target of [away, home]) {
        // Slowly, so that the workers meet each half-migrated state.
        await migrateSlot(cluster, slot, target, {
          afterMark: pause,
          afterKey: pause,
          beforeNode: pause,
        });
        // Progress on the new owner: every worker's next commands meet
        // MOVED there (ASK does not change a client's map).
        const at = Number(await counter());
        await until(
          "progress after the migration",
          async () =>
            Number(await counter()) >= Math.min(at + 10, procs * cycles),
        );
      }
      const results = [];
      for (const w of workers) {
        assert.equal(await w.exited, 0, await w.stderr());
        results.push(
          JSON.parse((await w.stdout()).trim().split("\n").pop()!) as {
            id: string;
            intervals: [number, number, number][];
            stats: { moved: number; ask: number; tryagain: number };
          },
        );
      }
      assert.equal(Number(await counter()), procs * cycles);
      const all: [number, number, number, string][] = [];
      const met = { moved: 0, ask: 0, tryagain: 0 };
      for (const { id, intervals, stats } of results) {
        assert.equal(intervals.length, cycles);
        for (const [s, e, f] of intervals) all.push([s, e, f, id]);
        met.moved += stats.moved;
        met.ask += stats.ask;
        met.tryagain += stats.tryagain;
      }
      assert.ok(
        met.moved > 0 && met.ask > 0 && met.tryagain > 0,
        `redirections met: ${JSON.stringify(met)}`,
      );
      all.sort((a, b) => a[0] - b[0]);
      for (let i = 1; i < all.length; i++) {
        const [prevStart, prevEnd, prevFence, prevId] = all[i - 1];
        const [start, , fence, id] = all[i];
        assert.ok(
          prevEnd <= start,
          `hold ${prevId} [${prevStart}, ${prevEnd}] overlaps ${id} from ${start}`,
        );
        assert.ok(fence > prevFence, `fence ${fence} after ${prevFence}`);
      }
      assert.equal(
        Number(await redis.send("GET", `${lockKey}:fence`)),
        2 ** 52 + procs * cycles,
      );
      assert.equal(await redis.send("EXISTS", lockKey), 0);
      console.log(
        `slot migrated away and back under ${procs} processes × ${cycles} cycles: ${
          JSON.stringify(met)
        }`,
      );
    } finally {
      for (const w of workers) w.kill("SIGKILL");
    }
  },
  { timeout: 90_000 },
);

test("unreachable seeds give a ClusterError without the password", async () => {
  await assert.rejects(
    connectCluster("redis://:s3cret@127.0.0.1:1"),
    (e: unknown) =>
      e instanceof ClusterError && !String(e.message).includes("s3cret"),
  );
});

teardown(async () => {
  await redis.close();
  await cluster.stop();
});
