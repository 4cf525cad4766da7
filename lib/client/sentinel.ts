/**
 * `connectSentinel()`: respite's ordinary auto-pipelined client whose target
 * is found through Redis Sentinel. Before every (re)connect the client asks
 * the sentinels in turn (`SENTINEL GET-MASTER-ADDR-BY-NAME`), checks with
 * `ROLE` that the server really is the master, follows `+switch-master`
 * through a subscription on a sentinel, and treats `READONLY` as a cue to find
 * the master again (see `RedisClient`'s `#run`).
 */

import { ConnectionError } from "../errors.ts";
import { closeWith, openClient, type RedisClient, reroute } from "./client.ts";
import { type ConnectOptions, resolveOptions, type Target } from "./options.ts";

/** A sentinel's address: `"host:port"`, a `redis://host:port` URL, or an object. */
export type SentinelAddress = string | { hostname: string; port?: number };

/**
 * Options of {@linkcode connectSentinel}: `name`, the master's name as the
 * sentinels know it (`sentinel monitor <name> …`), the sentinels' own
 * credentials, and every option of `connect()` for the master connection
 * except where it is (`url`, `hostname`, `port`) and the connection name.
 */
export interface SentinelOptions
  extends Omit<ConnectOptions, "url" | "hostname" | "port" | "name"> {
  /** The master's name in the sentinels' configuration. */
  name: string;
  /** The sentinels' password (`requirepass` in sentinel.conf), if any. */
  sentinelPassword?: string;
  /** The sentinels' ACL user, if any. */
  sentinelUsername?: string;
}

/**
 * Connects to the master that Redis Sentinel names. The result is an ordinary
 * {@linkcode RedisClient}, accepted everywhere a client is (`Lock`,
 * `withLock`, `cached`). At every connect and reconnect it asks the sentinels
 * in turn for the master of `name` (the first that answers wins) and checks
 * with `ROLE` that it is a master; it drops its connections and reconnects
 * when a sentinel announces `+switch-master`, or when a command gets a
 * `READONLY` reply (a demoted master; that command did not run and is sent
 * once more, to the new master). Subscriptions follow the master too and call
 * their `onResubscribed`. The master user needs `ROLE`; the sentinels need
 * `SENTINEL`, `SUBSCRIBE` (standard on sentinels).
 *
 * @param sentinels One or more sentinel addresses.
 * @param options `name`, the sentinels' credentials, the master's options.
 * @returns A client connected to the current master.
 * @throws {TypeError} For no sentinels, a bad address or a missing `name`.
 * @throws {ConnectionError} When no sentinel answered (the message names
 *   each sentinel and why; never a password).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectSentinel, ConnectionError } from "@respite/respite";
 * // Needs sentinels, e.g. on 26379: connectSentinel(["127.0.0.1:26379"], { name: "mymaster" }).
 * // Here none is listening, so it rejects with a ConnectionError.
 * await assert.rejects(
 *   connectSentinel(["127.0.0.1:1"], { name: "mymaster", connectTimeout: 500 }),
 *   ConnectionError,
 * );
 * ```
 */
export async function connectSentinel(
  sentinels: readonly SentinelAddress[],
  options: SentinelOptions,
): Promise<RedisClient> {
  if (!Array.isArray(sentinels) || sentinels.length === 0) {
    throw new TypeError(
      'connectSentinel: sentinels must be a non-empty array, e.g. ["127.0.0.1:26379"]',
    );
  }
  const addrs = sentinels.map(parseAddress);
  if (options === null || typeof options !== "object") {
    throw new TypeError("connectSentinel: options with a `name` are required");
  }
  const { name, sentinelPassword, sentinelUsername, ...rest } = options;
  if (typeof name !== "string" || name === "") {
    throw new TypeError(
      "connectSentinel: options.name must be the master's name, a non-empty string",
    );
  }
  for (
    const [k, v] of [["sentinelPassword", sentinelPassword], [
      "sentinelUsername",
      sentinelUsername,
    ]] as const
  ) {
    if (v !== undefined && typeof v !== "string") {
      throw new TypeError(`connectSentinel: ${k} must be a string`);
    }
  }
  if ("url" in rest || "hostname" in rest || "port" in rest) {
    throw new TypeError(
      "connectSentinel: the sentinels say where the master is: no url, hostname or port",
    );
  }
  const master = resolveOptions(rest as ConnectOptions);
  const sentinelOptions = (a: { hostname: string; port: number }) =>
    resolveOptions({
      hostname: a.hostname,
      port: a.port,
      password: sentinelPassword,
      username: sentinelUsername,
      protocol: 2,
      tls: rest.tls,
      connector: rest.connector,
      connectTimeout: master.connectTimeout,
      commandTimeout: master.connectTimeout,
      logger: null,
    });

  /**
   * Asks each sentinel in turn; the first answer wins. `signal` (the client
   * closed meanwhile) stops the search at once, and the sentinel connection
   * it had open is closed before this settles.
   */
  const ask = async (
    signal?: AbortSignal,
  ): Promise<{ hostname: string; port: number }> => {
    const why: string[] = [];
    for (const a of addrs) {
      signal?.throwIfAborted();
      let c: RedisClient | undefined;
      try {
        c = await openClient({
          ...sentinelOptions(a),
          reconnect: false,
          attemptSignal: signal,
        });
        const r = await c.command(
          ["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name],
          { signal },
        );
        if (Array.isArray(r) && r.length === 2) {
          return { hostname: String(r[0]), port: Number(r[1]) };
        }
        why.push(`${a.hostname}:${a.port}: no master named "${name}"`);
      } catch (err) {
        signal?.throwIfAborted();
        why.push(`${a.hostname}:${a.port}: ${(err as Error).message}`);
      } finally {
        await c?.close({ timeout: 0 }).catch(() => {});
      }
    }
    throw new ConnectionError(
      `No sentinel gave the master "${name}" (${why.join("; ")})`,
    );
  };
  let current = "";
  const target: Target = {
    master: true,
    resolve: async (signal) => {
      const t = await ask(signal);
      current = `${t.hostname}:${t.port}`;
      return t;
    },
  };
  const client = await openClient({ ...master, target });

  // The watcher: one connection to a sentinel (the next one at each
  // reconnect), subscribed to +switch-master.
  let turn = 0;
  const watcherTarget: Target = {
    master: false,
    resolve: () => Promise.resolve(addrs[turn++ % addrs.length]),
  };
  const first = addrs[0];
  const watcher = await openClient({
    ...sentinelOptions(first),
    target: watcherTarget,
    reconnect: master.reconnect === false
      ? { minDelay: 100, maxDelay: 2_000, maxRetries: Infinity }
      : master.reconnect,
  }).catch(() => null);
  // A search the watcher started (below) stops when the client closes.
  const closing = new AbortController();
  closeWith(client, () => {
    closing.abort(new ConnectionError("The Sentinel client was closed"));
    return Promise.resolve();
  });
  if (watcher !== null) {
    closeWith(client, () => watcher.close({ timeout: 0 }));
    const switched = (message: string) => {
      const [who, , , host, port] = message.split(" ");
      if (who !== name) return;
      if (`${host}:${port}` === current) return;
      reroute(client, `+switch-master: ${name} moved to ${host}:${port}`);
    };
    await watcher.subscribe("+switch-master", switched, {
      // The watcher was away: a switch may have been missed. Ask again.
      onResubscribed: () => {
        ask(closing.signal).then((t) => {
          if (`${t.hostname}:${t.port}` !== current) {
            reroute(client, `${name} moved to ${t.hostname}:${t.port}`);
          }
        }, () => {});
      },
    }).catch(() => {});
  }
  return client;
}

function parseAddress(a: unknown): { hostname: string; port: number } {
  let hostname: unknown;
  let port: unknown = 26379;
  if (typeof a === "string") {
    const u = (() => {
      try {
        return new URL(a.includes("://") ? a : `redis://${a}`);
      } catch {
        return null;
      }
    })();
    if (u === null || u.hostname === "") {
      // An "@" may follow a password: then the address is not shown.
      throw new TypeError(
        `connectSentinel: bad sentinel address ${
          a.includes("@")
            ? '(not shown: it has an "@", maybe after a password)'
            : JSON.stringify(a)
        } (expected "host:port")`,
      );
    }
    if (u.username !== "" || u.password !== "") {
      // Ignoring them in silence would connect without them.
      throw new TypeError(
        "connectSentinel: a sentinel address takes no user name or password (not shown); give the sentinels' credentials as sentinelUsername and sentinelPassword",
      );
    }
    hostname = u.hostname.replace(/^\[|\]$/g, "");
    if (u.port !== "") port = Number(u.port);
  } else if (a !== null && typeof a === "object") {
    hostname = (a as { hostname?: unknown }).hostname;
    port = (a as { port?: unknown }).port ?? 26379;
  }
  if (typeof hostname !== "string" || hostname === "") {
    throw new TypeError(
      'connectSentinel: each sentinel is "host:port" or { hostname, port }',
    );
  }
  if (
    typeof port !== "number" || !Number.isInteger(port) || port < 1 ||
    port > 65535
  ) {
    throw new TypeError(
      "connectSentinel: a sentinel's port must be an integer from 1 to 65535",
    );
  }
  return { hostname, port };
}
