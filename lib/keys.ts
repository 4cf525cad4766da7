/**
 * Every Redis key and pub/sub channel that locks and caches use, built here
 * and nowhere else.
 *
 * ## Key layout
 *
 * Every name carries the lock's name or the cache key as a Redis Cluster hash
 * tag (`{…}`), so all the keys of one lock, or of one cache entry, live in one
 * slot and one Lua script may touch them together. `<prefix>` defaults to
 * `respite:` and never contains `{` or `}`.
 *
 * | name | type | written by | lifetime |
 * | --- | --- | --- | --- |
 * | `<prefix>lock:{<name>}` | string: the holder's token | acquire, extend, release | the lease (PX) |
 * | `<prefix>lock:{<name>}:fence` | string: a counter | acquire (INCR) | never expires |
 * | `<prefix>lock:{<name>}:wake` | channel | release, reset | — |
 * | `<prefix>cache:{<key>}` | string: an encoded entry | the write script | fresh + stale window (PX) |
 * | `<prefix>cache:inv:{<key>}` | string: a random marker | invalidate | 2 × `lockTtl`, at least 1 s |
 * | `<prefix>cache:lock:{<key>}` (and `:fence`, `:wake`) | the entry's lock | the computing caller | the lease |
 * | `<prefix>cache:tag:{<tag>}` | sorted set: the cache keys of a tag, scored with the server time (ms) until which each entry may exist | a computing caller with `tags`, `set()` | its entries' longest lifetime (PX); members past their score are dropped |
 * | `<prefix>cache:{<namespace>}:gen` | string: the namespace's generation, a random token every entry of the namespace carries | the first writer (SET NX), `invalidateAll` (SET) | never expires (one per namespace) |
 *
 * ## The wake-channel protocol
 *
 * Waiters do not poll. A lock's waiters, and a cache entry's waiters (who wait
 * on the entry's lock's channel), subscribe to `…:wake` before they look, and
 * any message ends their sleep, after which they look again. The message says
 * what happened; a waiter may act on it but must not rely on it. One
 * published while the waiter's subscriber connection is down (a reconnect)
 * is lost; once the client has subscribed the channel again it says so
 * (respite's client: `subscribe`'s `onResubscribed`; the adapters: a local,
 * never-published `resubscribed` message), and the waiters look again, so
 * a wake-up lost in that gap costs the reconnect's time, not a lease. Every
 * sleep is still bounded by the holder's remaining lease:
 *
 * - `released` ({@linkcode WAKE_RELEASED}): the holder deleted the lock key.
 * - `reset` ({@linkcode WAKE_RESET}): `Lock.reset`/`resetAll` deleted it.
 * - the encoded entry itself (text codecs, up to 64 KiB, no `namespace`): a
 *   `cached` writer stored it; waiters can use it without a GET.
 * - `written` ({@linkcode WAKE_WRITTEN}): a `cached` writer stored an entry
 *   too large or binary to travel with the message, or one of a `namespace`
 *   (its waiters read it again beside the generation token); waiters GET it.
 *
 * Each message is published by the same Lua script that changed the key, so
 * a waiter that sees it also sees the change.
 *
 * @module
 */

import { isWellFormed } from "./resp/encoder.ts";
import { describe, fail } from "./validate.ts";

/** The default prefix of every key respite writes. */
export const DEFAULT_PREFIX = "respite:";

/** Wake message: the holder released the lock. */
export const WAKE_RELEASED = "released";
/** Wake message: the lock was force-released. */
export const WAKE_RESET = "reset";
/** Wake message: a cache entry was written that does not travel with the message. */
export const WAKE_WRITTEN = "written";

/** The Redis names one lock uses. */
export interface LockKeys {
  /** The lock itself: a string holding the holder's token, with a PX expiry. */
  key: string;
  /** The fencing counter: INCRed atomically with each successful acquisition; never expires. */
  fence: string;
  /** The pub/sub channel a release publishes on, to wake waiters. */
  wake: string;
}

/** The Redis names one cache entry uses. */
export interface CacheKeys {
  /** The entry: the encoded value or failure, with its metadata. */
  entry: string;
  /** The invalidation marker: a writer's result lands only if it is unchanged. */
  marker: string;
  /** The entry's lock, which one computing caller in the fleet holds. */
  lock: LockKeys;
}

/**
 * Checks a key prefix: a string without `{` or `}` (they would change the
 * hash tag).
 *
 * @param prefix The prefix to check.
 * @returns The prefix.
 */
export function checkPrefix(prefix: unknown): string {
  if (typeof prefix !== "string") fail("prefix", "a string", prefix);
  if (prefix.includes("{") || prefix.includes("}")) {
    fail(
      "prefix",
      "free of '{' and '}' (respite adds the hash tag itself)",
      prefix,
    );
  }
  return prefix;
}

/**
 * The keys and channel of the lock called `name`.
 *
 * @param name The lock's name (a non-empty string).
 * @param prefix The key prefix (default `respite:`).
 * @returns Its key, fencing counter key and wake channel.
 */
export function lockKeys(
  name: string,
  prefix: string = DEFAULT_PREFIX,
): LockKeys {
  return keysOfLock(`${prefix}lock:{${name}}`);
}

/** The keys of a lock, from its key. */
function keysOfLock(key: string): LockKeys {
  return { key, fence: `${key}:fence`, wake: `${key}:wake` };
}

/** The wake channel of the lock whose key is `lockKey`. */
export function wakeChannel(lockKey: string): string {
  return `${lockKey}:wake`;
}

/**
 * A `SCAN MATCH` pattern for every lock key under `prefix` (not their fencing
 * counters, nor cache entries' locks).
 */
export function lockPattern(prefix: string): string {
  return `${prefix.replace(/[*?[\]\\]/g, "\\$&")}lock:{*}`;
}

/**
 * The keys of the cache entry for `key`.
 *
 * @param key The cache key (what the `key` option made of the arguments).
 * @param prefix The key prefix (default `respite:`).
 * @returns The entry, its invalidation marker, and its lock.
 */
export function cacheKeys(
  key: string,
  prefix: string = DEFAULT_PREFIX,
): CacheKeys {
  return {
    entry: cacheEntryKey(key, prefix),
    marker: `${prefix}cache:inv:{${key}}`,
    lock: lockKeys(key, cacheLockPrefix(prefix)),
  };
}

/**
 * The sorted set of the cache keys that carry `tag` (the `tags` option of
 * `cached`): `<prefix>cache:tag:{<tag>}`, in the tag's own slot.
 *
 * @param tag The tag.
 * @param prefix The key prefix (default `respite:`).
 * @returns The tag set's key.
 */
export function cacheTagKey(
  tag: string,
  prefix: string = DEFAULT_PREFIX,
): string {
  return `${prefix}cache:tag:{${tag}}`;
}

/**
 * The generation key of a `cached` namespace (the `namespace` option):
 * `<prefix>cache:{<namespace>}:gen`. It holds a random token; every entry
 * of the namespace is written with the token it read, and an entry whose
 * token is not the current one is a miss, so `invalidateAll()` is one SET.
 * It starts with the entries' prefix (`<prefix>cache:{`), so a memory tier's
 * broadcast tracking sees it change too; it ends in `:gen`, where an entry
 * key ends in `}`, so it is never an entry's key.
 *
 * @param namespace The namespace.
 * @param prefix The key prefix (default `respite:`).
 * @returns The generation key.
 */
export function cacheGenerationKey(
  namespace: string,
  prefix: string = DEFAULT_PREFIX,
): string {
  return `${prefix}cache:{${namespace}}:gen`;
}

/**
 * The entry key alone, `<prefix>cache:{<key>}`: what {@linkcode cacheKeys}
 * gives as `entry`, without building the other names (a cache hit needs only
 * this one).
 *
 * @param key The cache key.
 * @param prefix The key prefix (default `respite:`).
 * @returns The entry's key.
 */
export function cacheEntryKey(
  key: string,
  prefix: string = DEFAULT_PREFIX,
): string {
  return `${prefix}cache:{${key}}`;
}

/**
 * The prefix that makes {@linkcode lockKeys} name a cache entry's lock
 * (`<prefix>cache:`), for a `Lock` that guards the entry.
 *
 * @param prefix The cache's key prefix.
 * @returns The prefix of its entries' locks.
 */
export function cacheLockPrefix(prefix: string = DEFAULT_PREFIX): string {
  return `${prefix}cache:`;
}

/**
 * Throws a `TypeError` when `name`, put in a `{<name>}` hash tag, would leave
 * the tag empty (it starts with `}`), or is not well-formed text; `what` names
 * it in the message ("A lock name", "key", ...).
 */
export function checkHashTag(what: string, name: string): void {
  if (!isWellFormed(name)) {
    // It would reach Redis with U+FFFD in place of the surrogate, the same
    // key as other names.
    throw new TypeError(
      `${what} must be well-formed text: it contains a lone UTF-16 surrogate, which would turn into U+FFFD and collide with other names`,
    );
  }
  if (name.startsWith("}")) {
    throw new TypeError(
      `${what} must not start with '}' (it would leave the {<name>} hash tag of the lock's keys empty); got ${
        describe(name)
      }`,
    );
  }
}

/** The Redis names one semaphore uses (all in the `{<name>}` hash slot). */
export interface SemaphoreKeys {
  /** ZSET of holders' tokens, scored by their expiry (server ms); expires with the longest. */
  holders: string;
  /** ZSET of waiters' tickets, scored by their place in line. */
  queue: string;
  /** ZSET of waiters' tickets, scored by their expiry (server ms). */
  tickets: string;
  /** String: the counter that numbers tickets; expires with the line (the longest ticket). */
  seq: string;
  /** Channel: a release publishes the tickets whose turn it is. */
  wake: string;
}

/**
 * The keys and channel of the semaphore called `name`:
 * `<prefix>sem:{<name>}:holders`, `:queue`, `:tickets`, `:seq`, `:wake`.
 *
 * @param name The semaphore's name (a non-empty string).
 * @param prefix The key prefix (default `respite:`).
 */
export function semaphoreKeys(
  name: string,
  prefix: string = DEFAULT_PREFIX,
): SemaphoreKeys {
  const base = `${prefix}sem:{${name}}`;
  return {
    holders: `${base}:holders`,
    queue: `${base}:queue`,
    tickets: `${base}:tickets`,
    seq: `${base}:seq`,
    wake: `${base}:wake`,
  };
}
