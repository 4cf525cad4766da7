/**
 * `withLock`: run a function under a distributed lock.
 *
 * @module
 */

import { checkRequest } from "../client/client.ts";
import type { RedisLike } from "../adapters/mod.ts";
import {
  LockLostError,
  LockNotAcquiredError,
  LockNotHeldError,
} from "../errors.ts";
import { Lock } from "./lock.ts";
import {
  ACQUIRE_OPTIONS,
  checkAcquireFields,
  checkClient,
  checkLockFields,
  checkLockHooks,
  checkName,
  LOCK_OPTIONS,
  type LockHooks,
} from "./options.ts";
import {
  checkBoolean,
  checkFunction,
  checkOptions,
  fail,
  type Logger,
} from "../validate.ts";

/** The keys of {@linkcode WithLockOptions}. */
const WITH_LOCK_OPTIONS: readonly string[] = [
  "redis",
  "name",
  ...LOCK_OPTIONS,
  ...ACQUIRE_OPTIONS,
  "onBusy",
  "keep",
];

/** Options for {@linkcode withLock}. */
export interface WithLockOptions<A extends unknown[]> {
  /**
   * The client to use — respite's, or an app's ioredis, node-redis, Bun
   * `RedisClient` or `@db/redis` client (see {@linkcode RedisLike}) — or a
   * function of the call's arguments that returns the client for that call.
   * The function form lets a wrapper made once, at module scope, use each
   * request's own client, as Cloudflare Workers requires (a client belongs
   * to the request that connected it):
   * `withLock(fn, { redis: (env: Env) => env.redis, name: ... })`. The
   * client is checked at each call; one connected by an earlier request is
   * refused with a `TypeError` before anything is sent. An array of
   * clients of independent servers gives a quorum (Redlock) lock, as with
   * `new Lock([c1, c2, c3], name)`.
   */
  redis: RedisLike | readonly RedisLike[] | ((...args: A) => RedisLike);
  /** The lock's name, or a function of the call's arguments that returns it. */
  name: string | ((...args: A) => string);
  /** The lease in ms, a positive integer (default 30_000). */
  ttl?: number;
  /** How long a call waits for the lock, in ms (`0` tries once; default `Infinity`). */
  wait?: number;
  /** Renew the lease every `ttl / 3` while `fn` runs (default `true`). */
  autoRenew?: boolean;
  /** Owner id stored with the lock (default: random per call). */
  id?: string;
  /** Key prefix (default `"respite:"`). */
  prefix?: string;
  /** Where script warnings go (default: the client's logger); `null` silences them. */
  logger?: Logger | null;
  /** Keep the lock's fencing counter (default `true`); with `false`, `this.fence` is `null` and no counter key is written. */
  fencing?: boolean;
  /** With an array of clients: the per-node timeout in ms (see `LockOptions`). */
  nodeTimeout?: number;
  /** On SIGINT/SIGTERM while `fn` runs, release the lock, then exit 130/143 unless the app listens itself (see `LockOptions`; default `false`). */
  releaseOnSignal?: boolean;
  /** Callbacks on each call's lock: acquired, released, lost, renewal failed (see {@linkcode LockHooks}). */
  hooks?: LockHooks;
  /** Stops every call's wait for the lock: a waiting call rejects at once with the signal's reason. */
  signal?: AbortSignal;
  /**
   * What a call does when the lock is not acquired within `wait`:
   * `"throw"` (default) rejects with {@linkcode LockNotAcquiredError};
   * `"skip"` resolves to `undefined` without running `fn` (with `wait: 0`,
   * the cron-job habit: a second copy does nothing while the first runs).
   * `undefined` is the skip value because it needs no extra import and is
   * what the return type already says (`Promise<R | undefined>`); a job whose
   * `fn` itself returns `undefined` can tell the cases apart by returning
   * something. Connection errors still reject.
   */
  onBusy?: "throw" | "skip";
  /**
   * Leave the lock to expire at its TTL when `fn` ends, instead of releasing
   * it (renewal stops): with `onBusy: "skip"`, a job runs at most once per
   * `ttl` across the fleet (default `false`).
   */
  keep?: boolean;
}

/**
 * Wraps `fn` so that each call runs it under a distributed lock: acquire
 * (waiting up to `wait`), run, release. The returned function takes `fn`'s
 * parameters and resolves with its result.
 *
 * Inside `fn`, `this` is the held {@linkcode Lock}: `this.signal` aborts if
 * the lock is lost while `fn` runs, `this.fence` is the fencing token to hand
 * to the protected resource (typed `number` unless `fencing` is `false` or a
 * boolean known only at run time: no `!` needed), `this.extend()` lengthens
 * the lease. (Use a `function` expression to see `this`; any existing
 * function can be wrapped unchanged, its parameter types are kept.) With
 * `onBusy: "skip"` the wrapped function resolves to `R | undefined`.
 *
 * - Not acquired within `wait`: the call rejects with
 *   {@linkcode LockNotAcquiredError} and `fn` never runs. When no try got an
 *   answer from Redis (`wait: 0` and its one try, or every try since Redis
 *   last answered, failed with a `ConnectionError` or `TimeoutError`), it
 *   rejects with that error instead, and `fn` never runs either (see
 *   {@linkcode Lock.acquire}).
 * - Lock lost while `fn` ran (renewal failed, lease ran out, key taken or
 *   deleted): once `fn` settles, the call rejects with
 *   {@linkcode LockLostError} (when `fn` threw something else, that error is
 *   the `cause`).
 * - `fn` threw, lock kept: released, and the call rejects with `fn`'s error.
 * - `fn` released the lock itself (`await this.release()`): nothing is left
 *   to release, and the call settles as `fn` did (another holder may have
 *   the lock by then; that is no loss). If that release found the lock
 *   already gone or taken, the holding was lost: {@linkcode LockLostError}.
 * - The release could not be confirmed (Redis unreachable: no answer within
 *   the lease left, or a connection error): the call still settles as `fn`
 *   did (its result, or its error), and the failure goes to the logger as a
 *   warning. Not a {@linkcode LockLostError}: the lease was valid for as long
 *   as `fn` ran (else `this.signal` would have aborted and the call would
 *   reject with that), so `fn`'s work was done under the lock; the key then
 *   expires on its own within the lease, which only delays the next holder.
 *
 * Bad options throw a `TypeError`/`RangeError` right away; a bad name from a
 * `name` function rejects that call. Nothing is written to Redis then.
 *
 * @param fn The function to run under the lock; `this` is the {@linkcode Lock}.
 * @param options `redis`, `name`, and `ttl`, `wait`, `autoRenew`, `id`,
 *   `prefix`, `logger`, `fencing`, `nodeTimeout`, `signal`, `onBusy`, `keep`.
 * @returns A function with `fn`'s parameters, resolving with its result.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, withLock } from "@respite/respite";
 * await using redis = await connect();
 *
 * const transfer = withLock(
 *   async function (from: string, to: string, amount: number) {
 *     // `this` is the Lock: pass its signal and fencing token on.
 *     this.signal.throwIfAborted();
 *     await redis.send("INCRBY", `respite:doc:balance:${from}`, -amount);
 *     await redis.send("INCRBY", `respite:doc:balance:${to}`, amount);
 *     return this.fence; // a number: fencing is on
 *   },
 *   {
 *     redis,
 *     name: (from, to) => `accounts:${[from, to].sort().join(":")}`,
 *     ttl: 10_000,
 *     wait: 5_000,
 *   },
 * );
 * const fence: number = await transfer("alice", "bob", 10);
 * assert.ok(fence > 0);
 * await redis.send("DEL", "respite:doc:balance:alice", "respite:doc:balance:bob");
 * ```
 *
 * @example Skip if busy (a cron job's second copy does nothing)
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, Lock, withLock } from "@respite/respite";
 * await using redis = await connect();
 *
 * await using other = new Lock(redis, "doc:nightly");
 * assert.ok(await other.acquire({ wait: 0 }));
 * const nightly = withLock(() => "done", {
 *   redis,
 *   name: "doc:nightly",
 *   wait: 0,
 *   onBusy: "skip",
 * });
 * const skipped: string | undefined = await nightly();
 * assert.equal(skipped, undefined);
 * await other.release();
 * assert.equal(await nightly(), "done");
 * ```
 */
export function withLock<
  A extends unknown[],
  R,
  F extends boolean | undefined = undefined,
  B extends "throw" | "skip" | undefined = undefined,
>(
  fn: (
    this: [F] extends [false] ? Lock
      : boolean extends F ? Lock
      : Lock & { readonly fence: number },
    ...args: A
  ) => R,
  options: WithLockOptions<A> & { fencing?: F; onBusy?: B },
): (
  ...args: A
) => Promise<[B] extends ["skip"] ? Awaited<R> | undefined : Awaited<R>> {
  checkFunction("withLock(fn, options): fn", fn);
  if (options === undefined) {
    fail("withLock(fn, options): options", "an object", options);
  }
  checkOptions("withLock option", options, WITH_LOCK_OPTIONS);
  const {
    redis,
    name,
    ttl,
    id,
    prefix,
    logger,
    fencing,
    nodeTimeout,
    releaseOnSignal,
    hooks,
  } = options;
  if (releaseOnSignal !== undefined) {
    checkBoolean("withLock option releaseOnSignal", releaseOnSignal);
  }
  const autoRenew = options.autoRenew ?? true;
  if (Array.isArray(redis)) {
    // The quorum checks (non-empty, distinct clients, nodeTimeout), now.
    new Lock(redis, "check", { nodeTimeout });
  } else if (typeof redis !== "function") checkClient(redis as RedisLike);
  if (typeof name !== "function") checkName(name);
  // The same checks as `new Lock(...)` and `acquire(...)`, before any call.
  checkLockFields({ ttl, autoRenew, id, prefix, logger, fencing });
  checkLockHooks("withLock option hooks", hooks);
  const { wait, signal } = checkAcquireFields(options);
  const onBusy = options.onBusy ?? "throw";
  const keep = options.keep ?? false;
  if (typeof keep !== "boolean") {
    fail("withLock option keep", "a boolean", keep);
  }
  if (onBusy !== "throw" && onBusy !== "skip") {
    fail("withLock option onBusy", '"throw" or "skip"', onBusy);
  }
  const call = async function (...args: A): Promise<Awaited<R> | undefined> {
    // Per call: the client may come from the arguments, and on Workers even
    // a fixed one may belong to an earlier request.
    const given = typeof redis === "function" ? redis(...args) : redis;
    const nodes = Array.isArray(given)
      ? given.map((c) => checkClient(c))
      : null;
    const client = nodes?.[0] ?? checkClient(given as RedisLike);
    for (const c of nodes ?? [client]) checkRequest(c);
    const lockName = typeof name === "function" ? name(...args) : name;
    const lock = new Lock(nodes ?? client, lockName, {
      nodeTimeout,
      releaseOnSignal,
      hooks,
      ttl,
      autoRenew,
      id,
      prefix,
      logger,
      fencing,
    });
    if (!await lock.acquire({ wait, signal })) {
      if (onBusy === "skip") return undefined;
      throw new LockNotAcquiredError(
        `Lock ${lockName} was not acquired within ${wait} ms`,
        { lock: lockName, wait },
      );
    }
    let result: Awaited<R> | undefined;
    let threw = false;
    let error: unknown;
    try {
      result = await (fn as (this: Lock, ...args: A) => R).apply(lock, args);
    } catch (err) {
      threw = true;
      error = err;
    }
    // `held` notices a lease that ran out; reading the signal only when not
    // held spares arming a lease timer for nothing. Not held and not lost:
    // fn released the lock itself (and it was not lost before: a release
    // that finds it gone or taken aborts the signal), so there is nothing
    // left to release, and nothing was lost.
    let lost: LockLostError | undefined;
    let releasedByFn = false;
    if (!lock.held) {
      if (lock.signal.aborted) lost = lock.signal.reason as LockLostError;
      else releasedByFn = true;
    }
    if (!releasedByFn) {
      try {
        await lock.release({ keep });
      } catch (err) {
        if (err instanceof LockNotHeldError) {
          // Gone or taken, and we had not noticed yet: lost all the same.
          lost ??= new LockLostError(
            `Lock ${lockName} was lost while the function ran: ${
              err.reason === "held-by-other"
                ? "another owner holds it"
                : "its key expired or was deleted"
            }`,
            {
              lock: lockName,
              reason: err.reason === "held-by-other"
                ? "held-by-other"
                : "expired",
            },
          );
        } else {
          // Redis did not confirm the release (unreachable: no answer within
          // the lease left, or a connection error). The lock expires on its
          // own; the outcome of fn stands, so this is a warning, not an error.
          (logger === undefined ? client.logger : logger)?.warn(
            `respite: releasing lock ${lockName} failed (${err}); it expires within ${lock.ttl} ms`,
          );
        }
      }
    }
    if (lost !== undefined) {
      if (threw && error !== lost) {
        throw new LockLostError(lost.message, {
          lock: lost.lock,
          reason: lost.reason,
          cause: error,
        });
      }
      throw lost;
    }
    if (threw) throw error;
    return result as Awaited<R>;
  };
  return call as (
    ...args: A
  ) => Promise<[B] extends ["skip"] ? Awaited<R> | undefined : Awaited<R>>;
}
