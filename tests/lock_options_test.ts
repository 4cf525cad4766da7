/**
 * Lock options: an unknown option (a typo) is a `TypeError` naming it, in
 * `new Lock`, `acquire()`, `Lock.reset`/`resetAll` and `withLock`, and
 * nothing reaches Redis. The checks are shared (`lib/lock/options.ts`), so
 * the messages read alike.
 */
import assert from "node:assert/strict";
import { connect, Lock, type RedisClient, withLock } from "../mod.ts";
import { commandCalls, scanKeys, sharedRedis } from "../testing/redis.ts";
import { teardown, test } from "./_harness.ts";

const server = await sharedRedis();
let n = 0;
const prefix = () => `respite-test-lockopt-${Date.now()}-${n++}:`;

/** Asserts `f` throws (or rejects with) a TypeError about the unknown `key`. */
async function rejectsUnknown(
  f: () => unknown,
  key: string,
  what: string,
): Promise<void> {
  const check = (err: unknown) => {
    assert.ok(err instanceof TypeError, `${what}: ${err}`);
    assert.match(err.message, new RegExp(`[Uu]nknown .*"${key}"`), what);
    assert.match(err.message, /known: /, what);
    return true;
  };
  let r: unknown;
  try {
    r = f();
  } catch (err) {
    check(err);
    return;
  }
  await assert.rejects(Promise.resolve(r), check, what);
}

test("unknown options are rejected with a TypeError everywhere, and nothing is sent to Redis", async () => {
  await using r = await connect(server.url);
  const p = prefix();
  const lock = new Lock(r, "x", { prefix: p });
  const before = await commandCalls(r);
  const cases: Array<[() => unknown, string, string]> = [
    [
      () => new Lock(r, "x", { tll: 5_000 } as unknown as { ttl: number }),
      "tll",
      "new Lock",
    ],
    [
      () => new Lock(r, "x", { prefix: p, autorenew: true } as object),
      "autorenew",
      "new Lock",
    ],
    [() => lock.acquire({ wiat: 1 } as object), "wiat", "acquire()"],
    [() => lock.acquire({ wait: 0, sigal: 1 } as object), "sigal", "acquire()"],
    [() => Lock.reset(r, "x", { prefx: p } as object), "prefx", "Lock.reset"],
    [() => Lock.resetAll(r, { prefx: p } as object), "prefx", "Lock.resetAll"],
    [
      () =>
        withLock(() => 1, { redis: r, name: "x", tll: 5_000 } as unknown as {
          redis: RedisClient;
          name: string;
        }),
      "tll",
      "withLock",
    ],
    [
      () =>
        withLock(() => 1, { redis: r, name: () => "x", wiat: 0 } as unknown as {
          redis: RedisClient;
          name: () => string;
        }),
      "wiat",
      "withLock with a name function",
    ],
  ];
  for (const [f, key, what] of cases) await rejectsUnknown(f, key, what);
  assert.equal(lock.held, false);
  const after = await commandCalls(r);
  for (
    const cmd of [
      "eval",
      "evalsha",
      "set",
      "del",
      "publish",
      "scan",
      "subscribe",
    ]
  ) {
    assert.equal(after.get(cmd), before.get(cmd), `${cmd} was called`);
  }
  assert.deepEqual(await scanKeys(r, `${p}*`), []);
});

test("options that are not objects are TypeErrors too", async () => {
  await using r = await connect(server.url);
  const lock = new Lock(r, "x", { prefix: prefix() });
  assert.throws(
    () => new Lock(r, "x", null as unknown as object),
    TypeError,
  );
  assert.throws(() => new Lock(r, "x", 5 as unknown as object), TypeError);
  await assert.rejects(lock.acquire(null as unknown as object), TypeError);
  await assert.rejects(
    Lock.reset(r, "x", "respite:" as unknown as object),
    TypeError,
  );
  assert.throws(
    () =>
      withLock(
        () => 1,
        undefined as unknown as { redis: RedisClient; name: string },
      ),
    TypeError,
  );
});

teardown(async () => {
  await server.stop();
});
