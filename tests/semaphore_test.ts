import assert from "node:assert/strict";
import {
  connect,
  LockLostError,
  LockNotAcquiredError,
  Semaphore,
  withSemaphore,
} from "../mod.ts";
import { commandCalls, scanKeys, startRedis } from "../testing/redis.ts";
import { runArgs, spawn } from "../testing/proc.ts";
import { sleep, teardown, test, until } from "./_harness.ts";

const server = await startRedis();
const url = server.url;
const worker = new URL("./fixtures/semaphore_worker.ts", import.meta.url)
  .pathname;
let n = 0;
const prefix = () => `respite-test-sem-${Date.now()}-${n++}:`;
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};

function startWorker(args: string[]) {
  const [cmd, argv] = runArgs(worker, args);
  return spawn(cmd, argv);
}

async function output(proc: ReturnType<typeof startWorker>) {
  const code = await proc.exited;
  const out = await proc.stdout();
  if (code !== 0) {
    throw new Error(`worker exited with ${code}: ${out}${await proc.stderr()}`);
  }
  return JSON.parse(out.trim().split("\n").pop()!);
}

test("bad arguments throw before anything is sent", async () => {
  await using r = await connect(url);
  const p = prefix();
  const bad: Array<[unknown, typeof TypeError | typeof RangeError]> = [
    [{ limit: 0 }, RangeError],
    [{ limit: 1.5 }, RangeError],
    [{ limit: -1 }, RangeError],
    [{ limit: "3" }, TypeError],
    [{}, TypeError],
    [undefined, TypeError],
    [{ limit: 1, ttl: 0 }, RangeError],
    [{ limit: 1, autoRenew: "yes" }, TypeError],
    [{ limit: 1, nope: 1 }, TypeError],
  ];
  const before = await commandCalls(r);
  for (const [o, Err] of bad) {
    assert.throws(
      () => new Semaphore(r, "x", { prefix: p, ...(o as object) } as never),
      Err,
      JSON.stringify(o),
    );
  }
  assert.throws(() => new Semaphore(r, "", { limit: 1 }), TypeError);
  assert.throws(
    () => withSemaphore(() => 1, { redis: r, name: "x", limit: 0 }),
    RangeError,
  );
  const s = new Semaphore(r, "x", { limit: 1, prefix: p });
  await assert.rejects(s.acquire({ wait: -1 }), RangeError);
  await assert.rejects(s.acquire({ wait: "1" as never }), TypeError);
  const after = await commandCalls(r);
  for (const c of ["evalsha", "eval", "zadd"]) {
    assert.equal(after.get(c) ?? 0, before.get(c) ?? 0, c);
  }
  assert.deepEqual(await scanKeys(r, `${p}*`), []);
});

test("at most limit holders; wait: 0 and wait timeouts", async () => {
  await using r = await connect(url);
  const p = prefix();
  const sems = Array.from(
    { length: 4 },
    () => new Semaphore(r, "s", { limit: 3, prefix: p }),
  );
  for (let i = 0; i < 3; i++) assert.equal(await sems[i].acquire(), true);
  assert.equal(await sems[3].acquire({ wait: 0 }), false);
  const t0 = performance.now();
  assert.equal(await sems[3].acquire({ wait: 60 }), false);
  const took = performance.now() - t0;
  assert.ok(took >= 55 && took < 500, `took ${took}`);
  // The timed-out waiter left the queue.
  await until(
    "ticket gone",
    1_000,
    async () => await r.send("ZCARD", `${p}sem:{s}:queue`) === 0,
  );
  await sems[0].release();
  assert.equal(await sems[3].acquire({ wait: 0 }), true);
  for (const s of sems.slice(1)) await s.release();
  assert.equal(await r.send("ZCARD", `${p}sem:{s}:holders`), 0);
  await assert.rejects(sems[0].release(), { name: "LockNotHeldError" });
});

test("a waiter acquires within 15 ms of a release (median), woken by pub/sub", async () => {
  await using a = await connect(url);
  await using b = await connect(url);
  const p = prefix();
  const holder = new Semaphore(a, "s", { limit: 1, prefix: p, ttl: 10_000 });
  const waiter = new Semaphore(b, "s", { limit: 1, prefix: p, ttl: 10_000 });
  const lat: number[] = [];
  for (let round = 0; round < 15; round++) {
    assert.equal(await holder.acquire({ wait: 0 }), true);
    const got = waiter.acquire({ wait: 5_000 });
    await until(
      "waiter queued",
      1_000,
      async () => await a.send("ZCARD", `${p}sem:{s}:queue`) === 1,
    );
    await sleep(20);
    const t0 = performance.now();
    await holder.release();
    assert.equal(await got, true);
    lat.push(performance.now() - t0);
    await waiter.release();
  }
  // Without the wake-up, a waiter looks again only after 1 s (its ticket
  // refresh) or the holder's 10 s lease.
  assert.ok(median(lat) < 15, `median ${median(lat)} ms: ${lat}`);
  assert.ok(Math.max(...lat) < 500, `max ${Math.max(...lat)} ms`);
});

test("no PUBLISH when nobody waits", async () => {
  await using r = await connect(url);
  const p = prefix();
  const s = new Semaphore(r, "s", { limit: 2, prefix: p });
  await s.acquire();
  await s.release();
  const before = (await commandCalls(r)).get("publish") ?? 0;
  const calls0 = await commandCalls(r);
  for (let i = 0; i < 20; i++) {
    await s.acquire();
    await s.release();
  }
  const calls1 = await commandCalls(r);
  assert.equal((calls1.get("publish") ?? 0) - before, 0);
  const scripts = (calls1.get("evalsha") ?? 0) - (calls0.get("evalsha") ?? 0);
  assert.equal(scripts, 40, "one script to acquire, one to release");
});

test(
  "4 processes × 60 cycles, limit 3: never more than 3 holders, and 3 reached",
  async () => {
    const p = prefix();
    const procs = 4, cycles = 60, limit = 3;
    const results = await Promise.all(
      Array.from(
        { length: procs },
        (_, i) =>
          output(
            startWorker([
              "cycles",
              url,
              p,
              String(limit),
              String(cycles),
              `w${i}`,
            ]),
          ),
      ),
    );
    const events: Array<[number, number]> = [];
    for (const { intervals } of results) {
      assert.equal(intervals.length, cycles);
      for (const [s, e] of intervals) events.push([s, 1], [e, -1]);
    }
    // Ends before starts at equal times: touching intervals do not overlap.
    events.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    let cur = 0, most = 0;
    for (const [, d] of events) most = Math.max(most, cur += d);
    assert.equal(most, limit);
    await using r = await connect(url);
    assert.equal(await r.send("ZCARD", `${p}sem:{sem}:holders`), 0);
    assert.equal(await r.send("ZCARD", `${p}sem:{sem}:queue`), 0);
  },
  { timeout: 90_000 },
);

test(
  "FIFO across processes",
  async () => {
    await using r = await connect(url);
    const p = prefix();
    const holder = new Semaphore(r, "sem", { limit: 1, prefix: p });
    assert.equal(await holder.acquire({ wait: 0 }), true);
    const procs = [];
    for (let i = 0; i < 4; i++) {
      procs.push(startWorker(["queue", url, p, "1", "10000", `q${i}`]));
      await until(
        `q${i} queued`,
        20_000,
        async () => await r.send("ZCARD", `${p}sem:{sem}:queue`) === i + 1,
      );
    }
    await holder.release();
    await Promise.all(procs.map(output));
    assert.deepEqual(await r.send("LRANGE", `${p}order`, 0, -1), [
      "q0",
      "q1",
      "q2",
      "q3",
    ]);
  },
  { timeout: 60_000 },
);

test(
  "SIGKILLed holders' permits, and permits handed to SIGKILLed waiters, come back at their TTL",
  async () => {
    await using r = await connect(url);
    const p = prefix();
    const ttl = 800;
    const a = startWorker(["hold", url, p, "2", String(ttl), "a"]);
    const b = startWorker(["hold", url, p, "2", String(ttl), "b"]);
    await until(
      "both hold",
      20_000,
      async () => await r.send("ZCARD", `${p}sem:{sem}:holders`) === 2,
    );
    const heldAt = performance.now();
    a.kill("SIGKILL");
    b.kill("SIGKILL");
    await Promise.all([a.exited, b.exited]);
    const s = new Semaphore(r, "sem", { limit: 2, prefix: p });
    assert.equal(await s.acquire({ wait: 0 }), false);
    assert.equal(await s.acquire({ wait: 5_000 }), true);
    const at = performance.now() - heldAt;
    assert.ok(at < ttl + 300, `recovered after ${at} ms`);
    await s.release();
    // A waiter killed in line: the permit a release hands to it comes back
    // at its ttl (1 s here), as a crashed holder's does.
    const one = new Semaphore(r, "sem", { limit: 1, prefix: p });
    // (The other killed holder's permit may still be running out.)
    assert.equal(await one.acquire({ wait: 5_000 }), true);
    const q = startWorker(["queue", url, p, "1", "1000", "dead"]);
    await until(
      "queued",
      20_000,
      async () => await r.send("ZCARD", `${p}sem:{sem}:queue`) === 1,
    );
    q.kill("SIGKILL");
    await q.exited;
    const t0 = performance.now();
    await one.release();
    assert.equal(await r.send("ZCARD", `${p}sem:{sem}:holders`), 1);
    const s2 = new Semaphore(r, "sem", { limit: 1, prefix: p });
    assert.equal(await s2.acquire({ wait: 6_000 }), true);
    const waited = performance.now() - t0;
    assert.ok(waited > 700 && waited < 1_500, `waited ${waited}`);
    await s2.release();
  },
  { timeout: 60_000 },
);

test("auto-renew keeps a permit past its ttl; loss aborts the signal", async () => {
  await using r = await connect(url);
  const p = prefix();
  const s = new Semaphore(r, "s", {
    limit: 1,
    prefix: p,
    ttl: 100,
    autoRenew: true,
  });
  assert.equal(await s.acquire(), true);
  await sleep(350);
  assert.equal(s.held, true);
  assert.equal(s.signal.aborted, false);
  const other = new Semaphore(r, "s", { limit: 1, prefix: p });
  assert.equal(await other.acquire({ wait: 0 }), false);
  // Taken away behind its back: the next renewal finds it gone.
  await r.send("DEL", `${p}sem:{s}:holders`);
  await until("signal aborted", 1_000, () => s.signal.aborted);
  assert.ok(s.signal.reason instanceof LockLostError);
  assert.equal(s.held, false);
  // Without auto-renew the lease runs out.
  const t = new Semaphore(r, "t", { limit: 1, prefix: p, ttl: 50 });
  await t.acquire();
  await sleep(80);
  assert.equal(t.signal.aborted, true);
  await assert.rejects(t.release(), { name: "LockNotHeldError" });
  // extend() lengthens the lease.
  const e = new Semaphore(r, "e", { limit: 1, prefix: p, ttl: 100 });
  await e.acquire();
  await e.extend(1_000);
  await sleep(200);
  assert.equal(e.held, true);
  await e.release();
});

test("withSemaphore: bounded concurrency, not-acquired error", async () => {
  await using r = await connect(url);
  const p = prefix();
  let inside = 0, most = 0;
  const call = withSemaphore(async function (this: Semaphore, x: number) {
    assert.equal(this.held, true);
    most = Math.max(most, ++inside);
    await sleep(5);
    inside--;
    return x + 1;
  }, { redis: r, name: "w", limit: 2, prefix: p });
  const out = await Promise.all([1, 2, 3, 4, 5, 6].map((x) => call(x)));
  assert.deepEqual(out, [2, 3, 4, 5, 6, 7]);
  assert.equal(most, 2);
  const block = new Semaphore(r, "w", { limit: 1, prefix: p });
  await block.acquire();
  const none = withSemaphore(() => 1, {
    redis: r,
    name: "w",
    limit: 1,
    prefix: p,
    wait: 0,
  });
  await assert.rejects(none(), LockNotAcquiredError);
  await block.release();
  assert.equal(await none(), 1);
});

/** Commands run inside Lua between two INFO commandstats readings. */
function insideLua(
  before: Map<string, number>,
  after: Map<string, number>,
): number {
  // Requests: the scripts, the subscription, and the test's own reads.
  const sent = new Set([
    "evalsha",
    "eval",
    "subscribe",
    "unsubscribe",
    "info",
    "zcount",
  ]);
  let n = 0;
  for (const [cmd, calls] of after) {
    if (!sent.has(cmd)) n += calls - (before.get(cmd) ?? 0);
  }
  return n;
}

test("Lua work per acquisition: 11 commands uncontended, 10 to queue, 11 to hand a permit over (10 and no PUBLISH to a waiter on the releasing client); the PTTL/PEXPIRE pairs keep each key expiring", async () => {
  await using r = await connect(url);
  await using r2 = await connect(url);
  await using admin = await connect(url);
  const p = prefix();
  const a = new Semaphore(r, "s", { limit: 1, prefix: p });
  const b = new Semaphore(r, "s", { limit: 1, prefix: p });
  const c = new Semaphore(r2, "s", { limit: 1, prefix: p });
  const d = new Semaphore(r, "s", { limit: 1, prefix: p });
  await a.acquire(); // scripts loaded
  await a.release();
  let before = await commandCalls(admin);
  for (let i = 0; i < 10; i++) {
    await a.acquire();
    await a.release();
  }
  let after = await commandCalls(admin);
  assert.equal(insideLua(before, after), 110, "acquire 6 + release 5");
  const queue = `${p}sem:{s}:queue`;
  const queued = (n: number) => async () =>
    await admin.send("ZCOUNT", queue, "-inf", "+inf") === n;
  const published = () =>
    (after.get("publish") ?? 0) - (before.get("publish") ?? 0);
  assert.equal(await a.acquire({ wait: 0 }), true);
  const cGot = c.acquire({ wait: 10_000 });
  await until("c queued", 2_000, queued(1));
  // d keeps r's subscription up, so b queues on its first try.
  const dGot = d.acquire({ wait: 10_000 });
  await until("d queued", 2_000, queued(2));
  before = await commandCalls(admin);
  const bGot = b.acquire({ wait: 10_000 });
  await until("b queued", 2_000, queued(3));
  after = await commandCalls(admin);
  assert.equal(insideLua(before, after), 10, "a queuing try");
  // a (on r) hands its permit to c, on another client: published.
  before = after;
  await a.release();
  assert.equal(await cGot, true);
  after = await commandCalls(admin);
  assert.equal(insideLua(before, after), 11, "a release handing a permit");
  assert.equal(published(), 1);
  await c.release();
  assert.equal(await dGot, true);
  // d (on r) hands its permit to b, on r too: in the reply, not published.
  before = await commandCalls(admin);
  await d.release();
  assert.equal(await bGot, true);
  after = await commandCalls(admin);
  assert.equal(
    insideLua(before, after),
    10,
    "a release handing a permit on its client",
  );
  assert.equal(published(), 0);
  await b.release();
  assert.equal(await admin.send("ZCARD", `${p}sem:{s}:holders`), 0);
});

test("a waiter on the releasing client is woken by the release's reply: FIFO with other clients' waiters kept, each woken once", async () => {
  await using r = await connect(url);
  await using r2 = await connect(url);
  await using admin = await connect(url);
  const p = prefix();
  const limit = 2;
  const queue = `${p}sem:{s}:queue`;
  const holders = [0, 1].map(() => new Semaphore(r, "s", { limit, prefix: p }));
  for (const h of holders) assert.equal(await h.acquire({ wait: 0 }), true);
  // In line, alternating clients: r, r2, r, r2.
  const order: string[] = [];
  const waiters = [r, r2, r, r2].map((c, i) => {
    const s = new Semaphore(c, "s", { limit, prefix: p, id: `w${i}` });
    return { s, name: `w${i}` };
  });
  const holding = async () =>
    (await admin.send<string[]>("ZRANGE", `${p}sem:{s}:holders`, 0, -1))
      .map((t) => t.split(":").pop()).sort();
  const got: Promise<void>[] = [];
  for (const [i, w] of waiters.entries()) {
    got.push(
      w.s.acquire({ wait: 10_000 }).then((ok) => {
        assert.equal(ok, true);
        order.push(w.name);
      }),
    );
    await until(
      `${w.name} queued`,
      2_000,
      async () => await admin.send("ZCARD", queue) === i + 1,
    );
  }
  const before = await commandCalls(admin);
  // Both permits at once (the second holder released on the same tick).
  const t0 = performance.now();
  await Promise.all(holders.map((h) => h.release()));
  await until("two woken", 2_000, () => Promise.resolve(order.length === 2));
  const took = performance.now() - t0;
  assert.ok(took < 500, `woken after ${took} ms`); // not by a 1 s look
  // The first two in line hold the permits (in whichever order they heard).
  assert.deepEqual([...order].sort(), ["w0", "w1"]);
  assert.deepEqual(await holding(), ["w0", "w1"]);
  const after = await commandCalls(admin);
  // w0 (on r) from the reply; w1 (on r2) by the one PUBLISH.
  assert.equal((after.get("publish") ?? 0) - (before.get("publish") ?? 0), 1);
  for (const w of waiters.slice(0, 2)) await w.s.release();
  await Promise.all(got);
  assert.deepEqual(order.slice(2).sort(), ["w2", "w3"]);
  assert.deepEqual(await holding(), ["w2", "w3"]);
  for (const w of waiters.slice(2)) await w.s.release();
  assert.equal(await admin.send("ZCARD", `${p}sem:{s}:holders`), 0);
  assert.equal(await admin.send("ZCARD", queue), 0);
});

test("a dead ticket at the head of the line is dropped there, never handed a permit", async () => {
  await using r = await connect(url);
  const p = prefix();
  const key = (k: string) => `${p}sem:{s}:${k}`;
  const holder = new Semaphore(r, "s", { limit: 1, prefix: p });
  assert.equal(await holder.acquire({ wait: 0 }), true);
  // A waiter that crashed in line long ago: first in line, ticket run out.
  const dead = "5000:dead:crashed";
  await r.send("ZADD", key("queue"), 0, dead);
  await r.send("ZADD", key("tickets"), 1, dead);
  const waiter = new Semaphore(r, "s", { limit: 1, prefix: p });
  const got = waiter.acquire({ wait: 5_000 });
  await until(
    "queued behind it",
    2_000,
    async () => await r.send("ZCARD", key("queue")) === 2,
  );
  const t0 = performance.now();
  await holder.release();
  assert.equal(await got, true);
  // Handed by the release (the waiter's own next look is 1 s away).
  const took = performance.now() - t0;
  assert.ok(took < 500, `took ${took} ms`);
  assert.equal(await r.send("ZSCORE", key("holders"), dead), null);
  assert.equal(await r.send("ZCARD", key("holders")), 1);
  assert.equal(await r.send("ZCARD", key("queue")), 0);
  assert.equal(await r.send("ZCARD", key("tickets")), 0);
  await waiter.release();
  assert.equal(await r.send("ZCARD", key("holders")), 0);
});

test("free permits go to the live waiters in line first, in batches, skipping dead ones", async () => {
  await using r = await connect(url);
  const p = prefix();
  const key = (k: string) => `${p}sem:{s}:${k}`;
  const [secs] = await r.send<[string, string]>("TIME");
  const later = Number(secs) * 1000 + 60_000;
  // 1200 waiters in line (every 100th one dead), none holding yet: more
  // than one batch (1000) for a script to hand.
  const queue: (string | number)[] = [], tickets: (string | number)[] = [];
  const live: string[] = [];
  for (let i = 0; i < 1200; i++) {
    const token = `5000:w${i}:fake`;
    queue.push(i + 1, token);
    tickets.push(i % 100 === 0 ? 1 : later, token);
    if (i % 100 !== 0) live.push(token);
  }
  await r.send("ZADD", key("queue"), ...queue);
  await r.send("ZADD", key("tickets"), ...tickets);
  await r.send("SET", key("seq"), 1200);
  const limit = 1500;
  const s = new Semaphore(r, "s", { limit, prefix: p });
  // Its one try (no queuing) hands 1188 permits, then takes one itself.
  assert.equal(await s.acquire({ wait: 0 }), true);
  const holders = await r.send<string[]>("ZRANGE", key("holders"), 0, -1);
  assert.equal(holders.length, live.length + 1);
  assert.deepEqual(
    holders.filter((h) => h.endsWith(":fake")).sort(),
    [...live].sort(),
  );
  assert.equal(await r.send("ZCARD", key("queue")), 0);
  assert.equal(await r.send("ZCARD", key("tickets")), 0);
  await s.release();
  // With the line all served, the permits left are taken straight away.
  const t = new Semaphore(r, "s", { limit, prefix: p });
  assert.equal(await t.acquire({ wait: 0 }), true);
  await t.release();
});

test("a name nobody uses any more leaves no key behind: a contended round's line (its seq counter too) expires with its tickets, a holder that never released with its lease", async () => {
  await using r = await connect(url);
  await using r2 = await connect(url);
  const p = prefix();
  const left = async () => await scanKeys(r, `${p}sem:*`);
  const a = new Semaphore(r, "s", { limit: 1, prefix: p, ttl: 2_000 });
  const b = new Semaphore(r2, "s", { limit: 1, prefix: p, ttl: 2_000 });
  assert.equal(await a.acquire({ wait: 0 }), true);
  const got = b.acquire({ wait: 5_000 }); // queues: a ticket and a number
  await until(
    "b queued",
    2_000,
    async () => await r.send("ZCARD", `${p}sem:{s}:queue`) === 1,
  );
  for (const k of await left()) {
    const pttl = await r.send<number>("PTTL", k);
    assert.ok(pttl > 0, `${k} has no expiry (PTTL ${pttl})`);
  }
  await a.release();
  assert.equal(await got, true);
  await b.release();
  // The tickets live 3 s; nothing of the name outlives them.
  await until(
    "every key of the name to expire",
    6_000,
    async () => (await left()).length === 0,
  );

  // A holder that never releases (a process that died holding it).
  const c = new Semaphore(r, "t", { limit: 2, prefix: p, ttl: 300 });
  assert.equal(await c.acquire({ wait: 0 }), true);
  assert.ok(await r.send<number>("PTTL", `${p}sem:{t}:holders`) > 0);
  await until(
    "the dead holder's key to expire",
    3_000,
    async () => (await left()).length === 0,
  );
});

teardown(async () => {
  await server.stop();
});
