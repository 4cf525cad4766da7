/**
 * One acquisition of a lock: the first try, the wait for a turn in the local
 * queue (one contender per lock name per client), and the head waiter's loop
 * — subscribe to the wake channel, try, sleep until a release wakes it or the
 * holder's lease runs out. A try without an answer from Redis is retried
 * after a backoff; when the wait runs out after such tries, their last error
 * is thrown rather than `false`, since nobody knows whether the lock was held.
 *
 * The try itself (and what follows a try that may have taken the lock) is
 * the `Lock`'s: this module decides only when to try.
 *
 * @module
 */

import { abortable, backoff, type Deadline, deadline } from "../async.ts";
import type { CommandSurface } from "../adapters/surface.ts";
import type { LockKeys } from "../keys.ts";
import { queueOf, type WaitQueue } from "./queue.ts";
import { noAnswer } from "./scripts.ts";

/** Re-check interval for a lock key that has no expiry (set by hand). */
const NO_EXPIRY_RECHECK = 1_000;
/** The abort reason of an acquisition whose `wait` ran out. */
const WAIT_RAN_OUT = Symbol("wait ran out");

/**
 * One try: `null` when it acquired the lock (the holding is set up), else the
 * holder's remaining ttl in ms (`-1` no expiry, `0` a success that came back
 * too late).
 */
export type Attempt = (
  signal: AbortSignal | undefined,
) => Promise<number | null>;

/** One running `acquire()`. */
export class Acquisition {
  /**
   * The last try error without an answer from Redis
   * (`ConnectionError`/`TimeoutError`), while no later try got an answer.
   */
  #lastError: unknown = undefined;
  /** How many tries in a row got no answer. */
  #failures = 0;

  /** The lock's client. */
  readonly redis: CommandSurface;
  /** The lock's keys (the queue is per key and client). */
  readonly keys: LockKeys;
  /** One try. */
  readonly attempt: Attempt;

  /**
   * @param redis The lock's client.
   * @param keys The lock's keys (the queue is per key and client).
   * @param attempt One try.
   * @param wakeVia What the wake subscription goes through (default `redis`).
   */
  constructor(
    redis: CommandSurface,
    keys: LockKeys,
    attempt: Attempt,
    wakeVia: CommandSurface = redis,
  ) {
    this.redis = redis;
    this.keys = keys;
    this.attempt = attempt;
    this.#wakeVia = wakeVia;
  }

  /** What the queue's wake subscription goes through (a quorum: every node). */
  readonly #wakeVia: CommandSurface;

  /** Runs it: `true` once acquired, `false` when `wait` ran out. */
  async run(wait: number, signal: AbortSignal | undefined): Promise<boolean> {
    const start = performance.now();
    // One signal for everything this acquisition awaits (tries, the wake
    // subscription, sleeps, the local queue): the caller's signal and the
    // deadline, so neither is ignored while Redis does not answer.
    const d: Deadline | undefined = wait !== 0 && wait !== Infinity
      ? deadline(wait, () => WAIT_RAN_OUT, signal)
      : undefined;
    const both = d?.signal ?? signal;
    try {
      const existing = queueOf(this.redis, this.keys, false);
      if (wait === 0 || existing === undefined) {
        try {
          const pttl = await this.attempt(both);
          if (pttl === null) return true;
          if (wait === 0) return false;
        } catch (err) {
          if (wait === 0 || both?.aborted || !noAnswer(this.redis, err)) {
            throw err;
          }
          this.#lastError = err;
          this.#failures = 1;
        }
      }
      return await this.#waitInQueue(start + wait, both);
    } catch (err) {
      if (err === WAIT_RAN_OUT) return this.#ranOut();
      throw err;
    } finally {
      this.#lastError = undefined;
      d?.clear();
    }
  }

  /**
   * The end of a wait: `false`, or the last error when no try got an answer
   * from Redis since it.
   */
  #ranOut(): false {
    if (this.#lastError !== undefined) throw this.#lastError;
    return false;
  }

  /** Waits in the local queue for a turn to contend, then contends. */
  async #waitInQueue(
    until: number,
    signal: AbortSignal | undefined,
  ): Promise<boolean> {
    const q = queueOf(this.redis, this.keys, true, this.#wakeVia)!;
    const turn = Promise.withResolvers<void>();
    const waiter = () => turn.resolve();
    q.waiters.push(waiter);
    try {
      if (q.waiters[0] !== waiter) {
        // Its turn, the end of the wait (WAIT_RAN_OUT), or an abort.
        const d = until === Infinity ? undefined : deadline(
          until - performance.now(),
          () => WAIT_RAN_OUT,
          signal,
        );
        const s = d?.signal ?? signal;
        try {
          await (s === undefined ? turn.promise : abortable(turn.promise, s));
        } finally {
          d?.clear();
        }
      }
      return await this.#contend(q, until, signal);
    } finally {
      q.remove(waiter);
    }
  }

  /**
   * The head waiter's loop: subscribe, try, sleep until woken or the lease
   * runs out. A subscription or try without an answer from Redis is retried
   * after a backoff.
   */
  async #contend(
    q: WaitQueue,
    until: number,
    signal: AbortSignal | undefined,
  ): Promise<boolean> {
    let subscribed = false;
    let first = true;
    while (true) {
      signal?.throwIfAborted();
      if (this.#failures > 0) {
        const left = until - performance.now();
        if (left <= 0) return this.#ranOut();
        // Exponential, with jitter: min(1 s, 10 ms · 2^(failures − 1)), halved.
        const pause = backoff(this.#failures - 1, 10, 1_000);
        await q.wake.sleep(Math.min(pause, left), signal);
      }
      if (performance.now() >= until) return this.#ranOut();
      const seq = q.wake.seq;
      let pttl: number;
      try {
        if (!subscribed) {
          await (signal === undefined
            ? q.wake.subscribed()
            : abortable(q.wake.subscribed(), signal));
          subscribed = true;
        }
        const holder = q.localHolder;
        const t = performance.now();
        if (first && holder !== null && !holder.ended && holder.expiresAt > t) {
          // A Lock on this client holds it: its release will wake us.
          pttl = holder.expiresAt - t;
        } else {
          const r = await this.attempt(signal);
          if (r === null) return true;
          pttl = r;
          this.#lastError = undefined;
          this.#failures = 0;
        }
      } catch (err) {
        if (signal?.aborted || !noAnswer(this.redis, err)) throw err;
        this.#lastError = err;
        this.#failures++;
        first = false;
        continue;
      }
      first = false;
      if (q.wake.seq !== seq) continue; // woken while trying
      const remaining = until - performance.now();
      if (remaining <= 0) return this.#ranOut();
      let pause: number;
      if (pttl === -1) pause = NO_EXPIRY_RECHECK;
      else if (pttl < 0) pause = 0;
      // Past the holder's lease, plus jitter so processes do not retry in step.
      else pause = pttl + 1 + Math.random() * Math.min(20, 1 + pttl / 10);
      await q.wake.sleep(Math.min(pause, remaining), signal);
    }
  }
}
