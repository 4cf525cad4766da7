/**
 * Coherence for `cached`'s in-process memory tier, from Redis itself:
 * server-assisted client-side caching (`CLIENT TRACKING`) in broadcast mode.
 *
 * One tracker per respite client and key prefix opens a connection of its
 * own (RESP3), whose handshake — after every reconnect too — sends
 * `CLIENT TRACKING ON BCAST PREFIX <prefix>cache:{`. From then on Redis
 * pushes an `invalidate` message on it for every change of an entry key under
 * that prefix, whoever made it: a respite write or `invalidate()`, a `DEL`
 * from `redis-cli`, an expiry, an eviction, a `FLUSHDB` (a `null` key list:
 * everything). The shared command connection is untouched: its replies are
 * matched as before, and reads need no `CLIENT CACHING` dance.
 *
 * Broadcast rather than default tracking: Redis keeps no per-key reader
 * table (no server memory per tracked key, and no per-read bookkeeping in
 * the client), at the price of telling every tracker of every change under
 * the prefix, read by it or not.
 *
 * The tier may be used only while the tracker's connection is up and
 * tracking: when it is lost, invalidations may be missed, so every tier is
 * flushed, bypassed until the connection is back (its handshake has turned
 * tracking on again), and flushed again then (Redis's own rule for tracking
 * clients). A read that was in flight while an invalidation arrived is not
 * kept ({@linkcode Tracker.epoch}).
 *
 * A connection can also die without a word (a network path that drops
 * packets, a NAT that forgets it) or be closed by the server's `timeout`
 * (a tracking connection never sends anything on its own). So it sends a
 * PING every {@linkcode PING_EVERY_MS}, which keeps it from looking idle
 * to the server, and the tiers serve only while the reply to a PING sent
 * less than {@linkcode LIVE_MS} ago has come back (the handshake counts as
 * one): every invalidation Redis sent before answering it has then been
 * read, since they travel on the same stream. A connection that stops
 * answering is bypassed within `LIVE_MS` (its tiers are not flushed for
 * that: what it sent before the next reply is read before the reply), and
 * dropped and opened again by the connection's own health check.
 *
 * @module
 */

import { closeWith, optionsOf, RedisClient } from "../client/client.ts";
import { Connection } from "../client/connection.ts";
import type { CommandSurface } from "../adapters/surface.ts";
import type { Push } from "../resp/decoder.ts";
import { ReplyError } from "../errors.ts";
import type { MemoryTier } from "./memory.ts";
import { ClusterClient } from "../cluster/client.ts";
import { ClusterTracker } from "./cluster_tracking.ts";

/** How often the tracking connection sends a PING (ms). */
export const PING_EVERY_MS = 500;
/**
 * The tiers serve only while a PING sent less than this long ago (ms) was
 * answered: how long a silently dead tracking connection can go unnoticed.
 */
export const LIVE_MS = 1_500;
/** The longest wait before trying again to open a tracking connection that failed (ms). */
export const RETRY_MAX_MS = 30_000;

/** What `cached` needs of a tracker: {@linkcode Tracker} or, on a cluster, `ClusterTracker`. */
export interface TierTracker {
  /** Changes with every invalidation, flush and loss: a read started before one is not kept. */
  readonly epoch: number;
  /** How many tiers it keeps coherent now. */
  readonly tiers: number;
  /** Whether the tiers may serve now (when not, they are flushed). */
  usable(): boolean;
  /** Adds a tier to keep coherent. */
  add(tier: MemoryTier): void;
  /** This process changed `entryKey`: every tier drops it now. */
  changed(entryKey: string): void;
}

/** The trackers of each client (respite's own, or a cluster one), by key prefix. */
const trackers = new WeakMap<
  RedisClient | ClusterClient,
  Map<string, TierTracker>
>();

/**
 * The tracker for `redis` and `prefix`, opened on first use: one tracking
 * connection for respite's own client, one per master for a cluster client
 * (`ClusterTracker`); `null` for any other client (no memory tier: see
 * `memory` in `cached`'s options).
 */
export function trackerFor(
  redis: CommandSurface,
  prefix: string,
): TierTracker | null {
  const isCluster = redis instanceof ClusterClient;
  if (!isCluster && !(redis instanceof RedisClient)) return null;
  let byPrefix = trackers.get(redis);
  if (byPrefix === undefined) trackers.set(redis, byPrefix = new Map());
  let t = byPrefix.get(prefix);
  if (t === undefined) {
    if (isCluster) {
      const c = new ClusterTracker(redis, (node) => new Tracker(node, prefix));
      redis._closeWith(() => c.close());
      t = c;
    } else {
      const one = new Tracker(redis, prefix);
      closeWith(redis, () => one.close());
      t = one;
    }
    byPrefix.set(prefix, t);
  }
  return t;
}

/**
 * This process changed (or may have changed) `entryKey` under `prefix`
 * through `redis`: every tier of that client and prefix drops it now, and a
 * read in flight is not kept. Redis's invalidation for the change comes on
 * the tracking connection, which may be later than the write's own reply:
 * a caller that awaited `set()` or `invalidate()` must not be served the
 * value it replaced.
 */
export function changedHere(
  redis: CommandSurface,
  prefix: string,
  entryKey: string,
): void {
  if (!(redis instanceof RedisClient) && !(redis instanceof ClusterClient)) {
    return;
  }
  trackers.get(redis)?.get(prefix)?.changed(entryKey);
}

/** One tracking connection, and the memory tiers it keeps coherent. */
export class Tracker implements TierTracker {
  /**
   * Held weakly: a cached function made and dropped (one per request, say)
   * leaves its tier to the garbage collector, not here for good.
   */
  readonly #tiers = new Set<WeakRef<MemoryTier>>();
  readonly #gone = new FinalizationRegistry<WeakRef<MemoryTier>>((ref) =>
    this.#tiers.delete(ref)
  );
  #conn: Connection | null = null;
  #opening: Promise<void> | null = null;
  #closed = false;
  /** Invalidations, flushes and losses so far; a read started before one is not kept. */
  #epoch = 0;
  /** Whether the tiers were flushed since the connection was last seen down. */
  #flushedForLoss = false;
  /**
   * `performance.now()` of the latest PING sent (or handshake finished) on
   * the current connection whose reply has been read: every invalidation
   * Redis sent before then has been seen.
   */
  #proven = -Infinity;
  #pinging = false;
  #pinger: ReturnType<typeof setInterval> | undefined;
  /** Failed opens in a row: the next is not tried before `#retryAt`. */
  #failures = 0;
  #retryAt = -Infinity;
  readonly #redis: RedisClient;
  readonly #prefix: string;

  /**
   * @param redis The client whose options the tracking connection copies.
   * @param prefix The key prefix whose entries are tracked.
   */
  constructor(redis: RedisClient, prefix: string) {
    this.#redis = redis;
    this.#prefix = prefix;
  }

  /** Counts invalidations, flushes and losses: see {@linkcode Tracker}. */
  get epoch(): number {
    return this.#epoch;
  }

  /** How many tiers it keeps coherent now (collected ones left out). */
  get tiers(): number {
    let n = 0;
    for (const _ of this.#live()) n++;
    return n;
  }

  /** The tiers not collected; drops the collected ones on the way. */
  *#live(): Generator<MemoryTier> {
    for (const ref of this.#tiers) {
      const tier = ref.deref();
      if (tier === undefined) this.#tiers.delete(ref);
      else yield tier;
    }
  }

  /** Adds a tier to keep coherent (and opens the connection, once). */
  add(tier: MemoryTier): void {
    const ref = new WeakRef(tier);
    this.#tiers.add(ref);
    this.#gone.register(tier, ref);
    this.#open();
  }

  /**
   * Whether the tiers may serve now: the connection is up and tracking.
   * When it is not, every tier is flushed (once per loss).
   *
   * @param now `performance.now()`, if the caller has it.
   */
  usable(now: number = performance.now()): boolean {
    if (this.#conn?.status === "closed") this.#conn = null; // gave up: reopen
    const up = this.#conn !== null && this.#conn.status === "ready";
    if (!up) {
      if (!this.#flushedForLoss) this.#flushAll();
      this.#flushedForLoss = true;
      this.#open();
      return false;
    }
    // Up, as far as the socket knows: but has it said anything lately?
    return now - this.#proven < LIVE_MS;
  }

  #ping(): void {
    const conn = this.#conn;
    if (this.#pinging || conn === null || conn.status !== "ready") return;
    this.#pinging = true;
    const sent = performance.now();
    const proved = () => {
      if (conn === this.#conn && sent > this.#proven) this.#proven = sent;
    };
    conn.send(["PING"], { timeout: LIVE_MS * 4 }).then(proved, (err) => {
      // An error reply (NOPERM: an ACL without PING) is a reply all the
      // same: everything sent before it has been read.
      if (err instanceof ReplyError) return proved();
      // Lost or timed out: the connection's own health check and reconnect
      // deal with it; meanwhile nothing is proven, so the tiers are bypassed.
    }).finally(() => {
      this.#pinging = false;
    });
  }

  #open(): void {
    if (this.#closed || this.#conn !== null || this.#opening !== null) return;
    // A server that refuses the tracking connection (no HELLO 3, an ACL
    // without CLIENT TRACKING) is not asked again at every call.
    if (performance.now() < this.#retryAt) return;
    const base = optionsOf(this.#redis);
    this.#opening = Connection.open({
      ...base,
      protocol: 3,
      name: base.name === undefined
        ? "respite-tracking"
        : `${base.name}-tracking`,
      trackingPrefix: `${this.#prefix}cache:{`,
      onPush: (push) => this.#onPush(push),
      // Nothing is queued on it: a lost connection is simply reopened.
      queueWhileReconnecting: false,
      idleCheck: false,
    }, {
      onReady: (reconnected) => {
        // Back, and tracking again: what was missed while it was down is
        // gone from every tier.
        if (reconnected) this.#flushAll();
        this.#flushedForLoss = false;
        this.#proven = performance.now();
      },
    }).then((conn) => {
      this.#opening = null;
      if (this.#closed) return conn.close(0); // close() waits for it

      this.#conn = conn;
      this.#flushedForLoss = false;
      if (this.#failures > 0) {
        this.#failures = 0;
        this.#redis.logger.warn(
          "respite: cached()'s memory tier is on: its tracking connection is open",
        );
      }
      this.#pinger ??= setInterval(() => this.#ping(), PING_EVERY_MS);
    }, (err) => {
      this.#opening = null;
      // The tier stays bypassed; a call tries again after a backoff (1 s,
      // doubling, at most RETRY_MAX_MS). One line until it works.
      this.#failures++;
      this.#retryAt = performance.now() +
        Math.min(RETRY_MAX_MS, 1_000 * 2 ** (this.#failures - 1));
      if (this.#failures === 1) {
        this.#redis.logger.warn(
          `respite: cached()'s memory tier is off until its tracking connection opens (tried again at most every ${
            RETRY_MAX_MS / 1_000
          } s; said once): ${err instanceof Error ? err.message : err}`,
        );
      }
    });
  }

  /** Drops `entryKey` from every tier; see {@linkcode changedHere}. */
  changed(entryKey: string): void {
    this.#epoch++;
    for (const tier of this.#live()) tier.delete(entryKey);
  }

  #onPush(push: Push): void {
    if (String(push.data[0]) !== "invalidate") return;
    this.#epoch++;
    const keys = push.data[1];
    if (!Array.isArray(keys)) {
      this.#flushAll(); // FLUSHDB/FLUSHALL: a null key list
      return;
    }
    for (const tier of this.#live()) {
      for (const k of keys) tier.delete(String(k));
    }
  }

  #flushAll(): void {
    this.#epoch++;
    for (const tier of this.#live()) tier.clear();
  }

  /** Closes the tracking connection (with its client). */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#pinger);
    this.#pinger = undefined;
    this.#flushAll();
    const c = this.#conn;
    this.#conn = null;
    // An open still under way closes what it opens, and is waited for: no
    // tracking connection outlives its client's close().
    const opening = this.#opening;
    await Promise.all([c?.close(0), opening]);
  }
}
