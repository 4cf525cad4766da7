import assert from "node:assert/strict";
import {
  connect,
  Lock,
  LockLostError,
  TimeoutError,
  withLock,
} from "../mod.ts";
import { type RedisServer, startRedis } from "../testing/redis.ts";
import { runArgs, spawn } from "../testing/proc.ts";
import { sleep, teardown, test as harnessTest, until } from "./_harness.ts";

// The file shares five connections across its tests (their reads run from
// one test into the next), so Deno's op sanitizer is off for each of them.
const test = (
  name: string,
  fn: () => Promise<void> | void,
  opts: { timeout?: number; sanitize?: boolean } = {},
) => harnessTest(name, fn, { ...opts, sanitize: false });

const servers: RedisServer[] = [];
for (let i = 0; i < 5; i++) servers.push(await startRedis());
const clients = await Promise.all(servers.map((s) => connect(s.url)));
let n = 0;
const prefix = () => `respite-test-redlock-${Date.now()}-${n++}:`;
const worker = new URL("./fixtures/redlock_worker.ts", import.meta.url)
  .pathname;

test("bad arguments: empty array, the same client twice, nodeTimeout without an array", () => {
  assert.throws(() => new Lock([], "x"), RangeError);
  assert.throws(() => new Lock([clients[0], clients[0]], "x"), TypeError);
  assert.throws(
    () => new Lock(clients[0], "x", { nodeTimeout: 10 }),
    TypeError,
  );
  assert.throws(() => new Lock(clients, "x", { nodeTimeout: 0 }), RangeError);
  assert.throws(
    () => new Lock(clients, "x", { nodeTimeout: 1.5 }),
    RangeError,
  );
  assert.throws(() => withLock(() => 1, { redis: [], name: "x" }), RangeError);
  assert.throws(
    () => withLock(() => 1, { redis: [clients[1], clients[1]], name: "x" }),
    TypeError,
  );
});

test(
  "all 32 patterns of foreign-held nodes: acquires exactly when ≥ 3 are free; foreign keys untouched; nothing left behind on failure",
  async () => {
    for (let mask = 0; mask < 32; mask++) {
      const p = prefix();
      const key = `${p}lock:{pat}`;
      let free = 0;
      for (let i = 0; i < 5; i++) {
        if (mask & (1 << i)) {
          await clients[i].send("SET", key, "foreign", "PX", 60_000);
        } else free++;
      }
      const lock = new Lock(clients, "pat", { prefix: p, ttl: 10_000 });
      const got = await lock.acquire({ wait: 0 });
      assert.equal(got, free >= 3, `mask ${mask.toString(2)}`);
      assert.equal(lock.held, got);
      for (let i = 0; i < 5; i++) {
        const v = await clients[i].send<string | null>("GET", key);
        if (mask & (1 << i)) {
          assert.equal(v, "foreign");
          const pttl = await clients[i].send<number>("PTTL", key);
          assert.ok(pttl > 50_000 && pttl <= 60_000, `pttl ${pttl}`);
        } else if (got) {
          assert.ok(v !== null && v.endsWith(lock.id), `node ${i}: ${v}`);
        }
      }
      if (!got) {
        // Partial acquisitions are released at once.
        await until("partial keys gone", 2_000, async () => {
          for (let i = 0; i < 5; i++) {
            if (mask & (1 << i)) continue;
            if (await clients[i].send("EXISTS", key) === 1) return false;
          }
          return true;
        });
      } else {
        assert.equal(await lock.locked(), true);
        assert.equal(await lock.owner(), lock.id);
        await lock.release();
        for (let i = 0; i < 5; i++) {
          if (mask & (1 << i)) continue;
          assert.equal(await clients[i].send("EXISTS", key), 0);
        }
      }
      for (const c of clients) await c.send("DEL", key);
    }
  },
  { timeout: 60_000 },
);

async function paused<T>(
  idx: number[],
  f: () => Promise<T>,
  ms = 2_000,
): Promise<T> {
  const admins = await Promise.all(idx.map((i) => connect(servers[i].url)));
  try {
    for (const a of admins) await a.send("CLIENT", "PAUSE", ms, "ALL");
    return await f();
  } finally {
    // The admin connection is paused too: on Redis 7.0 its UNPAUSE waits
    // until the pause ends by itself (ms after PAUSE).
    for (const a of admins) await a.send("CLIENT", "UNPAUSE");
    for (const a of admins) await a.close();
  }
}

test(
  "two nodes paused still acquires, three fails; each within twice the per-node timeout",
  async () => {
    const nodeTimeout = 100;
    const p = prefix();
    const took2 = await paused([0, 1], async () => {
      const lock = new Lock(clients, "pause", {
        prefix: p,
        ttl: 10_000,
        nodeTimeout,
      });
      const t = performance.now();
      assert.equal(await lock.acquire({ wait: 0 }), true);
      const took = performance.now() - t;
      await lock.release().catch(() => {});
      return took;
    });
    assert.ok(took2 < 2 * nodeTimeout, `two paused: took ${took2} ms`);
    for (const c of clients) await c.send("DEL", `${p}lock:{pause}`);
    const q = prefix();
    const took3 = await paused([0, 1, 2], async () => {
      const lock = new Lock(clients, "pause", {
        prefix: q,
        ttl: 10_000,
        nodeTimeout,
      });
      const t = performance.now();
      assert.equal(await lock.acquire({ wait: 0 }), false);
      return performance.now() - t;
    });
    assert.ok(took3 < 2 * nodeTimeout, `three paused: took ${took3} ms`);
    // The paused nodes run their queued tries after UNPAUSE: each is followed
    // by a compare-and-delete, so nothing stays behind.
    await until("no key left", 3_000, async () => {
      for (const c of clients) {
        if (await c.send("EXISTS", `${q}lock:{pause}`) === 1) return false;
      }
      return true;
    });
  },
  { timeout: 30_000 },
);

test("fence is the largest token among the nodes that took the lock", async () => {
  const p = prefix();
  // Counters ahead of the servers' clocks (µs), so each node's token is its
  // counter + 1 (a token is max(counter + 1, TIME in µs)).
  const base = 2 ** 52;
  for (let i = 0; i < 5; i++) {
    await clients[i].send("SET", `${p}lock:{f}:fence`, String(base + 10 * i));
  }
  await using lock = new Lock(clients, "f", { prefix: p });
  assert.equal(await lock.acquire({ wait: 0 }), true);
  assert.equal(lock.fence, base + 41);
  await lock.release();
  assert.equal(lock.fence, null);
});

test("waiting: a waiter gets the lock once the holder releases", async () => {
  const p = prefix();
  await using a = new Lock(clients, "w", { prefix: p, ttl: 10_000 });
  await using b = new Lock(clients, "w", { prefix: p, ttl: 10_000 });
  assert.equal(await a.acquire({ wait: 0 }), true);
  assert.equal(await b.acquire({ wait: 30 }), false);
  const t = performance.now();
  const waiting = b.acquire({ wait: 5_000 });
  await sleep(50);
  await a.release();
  assert.equal(await waiting, true);
  assert.ok(performance.now() - t < 2_000);
  await b.release();
}, { sanitize: false }); // the wake subscription stays open on node 0

test("withLock with an array of clients", async () => {
  const p = prefix();
  const r = await withLock(async function () {
    assert.equal(
      await new Lock(clients, "wl", { prefix: p }).acquire({ wait: 0 }),
      false,
    );
    return 7;
  }, { redis: clients, name: "wl", prefix: p })();
  assert.equal(r, 7);
  for (const c of clients) {
    assert.equal(await c.send("EXISTS", `${p}lock:{wl}`), 0);
  }
}, { sanitize: false }); // the shared connections' reads run across tests

test(
  "multi-process exclusivity: 3 processes × 60 cycles under the quorum lock, exact count, no overlap",
  async () => {
    const p = prefix();
    const procs = 3, cycles = 60;
    const urls = servers.map((s) => s.url).join(",");
    const ws = Array.from({ length: procs }, (_, i) => {
      const [cmd, argv] = runArgs(worker, [urls, p, String(cycles), `w${i}`]);
      return spawn(cmd, argv);
    });
    const results = await Promise.all(ws.map(async (w) => {
      const code = await w.exited;
      const out = await w.stdout();
      if (code !== 0) {
        throw new Error(`worker ${code}: ${out}${await w.stderr()}`);
      }
      return JSON.parse(out.trim().split("\n").pop()!);
    }));
    assert.equal(
      Number(await clients[0].send("GET", `${p}counter`)),
      procs * cycles,
    );
    const all: Array<[number, number]> = [];
    for (const { intervals } of results) {
      assert.equal(intervals.length, cycles);
      for (const [s, e] of intervals) all.push([s, e]);
    }
    all.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < all.length; i++) {
      assert.ok(all[i - 1][1] <= all[i][0], `overlap at ${i}`);
    }
    // A quorum now needs all three live nodes. Contenders that split them
    // and retried in step livelocked for seconds (waits of 8–26 s seen, and
    // a 60 s "wait ran out"); taking turns, a wait is a few ~150 ms cycles
    // of the other workers.
    const longest = Math.max(...results.map((r) => r.longestWait));
    assert.ok(longest < 3_000, `an acquire waited ${Math.round(longest)} ms`);
  },
  { timeout: 120_000 },
);

test(
  "a majority paused past a renewal: renewalFailed (a TimeoutError), not a loss; renewed once they answer; extend() meanwhile rejects with the TimeoutError and the lock stays held",
  async () => {
    const p = prefix();
    const events: string[] = [];
    const failures: unknown[] = [];
    await using lock = new Lock(clients, "blip", {
      prefix: p,
      ttl: 1_500,
      autoRenew: true,
      hooks: {
        lost: (e) => events.push(`lost ${e.reason}`),
        renewalFailed: (e) => failures.push(e.error),
      },
    });
    assert.equal(await lock.acquire({ wait: 0 }), true);
    await paused([0, 1, 2], async () => {
      // The first renewal is due at 500 ms; paused for 900 ms it fails,
      // and so do its retries, well within the 1500 ms lease.
      await until("a renewal failed", 2_000, () => failures.length > 0);
      await assert.rejects(lock.extend(), TimeoutError);
      assert.equal(lock.held, true, "still within its lease");
    }, 900);
    assert.ok(failures[0] instanceof TimeoutError, String(failures[0]));
    assert.match(String(failures[0]), /only 2 of 5 nodes answered/);
    await sleep(1_500); // past the first lease: renewed after the pause
    assert.equal(lock.held, true, "renewed once a quorum answered");
    assert.deepEqual(events, []);
    await lock.extend();
    await lock.release();
  },
  { timeout: 30_000 },
);

test(
  "release with no node answering rejects with a TimeoutError, not a lost lock; withLock then returns fn's result and warns (single-node parity)",
  async () => {
    const p = prefix();
    const events: string[] = [];
    const lock = new Lock(clients, "gone", {
      prefix: p,
      ttl: 800,
      hooks: { lost: (e) => events.push(`lost ${e.reason}`) },
    });
    assert.equal(await lock.acquire({ wait: 0 }), true);
    await paused([0, 1, 2, 3, 4], async () => {
      await assert.rejects(lock.release(), (e: unknown) => {
        assert.ok(e instanceof TimeoutError, String(e));
        assert.match(e.message, /only 0 of 5 nodes answered/);
        return true;
      });
    });
    assert.equal(lock.held, false);
    assert.deepEqual(events, [], "not reported lost");
    const warnings: string[] = [];
    const admins = await Promise.all(servers.map((s) => connect(s.url)));
    try {
      const r = await withLock(async () => {
        for (const a of admins) await a.send("CLIENT", "PAUSE", 2_000, "ALL");
        return 7;
      }, {
        redis: clients,
        name: "gone2",
        prefix: p,
        ttl: 800,
        logger: { warn: (m) => void warnings.push(m) },
      })();
      assert.equal(r, 7);
    } finally {
      for (const a of admins) await a.send("CLIENT", "UNPAUSE");
      for (const a of admins) await a.close();
    }
    assert.ok(
      warnings.some((w) =>
        /releasing lock gone2 failed .*TimeoutError/.test(w)
      ),
      warnings.join("\n"),
    );
  },
  { timeout: 30_000 },
);

test(
  "a minority frozen (SIGSTOP): release returns at once, not after the lease left; another holder gets the lock",
  async () => {
    const p = prefix();
    servers[4].signal("SIGSTOP");
    try {
      const lock = new Lock(clients, "frozen", { prefix: p, ttl: 5_000 });
      assert.equal(await lock.acquire({ wait: 0 }), true);
      const t = performance.now();
      await lock.release();
      const took = performance.now() - t;
      assert.ok(took < 1_000, `release took ${Math.round(took)} ms`);
      const other = new Lock(clients, "frozen", { prefix: p, ttl: 5_000 });
      assert.equal(await other.acquire({ wait: 0 }), true);
      await other.release();
    } finally {
      servers[4].signal("SIGCONT");
    }
    // The frozen node runs what it was sent once thawed: nothing stays.
    await until(
      "no key left on the thawed node",
      3_000,
      async () => await clients[4].send("EXISTS", `${p}lock:{frozen}`) === 0,
    );
  },
  { timeout: 30_000 },
);

test(
  "multi-process exclusivity with two of five nodes frozen mid-run: exact count, no overlap",
  async () => {
    const p = prefix();
    const procs = 3, cycles = 20;
    const urls = servers.map((s) => s.url).join(",");
    const ws = Array.from({ length: procs }, (_, i) => {
      const [cmd, argv] = runArgs(worker, [urls, p, String(cycles), `w${i}`]);
      return spawn(cmd, argv);
    });
    let results;
    try {
      await until(
        "the workers are under way",
        30_000,
        async () =>
          Number(await clients[0].send("GET", `${p}counter`) ?? 0) >= 3,
      );
      servers[3].signal("SIGSTOP");
      servers[4].signal("SIGSTOP");
      results = await Promise.all(ws.map(async (w) => {
        const code = await w.exited;
        const out = await w.stdout();
        if (code !== 0) {
          throw new Error(`worker ${code}: ${out}${await w.stderr()}`);
        }
        return JSON.parse(out.trim().split("\n").pop()!);
      }));
    } finally {
      servers[3].signal("SIGCONT");
      servers[4].signal("SIGCONT");
      for (const w of ws) w.kill("SIGKILL");
    }
    assert.equal(
      Number(await clients[0].send("GET", `${p}counter`)),
      procs * cycles,
    );
    const all: Array<[number, number]> = [];
    for (const { intervals } of results) {
      for (const [s, e] of intervals) all.push([s, e]);
    }
    all.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < all.length; i++) {
      assert.ok(all[i - 1][1] <= all[i][0], `overlap at ${i}`);
    }
    // A quorum now needs all three live nodes. Contenders that split them
    // and retried in step livelocked for seconds (waits of 8–26 s seen, and
    // a 60 s "wait ran out"); taking turns, a wait is a few ~150 ms cycles
    // of the other workers.
    const longest = Math.max(...results.map((r) => r.longestWait));
    assert.ok(longest < 3_000, `an acquire waited ${Math.round(longest)} ms`);
  },
  { timeout: 120_000 },
);

// Destructive: kills servers. Runs last.
test(
  "a waiter is woken by the release with node 0 down (killed) or frozen (SIGSTOP): it subscribes on every node, not on node 0 alone",
  async () => {
    for (const how of ["killed", "frozen"] as const) {
      const own = await Promise.all([0, 1, 2].map(() => startRedis()));
      const cs = await Promise.all(
        own.map((s) =>
          connect({
            url: s.url,
            reconnect: { minDelay: 50, maxDelay: 200 },
            connectTimeout: 300,
            commandTimeout: 2_000,
          })
        ),
      );
      try {
        if (how === "killed") await own[0].stop();
        else own[0].signal("SIGSTOP");
        const p = prefix();
        const a = new Lock(cs, "w0", { prefix: p, ttl: 30_000 });
        const b = new Lock(cs, "w0", { prefix: p, ttl: 30_000 });
        assert.equal(await a.acquire({ wait: 0 }), true, how);
        const waiting = b.acquire({ wait: 10_000 });
        await sleep(300); // b tried, and sleeps until woken (30 s lease)
        const released = performance.now();
        await a.release();
        assert.equal(await waiting, true, `${how}: b never got the lock`);
        const ms = performance.now() - released;
        assert.ok(ms < 1_500, `${how}: woken ${Math.round(ms)} ms after`);
        await b.release();
      } finally {
        if (how === "frozen") own[0].signal("SIGCONT");
        for (const c of cs) await c.close({ force: true }).catch(() => {});
        for (const s of own) await s.stop().catch(() => {});
      }
    }
  },
  { timeout: 60_000 },
);

test(
  "extend and auto-renew survive two nodes killed; a third killed loses the lock (signal aborts with LockLostError)",
  async () => {
    const p = prefix();
    const ttl = 600;
    await using lock = new Lock(clients, "renew", {
      prefix: p,
      ttl,
      autoRenew: true,
    });
    assert.equal(await lock.acquire({ wait: 0 }), true);
    await lock.extend();
    servers[3].signal("SIGKILL");
    servers[4].signal("SIGKILL");
    await sleep(ttl * 2);
    assert.equal(lock.held, true, "renewed by a quorum of 3");
    await lock.extend();
    assert.equal(lock.signal.aborted, false);
    servers[2].signal("SIGKILL");
    await until("lost", ttl * 3, () => lock.signal.aborted);
    assert.ok(lock.signal.reason instanceof LockLostError);
    assert.equal(lock.held, false);
  },
  { timeout: 30_000, sanitize: false }, // kills servers started outside it
);

teardown(async () => {
  for (const c of clients) await c.close().catch(() => {});
  for (const s of servers) await s.stop().catch(() => {});
});
