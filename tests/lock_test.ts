import assert from "node:assert/strict";
import {
  connect,
  Lock,
  LockLostError,
  LockNotAcquiredError,
  LockNotHeldError,
  type RedisClient,
  TimeoutError,
  withLock,
} from "../mod.ts";
import {
  commandCalls,
  type RedisServer,
  scanKeys,
  sharedRedis,
  startRedis,
} from "../testing/redis.ts";
import { preloadScripts } from "../testing/scripts.ts";
import { sleep, teardown, test, within } from "./_harness.ts";

const server = await sharedRedis();
const url = server.url;
let n = 0;
/** A fresh prefix per test, so tests never see each other's keys. */
const prefix = () => `respite-test-lock-${Date.now()}-${n++}:`;

const now = () => performance.now();

/**
 * A fence counter ahead of the server's clock (2^52 µs, the year 2112): from
 * it, tokens are exactly counter + 1, so a test can count them.
 */
const AHEAD = 2 ** 52;

test("acquire, owner, locked, fence, release; the key is gone after release", async () => {
  await using r = await connect(url);
  const p = prefix();
  const a = new Lock(r, "job", { prefix: p, id: "alice", ttl: 5_000 });
  const b = new Lock(r, "job", { prefix: p, id: "bob", ttl: 5_000 });
  assert.equal(a.keys.key, `${p}lock:{job}`);
  assert.equal(await a.locked(), false);
  assert.equal(await a.owner(), null);
  assert.equal(a.fence, null);
  await r.send("SET", a.keys.fence, String(AHEAD));
  assert.equal(await a.acquire({ wait: 0 }), true);
  assert.equal(a.held, true);
  assert.equal(await b.locked(), true);
  assert.equal(await b.owner(), "alice");
  const pttl = await r.send<number>("PTTL", a.keys.key);
  assert.ok(pttl > 4_000 && pttl <= 5_000, `pttl ${pttl}`);
  assert.equal(await b.acquire({ wait: 0 }), false);
  const f1 = a.fence!;
  assert.equal(
    f1,
    AHEAD + 1,
    "counter + 1 when the counter is ahead of the clock",
  );
  await a.release();
  assert.equal(a.held, false);
  assert.equal(await r.send("EXISTS", a.keys.key), 0);
  assert.equal(await b.acquire({ wait: 0 }), true);
  assert.equal(b.fence, f1 + 1, "the next holder gets the next token");
  assert.equal(await a.owner(), "bob");
  // A failed attempt consumes no token.
  assert.equal(await a.acquire({ wait: 0 }), false);
  await b.release();
  assert.equal(await a.acquire({ wait: 0 }), true);
  assert.equal(a.fence, f1 + 2);
  // Not reentrant: a second acquire on the same object is a usage error.
  await assert.rejects(a.acquire({ wait: 0 }), TypeError);
  await a.release();
  // The fencing counter is the one key that stays (by design).
  assert.deepEqual(await scanKeys(r, `${p}*`), [`${p}lock:{job}:fence`]);
});

test("fencing: false leaves no fence key and fence is null; fencing locks on other names still count up", async () => {
  await using r = await connect(url);
  const p = prefix();
  const a = new Lock(r, "nofence", { prefix: p, fencing: false, ttl: 5_000 });
  const b = new Lock(r, "nofence", { prefix: p, fencing: false, ttl: 5_000 });
  const fenced = new Lock(r, "fenced", { prefix: p, ttl: 5_000 });
  await r.send("SET", fenced.keys.fence, String(AHEAD));
  let first: number | undefined;
  for (let i = 1; i <= 3; i++) {
    assert.equal(await a.acquire({ wait: 0 }), true);
    assert.equal(a.fence, null);
    assert.equal(await r.send("EXISTS", a.keys.fence), 0);
    // Still a lock: a failed attempt waits out the holder's lease.
    assert.equal(await b.acquire({ wait: 0 }), false);
    const t0 = now();
    const waited = b.acquire({ wait: 2_000 });
    await sleep(20);
    await a.release();
    assert.equal(await waited, true);
    assert.ok(now() - t0 < 1_000, "woken by the release");
    assert.equal(b.fence, null);
    await b.release();
    assert.equal(await fenced.acquire({ wait: 0 }), true);
    first ??= fenced.fence! - (i - 1);
    assert.equal(
      fenced.fence,
      first + i - 1,
      "the fencing lock's counter counts up",
    );
    await fenced.release();
  }
  // An unfenced waiter gets the holder's lease from a failed attempt.
  const short = new Lock(r, "nofence", { prefix: p, fencing: false, ttl: 100 });
  assert.equal(await short.acquire({ wait: 0 }), true);
  const t1 = now();
  assert.equal(await a.acquire({ wait: 2_000 }), true);
  const took = now() - t1;
  assert.ok(took >= 80 && took < 600, `acquired after ${took} ms`);
  await a.release();
  assert.equal(await r.send("EXISTS", a.keys.fence), 0);
  assert.deepEqual(await scanKeys(r, `${p}*`), [`${p}lock:{fenced}:fence`]);
  // withLock passes it through.
  const f = withLock(function (this: Lock) {
    return this.fence;
  }, { redis: r, name: "nofence", prefix: p, fencing: false });
  assert.equal(await f(), null);
  assert.deepEqual(await scanKeys(r, `${p}*`), [`${p}lock:{fenced}:fence`]);
  assert.equal(a.fencing, false);
  assert.equal(fenced.fencing, true);
});

test("await using releases the lock; a lock that was never acquired disposes quietly", async () => {
  await using r = await connect(url);
  const p = prefix();
  {
    await using lock = new Lock(r, "disposed", { prefix: p });
    assert.equal(await lock.acquire(), true);
    assert.equal(await lock.locked(), true);
  }
  assert.equal(await r.send("EXISTS", `${p}lock:{disposed}`), 0);
  {
    await using holder = new Lock(r, "disposed", { prefix: p });
    await using other = new Lock(r, "disposed", { prefix: p });
    assert.equal(await holder.acquire(), true);
    assert.equal(await other.acquire({ wait: 0 }), false);
  }
  assert.equal(await r.send("EXISTS", `${p}lock:{disposed}`), 0);
});

test("bad input throws TypeError/RangeError and writes nothing to Redis", async () => {
  await using r = await connect(url);
  const p = prefix();
  const before = await commandCalls(r);
  const bad: Array<[() => unknown, typeof TypeError | typeof RangeError]> = [
    [() => new Lock(r, "", { prefix: p }), TypeError],
    [() => new Lock(r, 42 as unknown as string, { prefix: p }), TypeError],
    [() => new Lock(r, undefined as unknown as string), TypeError],
    [() => new Lock(r, "x", { ttl: 0 }), RangeError],
    [() => new Lock(r, "x", { ttl: -5 }), RangeError],
    [() => new Lock(r, "x", { ttl: NaN }), RangeError],
    [() => new Lock(r, "x", { ttl: 1.5 }), RangeError],
    [() => new Lock(r, "x", { ttl: Infinity }), RangeError],
    [() => new Lock(r, "x", { ttl: "100" as unknown as number }), TypeError],
    [() => new Lock({} as RedisClient, "x"), TypeError],
    [() => new Lock(null as unknown as RedisClient, "x"), TypeError],
    [() => new Lock(r, "x", { prefix: "a{b" }), TypeError],
    [() => new Lock(r, "x", { id: 7 as unknown as string }), TypeError],
    [() => new Lock(r, "x", { autoRenew: 1 as unknown as boolean }), TypeError],
    [() => new Lock(r, "x", { fencing: 0 as unknown as boolean }), TypeError],
    [
      () => new Lock(r, "x", { fencing: "false" as unknown as boolean }),
      TypeError,
    ],
    [
      () =>
        withLock(() => 1, {
          redis: r,
          name: "x",
          fencing: null as unknown as boolean,
        }),
      TypeError,
    ],
    [() => withLock(() => 1, { redis: r, name: "" }), TypeError],
    [() => withLock(() => 1, { redis: r, name: "x", ttl: 0 }), RangeError],
    [() => withLock(() => 1, { redis: r, name: "x", wait: -1 }), RangeError],
    [() => withLock(() => 1, { redis: r, name: "x", wait: NaN }), RangeError],
    [
      () =>
        withLock(() => 1, { redis: "x" as unknown as RedisClient, name: "x" }),
      TypeError,
    ],
    [
      () => withLock(() => 1, { redis: r, name: () => "x", ttl: 2.5 }),
      RangeError,
    ],
  ];
  for (const [f, E] of bad) assert.throws(f, E, String(f));
  const lock = new Lock(r, "x", { prefix: p });
  await assert.rejects(lock.acquire({ wait: -1 }), RangeError);
  await assert.rejects(lock.acquire({ wait: NaN }), RangeError);
  await assert.rejects(
    lock.acquire({ wait: "1" as unknown as number }),
    TypeError,
  );
  await assert.rejects(
    lock.acquire({ signal: {} as AbortSignal }),
    TypeError,
  );
  await assert.rejects(lock.extend(0), RangeError);
  await assert.rejects(lock.release(), (e: unknown) => {
    assert.ok(e instanceof LockNotHeldError);
    assert.equal(e.reason, "not-acquired");
    return true;
  });
  const f = withLock((_s: string) => 1, { redis: r, name: (s) => s });
  await assert.rejects(f(""), TypeError);
  await assert.rejects(Lock.reset(r, ""), TypeError);
  await assert.rejects(Lock.resetAll(r, { prefix: "{" }), TypeError);
  const after = await commandCalls(r);
  for (
    const cmd of [
      "eval",
      "evalsha",
      "set",
      "get",
      "del",
      "incr",
      "publish",
      "scan",
      "exists",
    ]
  ) {
    assert.equal(after.get(cmd), before.get(cmd), `${cmd} was called`);
  }
  assert.deepEqual(await scanKeys(r, `${p}*`), []);
});

/** The part of a key Redis Cluster hashes: the first {…} with something in it, else the key. */
function hashTag(key: string): string {
  const open = key.indexOf("{");
  if (open === -1) return key;
  const close = key.indexOf("}", open + 1);
  if (close === -1 || close === open + 1) return key;
  return key.slice(open + 1, close);
}

test("a lock name starting with '}' is rejected: the lock key and its fence key must share a hash tag", async () => {
  await using r = await connect(url);
  const p = prefix();
  for (const name of ["}", "}x", "}}"]) {
    assert.throws(() => new Lock(r, name, { prefix: p }), TypeError, name);
    await assert.rejects(Lock.reset(r, name, { prefix: p }), TypeError);
    assert.throws(
      () => withLock(() => {}, { redis: r, name, prefix: p }),
      TypeError,
    );
    const byArg = withLock(() => {}, { redis: r, name: () => name, prefix: p });
    await assert.rejects(byArg(), TypeError);
  }
  assert.deepEqual(await scanKeys(r, `${p}*`), [], "nothing was written");
  // Other braces are fine: every key of the lock keeps the same tag.
  for (const name of ["a{b", "a}b", "{a}", "x}", '["k",{"id":1}]']) {
    const lock = new Lock(r, name, { prefix: p });
    assert.equal(lock.keys.key, `${p}lock:{${name}}`);
    assert.equal(hashTag(lock.keys.key), hashTag(lock.keys.fence), name);
    assert.notEqual(hashTag(lock.keys.key), lock.keys.key, name);
    assert.ok(await lock.acquire({ wait: 0 }), name);
    assert.ok(lock.fence! >= 1);
    await lock.release();
  }
});

test("release/extend by a non-owner and after expiry fail and leave the lock as it was", async () => {
  await using r = await connect(url);
  const p = prefix();
  const a = new Lock(r, "res", { prefix: p, ttl: 60 });
  assert.ok(await a.acquire({ wait: 0 }));
  const fenceA = a.fence;
  await sleep(90); // a's lease runs out
  assert.equal(a.signal.aborted, true);
  assert.equal((a.signal.reason as LockLostError).reason, "expired");
  const b = new Lock(r, "res", { prefix: p, ttl: 10_000, id: "bob" });
  assert.ok(await b.acquire({ wait: 0 }));
  const value = await r.send<string>("GET", b.keys.key);
  const pttl = await r.send<number>("PTTL", b.keys.key);
  // a is not the owner any more: release fails with held-by-other.
  await assert.rejects(a.release(), (e: unknown) => {
    assert.ok(e instanceof LockNotHeldError);
    assert.equal(e.reason, "held-by-other");
    assert.equal(e.name, "LockNotHeldError");
    return true;
  });
  // extend by a non-owner: a fresh Lock object that never acquired.
  const c = new Lock(r, "res", { prefix: p });
  await assert.rejects(c.extend(50_000), (e: unknown) => {
    assert.ok(e instanceof LockNotHeldError);
    assert.equal(e.reason, "not-acquired");
    return true;
  });
  await assert.rejects(c.release(), LockNotHeldError);
  assert.equal(await r.send("GET", b.keys.key), value, "holder untouched");
  const pttl2 = await r.send<number>("PTTL", b.keys.key);
  assert.ok(pttl2 <= pttl && pttl2 > 9_000, `pttl ${pttl} -> ${pttl2}`);
  assert.ok(b.fence! > fenceA!);

  // A holding whose key another owner took: extend finds held-by-other and
  // aborts the holder's signal; the other owner's lock stays.
  const d = new Lock(r, "res2", { prefix: p, ttl: 10_000 });
  assert.ok(await d.acquire({ wait: 0 }));
  await r.send("SET", d.keys.key, "someone-else", "PX", 10_000);
  await assert.rejects(d.extend(), (e: unknown) => {
    assert.ok(e instanceof LockNotHeldError);
    assert.equal(e.reason, "held-by-other");
    return true;
  });
  assert.equal(d.signal.aborted, true);
  assert.equal((d.signal.reason as LockLostError).reason, "held-by-other");
  assert.equal(await r.send("GET", d.keys.key), "someone-else");
  await assert.rejects(d.release(), LockNotHeldError);
  assert.equal(await r.send("GET", d.keys.key), "someone-else");

  // After expiry with nobody else: release and extend say "expired".
  const e = new Lock(r, "res3", { prefix: p, ttl: 5_000 });
  assert.ok(await e.acquire({ wait: 0 }));
  await r.send("DEL", e.keys.key);
  await assert.rejects(e.extend(), (err: unknown) => {
    assert.ok(err instanceof LockNotHeldError);
    assert.equal(err.reason, "expired");
    return true;
  });
  const e2 = new Lock(r, "res4", { prefix: p, ttl: 5_000 });
  assert.ok(await e2.acquire({ wait: 0 }));
  await r.send("DEL", e2.keys.key);
  await assert.rejects(e2.release(), (err: unknown) => {
    assert.ok(err instanceof LockNotHeldError);
    assert.equal(err.reason, "expired");
    return true;
  });
  assert.equal(await r.send("EXISTS", e2.keys.key), 0);
  await b.release();
});

test("extend(ttl) lengthens the lease and keeps the signal quiet", async () => {
  await using r = await connect(url);
  const lock = new Lock(r, "ext", { prefix: prefix(), ttl: 80 });
  assert.ok(await lock.acquire());
  await lock.extend(400);
  await sleep(150); // past the original 80 ms lease
  assert.equal(lock.signal.aborted, false);
  assert.equal(await lock.locked(), true);
  const pttl = await r.send<number>("PTTL", lock.keys.key);
  assert.ok(pttl > 100 && pttl <= 400, `pttl ${pttl}`);
  await lock.release();
  assert.equal(lock.signal.aborted, false, "a release does not abort");
});

test("a renewal sent after extend() and answered after it does not stretch the local lease past the key's", async () => {
  // BLPOP stalls this connection on purpose: a client allowing it.
  await using r = await connect({ url, blocking: true });
  await using other = await connect(url);
  const p = prefix();
  const lock = new Lock(r, "race", { prefix: p, ttl: 300, autoRenew: true });
  // Watch the ttl of every EXTEND_SCRIPT run this client sends (1 key, ARGV
  // value and ttl), to know when the auto-renewal went out.
  const ttls: number[] = [];
  let renewalSent!: () => void;
  const renewal = new Promise<void>((res) => renewalSent = res);
  const command = r.command.bind(r);
  r.command = ((args, opts) => {
    if (
      (args[0] === "EVALSHA" || args[0] === "EVAL") && args[2] === 1 &&
      args.length === 6 && typeof args[5] === "number"
    ) {
      ttls.push(args[5]);
      if (args[5] === 300 && ttls.includes(60_000)) renewalSent();
    }
    return command(args, opts);
  }) as typeof r.command;
  assert.ok(await lock.acquire());
  await lock.extend(); // Redis has EXTEND_SCRIPT cached now: no EVAL retries
  ttls.length = 0;
  // Stall this client's connection: the extend, then the renewal (ttl/3 =
  // 100 ms later) queue behind the BLPOP; Redis runs PEXPIRE 60000, then
  // PEXPIRE 300, and the replies come back in that order.
  const gate = `${p}gate`;
  const blocked = r.send("BLPOP", gate, 0);
  const extended = lock.extend(60_000);
  await renewal;
  await other.send("LPUSH", gate, "go");
  await blocked;
  await extended;
  assert.deepEqual(ttls, [60_000, 300]);
  const pttl = await other.send<number>("PTTL", lock.keys.key);
  assert.ok(
    pttl > 0 && pttl <= 300,
    `Redis ran the renewal last: pttl ${pttl}`,
  );
  // Past that 300 ms lease: the holder may believe it holds the lock only if
  // Redis still has its key.
  await sleep(450);
  const exists = await other.send<number>("EXISTS", lock.keys.key);
  assert.ok(
    !lock.held || exists === 1,
    "the Lock says held, but its key expired in Redis",
  );
  assert.equal(lock.held, !lock.signal.aborted);
  if (lock.held) {
    // The next renewal used the extended length again.
    const after = await other.send<number>("PTTL", lock.keys.key);
    assert.ok(after > 1_000, `pttl ${after}`);
    await lock.release();
  }
});

test("auto-renewal keeps a 300 ms lock for 2 s; the key is gone right after release; timers stop", async () => {
  await using r = await connect(url);
  const p = prefix();
  const lock = new Lock(r, "renew", { prefix: p, ttl: 300, autoRenew: true });
  const other = new Lock(r, "renew", { prefix: p });
  assert.ok(await lock.acquire());
  const until = now() + 2_000;
  while (now() < until) {
    await sleep(100);
    assert.equal(await other.acquire({ wait: 0 }), false, "still held");
    const pttl = await r.send<number>("PTTL", lock.keys.key);
    assert.ok(pttl > 0 && pttl <= 300, `pttl ${pttl}`);
  }
  assert.equal(lock.signal.aborted, false);
  await lock.release();
  assert.equal(await r.send("EXISTS", lock.keys.key), 0);
  // The sanitizers (Deno) fail this test if a renewal timer is left running;
  // on every runtime, no renewal may recreate the key after release.
  await sleep(250);
  assert.equal(await r.send("EXISTS", lock.keys.key), 0);
});

test("auto-renewal surfaces loss: key deleted (expired), key taken (held-by-other)", async () => {
  await using r = await connect(url);
  const p = prefix();
  const a = new Lock(r, "gone", { prefix: p, ttl: 150, autoRenew: true });
  assert.ok(await a.acquire());
  assert.equal(await Lock.reset(r, "gone", { prefix: p }), true);
  const t0 = now();
  await new Promise((res) => a.signal.addEventListener("abort", res));
  assert.ok(now() - t0 < 150, "noticed at the next renewal (ttl/3)");
  assert.ok(a.signal.reason instanceof LockLostError);
  assert.equal(a.signal.reason.reason, "expired");
  assert.equal(a.fence, null);
  assert.equal(a.held, false);

  const b = new Lock(r, "taken", { prefix: p, ttl: 150, autoRenew: true });
  assert.ok(await b.acquire());
  await r.send("SET", b.keys.key, "intruder", "PX", 5_000);
  await new Promise((res) => b.signal.addEventListener("abort", res));
  assert.equal((b.signal.reason as LockLostError).reason, "held-by-other");
  await assert.rejects(b.release(), LockNotHeldError);
  assert.equal(await r.send("GET", b.keys.key), "intruder");
  await r.send("DEL", b.keys.key);
  // A lost Lock object can acquire again.
  assert.ok(await b.acquire({ wait: 0 }));
  assert.equal(b.signal.aborted, false, "a new holding, a new signal");
  await b.release();
});

test("auto-renewal that cannot reach Redis aborts the signal (unreachable) before the lease runs out", async () => {
  const own = await startRedis();
  try {
    await using r = await connect({ url: own.url, commandTimeout: 5_000 });
    const lock = new Lock(r, "unreachable", { ttl: 300, autoRenew: true });
    assert.ok(await lock.acquire());
    const t0 = now();
    own.signal("SIGSTOP"); // Redis stops answering
    try {
      await new Promise((res) => lock.signal.addEventListener("abort", res));
    } finally {
      own.signal("SIGCONT");
    }
    const took = now() - t0;
    assert.ok(took <= 300 + 50, `aborted after ${took} ms`);
    const reason = lock.signal.reason as LockLostError;
    assert.ok(reason instanceof LockLostError);
    assert.equal(reason.reason, "unreachable");
    assert.ok(reason.cause !== undefined, "the renewal error is the cause");
    await assert.rejects(lock.extend(), LockNotHeldError);
    await lock.release().catch(() => {});
  } finally {
    await own.stop();
  }
});

test("handoff: a release wakes a waiter on another client at once (not a timer)", async () => {
  await using r1 = await connect(url);
  await using r2 = await connect(url);
  const p = prefix();
  const rounds = 30;
  const handoffs: number[] = [];
  for (let i = 0; i < rounds; i++) {
    // ttl 30 s: a waiter that polled or slept until the holder's PTTL would
    // take up to 30 s; one woken by the release takes about a round trip.
    const holder = new Lock(r1, "handoff", { prefix: p, ttl: 30_000 });
    const waiter = new Lock(r2, "handoff", { prefix: p, ttl: 30_000 });
    assert.ok(await holder.acquire({ wait: 0 }));
    const got = waiter.acquire({ wait: 10_000 });
    await sleep(5); // the waiter has tried, failed and is asleep
    assert.equal(await holder.locked(), true);
    const t0 = now();
    await holder.release();
    assert.equal(await got, true);
    handoffs.push(now() - t0);
    await waiter.release();
  }
  handoffs.sort((a, b) => a - b);
  const median = handoffs[rounds >> 1];
  const worst = handoffs[rounds - 1];
  console.log(
    `handoff across clients: median ${median.toFixed(2)} ms, worst ${
      worst.toFixed(2)
    } ms`,
  );
  assert.ok(median < 5, `median handoff ${median} ms`);
  assert.ok(worst < 100, `worst handoff ${worst} ms`);
});

test("5,000 contended lock/unlock cycles leave no channel, subscriber or key behind", async () => {
  await using r1 = await connect(url);
  await using r2 = await connect(url);
  const p = prefix();
  const cycles = 5_000;
  let done = 0;
  // A counter ahead of the server's clock counts up by one per token (a
  // token is max(counter + 1, clock in µs)): from AHEAD, its value is AHEAD
  // plus the number of tokens.
  await r1.send("SET", `${p}lock:{churn}:fence`, String(AHEAD));
  let inside = 0;
  const worker = async (r: RedisClient) => {
    const lock = new Lock(r, "churn", { prefix: p, ttl: 10_000 });
    while (done < cycles) {
      assert.ok(await lock.acquire({ wait: 10_000 }));
      assert.equal(++inside, 1, "two holders at once");
      done++;
      inside--;
      await lock.release();
    }
  };
  // 4 workers on each of two clients: local queues and cross-client wakes.
  await Promise.all([
    ...Array.from({ length: 4 }, () => worker(r1)),
    ...Array.from({ length: 4 }, () => worker(r2)),
  ]);
  assert.ok(done >= cycles);
  await sleep(20); // let the last UNSUBSCRIBEs land
  assert.equal(r1.subscriptions, 0);
  assert.equal(r2.subscriptions, 0);
  const wake = `${p}lock:{churn}:wake`;
  assert.deepEqual(await r1.send("PUBSUB", "CHANNELS", `${p}*`), []);
  assert.deepEqual(await r1.send("PUBSUB", "NUMSUB", wake), [wake, 0]);
  assert.deepEqual(await scanKeys(r1, `${p}*`), [`${p}lock:{churn}:fence`]);
  const fence = Number(await r1.send("GET", `${p}lock:{churn}:fence`));
  assert.equal(fence, AHEAD + done, "one token per acquisition");
});

test("SCRIPT FLUSH mid-run: exactly one warning per script, every operation succeeds", async () => {
  await using r = await connect(url);
  // The server has the scripts to begin with (as after earlier tests, or
  // when this test runs alone), so the only losses are the flushes below.
  await preloadScripts(r);
  const p = prefix();
  const warnings: string[] = [];
  const logger = { warn: (m: string) => warnings.push(m) };
  const locks = Array.from(
    { length: 4 },
    (_, i) => new Lock(r, `flush${i % 2}`, { prefix: p, logger, ttl: 5_000 }),
  );
  let ops = 0;
  // Set below: the ops count at which a worker sends SCRIPT FLUSH.
  let flushAt = Infinity;
  let flushed: Promise<unknown> | undefined;
  const run = async (l: Lock, cycles: number) => {
    for (let i = 0; i < cycles; i++) {
      assert.equal(await l.acquire({ wait: 2_000 }), true);
      await l.extend();
      await l.release();
      ops += 3;
      // Not awaited: the other workers' commands are in flight around it.
      if (ops >= flushAt && flushed === undefined) {
        flushed = r.send("SCRIPT", "FLUSH");
      }
    }
  };
  await Promise.all(locks.map((l) => run(l, 3)));
  assert.deepEqual(warnings, [], "a server that has the scripts: no warning");
  // Flush mid-run, after 20 of the 160 cycles, while the four workers have
  // commands in flight (a count, not a sleep: a slow machine cannot move it).
  flushAt = 36 + 60;
  await Promise.all(locks.map((l) => run(l, 40)));
  assert.ok(flushed !== undefined, "flushed mid-run");
  assert.equal(await flushed, "OK");
  assert.equal(ops, 36 + 480, "every operation succeeded");
  assert.deepEqual(warnings.sort(), [
    "ACQUIRE_SCRIPT not cached.",
    "EXTEND_SCRIPT not cached.",
    "UNLOCK_SCRIPT not cached.",
  ]);
  await r.send("SCRIPT", "FLUSH");
  await Promise.all(locks.map((l) => run(l, 2)));
  assert.equal(warnings.length, 6, "a second loss warns again, once each");
});

test("fencing tokens strictly increase across holders, clients and a reset", async () => {
  await using r1 = await connect(url);
  await using r2 = await connect(url);
  const p = prefix();
  const fences: number[] = [];
  const worker = async (r: RedisClient, cycles: number) => {
    const lock = new Lock(r, "fence", { prefix: p });
    for (let i = 0; i < cycles; i++) {
      assert.ok(await lock.acquire({ wait: 5_000 }));
      fences.push(lock.fence!);
      if (i === 10) {
        await Lock.reset(r, "fence", { prefix: p });
        await assert.rejects(lock.release(), LockNotHeldError);
      } else await lock.release();
    }
  };
  await Promise.all([worker(r1, 50), worker(r2, 50), worker(r2, 50)]);
  assert.equal(fences.length, 150);
  for (let i = 1; i < fences.length; i++) {
    assert.ok(
      fences[i] > fences[i - 1],
      `token ${fences[i]} after ${fences[i - 1]}`,
    );
  }
});

test("signal aborts a waiting acquire at once (head and queued waiters); an aborted signal sends nothing", async () => {
  await using r = await connect(url);
  const p = prefix();
  const holder = new Lock(r, "abort", { prefix: p, ttl: 30_000 });
  assert.ok(await holder.acquire());
  const ac = new AbortController();
  const head = new Lock(r, "abort", { prefix: p });
  const queued = new Lock(r, "abort", { prefix: p });
  const a = head.acquire({ signal: ac.signal });
  const b = queued.acquire({ signal: ac.signal, wait: 60_000 });
  const results = [a, b].map((x) => x.then(() => now(), () => now()));
  await sleep(30);
  const t0 = now();
  ac.abort(new Error("stop waiting"));
  await assert.rejects(a, /stop waiting/);
  await assert.rejects(b, /stop waiting/);
  for (const t of await Promise.all(results)) {
    assert.ok(t - t0 < 20, `rejected ${t - t0} ms after the abort`);
  }
  const before = await commandCalls(r);
  const c = new Lock(r, "abort", { prefix: p });
  await assert.rejects(
    c.acquire({ signal: AbortSignal.abort() }),
    (e: unknown) => {
      assert.equal((e as Error).name, "AbortError");
      return true;
    },
  );
  const after = await commandCalls(r);
  assert.equal(after.get("evalsha"), before.get("evalsha"));
  await holder.release();
  assert.equal(r.subscriptions, 0, "the waiters unsubscribed");
  // The aborted waiters did not take the lock behind our back.
  assert.equal(await holder.locked(), false);
});

test("wait timeouts are accurate (head and queued waiters)", async () => {
  await using r = await connect(url);
  const p = prefix();
  const holder = new Lock(r, "wait", { prefix: p, ttl: 30_000 });
  assert.ok(await holder.acquire());
  for (const wait of [50, 200]) {
    const locks = [0, 1, 2].map(() => new Lock(r, "wait", { prefix: p }));
    const t0 = now();
    const got = await Promise.all(
      locks.map((l) =>
        l.acquire({ wait }).then((ok) => [ok, now() - t0] as const)
      ),
    );
    for (const [ok, took] of got) {
      assert.equal(ok, false);
      assert.ok(took >= wait - 1, `returned after ${took} ms, wait ${wait}`);
      // Generous for a shared 2-core machine, far below the 30 s ttl.
      assert.ok(took < wait + 25, `returned after ${took} ms, wait ${wait}`);
    }
  }
  // wait: 0 tries once, without subscribing.
  const t0 = now();
  assert.equal(
    await new Lock(r, "wait", { prefix: p }).acquire({ wait: 0 }),
    false,
  );
  assert.ok(now() - t0 < 20);
  // A waiter re-checks when the holder's lease runs out, even with no release.
  const short = new Lock(r, "short", { prefix: p, ttl: 100 });
  assert.ok(await short.acquire());
  const next = new Lock(r, "short", { prefix: p });
  const t1 = now();
  assert.equal(await next.acquire({ wait: 2_000 }), true);
  const took = now() - t1;
  assert.ok(took >= 80 && took < 150, `acquired after ${took} ms`);
  await next.release();
  await holder.release();
});

test("acquire() keeps to wait and signal while Redis is down or stopped; the abandoned tries leave no lock behind", async () => {
  const own = await startRedis();
  try {
    await using r = await connect(own.url);
    const p = prefix();
    const lock = new Lock(r, "down", { prefix: p, ttl: 30_000 });
    assert.ok(await lock.acquire()); // Redis has ACQUIRE_SCRIPT cached now
    await lock.release();

    // Stopped (SIGSTOP): the tries are written and get no answer.
    own.signal("SIGSTOP");
    let t0 = now();
    let got: boolean;
    try {
      got = await within(lock.acquire({ wait: 200 }), 2_000, "acquire()");
    } finally {
      own.signal("SIGCONT");
    }
    let took = now() - t0;
    assert.equal(got, false);
    assert.ok(took >= 199 && took < 300, `returned after ${took} ms`);
    // Redis ran the abandoned try after all: it was released behind it.
    await r.send("PING");
    assert.equal(await r.send("EXISTS", lock.keys.key), 0);

    // Down (killed): the tries wait in the client's reconnect queue.
    await own.stop();
    t0 = now();
    got = await within(lock.acquire({ wait: 200 }), 2_000, "acquire()");
    took = now() - t0;
    assert.equal(got, false);
    assert.ok(took >= 199 && took < 300, `returned after ${took} ms`);
    const ac = new AbortController();
    const waiting = lock.acquire({ signal: ac.signal });
    const settled = waiting.then(() => now(), () => now());
    await sleep(50);
    t0 = now();
    ac.abort(new Error("stop waiting"));
    await assert.rejects(within(waiting, 2_000, "acquire()"), /stop waiting/);
    assert.ok(await settled - t0 < 20, "rejected at once");
    await own.start();
    await r.send("PING"); // after whatever the client still had queued
    assert.equal(await r.send("EXISTS", lock.keys.key), 0);
    assert.ok(await lock.acquire({ wait: 0 }), "usable again");
    await lock.release();
  } finally {
    await own.stop();
  }
});

test("acquire() keeps to wait and signal while the wake-channel subscription gets no answer", async () => {
  await using r = await connect(url);
  const p = prefix();
  const holder = new Lock(r, "nosub", { prefix: p, ttl: 30_000 });
  assert.ok(await holder.acquire());
  // A subscriber connection that never comes up.
  r.subscribe = () => new Promise<never>(() => {});
  const t0 = now();
  const got = await within(
    new Lock(r, "nosub", { prefix: p }).acquire({ wait: 200 }),
    2_000,
    "acquire()",
  );
  const took = now() - t0;
  assert.equal(got, false);
  assert.ok(took >= 199 && took < 300, `returned after ${took} ms`);
  const ac = new AbortController();
  const waiting = new Lock(r, "nosub", { prefix: p }).acquire({
    signal: ac.signal,
  });
  await sleep(50);
  ac.abort(new Error("stop waiting"));
  await assert.rejects(within(waiting, 100, "acquire()"), /stop waiting/);
  await holder.release();
});

test("release(), withLock and await using settle while Redis is down, within the lease left", async () => {
  const own = await startRedis();
  try {
    await using r = await connect(own.url);
    const p = prefix();
    const warnings: string[] = [];
    const logger = { warn: (m: string) => warnings.push(m) };
    const a = new Lock(r, "a", { prefix: p, ttl: 400 });
    const c = new Lock(r, "c", { prefix: p, ttl: 400 });
    assert.ok(await a.acquire());
    assert.ok(await c.acquire());
    // fn finishes its work, then Redis goes away before the release.
    const work = withLock(async function () {
      await own.stop();
      return 42;
    }, { redis: r, name: "w", prefix: p, ttl: 400, logger });
    let t0 = now();
    assert.equal(await within(work(), 2_000, "withLock"), 42);
    assert.ok(now() - t0 < 400 + 150, `settled after ${now() - t0} ms`);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /releasing lock w failed.*expires within/);

    t0 = now();
    await assert.rejects(
      within(a.release(), 2_000, "release()"),
      (e: unknown) => {
        assert.ok(e instanceof TimeoutError, String(e));
        assert.match(e.message, /expires on its own/);
        return true;
      },
    );
    assert.ok(now() - t0 < 400 + 150, `settled after ${now() - t0} ms`);
    assert.equal(a.held, false);

    await assert.rejects(
      within(
        (async () => {
          await using _held = c;
        })(),
        2_000,
        "await using",
      ),
      TimeoutError,
    );

    // fn threw, then the release failed: the call rejects with fn's error,
    // and the release failure is not dropped silently.
    await own.start();
    await r.send("PING"); // reconnected: the acquisition's lease starts now
    const failing = withLock(async function () {
      await own.stop();
      throw new Error("fn failed");
    }, { redis: r, name: "w2", prefix: p, ttl: 400, logger });
    await assert.rejects(within(failing(), 2_000, "withLock"), /fn failed/);
    // (The restarted server lost the scripts: "… not cached." warnings too.)
    const released = warnings.filter((w) => w.includes("releasing lock"));
    assert.equal(released.length, 2, warnings.join("\n"));
    assert.match(released[1], /releasing lock w2 failed.*expires within/);
  } finally {
    await own.stop();
  }
});

test("withLock: this is the Lock, arguments and result pass through, name may depend on the arguments", async () => {
  await using r = await connect(url);
  const p = prefix();
  const seen: string[] = [];
  const add = withLock(
    async function (this: Lock, a: number, b: number): Promise<number> {
      assert.ok(this instanceof Lock);
      assert.equal(this.held, true);
      assert.equal(this.signal.aborted, false);
      assert.ok(this.fence! > 0);
      seen.push(this.name);
      assert.equal(await this.locked(), true);
      return a + b;
    },
    { redis: r, name: (a, b) => `sum:${a}:${b}`, prefix: p, ttl: 5_000 },
  );
  const sum: number = await add(2, 3);
  assert.equal(sum, 5);
  assert.deepEqual(seen, ["sum:2:3"]);
  assert.equal(await r.send("EXISTS", `${p}lock:{sum:2:3}`), 0, "released");

  // Calls on one name run one at a time.
  let inside = 0;
  let max = 0;
  const serial = withLock(async (ms: number) => {
    max = Math.max(max, ++inside);
    await sleep(ms);
    inside--;
    return ms;
  }, { redis: r, name: "serial", prefix: p });
  assert.deepEqual(await Promise.all([5, 5, 5, 5].map(serial)), [5, 5, 5, 5]);
  assert.equal(max, 1);

  // fn throws: the call rejects with fn's error, and the lock is released.
  const boom = withLock(() => {
    throw new RangeError("boom");
  }, { redis: r, name: "boom", prefix: p });
  await assert.rejects(boom(), RangeError);
  assert.equal(await r.send("EXISTS", `${p}lock:{boom}`), 0);
});

test("withLock: not acquired within wait rejects with LockNotAcquiredError and fn never runs", async () => {
  await using r = await connect(url);
  const p = prefix();
  const holder = new Lock(r, "busy", { prefix: p, ttl: 30_000 });
  assert.ok(await holder.acquire());
  let ran = false;
  const f = withLock(() => {
    ran = true;
  }, { redis: r, name: "busy", prefix: p, wait: 50 });
  const t0 = now();
  await assert.rejects(f(), (e: unknown) => {
    assert.ok(e instanceof LockNotAcquiredError);
    assert.equal(e.name, "LockNotAcquiredError");
    assert.equal(e.lock, "busy");
    assert.equal(e.wait, 50);
    return true;
  });
  assert.ok(now() - t0 >= 49);
  assert.equal(ran, false);
  // The caller's signal stops the wait too.
  const ac = new AbortController();
  const g = withLock(() => {
    ran = true;
  }, { redis: r, name: "busy", prefix: p, signal: ac.signal });
  const pending = g();
  await sleep(10);
  ac.abort(new Error("cancelled"));
  await assert.rejects(pending, /cancelled/);
  assert.equal(ran, false);
  await holder.release();
});

test("withLock: a lock lost while fn ran rejects with LockLostError after fn settles", async () => {
  await using r = await connect(url);
  const p = prefix();
  let settled = false;
  const f = withLock(async function () {
    await Lock.reset(r, "lost", { prefix: p }); // someone force-releases it
    await new Promise((res) => this.signal.addEventListener("abort", res));
    await sleep(10);
    settled = true;
    return "done";
  }, { redis: r, name: "lost", prefix: p, ttl: 150 });
  await assert.rejects(f(), (e: unknown) => {
    assert.ok(e instanceof LockLostError);
    assert.equal(e.reason, "expired");
    return true;
  });
  assert.equal(settled, true, "rejected only after fn settled");

  // Taken by another owner and not noticed yet (no auto-renew): the release
  // finds out, and the call still rejects with LockLostError.
  const g = withLock(async function () {
    await r.send("SET", this.keys.key, "other", "PX", 5_000);
    return 1;
  }, { redis: r, name: "taken", prefix: p, autoRenew: false });
  await assert.rejects(g(), (e: unknown) => {
    assert.ok(e instanceof LockLostError);
    assert.equal(e.reason, "held-by-other");
    return true;
  });
  assert.equal(await r.send("GET", `${p}lock:{taken}`), "other");

  // fn threw after the loss: LockLostError, with fn's error as its cause.
  const h = withLock(async function () {
    await Lock.reset(r, "lost2", { prefix: p });
    throw new Error("fn failed");
  }, { redis: r, name: "lost2", prefix: p, autoRenew: false });
  await assert.rejects(h(), (e: unknown) => {
    assert.ok(e instanceof LockLostError);
    assert.equal((e.cause as Error).message, "fn failed");
    return true;
  });
});

test("Lock.reset and Lock.resetAll force-release with SCAN and wake waiters", async () => {
  await using r = await connect(url);
  await using r2 = await connect(url);
  const p = prefix();
  const other = prefix();
  const names = ["a", "b", "c{x", "d*"];
  const held = [
    ...names.map((name) => new Lock(r, name, { prefix: p, ttl: 30_000 })),
    new Lock(r, "a", { prefix: other, ttl: 30_000 }),
  ];
  for (const lock of held) assert.ok(await lock.acquire());
  // A waiter on another client sleeps until the 30 s lease runs out, unless woken.
  const waiter = new Lock(r2, "a", { prefix: p });
  const got = waiter.acquire({ wait: 5_000 });
  await sleep(20);
  const before = await commandCalls(r);
  const t0 = now();
  assert.equal(await Lock.resetAll(r, { prefix: p }), 4);
  assert.equal(await got, true);
  assert.ok(now() - t0 < 50, "woken by the reset");
  const after = await commandCalls(r);
  assert.equal(after.get("keys"), before.get("keys"), "never KEYS");
  assert.ok((after.get("scan") ?? 0) > (before.get("scan") ?? 0), "SCAN");
  assert.equal(await waiter.owner(), waiter.id);
  // Other prefixes and the fencing counters are untouched.
  assert.equal(await r.send("EXISTS", `${other}lock:{a}`), 1);
  assert.equal((await scanKeys(r, `${p}*:fence`)).length, 4);
  assert.equal(await Lock.reset(r, "a", { prefix: other }), true);
  assert.equal(await Lock.reset(r, "a", { prefix: other }), false);
  await waiter.release();
  for (const lock of held) {
    await assert.rejects(lock.release(), LockNotHeldError);
  }
});

test("extend() whose reply comes back after the lease ran out rejects (not held), as held and signal say", async () => {
  // Its own server: CLIENT PAUSE holds every writer on it.
  const own = await startRedis();
  try {
    await using r = await connect(own.url);
    await using admin = await connect(own.url);
    const lock = new Lock(r, "late-extend", { ttl: 200, prefix: prefix() });
    assert.equal(await lock.acquire({ wait: 0 }), true);
    void lock.signal; // arm the lease timer
    // The script waits out the pause (> ttl); its reply ("extended") is late.
    await admin.send("CLIENT", "PAUSE", "400", "WRITE");
    await assert.rejects(
      lock.extend(5_000),
      (e: unknown) => e instanceof LockNotHeldError && e.reason === "expired",
    );
    assert.equal(lock.held, false);
    assert.equal(lock.signal.aborted, true);
    await admin.send("DEL", lock.keys.key);
  } finally {
    await own.stop();
  }
});

teardown(async () => {
  await server.stop();
});

test("fencing tokens keep increasing when the counter is lost (FLUSHALL, a restart without persistence): every token comes from the server's clock", async () => {
  const own = await startRedis();
  try {
    await using r = await connect({
      url: own.url,
      reconnect: { minDelay: 10, maxDelay: 50 },
    });
    const p = prefix();
    const lock = new Lock(r, "seeded", { prefix: p });
    const tokens: number[] = [];
    const take = async () => {
      assert.equal(await lock.acquire({ wait: 0 }), true);
      tokens.push(lock.fence!);
      await lock.release();
    };
    await take();
    await take();
    await r.send("FLUSHALL");
    await take();
    await own.restart(); // no persistence: the counter is gone
    await take();
    await take();
    for (let i = 1; i < tokens.length; i++) {
      assert.ok(tokens[i] > tokens[i - 1], `tokens ${tokens.join(", ")}`);
      assert.ok(Number.isSafeInteger(tokens[i]));
    }
    // Every token is max(counter + 1, the server's clock in microseconds):
    // with a live counter as with a lost one, each is the clock.
    const [sec] = await r.send<string[]>("TIME");
    for (const t of tokens) {
      assert.ok(Math.abs(t / 1e6 - Number(sec)) < 60, String(t));
    }
  } finally {
    await own.stop();
  }
});

test("fencing tokens keep increasing when the counter goes back or is lost: a counter set back, deleted, or a SIGKILL and restart of a server without persistence (same port)", async () => {
  const own = await startRedis();
  try {
    await checkTokensAcrossRestart(own);
  } finally {
    await own.stop();
  }
});

async function checkTokensAcrossRestart(own: RedisServer): Promise<void> {
  const p = prefix();
  const before: number[] = [];
  {
    await using r = await connect(own.url);
    const lock = new Lock(r, "failover", { prefix: p, ttl: 5_000 });
    for (let i = 0; i < 20; i++) {
      assert.ok(await lock.acquire({ wait: 0 }));
      before.push(lock.fence!);
      await lock.release();
    }
    for (let i = 1; i < before.length; i++) {
      assert.ok(
        before[i] > before[i - 1],
        `${before[i]} after ${before[i - 1]}`,
      );
    }
    // The clock in µs, as TIME gives it: a token is never below it.
    const [s, us] = await r.send<[string, string]>("TIME");
    assert.ok(before[0] <= Number(s) * 1e6 + Number(us));
    assert.ok(before[0] > 1e15, `a clock token, got ${before[0]}`);
    // A counter that went back (a promoted replica with an older value).
    await r.send("SET", lock.keys.fence, "5");
    assert.ok(await lock.acquire({ wait: 0 }));
    assert.ok(lock.fence! > before.at(-1)!, `${lock.fence} after a set-back`);
    before.push(lock.fence!);
    await lock.release();
    // Stored exactly, with no exponent: the next INCR works on it.
    assert.equal(await r.send("GET", lock.keys.fence), String(before.at(-1)));
  }
  const port = own.port;
  await own.restart(); // SIGKILL, then an empty server on the same port
  assert.equal(own.port, port);
  await using r = await connect(own.url);
  assert.equal(await r.send("DBSIZE"), 0, "the counter is gone");
  const lock = new Lock(r, "failover", { prefix: p, ttl: 5_000 });
  const after: number[] = [];
  for (let i = 0; i < 20; i++) {
    assert.ok(await lock.acquire({ wait: 0 }));
    after.push(lock.fence!);
    await lock.release();
  }
  const maxBefore = Math.max(...before);
  for (const f of after) {
    assert.ok(Number.isSafeInteger(f), `${f} is exact`);
    assert.ok(f > maxBefore, `token ${f} after the restart > ${maxBefore}`);
  }
  for (let i = 1; i < after.length; i++) assert.ok(after[i] > after[i - 1]);
}
