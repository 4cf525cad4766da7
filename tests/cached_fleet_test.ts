/**
 * `cached` across OS processes: one computation for the whole fleet, stale-
 * while-revalidate refreshing once across processes, and a computing process
 * killed with SIGKILL replaced after its lock's lease.
 */
import assert from "node:assert/strict";
import { cached, connect, type RedisClient } from "../mod.ts";
import { sharedRedis } from "../testing/redis.ts";
import { sleep, teardown, test } from "./_harness.ts";
import { type Proc, runArgs, spawn } from "../testing/proc.ts";

const server = await sharedRedis();
const url = server.url;
const worker = new URL("./fixtures/cached_worker.ts", import.meta.url)
  .pathname;
let n = 0;
const ns = (s: string) => `respite:test:cachedfleet:${Date.now()}:${n++}:${s}:`;

interface WorkerOutput {
  pid: number;
  results: Array<{ ok: boolean; value: string; ms: number }>;
}

/**
 * Starts `count` workers, waits until all are subscribed (`already` workers
 * of the namespace started earlier), runs `beforeGo`, and says go.
 */
async function fleet(
  redis: RedisClient,
  count: number,
  cfg: Record<string, unknown>,
  { already = 0, beforeGo }: {
    already?: number;
    beforeGo?: () => Promise<void>;
  } = {},
): Promise<Proc[]> {
  const space = cfg.ns as string;
  const procs = Array.from({ length: count }, () => {
    const [cmd, args] = runArgs(worker, [JSON.stringify({ url, ...cfg })]);
    return spawn(cmd, args);
  });
  const deadline = Date.now() + 30_000;
  while (
    Number(await redis.send("GET", `${space}ready`) ?? 0) < count + already
  ) {
    if (Date.now() > deadline) {
      for (const p of procs) p.kill("SIGKILL");
      const errs = await Promise.all(procs.map((p) => p.stderr()));
      throw new Error(`workers did not start: ${errs.join("\n").slice(-2000)}`);
    }
    await sleep(20); // the test waits for processes to start; not the library
  }
  await beforeGo?.();
  await redis.send("PUBLISH", `${space}go`, "go");
  return procs;
}

async function outputs(procs: Proc[]): Promise<WorkerOutput[]> {
  const out: WorkerOutput[] = [];
  for (const p of procs) {
    const code = await p.exited;
    const text = await p.stdout();
    if (code !== 0) {
      throw new Error(`worker exited ${code}: ${await p.stderr()}`);
    }
    out.push(JSON.parse(text.trim().split("\n").pop()!));
  }
  return out;
}

test("5 processes × 200 concurrent calls on a cold key: 1 computation, every caller gets the value", async () => {
  await using redis = await connect(url);
  const space = ns("stampede");
  const procs = await fleet(redis, 5, {
    mode: "calls",
    ns: space,
    callers: 200,
    computeMs: 300,
  });
  const outs = await outputs(procs);
  assert.equal(await redis.send("GET", `${space}computations`), "1");
  const all = outs.flatMap((o) => o.results);
  assert.equal(all.length, 1_000);
  const values = new Set(all.map((r) => r.ok ? r.value : `error ${r.value}`));
  assert.equal(values.size, 1, `one value for all: ${[...values]}`);
  assert.match([...values][0], /^computed by \d+$/);
  // The waiters did not wait out a timer: the lock's lease is 10 s.
  const slowest = Math.max(...all.map((r) => r.ms));
  assert.ok(slowest < 3_000, `slowest caller took ${slowest.toFixed(0)} ms`);
  await redis.send("DEL", `${space}k`);
});

test("stale-while-revalidate across processes: stale served at once, refreshed exactly once", async () => {
  await using redis = await connect(url);
  const space = ns("swr");
  // Seed a value that is stale (past ttl, within the SWR window).
  let seeded = 0;
  const seed = cached(() => {
    seeded++;
    return { value: "seed" };
  }, {
    redis,
    key: `${space}k`,
    ttl: 100,
    staleWhileRevalidate: 60_000,
    beta: 0,
  });
  assert.deepEqual(await seed(), { value: "seed" });
  await sleep(150);
  assert.equal((await seed.peek())?.fresh, false);
  const procs = await fleet(redis, 4, {
    mode: "calls",
    ns: space,
    callers: 50,
    computeMs: 400,
    ttl: 100,
    staleWhileRevalidate: 60_000,
  });
  const outs = await outputs(procs);
  const all = outs.flatMap((o) => o.results);
  assert.equal(all.length, 200);
  assert.ok(
    all.every((r) => r.ok && r.value === "seed"),
    "all got the stale value",
  );
  // Served at once: nobody waited for the 400 ms refresh.
  const slowest = Math.max(...all.map((r) => r.ms));
  assert.ok(slowest < 300, `slowest stale read took ${slowest.toFixed(0)} ms`);
  assert.equal(await redis.send("GET", `${space}computations`), "1");
  const after = await seed.peek();
  assert.ok(
    after?.kind === "value" && after.value.value.startsWith("computed by"),
  );
  assert.equal(seeded, 1);
  await redis.send("DEL", `${space}k`);
});

test("a computing process killed with SIGKILL is replaced after its lock's lease; nobody hangs", async () => {
  await using redis = await connect(url);
  const space = ns("kill");
  const lockTtl = 600;
  const [leader] = await fleet(redis, 1, { mode: "hang", ns: space, lockTtl });
  const deadline = Date.now() + 10_000;
  while (await redis.send("GET", `${space}computations`) !== "1") {
    assert.ok(Date.now() < deadline, "the worker never started computing");
    await sleep(10);
  }
  let runs = 0;
  let startedAt = 0;
  const f = cached(async () => {
    runs++;
    startedAt = performance.now();
    await redis.send("INCR", `${space}computations`);
    return { value: "replacement" };
  }, { redis, key: `${space}k`, ttl: 60_000, lockTtl, beta: 0 });
  const t0 = performance.now();
  const waiting = f();
  await sleep(100);
  const killedAt = performance.now();
  leader.kill("SIGKILL");
  await leader.exited;
  assert.deepEqual(await waiting, { value: "replacement" });
  const took = performance.now() - t0;
  assert.equal(runs, 1);
  assert.ok(startedAt > killedAt, "the waiter computed only after the kill");
  assert.equal(await redis.send("GET", `${space}computations`), "2");
  // It waited for the lease (renewed until the kill), not much longer.
  assert.ok(took >= 100, `took ${took.toFixed(0)} ms`);
  assert.ok(took < 100 + lockTtl + 1_000, `took ${took.toFixed(0)} ms`);
  await redis.send("DEL", `${space}k`);
});

test("a killed leader is replaced once, not once per waiting process, with wait == lockTtl", async () => {
  await using redis = await connect(url);
  const space = ns("handoff");
  // The defaults' proportions before wait became 2 × lockTtl, scaled down.
  const lockTtl = 1_000;
  const [leader] = await fleet(redis, 1, { mode: "hang", ns: space, lockTtl });
  const lockKey = `respite:cache:lock:{${space}k}`;
  const deadline = Date.now() + 10_000;
  while (await redis.send("GET", `${space}computations`) !== "1") {
    assert.ok(Date.now() < deadline, "the worker never started computing");
    await sleep(10);
  }
  const waiters = await fleet(redis, 4, {
    mode: "calls",
    ns: space,
    callers: 5,
    computeMs: 800,
    lockTtl,
    wait: lockTtl,
  }, {
    already: 1,
    beforeGo: async () => {
      // Kill the leader just before its next renewal (every lockTtl / 3), so
      // its lease outlasts it by about 2/3 × lockTtl; the waiters start
      // right after, and their `wait` runs out while the replacement
      // computes.
      while (true) {
        const pttl = await redis.send("PTTL", lockKey) as number;
        assert.ok(pttl > 0, "the leader lost its lock");
        if (pttl <= (lockTtl * 2) / 3 + 60) break;
        await sleep(2);
      }
      leader.kill("SIGKILL");
      await leader.exited;
    },
  });
  const outs = await outputs(waiters);
  const all = outs.flatMap((o) => o.results);
  assert.equal(all.length, 20);
  const values = new Set(all.map((r) => r.ok ? r.value : `error ${r.value}`));
  assert.equal(values.size, 1, `one value for all: ${[...values]}`);
  assert.equal(
    await redis.send("GET", `${space}computations`),
    "2",
    "the killed computation and one replacement",
  );
  await redis.send("DEL", `${space}k`);
});

teardown(async () => {
  await server.stop();
});
