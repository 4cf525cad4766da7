/**
 * `cached`: cache-stampede protection across every process that shares one
 * Redis. One caller in the fleet computes a missing value under the entry's
 * distributed lock; the others are woken over pub/sub the moment it is
 * written.
 *
 * @module
 */

import { MAX_TIMER_MS } from "./async.ts";
import type { RedisClient } from "./client.ts";
import { toHex } from "./hex.ts";
import {
  type CachedOptions,
  type CacheErrorEvent,
  type CacheEvent,
  type CacheHooks,
  type ComputeEvent,
  resolveCacheOptions,
  type ResolvedCacheOptions,
  type WaitEvent,
} from "./cache_options.ts";
import {
  encodeEntry,
  type EntryKind,
  type EntryMeta,
  parseEntry,
  xfetchEarly,
} from "./cache_entry.ts";
import {
  CachedFailureError,
  CacheTimeoutError,
  CodecError,
  ConnectionError,
  TimeoutError,
} from "./errors.ts";
import { jsonCodec } from "./codec.ts";
import { Lock } from "./lock.ts";
import { checkEviction } from "./eviction.ts";
import { lockKeys } from "./keys.ts";
import { Script } from "./script.ts";
import { Singleflight } from "./singleflight.ts";

// KEYS[1] entry, KEYS[2] the entry's invalidation marker; ARGV[1] stored
// entry, ARGV[2] px, ARGV[3] the marker the writer read before it started
// computing ("" if none), ARGV[4] wake channel, ARGV[5] the message that wakes
// waiters (the entry itself for small text entries, so they need no GET).
// 1 written (and waiters woken); 0 not written: invalidated since the writer
// read the marker.
const WRITE_SCRIPT = new Script(
  "CACHE_WRITE_SCRIPT",
  `if (redis.call('GET', KEYS[2]) or '') ~= ARGV[3] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1`,
);

// KEYS[1] entry, KEYS[2] its invalidation marker; ARGV[1] a new random
// marker, ARGV[2] the marker's lifetime (ms). A writer that read another
// marker (or none) before it started computing no longer writes.
const INVALIDATE_SCRIPT = new Script(
  "CACHE_INVALIDATE_SCRIPT",
  `redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[1])
return 1`,
);

/** Shortest lifetime of an invalidation marker (ms); it is 2 × `lockTtl` above this. */
const MARKER_MIN_MS = 1_000;
/** Entries up to this many characters travel with the wake-up; larger ones are read with GET. */
const PUBLISH_MAX = 64 * 1024;
/** How many times a waiter's `wait` budget restarts when the lock changes hands. */
const MAX_HANDOFFS = 3;
const RAW = { raw: true };
const NOT_RAW = {};

/** Options for one call of a cached function. */
export interface CallOptions {
  /**
   * Stops this caller's wait: the call rejects with the signal's reason. The
   * shared lookup or computation goes on for the other callers.
   */
  signal?: AbortSignal;
}

/** An entry's metadata, as `peek()` shows it. */
export interface CachedEntryInfo {
  /** When the value's computation started (Unix ms). */
  createdAt: number;
  /** How long the computation took (ms): XFetch's Δ. */
  delta: number;
  /** Until when it is fresh (Unix ms). */
  freshUntil: number;
  /** Until when it may be served stale while it is refreshed (Unix ms). */
  staleUntil: number;
  /** Whether it is fresh now. */
  fresh: boolean;
}

/**
 * What `peek()` found: a value, or a failure remembered by negative caching.
 *
 * @typeParam T The cached function's result type.
 */
export type CachedEntry<T> =
  | (CachedEntryInfo & { kind: "value"; value: T })
  | (CachedEntryInfo & { kind: "error"; error: CachedFailureError });

/**
 * A function wrapped by {@linkcode cached}: same parameters, resolves to the
 * same result, computed at most once at a time per key across every process
 * sharing the Redis.
 *
 * @typeParam A The parameter types.
 * @typeParam T The result type.
 */
export interface CachedFunction<A extends unknown[], T> {
  /**
   * Returns the cached value, or computes it (once in the fleet) and caches it.
   *
   * @param args The arguments, passed to the function on a miss.
   * @returns The value.
   */
  (...args: A): Promise<T>;
  /**
   * Like calling the function, with per-call options (an `AbortSignal`).
   *
   * @param args The arguments.
   * @param options `signal`.
   * @returns The value.
   */
  get(args: A, options?: CallOptions): Promise<T>;
  /**
   * Removes the entry. A computation already running for it (in any process)
   * does not write its result, so the next call computes anew.
   *
   * @param args The arguments that name the entry.
   * @returns Resolves once Redis has it.
   */
  invalidate(...args: A): Promise<void>;
  /**
   * Recomputes the value now and caches it, whether or not an entry exists.
   * Deduplicated: concurrent refreshes in this process share one computation,
   * and a refresh that finds a value whose computation started after it was
   * called (in any process) returns that instead of computing again.
   *
   * @param args The arguments.
   * @returns The new value.
   */
  refresh(...args: A): Promise<T>;
  /**
   * Reads the entry without computing anything or triggering a refresh.
   *
   * @param args The arguments.
   * @returns The entry and its metadata, or `null` when there is none (or it
   *   cannot be decoded).
   */
  peek(...args: A): Promise<CachedEntry<T> | null>;
  /**
   * The Redis key of the entry for these arguments: `<prefix>cache:{<key>}`.
   *
   * @param args The arguments.
   * @returns The Redis key.
   */
  redisKey(...args: A): string;
  /**
   * Resolves when no background refresh started by this function in this
   * process is running (for tests and graceful shutdown).
   *
   * @returns Resolves when idle.
   */
  idle(): Promise<void>;
}

/** A decoded entry. */
interface Entry<T> extends EntryMeta {
  kind: EntryKind;
  value: T;
  failure?: { name: string; message: string };
}

type Decoded<T> = Entry<T> | "tombstone" | null;

/**
 * What a writer read before computing: the entry's invalidation marker. Its
 * write only lands if the marker is still the same. `proven` is when the
 * marker was last known to be alive (so an `invalidate()` since then would
 * still be visible): the read, then each refresh of the marker's lifetime
 * while the computation runs.
 */
interface Generation {
  marker: string;
  proven: number;
}

/** A subscription to an entry's wake channel, with a sleep that a message ends. */
class Waker {
  seq = 0;
  /** The last entry a writer published (text codecs), not yet looked at. */
  entry: string | null = null;
  #wake: (() => void) | null = null;
  #unsubscribe: (() => Promise<void>) | null = null;

  /** Subscribes; rejects with a `TimeoutError` after `timeout` ms. */
  static async open(
    redis: RedisClient,
    channel: string,
    timeout: number,
  ): Promise<Waker> {
    const w = new Waker();
    const subscribed = redis.subscribe(channel, (message) => {
      if (message.startsWith("rsp1 ")) w.entry = message;
      w.seq++;
      const wake = w.#wake;
      w.#wake = null;
      wake?.();
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new TimeoutError(
              `Redis did not confirm the subscription within ${timeout} ms`,
            ),
          ),
        Math.min(timeout, MAX_TIMER_MS),
      );
    });
    try {
      w.#unsubscribe = await Promise.race([subscribed, timedOut]);
    } catch (err) {
      // If it completes later, do not keep the subscription.
      subscribed.then((u) => u().catch(() => {}), () => {});
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return w;
  }

  /** Resolves after `ms`, or at once when a message arrives. */
  sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this.#wake === done) this.#wake = null;
        resolve();
      };
      const timer = setTimeout(done, Math.min(Math.max(ms, 0), MAX_TIMER_MS));
      this.#wake = done;
    });
  }

  close(): void {
    const u = this.#unsubscribe;
    this.#unsubscribe = null;
    u?.().catch(() => {});
  }
}

/** Reads that share one watchdog timer. */
interface Epoch {
  started: number;
  pending: number;
  rejects: Array<(err: unknown) => void>;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * Times out hit-path reads without a timer per read (a timer per command
 * costs more than the read itself at high concurrency): reads that start
 * within the same quarter of `timeout` share one timer, which fires between
 * `timeout` and 1.25 × `timeout` after each of them started.
 */
class Watchdog {
  readonly #timeout: number;
  #epoch: Epoch | null = null;

  constructor(timeout: number) {
    this.#timeout = timeout;
  }

  guard<T>(p: Promise<T>): Promise<T> {
    const now = performance.now();
    let e = this.#epoch;
    if (e === null || now - e.started > this.#timeout / 4) {
      const epoch: Epoch = {
        started: now,
        pending: 0,
        rejects: [],
        timer: setTimeout(() => {
          if (this.#epoch === epoch) this.#epoch = null;
          const err = new TimeoutError(
            `Redis did not answer within ${this.#timeout} ms`,
          );
          for (const reject of epoch.rejects) reject(err);
        }, Math.min(this.#timeout * 1.25, MAX_TIMER_MS)),
      };
      this.#epoch = e = epoch;
    }
    const epoch = e;
    epoch.pending++;
    return new Promise<T>((resolve, reject) => {
      epoch.rejects.push(reject);
      p.then((v) => {
        this.#settle(epoch);
        resolve(v);
      }, (err) => {
        this.#settle(epoch);
        reject(err);
      });
    });
  }

  #settle(epoch: Epoch): void {
    if (--epoch.pending === 0) {
      clearTimeout(epoch.timer);
      if (this.#epoch === epoch) this.#epoch = null;
    }
  }
}

/** Watchdogs shared by every cached function on a client, per timeout. */
const watchdogs = new WeakMap<RedisClient, Map<number, Watchdog>>();

function watchdogFor(redis: RedisClient, timeout: number): Watchdog {
  let byTimeout = watchdogs.get(redis);
  if (byTimeout === undefined) {
    byTimeout = new Map();
    watchdogs.set(redis, byTimeout);
  }
  let w = byTimeout.get(timeout);
  if (w === undefined) {
    w = new Watchdog(timeout);
    byTimeout.set(timeout, w);
  }
  return w;
}

/** The state and logic behind one cached function. */
class Cache<A extends unknown[], T> {
  readonly o: ResolvedCacheOptions<A, T>;
  readonly fn: (...args: A) => T | Promise<T>;
  readonly flights = new Singleflight<T>();
  readonly refreshes = new Singleflight<T>();
  readonly background = new Map<string, Promise<void>>();
  readonly lockPrefix: string;
  readonly binary: boolean;
  readonly watchdog: Watchdog;

  constructor(
    fn: (...args: A) => T | Promise<T>,
    o: ResolvedCacheOptions<A, T>,
  ) {
    this.fn = fn;
    this.o = o;
    this.lockPrefix = `${o.prefix}cache:`;
    this.binary = o.codec.binary === true;
    this.watchdog = watchdogFor(o.redis, o.timeout);
  }

  get redis(): RedisClient {
    return this.o.redis;
  }

  entryKey(k: string): string {
    return `${this.o.prefix}cache:{${k}}`;
  }

  keyOf(args: A): string {
    return this.o.key(args);
  }

  newLock(k: string): Lock {
    return new Lock(this.redis, k, {
      ttl: this.o.lockTtl,
      autoRenew: true,
      prefix: this.lockPrefix,
      logger: this.o.logger,
      // One lock per cache key: a fencing counter (a key that never expires)
      // per cache key would pile up, and nothing here uses the token.
      fencing: false,
    });
  }

  // ---------------------------------------------------------------- hooks

  emit(name: "hit" | "stale" | "miss", event: CacheEvent): void;
  emit(name: "compute", event: ComputeEvent): void;
  emit(name: "wait", event: WaitEvent): void;
  emit(name: "error", event: CacheErrorEvent): void;
  emit(name: keyof CacheHooks, event: CacheEvent): void {
    const hook = this.o.hooks[name] as ((e: CacheEvent) => void) | undefined;
    if (hook === undefined) return;
    try {
      hook(event);
    } catch (err) {
      if (name !== "error" && this.o.hooks.error !== undefined) {
        this.emit("error", { key: event.key, error: err, phase: "hook" });
      } else {
        const logger = this.o.logger === undefined
          ? this.redis.logger
          : this.o.logger;
        logger?.warn(`respite: the cached() ${name} hook threw: ${err}`);
      }
    }
  }

  report(k: string, error: unknown, phase: CacheErrorEvent["phase"]): void {
    this.emit("error", { key: k, error, phase });
  }

  // ---------------------------------------------------------------- Redis

  /** Runs `op` with a signal that aborts after the `timeout` option. */
  async timed<R>(op: (signal: AbortSignal) => Promise<R>): Promise<R> {
    const ac = new AbortController();
    const timer = setTimeout(
      () =>
        ac.abort(
          new TimeoutError(`Redis did not answer within ${this.o.timeout} ms`),
        ),
      this.o.timeout,
    );
    try {
      return await op(ac.signal);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The hit path's read: one GET, timed out by the watchdog. */
  readFast(k: string): Promise<string | Uint8Array | null> {
    return this.watchdog.guard(
      this.redis.command<string | Uint8Array | null>(
        ["GET", this.entryKey(k)],
        this.binary ? RAW : NOT_RAW,
      ),
    );
  }

  read(k: string): Promise<string | Uint8Array | null> {
    return this.redis.command<string | Uint8Array | null>(
      ["GET", this.entryKey(k)],
      { timeout: this.o.timeout, raw: this.binary },
    );
  }

  /**
   * Reads the entry, the lock's remaining lease and its holder's token, in
   * one round trip.
   */
  async readWithLease(
    k: string,
  ): Promise<[string | Uint8Array | null, number, string | null]> {
    const lockKey = lockKeys(k, this.lockPrefix).key;
    const opts = { timeout: this.o.timeout };
    const [stored, pttl, holder] = await Promise.all([
      this.read(k),
      this.redis.command<number>(["PTTL", lockKey], opts),
      this.redis.command<string | null>(["GET", lockKey], opts),
    ]);
    return [stored, pttl, holder];
  }

  /** The key of the entry's invalidation marker (same hash tag). */
  markerKey(k: string): string {
    return `${this.o.prefix}cache:inv:{${k}}`;
  }

  /** How long an invalidation marker lives after it was last written or kept. */
  get markerTtl(): number {
    return Math.max(MARKER_MIN_MS, 2 * this.o.lockTtl);
  }

  /** Reads the invalidation marker before a computation starts. */
  async readGeneration(k: string): Promise<Generation> {
    const proven = performance.now();
    const marker = await this.redis.command<string | null>(
      ["GET", this.markerKey(k)],
      { timeout: this.o.timeout },
    );
    return { marker: marker ?? "", proven };
  }

  /** Reads the marker and the entry right after acquiring the lock. */
  async readAsLeader(
    k: string,
  ): Promise<{ stored: string | Uint8Array | null; gen: Generation }> {
    const [gen, stored] = await Promise.all([
      this.readGeneration(k),
      this.read(k),
    ]);
    return { stored, gen };
  }

  /**
   * Keeps the invalidation marker (if any) alive while a computation runs,
   * so an `invalidate()` during a long computation is still there when it
   * tries to write. Returns the stopper.
   */
  keepGeneration(k: string, gen: Generation): () => void {
    const every = this.markerTtl / 4;
    const timer = setInterval(() => {
      const sent = performance.now();
      this.redis.command<number>(
        ["PEXPIRE", this.markerKey(k), this.markerTtl],
        { timeout: this.o.timeout },
      ).then(() => {
        if (sent > gen.proven) gen.proven = sent;
      }, () => {});
    }, every);
    return () => clearInterval(timer);
  }

  notReady(): ConnectionError {
    return new ConnectionError(
      `Redis is not reachable (client ${this.redis.status})`,
    );
  }

  // ---------------------------------------------------------------- codec

  /** The last undecodable value reported per key, so one is reported once. */
  readonly reported = new Map<string, string>();

  /** Reports an undecodable entry, once per stored value. */
  reportCorrupt(k: string, stored: string | Uint8Array, err: CodecError): void {
    const text = typeof stored === "string"
      ? stored
      : new TextDecoder().decode(stored);
    if (this.reported.get(k) === text) return;
    if (this.reported.size >= 1_000) this.reported.clear();
    this.reported.set(k, text);
    this.report(k, err, "decode");
  }

  decode(k: string, stored: string | Uint8Array | null): Decoded<T> {
    if (stored === null) return null;
    let raw;
    try {
      raw = parseEntry(stored);
    } catch (err) {
      this.reportCorrupt(
        k,
        stored,
        new CodecError(
          `The entry at ${this.entryKey(k)} is not a cached() entry (${
            (err as Error).message
          }); treated as a miss and will be overwritten`,
          { key: k, cause: err },
        ),
      );
      return null;
    }
    if (raw === "tombstone") return raw;
    try {
      let value: T;
      let failure: Entry<T>["failure"];
      switch (raw.kind) {
        case "undefined":
          value = undefined as T;
          break;
        case "null":
          value = null as T;
          break;
        case "error": {
          const text = typeof raw.payload === "string"
            ? raw.payload
            : new TextDecoder().decode(raw.payload);
          const f = JSON.parse(text) as { name: string; message: string };
          if (typeof f?.name !== "string" || typeof f.message !== "string") {
            throw new TypeError("malformed failure record");
          }
          value = undefined as T;
          failure = f;
          break;
        }
        default: {
          const codec = this.o.codec;
          value = codec.binary === true
            ? codec.decode(raw.payload as Uint8Array)
            : codec.decode(raw.payload as string);
        }
      }
      return {
        createdAt: raw.createdAt,
        delta: raw.delta,
        freshUntil: raw.freshUntil,
        staleUntil: raw.staleUntil,
        kind: raw.kind,
        value,
        failure,
      };
    } catch (err) {
      this.reportCorrupt(
        k,
        stored,
        new CodecError(
          `The entry at ${this.entryKey(k)} could not be decoded (${
            (err as Error)?.message ?? err
          }); treated as a miss and will be overwritten`,
          { key: k, cause: err },
        ),
      );
      return null;
    }
  }

  /** The stored form of a value, with its metadata and Redis expiry. */
  encodeValue(
    k: string,
    value: T,
    createdAt: number,
    delta: number,
  ): { stored: string | Uint8Array; px: number } | null {
    const o = this.o;
    let kind: EntryKind;
    let payload: string | Uint8Array = "";
    if (value === undefined || value === null) {
      if (!o.cacheNullish) return null;
      kind = value === undefined ? "undefined" : "null";
    } else {
      kind = "value";
      const codec = o.codec;
      try {
        payload = codec.binary === true
          ? codec.encode(value)
          : codec.encode(value);
      } catch (err) {
        throw new CodecError(
          `cached(): the result for key "${k}" cannot be encoded by the ${
            o.codec === jsonCodec ? "JSON" : "configured"
          } codec (${
            String((err as Error)?.message ?? err).replace(/\s+/g, " ")
          }); nothing was written. ` +
            "Return a value the codec can store (JSON: no BigInt, no cycles), or pass a codec option.",
          { key: k, cause: err },
        );
      }
      const ok = codec.binary === true
        ? payload instanceof Uint8Array
        : typeof payload === "string";
      if (!ok) {
        throw new CodecError(
          `cached(): the codec's encode() returned ${typeof payload}, not ${
            codec.binary === true ? "a Uint8Array" : "a string"
          }, for key "${k}"; nothing was written`,
          { key: k },
        );
      }
    }
    const now = Date.now();
    const fresh = o.ttl -
      (o.jitter > 0 ? Math.floor(o.random() * (o.jitter + 1)) : 0);
    const freshUntil = now + fresh;
    const staleUntil = freshUntil + o.staleWhileRevalidate;
    const keep = fresh + Math.max(o.staleWhileRevalidate, o.staleIfError);
    return {
      stored: encodeEntry(
        { createdAt, delta, freshUntil, staleUntil },
        kind,
        payload,
      ),
      px: keep,
    };
  }

  encodeFailure(
    err: unknown,
    createdAt: number,
    delta: number,
  ): { stored: string; px: number } {
    const e = err as { name?: unknown; message?: unknown } | null;
    const name = typeof e?.name === "string" ? e.name : "Error";
    const message = typeof e?.message === "string" ? e.message : String(err);
    const freshUntil = Date.now() + this.o.negativeTtl;
    return {
      stored: encodeEntry(
        { createdAt, delta, freshUntil, staleUntil: freshUntil },
        "error",
        JSON.stringify({ name, message }),
      ) as string,
      px: this.o.negativeTtl,
    };
  }

  failureOf(k: string, e: Entry<T>): CachedFailureError {
    return new CachedFailureError(e.failure!.message, {
      key: k,
      errorName: e.failure!.name,
    });
  }

  /** The value of an acceptable entry (throws for a remembered failure). */
  valueOf(k: string, e: Entry<T>): T {
    if (e.kind === "error") throw this.failureOf(k, e);
    return e.value;
  }

  /** Whether a waiter (or a new leader) can use this entry. */
  acceptable(
    e: Decoded<T>,
    now: number,
    minCreatedAt: number,
  ): boolean {
    return e !== null && e !== "tombstone" && now < e.freshUntil &&
      e.createdAt >= minCreatedAt;
  }

  // ---------------------------------------------------------------- flows

  call(args: A, signal?: AbortSignal): Promise<T> {
    let k: string;
    try {
      k = this.keyOf(args);
      if (signal !== undefined && !(signal instanceof AbortSignal)) {
        throw new TypeError("signal must be an AbortSignal");
      }
    } catch (err) {
      return Promise.reject(err);
    }
    checkEviction(this.redis, this.o.logger);
    return this.flights.run(k, () => this.lookup(k, args), { signal });
  }

  /** One lookup, shared by the concurrent calls for `k` in this process. */
  async lookup(k: string, args: A): Promise<T> {
    if (this.redis.status !== "ready") {
      return await this.failOpen(k, args, this.notReady());
    }
    let stored;
    try {
      stored = await this.readFast(k);
    } catch (err) {
      return await this.failOpen(k, args, err);
    }
    const e = this.decode(k, stored);
    const now = Date.now();
    if (e !== null && e !== "tombstone") {
      if (now < e.freshUntil) {
        if (this.o.hooks.hit !== undefined) this.emit("hit", { key: k });
        if (e.kind === "error") throw this.failureOf(k, e);
        if (
          this.o.beta > 0 && xfetchEarly(e, now, this.o.beta, this.o.random)
        ) {
          this.refreshInBackground(k, args, e, "early");
        }
        return e.value;
      }
      if (now < e.staleUntil) {
        this.emit("stale", { key: k });
        this.refreshInBackground(k, args, e, "stale");
        return e.value;
      }
    }
    this.emit("miss", { key: k });
    const prev = e !== null && e !== "tombstone" && e.kind !== "error"
      ? e
      : null;
    return await this.fill(k, args, prev, "miss", 0);
  }

  /**
   * The miss path: take the entry's lock and compute, or wait for whoever
   * holds it to write the value. Waiting does not poll: the writer publishes
   * on the lock's wake channel, and so does the lock's release; the only
   * timer is the holder's remaining lease (a holder that died) and the `wait`
   * bound.
   */
  async fill(
    k: string,
    args: A,
    prev: Entry<T> | null,
    reason: "miss" | "refresh",
    minCreatedAt: number,
  ): Promise<T> {
    const start = performance.now();
    let deadline = start + this.o.wait;
    let waker: Waker | null = null;
    let tryLock = true;
    // The lock holder last seen, and how often the budget restarted because
    // the lock changed hands (a new leader deserves a whole `wait`).
    let holder: string | null = null;
    let handoffs = 0;
    const waited = (outcome: WaitEvent["outcome"]) => {
      if (waker !== null) {
        this.emit("wait", {
          key: k,
          duration: performance.now() - start,
          outcome,
        });
      }
    };
    try {
      while (true) {
        if (tryLock) {
          const lock = this.newLock(k);
          let got: boolean;
          try {
            got = await this.timed((signal) =>
              lock.acquire({ wait: 0, signal })
            );
          } catch (err) {
            waited("error");
            return await this.failOpen(k, args, err);
          }
          if (got) {
            waited("lead");
            return await this.lead(lock, k, args, prev, reason, minCreatedAt);
          }
        }
        if (waker === null) {
          // Subscribe before looking again, so no wake-up is lost.
          try {
            waker = await Waker.open(
              this.redis,
              lockKeys(k, this.lockPrefix).wake,
              this.o.timeout,
            );
          } catch (err) {
            waited("error");
            return await this.failOpen(k, args, err);
          }
        }
        if (waker.entry !== null) {
          // The writer sent the entry with the wake-up: no GET needed.
          const sent = this.decode(k, waker.entry);
          waker.entry = null;
          if (this.acceptable(sent, Date.now(), minCreatedAt)) {
            waited("value");
            return this.valueOf(k, sent as Entry<T>);
          }
        }
        const seq = waker.seq;
        let stored, pttl, owner;
        try {
          [stored, pttl, owner] = await this.readWithLease(k);
        } catch (err) {
          waited("error");
          return await this.failOpen(k, args, err);
        }
        if (owner !== null) {
          if (holder !== null && owner !== holder && handoffs < MAX_HANDOFFS) {
            handoffs++;
            deadline = performance.now() + this.o.wait;
          }
          holder = owner;
        }
        const e = this.decode(k, stored);
        if (this.acceptable(e, Date.now(), minCreatedAt)) {
          waited("value");
          return this.valueOf(k, e as Entry<T>);
        }
        if (
          e !== null && e !== "tombstone" && e.kind !== "error" &&
          (prev === null || e.createdAt > prev.createdAt)
        ) {
          prev = e;
        }
        const remaining = deadline - performance.now();
        if (remaining <= 0) {
          waited("timeout");
          return await this.waitedOut(k, args, prev, reason);
        }
        if (pttl === -2) {
          tryLock = true; // free: the holder gave up without a usable value
          continue;
        }
        tryLock = false;
        if (waker.seq !== seq) continue; // woken while reading: read again
        // Past the holder's lease (a holder that died), plus jitter so
        // processes do not retry in step; or until woken.
        const delay = pttl === -1
          ? 1_000
          : pttl + 1 + this.o.random() * Math.min(20, 1 + pttl / 10);
        await waker.sleep(Math.min(delay, remaining));
      }
    } finally {
      waker?.close();
    }
  }

  /** The `wait` bound ran out: serve stale, throw, or compute unlocked. */
  async waitedOut(
    k: string,
    args: A,
    prev: Entry<T> | null,
    reason: "miss" | "refresh",
  ): Promise<T> {
    const o = this.o;
    if (
      prev !== null && reason !== "refresh" &&
      Date.now() <
        prev.freshUntil + Math.max(o.staleIfError, o.staleWhileRevalidate)
    ) {
      this.emit("stale", { key: k });
      return prev.value;
    }
    if (o.onWaitTimeout === "throw") {
      throw new CacheTimeoutError(
        `cached(): gave up waiting for another process to compute "${k}" after ${o.wait} ms (wait option); no stale value to serve`,
        { key: k, wait: o.wait },
      );
    }
    let gen: Generation | null = null;
    try {
      gen = await this.readGeneration(k);
    } catch (err) {
      this.report(k, err, "redis"); // computed, but not written
    }
    return await this.compute(null, k, args, null, gen, "timeout", false);
  }

  /** Holding the lock: look once more, then compute. */
  async lead(
    lock: Lock,
    k: string,
    args: A,
    prev: Entry<T> | null,
    reason: "miss" | "refresh",
    minCreatedAt: number,
  ): Promise<T> {
    let stored, gen;
    try {
      ({ stored, gen } = await this.readAsLeader(k));
    } catch (err) {
      await this.release(lock, k);
      return await this.failOpen(k, args, err);
    }
    const e = this.decode(k, stored);
    if (this.acceptable(e, Date.now(), minCreatedAt)) {
      // Written just before we took the lock.
      await this.release(lock, k);
      return this.valueOf(k, e as Entry<T>);
    }
    if (
      e !== null && e !== "tombstone" && e.kind !== "error" &&
      (prev === null || e.createdAt > prev.createdAt)
    ) {
      prev = e;
    }
    return await this.compute(
      lock,
      k,
      args,
      reason === "refresh" ? null : prev,
      gen,
      reason,
      false,
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
    reason: ComputeEvent["reason"],
    background: boolean,
  ): Promise<T> {
    const createdAt = Date.now();
    const t0 = performance.now();
    const stopKeeping = gen === null ? null : this.keepGeneration(k, gen);
    let value: T;
    try {
      value = await this.fn(...args);
    } catch (err) {
      stopKeeping?.();
      const duration = performance.now() - t0;
      this.emit("compute", { key: k, duration, ok: false, reason, background });
      try {
        if (
          this.o.negativeTtl > 0 && lock !== null && gen !== null &&
          this.isNegative(err)
        ) {
          const { stored, px } = this.encodeFailure(err, createdAt, duration);
          await this.store(k, stored, px, gen);
        }
      } finally {
        if (lock !== null) await this.release(lock, k);
      }
      if (
        prev !== null && Date.now() < prev.freshUntil + this.o.staleIfError
      ) {
        this.report(k, err, "stale");
        this.emit("stale", { key: k });
        return prev.value;
      }
      throw err;
    }
    stopKeeping?.();
    const delta = performance.now() - t0;
    this.emit("compute", {
      key: k,
      duration: delta,
      ok: true,
      reason,
      background,
    });
    try {
      const encoded = this.encodeValue(k, value, createdAt, delta);
      if (encoded !== null && gen !== null) {
        await this.store(k, encoded.stored, encoded.px, gen);
      }
    } finally {
      if (lock !== null) await this.release(lock, k);
    }
    return value;
  }

  isNegative(err: unknown): boolean {
    try {
      return this.o.isNegative(err);
    } catch {
      return false;
    }
  }

  /**
   * Writes an entry (and wakes waiters) unless invalidated since `gen` was
   * read. Small text entries travel with the wake-up; larger ones (and
   * binary ones) send a marker and the woken waiters GET them, so one write
   * never pushes a large value to every subscriber at once.
   */
  async store(
    k: string,
    stored: string | Uint8Array,
    px: number,
    gen: Generation,
  ): Promise<void> {
    // An invalidate() since the marker was last known alive could have come
    // and gone (expired) unseen: do not write.
    if (performance.now() - gen.proven > this.markerTtl / 2) return;
    try {
      await this.timed((signal) =>
        WRITE_SCRIPT.run<number>(this.redis, {
          keys: [this.entryKey(k), this.markerKey(k)],
          args: [
            stored,
            Math.max(1, Math.round(px)),
            gen.marker,
            lockKeys(k, this.lockPrefix).wake,
            typeof stored === "string" && stored.length <= PUBLISH_MAX
              ? stored
              : "written",
          ],
          logger: this.o.logger,
          signal,
        })
      );
      this.reported.delete(k);
    } catch (err) {
      this.report(k, err, "write");
    }
  }

  async release(lock: Lock, k: string): Promise<void> {
    try {
      await lock.release();
    } catch (err) {
      this.report(k, err, "lock");
    }
  }

  /** Redis failed: compute here (still one per key in this process), or throw. */
  async failOpen(k: string, args: A, err: unknown): Promise<T> {
    this.report(k, err, "redis");
    if (!this.o.failOpen) throw err;
    const t0 = performance.now();
    try {
      const value = await this.fn(...args);
      this.emit("compute", {
        key: k,
        duration: performance.now() - t0,
        ok: true,
        reason: "fail-open",
        background: false,
      });
      return value;
    } catch (e) {
      this.emit("compute", {
        key: k,
        duration: performance.now() - t0,
        ok: false,
        reason: "fail-open",
        background: false,
      });
      throw e;
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
  ): void {
    if (this.background.has(k)) return;
    const run = async () => {
      if (this.redis.status !== "ready") return;
      const lock = this.newLock(k);
      if (!await this.timed((signal) => lock.acquire({ wait: 0, signal }))) {
        return; // another caller in the fleet is on it
      }
      let stored, gen;
      try {
        ({ stored, gen } = await this.readAsLeader(k));
      } catch (err) {
        await this.release(lock, k);
        throw err;
      }
      const cur = this.decode(k, stored);
      if (
        cur !== null && cur !== "tombstone" &&
        cur.createdAt !== seenEntry.createdAt
      ) {
        await this.release(lock, k); // refreshed meanwhile
        return;
      }
      await this.compute(
        lock,
        k,
        args,
        null,
        gen,
        reason,
        true,
      );
    };
    const p = run().catch((err) => this.report(k, err, "refresh")).finally(
      () => this.background.delete(k),
    );
    this.background.set(k, p);
  }

  async refresh(args: A): Promise<T> {
    const k = this.keyOf(args);
    return await this.refreshes.run(k, async () => {
      const minCreatedAt = Date.now();
      if (this.redis.status !== "ready") {
        return await this.failOpen(k, args, this.notReady());
      }
      return await this.fill(k, args, null, "refresh", minCreatedAt);
    });
  }

  async invalidate(args: A): Promise<void> {
    const k = this.keyOf(args);
    this.flights.forget(k);
    const marker = toHex(crypto.getRandomValues(new Uint8Array(12)));
    await this.timed((signal) =>
      INVALIDATE_SCRIPT.run(this.redis, {
        keys: [this.entryKey(k), this.markerKey(k)],
        args: [marker, this.markerTtl],
        logger: this.o.logger,
        signal,
      })
    );
  }

  async peek(args: A): Promise<CachedEntry<T> | null> {
    const k = this.keyOf(args);
    const e = this.decode(k, await this.read(k));
    if (e === null || e === "tombstone") return null;
    const info: CachedEntryInfo = {
      createdAt: e.createdAt,
      delta: e.delta,
      freshUntil: e.freshUntil,
      staleUntil: e.staleUntil,
      fresh: Date.now() < e.freshUntil,
    };
    return e.kind === "error"
      ? { ...info, kind: "error", error: this.failureOf(k, e) }
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
 * - Concurrent calls for one key in this process share one lookup
 *   (singleflight). A fresh entry costs one round trip (GET).
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
 * - If Redis is unreachable, `fn` runs in this process (fail open) and the
 *   `error` hook is told; `failOpen: false` rejects instead.
 *
 * @typeParam A The function's parameter types.
 * @typeParam T What it resolves to.
 * @param fn The function to cache. Its arguments are passed through; its
 *   result must be encodable by the codec (JSON by default).
 * @param options `redis`, `key`, `ttl` and the rest of
 *   {@linkcode CachedOptions}.
 * @returns The cached function, with `get`, `invalidate`, `refresh`, `peek`,
 *   `redisKey` and `idle`.
 * @throws {TypeError} For a missing or mistyped option, or a missing `key`
 *   for a function with parameters.
 * @throws {RangeError} For a `ttl` that is not a positive integer, a
 *   negative window, `beta` < 0, or `jitter` ≥ `ttl`.
 *
 * @example
 * ```ts
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
 * console.assert(users.every((u) => u.name === "user 1") && runs === 1);
 * console.assert((await getUser.peek(1))?.kind === "value");
 * await getUser.invalidate(1);
 * ```
 */
export function cached<A extends unknown[], T>(
  fn: (...args: A) => T | Promise<T>,
  options: CachedOptions<A, T>,
): CachedFunction<A, T> {
  const cache = new Cache<A, T>(fn, resolveCacheOptions(fn, options));
  const call = (...args: A): Promise<T> => cache.call(args);
  return Object.assign(call, {
    get: (args: A, opts?: CallOptions): Promise<T> => {
      if (!Array.isArray(args)) {
        return Promise.reject(
          new TypeError("get() takes the arguments as an array"),
        );
      }
      return cache.call(args, opts?.signal);
    },
    invalidate: (...args: A): Promise<void> => cache.invalidate(args),
    refresh: (...args: A): Promise<T> => cache.refresh(args),
    peek: (...args: A): Promise<CachedEntry<T> | null> => cache.peek(args),
    redisKey: (...args: A): string => cache.entryKey(cache.keyOf(args)),
    idle: (): Promise<void> => cache.idle(),
  });
}
