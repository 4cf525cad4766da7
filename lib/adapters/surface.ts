/**
 * The one command surface that locks, caches, scripts, wake-ups, the
 * eviction check and the hit-path watchdog depend on, instead of the
 * concrete `RedisClient`. respite's own client satisfies it as it is (no
 * wrapper: its calls stay as fast as before); the adapters in this folder
 * make an app's ioredis, node-redis, Bun `RedisClient` or `@db/redis` client
 * satisfy it. `mod.ts` here turns whatever was passed as `redis` into one.
 *
 * @module
 */

import type { CommandOptions } from "../client/command_options.ts";
import type { ConnectionStatus } from "../client/connection.ts";
import type { Reply } from "../resp/decoder.ts";
import type { Arg } from "../resp/encoder.ts";
import type { Logger } from "../validate.ts";

/**
 * What locks and caches need of a Redis client: send a command (with a
 * timeout, a signal, or bytes back), tell whether it is connected, and
 * subscribe to a channel on a connection of its own. respite's
 * {@linkcode RedisClient} is one; the clients of other libraries are adapted
 * to it when passed as `redis`.
 *
 * Errors follow respite's classes, so a lock can tell whether a failed
 * command may have run: an error reply rejects with a `ReplyError` (its
 * `code`, e.g. `NOSCRIPT`), no answer with a `ConnectionError` or a
 * `TimeoutError`.
 *
 * @example
 * ```ts
 * import { type CommandSurface, connect } from "@respite/respite";
 * import assert from "node:assert/strict";
 * await using redis = await connect();
 * const surface: CommandSurface = redis; // respite's client is one as it is
 * assert.equal(await surface.command(["PING"]), "PONG");
 * ```
 */
export interface CommandSurface {
  /**
   * Commands are sent when `"ready"`; a command that got no answer is retried
   * only while the client is not `"closing"` or `"closed"`.
   */
  readonly status: ConnectionStatus;
  /** Where warnings (scripts not cached, eviction) go. */
  readonly logger: Logger;
  /**
   * Sends one command.
   *
   * @param args The command name followed by its arguments.
   * @param options `timeout` (ms), `signal`, `raw` (bulk strings as bytes).
   * @returns The reply.
   */
  command<T extends Reply = Reply>(
    args: readonly Arg[],
    options?: CommandOptions,
  ): Promise<T>;
  /**
   * Subscribes `listener` to `channel`; resolves once Redis confirmed it.
   * Once the channel is subscribed again after a reconnect (a message
   * published meanwhile may be lost), either `onResubscribed` is called
   * (respite's client) or the listener gets a message that was never
   * published (the adapters' `RESUBSCRIBED`): a wake-up counts both.
   *
   * @param channel The channel.
   * @param listener Called with each message.
   * @param options `onResubscribed`: see above.
   * @returns A function that removes the listener.
   */
  subscribe(
    channel: string,
    listener: (message: string, channel: string) => void,
    options?: { onResubscribed?: () => void },
  ): Promise<() => Promise<void>>;
  /**
   * Which Redis server the client talks to, when an adapter can tell more
   * than "this object": surfaces with the same `server` are taken to reach
   * the same Redis, and `cached` lets their concurrent calls for one key
   * share one in-process lookup. Left out: each surface is a server of its
   * own, except respite's clients, told apart by their `info`.
   */
  readonly server?: string;
  /**
   * A Redis Cluster client's masters, one surface each, so that SCANs
   * (`Lock.resetAll`) and the eviction check visit every master. Left out
   * for a single server.
   */
  masters?(): Promise<CommandSurface[]>;
  /**
   * `true` on a client whose wake-ups go by sharded pub/sub (a Redis 7+
   * cluster, `connectCluster`): scripts then wake waiters with `SPUBLISH`,
   * which only the shard owning the channel's slot carries, instead of
   * `PUBLISH`, which every node of a cluster forwards to every other.
   * `subscribe` must then subscribe with SSUBSCRIBE.
   */
  readonly shardedPubSub?: boolean;
  /**
   * Set only by an adapter whose client cannot be woken by pub/sub: the
   * longest a waiter sleeps before it looks at Redis again (ms).
   */
  readonly recheckMs?: number;
}
