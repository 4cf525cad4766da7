/**
 * `cached`: cache-stampede protection across every process that shares one
 * Redis. One caller in the fleet computes a missing value under the entry's
 * distributed lock; the others are woken over pub/sub the moment it is
 * written.
 *
 * This file holds the flows (a hit, a miss that computes or waits, a
 * refresh, an invalidation); `cache/store.ts` does all the talking to Redis,
 * `cache/entry.ts` the entries' format and encoding.
 *
 * @module
 */

import {
  type CachedCallOptions,
  type CachedComputeEvent,
  type CachedEntry,
  type CachedEntryInfo,
  type CachedFunction,
  type CachedOptions,
  type CachedWarmOptions,
  type CachedWarmResult,
  CacheEvents,
  resolveCacheOptions,
  type ResolvedCacheOptions,
} from "./options.ts";
import {
  acceptable,
  type Entry,
  EntryCodec,
  failureOf,
  newerValue,
  parseEntry,
  valueOf,
  xfetchEarly,
} from "./entry.ts";
import {
  CacheStore,
  type CurrentGeneration,
  type Generation,
  type Stored,
} from "./store.ts";
import { awaitTurn, type WaitState } from "./wait.ts";
import { CachedTimeoutError, CodecError } from "../errors.ts";
import { checkRequest } from "../client/client.ts";
import type { CommandSurface, RedisLike } from "../adapters/mod.ts";
import { checkClient } from "../lock/options.ts";
import { cacheEntryKey, cacheGenerationKey } from "../keys.ts";
import type { Lock } from "../lock/lock.ts";
import { checkEviction } from "../eviction.ts";
import { Singleflight } from "./singleflight.ts";
import { FailOpenLog } from "./fail_open_log.ts";
import { type MemoryStats, MemoryTier } from "./memory.ts";
import { changedHere, type TierTracker, trackerFor } from "./tracking.ts";
import { checkOptions } from "../validate.ts";

/** The keys of {@linkcode CachedCallOptions}. */
const CALL_OPTIONS: readonly string[] = ["signal", "redis"];
/** The keys of {@linkcode CachedWarmOptions}. */
const WARM_OPTIONS: readonly string[] = ["concurrency", "signal"];

/** The state and the flows behind one cached function. */
class Cache<A extends unknown[], T> {
  readonly options: ResolvedCacheOptions<A, T>;
  readonly fn: (...args: A) => T | Promise<T>;
  /** One store per client the calls used (the `redis` option, or per call). */
  readonly stores = new WeakMap<CommandSurface, CacheStore>();
  readonly entries: EntryCodec<T>;
  readonly events: CacheEvents;
  readonly flights = new Singleflight<T>();
  readonly refreshes = new Singleflight<T>();
  readonly background = new Map<string, Promise<void>>();
  readonly failOpenLog = new FailOpenLog();
  /** The memory tier per store (`null`: the store's client cannot track). */
  readonly tiers = new WeakMap<
    CacheStore,
    { tier: MemoryTier; tracker: TierTracker } | null
  >();
  /**
   * The trackers of this function's tiers, whichever client each reads
   * through (held weakly: a per-call client's goes with it).
   */
  readonly trackers = new Set<WeakRef<TierTracker>>();
  /** The memory tier was refused for a client: warned once. */
  warnedNoTier = false;
  /** The namespace's generation key, or `null` without a `namespace`. */
  readonly genKey: string | null;

  constructor(
    fn: (...args: A) => T | Promise<T>,
    options: ResolvedCacheOptions<A, T>,
  ) {
    this.fn = fn;
    this.options = options;
    this.genKey = options.namespace === null
      ? null
      : cacheGenerationKey(options.namespace, options.prefix);
    this.events = new CacheEvents(options);
    this.entries = new EntryCodec<T>(
      options,
      (k, err, phase) => this.events.report(k, err, phase),
    );
  }

  keyOf(args: A): string {
    return this.options.key(args);
  }

  /**
   * The store for one call's client: the one given to the call, else the
   * `redis` option. Checked at every call, before anything is sent: a
   * client is required, and on Cloudflare Workers it must belong to the
   * request running now (see `checkRequest`), so that a client left over
   * from an earlier request fails the call at once instead of falling open.
   *
   * @throws {TypeError} No client, not a client, or another request's.
   */
  storeFor(given: unknown): CacheStore {
    const redis = given === undefined ? this.options.redis : given;
    if (redis === undefined) {
      throw new TypeError(
        "cached(): no Redis client for this call: give `redis` in cached()'s options, " +
          "or per call: fn.get(args, { redis }) or fn.with(redis)(...args) " +
          "(on Cloudflare Workers, a client connected in this request)",
      );
    }
    const client = checkClient(redis);
    checkRequest(client);
    let store = this.stores.get(client);
    if (store === undefined) {
      const o = this.options;
      store = new CacheStore({
        redis: client,
        prefix: o.prefix,
        lockTtl: o.lockTtl,
        timeout: o.timeout,
        logger: o.logger,
        binary: o.codec.binary === true,
        genKey: this.genKey,
      });
      this.stores.set(client, store);
    }
    return store;
  }

  call(args: A, signal?: AbortSignal, redis?: unknown): Promise<T> {
    let k: string;
    let store: CacheStore;
    try {
      k = this.keyOf(args);
      // A bad tags result is the caller's TypeError, before anything is
      // sent (on a miss it would otherwise look like a Redis failure).
      this.options.tags?.(args);
      if (signal !== undefined && !(signal instanceof AbortSignal)) {
        throw new TypeError("signal must be an AbortSignal");
      }
      store = this.storeFor(redis);
    } catch (err) {
      return Promise.reject(err);
    }
    checkEviction(store.redis, this.options.logger);
    if (this.options.memory !== null && signal?.aborted !== true) {
      const hit = this.memoryHit(k, args, store);
      if (hit !== undefined) return hit;
    }
    return this.flights.run(
      store.flightKey(k),
      () => this.lookup(k, args, store),
      { signal },
    );
  }

  /** The memory tier for `store`, made on first use; `null` without one. */
  tierFor(
    store: CacheStore,
  ): { tier: MemoryTier; tracker: TierTracker } | null {
    const m = this.options.memory;
    if (m === null) return null;
    let t = this.tiers.get(store);
    if (t === undefined) {
      const tracker = trackerFor(store.redis, this.options.prefix);
      if (tracker === null) {
        t = null;
        if (!this.warnedNoTier) {
          this.warnedNoTier = true;
          (this.options.logger === undefined
            ? store.redis.logger
            : this.options.logger)?.warn(
              "respite: cached()'s memory tier needs a client from respite's connect() or connectCluster() (it tracks keys on a connection of its own); it is off for this client",
            );
        }
      } else {
        const tier = new MemoryTier(
          m.maxEntries,
          m.maxBytes,
          this.genKey,
          cacheEntryKey("", this.options.prefix).slice(0, -1),
        );
        tracker.add(tier);
        t = { tier, tracker };
        this.trackers.add(new WeakRef(tracker));
      }
      this.tiers.set(store, t);
    }
    return t;
  }

  /**
   * A call answered from the memory tier, without I/O and outside the
   * singleflight (each caller decodes its own copy); `undefined` when the
   * tier cannot answer it (off, bypassed, no fresh entry, no token).
   */
  memoryHit(k: string, args: A, store: CacheStore): Promise<T> | undefined {
    const mem = this.tierFor(store);
    // Its coherence comes from the tracking connection, not the command one,
    // which may be reconnecting meanwhile (hits send nothing on it, so the
    // server's idle timeout closes it).
    if (mem === null || !mem.tracker.usable()) return undefined;
    // With a namespace, a memory hit needs the token from memory too.
    let gen: CurrentGeneration;
    if (this.genKey !== null) {
      gen = mem.tier.generation;
      if (gen === null) return undefined;
    }
    const now = Date.now();
    const raw = mem.tier.get(k, now); // fresh at `now`, or null
    if (raw === null) return undefined;
    const e = this.entries.decodeParsed(k, raw, gen);
    if (e === null) return undefined; // the lookup finds it a miss
    try {
      return Promise.resolve(this.fresh(k, args, e, now, store));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** A fresh entry served: the hit hook, a failure thrown, XFetch. */
  fresh(k: string, args: A, e: Entry<T>, now: number, store: CacheStore): T {
    const o = this.options;
    if (o.hooks.hit !== undefined) this.events.emit("hit", { key: k });
    if (e.kind === "error") throw failureOf(k, e);
    if (o.beta > 0 && xfetchEarly(e, now, o.beta, o.random)) {
      this.refreshInBackground(k, args, e, "early", store);
    }
    return e.value;
  }

  /**
   * One lookup in Redis (the memory tier, if any, could not answer: see
   * `memoryHit`), shared by the concurrent calls for `k` in this process on
   * the same Redis server (`store.flightKey`), with whichever of their
   * clients the first of them gave.
   */
  async lookup(k: string, args: A, store: CacheStore): Promise<T> {
    const mem = this.options.memory === null ? null : this.tierFor(store);
    const namespaced = this.genKey !== null;
    let stored: Stored = null;
    // The namespace's token the entry must carry (undefined: no namespace).
    let gen: CurrentGeneration;
    // What the read may be kept against: no invalidation may come meanwhile.
    const epoch = mem !== null && mem.tracker.usable() ? mem.tracker.epoch : -1;
    if (!store.ready) {
      return await this.failOpen(k, args, store.notReady(), store);
    }
    try {
      if (namespaced) [stored, gen] = await store.readFastWithGeneration(k);
      else stored = await store.readFast(k);
    } catch (err) {
      return await this.failOpen(k, args, err, store);
    }
    const e = this.entries.decode(k, stored, gen);
    const now = Date.now();
    if (e !== null) {
      if (now < e.freshUntil) {
        if (
          mem !== null && epoch !== -1 && epoch === mem.tracker.epoch &&
          mem.tracker.usable()
        ) {
          // No invalidation came while the read was out: keep it (and the
          // namespace's token it was checked against). It decoded, so it
          // parses.
          mem.tier.put(k, stored!, parseEntry(stored!));
          if (namespaced) mem.tier.generation = gen!;
        }
        return this.fresh(k, args, e, now, store);
      }
      if (now < e.staleUntil) {
        this.events.emit("stale", { key: k });
        this.refreshInBackground(k, args, e, "stale", store);
        return e.value;
      }
    }
    this.events.emit("miss", { key: k });
    const prev = e !== null && e.kind !== "error" ? e : null;
    return await this.fill(k, args, prev, "miss", 0, store);
  }

  /**
   * The miss path: compute under the entry's lock, or wait for whoever holds
   * it to write the value (`cache/wait.ts`).
   */
  async fill(
    k: string,
    args: A,
    prev: Entry<T> | null,
    reason: "miss" | "refresh",
    minCreatedAt: number,
    store: CacheStore,
  ): Promise<T> {
    const start = performance.now();
    const state: WaitState<T> = { prev, wake: null };
    try {
      const turn = await awaitTurn(
        store,
        this.entries,
        this.options,
        k,
        minCreatedAt,
        state,
      );
      if (state.wake !== null) {
        this.events.emit("wait", {
          key: k,
          duration: performance.now() - start,
          outcome: turn.outcome,
        });
      }
      switch (turn.outcome) {
        case "lead":
          return await this.lead(
            turn.lock,
            k,
            args,
            state.prev,
            reason,
            minCreatedAt,
            store,
          );
        case "value":
          return valueOf(k, turn.entry);
        case "timeout":
          return await this.waitedOut(k, args, state.prev, reason, store);
        default:
          return await this.failOpen(k, args, turn.error, store);
      }
    } finally {
      state.wake?.close();
    }
  }

  /** The `wait` bound ran out: serve stale, throw, or compute unlocked. */
  async waitedOut(
    k: string,
    args: A,
    prev: Entry<T> | null,
    reason: "miss" | "refresh",
    store: CacheStore,
  ): Promise<T> {
    const o = this.options;
    if (
      prev !== null && reason !== "refresh" &&
      Date.now() <
        prev.freshUntil + Math.max(o.staleIfError, o.staleWhileRevalidate)
    ) {
      this.events.emit("stale", { key: k });
      return prev.value;
    }
    if (o.onWaitTimeout === "throw") {
      throw new CachedTimeoutError(
        `cached(): gave up waiting for another process to compute "${k}" after ${o.wait} ms (wait option); no stale value to serve`,
        { key: k, wait: o.wait },
      );
    }
    let gen: Generation | null = null;
    try {
      await this.joinTags(k, args, store);
      gen = await store.readGeneration(k);
    } catch (err) {
      this.events.report(k, err, "redis"); // computed, but not written
    }
    return await this.compute(
      null,
      k,
      args,
      null,
      gen,
      "timeout",
      false,
      store,
    );
  }

  /** Holding the lock: look once more, then compute. */
  async lead(
    lock: Lock,
    k: string,
    args: A,
    prev: Entry<T> | null,
    reason: "miss" | "refresh",
    minCreatedAt: number,
    store: CacheStore,
  ): Promise<T> {
    let stored, gen;
    try {
      await this.joinTags(k, args, store);
      ({ stored, gen } = await store.readAsLeader(k));
    } catch (err) {
      await this.release(lock, k);
      return await this.failOpen(k, args, err, store);
    }
    const e = this.entries.decode(k, stored, this.current(gen));
    if (acceptable(e, Date.now(), minCreatedAt)) {
      // Written just before we took the lock.
      await this.release(lock, k);
      return valueOf(k, e);
    }
    prev = newerValue(prev, e);
    return await this.compute(
      lock,
      k,
      args,
      reason === "refresh" ? null : prev,
      gen,
      reason,
      false,
      store,
    );
  }

  /**
   * Runs the function, stores its result (unless invalidated meanwhile) and
   * releases the lock. A failure releases the lock at once and is not cached
   * (unless negative caching says so); a stale value is served instead when
   * `staleIfError` allows. Without a `gen` (the invalidation marker could not
   * be read) nothing is written.
   */
  async compute(
    lock: Lock | null,
    k: string,
    args: A,
    prev: Entry<T> | null,
    gen: Generation | null,
    reason: CachedComputeEvent["reason"],
    background: boolean,
    store: CacheStore,
  ): Promise<T> {
    const createdAt = Date.now();
    const t0 = performance.now();
    const stopKeeping = gen === null ? null : store.keepGeneration(k, gen);
    let value: T;
    try {
      value = await this.fn(...args);
    } catch (err) {
      stopKeeping?.();
      const duration = performance.now() - t0;
      this.events.emit("compute", {
        key: k,
        duration,
        ok: false,
        reason,
        background,
      });
      try {
        if (
          this.options.negativeTtl > 0 && lock !== null && gen !== null &&
          this.isNegative(err)
        ) {
          const { stored, px } = this.entries.encodeFailure(
            err,
            createdAt,
            duration,
            gen.ns,
          );
          await this.write(k, stored, px, gen, store);
        }
      } finally {
        if (lock !== null) await this.release(lock, k);
      }
      if (
        prev !== null &&
        Date.now() < prev.freshUntil + this.options.staleIfError
      ) {
        this.events.report(k, err, "stale");
        this.events.emit("stale", { key: k });
        return prev.value;
      }
      throw err;
    }
    stopKeeping?.();
    const delta = performance.now() - t0;
    this.events.emit("compute", {
      key: k,
      duration: delta,
      ok: true,
      reason,
      background,
    });
    try {
      const why = value === undefined || value === null
        ? null
        : this.entries.invalid(value);
      if (why !== null) {
        // Returned to its caller, but never written for others to read.
        this.events.report(
          k,
          new CodecError(
            `cached(): the computed value for key "${k}" ${why}; it was not written`,
            { key: k },
          ),
          "validate",
        );
      } else {
        const encoded = this.entries.encodeValue(
          k,
          value,
          createdAt,
          delta,
          gen?.ns ?? "",
        );
        if (encoded !== null && gen !== null) {
          await this.write(k, encoded.stored, encoded.px, gen, store);
          if (this.options.maxEntryMs === null && this.options.tags !== null) {
            // A ttl function: the tag sets now live as long as this entry.
            await this.joinTags(k, args, store, encoded.px).catch((err) =>
              this.events.report(k, err, "write")
            );
          }
        }
      }
    } finally {
      if (lock !== null) await this.release(lock, k);
    }
    return value;
  }

  /** The token an entry read with `gen` must carry (`undefined`: no namespace). */
  current(gen: Generation): CurrentGeneration {
    return this.genKey === null ? undefined : gen.ns;
  }

  isNegative(err: unknown): boolean {
    try {
      return this.options.isNegative(err);
    } catch {
      return false;
    }
  }

  /** Stores an entry unless invalidated since `gen`; a failure is reported. */
  async write(
    k: string,
    stored: string | Uint8Array,
    px: number,
    gen: Generation,
    store: CacheStore,
  ): Promise<void> {
    try {
      if (await store.write(k, stored, px, gen)) this.entries.written(k);
    } catch (err) {
      this.events.report(k, err, "write");
    } finally {
      this.changedHere(store, k);
    }
  }

  /**
   * Calls for `fk` (see `CacheStore.flightKey`) that join a lookup or a
   * `refresh()` from now on start their own: the entry changed, and a
   * computation already running may have read it before.
   */
  forget(fk: string): void {
    this.flights.forget(fk);
    this.refreshes.forget(fk);
  }

  /**
   * This process wrote (or tried to write) `k`: no memory tier of its client
   * serves the value it held, even before Redis's invalidation arrives.
   */
  changedHere(store: CacheStore, k: string): void {
    this.changedEverywhere(store, store.entryKey(k));
  }

  /**
   * `changedHere` for `redisKey` (an entry's or the generation's key):
   * through `store`'s client, and through every other client this function's
   * tiers read through (`fn.with(other)`), whose Redis invalidation may come
   * later still. A tier on another server drops a key it may not hold: a
   * miss, never a wrong hit.
   */
  changedEverywhere(store: CacheStore, redisKey: string): void {
    changedHere(store.redis, this.options.prefix, redisKey);
    for (const ref of this.trackers) {
      const t = ref.deref();
      if (t === undefined) this.trackers.delete(ref);
      else t.changed(redisKey);
    }
  }

  async release(lock: Lock, k: string): Promise<void> {
    try {
      await lock.release();
    } catch (err) {
      this.events.report(k, err, "lock");
    }
  }

  /** Redis failed: compute here (still one per key in this process), or throw. */
  async failOpen(
    k: string,
    args: A,
    err: unknown,
    store: CacheStore,
  ): Promise<T> {
    this.events.report(k, err, "redis");
    if (!this.options.failOpen) throw err;
    const logger = this.options.logger;
    this.failOpenLog.note(
      logger === undefined ? store.redis.logger : logger,
      k,
      err,
    );
    const t0 = performance.now();
    let ok = false;
    try {
      const value = await this.fn(...args);
      ok = true;
      return value;
    } finally {
      this.events.emit("compute", {
        key: k,
        duration: performance.now() - t0,
        ok,
        reason: "fail-open",
        background: false,
      });
    }
  }

  /**
   * Refreshes `k` in the background unless someone in the fleet already is:
   * the lock is tried once, never waited for.
   */
  refreshInBackground(
    k: string,
    args: A,
    seenEntry: Entry<T>,
    reason: "stale" | "early",
    store: CacheStore,
  ): void {
    const fk = store.flightKey(k);
    if (this.background.has(fk)) return;
    const run = async () => {
      if (!store.ready) return;
      const lock = store.newLock(k);
      if (!await store.tryAcquire(lock)) {
        return; // another caller in the fleet is on it
      }
      let stored, gen;
      try {
        await this.joinTags(k, args, store);
        ({ stored, gen } = await store.readAsLeader(k));
      } catch (err) {
        await this.release(lock, k);
        throw err;
      }
      const cur = this.entries.decode(k, stored, this.current(gen));
      if (cur !== null && cur.createdAt !== seenEntry.createdAt) {
        await this.release(lock, k); // refreshed meanwhile
        return;
      }
      await this.compute(lock, k, args, null, gen, reason, true, store);
    };
    const p = run().catch((err) => this.events.report(k, err, "refresh"))
      .finally(
        () => this.background.delete(fk),
      );
    this.background.set(fk, p);
  }

  async refresh(args: A, redis: unknown): Promise<T> {
    const k = this.keyOf(args);
    this.options.tags?.(args); // checked before anything is sent
    const store = this.storeFor(redis);
    return await this.refreshes.run(store.flightKey(k), async () => {
      const minCreatedAt = Date.now();
      if (!store.ready) {
        return await this.failOpen(k, args, store.notReady(), store);
      }
      return await this.fill(k, args, null, "refresh", minCreatedAt, store);
    });
  }

  async warm(
    argsList: readonly A[],
    options: CachedWarmOptions | undefined,
    redis: unknown,
  ): Promise<CachedWarmResult> {
    const list = argsList; // before Array.isArray narrows it to any[]
    if (
      !Array.isArray(argsList) ||
      !argsList.every((a: unknown) => Array.isArray(a))
    ) {
      throw new TypeError(
        "warm() takes a list of argument arrays, e.g. [[1], [2]]",
      );
    }
    const { concurrency = 8, signal } = checkOptions(
      "warm() option",
      options ?? {},
      WARM_OPTIONS,
    );
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new RangeError(
        `warm(): concurrency must be an integer >= 1 (got ${concurrency})`,
      );
    }
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new TypeError("warm(): signal must be an AbortSignal");
    }
    const store = this.storeFor(redis);
    const keys = list.map((args) => { // all checked first
      this.options.tags?.(args);
      return this.keyOf(args);
    });
    const result: CachedWarmResult = { fresh: 0, filled: 0, failed: [] };
    let next = 0;
    const worker = async () => {
      while (next < list.length) {
        signal?.throwIfAborted();
        const i = next++;
        const args = list[i];
        const k = keys[i];
        try {
          const e = this.entries.decode(k, ...await store.read(k));
          if (e !== null && Date.now() < e.freshUntil) {
            result.fresh++;
            continue;
          }
          // Missing or stale: compute under the entry's lock, or wait for
          // whoever holds it; the leader looks once more before computing.
          const prev = e !== null && e.kind !== "error" ? e : null;
          await this.flights.run(
            store.flightKey(k),
            () => this.fill(k, args, prev, "refresh", 0, store),
          );
          result.filled++;
        } catch (error) {
          result.failed.push({ args, error });
          this.events.report(k, error, "refresh");
        }
      }
    };
    await Promise.all(
      Array.from({ length: Math.min(concurrency, list.length) }, worker),
    );
    signal?.throwIfAborted();
    return result;
  }

  async set(args: A, value: T, redis: unknown): Promise<void> {
    const k = this.keyOf(args);
    this.options.tags?.(args); // checked before anything is sent
    const store = this.storeFor(redis);
    if (value === undefined || value === null) {
      if (!this.options.cacheNullish) {
        throw new TypeError(
          `set(): the value for key "${k}" is ${value}, which this cached function does not store (cacheNullish is off); use invalidate() to remove the entry`,
        );
      }
    } else {
      const why = this.entries.invalid(value);
      if (why !== null) {
        throw new TypeError(`set(): the value for key "${k}" ${why}`);
      }
    }
    // The namespace's token to write with (made if there is none yet).
    const ns = await store.claimGeneration();
    const encoded = this.entries.encodeValue(k, value, Date.now(), 0, ns);
    if (encoded === null) return; // unreachable: nullish checked above
    // Calls that join a lookup from now on see the new value.
    this.forget(store.flightKey(k));
    await this.joinTags(k, args, store, encoded.px);
    try {
      await store.set(k, encoded.stored, encoded.px);
    } finally {
      this.changedHere(store, k);
    }
    this.entries.written(k);
  }

  /**
   * Adds `k` to its tags' sets before its generation is read (so an
   * `invalidateTag` from then on finds it and changes the marker its write
   * needs), kept for as long as an entry can live: `px` when known, else
   * the longest entry of a fixed `ttl`, else 2 × `lockTtl` (a ttl function:
   * the write adds it again with the entry's own lifetime).
   */
  async joinTags(
    k: string,
    args: A,
    store: CacheStore,
    px?: number,
  ): Promise<void> {
    const tagsOf = this.options.tags;
    if (tagsOf === null) return;
    const tags = tagsOf(args);
    if (tags.length === 0) return;
    const o = this.options;
    await store.addToTags(
      k,
      tags,
      px ?? (o.maxEntryMs ?? 0) + 2 * o.lockTtl,
    );
  }

  async invalidateTag(tag: string, redis: unknown): Promise<number> {
    if (typeof tag !== "string" || tag.length === 0) {
      throw new TypeError(
        `invalidateTag(): the tag must be a non-empty string (got ${
          typeof tag === "string" ? '""' : typeof tag
        })`,
      );
    }
    const store = this.storeFor(redis);
    let n = 0;
    for await (const members of store.tagMembers(tag)) {
      for (let i = 0; i < members.length; i += 16) {
        const batch = members.slice(i, i + 16);
        await Promise.all(batch.map((k) => {
          this.forget(store.flightKey(k));
          return store.invalidate(k).finally(() => this.changedHere(store, k));
        }));
      }
      // The members stay (see `CacheStore.tagMembers`): they leave the set
      // once their entries can no longer exist.
      n += members.length;
    }
    return n;
  }

  async invalidateAll(redis: unknown): Promise<void> {
    const genKey = this.genKey;
    if (genKey === null) {
      throw new TypeError(
        'invalidateAll() needs the namespace option of cached() (e.g. namespace: "prices"): the entries it invalidates are those of one namespace',
      );
    }
    const store = this.storeFor(redis);
    // Calls that join a lookup (or a refresh()) from now on read the new
    // generation.
    this.flights.forgetAll();
    this.refreshes.forgetAll();
    try {
      await store.invalidateAll();
    } finally {
      this.changedEverywhere(store, genKey);
    }
  }

  async invalidate(args: A, redis: unknown): Promise<void> {
    const k = this.keyOf(args);
    const store = this.storeFor(redis);
    this.forget(store.flightKey(k));
    try {
      await store.invalidate(k);
    } finally {
      this.changedHere(store, k);
    }
  }

  async peek(args: A, redis: unknown): Promise<CachedEntry<T> | null> {
    const k = this.keyOf(args);
    const store = this.storeFor(redis);
    const e = this.entries.decode(k, ...await store.read(k));
    if (e === null) return null;
    const info: CachedEntryInfo = {
      createdAt: e.createdAt,
      delta: e.delta,
      freshUntil: e.freshUntil,
      staleUntil: e.staleUntil,
      fresh: Date.now() < e.freshUntil,
    };
    return e.kind === "error"
      ? { ...info, kind: "error", error: failureOf(k, e) }
      : { ...info, kind: "value", value: e.value };
  }

  async idle(): Promise<void> {
    while (this.background.size > 0) {
      await Promise.all(this.background.values());
    }
  }
}

/**
 * Wraps `fn` so that its results are cached in Redis, and a missing or
 * expired value is computed once across every process sharing the Redis —
 * not once per process, as in-process caches do.
 *
 * How a call goes:
 * - Concurrent calls for one key in this process, on one Redis server,
 *   share one lookup (singleflight). A fresh entry costs one round trip
 *   (GET).
 * - On a miss, the caller takes the entry's lock (`<prefix>cache:lock:{key}`;
 *   the entry is `<prefix>cache:{key}`: one hash tag, one cluster slot) and
 *   runs `fn`. Callers elsewhere wait, subscribed to the lock's wake channel:
 *   the write publishes on it, so they read the value the moment it is there,
 *   with no polling timer. If the computing process dies, they take over when
 *   its lock lease (`lockTtl`) runs out. After `wait` ms they serve a stale
 *   value if there is one, else compute themselves (or throw, with
 *   `onWaitTimeout: "throw"`).
 * - If `fn` throws, its lock is released at once (a waiter takes over) and
 *   nothing is cached, unless `negativeTtl` is set.
 * - With `staleWhileRevalidate`, an expired value is served at once while
 *   one caller in the fleet refreshes it in the background; XFetch (`beta`)
 *   starts such refreshes a little before expiry.
 * - If Redis is unreachable, `fn` runs in this process (fail open), the
 *   `error` hook is told and the logger warns (rate-limited: at most one
 *   line per 10 s); `failOpen: false` rejects instead. A client that may
 *   not be used here (on Cloudflare Workers, one connected by another
 *   request) is no such case: the call rejects with a `TypeError`.
 * - The client is the `redis` option, or given per call
 *   (`fn.get(args, { redis })`, `fn.with(redis)`): then `cached` may be
 *   called once at module scope, and each request passes its own client.
 *
 * @typeParam A The function's parameter types.
 * @typeParam T What it resolves to.
 * @param fn The function to cache. Its arguments are passed through; its
 *   result must be encodable by the codec (JSON by default).
 * @param options `redis`, `key`, `ttl` and the rest of
 *   {@linkcode CachedOptions}.
 * @returns The cached function, with `get`, `invalidate`, `refresh`, `peek`,
 *   `redisKey` and `idle`.
 * @throws {TypeError} For a missing or mistyped option (`key` included: it
 *   is required, as a function's name changes under a minifier).
 * @throws {RangeError} For a `ttl` that is not a positive integer, a
 *   negative window, `beta` < 0, or `jitter` ≥ `ttl`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { cached, connect } from "@respite/respite";
 * await using redis = await connect();
 * let runs = 0;
 * const getUser = cached(
 *   async (id: number) => {
 *     runs++; // stands for an expensive query
 *     return { id, name: `user ${id}` };
 *   },
 *   { redis, key: (id) => `doc:user:${id}`, ttl: 60_000, staleWhileRevalidate: 10_000 },
 * );
 * await getUser.invalidate(1);
 * const users = await Promise.all(Array.from({ length: 100 }, () => getUser(1)));
 * assert.ok(users.every((u) => u.name === "user 1"));
 * assert.equal(runs, 1);
 * assert.equal((await getUser.peek(1))?.kind, "value");
 * await getUser.invalidate(1);
 * ```
 */
export function cached<A extends unknown[], T>(
  fn: (...args: A) => T | Promise<T>,
  options: CachedOptions<A, T>,
): CachedFunction<A, T> {
  const cache = new Cache<A, T>(fn, resolveCacheOptions(fn, options));
  return bound(cache, undefined);
}

/**
 * The cached function's face, with `redis` as the client of every call
 * (`undefined`: the `redis` option). `with(redis)` makes another face over
 * the same cache: one singleflight, one set of background refreshes (per
 * Redis server: see `CacheStore.flightKey`).
 */
function bound<A extends unknown[], T>(
  cache: Cache<A, T>,
  redis: CommandSurface | undefined,
): CachedFunction<A, T> {
  const call = (...args: A): Promise<T> => cache.call(args, undefined, redis);
  const fn = Object.assign(call, {
    get: (args: A, opts?: CachedCallOptions): Promise<T> => {
      if (!Array.isArray(args)) {
        return Promise.reject(
          new TypeError("get() takes the arguments as an array"),
        );
      }
      let given: unknown;
      try {
        if (opts !== undefined) checkCallOptions(opts);
        given = opts?.redis ?? redis;
      } catch (err) {
        return Promise.reject(err);
      }
      return cache.call(args, opts?.signal, given);
    },
    with: (client: RedisLike): CachedFunction<A, T> => {
      const surface = checkClient(client);
      checkRequest(surface);
      return bound(cache, surface);
    },
    set: (args: A, value: T): Promise<void> => {
      if (!Array.isArray(args)) {
        return Promise.reject(
          new TypeError(
            "set() takes the arguments as an array, then the value",
          ),
        );
      }
      return cache.set(args, value, redis);
    },
    warm: (
      argsList: readonly A[],
      options?: CachedWarmOptions,
    ): Promise<CachedWarmResult> => cache.warm(argsList, options, redis),
    invalidate: (...args: A): Promise<void> => cache.invalidate(args, redis),
    invalidateTag: (tag: string): Promise<number> =>
      cache.invalidateTag(tag, redis),
    invalidateAll: (): Promise<void> => cache.invalidateAll(redis),
    refresh: (...args: A): Promise<T> => cache.refresh(args, redis),
    peek: (...args: A): Promise<CachedEntry<T> | null> =>
      cache.peek(args, redis),
    redisKey: (...args: A): string =>
      cacheEntryKey(cache.keyOf(args), cache.options.prefix),
    idle: (): Promise<void> => cache.idle(),
  });
  // A getter (Object.assign would copy its value once).
  return Object.defineProperty(fn, "memory", {
    get(): MemoryStats | null {
      const r = redis ?? cache.options.redis;
      if (r === undefined) return null;
      const store = cache.stores.get(r);
      const t = store === undefined ? undefined : cache.tiers.get(store);
      return t?.tier.stats ?? null;
    },
  }) as CachedFunction<A, T>;
}

/** Checks the options of one call: `signal` and `redis`, nothing else. */
function checkCallOptions(opts: CachedCallOptions): void {
  checkOptions("get() option", opts, CALL_OPTIONS);
}
