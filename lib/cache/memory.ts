/**
 * `cached`'s in-process memory tier: a bounded LRU of stored entries (the
 * text or bytes Redis holds, not the decoded value), kept coherent by a
 * {@linkcode Tracker}. A hit decodes the stored form again, so every caller
 * gets its own copy and no caller's mutation reaches another. With a
 * `namespace`, it also keeps the namespace's generation token, dropped as
 * the entries are (tracking tells it when the token's key changes).
 *
 * @module
 */

import type { Stored } from "./store.ts";

/** One remembered entry. */
interface Remembered {
  stored: string | Uint8Array;
  /** The entry's own freshness (Unix ms): never served past it. */
  freshUntil: number;
  bytes: number;
}

/**
 * What a cached function's memory tier holds and did (`fn.memory`; see the
 * `memory` option of `cached`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { cached, connect, type MemoryStats } from "@respite/respite";
 * await using redis = await connect();
 * const rate = cached(async () => ({ eur: 1.08 }), {
 *   redis,
 *   key: "doc:rate",
 *   ttl: 60_000,
 *   memory: { maxEntries: 1_000 },
 * });
 * await rate.invalidate();
 * await rate(); // computed
 * const stats: MemoryStats | null = rate.memory;
 * assert.ok(stats !== null && stats.entries <= 1);
 * await rate.invalidate();
 * ```
 */
export interface MemoryStats {
  /** Entries held now. */
  entries: number;
  /** Bytes of their stored forms. */
  bytes: number;
  /** Calls answered from memory. */
  hits: number;
  /**
   * Entries dropped because Redis said their key changed (and, with a
   * `namespace`, each time its generation token was dropped so).
   */
  invalidations: number;
  /** Times every entry was dropped (tracking lost or back, `FLUSHDB`). */
  flushes: number;
}

/** A bounded LRU of one cached function's entries on one Redis server. */
export class MemoryTier {
  readonly #max: number;
  readonly #maxBytes: number;
  readonly #genKey: string | null;
  /**
   * The namespace's generation token as last read from Redis (`null`: not
   * known; always `null` without a namespace). A memory hit needs it.
   */
  generation: string | null = null;
  readonly #map = new Map<string, Remembered>();
  #bytes = 0;
  readonly stats: MemoryStats = {
    entries: 0,
    bytes: 0,
    hits: 0,
    invalidations: 0,
    flushes: 0,
  };

  /**
   * @param maxEntries The most entries held.
   * @param maxBytes The most bytes of stored forms held.
   * @param genKey The namespace's generation key (`null`: no namespace).
   */
  constructor(maxEntries: number, maxBytes: number, genKey: string | null) {
    this.#max = maxEntries;
    this.#maxBytes = maxBytes;
    this.#genKey = genKey;
  }

  /** The stored form of `entryKey` if it is fresh at `now`, else `null`. */
  get(entryKey: string, now: number): Stored {
    const r = this.#map.get(entryKey);
    if (r === undefined) return null;
    if (now >= r.freshUntil) {
      this.#drop(entryKey, r);
      return null;
    }
    // Most recently used last.
    this.#map.delete(entryKey);
    this.#map.set(entryKey, r);
    this.stats.hits++;
    // Bytes are copied: a binary codec's decode may return a view of them
    // (an identity codec does), which its caller may change.
    return typeof r.stored === "string" ? r.stored : r.stored.slice();
  }

  /** Remembers a fresh entry read from Redis. */
  put(entryKey: string, stored: string | Uint8Array, freshUntil: number): void {
    const bytes = stored.length;
    if (bytes > this.#maxBytes) return;
    const old = this.#map.get(entryKey);
    if (old !== undefined) this.#drop(entryKey, old);
    // A copy: the caller that read `stored` from Redis decodes it too.
    const own = typeof stored === "string" ? stored : stored.slice();
    this.#map.set(entryKey, { stored: own, freshUntil, bytes });
    this.#bytes += bytes;
    while (this.#map.size > this.#max || this.#bytes > this.#maxBytes) {
      const [k, r] = this.#map.entries().next().value!;
      this.#drop(k, r);
    }
    this.#sync();
  }

  /** Drops `entryKey` (Redis said it changed), or the generation if it is its key. */
  delete(entryKey: string): void {
    if (entryKey === this.#genKey) {
      if (this.generation !== null) this.stats.invalidations++;
      this.generation = null;
      return;
    }
    const r = this.#map.get(entryKey);
    if (r === undefined) return;
    this.#drop(entryKey, r);
    this.stats.invalidations++;
  }

  /** Drops everything. */
  clear(): void {
    this.generation = null;
    if (this.#map.size > 0) this.stats.flushes++;
    this.#map.clear();
    this.#bytes = 0;
    this.#sync();
  }

  #drop(k: string, r: Remembered): void {
    this.#map.delete(k);
    this.#bytes -= r.bytes;
    this.#sync();
  }

  #sync(): void {
    this.stats.entries = this.#map.size;
    this.stats.bytes = this.#bytes;
  }
}
