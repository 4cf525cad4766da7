/**
 * The public shape of `cached`: its options (types, one table of defaults,
 * the checks), the events its hooks receive and the emitter that calls them,
 * and the types of a cached function and what `peek()` returns.
 *
 * @module
 */

import {
  checkClient,
  type CommandSurface,
  type RedisLike,
} from "../adapters/mod.ts";
import { checkCodec, type Codec, jsonCodec } from "./codec.ts";
import type { CachedFailureError } from "../errors.ts";
import { checkHashTag, checkPrefix, DEFAULT_PREFIX } from "../keys.ts";
import type { MemoryStats } from "./memory.ts";
import {
  checkBoolean,
  checkFunction,
  checkKnown,
  checkLogger,
  checkMs,
  checkString,
  fail,
  type Logger,
} from "../validate.ts";

/** What every hook event carries. */
export interface CachedEvent {
  /** The cache key, as the `key` option made it (without prefix). */
  key: string;
}

/** A run of the cached function. */
export interface CachedComputeEvent extends CachedEvent {
  /** How long the function ran, in ms. */
  duration: number;
  /** Whether it returned (`true`) or threw (`false`). */
  ok: boolean;
  /**
   * Why it ran: `"miss"` (no usable entry), `"stale"` (background refresh of a
   * stale entry), `"early"` (XFetch early refresh), `"refresh"` (`refresh()`),
   * `"timeout"` (the wait for another process ran out), `"fail-open"` (Redis
   * unreachable).
   */
  reason: "miss" | "stale" | "early" | "refresh" | "timeout" | "fail-open";
  /** Whether it ran in the background (callers did not wait for it). */
  background: boolean;
}

/** A wait for another process's computation, as it ended. */
export interface CachedWaitEvent extends CachedEvent {
  /** How long it lasted, in ms. */
  duration: number;
  /**
   * How it ended: `"value"` (the value arrived), `"lead"` (the other process
   * gave up the lock without a usable value, so this one computes),
   * `"timeout"` (the `wait` option ran out), `"error"` (Redis failed).
   */
  outcome: "value" | "lead" | "timeout" | "error";
}

/** A problem `cached` handled without failing the call. */
export interface CachedErrorEvent extends CachedEvent {
  /** The error. */
  error: unknown;
  /**
   * Where it happened: `"redis"` (unreachable or failing: the call failed
   * open), `"decode"` (an entry could not be decoded: treated as a miss),
   * `"validate"` (a value failed the `validate` option: a miss read from
   * Redis, or a computed value not written), `"write"` (the value could not be stored), `"lock"` (the lock could not
   * be released), `"refresh"` (a background refresh failed), `"stale"` (the
   * function failed and a stale value was served instead), `"hook"` (another
   * hook threw).
   */
  phase:
    | "redis"
    | "decode"
    | "validate"
    | "write"
    | "lock"
    | "refresh"
    | "stale"
    | "hook";
}

/**
 * Callbacks for metrics and logs. Each is optional and called synchronously;
 * one that throws is reported to the `error` hook (or the logger) and
 * otherwise ignored. Calls that join a lookup already in flight in this
 * process share its events: events count lookups, not calls.
 */
export interface CachedHooks {
  /** A fresh entry was served. */
  hit?(event: CachedEvent): void;
  /** A stale entry was served while one caller in the fleet refreshes it. */
  stale?(event: CachedEvent): void;
  /** No usable entry: this lookup computes, or waits for whoever does. */
  miss?(event: CachedEvent): void;
  /** The function ran in this process. */
  compute?(event: CachedComputeEvent): void;
  /** This lookup waited for another process's computation. */
  wait?(event: CachedWaitEvent): void;
  /** Something failed and was handled (see {@linkcode CachedErrorEvent}). */
  error?(event: CachedErrorEvent): void;
}

/**
 * Options for {@linkcode cached}. Durations are in milliseconds.
 *
 * @typeParam A The function's parameter types.
 * @typeParam T What it resolves to.
 */
export interface CachedOptions<A extends unknown[], T> {
  /**
   * The client to use: respite's (from `connect()`), or an app's ioredis,
   * node-redis, Bun `RedisClient` or `@db/redis` client (see
   * {@linkcode RedisLike}). May be left out, and then every call gives one:
   * `fn.get(args, { redis })` or `fn.with(redis)(...args)`. That is the way
   * on Cloudflare Workers, where a client belongs to the request that
   * connected it: make the cached function once, at module scope, and pass
   * each request's client. A client given to a call wins over this one.
   *
   * Clients of one cached function may reach different Redis servers: each
   * server has its own entries, locks and in-process flights. Concurrent
   * calls for a key in this process share one lookup (made with the client
   * of the call that started it) when their clients reach the same server,
   * as far as the process can tell: respite's clients with the same
   * user, host, port and db (their `info`; so per-request clients on
   * Workers share it), or the faces of one node-redis client
   * (`withAbortSignal()`...). Any other two clients (two ioredis clients,
   * say, or one host under two names) make separate lookups: on one server
   * their entry's Redis lock still lets only one of them compute.
   */
  redis?: RedisLike;
  /**
   * The cache key: a string, or a function of the call's arguments that
   * returns one (non-empty). Required: a key taken from the function's name
   * would change when a bundler or minifier renames the function (two
   * bundles of one app gave `{en}` and `{tn}`), splitting the fleet's cache.
   */
  key: string | ((...args: A) => string);
  /**
   * How long a value stays fresh: a positive integer of ms, or a function of
   * the value that returns one, so one cached function can keep some values
   * longer than others (`(p) => p.kind === "price" ? 300_000 : 3_600_000`).
   * A function's result is checked at each write: one that is not a positive
   * integer rejects the call with a `RangeError`, and nothing is written.
   */
  ttl: number | ((value: T) => number);
  /**
   * After `ttl`, serve the stale value at once for this long while one caller
   * in the whole fleet refreshes it in the background (default 0: off).
   */
  staleWhileRevalidate?: number;
  /**
   * After `ttl`, keep the value this long to serve it when recomputing it
   * fails (default 0: off).
   */
  staleIfError?: number;
  /**
   * XFetch β: refresh early, in the background, with a chance that grows as
   * expiry nears: when `now - Δ·β·ln(rand()) ≥ freshUntil`, Δ being how long
   * the last computation took. 1 (the default) is the paper's optimum; larger
   * refreshes earlier; 0 turns it off.
   */
  beta?: number;
  /**
   * Shorten each entry's `ttl` by a random amount up to this many ms, so keys
   * written together do not expire together (default 0). Must be below `ttl`.
   */
  jitter?: number;
  /**
   * Checks a value read from Redis before it is used (like cachified's
   * `checkValue`): when it returns `false` (or throws), the entry counts as a
   * miss, the `error` hook is told (`phase: "validate"`) and the value is
   * never returned; the call computes as on any miss. A computed value that
   * fails is returned to its caller but not written. For entries written by
   * an older version of the app, or by another service.
   */
  validate?: (value: T) => boolean;
  /**
   * The tags of a call's entry, as a function of its arguments (a group of
   * entries to invalidate together: `(id) => [`user:${id}`]`). Tags are
   * shared by every cached function with the same `prefix`;
   * {@linkcode CachedFunction.invalidateTag} invalidates all of a tag's
   * entries across the fleet. Each tag is a set of its cache keys in Redis,
   * in the tag's own cluster slot; an entry joins it before its value is
   * computed, which costs one more round trip per tag on a miss.
   */
  tags?: (...args: A) => readonly string[];
  /**
   * A name for this function's entries as a group, so that
   * {@linkcode CachedFunction.invalidateAll} can invalidate them all at once
   * in O(1). Every entry then carries the namespace's generation (a token
   * at `<prefix>cache:{<namespace>}:gen`) and a read fetches the current
   * token beside the entry: a hit is one `MGET` of both instead of a `GET`
   * (on a cluster, two GETs in parallel), in the same round trip
   * (a memory tier hit keeps the token too, so it stays free of I/O).
   * Cached functions with the same `namespace` and `prefix` are invalidated
   * together. Any non-empty string that does not start with `}`.
   */
  namespace?: string;
  /**
   * An in-process tier in front of Redis: a bounded LRU per process (and per
   * Redis server) of fresh entries, so a hit on it costs no I/O. Kept
   * coherent by Redis itself (`CLIENT TRACKING` in broadcast mode on a
   * connection of its own, one per client and prefix): any change of an
   * entry's key in Redis — a respite write or `invalidate()`, a `DEL` or
   * `SET` from anywhere, an expiry, a `FLUSHDB` — drops it here too, as soon
   * as the invalidation arrives. While that connection is down the tier is
   * flushed and bypassed, and so it is while that connection has not
   * answered a PING (it sends one every 500 ms) sent in the last 1.5 s.
   * This process's own writes drop their key here at once. An entry is
   * never served past its own freshness, and a stale one always comes from
   * Redis. Each hit decodes the stored form again: callers never share one
   * object. Only with respite's own clients, from `connect()` or
   * `connectCluster()`, on Redis 6+; with any other client the tier is off
   * and a warning says so once. On a cluster there is one tracking
   * connection per master (an entry and its namespace's token may live on
   * different masters), following the slot map, and the tier serves only
   * while all of them are up. For
   * long-lived processes: on Cloudflare Workers, where each request has its
   * own client, leave it off (each request would open a tracking connection
   * for an empty tier).
   */
  memory?: { maxEntries: number; maxBytes?: number };
  /** Cache `null` and `undefined` results too (default `false`: return them without caching). */
  cacheNullish?: boolean;
  /**
   * Remember failures for this long: calls within it reject with a
   * `CachedFailureError` without running the function (default 0: errors are
   * never cached).
   */
  negativeTtl?: number;
  /** Which failures to remember when `negativeTtl` is set (default: all). */
  isNegative?: (error: unknown) => boolean;
  /** How values are stored (default: {@linkcode jsonCodec}). */
  codec?: Codec<T>;
  /** Key prefix (default `"respite:"`): entries live at `<prefix>cache:{<key>}`. */
  prefix?: string;
  /** The lease of the lock a computing caller holds, renewed while it computes (default 10_000). */
  lockTtl?: number;
  /**
   * How long a caller waits for another process's computation before the
   * fallback (default 2 × `lockTtl`, 20_000 with the default lease;
   * `Infinity` waits as long as it takes). Keep it above `lockTtl`: a waiter
   * takes over from a process that died only once that process's lease has
   * run out. When the lock changes hands while a caller waits (its holder
   * died or failed and another caller took over), the wait starts again for
   * the new holder, at most 3 times.
   */
  wait?: number;
  /**
   * What a caller does when `wait` runs out and no stale value is left:
   * `"compute"` (the default) runs the function itself; `"throw"` rejects
   * with a `CachedTimeoutError`. A stale value, when there is one, is served
   * first either way.
   */
  onWaitTimeout?: "compute" | "throw";
  /**
   * When Redis cannot be reached: `true` (the default) computes in this
   * process (still one computation per key per process), reports through
   * the `error` hook and logs a warning (the first at once, then at most one
   * line per 10 s per cached function, counting the calls in between);
   * `false` rejects with the Redis error.
   */
  failOpen?: boolean;
  /** Give up on one Redis command after this long and treat Redis as unreachable (default 1_000). */
  timeout?: number;
  /** Metrics and logging callbacks. */
  hooks?: CachedHooks;
  /** The random source for XFetch and jitter, uniform in [0, 1) (default `Math.random`). */
  random?: () => number;
  /** Where fail-open, script and hook warnings go (default: the client's logger); `null` silences them. */
  logger?: Logger | null;
}

/** Options for one call of a cached function. */
export interface CachedCallOptions {
  /**
   * Stops this caller's wait: the call rejects with the signal's reason. The
   * shared lookup or computation goes on for the other callers.
   */
  signal?: AbortSignal;
  /**
   * The client for this call, instead of the `redis` option (required when
   * that was left out). On Cloudflare Workers: the client this request
   * connected; one from an earlier request is refused with a `TypeError`.
   */
  redis?: RedisLike;
}

/** Options of {@linkcode CachedFunction.warm}. */
export interface CachedWarmOptions {
  /** How many keys are looked at or computed at once (default 8). */
  concurrency?: number;
  /** Stops warming: keys not started yet are left, and it rejects with the reason. */
  signal?: AbortSignal;
}

/** What {@linkcode CachedFunction.warm} did. */
export interface CachedWarmResult {
  /** Keys that were fresh already: nothing was computed for them. */
  fresh: number;
  /**
   * Keys that were missing or stale and are fresh now: computed here, or by
   * another process whose value this one waited for.
   */
  filled: number;
  /** Keys whose computation failed (reported to the `error` hook), with their errors. */
  failed: { args: unknown[]; error: unknown }[];
}

/** An entry's metadata, as `peek()` shows it. */
export interface CachedEntryInfo {
  /** When the value's computation started (Unix ms). */
  createdAt: number;
  /** How long the computation took (ms): XFetch's Δ. */
  delta: number;
  /** Until when it is fresh (Unix ms). */
  freshUntil: number;
  /** Until when it may be served stale while it is refreshed (Unix ms). */
  staleUntil: number;
  /** Whether it is fresh now. */
  fresh: boolean;
}

/**
 * What `peek()` found: a value, or a failure remembered by negative caching.
 *
 * @typeParam T The cached function's result type.
 */
export type CachedEntry<T> =
  | (CachedEntryInfo & { kind: "value"; value: T })
  | (CachedEntryInfo & { kind: "error"; error: CachedFailureError });

/**
 * A function wrapped by {@linkcode cached}: same parameters, resolves to the
 * same result, computed at most once at a time per key across every process
 * sharing the Redis.
 *
 * @typeParam A The parameter types.
 * @typeParam T The result type.
 */
export interface CachedFunction<A extends unknown[], T> {
  /**
   * Returns the cached value, or computes it (once in the fleet) and caches it.
   *
   * @param args The arguments, passed to the function on a miss.
   * @returns The value.
   */
  (...args: A): Promise<T>;
  /**
   * Like calling the function, with per-call options: an `AbortSignal`, the
   * client for this call.
   *
   * @param args The arguments.
   * @param options `signal`, `redis`.
   * @returns The value.
   */
  get(args: A, options?: CachedCallOptions): Promise<T>;
  /**
   * The same cached function (the same cache, singleflight and background
   * refreshes) with `redis` as the client of every call and method: for a
   * request's client on Cloudflare Workers, e.g.
   * `await prices.with(redis).invalidate(id)`.
   *
   * @param redis The client.
   * @returns The cached function on that client.
   * @throws {TypeError} When `redis` is not a client, or (on Workers) was
   *   connected by another request.
   */
  with(redis: RedisLike): CachedFunction<A, T>;
  /**
   * Stores a value computed elsewhere (write-through), for example right
   * after the database row it caches was updated: encoded like a computed
   * value, fresh for `ttl` from now, and waiters in every process are woken
   * with it. A computation already running for the entry (in any process)
   * does not overwrite it.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { cached, connect } from "@respite/respite";
   * await using redis = await connect();
   * let runs = 0;
   * const price = cached(async (sku: string) => {
   *   runs++; // stands for a database read
   *   return { sku, cents: 100 };
   * }, { redis, key: (sku) => `doc:price:${sku}`, ttl: 60_000 });
   * // After an UPDATE in the database, store the new row at once:
   * await price.set(["a1"], { sku: "a1", cents: 120 });
   * assert.deepEqual(await price("a1"), { sku: "a1", cents: 120 });
   * assert.equal(runs, 0);
   * await price.invalidate("a1");
   * ```
   *
   * @param args The arguments that name the entry, as an array.
   * @param value The value to store.
   * @returns Resolves once Redis has it.
   * @throws {TypeError} A nullish value without `cacheNullish`, or one
   *   that fails `validate`: nothing is written.
   * @throws {CodecError} When the codec cannot encode it: nothing is written.
   */
  set(args: A, value: T): Promise<void>;
  /**
   * Fills the entries of `argsList` that are missing or stale, and skips the
   * fresh ones: for a deploy or a cold start. Each key is computed once in
   * the fleet, as a call would be (another process warming or calling at
   * the same time waits for the same computation); a stale value is
   * recomputed rather than served.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { cached, connect } from "@respite/respite";
   * await using redis = await connect();
   * let runs = 0;
   * const report = cached(async (day: string) => {
   *   runs++;
   *   return { day, total: 42 };
   * }, { redis, key: (day) => `doc:report:${day}`, ttl: 60_000 });
   * await report.invalidate("mon");
   * await report.invalidate("tue");
   * await report("mon"); // already cached: warm() skips it
   * const done = await report.warm([["mon"], ["tue"]], { concurrency: 4 });
   * assert.deepEqual([done.fresh, done.filled, done.failed.length], [1, 1, 0]);
   * assert.equal(runs, 2);
   * await report.invalidate("mon");
   * await report.invalidate("tue");
   * ```
   *
   * @param argsList The arguments of each entry to warm.
   * @param options `concurrency` (default 8) and `signal`.
   * @returns How many were fresh, how many were filled, and which failed.
   * @throws {TypeError} For a list that is not an array of argument arrays,
   *   or bad options (before anything is sent).
   */
  warm(
    argsList: readonly A[],
    options?: CachedWarmOptions,
  ): Promise<CachedWarmResult>;
  /**
   * Invalidates every entry that carries `tag` (see the `tags` option), in
   * every cached function with this one's `prefix`, across the fleet: each
   * as {@linkcode CachedFunction.invalidate} does (a computation already
   * running for it does not write), in O(entries of the tag), with no SCAN
   * of the keyspace; on a cluster each entry is invalidated on its own slot.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { cached, connect } from "@respite/respite";
   * await using redis = await connect();
   * let runs = 0;
   * const orders = cached(async (user: number, page: number) => {
   *   runs++;
   *   return { user, page };
   * }, {
   *   redis,
   *   key: (user, page) => `doc:orders:${user}:${page}`,
   *   ttl: 60_000,
   *   tags: (user) => [`doc:user:${user}`],
   * });
   * await orders(7, 1);
   * await orders(7, 2);
   * assert.equal(await orders.invalidateTag("doc:user:7"), 2);
   * await orders(7, 1); // computed again
   * assert.equal(runs, 3);
   * await orders.invalidateTag("doc:user:7");
   * ```
   *
   * @param tag The tag.
   * @returns How many entries of the tag were invalidated.
   * @throws {TypeError} For a tag that is not a non-empty string.
   */
  invalidateTag(tag: string): Promise<number>;
  /**
   * Invalidates every entry of this function's `namespace` (and of any other
   * cached function with the same `namespace` and `prefix`), across the
   * fleet, in O(1): one `SET` of a new generation token, whatever the number
   * of entries. Calls from then on miss (and compute once per key across the
   * fleet, as always); a computation already running writes its result under
   * the old generation, which no call from then on serves. The old entries
   * stay in Redis until their own expiry. Memory tiers drop them as the
   * token's change reaches them.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { cached, connect } from "@respite/respite";
   * await using redis = await connect();
   * let runs = 0;
   * const price = cached(async (sku: string) => {
   *   runs++;
   *   return { sku, eur: 10 };
   * }, {
   *   redis,
   *   key: (sku) => `doc:price:${sku}`,
   *   ttl: 60_000,
   *   namespace: "doc:prices",
   * });
   * await price.invalidateAll();
   * await price("a");
   * await price("b");
   * await price("a"); // a hit
   * assert.equal(runs, 2);
   * await price.invalidateAll(); // every price, in one command
   * await price("a"); // computed again
   * assert.equal(runs, 3);
   * ```
   *
   * @returns Resolves once Redis has the new generation.
   * @throws {TypeError} (rejects) Without the `namespace` option.
   */
  invalidateAll(): Promise<void>;
  /**
   * Removes the entry. A computation already running for it (in any process)
   * does not write its result, so the next call computes anew.
   *
   * @param args The arguments that name the entry.
   * @returns Resolves once Redis has it.
   */
  invalidate(...args: A): Promise<void>;
  /**
   * Recomputes the value now and caches it, whether or not an entry exists.
   * Deduplicated: concurrent refreshes in this process share one computation,
   * and a refresh that finds a value whose computation started after it was
   * called (in any process) returns that instead of computing again.
   *
   * @param args The arguments.
   * @returns The new value.
   */
  refresh(...args: A): Promise<T>;
  /**
   * Reads the entry without computing anything or triggering a refresh.
   *
   * @param args The arguments.
   * @returns The entry and its metadata, or `null` when there is none (or it
   *   cannot be decoded).
   */
  peek(...args: A): Promise<CachedEntry<T> | null>;
  /**
   * The Redis key of the entry for these arguments: `<prefix>cache:{<key>}`.
   *
   * @param args The arguments.
   * @returns The Redis key.
   */
  redisKey(...args: A): string;
  /**
   * Resolves when no background refresh started by this function in this
   * process is running (for tests and graceful shutdown).
   *
   * @returns Resolves when idle.
   */
  idle(): Promise<void>;
  /**
   * The memory tier's figures on the `redis` option's client (see the
   * `memory` option), or `null` without a tier there (no `memory` option,
   * not yet used, or a client that cannot track).
   */
  readonly memory: MemoryStats | null;
}

/** Options after checks and defaults. */
export interface ResolvedCacheOptions<A extends unknown[], T> {
  redis: CommandSurface | undefined;
  key: (args: A) => string;
  /** The fresh time of a value (checked). */
  ttl: (value: T) => number;
  /** The `validate` option, or `null`. */
  validate: ((value: T) => boolean) | null;
  /** The memory tier's bounds, or `null` without one. */
  memory: { maxEntries: number; maxBytes: number } | null;
  /** The tags of a call (checked), or `null` without the option. */
  tags: ((args: A) => string[]) | null;
  /** The `namespace` option, or `null`. */
  namespace: string | null;
  /** The longest an entry of a fixed `ttl` lives in Redis (ms), or `null` for a ttl function. */
  maxEntryMs: number | null;
  staleWhileRevalidate: number;
  staleIfError: number;
  beta: number;
  jitter: number;
  cacheNullish: boolean;
  negativeTtl: number;
  isNegative: (error: unknown) => boolean;
  codec: Codec<T>;
  prefix: string;
  lockTtl: number;
  wait: number;
  onWaitTimeout: "compute" | "throw";
  failOpen: boolean;
  timeout: number;
  hooks: CachedHooks;
  random: () => number;
  logger: Logger | null | undefined;
}

/**
 * The defaults of every optional option but `wait` (2 × `lockTtl`) and
 * `logger` (the client's).
 */
const DEFAULTS = {
  staleWhileRevalidate: 0,
  staleIfError: 0,
  beta: 1,
  jitter: 0,
  cacheNullish: false,
  negativeTtl: 0,
  isNegative: (): boolean => true,
  codec: jsonCodec,
  prefix: DEFAULT_PREFIX,
  lockTtl: 10_000,
  onWaitTimeout: "compute",
  failOpen: true,
  timeout: 1_000,
  hooks: Object.freeze({}) as CachedHooks,
  random: Math.random,
} as const;

const KNOWN = [
  "redis",
  "key",
  "ttl",
  "validate",
  "tags",
  "namespace",
  "memory",
  "wait",
  "logger",
  ...Object.keys(DEFAULTS),
];
const HOOKS = ["hit", "stale", "miss", "compute", "wait", "error"];

/** A whole number of ms ≥ 0, or its default. */
function window(name: keyof typeof DEFAULTS, value: unknown): number {
  return value === undefined
    ? DEFAULTS[name] as number
    : checkMs(name, value, 0);
}

/** The `memory` option, checked. */
function memoryOption(
  memory: unknown,
): { maxEntries: number; maxBytes: number } | null {
  if (memory === undefined) return null;
  if (memory === null || typeof memory !== "object") {
    fail("memory", "an object: { maxEntries, maxBytes? }", memory);
  }
  checkKnown("memory option", memory as object, ["maxEntries", "maxBytes"]);
  const m = memory as { maxEntries?: unknown; maxBytes?: unknown };
  const int = (name: string, v: unknown): number => {
    if (typeof v !== "number") fail(name, "a number", v);
    if (!Number.isSafeInteger(v) || (v as number) < 1) {
      fail(name, "a whole number >= 1", v, RangeError);
    }
    return v as number;
  };
  return {
    maxEntries: int("memory.maxEntries", m.maxEntries),
    maxBytes: m.maxBytes === undefined
      ? Number.MAX_SAFE_INTEGER
      : int("memory.maxBytes", m.maxBytes),
  };
}

/** The `tags` option, its results checked at each call. */
function tagsOption<A extends unknown[]>(
  tags: unknown,
): ((args: A) => string[]) | null {
  if (tags === undefined) return null;
  const f = checkFunction<(...args: A) => unknown>("tags", tags);
  return (args) => {
    const got = f(...args);
    if (!Array.isArray(got)) {
      fail("the tags function's result", "an array of strings", got);
    }
    const list = [...new Set(got as unknown[])];
    for (const tag of list) {
      if (typeof tag !== "string" || tag.length === 0) {
        fail("a tag", "a non-empty string", tag);
      }
      checkHashTag("a tag", tag as string);
    }
    return list as string[];
  };
}

/**
 * The `ttl` option as a function of the value: a number is checked now, a
 * function's result at each write.
 */
function ttlOption<T>(ttl: unknown): (value: T) => number {
  if (typeof ttl === "function") {
    const f = ttl as (value: T) => unknown;
    return (value) => checkMs("the ttl function's result", f(value));
  }
  const ms = checkMs("ttl", ttl);
  return () => ms;
}

/** The `namespace` option, checked: a non-empty hash tag, or `null`. */
function namespaceOption(ns: unknown): string | null {
  if (ns === undefined) return null;
  const s = checkString("namespace", ns, true);
  checkHashTag("namespace", s);
  return s;
}

/**
 * The `key` option as a function of the arguments. A static key is checked
 * now; a key function's result at each call.
 */
function keyOption<A extends unknown[]>(key: unknown): (args: A) => string {
  if (key === undefined) {
    // Not the function's name: a bundler or minifier renames functions (two
    // bundles of one app gave `en` and `tn`), and each name would be a cache
    // of its own, computing again and never invalidated together.
    fail(
      "key",
      "given: a string, or a function of the arguments that returns one (a key taken from the function's name would change when a bundler or minifier renames it, splitting the fleet's cache)",
      key,
    );
  }
  if (typeof key === "string") {
    const k = checkString("key", key, true);
    checkHashTag("key", k);
    return () => k;
  }
  if (typeof key !== "function") fail("key", "a string or a function", key);
  const f = key as (...args: A) => unknown;
  return (args) => {
    const k = f(...args);
    if (typeof k !== "string" || k.length === 0) {
      fail("the key function's result", "a non-empty string", k);
    }
    return k;
  };
}

/**
 * Checks `cached`'s arguments and fills in defaults.
 *
 * @param fn The function to cache.
 * @param options Its options.
 * @returns The resolved options.
 * @throws {TypeError} For a wrong type, a missing key or an unknown option.
 * @throws {RangeError} For a duration or β out of range.
 */
export function resolveCacheOptions<A extends unknown[], T>(
  fn: unknown,
  options: CachedOptions<A, T>,
): ResolvedCacheOptions<A, T> {
  if (typeof fn !== "function") {
    fail("cached()'s first argument", "a function to cache", fn);
  }
  if (options === null || typeof options !== "object") {
    fail("cached()'s options", "an object: { redis, key, ttl, ... }", options);
  }
  checkKnown("cached() option", options, KNOWN);
  const o = options as unknown as Record<string, unknown>;
  // Optional: without it, each call gives its client (checked per call).
  const redis = o.redis === undefined ? undefined : checkClient(o.redis);
  const key = keyOption<A>(o.key);
  const ttl = ttlOption<T>(o.ttl);
  const beta = o.beta === undefined ? DEFAULTS.beta : o.beta;
  if (typeof beta !== "number") fail("beta", "a number", beta);
  if (!Number.isFinite(beta) || beta < 0) {
    fail("beta", "a finite number >= 0 (0 turns XFetch off)", beta, RangeError);
  }
  const jitter = window("jitter", o.jitter);
  if (typeof o.ttl === "number" && jitter >= o.ttl) {
    fail("jitter", `less than ttl (${o.ttl} ms)`, jitter, RangeError);
  }
  const lockTtl = o.lockTtl === undefined
    ? DEFAULTS.lockTtl
    : checkMs("lockTtl", o.lockTtl);
  let wait = 2 * lockTtl;
  if (o.wait !== undefined) {
    if (typeof o.wait !== "number") fail("wait", "a number of ms", o.wait);
    if (Number.isNaN(o.wait) || o.wait < 0) {
      fail(
        "wait",
        "a non-negative number of ms, or Infinity",
        o.wait,
        RangeError,
      );
    }
    wait = o.wait;
  }
  const onWaitTimeout = o.onWaitTimeout ?? DEFAULTS.onWaitTimeout;
  if (onWaitTimeout !== "compute" && onWaitTimeout !== "throw") {
    fail("onWaitTimeout", '"compute" or "throw"', onWaitTimeout);
  }
  const hooks = o.hooks ?? DEFAULTS.hooks;
  if (hooks === null || typeof hooks !== "object") {
    fail("hooks", "an object of callbacks", hooks);
  }
  checkKnown("hook", hooks, HOOKS);
  for (const [name, h] of Object.entries(hooks)) {
    if (h !== undefined) checkFunction(`hooks.${name}`, h);
  }
  if (o.logger !== undefined) checkLogger(o.logger, console);
  return {
    redis,
    key,
    ttl,
    validate: o.validate === undefined
      ? null
      : checkFunction<(value: T) => boolean>("validate", o.validate),
    tags: tagsOption<A>(o.tags),
    namespace: namespaceOption(o.namespace),
    memory: memoryOption(o.memory),
    maxEntryMs: typeof o.ttl === "number"
      ? o.ttl + Math.max(
        window("staleWhileRevalidate", o.staleWhileRevalidate),
        window("staleIfError", o.staleIfError),
      )
      : null,
    staleWhileRevalidate: window(
      "staleWhileRevalidate",
      o.staleWhileRevalidate,
    ),
    staleIfError: window("staleIfError", o.staleIfError),
    beta,
    jitter,
    cacheNullish: o.cacheNullish === undefined
      ? DEFAULTS.cacheNullish
      : checkBoolean("cacheNullish", o.cacheNullish),
    negativeTtl: window("negativeTtl", o.negativeTtl),
    isNegative: o.isNegative === undefined
      ? DEFAULTS.isNegative
      : checkFunction<(error: unknown) => boolean>("isNegative", o.isNegative),
    codec: o.codec === undefined
      ? DEFAULTS.codec as Codec<T>
      : checkCodec<T>(o.codec),
    prefix: o.prefix === undefined ? DEFAULTS.prefix : checkPrefix(o.prefix),
    lockTtl,
    wait,
    onWaitTimeout,
    failOpen: o.failOpen === undefined
      ? DEFAULTS.failOpen
      : checkBoolean("failOpen", o.failOpen),
    timeout: o.timeout === undefined
      ? DEFAULTS.timeout
      : checkMs("timeout", o.timeout),
    hooks: hooks as CachedHooks,
    random: o.random === undefined
      ? DEFAULTS.random
      : checkFunction<() => number>("random", o.random),
    logger: o.logger as Logger | null | undefined,
  };
}

/**
 * Calls the hooks of one cached function. A hook that throws is reported to
 * the `error` hook (or, for the `error` hook itself or without one, to the
 * logger) and otherwise ignored.
 */
export class CacheEvents {
  /** The hooks. */
  readonly hooks: CachedHooks;
  readonly #redis: CommandSurface | undefined;
  readonly #logger: Logger | null | undefined;

  /**
   * @param options The resolved `hooks`, `logger` and `redis` (whose logger
   *   is used when `logger` was not given).
   */
  constructor(
    options: Pick<
      ResolvedCacheOptions<[], unknown>,
      "hooks" | "logger" | "redis"
    >,
  ) {
    this.hooks = options.hooks;
    this.#logger = options.logger;
    this.#redis = options.redis;
  }

  /** Calls hook `name` with `event`, if there is one. */
  emit(name: "hit" | "stale" | "miss", event: CachedEvent): void;
  /** Calls the `compute` hook. */
  emit(name: "compute", event: CachedComputeEvent): void;
  /** Calls the `wait` hook. */
  emit(name: "wait", event: CachedWaitEvent): void;
  /** Calls the `error` hook. */
  emit(name: "error", event: CachedErrorEvent): void;
  emit(name: keyof CachedHooks, event: CachedEvent): void {
    const hooks = this.hooks;
    const hook = hooks[name] as ((e: CachedEvent) => void) | undefined;
    if (hook === undefined) return;
    const failed = (err: unknown) => {
      if (name !== "error" && hooks.error !== undefined) {
        this.emit("error", { key: event.key, error: err, phase: "hook" });
      } else {
        const logger = this.#logger === undefined
          ? this.#redis?.logger ?? console
          : this.#logger;
        logger?.warn(`respite: the cached() ${name} hook threw: ${err}`);
      }
    };
    try {
      const r = hook(event) as unknown;
      // An async hook's rejection is a throw too, not an unhandled
      // rejection (which ends a Deno or Node process).
      if (r instanceof Promise) r.catch(failed);
    } catch (err) {
      failed(err);
    }
  }

  /** Tells the `error` hook of a problem handled in `phase`. */
  report(k: string, error: unknown, phase: CachedErrorEvent["phase"]): void {
    this.emit("error", { key: k, error, phase });
  }
}
