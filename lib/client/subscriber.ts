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
import { ConnectionError, ReplyError } from "../errors.ts";
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
  /**
   * Sharded pub/sub (Redis 7+): SSUBSCRIBE instead of SUBSCRIBE, so the
   * listener gets what `SPUBLISH` sends on the channel (classic `PUBLISH`
   * does not reach it). On a cluster, subscribe on the node that owns the
   * channel's slot: `connectCluster`'s `subscribe` does that itself.
   */
  sharded?: boolean;
  /**
   * With `sharded`: called when Redis ended the subscription on its own,
   * which it does when the channel's slot moved to another shard (it sends
   * `sunsubscribe`). The listener gets nothing more here; remove it and
   * subscribe where the slot went.
   */
  onServerUnsubscribed?: () => void;
}

/** One table of channels: classic (SUBSCRIBE) or sharded (SSUBSCRIBE). */
interface Kind {
  readonly table: ChannelTable<MessageListener>;
  /** Per channel, the `onResubscribed` callbacks of its subscriptions. */
  readonly resubscribed: Map<string, Set<() => void>>;
  /** Per channel, the `onServerUnsubscribed` callbacks (sharded only). */
  readonly ended: Map<string, Set<() => void>>;
  readonly subscribe: string;
  readonly unsubscribe: string;
}

function kind(subscribe: string, unsubscribe: string): Kind {
  return {
    table: new ChannelTable<MessageListener>(),
    resubscribed: new Map(),
    ended: new Map(),
    subscribe,
    unsubscribe,
  };
}

/** Adds `cb` to `map`'s set for `channel`; returns what removes it again. */
function addTo(
  map: Map<string, Set<() => void>>,
  channel: string,
  cb: (() => void) | undefined,
): () => void {
  if (cb === undefined) return () => {};
  // Its own function, so one callback given twice is called twice.
  const own = () => cb();
  let set = map.get(channel);
  if (set === undefined) map.set(channel, set = new Set());
  set.add(own);
  return () => {
    const current = map.get(channel);
    if (current?.delete(own) && current.size === 0) map.delete(channel);
  };
}

/** The subscriptions of one client, on one shared subscriber connection. */
export class Subscriber {
  readonly #options: ResolvedOptions;
  #connection: Promise<Connection> | null = null;
  /** Classic channels: the listeners, and each channel's operations in order. */
  readonly #classic = kind("SUBSCRIBE", "UNSUBSCRIBE");
  /** Sharded channels (SSUBSCRIBE), kept apart: another namespace in Redis. */
  readonly #sharded = kind("SSUBSCRIBE", "SUNSUBSCRIBE");

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
    return this.#classic.table.size + this.#sharded.table.size;
  }

  /**
   * Subscribes `listener` to `channel` (checked by the caller); resolves once
   * Redis confirmed the subscription.
   *
   * @param channel The channel name.
   * @param listener Called with each message.
   * @param options `onResubscribed`, called after each resubscribe;
   *   `sharded` and `onServerUnsubscribed`.
   * @returns A function that removes this listener (and unsubscribes when it
   *   was the channel's last).
   */
  async subscribe(
    channel: string,
    listener: MessageListener,
    options?: SubscribeOptions,
  ): Promise<() => Promise<void>> {
    const k = options?.sharded === true ? this.#sharded : this.#classic;
    const dropResubscribed = addTo(
      k.resubscribed,
      channel,
      options?.onResubscribed,
    );
    const dropEnded = addTo(k.ended, channel, options?.onServerUnsubscribed);
    return await k.table.add(channel, listener, {
      subscribe: async () => {
        const sub = await this.#subscriberConnection();
        await sub.send([k.subscribe, channel]);
      },
      unsubscribe: async () => {
        if (this.#connection === null) return;
        const sub = await this.#connection;
        if (sub.status === "ready" || sub.status === "reconnecting") {
          await sub.send([k.unsubscribe, channel]);
        }
      },
      dropped: () => {
        dropResubscribed();
        dropEnded();
      },
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
    for (const k of [this.#classic, this.#sharded]) {
      k.table.clear();
      k.resubscribed.clear();
      k.ended.clear();
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.allSettled([
        ...this.#classic.table.pending(),
        ...this.#sharded.table.pending(),
      ]),
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

  /** Subscribes `channel` again after a reconnect, and says so. */
  #subscribeAgain(sub: Connection, k: Kind, channel: string): void {
    sub.send([k.subscribe, channel]).then(() => {
      // Subscribed again: what was published meanwhile is lost, so tell the
      // waiters to look again.
      this.#call(k.resubscribed, channel);
    }, (err) => {
      // Lost with the connection again: the next reconnect subscribes
      // again, so that is no loss worth a warning.
      if (err instanceof ConnectionError) return;
      if (k === this.#sharded && err instanceof ReplyError) {
        // The slot moved while the connection was down (MOVED): for whoever
        // subscribed it, as if Redis had ended the subscription itself.
        this.#call(k.ended, channel);
        return;
      }
      this.#options.logger.warn(
        `respite: could not subscribe again to ${channel} after a reconnect: ${err}`,
      );
    });
  }

  /** Calls the callbacks `map` has for `channel`; what they throw is logged. */
  #call(map: Map<string, Set<() => void>>, channel: string): void {
    const cbs = map.get(channel);
    for (const cb of cbs === undefined ? [] : [...cbs]) {
      try {
        cb();
      } catch (err) {
        this.#options.logger.warn(
          `respite: a subscription callback on ${channel} threw: ${err}`,
        );
      }
    }
  }

  #subscriberConnection(): Promise<Connection> {
    if (this.#connection === null) {
      this.#connection = Connection.open(this.#options, {
        onMessage: (kind, data) => {
          const channel = String(data[data.length - 2]);
          if (kind === "sunsubscribe") {
            // Redis ended a sharded subscription: the slot moved.
            this.#call(this.#sharded.ended, String(data[1]));
            return;
          }
          const message = String(data[data.length - 1]);
          const k = kind === "smessage" ? this.#sharded : this.#classic;
          const set = k.table.listeners.get(channel);
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
            for (const k of [this.#classic, this.#sharded]) {
              for (const channel of k.table.listeners.keys()) {
                this.#subscribeAgain(sub, k, channel);
              }
            }
          });
        },
      }, true);
      this.#connection.catch(() => this.#connection = null);
    }
    return this.#connection;
  }
}
