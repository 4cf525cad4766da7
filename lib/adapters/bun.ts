/**
 * Bun's built-in `RedisClient` (Bun 1.2+, tested with 1.4.4; Bun only) as a
 * {@linkcode CommandSurface}, by its shape: `send(command, args)`,
 * `getBuffer`, `connected`, `duplicate()`. Nothing is imported from `bun`.
 *
 * Wake-ups: `await client.duplicate()`, subscribed with Bun's own
 * `subscribe(channel, listener)`, opened when a caller first has to wait and
 * closed after a second without subscriptions (Bun's client has no event
 * for being closed; a subscribed connection would keep the process alive).
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
  /** A command failed because the client is closed (closed, or gave up reconnecting). */
  #gone = false;
  readonly #map = (err: unknown): Error => {
    if (
      (err as { code?: unknown })?.code === "ERR_REDIS_CONNECTION_CLOSED" &&
      !this.#client.connected
    ) this.#gone = true;
    return map(err);
  };

  /** @param client The app's Bun `RedisClient`. */
  constructor(client: BunRedisLike) {
    this.#client = client;
    this.#channels = new Channels(() => this.#openSubscriber());
  }

  /**
   * `"ready"` while connected, and before the first connection (Bun's client
   * connects on first use, reconnects on its own and queues commands
   * meanwhile); `"closed"` once a command failed because the client was
   * closed or gave up reconnecting (Bun has no state for it), until it is
   * connected again (the app's `connect()`).
   */
  get status(): ConnectionStatus {
    if (this.#client.connected) {
      this.#gone = false;
      return "ready";
    }
    return this.#gone ? "closed" : "ready";
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
    return listenerSubscriber(sub, this.#channels, map, () => sub.close());
  }
}
