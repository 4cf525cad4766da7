/**
 * What the adapters share: turning a client's errors into respite's
 * (`ReplyError` with its code, `ConnectionError`, `TimeoutError`), the
 * per-command `timeout` and `signal` for clients that lack them, arguments
 * as the client wants them, and one subscriber connection per adapted
 * client with its channels' listeners.
 *
 * @module
 */

import { timerMs, unrefTimer } from "../async.ts";
import { ChannelTable } from "../client/channels.ts";
import type { CommandOptions } from "../client/command_options.ts";
import { ConnectionError, ReplyError, TimeoutError } from "../errors.ts";

/** Removes `user:password@` from anything that looks like a URL. */
export function redact(text: string): string {
  return text.replace(/(\w+:\/\/)[^/@\s]*@/g, "$1***@");
}

/**
 * Turns what a client rejected with into respite's error classes.
 *
 * @param err What the client threw.
 * @param who The client's kind, for messages (`"ioredis"`).
 * @param isReply Whether `err` is the client's error-reply class.
 */
export function mapError(
  err: unknown,
  who: string,
  isReply: (err: Error) => boolean,
): Error {
  if (!(err instanceof Error)) {
    return new ConnectionError(`${who}: ${redact(String(err))}`);
  }
  if (
    err instanceof ReplyError || err instanceof ConnectionError ||
    err instanceof TimeoutError || err instanceof TypeError ||
    err instanceof RangeError
  ) return err;
  if (isReply(err)) {
    const line = err.message.startsWith("-")
      ? err.message.slice(1)
      : err.message;
    return new ReplyError(redact(line), { cause: err });
  }
  return new ConnectionError(
    `${who} could not run the command: ${redact(err.message)}`,
    { cause: err },
  );
}

/**
 * Settles like `p`, mapped through `map`; or rejects at once with a
 * `TimeoutError` after `options.timeout` ms, or with the signal's reason
 * when it aborts (the command still runs; its late reply is dropped).
 */
export function finish<T>(
  p: Promise<T>,
  options: CommandOptions | undefined,
  map: (err: unknown) => Error,
): Promise<T> {
  const mapped = p.then(undefined, (err) => {
    throw map(err);
  });
  if (options === undefined) return mapped;
  const { timeout, signal } = options;
  if (timeout === undefined && signal === undefined) return mapped;
  if (signal?.aborted) {
    mapped.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    };
    const onAbort = () => {
      done();
      reject(signal!.reason);
    };
    if (timeout !== undefined) {
      timer = setTimeout(() => {
        done();
        reject(
          new TimeoutError(`Redis did not answer within ${timeout} ms`),
        );
      }, timerMs(timeout));
    }
    signal?.addEventListener("abort", onAbort, { once: true });
    mapped.then((v) => {
      done();
      resolve(v);
    }, (err) => {
      done();
      reject(err);
    });
  });
}

/**
 * Runs `send` (the client's call), and settles like {@linkcode finish}: the
 * reply normalized, errors (thrown or rejected) mapped.
 */
export function sendWith<T>(
  send: () => Promise<unknown>,
  options: CommandOptions | undefined,
  map: (err: unknown) => Error,
): Promise<T> {
  let p: Promise<unknown>;
  try {
    p = send();
  } catch (err) {
    return Promise.reject(map(err));
  }
  return finish(p.then(normalizeReply), options, map) as Promise<T>;
}

/** A client connection that subscribes with a listener per channel (node-redis, Bun). */
export interface ListenerSubscriber {
  subscribe(
    channel: string,
    listener: (message: string, channel: string) => void,
  ): Promise<unknown>;
  unsubscribe(channel: string): Promise<unknown>;
}

/**
 * The {@linkcode SubscriberConnection} over such a connection: its messages
 * go to `channels`, its errors through `map`, `close` closes it.
 */
export function listenerSubscriber(
  sub: ListenerSubscriber,
  channels: Channels,
  map: (err: unknown) => Error,
  close: () => void,
): SubscriberConnection {
  const onMessage = (message: string, channel: string) =>
    channels.dispatch(String(channel), String(message));
  return {
    subscribe: async (channel) => {
      await sub.subscribe(channel, onMessage).catch((err) => {
        throw map(err);
      });
    },
    unsubscribe: async (channel) => {
      await sub.unsubscribe(channel).catch(() => {});
    },
    close,
  };
}

/**
 * What {@linkcode Channels.resubscribe} delivers to a channel's listeners
 * once it subscribed the channel again: never published, it only says that
 * a message published while the connection was down may have been lost, so
 * a waiter looks at Redis again (a wake listener counts any message; see
 * lib/wake.ts).
 */
export const RESUBSCRIBED = "resubscribed";

/** Node's `Buffer`, where a Node-API client runs (Node, Bun, Deno's npm). */
interface BufferCtor {
  from(buf: ArrayBufferLike, offset: number, length: number): Uint8Array;
}

let buffer: BufferCtor | null = null;

/** Node's `Buffer` class: the global one, else `node:buffer`'s (Deno). */
export function bufferClass(): BufferCtor {
  if (buffer !== null) return buffer;
  const g = globalThis as {
    Buffer?: BufferCtor;
    process?: { getBuiltinModule?(name: string): { Buffer?: BufferCtor } };
  };
  const found = g.Buffer ?? g.process?.getBuiltinModule?.("node:buffer")
    ?.Buffer;
  if (found === undefined) {
    throw new TypeError(
      "this client needs Node's Buffer, which this runtime does not have",
    );
  }
  return buffer = found;
}

/** `args` for a Node-API client: numbers and bigints as text, bytes as Buffers. */
export function nodeArgs(args: readonly unknown[]): unknown[] {
  const out = new Array(args.length);
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (typeof a === "string") out[i] = a;
    else if (typeof a === "number" || typeof a === "bigint") out[i] = String(a);
    else if (a instanceof Uint8Array) {
      out[i] = bufferClass().from(a.buffer, a.byteOffset, a.byteLength);
    } else out[i] = a;
  }
  return out;
}

/** A map reply that a client gave as a plain object, as the `Map` respite gives. */
export function normalizeReply<T>(reply: T): T {
  if (
    reply !== null && typeof reply === "object" && !Array.isArray(reply) &&
    !(reply instanceof Uint8Array) && !(reply instanceof Map)
  ) {
    const proto = Object.getPrototypeOf(reply);
    if (proto === null || proto === Object.prototype) {
      return new Map(Object.entries(reply)) as T;
    }
  }
  return reply;
}

/** A subscriber connection of an adapted client. */
export interface SubscriberConnection {
  /** Subscribes; resolves once Redis confirmed it. */
  subscribe(channel: string): Promise<void>;
  /** Unsubscribes. */
  unsubscribe(channel: string): Promise<void>;
  /** Closes the connection. */
  close(): void;
}

/**
 * The channels of one adapted client, on one subscriber connection that
 * `open` makes (with the client's own duplicate) on first use. Messages
 * come in through {@linkcode Channels.dispatch}. SUBSCRIBE and UNSUBSCRIBE
 * of one channel reach Redis in order. `close()` closes the connection (the
 * adapter calls it when the app's client ends); a later subscription opens
 * a new one. An adapter calls {@linkcode Channels.resubscribe} after its
 * client reconnected the connection (with `unsubscribe: false` if the
 * client subscribed again on its own).
 */
export class Channels {
  readonly #open: (channels: Channels) => Promise<SubscriberConnection>;
  #conn: Promise<SubscriberConnection> | null = null;
  /** The listeners, and each channel's SUBSCRIBE/UNSUBSCRIBE in order. */
  readonly #table = new ChannelTable<
    (message: string, channel: string) => void
  >();
  readonly #idleMs: number;
  #idle: ReturnType<typeof setTimeout> | undefined;

  /**
   * @param open Opens the subscriber connection.
   * @param idleMs How long the connection stays open without a subscription.
   */
  constructor(
    open: (channels: Channels) => Promise<SubscriberConnection>,
    idleMs = 1_000,
  ) {
    this.#open = open;
    this.#idleMs = idleMs;
  }

  /** Calls the listeners of `channel`. */
  dispatch(channel: string, message: string): void {
    const set = this.#table.listeners.get(channel);
    if (set === undefined) return;
    for (const listener of [...set]) {
      try {
        listener(message, channel);
      } catch {
        // A listener that throws must not stop the others.
      }
    }
  }

  #connection(): Promise<SubscriberConnection> {
    if (this.#conn === null) {
      const c = this.#open(this);
      this.#conn = c;
      c.catch(() => {
        if (this.#conn === c) this.#conn = null;
      });
    }
    return this.#conn;
  }

  /** Subscribes `listener`; see `CommandSurface.subscribe`. */
  async subscribe(
    channel: string,
    listener: (message: string, channel: string) => void,
  ): Promise<() => Promise<void>> {
    clearTimeout(this.#idle);
    this.#idle = undefined;
    const remove = await this.#table.add(channel, listener, {
      subscribe: async () => {
        await (await this.#connection()).subscribe(channel);
      },
      unsubscribe: async () => {
        if (this.#conn === null) return;
        await (await this.#conn).unsubscribe(channel);
      },
    });
    let removed = false;
    return async () => {
      if (removed) return;
      removed = true;
      await remove().catch(() => {});
      if (this.#table.size === 0 && this.#conn !== null) {
        clearTimeout(this.#idle);
        this.#idle = setTimeout(() => {
          this.#idle = undefined;
          if (this.#table.size === 0) this.close();
        }, this.#idleMs);
        unrefTimer(this.#idle);
      }
    };
  }

  /**
   * After `conn` reconnected without its subscriptions (Bun's client):
   * UNSUBSCRIBE (what the client still counts as subscribed, with its
   * listener, which another SUBSCRIBE would add a second time) and
   * SUBSCRIBE again every channel that has listeners, each in that
   * channel's order with the other SUBSCRIBEs and UNSUBSCRIBEs; then tell
   * the channel's listeners {@linkcode RESUBSCRIBED}, since a message
   * published while it was down is lost. Nothing happens if `conn` is no
   * longer this client's subscriber connection. A channel that fails to
   * subscribe again because the connection dropped again is subscribed at
   * the next reconnect; any other failure goes to `warn`.
   *
   * With `unsubscribe: false` (a client that subscribes again on its own:
   * ioredis, node-redis), only SUBSCRIBE: a no-op for the channels already
   * subscribed again, whose reply says Redis has them.
   *
   * @param conn The connection that reconnected.
   * @param warn Told of a channel that could not be subscribed again.
   * @param options `unsubscribe` first (default `true`).
   */
  resubscribe(
    conn: SubscriberConnection,
    warn: (msg: string) => void,
    options?: { unsubscribe?: boolean },
  ): void {
    const unsubscribe = options?.unsubscribe ?? true;
    const current = this.#conn;
    if (current === null) return;
    current.then((c) => {
      if (c !== conn || this.#conn !== current) return;
      for (const channel of [...this.#table.listeners.keys()]) {
        this.#table.op(channel, async () => {
          if (!this.#table.wanted(channel)) return;
          if (this.#conn !== current) return;
          if (unsubscribe) await conn.unsubscribe(channel);
          await conn.subscribe(channel);
          this.dispatch(channel, RESUBSCRIBED);
        }).catch((err) => {
          if (err instanceof ConnectionError) return; // the next reconnect
          warn(
            `respite: could not subscribe again to ${channel} after a reconnect: ${err}`,
          );
        });
      }
    }, () => {});
  }

  /** Drops every listener and closes the subscriber connection, if open. */
  close(): void {
    clearTimeout(this.#idle);
    this.#idle = undefined;
    this.#table.clear();
    const c = this.#conn;
    this.#conn = null;
    c?.then((conn) => conn.close(), () => {});
  }
}
