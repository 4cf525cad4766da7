/**
 * Coherence for `cached`'s memory tier on a Redis Cluster: one tracking
 * connection per master (each a {@linkcode MasterTracker}, that is the
 * single-server tracker of lib/cache/tracking.ts on that master), all
 * keeping the same tiers coherent.
 *
 * Broadcast tracking only reports the keys of the node it runs on, and an
 * entry's key and its namespace's generation key (`<prefix>cache:{<ns>}:gen`)
 * may live on different masters: so every master is tracked, and the tiers
 * serve only while every one of those connections is up and proven (see
 * `Tracker.usable`). One lost, or not yet up, and the tiers are flushed and
 * bypassed until all are back.
 *
 * Topology: the masters tracked are those the cluster client's slot map
 * names. When the map changes (a refresh after MOVED, a failover, a reshard
 * adding a node), a new master gets its tracking connection before the tiers
 * serve again (its first check flushes them), and a master gone has its
 * connection closed. While a tracking connection is down for more than
 * {@linkcode REFRESH_EVERY_MS}, the slot map is read again at most that
 * often (a dead master may have been replaced).
 *
 * A read kept in a tier must have come from a master that was tracked before
 * it was sent. So the epoch a read is checked against ({@linkcode
 * ClusterTracker.epoch}) also counts the slot map's changes and the ASK
 * redirections followed: a read answered after a MOVED (the map changed) or
 * by way of ASK (a node mid-import, perhaps one with no tracking connection
 * yet) is returned but not kept. When a slot moves, the source deletes each
 * key it migrates (its tracking connection reports the deletion, dropping
 * the entry), the target's restore of the key is a write there (reported by
 * the target's), and a later write on the new owner is reported by its
 * connection, once the map names it.
 *
 * @module
 */

import type { RedisClient } from "../client/client.ts";
import type { ClusterClient } from "../cluster/client.ts";
import type { NodeAddress } from "../cluster/slot_map.ts";
import type { MemoryTier } from "./memory.ts";

/** While a tracking connection is down, the slot map is read again at most this often (ms). */
export const REFRESH_EVERY_MS = 1_000;

/** One master's tracking connection, as {@linkcode ClusterTracker} uses it. */
export interface MasterTracker {
  /** Counts the invalidations, flushes and losses it saw. */
  readonly epoch: number;
  /** Whether it is up and proven at `now` (flushes the tiers when not). */
  usable(now?: number): boolean;
  /** Keeps `tier` coherent too. */
  add(tier: MemoryTier): void;
  /** Closes its connection (the tiers are flushed). */
  close(): Promise<void>;
}

/** The tracking connections of one cluster client and key prefix. */
export class ClusterTracker {
  readonly #tiers = new Set<WeakRef<MemoryTier>>();
  readonly #gone = new FinalizationRegistry<WeakRef<MemoryTier>>((ref) =>
    this.#tiers.delete(ref)
  );
  readonly #cluster: ClusterClient;
  readonly #open: (node: RedisClient) => MasterTracker;
  readonly #byMaster = new Map<NodeAddress, MasterTracker>();
  /** Masters whose node client is being connected. */
  readonly #pending = new Set<NodeAddress>();
  /** The slot map version the tracked masters match (-1: try again). */
  #seen = -1;
  #retryAt = -Infinity;
  /** Own count: this process's changes, masters dropped (and their counts). */
  #epoch = 0;
  #downSince: number | null = null;
  #refreshAt = -Infinity;
  #closed = false;

  /**
   * @param cluster The cluster client whose masters are tracked.
   * @param open Opens the tracking of one master, given its node's client.
   */
  constructor(
    cluster: ClusterClient,
    open: (node: RedisClient) => MasterTracker,
  ) {
    this.#cluster = cluster;
    this.#open = open;
  }

  /**
   * Changes with every invalidation, flush and loss on any master, every
   * change of the slot map and every ASK redirection: a read started before
   * one is not kept.
   */
  get epoch(): number {
    let e = this.#epoch + this.#cluster._mapVersion + this.#cluster._asks;
    for (const t of this.#byMaster.values()) e += t.epoch;
    return e;
  }

  /** How many tiers it keeps coherent now (collected ones left out). */
  get tiers(): number {
    let n = 0;
    for (const _ of this.#live()) n++;
    return n;
  }

  /** The masters tracked now (tests). */
  get masters(): NodeAddress[] {
    return [...this.#byMaster.keys()];
  }

  *#live(): Generator<MemoryTier> {
    for (const ref of this.#tiers) {
      const tier = ref.deref();
      if (tier === undefined) this.#tiers.delete(ref);
      else yield tier;
    }
  }

  /** Adds a tier to keep coherent (on every master tracked, and those to come). */
  add(tier: MemoryTier): void {
    const ref = new WeakRef(tier);
    this.#tiers.add(ref);
    this.#gone.register(tier, ref);
    for (const t of this.#byMaster.values()) t.add(tier);
    this.usable();
  }

  /**
   * Whether the tiers may serve now: every master of the slot map has its
   * tracking connection, up and proven. Follows the slot map first.
   */
  usable(): boolean {
    if (this.#closed || this.#cluster.status === "closed") return false;
    const now = performance.now();
    const v = this.#cluster._mapVersion;
    if (v !== this.#seen && (this.#seen !== -1 || now >= this.#retryAt)) {
      this.#follow(v);
    }
    let ok = this.#pending.size === 0 && this.#byMaster.size > 0;
    // Every one is asked, so that each lost one flushes and reopens.
    for (const t of this.#byMaster.values()) if (!t.usable(now)) ok = false;
    if (ok) {
      this.#downSince = null;
      return true;
    }
    this.#downSince ??= now;
    if (
      now - this.#downSince >= REFRESH_EVERY_MS && now >= this.#refreshAt
    ) {
      // A master lost for a while: perhaps replaced (a failover).
      this.#refreshAt = now + REFRESH_EVERY_MS;
      this.#cluster._refresh().catch(() => {});
    }
    return false;
  }

  /** Tracks the masters of slot map version `v`: new ones opened, gone ones closed. */
  #follow(v: number): void {
    this.#seen = v;
    const want = new Set(this.#cluster._masterAddresses());
    for (const [address, t] of this.#byMaster) {
      if (want.has(address)) continue;
      this.#byMaster.delete(address);
      this.#epoch += t.epoch + 1;
      void t.close().catch(() => {});
    }
    for (const address of want) {
      if (this.#byMaster.has(address) || this.#pending.has(address)) continue;
      this.#pending.add(address);
      this.#cluster._nodeClient(address).then((client) => {
        this.#pending.delete(address);
        if (this.#closed || this.#byMaster.has(address)) return;
        const t = this.#open(client);
        for (const tier of this.#live()) t.add(tier);
        this.#byMaster.set(address, t);
        // Flushes the tiers (not up yet) and opens it; if the map moved on
        // meanwhile, the next check drops it again.
        t.usable();
      }, () => {
        this.#pending.delete(address);
        this.#seen = -1;
        this.#retryAt = performance.now() + REFRESH_EVERY_MS;
      });
    }
  }

  /** This process changed `entryKey`: every tier drops it now. */
  changed(entryKey: string): void {
    this.#epoch++;
    for (const tier of this.#live()) tier.delete(entryKey);
  }

  /** Closes every tracking connection (with the cluster client). */
  async close(): Promise<void> {
    this.#closed = true;
    this.#epoch++;
    const all = [...this.#byMaster.values()];
    this.#byMaster.clear();
    for (const tier of this.#live()) tier.clear();
    await Promise.all(all.map((t) => t.close()));
  }
}
