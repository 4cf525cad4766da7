/**
 * The bookkeeping of subscriptions on one subscriber connection, shared by
 * respite's own client (./subscriber.ts) and the adapters of an app's
 * clients (../adapters/common.ts): the listeners of each channel, and a
 * per-channel chain so that its SUBSCRIBE and UNSUBSCRIBE reach Redis in the
 * order they were asked for. What is sent, and on which connection, stays
 * with the caller. Internal: not exported from `mod.ts`.
 *
 * @module
 */

/** What {@linkcode ChannelTable.add} does at the edges of a channel's life. */
export interface ChannelHooks {
  /** Subscribes the channel: run (in its order) for its first listener. */
  subscribe(): Promise<void>;
  /** Unsubscribes it: run (in its order) once its last listener is gone. */
  unsubscribe(): Promise<void>;
  /** Called when this listener is dropped: removed, or its subscribe failed. */
  dropped?(): void;
}

/**
 * Listeners per channel, and each channel's operations in order.
 *
 * @typeParam L A listener.
 */
export class ChannelTable<L> {
  /** The listeners of each channel that has any. */
  readonly listeners: Map<string, Set<L>> = new Map();
  /** Per channel, the last operation asked for (until it settles). */
  readonly #ops = new Map<string, Promise<unknown>>();

  /** Number of channels with listeners. */
  get size(): number {
    return this.listeners.size;
  }

  /** Whether `channel` has a listener. */
  wanted(channel: string): boolean {
    return (this.listeners.get(channel)?.size ?? 0) > 0;
  }

  /**
   * Runs `op` after the channel's operations asked for before it settled.
   *
   * @param channel The channel.
   * @param op The operation.
   * @returns Its outcome.
   */
  op(channel: string, op: () => Promise<void>): Promise<void> {
    const prev = this.#ops.get(channel) ?? Promise.resolve();
    const next = prev.then(op, op);
    this.#ops.set(channel, next);
    const clear = () => {
      if (this.#ops.get(channel) === next) this.#ops.delete(channel);
    };
    next.then(clear, clear);
    return next;
  }

  /** The operations still out, for a close that waits for them. */
  pending(): Promise<unknown>[] {
    return [...this.#ops.values()];
  }

  /**
   * Adds `listener` to `channel`; resolves once the channel is subscribed.
   * The first listener runs `hooks.subscribe` (in the channel's order, and
   * only if a listener is still there when its turn comes); a later one
   * waits for the operation out. If subscribing fails, the listener is
   * dropped again and the error thrown.
   *
   * @param channel The channel.
   * @param listener The listener.
   * @param hooks What to send, and what to do when the listener is dropped.
   * @returns A function that removes the listener (once; later calls do
   *   nothing) and, when it was the channel's last, runs
   *   `hooks.unsubscribe` in the channel's order, unless a listener came
   *   back by then.
   */
  async add(
    channel: string,
    listener: L,
    hooks: ChannelHooks,
  ): Promise<() => Promise<void>> {
    let set = this.listeners.get(channel);
    const first = set === undefined;
    if (set === undefined) {
      set = new Set();
      this.listeners.set(channel, set);
    }
    set.add(listener);
    try {
      if (first) {
        await this.op(channel, async () => {
          if (this.wanted(channel)) await hooks.subscribe();
        });
      } else {
        await this.#ops.get(channel);
      }
    } catch (err) {
      // Not subscribed: do not keep a listener the caller cannot remove.
      hooks.dropped?.();
      this.#remove(channel, listener);
      throw err;
    }
    let removed = false;
    return async () => {
      if (removed) return;
      removed = true;
      hooks.dropped?.();
      if (!this.#remove(channel, listener)) return;
      await this.op(channel, async () => {
        if (!this.listeners.has(channel)) await hooks.unsubscribe();
      });
    };
  }

  /** Drops every listener (the operations out go on). */
  clear(): void {
    this.listeners.clear();
  }

  /** Removes one listener; whether it was the channel's last. */
  #remove(channel: string, listener: L): boolean {
    const current = this.listeners.get(channel);
    if (!current?.delete(listener) || current.size > 0) return false;
    this.listeners.delete(channel);
    return true;
  }
}
