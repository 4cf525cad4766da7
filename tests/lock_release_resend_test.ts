/**
 * Review of the release() resend (311d9d3): a resent release that finds the
 * key gone or taken resolves, on the grounds that the first release may have
 * done it. These tests make the first release one that certainly never
 * reached Redis (the client is reconnecting and does not queue, so it
 * rejects at once), so "gone" or "taken" cannot be its doing: release() must
 * reject as it does when no connection dropped.
 */
import assert from "node:assert/strict";
import {
  connect,
  Lock,
  LockLostError,
  LockNotHeldError,
  withLock,
} from "../mod.ts";
import type { RedisClient } from "../mod.ts";
import { startRedis } from "../testing/redis.ts";
import { sleep, test, within } from "./_harness.ts";

let n = 0;
const prefix = () => `respite-test-resend-${Date.now()}-${n++}:`;

/** Drops `r`'s connection from the server side and waits until `r` notices. */
async function drop(r: RedisClient, admin: RedisClient): Promise<void> {
  const id = await r.send<number>("CLIENT", "ID");
  await admin.send("CLIENT", "KILL", "ID", String(id));
  const until = performance.now() + 5_000;
  while (r.status !== "reconnecting") {
    if (performance.now() > until) throw new Error(`status ${r.status}`);
    await sleep(1);
  }
}

test("release(): a lock taken by another owner while held is reported (LockNotHeldError held-by-other, signal aborts) even when the first release was never sent (reconnecting, no queue)", async () => {
  const own = await startRedis();
  try {
    await using admin = await connect(own.url);
    for (const dropFirst of [false, true]) {
      await using r = await connect({
        url: own.url,
        reconnect: { minDelay: 150, maxDelay: 150 },
        queueWhileReconnecting: false,
      });
      const p = prefix();
      const lock = new Lock(r, "taken", { prefix: p, ttl: 30_000 });
      assert.ok(await lock.acquire({ wait: 0 }));
      // Another owner has it now (an operator's reset, then a new holder).
      assert.equal(await Lock.reset(admin, "taken", { prefix: p }), true);
      const other = new Lock(admin, "taken", { prefix: p, ttl: 30_000 });
      assert.ok(await other.acquire({ wait: 0 }));
      if (dropFirst) await drop(r, admin);
      const err = await within(
        lock.release().then(() => "resolved", (e: unknown) => e),
        10_000,
        "release()",
      );
      assert.ok(
        err instanceof LockNotHeldError && err.reason === "held-by-other",
        `dropFirst=${dropFirst}: release() ${
          err === "resolved" ? "resolved" : `rejected with ${err}`
        }; the lock was taken by another owner and our release never ran`,
      );
      assert.ok(lock.signal.aborted, `dropFirst=${dropFirst}: signal`);
      assert.ok(lock.signal.reason instanceof LockLostError);
      assert.equal(await other.held, true);
      await other.release();
    }
  } finally {
    await own.stop();
  }
});

test("release() called after its lease ran out rejects (LockNotHeldError expired) even when the first release was never sent (reconnecting, no queue)", async () => {
  const own = await startRedis();
  try {
    await using admin = await connect(own.url);
    for (const dropFirst of [false, true]) {
      await using r = await connect({
        url: own.url,
        reconnect: { minDelay: 30, maxDelay: 30 },
        queueWhileReconnecting: false,
      });
      const p = prefix();
      const ttl = 300;
      const lock = new Lock(r, "late", { prefix: p, ttl });
      assert.ok(await lock.acquire({ wait: 0 }));
      await sleep(ttl + 100); // the work overran the lease
      assert.equal(await admin.send("EXISTS", lock.keys.key), 0);
      if (dropFirst) await drop(r, admin);
      const err = await within(
        lock.release().then(() => "resolved", (e: unknown) => e),
        10_000,
        "release()",
      );
      assert.ok(
        err instanceof LockNotHeldError && err.reason === "expired",
        `dropFirst=${dropFirst}: release() ${
          err === "resolved" ? "resolved" : `rejected with ${err}`
        }; the lease had run out before release() was called`,
      );
    }
  } finally {
    await own.stop();
  }
});

test("withLock: fn's lock taken by another owner while fn ran is a LockLostError even when the connection dropped just before the release (reconnecting, no queue)", async () => {
  const own = await startRedis();
  try {
    await using admin = await connect(own.url);
    await using r = await connect({
      url: own.url,
      reconnect: { minDelay: 150, maxDelay: 150 },
      queueWhileReconnecting: false,
    });
    const p = prefix();
    const other = new Lock(admin, "wl", { prefix: p, ttl: 30_000 });
    const f = withLock(async () => {
      assert.equal(await Lock.reset(admin, "wl", { prefix: p }), true);
      assert.ok(await other.acquire({ wait: 0 }));
      await drop(r, admin);
      return "done";
    }, { redis: r, name: "wl", prefix: p, ttl: 30_000, wait: 0 });
    const out = await within(
      f().then((v) => `resolved ${v}`, (e: unknown) => e),
      10_000,
      "withLock",
    );
    assert.ok(
      out instanceof LockLostError && out.reason === "held-by-other",
      `withLock ${
        out instanceof Error ? `rejected with ${out}` : out
      }; another owner held the lock while fn ran`,
    );
    await other.release();
  } finally {
    await own.stop();
  }
});
