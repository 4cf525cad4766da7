/**
 * Lock under faults a single process can cause for real: a Redis stopped
 * with SIGSTOP (so its real reply arrives late, or a `commandTimeout` fires
 * first), a dropped connection, an event loop blocked past the lease, and
 * error replies. Each test that stops or drops starts its own redis-server.
 */
import assert from "node:assert/strict";
import {
  connect,
  ConnectionError,
  Lock,
  LockLostError,
  LockNotAcquiredError,
  LockNotHeldError,
  ReplyError,
  TimeoutError,
  withLock,
} from "../mod.ts";
import {
  commandCalls,
  scanKeys,
  sharedRedis,
  startRedis,
} from "../testing/redis.ts";
import { CuttableConnector } from "../testing/connector.ts";
import { sleep, teardown, test, within } from "./_harness.ts";

const server = await sharedRedis();
const url = server.url;
let n = 0;
const prefix = () => `respite-test-lockfault-${Date.now()}-${n++}:`;
const now = () => performance.now();

/** Busy-waits `ms`: no timer, renewal or reply can run meanwhile. */
function blockFor(ms: number): void {
  const until = now() + ms;
  while (now() < until) {
    // spin
  }
}

test("a success whose reply arrives after the lease ran out is no acquisition: acquire() says false (wait: 0) or keeps waiting, withLock does not run fn, and the late key is deleted at once", async () => {
  const own = await startRedis();
  try {
    await using r = await connect(own.url);
    const p = prefix();
    const ttl = 200;
    const lock = new Lock(r, "late", { prefix: p, ttl });
    assert.ok(await lock.acquire({ wait: 0 })); // ACQUIRE_SCRIPT cached now
    await lock.release();
    // Redis stops before the try is written, and runs it when continued,
    // 350 ms later: its real reply comes back after the 200 ms lease.
    const late = async <T>(f: () => Promise<T>): Promise<T> => {
      own.signal("SIGSTOP");
      let pending: Promise<T>;
      try {
        pending = f();
        pending.catch(() => {});
        await sleep(ttl + 150);
      } finally {
        own.signal("SIGCONT");
      }
      return await within(pending, 5_000, "the late call");
    };
    const fence = async () => Number(await r.send("GET", lock.keys.fence));
    // Ahead of the clock, the counter counts one per try that ran.
    await r.send("SET", lock.keys.fence, String(2 ** 52));
    const f0 = await fence();

    assert.equal(await late(() => lock.acquire({ wait: 0 })), false);
    assert.equal(lock.held, false);
    assert.equal(lock.fence, null);
    await r.send("PING"); // after the compare-and-delete sent at the reply
    assert.equal(await fence(), f0 + 1, "Redis did run the late try");
    assert.equal(
      await r.send("EXISTS", lock.keys.key),
      0,
      "the late try's key was deleted at once, not left for its lease",
    );

    let ran = false;
    const f = withLock(() => {
      ran = true;
    }, { redis: r, name: "late", prefix: p, ttl, wait: 0 });
    await assert.rejects(late(() => f()), LockNotAcquiredError);
    assert.equal(ran, false, "fn never ran");
    await r.send("PING");
    assert.equal(await fence(), f0 + 2);
    assert.equal(await r.send("EXISTS", lock.keys.key), 0);

    // With a wait left, the late success is thrown away and the next try
    // (Redis answers in time again) acquires it with a fresh token.
    const long = new Lock(r, "late", { prefix: p, ttl: 10_000 });
    const short = new Lock(r, "late", { prefix: p, ttl });
    assert.equal(await late(() => short.acquire({ wait: 5_000 })), true);
    assert.equal(short.fence, f0 + 4, "the late try's token was not used");
    assert.equal(short.held, true);
    assert.equal(await short.owner(), short.id);
    await short.release();
    assert.equal(await r.send("EXISTS", lock.keys.key), 0);
    // A reply in time is an acquisition, as before.
    assert.ok(await long.acquire({ wait: 0 }));
    await long.release();
  } finally {
    await own.stop();
  }
});

test("held, fence and signal see a lease that ran out while the event loop was blocked, at once (lease timer armed by autoRenew or by reading signal, or not armed)", async () => {
  await using r = await connect(url);
  const p = prefix();
  const ttl = 100;
  for (const mode of ["autoRenew", "signal read", "not armed"]) {
    const name = `blocked-${mode}`;
    const lock = new Lock(r, name, {
      prefix: p,
      ttl,
      autoRenew: mode === "autoRenew",
    });
    assert.ok(await lock.acquire({ wait: 0 }));
    const early = mode === "not armed" ? undefined : lock.signal;
    assert.equal(early?.aborted ?? false, false, mode);
    assert.equal(lock.held, true, mode);
    blockFor(ttl + 50); // past the lease, no macrotask in between
    // The first read, whichever it is, notices.
    assert.equal(lock.signal.aborted, true, `${mode}: signal.aborted`);
    assert.ok(lock.signal.reason instanceof LockLostError, mode);
    assert.equal((lock.signal.reason as LockLostError).reason, "expired");
    assert.equal(lock.held, false, `${mode}: held`);
    assert.equal(lock.fence, null, `${mode}: fence`);
    if (early) assert.equal(early, lock.signal, "the same signal, aborted");

    // Redis's key expired with the lease. Reading held first aborts the
    // signal taken earlier, too.
    assert.ok(await lock.acquire({ wait: 0 }), mode);
    const sig = mode === "not armed" ? undefined : lock.signal;
    blockFor(ttl + 50);
    assert.equal(lock.held, false, `${mode}: held read first`);
    if (sig) assert.equal(sig.aborted, true, `${mode}: the earlier signal`);
    assert.equal(lock.fence, null);
    // And the lock is free in Redis: another holder could have it now.
    const other = new Lock(r, name, { prefix: p, ttl: 5_000 });
    await sleep(5);
    assert.ok(await other.acquire({ wait: 1_000 }), mode);
    await other.release();
    await assert.rejects(lock.release(), LockNotHeldError);
  }
});

test("a try that times out (commandTimeout) while Redis is stopped: acquire({ wait: 0 }) rejects with the TimeoutError, and its key is deleted once Redis runs it", async () => {
  const own = await startRedis();
  try {
    await using r = await connect({ url: own.url, commandTimeout: 100 });
    const p = prefix();
    const lock = new Lock(r, "timeout", { prefix: p, ttl: 30_000 });
    assert.ok(await lock.acquire({ wait: 0 }));
    await lock.release();
    // Ahead of the clock, the counter counts one per try that ran.
    await r.send("SET", lock.keys.fence, String(2 ** 52));
    const f0 = Number(await r.send("GET", lock.keys.fence));
    own.signal("SIGSTOP");
    const t0 = now();
    let took: number;
    try {
      await assert.rejects(
        within(lock.acquire({ wait: 0 }), 2_000, "acquire()"),
        TimeoutError,
      );
      took = now() - t0;
      await sleep(250); // the compare-and-delete times out too, and is retried
    } finally {
      own.signal("SIGCONT");
    }
    assert.ok(took >= 95 && took < 1_000, `rejected after ${took} ms`);
    await r.send("PING"); // after everything sent before it
    assert.equal(
      Number(await r.send("GET", lock.keys.fence)),
      f0 + 1,
      "Redis ran the timed-out try when continued",
    );
    assert.equal(
      await r.send("EXISTS", lock.keys.key),
      0,
      "the timed-out try's key is gone, not left for 30 s",
    );
    await sleep(50); // the last compare-and-delete retry, if any, settles
    assert.ok(await lock.acquire({ wait: 0 }), "usable again");
    await lock.release();
  } finally {
    await own.stop();
  }
});

test("wait running out while every try times out rejects with the last TimeoutError (not false) at the deadline; no key stays behind", async () => {
  const own = await startRedis();
  try {
    // (The subscriber connection's SUBSCRIBE times out too, and warns.)
    const warnings: string[] = [];
    await using r = await connect({
      url: own.url,
      commandTimeout: 60,
      logger: { warn: (m: string) => warnings.push(m) },
    });
    const p = prefix();
    const lock = new Lock(r, "unreachable", { prefix: p, ttl: 30_000 });
    assert.ok(await lock.acquire({ wait: 0 }));
    await lock.release();
    own.signal("SIGSTOP");
    const t0 = now();
    let took: number;
    try {
      await assert.rejects(
        within(lock.acquire({ wait: 400 }), 3_000, "acquire()"),
        TimeoutError,
      );
      took = now() - t0;
    } finally {
      own.signal("SIGCONT");
    }
    assert.ok(took >= 399 && took < 700, `rejected after ${took} ms`);
    await r.send("PING");
    await sleep(100); // background compare-and-deletes settle
    await r.send("PING");
    assert.equal(await r.send("EXISTS", lock.keys.key), 0);
    // Redis answering "held by another" until the deadline is a plain false.
    const holder = new Lock(r, "unreachable", { prefix: p, ttl: 30_000 });
    assert.ok(await holder.acquire({ wait: 0 }));
    assert.equal(await lock.acquire({ wait: 100 }), false);
    await holder.release();
  } finally {
    await own.stop();
  }
});

for (const queueWhileReconnecting of [true, false]) {
  test(`a connection drop during acquire (queueWhileReconnecting: ${queueWhileReconnecting}): acquire retries within wait and gets the lock; the dropped try's key (Redis ran it) is deleted, not left for the ttl`, async () => {
    const own = await startRedis();
    try {
      const cut = new CuttableConnector();
      await using r = await connect({
        url: own.url,
        queueWhileReconnecting,
        connector: cut.connector,
      });
      await using other = await connect(own.url);
      const p = prefix();
      const lock = new Lock(r, "drop", { prefix: p, ttl: 30_000 });
      assert.ok(await lock.acquire({ wait: 0 }));
      await lock.release();
      // Ahead of the clock, the counter counts one per try that ran.
      await r.send("SET", lock.keys.fence, String(2 ** 52));
      const f0 = Number(await r.send("GET", lock.keys.fence));
      // Redis is stopped when the try is written; the client then drops the
      // connection. Continued, Redis reads the try and runs it before it
      // sees the connection closed: the reply is lost, the key is set.
      own.signal("SIGSTOP");
      let got: Promise<boolean>;
      try {
        got = lock.acquire({ wait: 5_000 });
        got.catch(() => {});
        await sleep(30);
        await cut.cut();
        await sleep(100);
      } finally {
        own.signal("SIGCONT");
      }
      assert.equal(await within(got, 6_000, "acquire()"), true);
      assert.equal(lock.held, true);
      assert.equal(await lock.owner(), lock.id);
      const fence = Number(await other.send("GET", lock.keys.fence));
      assert.equal(fence, f0 + 2, "the dropped try ran in Redis, then a retry");
      assert.equal(lock.fence, fence, "the holding is the retry's");
      // The key holds this holding's value: a compare-and-delete frees it.
      await lock.release();
      assert.deepEqual(await scanKeys(other, `${p}lock:{drop}`), []);
      await sleep(queueWhileReconnecting ? 0 : 250); // polling cleanups end
    } finally {
      await own.stop();
    }
  });
}

test("a connection drop during acquire({ wait: 0 }) rejects with the ConnectionError; the try's key is deleted after the reconnect", async () => {
  const own = await startRedis();
  try {
    const cut = new CuttableConnector();
    await using r = await connect({ url: own.url, connector: cut.connector });
    const p = prefix();
    const lock = new Lock(r, "drop0", { prefix: p, ttl: 30_000 });
    assert.ok(await lock.acquire({ wait: 0 }));
    await lock.release();
    own.signal("SIGSTOP");
    let got: Promise<boolean>;
    try {
      got = lock.acquire({ wait: 0 });
      got.catch(() => {});
      await sleep(30);
      await cut.cut();
      await sleep(100);
    } finally {
      own.signal("SIGCONT");
    }
    await assert.rejects(within(got, 2_000, "acquire()"), ConnectionError);
    await r.send("PING"); // reconnected; after the queued compare-and-delete
    assert.equal(await r.send("EXISTS", lock.keys.key), 0);
  } finally {
    await own.stop();
  }
});

test("an error reply to the acquire script rejects with the ReplyError at once (not retried), and a key the script set before failing is deleted", async () => {
  await using r = await connect(url);
  const p = prefix();
  const lock = new Lock(r, "reply", { prefix: p, ttl: 30_000 });
  // The fencing counter is not an integer: SET runs, then INCR fails, and
  // Redis does not undo the SET.
  await r.send("SET", lock.keys.fence, "not a number");
  const warm = new Lock(r, "warm", { prefix: p });
  assert.ok(await warm.acquire({ wait: 0 })); // both scripts cached now
  await warm.release();
  const before = await commandCalls(r);
  for (const wait of [0, 2_000]) {
    const t0 = now();
    await assert.rejects(lock.acquire({ wait }), (e: unknown) => {
      assert.ok(e instanceof ReplyError, String(e));
      return true;
    });
    assert.ok(now() - t0 < 500, "not retried until the wait ran out");
    assert.equal(lock.held, false);
    await r.send("PING");
    assert.equal(await r.send("EXISTS", lock.keys.key), 0, `wait ${wait}`);
  }
  const after = await commandCalls(r);
  assert.equal(
    (after.get("evalsha") ?? 0) - (before.get("evalsha") ?? 0),
    4,
    "one try and one compare-and-delete per call",
  );
  await r.send("DEL", lock.keys.fence);
  assert.ok(await lock.acquire({ wait: 0 }));
  await lock.release();
});

test("withLock: fn releasing its own lock settles as fn did (no LockLostError), also when another holder takes the lock afterwards", async () => {
  await using r = await connect(url);
  await using r2 = await connect(url);
  const p = prefix();
  const early = withLock(async function () {
    await this.release();
    assert.equal(this.held, false);
    return "done early";
  }, { redis: r, name: "self", prefix: p, ttl: 5_000 });
  assert.equal(await early(), "done early");
  assert.equal(await r.send("EXISTS", `${p}lock:{self}`), 0);

  const other = new Lock(r2, "self", { prefix: p, ttl: 5_000, id: "other" });
  const handedOver = withLock(async function () {
    await this.release();
    assert.ok(await other.acquire({ wait: 0 }));
    return 7;
  }, { redis: r, name: "self", prefix: p, ttl: 5_000 });
  assert.equal(await handedOver(), 7);
  assert.equal(await other.owner(), "other", "the new holder is untouched");
  assert.equal(other.held, true);
  await other.release();

  const failing = withLock(async function () {
    await this.release();
    throw new Error("fn failed after releasing");
  }, { redis: r, name: "self", prefix: p, ttl: 5_000 });
  await assert.rejects(failing(), /fn failed after releasing/);

  // Released and acquired again inside fn: withLock releases that holding.
  const again = withLock(async function () {
    await this.release();
    assert.ok(await this.acquire({ wait: 0 }));
    return this.fence;
  }, { redis: r, name: "self", prefix: p, ttl: 5_000 });
  assert.ok(typeof await again() === "number");
  assert.equal(await r.send("EXISTS", `${p}lock:{self}`), 0);

  // fn's release finding the lock taken: the loss still counts as a loss.
  const taken = withLock(async function () {
    await r.send("SET", this.keys.key, "intruder", "PX", 5_000);
    await this.release().catch(() => {});
    return 1;
  }, { redis: r, name: "taken", prefix: p, ttl: 5_000, autoRenew: false });
  await assert.rejects(taken(), (e: unknown) => {
    assert.ok(e instanceof LockLostError, String(e));
    assert.equal(e.reason, "held-by-other");
    return true;
  });
  assert.equal(await r.send("GET", `${p}lock:{taken}`), "intruder");
  await r.send("DEL", `${p}lock:{taken}`);
});

teardown(async () => {
  await server.stop();
});

test("a release whose connection drops before Redis ran it is sent again after the reconnect: the lock is free at once, not after its ttl (persisting server, SIGKILL + restart)", async () => {
  const { mkdtemp, rm } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  const dir = await mkdtemp(`${tmpdir()}/respite-release-`);
  const own = await startRedis({
    args: ["--appendonly", "yes", "--appendfsync", "always", "--dir", dir],
  });
  try {
    await using r = await connect({
      url: own.url,
      reconnect: { minDelay: 10, maxDelay: 50 },
    });
    const p = prefix();
    const lock = new Lock(r, "rel", { prefix: p, ttl: 30_000 });
    assert.ok(await lock.acquire({ wait: 0 }));
    // Stopped, Redis never reads the release; killed, it never will. The
    // restart reads the lock back from the AOF.
    own.signal("SIGSTOP");
    const released = lock.release();
    released.catch(() => {});
    await sleep(50);
    await own.restart();
    await within(released, 5_000, "release()");
    await using other = await connect(own.url);
    assert.equal(await other.send("EXISTS", lock.keys.key), 0, "still locked");
    const next = new Lock(other, "rel", { prefix: p });
    assert.equal(await next.acquire({ wait: 0 }), true);
    await next.release();
  } finally {
    await own.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
