/**
 * The waiters of one semaphore on one client: one subscription to its wake
 * channel (lib/wake.ts), shared by every waiting `Semaphore` object of the
 * process, which reads the tokens each message hands a permit to. Their
 * tokens carry this object's random tag, so that a release sent on the
 * same client gets the permits it hands to them in its reply (and wakes
 * them with {@linkcode Waiters.grant}) instead of publishing them.
 *
 * @module
 */

import type { CommandSurface } from "../adapters/surface.ts";
import { wakeableSleep } from "../async.ts";
import { randomHex128 } from "../hex.ts";
import { Wake } from "../wake.ts";

/** One semaphore's waiters on one client. */
export class Waiters {
  /** The shared subscription. */
  readonly wake: Wake;
  /** Whether Redis confirmed the subscription (and it is still open). */
  ready = false;
  /** Starts the random part of its waiters' tokens (64 random bits, hex). */
  readonly tag: string = randomHex128().slice(0, 16);
  #refs = 0;
  #granted = new Map<string, (at: number) => void>();
  /** Each sleeping waiter's wake-up, by token. */
  #sleepers = new Map<string, () => void>();
  #table: Map<string, Waiters>;
  #channel: string;

  constructor(
    redis: CommandSurface,
    channel: string,
    table: Map<string, Waiters>,
  ) {
    this.#table = table;
    this.#channel = channel;
    // "<server ms> <key> <key> ...": each token now holds a permit
    // (tokens by their keys: an owner id may hold spaces).
    this.wake = new Wake(redis, channel, (message) => {
      const parts = message.split(" ");
      this.grant(Number(parts[0]), parts, 1);
    }, () => {
      // Messages may have been missed: every waiter looks again.
      for (const wake of [...this.#sleepers.values()]) wake();
    });
  }

  /**
   * Tells the waiters of `tokens` (from index `from`) that they hold a
   * permit since `at` (server ms), and wakes them. Other tokens are ignored.
   */
  grant(at: number, tokens: readonly string[], from = 0): void {
    for (let i = from; i < tokens.length; i++) {
      const key = tokenKey(tokens[i]);
      this.#granted.get(key)?.(at);
      this.#sleepers.get(key)?.();
    }
  }

  /** Subscribes (once), resolving when Redis confirmed it. */
  async subscribed(): Promise<void> {
    await this.wake.subscribed();
    this.ready = true;
  }

  /**
   * Resolves after `ms`, when a message hands `token` a permit, or when the
   * subscription was renewed after a reconnect; rejects with the signal's
   * reason when it aborts. Other tokens' messages do not wake it.
   */
  sleep(token: string, ms: number, signal?: AbortSignal): Promise<void> {
    // A client that cannot subscribe (lib/adapters/db_redis.ts) looks again
    // every `recheckMs`.
    const recheck = this.wake.redis.recheckMs;
    if (recheck !== undefined) ms = Math.min(ms, recheck);
    const key = tokenKey(token);
    return wakeableSleep(ms, signal, (wake) => {
      this.#sleepers.set(key, wake);
      return () => this.#sleepers.delete(key);
    });
  }

  /**
   * Calls `onGranted` with the server's time when a message hands `token` a
   * permit, until the returned function is called.
   */
  listen(token: string, onGranted: (at: number) => void): () => void {
    this.#refs++;
    const key = tokenKey(token);
    this.#granted.set(key, onGranted);
    return () => {
      this.#granted.delete(key);
      if (--this.#refs === 0) {
        this.#table.delete(this.#channel);
        this.ready = false;
        this.wake.close();
      }
    };
  }
}

/**
 * A token's key: `<ttl>:<hex>`, the token without its owner id (the part
 * the wake channel carries; unique by its random hex, and free of spaces
 * and colons whatever the id holds). A key is its own key.
 */
export function tokenKey(token: string): string {
  const i = token.indexOf(":", token.indexOf(":") + 1);
  return i === -1 ? token : token.slice(0, i);
}

const all = new WeakMap<CommandSurface, Map<string, Waiters>>();

/** The waiters of `channel` on `redis` if any wait, else `undefined`. */
export function waitersIfAny(
  redis: CommandSurface,
  channel: string,
): Waiters | undefined {
  return all.get(redis)?.get(channel);
}

/** The waiters of the semaphore whose wake channel is `channel`, on `redis`. */
export function waitersOf(redis: CommandSurface, channel: string): Waiters {
  let table = all.get(redis);
  if (table === undefined) all.set(redis, table = new Map());
  let w = table.get(channel);
  if (w === undefined) {
    table.set(channel, w = new Waiters(redis, channel, table));
  }
  return w;
}
