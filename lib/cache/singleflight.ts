/**
 * In-process deduplication of concurrent work: callers that ask for the same
 * key while a call is in flight share its promise instead of starting their
 * own.
 *
 * @module
 */

import { abortable } from "../async.ts";

/**
 * Shares one in-flight promise per key among concurrent callers, like Go's
 * `singleflight.Group`. Once the promise settles the key is free again, so the
 * next call runs `fn` anew: nothing is cached beyond the flight.
 *
 * A caller's `signal` only stops that caller's wait: the shared work goes on
 * for the others (and for nobody, if every caller left).
 *
 * @typeParam T The type of the shared result.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Singleflight } from "@respite/respite";
 * const group = new Singleflight<number>();
 * let runs = 0;
 * const slow = () => new Promise<number>((r) => setTimeout(() => r(++runs), 10));
 * const [a, b] = await Promise.all([group.run("k", slow), group.run("k", slow)]);
 * assert.equal(a, 1);
 * assert.equal(b, 1);
 * assert.equal(runs, 1);
 * ```
 */
export class Singleflight<T> {
  #flights = new Map<string, Promise<T>>();

  /** Number of keys with a call in flight. */
  get size(): number {
    return this.#flights.size;
  }

  /**
   * Whether a call for `key` is in flight.
   *
   * @param key The key.
   * @returns `true` while a shared call for `key` has not settled.
   */
  has(key: string): boolean {
    return this.#flights.has(key);
  }

  /**
   * Runs `fn` for `key`, or joins the call already in flight for it.
   *
   * @param key What identifies the work.
   * @param fn Starts the work; called only when no call for `key` is in
   *   flight. A synchronous throw rejects the shared promise.
   * @param options `signal`: stop waiting (rejects with the signal's reason);
   *   the shared call is not cancelled. Already aborted: rejects at once and
   *   starts nothing.
   * @returns The shared result.
   */
  run(
    key: string,
    fn: () => T | Promise<T>,
    options?: { signal?: AbortSignal },
  ): Promise<T> {
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    let flight = this.#flights.get(key);
    if (flight === undefined) {
      let started: Promise<T>;
      try {
        started = Promise.resolve(fn());
      } catch (err) {
        started = Promise.reject(err);
      }
      const current = started;
      const done = () => {
        if (this.#flights.get(key) === current) this.#flights.delete(key);
      };
      // Also marks a rejection as handled when every caller aborted.
      current.then(done, done);
      this.#flights.set(key, current);
      flight = current;
    }
    return signal === undefined ? flight : abortable(flight, signal);
  }

  /**
   * Forgets the call in flight for `key`: callers already waiting keep
   * waiting for it, the next caller starts a new one.
   *
   * @param key The key.
   */
  forget(key: string): void {
    this.#flights.delete(key);
  }

  /**
   * Forgets every call in flight, as {@linkcode Singleflight.forget} does
   * for one key.
   */
  forgetAll(): void {
    this.#flights.clear();
  }
}
