/**
 * A Redis Cluster client: one respite `RedisClient` (auto-pipelined) per
 * master, each command routed by the slot of its keys, MOVED/ASK followed,
 * TRYAGAIN/CLUSTERDOWN retried with backoff, a bounded number of times.
 *
 * Pub/sub is sharded on Redis 7+ (CLUSTER SHARDS answered): `subscribe`
 * sends SSUBSCRIBE to the master owning the channel's slot, scripts wake
 * waiters with SPUBLISH (`shardedPubSub`), and when the slot moves (Redis
 * ends the subscription with `sunsubscribe`, or a resubscribe after a
 * reconnect meets MOVED) the channel is subscribed again on its new owner and
 * `onResubscribed` says that messages may have been missed meanwhile. On an
 * older cluster, classic SUBSCRIBE and PUBLISH (which every node forwards).
 *
 * @module
 */

import { connect, type RedisClient } from "../client/client.ts";
import type { CommandOptions } from "../client/command_options.ts";
import type { ConnectionStatus } from "../client/connection.ts";
import type { ConnectOptions } from "../client/options.ts";
import { ClusterError, CrossSlotError, ReplyError } from "../errors.ts";
import type { Reply } from "../resp/decoder.ts";
import type { Arg } from "../resp/encoder.ts";
import type { Logger } from "../validate.ts";
import { commandKeys } from "./command_keys.ts";
import { keySlot } from "./slot.ts";
import {
  mastersOf,
  type NodeAddress,
  parseShards,
  parseSlots,
  type SlotMap,
} from "./slot_map.ts";

/** A seed node: a URL (`redis://host:port`) or a host and port. */
export type ClusterSeed = string | { host: string; port: number };

/** Options of {@linkcode connectCluster}. */
export interface ClusterOptions
  extends Omit<ConnectOptions, "hostname" | "port"> {
  /** MOVED/ASK redirections per command before a `ClusterError` (16). */
  maxRedirections?: number;
}

/** What the cluster client met, counted since it was opened. */
export interface ClusterStats {
  /** MOVED replies followed. */
  moved: number;
  /** ASK replies followed (ASKING + the command on the target). */
  ask: number;
  /** TRYAGAIN replies retried (a multi-key command mid-migration). */
  tryagain: number;
  /** CLUSTERDOWN replies retried. */
  clusterdown: number;
  /** Slot map reads (the first one included). */
  refreshes: number;
  /** Sharded subscriptions moved to the new owner of their slot. */
  resubscribes: number;
}

function seedOptions(seed: ClusterSeed): Partial<ConnectOptions> {
  if (typeof seed === "string") {
    const u = new URL(seed);
    const o: Partial<ConnectOptions> = {
      hostname: u.hostname.replace(/^\[|\]$/g, ""),
      port: Number(u.port || 6379),
    };
    if (u.username) o.username = decodeURIComponent(u.username);
    if (u.password) o.password = decodeURIComponent(u.password);
    if (u.protocol === "rediss:") (o as { tls?: unknown }).tls = true;
    return o;
  }
  if (
    seed === null || typeof seed !== "object" ||
    typeof seed.host !== "string" ||
    !Number.isInteger(seed.port)
  ) {
    throw new TypeError("connectCluster: a seed is a URL or { host, port }");
  }
  return { hostname: seed.host, port: seed.port };
}

function splitAddress(a: NodeAddress): { hostname: string; port: number } {
  const i = a.lastIndexOf(":");
  return {
    hostname: a.slice(0, i).replace(/^\[|\]$/g, ""),
    port: Number(a.slice(i + 1)),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A client for a Redis Cluster; see {@linkcode connectCluster}.
 */
export class ClusterClient {
  /** Counters of what the client met. */
  readonly stats: ClusterStats = {
    moved: 0,
    ask: 0,
    tryagain: 0,
    clusterdown: 0,
    refreshes: 0,
    resubscribes: 0,
  };
  #sharded = false;
  #map: SlotMap = [];
  #nodes = new Map<NodeAddress, Promise<RedisClient>>();
  #base: ConnectOptions;
  #seedHost: string;
  #max: number;
  #budget: number;
  #refreshing: Promise<void> | null = null;
  #closed = false;
  #logger: Logger;
  /** Bumped whenever the slot map changes (a refresh that changed it, a MOVED). */
  #mapVersion = 0;
  /** ASK redirections followed: a reply came from a node the map does not name. */
  #asks = 0;
  /** Closed (and waited for) with this client: `cached`'s tracking connections. */
  #closeAlso: (() => Promise<void>)[] = [];

  /** Use {@linkcode connectCluster}. */
  constructor(
    base: ConnectOptions,
    seedHost: string,
    max: number,
    logger: Logger,
    budget: number,
  ) {
    this.#budget = budget;
    this.#base = base;
    this.#seedHost = seedHost;
    this.#max = max;
    this.#logger = logger;
  }

  /** `"ready"` while open, `"closed"` after `close()`. */
  get status(): ConnectionStatus {
    return this.#closed ? "closed" : "ready";
  }

  /**
   * Whether wake-ups go by sharded pub/sub (SPUBLISH/SSUBSCRIBE): on a
   * Redis 7+ cluster.
   */
  get shardedPubSub(): boolean {
    return this.#sharded;
  }

  /** Where warnings go (the seed client's logger). */
  get logger(): Logger {
    return this.#logger;
  }

  /**
   * @internal Counts the slot map's changes: a refresh that changed it, a
   * MOVED reply that named a new owner (lib/cache/cluster_tracking.ts).
   */
  get _mapVersion(): number {
    return this.#mapVersion;
  }

  /** @internal ASK redirections followed so far (lib/cache/cluster_tracking.ts). */
  get _asks(): number {
    return this.#asks;
  }

  /** @internal The masters the slot map names now. */
  _masterAddresses(): NodeAddress[] {
    return mastersOf(this.#map);
  }

  /** @internal The client of one node, connected on first use. */
  _nodeClient(address: NodeAddress): Promise<RedisClient> {
    return this.#node(address);
  }

  /** @internal Also close `other` (and wait for it) when this client closes. */
  _closeWith(other: () => Promise<void>): void {
    this.#closeAlso.push(other);
  }

  #route(slot: number, address: NodeAddress): void {
    if (this.#map[slot] === address) return;
    this.#map[slot] = address;
    this.#mapVersion++;
  }

  /** @internal Adds a connected node. */
  _adopt(address: NodeAddress, client: RedisClient): void {
    this.#nodes.set(address, Promise.resolve(client));
  }

  #node(address: NodeAddress): Promise<RedisClient> {
    let c = this.#nodes.get(address);
    if (c === undefined) {
      c = connect({ ...this.#base, ...splitAddress(address) });
      c.catch(() => this.#nodes.delete(address));
      this.#nodes.set(address, c);
    }
    return c;
  }

  /** @internal Reads the slot map from any known node. */
  async _refresh(): Promise<void> {
    this.#refreshing ??= (async () => {
      this.stats.refreshes++;
      let last: unknown;
      for (const address of [...this.#nodes.keys()]) {
        try {
          const client = await this.#node(address);
          let map: SlotMap;
          try {
            map = parseShards(
              await client.command(["CLUSTER", "SHARDS"]),
              splitAddress(address).hostname,
            );
            // CLUSTER SHARDS and sharded pub/sub both came with Redis 7.
            this.#sharded = true;
          } catch (err) {
            if (!(err instanceof ReplyError)) throw err;
            this.#sharded = false;
            map = parseSlots(
              await client.command(["CLUSTER", "SLOTS"]),
              splitAddress(address).hostname,
            );
          }
          const old = this.#map;
          this.#map = map;
          if (
            old.length !== map.length || map.some((a, i) => old[i] !== a)
          ) this.#mapVersion++;
          return;
        } catch (err) {
          last = err;
        }
      }
      throw new ClusterError("could not read the cluster's slot map", {
        cause: last,
      });
    })().finally(() => (this.#refreshing = null));
    return await this.#refreshing;
  }

  #slotOf(args: readonly Arg[]): number | undefined {
    const keys = commandKeys(args);
    if (keys.length === 0) return undefined;
    const slot = keySlot(keys[0]);
    for (let i = 1; i < keys.length; i++) {
      const s = keySlot(keys[i]);
      if (s !== slot) {
        const slots = [...new Set(keys.map(keySlot))];
        throw new CrossSlotError(String(args[0]), slots);
      }
    }
    return slot;
  }

  #anyMaster(): NodeAddress {
    return mastersOf(this.#map)[0] ?? [...this.#nodes.keys()][0] ??
      this.#seedHost;
  }

  /**
   * Sends one command to the master owning its keys' slot (any master for a
   * keyless command).
   *
   * @param args The command name followed by its arguments.
   * @param options As for `RedisClient.command`.
   * @returns The reply.
   * @throws {CrossSlotError} Keys in different slots, before sending.
   * @throws {ClusterError} Too many redirections or retries.
   */
  async command<T extends Reply = Reply>(
    args: readonly Arg[],
    options?: CommandOptions,
  ): Promise<T> {
    if (this.#closed) throw new ClusterError("the cluster client is closed");
    const slot = this.#slotOf(args);
    let address = slot === undefined
      ? this.#anyMaster()
      : this.#map[slot] ?? this.#anyMaster();
    let asking = false;
    let last: ReplyError | undefined;
    let redirections = 0;
    let retries = 0;
    const deadline = Date.now() + this.#budget;
    while (
      redirections <= this.#max && (retries === 0 || Date.now() < deadline)
    ) {
      const attempt = retries;
      const client = await this.#node(address);
      try {
        if (asking) {
          asking = false;
          const [, reply] = await Promise.all([
            client.command(["ASKING"]),
            client.command<T>(args, options),
          ]);
          return reply;
        }
        return await client.command<T>(args, options);
      } catch (err) {
        if (!(err instanceof ReplyError)) throw err;
        last = err;
        const parts = err.message.split(" ");
        switch (err.code) {
          case "MOVED":
            this.stats.moved++;
            redirections++;
            address = parts[2];
            if (slot !== undefined) this.#route(slot, address);
            this._refresh().catch(() => {});
            continue;
          case "ASK":
            this.stats.ask++;
            this.#asks++;
            redirections++;
            address = parts[2];
            asking = true;
            continue;
          case "TRYAGAIN":
            this.stats.tryagain++;
            retries++;
            await sleep(Math.min(10 * 2 ** attempt, 200));
            continue;
          case "LOADING":
          case "BUSY":
            retries++;
            await sleep(Math.min(10 * 2 ** attempt, 500));
            continue;
          case "CLUSTERDOWN":
            this.stats.clusterdown++;
            retries++;
            await sleep(Math.min(50 * 2 ** attempt, 1000));
            await this._refresh().catch(() => {});
            address = slot === undefined
              ? this.#anyMaster()
              : this.#map[slot] ?? this.#anyMaster();
            continue;
          default:
            throw err;
        }
      }
    }
    throw new ClusterError(
      `${
        String(args[0])
      }: gave up after ${redirections} redirections and ${retries} retries (last: ${last?.message})`,
      { cause: last },
    );
  }

  /**
   * Sends one command, given as its name and arguments.
   *
   * @param command The command name.
   * @param args Its arguments.
   * @returns The reply.
   */
  send<T extends Reply = Reply>(command: string, ...args: Arg[]): Promise<T> {
    return this.command<T>([command, ...args]);
  }

  /**
   * Subscribes `listener` to `channel` on the master owning the channel's
   * slot: SSUBSCRIBE on Redis 7+ (see {@linkcode ClusterClient.shardedPubSub}),
   * followed to the slot's new owner when it moves, with `onResubscribed`
   * called once it is subscribed there; classic SUBSCRIBE otherwise.
   *
   * @param channel The channel.
   * @param listener Called with each message.
   * @param options `onResubscribed`: called each time the channel was
   *   subscribed again (after a reconnect, or on the slot's new owner), as
   *   messages may have been missed meanwhile.
   * @returns A function that removes the listener.
   */
  async subscribe(
    channel: string,
    listener: (message: string, channel: string) => void,
    options?: { onResubscribed?: () => void },
  ): Promise<() => Promise<void>> {
    if (typeof channel !== "string" || channel.length === 0) {
      throw new TypeError("subscribe: channel must be a non-empty string");
    }
    if (typeof listener !== "function") {
      throw new TypeError("subscribe: listener must be a function");
    }
    const onResubscribed = options?.onResubscribed;
    if (onResubscribed !== undefined && typeof onResubscribed !== "function") {
      throw new TypeError(
        "subscribe: options.onResubscribed must be a function",
      );
    }
    const slot = keySlot(channel);
    if (!this.#sharded) {
      const client = await this.#node(this.#map[slot] ?? this.#anyMaster());
      return await client.subscribe(channel, listener, options);
    }
    let removed = false;
    /** Removes the listener from the node it is subscribed on now. */
    let current: (() => Promise<void>) | null = null;
    /** Moves so far: a subscription made for an older one is dropped. */
    let moves = 0;
    const attach = async (): Promise<void> => {
      const move = moves;
      let last: unknown;
      for (let tries = 0; tries <= this.#max; tries++) {
        const address = this.#map[slot] ?? this.#anyMaster();
        const client = await this.#node(address);
        try {
          const unsubscribe = await client.subscribe(channel, listener, {
            sharded: true,
            onResubscribed,
            onServerUnsubscribed: moved,
          });
          if (removed || move !== moves) await unsubscribe();
          else current = unsubscribe;
          return;
        } catch (err) {
          if (!(err instanceof ReplyError)) throw err;
          last = err;
          if (err.code === "MOVED") {
            this.stats.moved++;
            this.#route(slot, err.message.split(" ")[2]);
          } else if (
            err.code === "TRYAGAIN" || err.code === "CLUSTERDOWN" ||
            err.code === "LOADING"
          ) {
            await sleep(Math.min(10 * 2 ** tries, 500));
            await this._refresh().catch(() => {});
          } else throw err;
        }
      }
      throw new ClusterError(
        `SSUBSCRIBE ${channel}: gave up after ${this.#max} tries`,
        { cause: last },
      );
    };
    // Redis ended the subscription (the slot moved): drop the listener
    // there, subscribe on the new owner, then say messages may be lost.
    const moved = () => {
      if (removed || this.#closed) return;
      const old = current;
      current = null;
      old?.().catch(() => {});
      this.stats.resubscribes++;
      const move = ++moves;
      const again = async (attempt: number): Promise<void> => {
        if (removed || this.#closed || move !== moves) return;
        try {
          await this._refresh().catch(() => {});
          await attach();
          if (move !== moves) return; // a later move goes on from here
        } catch (err) {
          if (attempt === 0) {
            this.#logger.warn(
              `respite: could not subscribe ${channel} on its slot's new owner yet (${
                err instanceof Error ? err.message : err
              }); trying again`,
            );
          }
          await sleep(Math.min(100 * 2 ** attempt, 2_000));
          return await again(attempt + 1);
        }
        try {
          onResubscribed?.();
        } catch (err) {
          this.#logger.warn(
            `respite: an onResubscribed callback on ${channel} threw: ${err}`,
          );
        }
      };
      void again(0);
    };
    await attach();
    return async () => {
      if (removed) return;
      removed = true;
      const u = current;
      current = null;
      await u?.();
    };
  }

  /** One client per master, for SCANs that must visit every master. */
  async masters(): Promise<RedisClient[]> {
    return await Promise.all(mastersOf(this.#map).map((a) => this.#node(a)));
  }

  /** Closes every node's connection. */
  async close(): Promise<void> {
    this.#closed = true;
    const nodes = [...this.#nodes.values()];
    this.#nodes.clear();
    const also = this.#closeAlso.splice(0);
    await Promise.all([
      ...nodes.map((p) => p.then((c) => c.close(), () => {})),
      ...also.map((f) => f().catch(() => {})),
    ]);
  }

  /** Same as `close()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Connects to a Redis Cluster through any of `seeds` and reads its slot map.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import process from "node:process";
 * import { connectCluster, Lock } from "@respite/respite";
 * // Any node of the cluster is a seed (the doc tests start one).
 * const seed = process.env.REDIS_CLUSTER_URL ?? "redis://127.0.0.1:7000";
 * await using cluster = await connectCluster([seed]);
 * await cluster.send("SET", "{user1}.a", "1");
 * assert.equal(await cluster.send("GET", "{user1}.a"), "1");
 * const lock = new Lock(cluster, "nightly-report"); // one slot: {nightly-report}
 * assert.equal(await lock.acquire({ wait: 0 }), true);
 * await lock.release();
 * ```
 *
 * @param seeds URLs or `{ host, port }`; one reachable seed is enough.
 * @param options Passed to every node's `connect` (auth, TLS, logger...).
 * @returns The connected cluster client.
 * @throws {ClusterError} No seed answered (no password in the message).
 */
export async function connectCluster(
  seeds: ClusterSeed | readonly ClusterSeed[],
  options: ClusterOptions = {},
): Promise<ClusterClient> {
  const list = Array.isArray(seeds) ? seeds : [seeds as ClusterSeed];
  if (list.length === 0) {
    throw new TypeError("connectCluster: give at least one seed");
  }
  const { maxRedirections = 16, ...given } = options;
  // TRYAGAIN/CLUSTERDOWN/LOADING/BUSY are retried here (counted, and on a
  // fresh route), not by the node's client.
  const budget = given.retryNotRun === false ? 0 : given.retryNotRun ?? 10_000;
  const rest = { ...given, retryNotRun: false } as const;
  if (!Number.isInteger(maxRedirections) || maxRedirections < 1) {
    throw new RangeError(
      "connectCluster: maxRedirections must be an integer >= 1",
    );
  }
  const parsed = list.map(seedOptions);
  let last: unknown;
  for (const seed of parsed) {
    const base = { ...rest, ...seed } as ConnectOptions;
    let client: RedisClient;
    try {
      client = await connect(base);
    } catch (err) {
      last = err;
      continue;
    }
    const { hostname, port, ...shared } = base;
    const cluster = new ClusterClient(
      shared as ConnectOptions,
      `${hostname}:${port}`,
      maxRedirections,
      client.logger,
      budget,
    );
    cluster._adopt(`${hostname}:${port}`, client);
    try {
      await cluster._refresh();
      await cluster.masters(); // connect to every master now
      return cluster;
    } catch (err) {
      last = err;
      await cluster.close();
    }
  }
  const where = parsed.map((s) => `${s.hostname}:${s.port}`).join(", ");
  throw new ClusterError(`no cluster seed answered (${where})`, {
    cause: last,
  });
}
