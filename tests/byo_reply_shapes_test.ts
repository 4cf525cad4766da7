/**
 * Review findings: an app's client configured so that integer replies come
 * back as strings (ioredis `stringNumbers: true`, documented for big
 * numbers; node-redis `withTypeMapping({ [RESP_TYPES.NUMBER]: String })`).
 * The lock scripts compare `reply[0] !== 1`, so the acquire script's SET NX
 * runs on the server but respite takes the try for "held by someone": the
 * key stays held for the lease with nobody knowing, and the caller gets
 * LockNotAcquiredError. Either refuse such a client in checkClient (a
 * TypeError naming the option) or read integer replies as numbers.
 *
 * Also: node-redis's `createCluster()` and `createSentinel()` clients are
 * accepted by checkClient as plain node-redis clients (their
 * `sendCommand(firstKey, isReadonly, args)` / `sendCommand(isReadonly,
 * args)` differ), while an ioredis Cluster is refused. Suggested fix: in
 * isNodeRedis, refuse objects with `isReadonly`-style signatures, e.g.
 * check for `x.nodeClient`/`x.masters` (cluster) and `x.getMasterNode`/
 * `x.getSentinelNode` (sentinel), with a TypeError like ioredis Cluster's.
 */
import assert from "node:assert/strict";
import { connect, withLock } from "../mod.ts";
import { load } from "../testing/byo_clients.ts";
import { sharedRedis } from "../testing/redis.ts";
import { teardown, test } from "./_harness.ts";
import { checkClient } from "../lib/adapters/mod.ts";

const server = await sharedRedis();
const url = server.url;
let n = 0;
const name = (s: string) => `review:shapes:${Date.now()}:${n++}:${s}`;

/** Runs a withLock on `redis`; afterwards the lock key must not be left held. */
async function lockLeavesNothing(redis: object, lockName: string) {
  await using control = await connect(url);
  let outcome: unknown;
  try {
    outcome = await withLock(() => Promise.resolve("ran"), {
      redis: redis as never,
      name: lockName,
      wait: 1_000,
      ttl: 30_000,
    })();
  } catch (err) {
    outcome = err;
  }
  const pttl = await control.send<number>("PTTL", `respite:lock:{${lockName}}`);
  // Acceptable: it ran, or the client was refused up front (TypeError).
  assert.ok(
    outcome === "ran" || outcome instanceof TypeError,
    `withLock neither ran nor refused the client: ${outcome}`,
  );
  assert.equal(pttl, -2, `the lock key is left held (${pttl} ms left)`);
}

test("ioredis with stringNumbers: withLock runs (or refuses the client) and leaves no lock held", async () => {
  type M = typeof import("ioredis");
  const { Redis } = await load<M>("ioredis");
  const io = new Redis(url, { stringNumbers: true });
  try {
    await lockLeavesNothing(io, name("ioredis"));
  } finally {
    const ended = new Promise((r) => io.once("end", r));
    await io.quit();
    await ended;
  }
});

test("node-redis with NUMBER mapped to String: withLock runs (or refuses the client) and leaves no lock held", async () => {
  type M = typeof import("redis");
  const { createClient, RESP_TYPES } = await load<M>("redis");
  const c = createClient({ url });
  c.on("error", () => {});
  await c.connect();
  try {
    await lockLeavesNothing(
      c.withTypeMapping({ [RESP_TYPES.NUMBER]: String }),
      name("node-redis"),
    );
  } finally {
    await c.close();
  }
});

test("checkClient refuses a node-redis cluster client (as it refuses an ioredis Cluster)", async () => {
  type M = typeof import("redis");
  const { createCluster } = await load<M>("redis");
  const cluster = createCluster({ rootNodes: [{ url }] });
  assert.throws(() => checkClient(cluster), TypeError);
});

test("checkClient refuses a node-redis sentinel client (its sendCommand(isReadonly, args) differs)", async () => {
  type M = typeof import("redis");
  const { createSentinel } = await load<M>("redis");
  const sentinel = createSentinel({
    name: "mymaster",
    sentinelRootNodes: [{ host: "127.0.0.1", port: server.port }],
  });
  assert.throws(() => checkClient(sentinel), TypeError);
});

teardown(async () => {
  await server.stop();
});
