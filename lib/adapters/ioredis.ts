/**
 * An app's ioredis client (v5 and v6; tested with 6.0.0) as a
 * {@linkcode CommandSurface}, by its shape: `call`/`callBuffer` to send,
 * `status`, `duplicate()` for the subscriber, `on("end")`. Nothing from the
 * ioredis package is imported.
 *
 * Wake-ups: one `duplicate()` of the client, in subscriber mode, opened when
 * a caller first has to wait and closed when the app's client ends (its
 * `end` event) or after a second without subscriptions. ioredis subscribes
 * it again after a reconnect (`autoResubscribe`); a message published while
 * it was down is lost, so once it is back (its `ready` event) the waiters
 * are told to look again (`Channels.resubscribe`).
 *
 * @module
 */

import type { CommandOptions } from "../client/command_options.ts";
import type { Reply } from "../resp/decoder.ts";
import type { Arg } from "../resp/encoder.ts";
import type { Logger } from "../validate.ts";
import {
  Channels,
  mapError,
  nodeArgs,
  sendWith,
  type SubscriberConnection,
} from "./common.ts";
import type { ConnectionStatus } from "../client/connection.ts";
import type { CommandSurface } from "./surface.ts";

/** The part of an ioredis client used here. */
export interface IoredisLike {
  call(command: string, args: unknown[]): Promise<unknown>;
  callBuffer(command: string, args: unknown[]): Promise<unknown>;
  readonly status: string;
  duplicate(override?: Record<string, unknown>): IoredisLike;
  subscribe(channel: string): Promise<unknown>;
  unsubscribe(channel: string): Promise<unknown>;
  disconnect(): void;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
}

/** Whether `x` has ioredis's shape. */
export function isIoredis(x: Record<string, unknown>): boolean {
  return typeof x.call === "function" &&
    typeof x.callBuffer === "function" &&
    typeof x.duplicate === "function" && typeof x.status === "string" &&
    typeof x.on === "function";
}

const isReply = (err: Error) => err.name === "ReplyError";
const map = (err: unknown) => mapError(err, "ioredis", isReply);

/** An ioredis client, adapted. */
export class IoredisSurface implements CommandSurface {
  readonly #client: IoredisLike;
  readonly #channels: Channels;
  /** Where warnings go. */
  readonly logger: Logger = console;

  /** @param client The app's ioredis client. */
  constructor(client: IoredisLike) {
    this.#client = client;
    this.#channels = new Channels(() => this.#openSubscriber());
    client.on("end", () => this.#channels.close());
  }

  /** ioredis's status in respite's words. */
  get status(): ConnectionStatus {
    const s = this.#client.status;
    if (s === "end") return "closed";
    if (s === "reconnecting" || s === "close") return "reconnecting";
    return "ready"; // ready, and wait/connecting/connect: commands are queued
  }

  /** Sends one command (`callBuffer` when `raw`). */
  command<T extends Reply = Reply>(
    args: readonly Arg[],
    options?: CommandOptions,
  ): Promise<T> {
    return sendWith<T>(
      () => {
        const rest = nodeArgs(args.slice(1));
        const name = String(args[0]);
        return options?.raw
          ? this.#client.callBuffer(name, rest)
          : this.#client.call(name, rest);
      },
      options,
      map,
    );
  }

  /** Subscribes on the duplicate connection. */
  subscribe(
    channel: string,
    listener: (message: string, channel: string) => void,
  ): Promise<() => Promise<void>> {
    return this.#channels.subscribe(channel, listener);
  }

  #openSubscriber(): Promise<SubscriberConnection> {
    // Subscribed again after its own reconnects, whatever the app's client
    // says (`autoResubscribe: false` would lose every wake-up after one).
    const sub = this.#client.duplicate({ autoResubscribe: true });
    sub.on("message", (channel, message) => {
      this.#channels.dispatch(String(channel), String(message));
    });
    sub.on("error", () => {}); // ioredis retries; an unheard error would throw
    const conn: SubscriberConnection = {
      subscribe: async (channel) => {
        await sub.subscribe(channel).catch((err) => {
          throw map(err);
        });
      },
      unsubscribe: async (channel) => {
        await sub.unsubscribe(channel).catch(() => {});
      },
      close: () => sub.disconnect(),
    };
    // ioredis emits "ready" on each connection, just before it sends its
    // own SUBSCRIBE of the channels again; after the first, the adapter's
    // SUBSCRIBE (in each channel's order) tells when Redis has the channel
    // again, and its waiters then look again.
    let readies = 0;
    sub.on("ready", () => {
      if (readies++ === 0) return;
      this.#channels.resubscribe(conn, (msg) => this.logger.warn(msg), {
        unsubscribe: false,
      });
    });
    return Promise.resolve(conn);
  }
}
