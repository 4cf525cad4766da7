/**
 * `cached`'s in-process memory tier: a bounded LRU of stored entries (the
 * text or bytes Redis holds, parsed once into metadata and payload, not the
 * decoded value), kept coherent by a {@linkcode Tracker}. A hit decodes the
 * payload again, so every caller gets its own copy and no caller's mutation
 * reaches another. (Measured against the alternatives with
 * `scripts/bench_copy.ts`: `structuredClone` of a kept value cost 2-10x a
 * `JSON.parse` of the kept text; a deeply frozen shared value costs nothing
 * but cannot protect a `Map`, a `Set` or the elements of a typed
 * array, which a codec may return.) With a `namespace`, it also keeps the
 * namespace's generation token, dropped as the entries are (tracking tells
 * it when the token's key changes).
 *
 * Entries are held under their cache key, not their Redis key, so that a hit
 * builds no string: Redis keys from the tracker are mapped back
 * (`<prefix>cache:{<key>}` to `<key>`).
 *
 * @module
 */

import type { RawEntry } from "./entry.ts";

/** One remembered entry. */
interface Remembered {
  /** Parsed once; its `freshUntil` is never served past. */
  raw: RawEntry;
  bytes: number;
  /** When it was last put or moved to the young end (see `#young`). */
  seq: number;
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
  /** `<prefix>cache:{`: how the Redis key of every entry starts. */
  readonly #start: string;
  /**
   * A hit moves its entry to the young end of the LRU only when it is in
   * the older half (its `seq` more than this behind): a hot entry costs no
   * `Map` delete and set per hit, and still outlives half the tier's puts.
   */
  readonly #young: number;
  #seq = 0;
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
   * @param entryStart How the Redis key of every entry starts
   *   (`<prefix>cache:{`).
   */
  constructor(
    maxEntries: number,
    maxBytes: number,
    genKey: string | null,
    entryStart: string,
  ) {
    this.#max = maxEntries;
    this.#maxBytes = maxBytes;
    this.#genKey = genKey;
    this.#start = entryStart;
    this.#young = Math.max(1, Math.floor(maxEntries / 2));
  }

  /**
   * The entry of cache key `k` if it is fresh at `now`, else `null`. Its
   * payload may be handed to a decoder: bytes are a copy.
   */
  get(k: string, now: number): RawEntry | null {
    const r = this.#map.get(k);
    if (r === undefined) return null;
    const raw = r.raw;
    if (now >= raw.freshUntil) {
      this.#drop(k, r);
      return null;
    }
    if (this.#seq - r.seq > this.#young) {
      // Most recently used last.
      this.#map.delete(k);
      this.#map.set(k, r);
      r.seq = ++this.#seq;
    }
    this.stats.hits++;
    // Bytes are copied: a binary codec's decode may return a view of them
    // (an identity codec does), which its caller may change.
    return typeof raw.payload === "string"
      ? raw
      : { ...raw, payload: raw.payload.slice() };
  }

  /**
   * Remembers a fresh entry of cache key `k` read from Redis: `raw` is
   * `stored` parsed.
   */
  put(k: string, stored: string | Uint8Array, raw: RawEntry): void {
    const bytes = stored.length;
    if (bytes > this.#maxBytes) return;
    const old = this.#map.get(k);
    if (old !== undefined) this.#drop(k, old);
    // A copy of bytes: the caller that read `stored` from Redis decodes it
    // too. (Text is immutable.)
    const own = typeof raw.payload === "string"
      ? raw
      : { ...raw, payload: raw.payload.slice() };
    this.#map.set(k, { raw: own, bytes, seq: ++this.#seq });
    this.#bytes += bytes;
    while (this.#map.size > this.#max || this.#bytes > this.#maxBytes) {
      const [k, r] = this.#map.entries().next().value!;
      this.#drop(k, r);
    }
    this.#sync();
  }

  /**
   * Drops the entry whose Redis key is `redisKey` (Redis said it changed),
   * or the generation if it is its key; other keys are not entries.
   */
  delete(redisKey: string): void {
    if (redisKey === this.#genKey) {
      if (this.generation !== null) this.stats.invalidations++;
      this.generation = null;
      return;
    }
    if (!redisKey.startsWith(this.#start) || !redisKey.endsWith("}")) return;
    const k = redisKey.slice(this.#start.length, -1);
    const r = this.#map.get(k);
    if (r === undefined) return;
    this.#drop(k, r);
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
