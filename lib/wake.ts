/**
 * The wake primitive that lock waiters and cache waiters share: one
 * subscription to a wake channel, a count of the messages it received, and
 * a sleep that the next message ends. `keys.ts` says which messages are
 * published on which channel.
 *
 * A waiter reads {@linkcode Wake.seq} before it looks at Redis and sleeps only
 * if no message arrived since (`seq` unchanged), so a message that lands
 * between the look and the sleep is never lost. A message published while
 * the subscriber connection was down is lost, but the client says when it
 * subscribed the channel again (`onResubscribed`, or an adapter's
 * never-published message), and that too counts and wakes the sleepers, so
 * they look at Redis again.
 *
 * @module
 */

import { timerMs, wakeableSleep } from "./async.ts";
import type { CommandSurface } from "./adapters/surface.ts";
import { TimeoutError } from "./errors.ts";

/** A subscription to one wake channel. */
export class Wake {
  /** Counts the messages received, so one that arrives during a try is not lost. */
  seq = 0;
  /** The last message received, or `null`. */
  last: string | null = null;
  #sleepers = new Set<() => void>();
  #unsubscribe: Promise<() => Promise<void>> | null = null;
  #closed = false;
  /** Sleeps so far, for the re-check backoff of a client without pub/sub. */
  #rechecks = 0;
  /** The client whose shared subscriber connection carries it. */
  readonly redis: CommandSurface;
  /** The wake channel. */
  readonly channel: string;
  /** Called with each message as it arrives, before sleepers wake. */
  readonly onMessage?: (message: string) => void;
  /** Called when the channel was subscribed again after a reconnect, before sleepers wake. */
  readonly onResubscribed?: () => void;

  /**
   * @param redis The client whose shared subscriber connection carries it.
   * @param channel The wake channel.
   * @param onMessage Called with each message as it arrives, before sleepers
   *   wake (for a waiter that keeps a certain kind of message, which a later
   *   one in the same burst would push out of {@linkcode Wake.last}).
   * @param onResubscribed Called when the channel was subscribed again after
   *   a reconnect (messages may have been missed), before sleepers wake.
   */
  constructor(
    redis: CommandSurface,
    channel: string,
    onMessage?: (message: string) => void,
    onResubscribed?: () => void,
  ) {
    this.redis = redis;
    this.channel = channel;
    this.onMessage = onMessage;
    this.onResubscribed = onResubscribed;
  }

  /**
   * Subscribes (once; again after a failed try), and resolves when Redis
   * confirmed it. With `timeout`, rejects with a `TimeoutError` after that
   * many ms; the subscription then goes on, for a later call, until
   * {@linkcode Wake.close}.
   */
  subscribed(timeout?: number): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new Error(`wake channel ${this.channel} closed`));
    }
    if (this.#unsubscribe === null) {
      const sub = this.redis.subscribe(this.channel, (message) => {
        this.last = message;
        this.onMessage?.(message);
        this.#wakeAll();
      }, {
        onResubscribed: () => {
          this.onResubscribed?.();
          this.#wakeAll();
        },
      });
      this.#unsubscribe = sub;
      sub.catch(() => {
        if (this.#unsubscribe === sub) this.#unsubscribe = null;
      });
    }
    const sub = this.#unsubscribe.then(() => {});
    if (timeout === undefined) return sub;
    let timer: ReturnType<typeof setTimeout> | undefined;
    return Promise.race([
      sub,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new TimeoutError(
                `Redis did not confirm the subscription within ${timeout} ms`,
              ),
            ),
          timerMs(timeout),
        );
      }),
    ]).finally(() => clearTimeout(timer));
  }

  /**
   * Resolves after `ms`, or at once when a message arrives; rejects with the
   * signal's reason when it aborts.
   */
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    const recheck = this.redis.recheckMs;
    if (recheck !== undefined) {
      // A client that cannot subscribe (lib/adapters/db_redis.ts): look
      // again soon, backing off from 5 ms to `recheckMs`.
      ms = Math.min(ms, recheck, 5 * 2 ** Math.min(this.#rechecks++, 10));
    }
    return wakeableSleep(ms, signal, (wake) => {
      this.#sleepers.add(wake);
      return () => this.#sleepers.delete(wake);
    });
  }

  /** Counts a wake-up and ends every sleep. */
  #wakeAll(): void {
    this.seq++;
    const sleepers = [...this.#sleepers];
    this.#sleepers.clear();
    for (const wake of sleepers) wake();
  }

  /** Unsubscribes (in the background) and wakes every sleeper. */
  close(): void {
    this.#closed = true;
    const u = this.#unsubscribe;
    this.#unsubscribe = null;
    u?.then((unsubscribe) => unsubscribe()).catch(() => {});
    const sleepers = [...this.#sleepers];
    this.#sleepers.clear();
    for (const wake of sleepers) wake();
  }
}
