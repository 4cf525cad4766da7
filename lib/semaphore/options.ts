/**
 * The options of a `Semaphore` and of `withSemaphore`, and their checks
 * (the lock's checks for the fields they share).
 *
 * @module
 */

import { checkOptions, fail, type Logger } from "../validate.ts";
import {
  checkAcquireFields,
  checkLockFields,
  type LockOptions,
} from "../lock/options.ts";

/** The options of a `Semaphore`. */
export interface SemaphoreOptions {
  /** How many holders at most, fleet-wide: a positive integer (required). */
  limit: number;
  /** A holder's lease (ms, default 30 000); a crashed holder's permit returns after it. */
  ttl?: number;
  /** Renew the lease every `ttl / 3` while held (default `false`). */
  autoRenew?: boolean;
  /** An owner id kept in the holder's token (default random). */
  id?: string;
  /** The key prefix (default `respite:`). */
  prefix?: string;
  /** Where warnings go (default the client's logger); `null` silences them. */
  logger?: Logger | null;
}

/** {@linkcode SemaphoreOptions}, checked, with the defaults filled in. */
export interface SemaphoreSettings {
  limit: number;
  ttl: number;
  autoRenew: boolean;
  id: string | undefined;
  prefix: string;
  logger: Logger | null | undefined;
}

/** The keys of {@linkcode SemaphoreOptions}. */
export const SEMAPHORE_OPTIONS: readonly string[] = [
  "limit",
  "ttl",
  "autoRenew",
  "id",
  "prefix",
  "logger",
];

/** Checks a limit: a positive safe integer. */
export function checkLimit(limit: unknown): number {
  if (typeof limit !== "number") fail("limit", "a positive integer", limit);
  if (!Number.isSafeInteger(limit) || limit < 1) {
    fail("limit", "a positive integer", limit, RangeError);
  }
  return limit;
}

/** Checks the fields of {@linkcode SemaphoreOptions} (not unknown keys). */
export function checkSemaphoreFields(
  o: Partial<SemaphoreOptions>,
): SemaphoreSettings {
  const limit = checkLimit(o.limit);
  const lock: LockOptions = {
    ttl: o.ttl,
    autoRenew: o.autoRenew,
    id: o.id,
    prefix: o.prefix,
    logger: o.logger,
  };
  const s = checkLockFields(lock);
  return {
    limit,
    ttl: s.ttl,
    autoRenew: s.autoRenew,
    id: s.id,
    prefix: s.prefix,
    logger: s.logger,
  };
}

/** Checks the options of a `Semaphore`, rejecting unknown ones. */
export function checkSemaphoreOptions(
  options: SemaphoreOptions | undefined,
): SemaphoreSettings {
  if (options === undefined) fail("Semaphore options", "an object", options);
  const o = checkOptions("Semaphore option", options, SEMAPHORE_OPTIONS);
  return checkSemaphoreFields(o);
}

export { checkAcquireFields };
