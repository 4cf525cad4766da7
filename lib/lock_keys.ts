/**
 * Key and channel names of one lock. Every name carries the lock's name as a
 * Redis Cluster hash tag (`{name}`), so a lock's keys, and a cache entry that
 * uses the same tag, live in one slot.
 *
 * @module
 */

/** The default prefix of every key respite writes. */
export const DEFAULT_PREFIX = "respite:";

/** The Redis names one lock uses. */
export interface LockKeys {
  /** The lock itself: a string holding the holder's token, with a PX expiry. */
  key: string;
  /** The fencing counter: INCRed atomically with each successful acquisition; never expires. */
  fence: string;
  /** The pub/sub channel a release publishes on, to wake waiters. */
  wake: string;
}

/**
 * Checks a key prefix: a string without `{` or `}` (they would change the
 * hash tag).
 *
 * @param prefix The prefix to check.
 * @returns The prefix.
 */
export function checkPrefix(prefix: unknown): string {
  if (typeof prefix !== "string") {
    throw new TypeError("prefix must be a string");
  }
  if (prefix.includes("{") || prefix.includes("}")) {
    throw new TypeError(
      "prefix must not contain '{' or '}': respite adds the hash tag itself",
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
  const base = `${prefix}lock:{${name}}`;
  return { key: base, fence: `${base}:fence`, wake: `${base}:wake` };
}
