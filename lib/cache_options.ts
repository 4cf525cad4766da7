/**
 * The options of `cached`: their public shape, defaults and checks, and the
 * events its hooks receive.
 *
 * @module
 */

import { RedisClient } from "./client.ts";
import { checkCodec, type Codec, jsonCodec } from "./codec.ts";
import { _checkHashTag } from "./lock.ts";
import { checkPrefix, DEFAULT_PREFIX } from "./keys.ts";
import {
  checkBoolean,
  checkFunction,
  checkLogger,
  checkMs,
  describe,
  type Logger,
} from "./validate.ts";

/** What every hook event carries. */
export interface CacheEvent {
  /** The cache key, as the `key` option made it (without prefix). */
  key: string;
}

/** A run of the cached function. */
export interface ComputeEvent extends CacheEvent {
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
export interface WaitEvent extends CacheEvent {
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
export interface CacheErrorEvent extends CacheEvent {
  /** The error. */
  error: unknown;
  /**
   * Where it happened: `"redis"` (unreachable or failing: the call failed
   * open), `"decode"` (an entry could not be decoded: treated as a miss),
   * `"write"` (the value could not be stored), `"lock"` (the lock could not
   * be released), `"refresh"` (a background refresh failed), `"stale"` (the
   * function failed and a stale value was served instead), `"hook"` (another
   * hook threw).
   */
  phase: "redis" | "decode" | "write" | "lock" | "refresh" | "stale" | "hook";
}

/**
 * Callbacks for metrics and logs. Each is optional and called synchronously;
 * one that throws is reported to the `error` hook (or the logger) and
 * otherwise ignored. Calls that join a lookup already in flight in this
 * process share its events: events count lookups, not calls.
 */
export interface CacheHooks {
  /** A fresh entry was served. */
  hit?(event: CacheEvent): void;
  /** A stale entry was served while one caller in the fleet refreshes it. */
  stale?(event: CacheEvent): void;
  /** No usable entry: this lookup computes, or waits for whoever does. */
  miss?(event: CacheEvent): void;
  /** The function ran in this process. */
  compute?(event: ComputeEvent): void;
  /** This lookup waited for another process's computation. */
  wait?(event: WaitEvent): void;
  /** Something failed and was handled (see {@linkcode CacheErrorEvent}). */
  error?(event: CacheErrorEvent): void;
}

/**
 * Options for {@linkcode cached}. Durations are in milliseconds.
 *
 * @typeParam A The function's parameter types.
 * @typeParam T What it resolves to.
 */
export interface CachedOptions<A extends unknown[], T> {
  /** The client to use (from `connect()`). */
  redis: RedisClient;
  /**
   * The cache key: a string, or a function of the call's arguments that
   * returns one (non-empty). May be left out only for a named function
   * without parameters: its name is the key.
   */
  key?: string | ((...args: A) => string);
  /** How long a value stays fresh: a positive integer. */
  ttl: number;
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
   * with a `CacheTimeoutError`. A stale value, when there is one, is served
   * first either way.
   */
  onWaitTimeout?: "compute" | "throw";
  /**
   * When Redis cannot be reached: `true` (the default) computes in this
   * process (still one computation per key per process) and reports through
   * the `error` hook; `false` rejects with the Redis error.
   */
  failOpen?: boolean;
  /** Give up on one Redis command after this long and treat Redis as unreachable (default 1_000). */
  timeout?: number;
  /** Metrics and logging callbacks. */
  hooks?: CacheHooks;
  /** The random source for XFetch and jitter, uniform in [0, 1) (default `Math.random`). */
  random?: () => number;
  /** Where script and hook warnings go (default: the client's logger); `null` silences them. */
  logger?: Logger | null;
}

/** Options after checks and defaults. */
export interface ResolvedCacheOptions<A extends unknown[], T> {
  redis: RedisClient;
  key: (args: A) => string;
  ttl: number;
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
  hooks: CacheHooks;
  random: () => number;
  logger: Logger | null | undefined;
}

/** setTimeout fires at once for delays above this. */

const KNOWN = new Set([
  "redis",
  "key",
  "ttl",
  "staleWhileRevalidate",
  "staleIfError",
  "beta",
  "jitter",
  "cacheNullish",
  "negativeTtl",
  "isNegative",
  "codec",
  "prefix",
  "lockTtl",
  "wait",
  "onWaitTimeout",
  "failOpen",
  "timeout",
  "hooks",
  "random",
  "logger",
]);
const HOOKS = ["hit", "stale", "miss", "compute", "wait", "error"];

/** A positive integer number of ms (required when `fallback` is undefined). */
function positiveInt(name: string, value: unknown, fallback?: number): number {
  return value === undefined && fallback !== undefined
    ? fallback
    : checkMs(name, value);
}

/** A non-negative integer number of ms, default 0. */
function window(name: string, value: unknown): number {
  return value === undefined ? 0 : checkMs(name, value, 0);
}

function bool(name: string, value: unknown, fallback: boolean): boolean {
  return value === undefined ? fallback : checkBoolean(name, value);
}

function func<F>(name: string, value: unknown, fallback: F): F {
  return value === undefined ? fallback : checkFunction<F>(name, value);
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
    throw new TypeError(
      `cached() needs a function to cache; got ${describe(fn)}`,
    );
  }
  if (options === null || typeof options !== "object") {
    throw new TypeError(
      "cached() needs an options object: { redis, key, ttl, ... }",
    );
  }
  for (const name of Object.keys(options)) {
    if (!KNOWN.has(name)) {
      throw new TypeError(`cached(): unknown option "${name}"`);
    }
  }
  const o = options as unknown as Record<string, unknown>;
  if (!(o.redis instanceof RedisClient)) {
    throw new TypeError(
      `redis must be a RedisClient from connect(); got ${describe(o.redis)}`,
    );
  }
  let key: (args: A) => string;
  if (o.key === undefined) {
    if (fn.length > 0) {
      throw new TypeError(
        "cached(): a function with parameters needs a key option (a string, or a function of the arguments that returns one)",
      );
    }
    if (fn.name === "") {
      throw new TypeError(
        "cached(): an anonymous function needs a key option",
      );
    }
    const name = fn.name;
    // The key is also the name of the entry's lock and its {<key>} hash tag.
    _checkHashTag("key (here the function's name)", name);
    key = () => name;
  } else if (typeof o.key === "string") {
    if (o.key.length === 0) {
      throw new TypeError("key must be a non-empty string");
    }
    const k = o.key;
    _checkHashTag("key", k);
    key = () => k;
  } else if (typeof o.key === "function") {
    const f = o.key as (...args: A) => unknown;
    key = (args) => {
      const k = f(...args);
      if (typeof k !== "string" || k.length === 0) {
        throw new TypeError(
          `the key function must return a non-empty string; got ${describe(k)}`,
        );
      }
      return k;
    };
  } else {
    throw new TypeError(
      `key must be a string or a function; got ${describe(o.key)}`,
    );
  }
  const ttl = positiveInt("ttl", o.ttl);
  const beta = o.beta === undefined ? 1 : o.beta;
  if (typeof beta !== "number") {
    throw new TypeError(`beta must be a number; got ${describe(beta)}`);
  }
  if (!Number.isFinite(beta) || beta < 0) {
    throw new RangeError(
      `beta must be a finite number >= 0 (0 turns XFetch off); got ${beta}`,
    );
  }
  const jitter = window("jitter", o.jitter);
  if (jitter >= ttl) {
    throw new RangeError(
      `jitter must be less than ttl (${ttl} ms); got ${jitter}`,
    );
  }
  const lockTtl = positiveInt("lockTtl", o.lockTtl, 10_000);
  let wait = 2 * lockTtl;
  if (o.wait !== undefined) {
    if (typeof o.wait !== "number") {
      throw new TypeError(
        `wait must be a number of ms; got ${describe(o.wait)}`,
      );
    }
    if (Number.isNaN(o.wait) || o.wait < 0) {
      throw new RangeError(
        `wait must be a non-negative number of ms, or Infinity; got ${o.wait}`,
      );
    }
    wait = o.wait;
  }
  const onWaitTimeout = o.onWaitTimeout ?? "compute";
  if (onWaitTimeout !== "compute" && onWaitTimeout !== "throw") {
    throw new TypeError(
      `onWaitTimeout must be "compute" or "throw"; got ${
        describe(onWaitTimeout)
      }`,
    );
  }
  const hooks = o.hooks ?? {};
  if (hooks === null || typeof hooks !== "object") {
    throw new TypeError("hooks must be an object of callbacks");
  }
  for (const [name, h] of Object.entries(hooks)) {
    if (!HOOKS.includes(name)) {
      throw new TypeError(
        `hooks: unknown hook "${name}" (known: ${HOOKS.join(", ")})`,
      );
    }
    if (h !== undefined && typeof h !== "function") {
      throw new TypeError(`hooks.${name} must be a function`);
    }
  }
  if (o.logger !== undefined) checkLogger(o.logger, console);
  return {
    redis: o.redis,
    key,
    ttl,
    staleWhileRevalidate: window(
      "staleWhileRevalidate",
      o.staleWhileRevalidate,
    ),
    staleIfError: window("staleIfError", o.staleIfError),
    beta,
    jitter,
    cacheNullish: bool("cacheNullish", o.cacheNullish, false),
    negativeTtl: window("negativeTtl", o.negativeTtl),
    isNegative: func("isNegative", o.isNegative, () => true),
    codec: o.codec === undefined
      ? jsonCodec as Codec<T>
      : checkCodec<T>(o.codec),
    prefix: o.prefix === undefined ? DEFAULT_PREFIX : checkPrefix(o.prefix),
    lockTtl,
    wait,
    onWaitTimeout,
    failOpen: bool("failOpen", o.failOpen, true),
    timeout: positiveInt("timeout", o.timeout, 1_000),
    hooks: hooks as CacheHooks,
    random: func("random", o.random, Math.random),
    logger: o.logger as Logger | null | undefined,
  };
}
