/**
 * The public Redis client: `connect()`, `send()`, `command()`, pub/sub on one
 * shared subscriber connection, `close()` and `await using`.
 *
 * @module
 */

import type { CommandOptions } from "./command_options.ts";
import {
  Connection,
  type ConnectionStatus,
  requestRule,
} from "./connection.ts";
import {
  type ConnectOptions,
  type ResolvedOptions,
  resolveOptions,
} from "./options.ts";
import {
  checkBoolean,
  checkDuration,
  checkFunction,
  checkOptions,
  checkString,
  type Logger,
} from "../validate.ts";
import type { Reply } from "../resp/decoder.ts";
import type { Arg } from "../resp/encoder.ts";
import { ReplyError } from "../errors.ts";
import {
  type MessageListener,
  type SubscribeOptions,
  Subscriber,
} from "./subscriber.ts";
import { BLOCKING } from "./blocking.ts";
import { readRedisUrl, withUnreadableEnv } from "./env.ts";

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

/** Set by RedisClient's static block, which may call its private constructor. */
let open: (options: ResolvedOptions) => Promise<RedisClient>;
/** Set by RedisClient's static block: whether a client's socket belongs to another request. */
let foreign: (client: RedisClient) => boolean;
/**
 * Set by RedisClient's static block: drops a client's connections (command
 * and subscriber) so they reconnect to where their target now says. For
 * connectSentinel; not part of the public API.
 */
export let reroute: (client: RedisClient, reason: string) => void;
/** Set by RedisClient's static block: also close `other` when `client` closes. */
export let closeWith: (client: RedisClient, other: () => Promise<void>) => void;
/** Internal (lib/cache/tracking.ts): a client's resolved options. */
export let optionsOf: (client: RedisClient) => ResolvedOptions;

/**
 * A Redis client over one auto-pipelined connection. Every command issued in
 * the same tick leaves in one write; thousands of concurrent callers can share
 * it. Create one with {@linkcode connect}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect } from "@respite/respite";
 * await using redis = await connect(); // REDIS_URL, else redis://127.0.0.1:6379
 * await redis.send("SET", "respite:doc:greeting", "hello");
 * assert.equal(await redis.send("GET", "respite:doc:greeting"), "hello");
 * await redis.send("DEL", "respite:doc:greeting");
 * ```
 */
export class RedisClient {
  #conn: Connection;
  #subscriber: Subscriber;
  #closing: Promise<void> | null = null;
  /** Closed with this client (connectSentinel's sentinel watcher). */
  #closeAlso: (() => Promise<void>)[] = [];

  /** @ignore Use {@linkcode connect}. */
  private constructor(conn: Connection) {
    this.#conn = conn;
    this.#subscriber = new Subscriber(conn.options);
  }

  static {
    foreign = (client) => client.#conn.foreignRequest;
    closeWith = (client, other) => client.#closeAlso.push(other);
    optionsOf = (client) => client.#conn.options;
    reroute = (client, reason) => {
      client.#conn.reroute(null, reason);
      client.#subscriber.reroute(null, reason);
    };
    // Here, not in a static method, so that it stays out of the public
    // API: connect() and duplicate() reach it through openClient().
    open = async (options) => {
      const made: { client?: RedisClient } = {};
      // When the command connection is in doubt (a health check starts) or
      // was lost and is back, the subscriber connection may have lost its
      // path too (a black hole takes both), with nothing in flight that
      // would time out and tell: check it at the same time.
      const checkSubscriber = () => {
        const client = made.client;
        if (client !== undefined) client.#subscriber.checkHealth();
      };
      const conn = await Connection.open(options, {
        onHealthCheck: checkSubscriber,
        onReady: (reconnected) => {
          if (reconnected) checkSubscriber();
        },
      });
      made.client = new RedisClient(conn);
      return made.client;
    };
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
    // A target found through Sentinel: where the connection is now.
    const where = o.target === undefined ? null : this.#conn.where;
    const colon = where === null ? -1 : where.lastIndexOf(":");
    return {
      hostname: where === null ? o.hostname : where.slice(0, colon),
      port: where === null ? o.port : Number(where.slice(colon + 1)),
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
   * import assert from "node:assert/strict";
   * import { connect } from "@respite/respite";
   * await using redis = await connect();
   * const n = await redis.send<number>("INCR", "respite:doc:visits");
   * assert.equal(typeof n, "number");
   * await redis.send("DEL", "respite:doc:visits");
   * ```
   */
  send<T extends Reply = Reply>(command: string, ...args: Arg[]): Promise<T> {
    try {
      const cmd = [command, ...args];
      checkShared(
        cmd,
        this.#conn.options.blocking,
        this.#conn.options.protocol,
      );
      return this.#run(cmd) as Promise<T>;
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
   * import assert from "node:assert/strict";
   * import { connect } from "@respite/respite";
   * await using redis = await connect();
   * await redis.send("SET", "respite:doc:bytes", new Uint8Array([0, 13, 10, 255]));
   * const bytes = await redis.command<Uint8Array>(
   *   ["GET", "respite:doc:bytes"],
   *   { raw: true, timeout: 500 },
   * );
   * assert.equal(bytes.length, 4);
   * assert.equal(bytes[3], 255);
   * await redis.send("DEL", "respite:doc:bytes");
   * ```
   */
  command<T extends Reply = Reply>(
    args: readonly Arg[],
    options?: CommandOptions,
  ): Promise<T> {
    try {
      checkShared(
        args,
        this.#conn.options.blocking,
        this.#conn.options.protocol,
      );
      return this.#run(args, options) as Promise<T>;
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Sends a command. With a target found through Sentinel, a `READONLY`
   * error reply means the server was demoted to a replica: the connection is
   * dropped (the reconnect asks the sentinels for the master again) and the
   * command is sent once more, on the new master. That is safe for every
   * command: `READONLY` means Redis refused to run it (a plain command), or
   * that a script failed at its first write, before which a replica cannot
   * have written anything. A second `READONLY` is returned as it is.
   */
  #run(args: readonly unknown[], options?: CommandOptions): Promise<Reply> {
    const where = this.#conn.where;
    const sent = this.#conn.send(args, options);
    if (this.#conn.options.target === undefined) return sent;
    return sent.catch((err) => {
      if (!(err instanceof ReplyError) || err.code !== "READONLY") throw err;
      const reason = `READONLY from ${where}: it is no master any more`;
      this.#conn.reroute(where, reason);
      this.#subscriber.reroute(where, reason);
      return this.#conn.send(args, options);
    });
  }

  /**
   * Runs commands as one transaction (`MULTI`, the commands, `EXEC`) on the
   * shared connection: their bytes leave together and nothing else runs
   * between them on the server. Resolves with EXEC's array of replies; a
   * command that fails while running is a `ReplyError` in that array. When
   * Redis refuses to queue a command (a wrong argument count, an unknown
   * command), nothing runs and the call rejects with an `EXECABORT`
   * `ReplyError` naming the refusal. A timeout or abort before the
   * transaction is written drops all of it. (`WATCH` needs a connection of
   * its own: use {@linkcode RedisClient.duplicate}.)
   *
   * @param commands Each command as an array: its name, then its arguments.
   * @param options `timeout` (ms), `signal`, `raw`, for the whole transaction.
   * @returns EXEC's replies, one per command.
   *
   * @example
   * ```ts
   * import { connect } from "@respite/respite";
   * import assert from "node:assert/strict";
   * await using redis = await connect();
   * const replies = await redis.multi([
   *   ["SET", "respite:doc:tx", "1"],
   *   ["INCR", "respite:doc:tx"],
   * ]);
   * assert.deepEqual(replies, ["OK", 2]);
   * await redis.send("DEL", "respite:doc:tx");
   * ```
   */
  multi<T extends Reply[] = Reply[]>(
    commands: readonly (readonly Arg[])[],
    options?: CommandOptions,
  ): Promise<T> {
    try {
      if (!Array.isArray(commands) || commands.length === 0) {
        throw new TypeError(
          "multi() takes a non-empty array of commands, e.g. [['SET', 'k', 'v'], ['INCR', 'n']]",
        );
      }
      for (const c of commands) {
        if (!Array.isArray(c)) {
          throw new TypeError("multi(): each command must be an array");
        }
        checkShared(c, false, this.#conn.options.protocol);
      }
      return this.#conn.sendTransaction(commands, options) as Promise<T>;
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Subscribes `listener` to a channel. All subscriptions of a client share one
   * extra connection, opened on first use and re-subscribed after a reconnect.
   * Resolves once Redis confirmed the subscription, so nothing published after
   * that is missed, except while the subscriber connection is down: a
   * message published then is lost, and `options.onResubscribed` is called
   * once the channel is subscribed again (the listener gets no message for
   * it).
   *
   * @param channel The channel name.
   * @param listener Called with each message.
   * @param options `onResubscribed`: called each time the channel was
   *   subscribed again after a reconnect; `sharded` (SSUBSCRIBE) and
   *   `onServerUnsubscribed`: see {@linkcode SubscribeOptions}.
   * @returns A function that removes this listener (and unsubscribes when it
   *   was the channel's last).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { connect } from "@respite/respite";
   * await using redis = await connect();
   * const got = Promise.withResolvers<string>();
   * const unsubscribe = await redis.subscribe("respite:doc:news", (msg) => got.resolve(msg));
   * await redis.send("PUBLISH", "respite:doc:news", "hello");
   * assert.equal(await got.promise, "hello");
   * await unsubscribe();
   * ```
   */
  async subscribe(
    channel: string,
    listener: MessageListener,
    options?: SubscribeOptions,
  ): Promise<() => Promise<void>> {
    checkString("channel", channel);
    checkFunction("listener", listener);
    if (options?.onResubscribed !== undefined) {
      checkFunction("options.onResubscribed", options.onResubscribed);
    }
    if (options?.sharded !== undefined) {
      checkBoolean("options.sharded", options.sharded);
    }
    if (options?.onServerUnsubscribed !== undefined) {
      checkFunction(
        "options.onServerUnsubscribed",
        options.onServerUnsubscribed,
      );
    }
    if (this.#closing) throw new TypeError("subscribe() on a closed client");
    checkRequest(this); // else it would open a subscriber socket for another request
    return await this.#subscriber.subscribe(channel, listener, options);
  }

  /** Number of channels this client is subscribed to. */
  get subscriptions(): number {
    return this.#subscriber.channels;
  }

  /**
   * Opens a second, independent client with the same options. With
   * `blocking: true` it takes blocking commands (BLPOP, XREAD BLOCK, WAIT,
   * ...), which are refused on a shared client because they would stall
   * every other caller's replies behind them.
   *
   * @param options `blocking` (default: as this client).
   * @returns A new client; close it when done.
   *
   * @example
   * ```ts
   * import { connect } from "@respite/respite";
   * import assert from "node:assert/strict";
   * await using redis = await connect();
   * await using blocking = await redis.duplicate({ blocking: true });
   * await redis.send("RPUSH", "respite:doc:jobs", "job-1");
   * assert.deepEqual(
   *   await blocking.send("BLPOP", "respite:doc:jobs", "1"),
   *   ["respite:doc:jobs", "job-1"],
   * );
   * ```
   */
  duplicate(options: { blocking?: boolean } = {}): Promise<RedisClient> {
    try {
      checkOptions("duplicate() option", options, ["blocking"]);
      if (options.blocking !== undefined) {
        checkBoolean("blocking", options.blocking);
      }
    } catch (err) {
      return Promise.reject(err);
    }
    return openClient({
      ...this.#conn.options,
      blocking: options.blocking ?? this.#conn.options.blocking,
    });
  }

  /**
   * Closes the client after every command already issued has its reply,
   * waiting for them at most `timeout` ms (default: the client's
   * `closeTimeout`, 5 s unless set); then the socket is closed anyway and
   * the commands still waiting reject with a `ConnectionError`.
   * `force: true` closes at once. Commands issued afterwards reject with a
   * `ConnectionError`. Never hangs, whatever the server does.
   *
   * @param options `timeout` (ms) or `force`.
   * @returns Resolves once the sockets are closed.
   */
  close(options: CloseOptions = {}): Promise<void> {
    let timeout: number;
    try {
      timeout = closeTimeout(options, this.#conn.options.closeTimeout);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.#closing !== null) {
      // A second call may shorten the first one's wait.
      void this.#conn.close(timeout);
      this.#subscriber.closeAgain(timeout);
      return this.#closing;
    }
    this.#closing = (async () => {
      // Close the command connection now, so that a command issued after
      // close() rejects; it still waits for the replies already due.
      // One deadline for everything: the command connection, the channel
      // operations still out, and the subscriber connection.
      const deadline = performance.now() + timeout;
      const closed = this.#conn.close(timeout);
      await Promise.all([
        closed,
        this.#subscriber.close(timeout, deadline),
        ...this.#closeAlso.map((f) => f().catch(() => {})),
      ]);
    })();
    return this.#closing;
  }

  /** Same as {@linkcode RedisClient.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Options for {@linkcode RedisClient.close}. */
export interface CloseOptions {
  /** Longest wait for replies already due, in ms (default: the client's `closeTimeout`). */
  timeout?: number;
  /** Close at once, without waiting for replies (same as `timeout: 0`). */
  force?: boolean;
}

function closeTimeout(options: CloseOptions, fallback: number): number {
  checkOptions("close() option", options, ["timeout", "force"]);
  if (options.force !== undefined) checkBoolean("force", options.force);
  const t = options.timeout === undefined
    ? undefined
    : checkDuration("timeout", options.timeout, true);
  if (options.force) return 0;
  return t ?? fallback;
}

/**
 * Commands that change how the shared connection's replies match their
 * callers, or change state every caller shares, and what to use instead.
 */
const REFUSED: Record<string, string> = {
  MULTI: "use redis.multi([...commands])",
  EXEC: "use redis.multi([...commands])",
  DISCARD: "use redis.multi([...commands])",
  WATCH: "WATCH needs a connection of its own: redis.duplicate()",
  UNWATCH: "WATCH needs a connection of its own: redis.duplicate()",
  SELECT: "set the db option (or the /db part of the URL) when connecting",
  SUBSCRIBE: "use redis.subscribe(channel, listener)",
  PSUBSCRIBE: "use redis.subscribe() on a connection of its own",
  SSUBSCRIBE: "use redis.subscribe() on a connection of its own",
  UNSUBSCRIBE: "call the function redis.subscribe() returned",
  PUNSUBSCRIBE: "call the function redis.subscribe() returned",
  SUNSUBSCRIBE: "call the function redis.subscribe() returned",
  RESET: "close the client and connect again",
  QUIT: "use redis.close()",
  HELLO: "set the protocol, username and password options when connecting",
  AUTH: "set the username/password options when connecting",
  MONITOR: "MONITOR needs a connection of its own: redis.duplicate()",
  SYNC: "not for a client connection",
  PSYNC: "not for a client connection",
};

const latin1 = new TextDecoder("latin1");

/** An argument as an upper-case word (bytes too: Redis reads them alike). */
function word(a: unknown): string {
  if (typeof a === "string") return a.length <= 16 ? a.toUpperCase() : "";
  if (a instanceof Uint8Array && a.length <= 16) {
    return latin1.decode(a).toUpperCase();
  }
  return "";
}

/** Per command name as sent: undefined when it is fine, else the refusal. */
const refusals = new Map<string, string | null>();

/**
 * Throws a `TypeError` for a command that must not run on a shared,
 * auto-pipelined connection, before anything is sent: it would make later
 * replies go to the wrong callers (`CLIENT REPLY OFF`, `SUBSCRIBE`, `MULTI`
 * without its `EXEC` in the same write), stall everyone behind it
 * (blocking commands, unless `blocking` is set), or change what every
 * caller sees (`SELECT`).
 */
function checkShared(
  args: readonly unknown[],
  blocking: boolean,
  protocol: 2 | 3,
): void {
  const name = args[0];
  if (typeof name !== "string") return; // the encoder reports it
  let why = refusals.get(name);
  if (why === undefined) {
    const upper = name.toUpperCase();
    why = REFUSED[upper] ?? null;
    if (why === null && BLOCKING.has(upper)) {
      why = "blocking";
    } else if (
      why === null &&
      (upper === "CLIENT" || upper === "XREAD" || upper === "XREADGROUP")
    ) {
      why = "args";
    }
    if (refusals.size < 1_000) refusals.set(name, why);
  }
  if (why === null) return;
  if (
    why === REFUSED.HELLO &&
    (args.length === 1 ||
      (args.length === 2 && String(args[1]) === String(protocol)))
  ) return; // HELLO, or HELLO with the version in use: only reads server info
  if (why === "args") {
    const upper = name.toUpperCase();
    if (upper === "CLIENT") {
      if (word(args[1]) !== "REPLY") return;
      why = "CLIENT REPLY would make replies go to the wrong callers";
    } else {
      if (blocking) return;
      let blocks = false;
      for (let i = 1; i < args.length; i++) {
        const a = word(args[i]);
        if (a === "STREAMS") break;
        if (a === "BLOCK") blocks = true;
      }
      if (!blocks) return;
      why = "blocking";
    }
  }
  if (why === "blocking") {
    if (blocking) return;
    throw new TypeError(
      `${name} blocks its connection, so it is refused on a shared client (it would stall every other caller's replies); ` +
        "run it on a client of its own: await redis.duplicate({ blocking: true }), or connect({ blocking: true })",
    );
  }
  // Only the name: the arguments may hold a password (AUTH, HELLO).
  throw new TypeError(
    `${name} is refused on a shared client: it changes connection state that every caller shares; ${why}`,
  );
}

/**
 * Opens a client. Resolves once connected and authenticated (AUTH, SELECT and
 * HELLO done); rejects with a `ConnectionError`, `TimeoutError` or
 * `ReplyError` (wrong password) otherwise. A bad URL or option rejects
 * with a `TypeError` or `RangeError` before anything is sent; so does an
 * options object as a second argument (a URL and options go together as
 * `{ url, ...options }`).
 *
 * @param options A `redis://`/`rediss://` URL, or an options object. Without
 *   it, the `REDIS_URL` environment variable is used if set, else
 *   `redis://127.0.0.1:6379`. When `REDIS_URL` cannot be read (Deno without
 *   `--allow-env=REDIS_URL`), the default is tried: an error then says so
 *   and names the flag, and a success logs a warning.
 * @returns The connected client.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect } from "@respite/respite";
 * // A URL: redis://[[user]:password@]host[:port][/db], or rediss:// for TLS.
 * // Or an options object: { hostname, port, username, password, db, tls, protocol, ... }
 * await using redis = await connect(Deno.env.get("REDIS_URL") ?? "redis://127.0.0.1:6379");
 * assert.equal(await redis.send("PING"), "PONG");
 * ```
 */
export function connect(
  options?: string | ConnectOptions,
): Promise<RedisClient> {
  let resolved: ResolvedOptions;
  const second: unknown = arguments[1];
  if (typeof second === "object" && second !== null) {
    // connect(url, { protocol: 3 }) would otherwise drop the options (an
    // index from urls.map(connect) is no options object: left alone).
    return Promise.reject(
      new TypeError(
        "connect() takes one argument: a URL, or an options object (to give both: connect({ url, ...options }))",
      ),
    );
  }
  const env = options == null ? readRedisUrl() : undefined;
  try {
    resolved = resolveOptions(options ?? env?.url ?? {});
  } catch (err) {
    return Promise.reject(err);
  }
  const opening = openClient(resolved);
  return env?.unreadable === undefined
    ? opening
    : withUnreadableEnv(opening, resolved, env.unreadable);
}

/**
 * Opens a client over a new connection, for {@linkcode connect} and
 * {@linkcode RedisClient.duplicate}; not part of the public API.
 */
export function openClient(options: ResolvedOptions): Promise<RedisClient> {
  return open(options);
}

/**
 * Throws when `redis` may not be used by the code running now: on Cloudflare
 * Workers, a client whose socket was opened by another request (a later
 * request cannot use it, and reconnecting on its behalf would cut the
 * commands of the request that owns it). For `cached` and `withLock`, which
 * check each call's client with it before anything else, so that such a
 * call fails at once and never falls open. Not part of the public API.
 *
 * @param redis A client from `connect()`; other objects pass unchecked.
 * @throws {TypeError} Naming the rule and the fix.
 */
export function checkRequest(redis: unknown): void {
  if (redis instanceof RedisClient && foreign(redis)) {
    const { hostname, port } = redis.info;
    throw new TypeError(`redis: ${requestRule(`${hostname}:${port}`)}`);
  }
}
