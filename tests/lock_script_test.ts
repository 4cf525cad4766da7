/**
 * Locks in scripts: `withLock(fn, { onBusy: "skip" })` resolves to
 * `undefined` without running `fn` when the lock is held, and without
 * waiting; the default still rejects with LockNotAcquiredError. `keep`
 * leaves the lock to its TTL. `releaseOnSignal`: a real script holding a
 * lock gets SIGINT/SIGTERM, releases, and exits 130/143 (or lets the app's
 * own listener decide).
 */
import assert from "node:assert/strict";
import process from "node:process";
import { fileURLToPath } from "node:url";
import {
  connect,
  Lock,
  LockNotAcquiredError,
  LockNotHeldError,
  withLock,
} from "../mod.ts";
import { type Proc, runArgs, spawn } from "../testing/proc.ts";
import { sharedRedis, startRedis } from "../testing/redis.ts";
import { preloadScripts } from "../testing/scripts.ts";
import { teardown, test, until } from "./_harness.ts";

const server = await sharedRedis();
const redis = await connect(server.url);
/** Signal workers still running when their test ends (a failed assertion). */
const workers = new Set<Proc>();
let n = 0;
const prefix = () => `respite-test-lockscript-${Date.now()}-${n++}:`;

test('onBusy: "skip" resolves to undefined without running fn while the lock is held', async () => {
  await using r = await connect(server.url);
  const p = prefix();
  await using held = new Lock(r, "job", { prefix: p });
  assert.equal(await held.acquire({ wait: 0 }), true);
  let ran = 0;
  const job = withLock(() => ++ran, {
    redis: r,
    name: "job",
    prefix: p,
    wait: 0,
    onBusy: "skip",
  });
  const t0 = Date.now();
  assert.equal(await job(), undefined);
  assert.ok(Date.now() - t0 < 1_000);
  assert.equal(ran, 0);
  const strict = withLock(() => ++ran, {
    redis: r,
    name: "job",
    prefix: p,
    wait: 0,
  });
  await assert.rejects(strict(), LockNotAcquiredError);
  await held.release();
  assert.equal(await job(), 1);
  assert.equal(ran, 1);
});

test("onBusy: a bad value is a TypeError naming onBusy", async () => {
  await using r = await connect(server.url);
  assert.throws(
    () =>
      withLock(() => 1, {
        redis: r,
        name: "x",
        onBusy: "wait" as "skip",
      }),
    (err: unknown) => err instanceof TypeError && /onBusy/.test(err.message),
  );
});

test("keep: true leaves the key with its TTL when fn ends, and a second run is skipped", async () => {
  await using r = await connect(server.url);
  const p = prefix();
  let ran = 0;
  const job = withLock(() => ++ran, {
    redis: r,
    name: "nightly",
    prefix: p,
    ttl: 5_000,
    wait: 0,
    onBusy: "skip",
    keep: true,
  });
  assert.equal(await job(), 1);
  const key = new Lock(r, "nightly", { prefix: p }).keys.key;
  const pttl = Number(await r.send("PTTL", key));
  assert.ok(pttl > 3_000 && pttl <= 5_000, `PTTL ${pttl}`);
  assert.equal(await job(), undefined);
  assert.equal(ran, 1);
  await Lock.reset(r, "nightly", { prefix: p });
  assert.equal(await job(), 2);
  await Lock.reset(r, "nightly", { prefix: p });
});

test("Lock.release({ keep: true }) sends nothing and leaves the key; a bad keep is a TypeError", async () => {
  await using r = await connect(server.url);
  const p = prefix();
  const lock = new Lock(r, "k", { prefix: p, ttl: 4_000 });
  assert.equal(await lock.acquire({ wait: 0 }), true);
  await assert.rejects(
    lock.release({ keep: "yes" } as unknown as { keep: boolean }),
    TypeError,
  );
  assert.equal(lock.held, true);
  await lock.release({ keep: true });
  assert.equal(lock.held, false);
  assert.equal(await lock.locked(), true);
  assert.ok(Number(await r.send("PTTL", lock.keys.key)) > 2_000);
  await Lock.reset(r, "k", { prefix: p });
});

// ---------------------------------------------------------------- signals

const WORKER = fileURLToPath(
  new URL("./fixtures/signal_worker.ts", import.meta.url),
);

/** Starts the signal worker; resolves once it holds the lock (or is ready). */
async function signalWorker(
  mode: "hold" | "own" | "released" | "withLock" | "two" | "many" | "short",
  url = server.url,
  url2?: string,
): Promise<{ proc: Proc; name: string; key: string }> {
  const name = `signals:${mode}:${Date.now()}:${Math.random()}`;
  const key = new Lock(redis, name).keys.key;
  const [cmd, args] = runArgs(WORKER, [url, name, mode, ...url2 ? [url2] : []]);
  const proc = spawn(cmd, args);
  workers.add(proc);
  proc.exited.then(() => workers.delete(proc), () => workers.delete(proc));
  await until(
    `the ${mode} worker is ready`,
    20_000,
    async () => await redis.send("EXISTS", `${name}:ready`) === 1,
  );
  await redis.send("DEL", `${name}:ready`);
  if (mode !== "released" && mode !== "two" && mode !== "many") {
    assert.equal(await redis.send("EXISTS", key), 1);
  }
  return { proc, name, key };
}

test("releaseOnSignal: SIGINT and SIGTERM release the lock, then the script exits 130 / 143", async () => {
  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    for (const mode of ["hold", "withLock"] as const) {
      const w = await signalWorker(mode);
      w.proc.kill(signal as "SIGTERM");
      assert.equal(
        await w.proc.exited,
        code,
        `${mode} ${signal}: ${await w.proc.stderr()}`,
      );
      assert.equal(await redis.send("EXISTS", w.key), 0, `${mode}: released`);
    }
  }
});

test("releaseOnSignal with the app's own SIGTERM listener: released, and the app decides the exit", async () => {
  const w = await signalWorker("own");
  w.proc.kill("SIGTERM");
  assert.equal(await w.proc.exited, 0, await w.proc.stderr());
  assert.equal(await w.proc.stdout(), "app-handler\n");
  assert.equal(await redis.send("EXISTS", w.key), 0, "released");
});

test("releaseOnSignal: the listeners go with the holding (after release, SIGTERM ends the script the default way)", async () => {
  const w = await signalWorker("released");
  w.proc.kill("SIGTERM");
  assert.equal(await w.proc.exited, "SIGTERM");
});

test("releaseOnSignal: locks held at once share one listener per signal (no pile-up, no leak warning); none is left once they end, however many acquire/release rounds", async () => {
  await using r = await connect(server.url);
  const p = prefix();
  const count = () => [
    process.listenerCount("SIGINT"),
    process.listenerCount("SIGTERM"),
  ];
  const base = count();
  const locks = Array.from(
    { length: 20 },
    (_, i) => new Lock(r, `many:${i}`, { prefix: p, releaseOnSignal: true }),
  );
  for (const l of locks) assert.equal(await l.acquire({ wait: 0 }), true);
  assert.deepEqual(count(), [base[0] + 1, base[1] + 1], "one each");
  for (const l of locks) await l.release();
  assert.deepEqual(count(), base, "none left");
  const one = new Lock(r, "again", { prefix: p, releaseOnSignal: true });
  for (let i = 0; i < 30; i++) {
    assert.equal(await one.acquire({ wait: 0 }), true);
    await one.release();
  }
  // A holding that ends lost removes its listeners too.
  assert.equal(await one.acquire({ wait: 0 }), true);
  await Lock.reset(r, "again", { prefix: p });
  await assert.rejects(one.release(), LockNotHeldError);
  assert.deepEqual(count(), base, "none left after 30 rounds and a loss");
});

test("releaseOnSignal: two locks held (on two servers, the first one's release slow) and many locks: SIGTERM/SIGINT releases every one before the exit", async () => {
  const slow = await startRedis();
  try {
    await using admin2 = await connect(slow.url);
    const w = await signalWorker("two", server.url, slow.url);
    const keyA = new Lock(admin2, `${w.name}:a`).keys.key;
    const keyB = new Lock(redis, `${w.name}:b`).keys.key;
    assert.equal(await admin2.send("EXISTS", keyA), 1);
    assert.equal(await redis.send("EXISTS", keyB), 1);
    // The first lock's release waits 600 ms on its server.
    await admin2.send("CLIENT", "PAUSE", "600", "WRITE");
    w.proc.kill("SIGTERM");
    assert.equal(await w.proc.exited, 143, await w.proc.stderr());
    assert.equal(await redis.send("EXISTS", keyB), 0, "b released");
    assert.equal(await admin2.send("EXISTS", keyA), 0, "a released too");
  } finally {
    await slow.stop();
  }
  const m = await signalWorker("many");
  m.proc.kill("SIGINT" as "SIGTERM");
  assert.equal(await m.proc.exited, 130);
  assert.doesNotMatch(await m.proc.stderr(), /MaxListeners|leak/);
  for (let i = 0; i < 20; i++) {
    const key = new Lock(redis, `${m.name}:${i}`).keys.key;
    assert.equal(await redis.send("EXISTS", key), 0, `${i} released`);
  }
});

test("releaseOnSignal with Redis gone: the release fails, is reported, and the script still exits 143 within the lease", async () => {
  const own = await startRedis();
  let w;
  try {
    await using r = await connect({ url: own.url, logger: null });
    const name = `signals:gone:${Date.now()}`;
    const [cmd, args] = runArgs(WORKER, [own.url, name, "short"]);
    const proc = spawn(cmd, args);
    workers.add(proc);
    w = proc;
    await until(
      "the short worker is ready",
      20_000,
      async () => await r.send("EXISTS", `${name}:ready`) === 1,
    );
  } finally {
    await own.stop();
  }
  const t0 = performance.now();
  w.kill("SIGTERM");
  assert.equal(await w.exited, 143);
  const took = performance.now() - t0;
  assert.ok(took < 4_000, `exited after ${Math.round(took)} ms`);
  assert.match(
    await w.stderr(),
    /releasing lock signals:gone:\d+ on SIGTERM failed/,
  );
  workers.delete(w);
});

test("releaseOnSignal must be a boolean", () => {
  assert.throws(
    () => new Lock(redis, "x", { releaseOnSignal: 1 as unknown as boolean }),
    TypeError,
  );
  assert.throws(
    () =>
      withLock(() => 1, {
        redis,
        name: "x",
        releaseOnSignal: "yes" as unknown as boolean,
      }),
    TypeError,
  );
});

// ---------------------------------------------------------------- hooks

test("hooks: acquired (with the wait), released (with the hold time, kept or not), lost (with its reason)", async () => {
  const events: Record<string, unknown>[] = [];
  const hooks = {
    acquired: (e: Record<string, unknown>) =>
      events.push({ on: "acquired", ...e }),
    released: (e: Record<string, unknown>) =>
      events.push({ on: "released", ...e }),
    lost: (e: Record<string, unknown>) => events.push({ on: "lost", ...e }),
  };
  const p = prefix();
  await using r = await connect(server.url); // its subscriber closes with it
  await using other = new Lock(r, "hooked", { prefix: p });
  assert.equal(await other.acquire({ wait: 0 }), true);
  setTimeout(() => void other.release(), 100);
  const lock = new Lock(r, "hooked", { prefix: p, hooks, ttl: 5_000 });
  assert.equal(await lock.acquire({ wait: 5_000 }), true);
  await new Promise((r) => setTimeout(r, 50));
  await lock.release();
  assert.equal(events.length, 2, JSON.stringify(events));
  const [acquired, released] = events as {
    on: string;
    waited?: number;
    held?: number;
    fence?: number;
    kept?: boolean;
  }[];
  assert.equal(acquired.on, "acquired");
  assert.ok(acquired.waited! >= 80, `waited ${acquired.waited}`);
  assert.equal(typeof acquired.fence, "number");
  assert.equal(released.on, "released");
  assert.equal(released.kept, false);
  assert.ok(released.held! >= 40, `held ${released.held}`);
  events.length = 0;
  // Kept, and lost: a renewal finds another holder's token.
  assert.equal(await lock.acquire({ wait: 0 }), true);
  await lock.release({ keep: true });
  assert.deepEqual(events.map((e) => [e.on, e.kept]), [
    ["acquired", undefined],
    ["released", true],
  ]);
  await Lock.reset(r, "hooked", { prefix: p });
  events.length = 0;
  const renewing = new Lock(r, "hooked", {
    prefix: p,
    hooks,
    ttl: 300,
    autoRenew: true,
  });
  assert.equal(await renewing.acquire({ wait: 0 }), true);
  await r.send("SET", renewing.keys.key, "someone else", "PX", 5_000);
  await until("the loss is noticed", 3_000, () => events.length === 2);
  const lost = events[1] as { on: string; reason: string; error: unknown };
  assert.equal(lost.on, "lost");
  assert.equal(lost.reason, "held-by-other");
  assert.ok(lost.error === renewing.signal.reason);
  await Lock.reset(r, "hooked", { prefix: p });
});

test("hooks: renewalFailed when a renewal gets no answer (writes paused), then the lease goes on; a throwing hook is logged, the lock unharmed", async () => {
  const own = await startRedis();
  const warnings: string[] = [];
  const r = await connect({
    url: own.url,
    logger: { warn: (m) => void warnings.push(m) },
  });
  try {
    await preloadScripts(r);
    // Connected before the lock is taken, so the pause below follows the
    // acquire at once, well before the first renewal (at 500 ms).
    await using admin = await connect(own.url);
    const failed: unknown[] = [];
    const lost: string[] = [];
    const lock = new Lock(r, "paused", {
      ttl: 1_500,
      autoRenew: true,
      hooks: {
        renewalFailed: (e) => failed.push(e.error),
        lost: (e) => lost.push(e.reason),
        acquired: () => {
          throw new Error("hook bug");
        },
      },
    });
    const acquiredAt = performance.now();
    assert.equal(await lock.acquire({ wait: 0 }), true);
    assert.deepEqual(warnings, [
      "respite: the Lock paused acquired hook threw: Error: hook bug",
    ]);
    // The first renewal (at 500 ms) waits at most half the lease left
    // (about 490 ms): paused for 1100 ms, it gets no answer in time; a retry
    // after the pause renews before the lease ends (about 1480 ms).
    await admin.send("CLIENT", "PAUSE", "1100", "WRITE");
    const pausedAfter = performance.now() - acquiredAt;
    // A failure says whether this process was starved (a timer late by more
    // than the 600 ms between the renewal's deadline and the pause's end
    // lets the renewal succeed), so a flake and a defect can be told apart.
    let lag = 0;
    let tick = performance.now();
    const lagTimer = setInterval(() => {
      const now = performance.now();
      lag = Math.max(lag, now - tick - 5);
      tick = now;
    }, 5);
    try {
      await until("a renewal failed", 3_000, () => failed.length > 0);
    } catch (e) {
      throw new Error(
        `${(e as Error).message}: pause sent ${
          Math.round(pausedAfter)
        } ms after the acquire began, lock held: ${lock.held}, lost: [${lost}], ` +
          `longest event-loop lag ${Math.round(lag)} ms`,
      );
    } finally {
      clearInterval(lagTimer);
    }
    assert.equal((failed[0] as Error).name, "TimeoutError");
    await new Promise((res) => setTimeout(res, 1_200));
    assert.equal(lock.held, true, "renewed after the pause");
    await lock.release();
  } finally {
    await r.close();
    await own.stop();
  }
});

test("hooks: an async hook that rejects is logged like one that throws (no unhandled rejection); each hook runs once per event", async () => {
  const warnings: string[] = [];
  await using r = await connect({
    url: server.url,
    logger: { warn: (m) => void warnings.push(m) },
  });
  await preloadScripts(r);
  const p = prefix();
  const calls: string[] = [];
  const lock = new Lock(r, "async-hooks", {
    prefix: p,
    ttl: 300,
    autoRenew: true,
    hooks: {
      acquired: async () => {
        calls.push("acquired");
        await Promise.resolve();
        throw new Error("async acquired bug");
      },
      released: () => {
        calls.push("released");
        return Promise.reject(new Error("async released bug"));
      },
      lost: async () => {
        calls.push("lost");
        await new Promise((res) => setTimeout(res, 10));
        throw new Error("async lost bug");
      },
    },
  });
  assert.equal(await lock.acquire({ wait: 0 }), true);
  assert.equal(lock.held, true, "the lock is unharmed");
  await lock.release();
  assert.equal(await lock.locked(), false);
  // Lost (a renewal finds another holder's token), then released by hand:
  // "lost" once, and no second event for the release that finds it taken.
  assert.equal(await lock.acquire({ wait: 0 }), true);
  await r.send("SET", lock.keys.key, "someone else", "PX", 5_000);
  await until("the loss is noticed", 3_000, () => calls.includes("lost"));
  await assert.rejects(lock.release(), LockNotHeldError);
  await new Promise((res) => setTimeout(res, 50)); // the rejections settle
  assert.deepEqual(calls, ["acquired", "released", "acquired", "lost"]);
  assert.deepEqual(warnings.filter((w) => w.includes("hook")), [
    "respite: the Lock async-hooks acquired hook rejected: Error: async acquired bug",
    "respite: the Lock async-hooks released hook rejected: Error: async released bug",
    "respite: the Lock async-hooks acquired hook rejected: Error: async acquired bug",
    "respite: the Lock async-hooks lost hook rejected: Error: async lost bug",
  ]);
  await Lock.reset(r, "async-hooks", { prefix: p });
});

test("hooks must be an object of known callbacks", () => {
  for (const bad of [null, 1, { acquire: () => {} }, { lost: 1 }]) {
    assert.throws(
      () => new Lock(redis, "x", { hooks: bad as never }),
      TypeError,
      JSON.stringify(bad),
    );
    assert.throws(
      () => withLock(() => 1, { redis, name: "x", hooks: bad as never }),
      TypeError,
    );
  }
});

teardown(async () => {
  for (const w of workers) w.kill("SIGKILL");
  await redis.close();
  await server.stop();
});
