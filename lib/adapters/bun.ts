/**
 * Bun's built-in `RedisClient` (Bun 1.2+, tested with 1.4.4; Bun only) as a
 * {@linkcode CommandSurface}, by its shape: `send(command, args)`,
 * `getBuffer`, `connected`, `duplicate()`. Nothing is imported from `bun`.
 *
 * Wake-ups: `await client.duplicate()`, subscribed with Bun's own
 * `subscribe(channel, listener)`, opened when a caller first has to wait and
 * closed after a second without subscriptions (a subscribed connection
 * would keep the process alive). Bun (1.4.4) reconnects that connection on
 * its own but does not subscribe again, while it still holds the listeners:
 * on its `onconnect` (a reconnect: `duplicate()` resolves connected) every
 * channel with listeners is unsubscribed and subscribed again, and its
 * waiters are told to look again (`Channels.resubscribe`).
 *
 * Status: Bun's client has no state but `connected`; it reconnects on its
 * own after a drop, so not connected is `"reconnecting"` (`"ready"` before
 * its first connection, which Bun makes on first use). `"closed"` once its
 * `onclose` fired, which Bun calls only when the client is closed for good
 * (the app's `close()`, reconnecting given up or turned off), not on a
 * drop it reconnects from. The adapter sets `onclose` on the app's client,
 * calling the app's own `onclose` from it; an `onclose` the app sets later
 * is wrapped the same way the next time the status is read.
 *
 * Bun's `send` takes strings; `raw` is supported for `GET` (as `getBuffer`),
 * the one raw read respite makes.
 *
 * @module
 */

import type { CommandOptions } from "../client/command_options.ts";
import type { Reply } from "../resp/decoder.ts";
import type { Arg } from "../resp/encoder.ts";
import type { Logger } from "../validate.ts";
import {
  Channels,
  listenerSubscriber,
  mapError,
  sendWith,
  type SubscriberConnection,
} from "./common.ts";
import type { ConnectionStatus } from "../client/connection.ts";
import type { CommandSurface } from "./surface.ts";

/** The part of Bun's `RedisClient` used here. */
export interface BunRedisLike {
  send(command: string, args: (string | Uint8Array)[]): Promise<unknown>;
  getBuffer(key: string): Promise<Uint8Array | null>;
  readonly connected: boolean;
  duplicate(): Promise<BunRedisLike>;
  subscribe(
    channel: string,
    listener: (message: string, channel: string) => void,
  ): Promise<unknown>;
  unsubscribe(channel: string): Promise<unknown>;
  close(): void;
  /** Called when the client connected (again). */
  onconnect?: (() => void) | null;
  /** Called when the client is closed for good (not on a drop it reconnects from). */
  onclose?: ((error: Error) => void) | null;
}

/** Whether `x` has the shape of Bun's `RedisClient`. */
export function isBunRedis(x: Record<string, unknown>): boolean {
  return typeof x.send === "function" && typeof x.getBuffer === "function" &&
    "connected" in x && typeof x.duplicate === "function" &&
    typeof x.subscribe === "function";
}

const isReply = (err: Error) =>
  (err as { code?: unknown }).code === "ERR_REDIS_SERVER_ERROR";
const map = (err: unknown) => mapError(err, "Bun RedisClient", isReply);

function bunArgs(args: readonly Arg[]): (string | Uint8Array)[] {
  const out = new Array<string | Uint8Array>(args.length - 1);
  for (let i = 1; i < args.length; i++) {
    const a = args[i];
    out[i - 1] = a instanceof Uint8Array ? a : String(a);
  }
  return out;
}

/** A Bun `RedisClient`, adapted. */
export class BunRedisSurface implements CommandSurface {
  readonly #client: BunRedisLike;
  readonly #channels: Channels;
  /** Where warnings go. */
  readonly logger: Logger = console;
  /** Bun called `onclose`: the client is closed for good. */
  #closed = false;
  /** The client was connected once (Bun connects on first use). */
  #seen: boolean;
  /** The `onclose` this adapter set, and the app's it calls. */
  #onclose: ((error: Error) => void) | null = null;
  readonly #map = (err: unknown): Error => {
    if (
      (err as { code?: unknown })?.code === "ERR_REDIS_CONNECTION_CLOSED"
    ) this.#seen = true;
    return map(err);
  };

  /** @param client The app's Bun `RedisClient`. */
  constructor(client: BunRedisLike) {
    this.#client = client;
    this.#seen = client.connected;
    this.#channels = new Channels(() => this.#openSubscriber());
    this.#watchClose();
  }

  /** Sets `onclose` (again, if the app replaced it), calling the app's. */
  #watchClose(): void {
    const client = this.#client;
    const current = client.onclose ?? null;
    if (current !== null && current === this.#onclose) return;
    const hook = (error: Error): void => {
      this.#closed = true;
      current?.call(client, error);
    };
    this.#onclose = hook;
    client.onclose = hook;
  }

  /**
   * `"ready"` while connected, and before the first connection (Bun's client
   * connects on first use and queues commands meanwhile); `"closed"` once Bun
   * called `onclose` (the app's `close()`, or reconnecting given up), until
   * it is connected again (the app's `connect()`); `"reconnecting"` while
   * Bun reconnects after a drop.
   */
  get status(): ConnectionStatus {
    if (this.#client.onclose !== this.#onclose) this.#watchClose();
    if (this.#client.connected) {
      this.#closed = false;
      this.#seen = true;
      return "ready";
    }
    if (this.#closed) return "closed";
    return this.#seen ? "reconnecting" : "ready";
  }

  /** Sends one command (`GET` through `getBuffer` when `raw`). */
  command<T extends Reply = Reply>(
    args: readonly Arg[],
    options?: CommandOptions,
  ): Promise<T> {
    return sendWith<T>(
      () => {
        const name = String(args[0]);
        if (options?.raw) {
          if (name.toUpperCase() !== "GET" || args.length !== 2) {
            throw new TypeError(
              "raw replies need GET with Bun's RedisClient (its send() returns text)",
            );
          }
          return this.#client.getBuffer(String(args[1]));
        } else {
          return this.#client.send(name, bunArgs(args));
        }
      },
      options,
      this.#map,
    );
  }

  /** Subscribes on the duplicate connection. */
  subscribe(
    channel: string,
    listener: (message: string, channel: string) => void,
  ): Promise<() => Promise<void>> {
    return this.#channels.subscribe(channel, listener);
  }

  async #openSubscriber(): Promise<SubscriberConnection> {
    let sub: BunRedisLike;
    try {
      sub = await this.#client.duplicate();
    } catch (err) {
      throw map(err);
    }
    const conn = listenerSubscriber(
      sub,
      this.#channels,
      map,
      () => sub.close(),
    );
    // duplicate() resolved connected: each onconnect is a reconnect.
    sub.onconnect = () =>
      this.#channels.resubscribe(conn, (msg) => this.logger.warn(msg));
    return conn;
  }
}
