/**
 * The public Redis client: `connect()`, `send()`, `command()`, pub/sub on one
 * shared subscriber connection, `close()` and `await using`.
 *
 * @module
 */

import {
  type CommandOptions,
  Connection,
  type ConnectionStatus,
} from "./connection.ts";
import {
  type ConnectOptions,
  type Logger,
  type ResolvedOptions,
  resolveOptions,
} from "./options.ts";
import type { Reply } from "./resp_decoder.ts";
import type { Arg } from "./resp_encoder.ts";

/**
 * Called with each message published on a subscribed channel.
 *
 * @param message The message, as a string.
 * @param channel The channel it was published on.
 */
export type MessageListener = (message: string, channel: string) => void;

/** What {@linkcode RedisClient.info} tells about a client. */
export interface ClientInfo {
  /** Host name or IP address. */
  hostname: string;
  /** TCP port. */
  port: number;
  /** Selected database. */
  db: number;
  /** ACL user, if any. */
  username?: string;
  /** Whether the connection uses TLS. */
  tls: boolean;
  /** RESP version in use. */
  protocol: 2 | 3;
}

/**
 * A Redis client over one auto-pipelined connection. Every command issued in
 * the same tick leaves in one write; thousands of concurrent callers can share
 * it. Create one with {@linkcode connect}.
 *
 * @example
 * ```ts
 * import { connect } from "@respite/respite";
 * await using redis = await connect(); // REDIS_URL, else redis://127.0.0.1:6379
 * await redis.send("SET", "respite:doc:greeting", "hello");
 * console.assert(await redis.send("GET", "respite:doc:greeting") === "hello");
 * await redis.send("DEL", "respite:doc:greeting");
 * ```
 */
export class RedisClient {
  #conn: Connection;
  #subscriber: Promise<Connection> | null = null;
  #listeners = new Map<string, Set<MessageListener>>();
  /** Per-channel SUBSCRIBE/UNSUBSCRIBE chain, so they reach Redis in order. */
  #channelOps = new Map<string, Promise<unknown>>();
  #closing: Promise<void> | null = null;

  /** Use {@linkcode connect}. */
  private constructor(conn: Connection) {
    this.#conn = conn;
  }

  /** @internal Opens a client; use {@linkcode connect}. */
  static async _open(options: ResolvedOptions): Promise<RedisClient> {
    return new RedisClient(await Connection.open(options));
  }

  /** The connection's state: `"ready"`, `"reconnecting"`, `"closing"` or `"closed"`. */
  get status(): ConnectionStatus {
    return this.#conn.status;
  }

  /** Where warnings from scripts and locks on this client go. */
  get logger(): Logger {
    return this.#conn.options.logger;
  }

  /** Where this client is connected, and how; the password is left out. */
  get info(): ClientInfo {
    const o = this.#conn.options;
    return {
      hostname: o.hostname,
      port: o.port,
      db: o.db,
      username: o.username,
      tls: o.tls !== undefined,
      protocol: o.protocol,
    };
  }

  /**
   * Sends one command and resolves with its reply. Bulk strings come back as
   * strings, integers as numbers, nil as `null`; an error reply rejects with a
   * `ReplyError`.
   *
   * @param command The command name, e.g. `"GET"`.
   * @param args Its arguments: strings, numbers, bigints or `Uint8Array`s.
   * @returns The reply, typed as `T` (the caller states what it expects).
   *
   * @example
   * ```ts
   * import { connect } from "@respite/respite";
   * await using redis = await connect();
   * const n = await redis.send<number>("INCR", "respite:doc:visits");
   * console.assert(typeof n === "number");
   * await redis.send("DEL", "respite:doc:visits");
   * ```
   */
  send<T extends Reply = Reply>(command: string, ...args: Arg[]): Promise<T> {
    try {
      return this.#conn.send([command, ...args]) as Promise<T>;
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Sends one command with per-command options: a timeout, an `AbortSignal`,
   * or raw bytes instead of strings. An aborted or timed-out command rejects at
   * once; its late reply is read and dropped, and the connection stays usable.
   *
   * @param args The command name followed by its arguments.
   * @param options `timeout` (ms), `signal`, `raw`.
   * @returns The reply.
   *
   * @example
   * ```ts
   * import { connect } from "@respite/respite";
   * await using redis = await connect();
   * await redis.send("SET", "respite:doc:bytes", new Uint8Array([0, 13, 10, 255]));
   * const bytes = await redis.command<Uint8Array>(
   *   ["GET", "respite:doc:bytes"],
   *   { raw: true, timeout: 500 },
   * );
   * console.assert(bytes.length === 4 && bytes[3] === 255);
   * await redis.send("DEL", "respite:doc:bytes");
   * ```
   */
  command<T extends Reply = Reply>(
    args: readonly Arg[],
    options?: CommandOptions,
  ): Promise<T> {
    try {
      return this.#conn.send(args, options) as Promise<T>;
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Subscribes `listener` to a channel. All subscriptions of a client share one
   * extra connection, opened on first use and re-subscribed after a reconnect.
   * Resolves once Redis confirmed the subscription, so nothing published after
   * that is missed.
   *
   * @param channel The channel name.
   * @param listener Called with each message.
   * @returns A function that removes this listener (and unsubscribes when it
   *   was the channel's last).
   *
   * @example
   * ```ts
   * import { connect } from "@respite/respite";
   * await using redis = await connect();
   * const got = Promise.withResolvers<string>();
   * const unsubscribe = await redis.subscribe("respite:doc:news", (msg) => got.resolve(msg));
   * await redis.send("PUBLISH", "respite:doc:news", "hello");
   * console.assert(await got.promise === "hello");
   * await unsubscribe();
   * ```
   */
  async subscribe(
    channel: string,
    listener: MessageListener,
  ): Promise<() => Promise<void>> {
    if (typeof channel !== "string") {
      throw new TypeError("channel must be a string");
    }
    if (typeof listener !== "function") {
      throw new TypeError("listener must be a function");
    }
    if (this.#closing) throw new TypeError("subscribe() on a closed client");
    let set = this.#listeners.get(channel);
    const first = set === undefined;
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(channel, set);
    }
    set.add(listener);
    try {
      if (first) {
        await this.#channelOp(channel, async () => {
          // Still wanted by the time our turn came?
          if (this.#listeners.get(channel)?.size) {
            const sub = await this.#subscriberConnection();
            await sub.send(["SUBSCRIBE", channel]);
          }
        });
      } else {
        await this.#channelOps.get(channel);
      }
    } catch (err) {
      // Not subscribed: do not keep a listener the caller cannot remove.
      const current = this.#listeners.get(channel);
      if (current?.delete(listener) && current.size === 0) {
        this.#listeners.delete(channel);
      }
      throw err;
    }
    let removed = false;
    return async () => {
      if (removed) return;
      removed = true;
      const current = this.#listeners.get(channel);
      if (!current?.delete(listener) || current.size > 0) return;
      this.#listeners.delete(channel);
      await this.#channelOp(channel, async () => {
        if (this.#listeners.has(channel) || this.#subscriber === null) return;
        const sub = await this.#subscriber;
        if (sub.status === "ready" || sub.status === "reconnecting") {
          await sub.send(["UNSUBSCRIBE", channel]);
        }
      });
    };
  }

  /** Number of channels this client is subscribed to. */
  get subscriptions(): number {
    return this.#listeners.size;
  }

  #channelOp(channel: string, op: () => Promise<void>): Promise<void> {
    const prev = this.#channelOps.get(channel) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(op);
    this.#channelOps.set(channel, next);
    const cleanup = () => {
      if (this.#channelOps.get(channel) === next) {
        this.#channelOps.delete(channel);
      }
    };
    next.then(cleanup, cleanup);
    return next;
  }

  #subscriberConnection(): Promise<Connection> {
    if (this.#subscriber === null) {
      this.#subscriber = Connection.open(this.#conn.options, {
        onMessage: (_kind, data) => {
          const channel = String(data[data.length - 2]);
          const message = String(data[data.length - 1]);
          const set = this.#listeners.get(channel);
          if (set === undefined) return;
          for (const l of [...set]) {
            try {
              l(message, channel);
            } catch (err) {
              this.logger.warn(
                `respite: a message listener on ${channel} threw: ${err}`,
              );
            }
          }
        },
        onReady: () => {
          // After a reconnect: subscribe again to every channel still wanted.
          if (this.#subscriber === null) return;
          void this.#subscriber.then((sub) => {
            for (const channel of this.#listeners.keys()) {
              sub.send(["SUBSCRIBE", channel]).catch((err) =>
                this.logger.warn(
                  `respite: could not subscribe again to ${channel} after a reconnect: ${err}`,
                )
              );
            }
          });
        },
      }, true);
      this.#subscriber.catch(() => this.#subscriber = null);
    }
    return this.#subscriber;
  }

  /**
   * Opens a second, independent client with the same options, for commands
   * that block a connection (BLPOP, WAIT) without stalling this one.
   *
   * @returns A new client; close it when done.
   */
  duplicate(): Promise<RedisClient> {
    return RedisClient._open(this.#conn.options);
  }

  /**
   * Closes the client after every command already issued has its reply.
   * Commands issued afterwards reject with a `ConnectionError`.
   */
  close(): Promise<void> {
    if (this.#closing === null) {
      this.#closing = (async () => {
        // Close the command connection now, so that a command issued after
        // close() rejects; it still waits for the replies already due.
        const closed = this.#conn.close();
        this.#listeners.clear();
        await Promise.allSettled([...this.#channelOps.values()]);
        const sub = this.#subscriber;
        await Promise.all([
          closed,
          sub?.then((c) => c.close(), () => {}),
        ]);
      })();
    }
    return this.#closing;
  }

  /** Same as {@linkcode RedisClient.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** @internal Drops the connection as a network failure would (tests only). */
  _simulateDrop(): Promise<void> {
    return this.#conn.simulateDrop();
  }
}

/**
 * Opens a client. Resolves once connected and authenticated (AUTH, SELECT and
 * HELLO done); rejects with a `ConnectionError`, `TimeoutError` or
 * `ReplyError` (wrong password) otherwise. A bad URL or option throws a
 * `TypeError` or `RangeError` before anything is sent.
 *
 * @param options A `redis://`/`rediss://` URL, or an options object. Without
 *   it, the `REDIS_URL` environment variable is used if set (and readable),
 *   else `redis://127.0.0.1:6379`.
 * @returns The connected client.
 *
 * @example
 * ```ts
 * import { connect } from "@respite/respite";
 * // A URL: redis://[[user]:password@]host[:port][/db], or rediss:// for TLS.
 * // Or an options object: { hostname, port, username, password, db, tls, protocol, ... }
 * await using redis = await connect(Deno.env.get("REDIS_URL") ?? "redis://127.0.0.1:6379");
 * console.assert(await redis.send("PING") === "PONG");
 * ```
 */
export function connect(
  options?: string | ConnectOptions,
): Promise<RedisClient> {
  let resolved: ResolvedOptions;
  try {
    resolved = resolveOptions(options ?? envUrl() ?? {});
  } catch (err) {
    return Promise.reject(err);
  }
  return RedisClient._open(resolved);
}

/** Reads `REDIS_URL` where the runtime lets us; `undefined` otherwise. */
function envUrl(): string | undefined {
  const g = globalThis as {
    Deno?: { env: { get(name: string): string | undefined } };
    process?: { env?: Record<string, string | undefined> };
  };
  try {
    if (g.Deno) return g.Deno.env.get("REDIS_URL") || undefined;
    return g.process?.env?.REDIS_URL || undefined;
  } catch {
    return undefined; // no permission to read the environment
  }
}
