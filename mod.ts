/**
 * respite: distributed locks and cache-stampede protection over Redis, for
 * Deno, Bun, Node and Cloudflare Workers, with its own small raw-RESP client
 * and no npm dependencies.
 *
 * - {@linkcode withLock} runs a function under a distributed lock: one caller
 *   at a time across every process, the lease renewed while it runs, waiters
 *   woken the moment it is released (pub/sub, no polling).
 * - {@linkcode Lock} is that lock by hand: `acquire({ wait })`, `release()`,
 *   `extend()`, `await using`, a fencing token (`fence`) for every holder and
 *   a `signal` that aborts when the lock is lost.
 * - {@linkcode cached} stops a cache stampede across a fleet: when a key is
 *   missing or expired, one caller in the whole fleet computes it and every
 *   other caller gets the value the moment it is written; also
 *   stale-while-revalidate, XFetch early refresh, TTL jitter, negative caching.
 * - {@linkcode connect} opens respite's auto-pipelined Redis client (RESP2 or
 *   RESP3, TLS, reconnects, timeouts, `AbortSignal`); {@linkcode Script} runs
 *   Lua with EVALSHA, falling back to EVAL. {@linkcode connectSentinel} gives
 *   the same client, following the master that Redis Sentinel names.
 *
 * Every example below runs against a local Redis (`REDIS_URL`, else
 * `redis://127.0.0.1:6379`); under Deno it needs
 * `--allow-net=127.0.0.1:6379 --allow-env=REDIS_URL`.
 *
 * @example `withLock`: one transfer at a time per pair of accounts
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, withLock } from "@respite/respite";
 *
 * await using redis = await connect();
 * let inside = 0;
 * const transfer = withLock(
 *   async function (from: string, to: string, cents: number) {
 *     // `this` is the held Lock: pass its signal and fencing token on.
 *     assert.equal(++inside, 1, "never two holders at once");
 *     await new Promise((r) => setTimeout(r, 10)); // stands for the real work
 *     inside--;
 *     return { from, to, cents, fence: this.fence! };
 *   },
 *   { redis, name: (from, to) => `mod-doc:transfer:${from}:${to}`, wait: 5_000 },
 * );
 *
 * const done = await Promise.all([
 *   transfer("alice", "bob", 100),
 *   transfer("alice", "bob", 250),
 * ]);
 * assert.deepEqual(done.map((d) => d.cents).sort((a, b) => a - b), [100, 250]);
 * assert.notEqual(done[0].fence, done[1].fence); // each holder its own token
 * ```
 *
 * @example `Lock`: acquire, hold, release, with a fencing token
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, Lock } from "@respite/respite";
 *
 * await using redis = await connect();
 * await using lock = new Lock(redis, "mod-doc:nightly-report", { ttl: 10_000 });
 * const other = new Lock(redis, "mod-doc:nightly-report");
 *
 * assert.equal(await lock.acquire({ wait: 0 }), true);
 * assert.equal(lock.held, true);
 * const fence = lock.fence!; // pass it with every write
 * assert.equal(await other.acquire({ wait: 20 }), false); // held: gave up
 * await lock.release(); // wakes waiters at once
 * assert.equal(lock.held, false);
 * assert.equal(await other.acquire({ wait: 0 }), true);
 * assert.ok(other.fence! > fence); // fencing tokens only increase
 * await other.release();
 * ```
 *
 * @example `cached`: 50 concurrent callers on a cold key, one computation
 * ```ts
 * import assert from "node:assert/strict";
 * import { cached, connect } from "@respite/respite";
 *
 * await using redis = await connect();
 * let computations = 0;
 * const getPrices = cached(
 *   async (region: string) => {
 *     computations++; // stands for a slow query
 *     await new Promise((r) => setTimeout(r, 50));
 *     return { region, eurPerKwh: 0.31 };
 *   },
 *   { redis, key: (region) => `mod-doc:prices:${region}`, ttl: 60_000 },
 * );
 *
 * await getPrices.invalidate("eu"); // start cold
 * const all = await Promise.all(
 *   Array.from({ length: 50 }, () => getPrices("eu")),
 * );
 * assert.equal(computations, 1);
 * assert.ok(all.every((p) => p.eurPerKwh === 0.31));
 * assert.deepEqual(await getPrices("eu"), { region: "eu", eurPerKwh: 0.31 });
 * assert.equal(computations, 1); // a hit: one GET, no computation
 * await getPrices.invalidate("eu");
 * ```
 *
 * @example `connect`: the client underneath, for your own commands
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, ReplyError } from "@respite/respite";
 *
 * // With no argument, connect() uses REDIS_URL, else redis://127.0.0.1:6379.
 * await using redis = await connect();
 * await redis.send("SET", "mod-doc:greeting", "hello", "PX", 10_000);
 * assert.equal(await redis.send("GET", "mod-doc:greeting"), "hello");
 * // Commands issued in the same tick leave in one write (auto-pipelining).
 * const [a, b] = await Promise.all([
 *   redis.send<number>("INCR", "mod-doc:visits"),
 *   redis.send<number>("INCR", "mod-doc:visits"),
 * ]);
 * assert.equal(b, a + 1);
 * await assert.rejects(
 *   redis.send("INCR", "mod-doc:greeting"),
 *   (e) => e instanceof ReplyError && e.code === "ERR",
 * );
 * await redis.send("DEL", "mod-doc:greeting", "mod-doc:visits");
 * ```
 *
 * @module
 */

export {
  type ClientInfo,
  type CloseOptions,
  connect,
  RedisClient,
} from "./lib/client/client.ts";
export type {
  MessageListener,
  SubscribeOptions,
} from "./lib/client/subscriber.ts";
export type { CommandOptions } from "./lib/client/command_options.ts";
export type { ConnectionStatus } from "./lib/client/connection.ts";
export {
  ConnectionError,
  ProtocolError,
  ReplyError,
  RespiteError,
  TimeoutError,
} from "./lib/errors.ts";
export type { ConnectOptions, ReconnectOptions } from "./lib/client/options.ts";
export {
  connectSentinel,
  type SentinelAddress,
  type SentinelOptions,
} from "./lib/client/sentinel.ts";
export type { Logger } from "./lib/validate.ts";
export { type DecoderLimits, Push, type Reply } from "./lib/resp/decoder.ts";
export type { Arg } from "./lib/resp/encoder.ts";
export { Script, type ScriptRunOptions } from "./lib/script.ts";
export type { CommandSurface, RedisLike } from "./lib/adapters/mod.ts";
export {
  type AcquireOptions,
  Lock,
  type LockHooks,
  type LockOptions,
  type ResetOptions,
} from "./lib/lock/lock.ts";
export { withLock, type WithLockOptions } from "./lib/lock/with_lock.ts";
export {
  LockLostError,
  type LockLostReason,
  LockNotAcquiredError,
  LockNotHeldError,
  type LockNotHeldReason,
} from "./lib/errors.ts";
export type { LockKeys, SemaphoreKeys } from "./lib/keys.ts";
export { Semaphore, type SemaphoreOptions } from "./lib/semaphore/semaphore.ts";
export {
  withSemaphore,
  type WithSemaphoreOptions,
} from "./lib/semaphore/with_semaphore.ts";
export { cached } from "./lib/cache/cached.ts";
export type { MemoryStats } from "./lib/cache/memory.ts";
export type {
  CachedCallOptions,
  CachedComputeEvent,
  CachedEntry,
  CachedEntryInfo,
  CachedErrorEvent,
  CachedEvent,
  CachedFunction,
  CachedHooks,
  CachedOptions,
  CachedWaitEvent,
  CachedWarmOptions,
  CachedWarmResult,
} from "./lib/cache/options.ts";
export {
  type BinaryCodec,
  type Codec,
  jsonCodec,
  richJsonCodec,
  type TextCodec,
} from "./lib/cache/codec.ts";
export { Singleflight } from "./lib/cache/singleflight.ts";
export {
  CachedFailureError,
  CachedTimeoutError,
  CodecError,
} from "./lib/errors.ts";
export type {
  Connector,
  Runtime,
  TlsOptions,
  Transport,
  TransportHandlers,
  TransportOptions,
} from "./lib/transport/types.ts";
export {
  ClusterClient,
  type ClusterOptions,
  type ClusterSeed,
  type ClusterStats,
  connectCluster,
} from "./lib/cluster/client.ts";
export { ClusterError, CrossSlotError } from "./lib/errors.ts";
