/**
 * The eviction check: on a client's first `Lock.acquire` or `cached()` call,
 * respite reads `maxmemory-policy` (CONFIG GET) once and, if Redis may evict
 * keys (any policy but `noeviction`), warns once through the logger. Where
 * CONFIG is not allowed (ACL, renamed) it stays silent and never retries; it
 * never delays or fails the caller.
 */
import assert from "node:assert/strict";
import {
  cached,
  connect,
  Lock,
  type Logger,
  type RedisClient,
  withLock,
} from "../mod.ts";
import { type RedisServer, startRedis } from "../testing/redis.ts";
import { preloadScripts } from "../testing/scripts.ts";
import { sleep, teardown, test } from "./_harness.ts";

const lru = await startRedis({ args: ["--maxmemory-policy", "allkeys-lru"] });
const plain = await startRedis(); // noeviction, Redis's default
const renamed = await startRedis({
  args: ["--maxmemory-policy", "allkeys-lru", "--rename-command", "CONFIG", ""],
});
// Servers that already have the scripts: the only warnings left to count are
// the eviction check's (script warnings: tests/script_test.ts).
for (const server of [lru, plain, renamed]) {
  await using admin = await connect(server.url);
  await preloadScripts(admin);
}
let n = 0;
const name = (s: string) => `eviction:${Date.now()}:${n++}:${s}`;

/** A logger that keeps what it is told. */
function capture(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, warn: (m: string) => void lines.push(m) };
}

const evictionLines = (lines: string[]) =>
  lines.filter((l) => l.includes("maxmemory-policy"));

/** CONFIG GET calls the server ran and refused (ACL), from INFO commandstats. */
async function configGetStats(
  admin: RedisClient,
): Promise<{ calls: number; rejected: number }> {
  const info = await admin.send<string>("INFO", "commandstats");
  const m = /^cmdstat_config\|get:calls=(\d+),.*?rejected_calls=(\d+)/m.exec(
    info,
  );
  return { calls: Number(m?.[1] ?? 0), rejected: Number(m?.[2] ?? 0) };
}

/** Many acquisitions (plain, contended, withLock) and cached() calls (miss, hit, wait). */
async function workload(redis: RedisClient, lockLogger?: Logger | null) {
  const opts = lockLogger === undefined ? {} : { logger: lockLogger };
  for (let i = 0; i < 20; i++) {
    const lock = new Lock(redis, name("a"), { ttl: 5_000, ...opts });
    assert.equal(await lock.acquire(), true);
    await lock.release();
  }
  // Contended: the second waits for the first's release.
  const first = new Lock(redis, name("shared"), { ...opts });
  const second = new Lock(redis, first.name, { ...opts });
  assert.equal(await first.acquire(), true);
  const waiting = second.acquire({ wait: 5_000 });
  await sleep(10);
  await first.release();
  assert.equal(await waiting, true);
  await second.release();
  const sum = withLock(
    (a: number, b: number) => a + b,
    { redis, name: name("with"), ttl: 5_000, ...opts },
  );
  for (let i = 0; i < 10; i++) assert.equal(await sum(i, 1), i + 1);
  const base = name("cache");
  let runs = 0;
  const f = cached(async (x: number) => {
    runs++;
    await sleep(5);
    return x * 2;
  }, { redis, key: (x) => `${base}:${x}`, ttl: 60_000, ...opts });
  for (let i = 0; i < 10; i++) {
    const all = await Promise.all([f(i), f(i), f.get([i])]);
    assert.deepEqual(all, [i * 2, i * 2, i * 2]);
    assert.equal(await f(i), i * 2); // a hit
  }
  assert.equal(runs, 10);
  assert.equal(await f.refresh(1), 2);
  for (let i = 0; i < 10; i++) await f.invalidate(i);
}

test("allkeys-lru: exactly one warning per client, however many acquisitions and cached() calls", async () => {
  await using admin = await connect(lru.url);
  const before = await configGetStats(admin);
  const logs = [capture(), capture()];
  const clients = await Promise.all(
    logs.map((logger) => connect({ url: lru.url, logger })),
  );
  try {
    await Promise.all(clients.map((c) => workload(c)));
    await workload(clients[0]); // again, on a client already checked
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
  for (const log of logs) {
    const lines = evictionLines(log.lines);
    assert.equal(lines.length, 1, JSON.stringify(log.lines));
    assert.equal(
      lines[0],
      "respite: maxmemory-policy is allkeys-lru: Redis may evict lock keys " +
        "(a held lock could be lost, or fencing tokens reset); set " +
        "maxmemory-policy noeviction on servers that hold locks",
    );
  }
  const after = await configGetStats(admin);
  assert.equal(after.calls - before.calls, 2, "one CONFIG GET per client");
});

test("a volatile-* policy warns too (lock keys carry a TTL); RESP3 reads the map reply", async () => {
  await using admin = await connect(lru.url);
  await admin.send("CONFIG", "SET", "maxmemory-policy", "volatile-ttl");
  try {
    for (const protocol of [2, 3] as const) {
      const log = capture();
      {
        await using redis = await connect({
          url: lru.url,
          protocol,
          logger: log,
        });
        await workload(redis);
      }
      const lines = evictionLines(log.lines);
      assert.equal(lines.length, 1, `RESP${protocol}: ${log.lines}`);
      assert.match(lines[0], /^respite: maxmemory-policy is volatile-ttl: /);
      assert.match(lines[0], /a held lock could be lost/);
      // volatile-* only evicts keys with a TTL: fencing counters have none.
      assert.doesNotMatch(lines[0], /fencing/);
    }
  } finally {
    await admin.send("CONFIG", "SET", "maxmemory-policy", "allkeys-lru");
  }
});

test("noeviction: no warning", async () => {
  await using admin = await connect(plain.url);
  assert.deepEqual(
    await admin.send("CONFIG", "GET", "maxmemory-policy"),
    ["maxmemory-policy", "noeviction"],
  );
  const before = await configGetStats(admin);
  const log = capture();
  {
    await using redis = await connect({ url: plain.url, logger: log });
    await workload(redis);
  }
  assert.deepEqual(log.lines, []);
  const after = await configGetStats(admin);
  assert.equal(after.calls - before.calls, 1, "checked, once");
});

test("a user without CONFIG: no warning, no error, no retry; every feature works", async () => {
  await using admin = await connect(lru.url);
  await admin.send(
    "ACL",
    "SETUSER",
    "noconfig",
    "reset",
    "on",
    ">pw",
    "~*",
    "&*",
    "+@all",
    "-config",
  );
  const before = await configGetStats(admin);
  const log = capture();
  {
    await using redis = await connect({
      url: lru.url,
      username: "noconfig",
      password: "pw",
      logger: log,
    });
    await workload(redis);
    await workload(redis);
  }
  assert.deepEqual(log.lines, []);
  const after = await configGetStats(admin);
  assert.equal(after.calls, before.calls);
  assert.equal(after.rejected - before.rejected, 1, "tried once, not again");
});

test("CONFIG renamed away (unknown command): no warning, no error", async () => {
  const log = capture();
  {
    await using redis = await connect({ url: renamed.url, logger: log });
    await workload(redis);
  }
  assert.deepEqual(log.lines, []);
});

test("logger: null on the Lock and on cached() is silent; a Lock with the client's logger still warns once", async () => {
  const log = capture();
  await using redis = await connect({ url: lru.url, logger: log });
  await workload(redis, null);
  assert.deepEqual(log.lines, []);
  const lock = new Lock(redis, name("default-logger"));
  assert.equal(await lock.acquire(), true);
  await lock.release();
  await workload(redis);
  assert.equal(evictionLines(log.lines).length, 1, JSON.stringify(log.lines));
  // A Lock with its own logger on a client that has warned: not again.
  const own = capture();
  await workload(redis, own);
  assert.deepEqual(own.lines, []);
});

test("a logger that throws does not fail the caller (no unhandled rejection)", async () => {
  let calls = 0;
  const logger = {
    warn() {
      calls++;
      throw new Error("logger broke");
    },
  };
  {
    await using redis = await connect({ url: lru.url, logger });
    await workload(redis);
  }
  assert.equal(calls, 1);
});

test("bad input to acquire() or a cached call sends nothing, CONFIG GET included", async () => {
  await using admin = await connect(lru.url);
  const before = await configGetStats(admin);
  {
    await using redis = await connect({ url: lru.url, logger: capture() });
    const lock = new Lock(redis, name("bad"));
    await assert.rejects(lock.acquire({ wait: -1 }), RangeError);
    await assert.rejects(
      lock.acquire({ signal: AbortSignal.abort(new Error("stop")) }),
      /stop/,
    );
    const f = cached((_x: string) => 1, {
      redis,
      key: () => "",
      ttl: 1_000,
    });
    await assert.rejects(f("x"), TypeError);
  }
  assert.deepEqual(await configGetStats(admin), before);
});

test("closing right after the first acquire leaves nothing pending (sanitizers)", async () => {
  {
    // The script's SHA is computed once per process: then acquire() sends at once.
    await using other = await connect({ url: lru.url, logger: capture() });
    const prime = new Lock(other, name("prime"), { ttl: 5_000 });
    assert.equal(await prime.acquire(), true);
    await prime.release();
  }
  const log = capture();
  const redis = await connect({ url: lru.url, logger: log });
  const lock = new Lock(redis, name("close"), { ttl: 5_000 });
  const got = lock.acquire();
  await redis.close();
  assert.equal(await got, true);
  assert.equal(evictionLines(log.lines).length, 1);
});

teardown(async () => {
  await Promise.all([lru, plain, renamed].map((s: RedisServer) => s.stop()));
});
