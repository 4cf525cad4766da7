/**
 * A client's pub/sub: one extra connection, opened on first use and shared by
 * every subscription of the client, with the listeners of each channel, the
 * SUBSCRIBE/UNSUBSCRIBE order per channel, and subscribing again after a
 * reconnect. `RedisClient.subscribe()` is its public face.
 *
 * @module
 */

import { ChannelTable } from "./channels.ts";
import { Connection } from "./connection.ts";
import { ConnectionError } from "../errors.ts";
import type { ResolvedOptions } from "./options.ts";

/**
 * Called with each message published on a subscribed channel.
 *
 * @param message The message, as a string.
 * @param channel The channel it was published on.
 */
export type MessageListener = (message: string, channel: string) => void;

/**
 * Options of `RedisClient.subscribe()`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, type SubscribeOptions } from "@respite/respite";
 * await using redis = await connect();
 * let resubscribed = 0;
 * const options: SubscribeOptions = { onResubscribed: () => resubscribed++ };
 * const unsubscribe = await redis.subscribe("respite:doc:opts", () => {}, options);
 * assert.equal(resubscribed, 0); // called only after a reconnect
 * await unsubscribe();
 * ```
 */
export interface SubscribeOptions {
  /**
   * Called each time the channel is subscribed again after a reconnect of
   * the subscriber connection (once Redis confirmed it): a message
   * published while the connection was down is lost, so a waiter looks at
   * Redis again. The listener gets no message for it.
   */
  onResubscribed?: () => void;
}

/** The subscriptions of one client, on one shared subscriber connection. */
export class Subscriber {
  readonly #options: ResolvedOptions;
  #connection: Promise<Connection> | null = null;
  /** The listeners, and each channel's SUBSCRIBE/UNSUBSCRIBE in order. */
  readonly #table = new ChannelTable<MessageListener>();
  /** Per channel, the `onResubscribed` callbacks of its subscriptions. */
  #resubscribed = new Map<string, Set<() => void>>();

  /**
   * Nothing is opened until the first subscription.
   *
   * @param options The client's options; the subscriber connection uses them too.
   */
  constructor(options: ResolvedOptions) {
    this.#options = options;
  }

  /** Number of channels subscribed to. */
  get channels(): number {
    return this.#table.size;
  }

  /**
   * Subscribes `listener` to `channel` (checked by the caller); resolves once
   * Redis confirmed the subscription.
   *
   * @param channel The channel name.
   * @param listener Called with each message.
   * @param options `onResubscribed`, called after each resubscribe.
   * @returns A function that removes this listener (and unsubscribes when it
   *   was the channel's last).
   */
  async subscribe(
    channel: string,
    listener: MessageListener,
    options?: SubscribeOptions,
  ): Promise<() => Promise<void>> {
    // Its own function, so one callback given twice is called twice.
    const cb = options?.onResubscribed;
    const onResubscribed = cb === undefined ? undefined : () => cb();
    const addCallback = () => {
      if (onResubscribed === undefined) return;
      let cbs = this.#resubscribed.get(channel);
      if (cbs === undefined) this.#resubscribed.set(channel, cbs = new Set());
      cbs.add(onResubscribed);
    };
    const dropCallback = () => {
      if (onResubscribed === undefined) return;
      const cbs = this.#resubscribed.get(channel);
      if (cbs?.delete(onResubscribed) && cbs.size === 0) {
        this.#resubscribed.delete(channel);
      }
    };
    addCallback();
    return await this.#table.add(channel, listener, {
      subscribe: async () => {
        const sub = await this.#subscriberConnection();
        await sub.send(["SUBSCRIBE", channel]);
      },
      unsubscribe: async () => {
        if (this.#connection === null) return;
        const sub = await this.#connection;
        if (sub.status === "ready" || sub.status === "reconnecting") {
          await sub.send(["UNSUBSCRIBE", channel]);
        }
      },
      dropped: dropCallback,
    });
  }

  /**
   * Checks the subscriber connection, if there is one, for a silent death
   * (see `Connection.checkHealth`).
   */
  checkHealth(): void {
    this.#connection?.then((s) => s.checkHealth(), () => {});
  }

  /**
   * Drops every listener, waits for the channel operations still out (at
   * most `timeout` ms), then closes the subscriber connection within what is
   * left until `deadline` (a `performance.now()` time).
   *
   * @param timeout Longest wait for the channel operations, in ms.
   * @param deadline When everything must be closed.
   * @returns Resolves once the subscriber connection is closed.
   */
  async close(timeout: number, deadline: number): Promise<void> {
    this.#table.clear();
    this.#resubscribed.clear();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.allSettled(this.#table.pending()),
      new Promise<void>((r) => timer = setTimeout(r, timeout)),
    ]);
    clearTimeout(timer);
    const sub = this.#connection;
    const left = Math.max(0, deadline - performance.now());
    await sub?.then((c) => c.close(left), () => {});
  }

  /**
   * A second close: shortens the wait of the subscriber connection's close.
   *
   * @param timeout The new longest wait, in ms.
   */
  closeAgain(timeout: number): void {
    void this.#connection?.then((c) => c.close(timeout), () => {});
  }

  /**
   * Drops the subscriber connection (if open) so that it reconnects to where
   * its target now says and subscribes again (see `Connection.reroute`).
   */
  reroute(where: string | null, reason: string): void {
    this.#connection?.then((c) => c.reroute(where, reason), () => {});
  }

  #subscriberConnection(): Promise<Connection> {
    if (this.#connection === null) {
      this.#connection = Connection.open(this.#options, {
        onMessage: (_kind, data) => {
          const channel = String(data[data.length - 2]);
          const message = String(data[data.length - 1]);
          const set = this.#table.listeners.get(channel);
          if (set === undefined) return;
          for (const l of [...set]) {
            try {
              l(message, channel);
            } catch (err) {
              this.#options.logger.warn(
                `respite: a message listener on ${channel} threw: ${err}`,
              );
            }
          }
        },
        onReady: (reconnected) => {
          // After a reconnect: subscribe again to every channel still wanted.
          // (Not on the first open: the subscribe() that opened it sends its
          // own SUBSCRIBE.)
          if (!reconnected || this.#connection === null) return;
          void this.#connection.then((sub) => {
            for (const channel of this.#table.listeners.keys()) {
              sub.send(["SUBSCRIBE", channel]).then(() => {
                // Subscribed again: what was published meanwhile is lost,
                // so tell the waiters to look again.
                const cbs = this.#resubscribed.get(channel);
                for (const cb of cbs === undefined ? [] : [...cbs]) {
                  try {
                    cb();
                  } catch (err) {
                    this.#options.logger.warn(
                      `respite: an onResubscribed callback on ${channel} threw: ${err}`,
                    );
                  }
                }
              }, (err) => {
                // Lost with the connection again: the next reconnect
                // subscribes again, so that is no loss worth a warning.
                if (err instanceof ConnectionError) return;
                this.#options.logger.warn(
                  `respite: could not subscribe again to ${channel} after a reconnect: ${err}`,
                );
              });
            }
          });
        },
      }, true);
      this.#connection.catch(() => this.#connection = null);
    }
    return this.#connection;
  }
}
