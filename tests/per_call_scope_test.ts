/**
 * Which calls share an in-process lookup (`cached`'s flights, keyed by the
 * server a client reaches): respite's clients connected to the same Redis
 * (per-request clients on Workers) and the faces of one node-redis client
 * share one; clients of two servers never do (tests/per_call_servers_test.ts).
 * One lookup shows as one `miss` event for a cold key, however many calls.
 */
import assert from "node:assert/strict";
import { cached, connect } from "../mod.ts";
import { load } from "../testing/byo_clients.ts";
import { sharedRedis } from "../testing/redis.ts";
import { sleep, teardown, test } from "./_harness.ts";

const server = await sharedRedis();
let n = 0;
const key = (s: string) => `test:scope:${Date.now()}:${n++}:${s}`;

function counted(k: string) {
  const seen = { runs: 0, misses: 0, waits: 0 };
  const f = cached(async (id: number) => {
    seen.runs++;
    await sleep(30);
    return `v${id}`;
  }, {
    key: (id) => `${k}:${id}`,
    ttl: 60_000,
    hooks: { miss: () => seen.misses++, wait: () => seen.waits++ },
  });
  return { f, seen };
}

test("20 per-request respite clients to one Redis: 20 concurrent calls make one lookup, one computation, no waiter", async () => {
  const clients = await Promise.all(
    Array.from({ length: 20 }, () => connect(server.url)),
  );
  try {
    const { f, seen } = counted(key("respite"));
    const got = await Promise.all(clients.map((c) => f.with(c)(1)));
    assert.ok(got.every((v) => v === "v1"));
    assert.deepEqual(seen, { runs: 1, misses: 1, waits: 0 });
    await f.with(clients[0]).invalidate(1);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
});

test("node-redis: the withAbortSignal() faces of one client share one lookup", async () => {
  type M = typeof import("redis");
  const { createClient } = await load<M>("redis");
  const c = createClient({ url: server.url });
  c.on("error", () => {});
  await c.connect();
  try {
    const { f, seen } = counted(key("node-redis"));
    const got = await Promise.all(
      Array.from({ length: 20 }, () =>
        f.get([1], {
          redis: c.withAbortSignal(new AbortController().signal),
        })),
    );
    assert.ok(got.every((v) => v === "v1"));
    assert.deepEqual(seen, { runs: 1, misses: 1, waits: 0 });
    await f.with(c).invalidate(1);
  } finally {
    await c.close();
  }
});

teardown(async () => {
  await server.stop();
});
