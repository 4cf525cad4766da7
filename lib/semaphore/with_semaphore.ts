/**
 * `withSemaphore`: runs a function while holding one of a semaphore's
 * permits, and gives it back when the function settles.
 *
 * @module
 */

import type { RedisLike } from "../adapters/mod.ts";
import { LockLostError, LockNotAcquiredError } from "../errors.ts";
import { checkFunction, checkOptions, fail } from "../validate.ts";
import { checkClient, checkName } from "../lock/options.ts";
import {
  checkAcquireFields,
  checkSemaphoreFields,
  SEMAPHORE_OPTIONS,
  type SemaphoreOptions,
} from "./options.ts";
import { Semaphore } from "./semaphore.ts";

/** The options of {@linkcode withSemaphore}. */
export interface WithSemaphoreOptions extends SemaphoreOptions {
  /** The client. */
  redis: RedisLike;
  /** The semaphore's name. */
  name: string;
  /** How long to wait for a permit (ms, default `Infinity`). */
  wait?: number;
  /** Aborts the wait. */
  signal?: AbortSignal;
}

const WITH_OPTIONS = [...SEMAPHORE_OPTIONS, "redis", "name", "wait", "signal"];

/**
 * Wraps `fn` so that each call runs holding a permit of the semaphore
 * `name` (at most `limit` calls at once fleet-wide), with `autoRenew` on by
 * default. Inside `fn`, `this` is the {@linkcode Semaphore}. Not acquired
 * within `wait`: rejects with {@linkcode LockNotAcquiredError}; the permit
 * lost while `fn` ran: rejects with {@linkcode LockLostError}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, withSemaphore } from "@respite/respite";
 * await using redis = await connect();
 * let inside = 0, most = 0;
 * const call = withSemaphore(async function (n: number) {
 *   most = Math.max(most, ++inside);
 *   await new Promise((r) => setTimeout(r, 10));
 *   inside--;
 *   return n * 2;
 * }, { redis, name: "doc:with-sem", limit: 2 });
 * const out = await Promise.all([1, 2, 3, 4, 5].map((n) => call(n)));
 * assert.deepEqual(out, [2, 4, 6, 8, 10]);
 * assert.equal(most, 2);
 * ```
 */
export function withSemaphore<A extends unknown[], R>(
  fn: (this: Semaphore, ...args: A) => R,
  options: WithSemaphoreOptions,
): (...args: A) => Promise<Awaited<R>> {
  checkFunction("withSemaphore(fn, options): fn", fn);
  if (options === undefined) {
    fail("withSemaphore(fn, options): options", "an object", options);
  }
  checkOptions("withSemaphore option", options, WITH_OPTIONS);
  checkClient(options.redis);
  checkName(options.name);
  const s = checkSemaphoreFields({
    ...options,
    autoRenew: options.autoRenew ?? true,
  });
  const { wait, signal } = checkAcquireFields(options);
  const { redis, name } = options;
  return async function (...args: A): Promise<Awaited<R>> {
    const sem = new Semaphore(redis, name, {
      limit: s.limit,
      ttl: s.ttl,
      autoRenew: s.autoRenew,
      id: s.id,
      prefix: s.prefix,
      logger: s.logger,
    });
    if (!await sem.acquire({ wait, signal })) {
      throw new LockNotAcquiredError(
        `Semaphore ${name} was not acquired within ${wait} ms`,
        { lock: name, wait },
      );
    }
    try {
      const result = await fn.apply(sem, args);
      if (!sem.held && sem.signal.aborted) throw sem.signal.reason;
      return result;
    } catch (err) {
      if (sem.signal.aborted && err !== sem.signal.reason) {
        const lost = sem.signal.reason as LockLostError;
        throw new LockLostError(lost.message, {
          lock: lost.lock,
          reason: lost.reason,
          cause: err,
        });
      }
      throw err;
    } finally {
      await sem[Symbol.asyncDispose]().catch(() => {});
    }
  };
}
