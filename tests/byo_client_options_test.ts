/**
 * Review findings: how an app's client is configured, beyond its kind.
 *
 * - node-redis's per-call faces (`client.withAbortSignal(signal)`,
 *   `withTypeMapping`, `withCommandOptions`, `asap()`) are new objects over
 *   the same client. Passed per call (`fn.get(args, { redis:
 *   client.withAbortSignal(req.signal) })`), each one gets its own adapter,
 *   and each adapter adds an `end` listener to the shared client that is
 *   never removed: the client keeps every adapter (and its subscriber
 *   state) alive, and Node warns about a listener leak after 10 requests.
 *   Suggested fix: key the adapter by the underlying client (`x._self`
 *   when present) and pass the face's options per command, or register
 *   one `end` listener per underlying client.
 * - node-redis with `withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer })`
 *   (a common setting for binary values): non-raw replies come back as
 *   Buffers, so `Lock.owner()` returns the whole token as a Buffer instead
 *   of the owner id. Suggested fix: pass an explicit text type mapping
 *   (`{ [BLOB_STRING]: String }`-equivalent, i.e. the default) on every
 *   non-raw `sendCommand`, as the raw path already passes its own.
 * - ioredis with `keyPrefix`: ioredis prefixes the KEYS of EVALSHA, so
 *   locks work, but `Lock.resetAll` SCANs for the unprefixed pattern and
 *   finds nothing (and a key it did find would be prefixed twice). Either
 *   refuse `keyPrefix` (TypeError naming the option, pointing to respite's
 *   `prefix`) or match `keyPrefix + pattern` and strip it from the SCAN
 *   results.
 */
import assert from "node:assert/strict";
import { cached, Lock } from "../mod.ts";
import { load } from "../testing/byo_clients.ts";
import { sharedRedis } from "../testing/redis.ts";
import { teardown, test } from "./_harness.ts";

const server = await sharedRedis();
const url = server.url;

test("node-redis: per-call withAbortSignal() faces do not pile up end listeners on the client", async () => {
  type M = typeof import("redis");
  const { createClient } = await load<M>("redis");
  const c = createClient({ url });
  c.on("error", () => {});
  await c.connect();
  try {
    const before = c.listenerCount("end");
    const k = `review:opts:${Date.now()}`;
    const f = cached((id: number) => Promise.resolve(`v${id}`), {
      key: (id) => `${k}:${id}`,
      ttl: 60_000,
    });
    for (let i = 0; i < 20; i++) {
      const request = new AbortController();
      assert.equal(
        await f.get([1], { redis: c.withAbortSignal(request.signal) }),
        "v1",
      );
    }
    await f.idle();
    const added = c.listenerCount("end") - before;
    assert.ok(added <= 1, `20 calls added ${added} end listeners`);
    await f.get([1], { redis: c }).then(() => f.with(c).invalidate(1));
  } finally {
    await c.close();
  }
});

test("ioredis with keyPrefix: Lock.resetAll deletes the locks it made (or the client is refused)", async () => {
  type M = typeof import("ioredis");
  const { Redis } = await load<M>("ioredis");
  const io = new Redis(url, { keyPrefix: "app:" });
  try {
    const prefix = `review:kp:${Date.now()}:`;
    let lock: Lock;
    try {
      lock = new Lock(io, "a", { prefix });
    } catch (err) {
      assert.ok(err instanceof TypeError);
      return; // refused up front: fine
    }
    assert.equal(await lock.acquire(), true);
    try {
      assert.equal(await Lock.resetAll(io, { prefix }), 1);
      assert.equal(await lock.locked(), false);
    } finally {
      await lock.release().catch(() => {});
    }
  } finally {
    const ended = new Promise((r) => io.once("end", r));
    await io.quit();
    await ended;
  }
});

test("node-redis with BLOB_STRING mapped to Buffer: Lock.owner() is the owner id, a string", async () => {
  type M = typeof import("redis");
  const { createClient, RESP_TYPES } = await load<M>("redis");
  const c = createClient({ url });
  c.on("error", () => {});
  await c.connect();
  const lock = new Lock(
    c.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer }),
    `review:opts:owner:${Date.now()}`,
    { id: "worker-7" },
  );
  try {
    assert.equal(await lock.acquire(), true);
    assert.equal(await lock.owner(), "worker-7");
  } finally {
    await lock.release().catch(() => {});
    await c.close();
  }
});

teardown(async () => {
  await server.stop();
});
