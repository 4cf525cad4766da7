/**
 * Everything `cached` says to Redis: the reads (the hit path's GET, the
 * waiter's look at the entry and its lock, the leader's look), the
 * invalidation-marker protocol, the guarded write that wakes waiters, the
 * entry's lock and its wake channel. Names come from `keys.ts`.
 *
 * ## The invalidation marker
 *
 * `invalidate()` writes a new random marker at `<prefix>cache:inv:{<key>}`
 * and deletes the entry, in one script. A caller that is about to compute
 * reads the marker first ({@linkcode Generation}); its write (one script: it
 * compares the marker, SETs the entry, PUBLISHes the wake-up) lands only if
 * the marker is still the one it read. So a computation that started before
 * an `invalidate()` never writes its (possibly outdated) result. The marker
 * expires (2 × `lockTtl`, at least 1 s); a computation keeps it alive while
 * it runs, and a writer that could not prove the marker alive within half
 * its lifetime does not write.
 *
 * ## The namespace's generation
 *
 * With a `namespace`, every entry also carries the namespace's generation
 * token (`<prefix>cache:{<namespace>}:gen`, see `cacheGenerationKey`), which
 * a writer reads with the marker (creating it with `SET NX GET` when there is
 * none), and every read fetches the current token beside the entry (one
 * MGET on one server; on a cluster two GETs in parallel, to two slots). An entry written
 * under another token is a miss, so `invalidateAll()` is one `SET` of a new
 * token, whatever the number of entries; the old entries go at their own
 * expiry. A token lost from Redis (evicted, deleted) makes every entry a
 * miss, never an old one current again: entries always carry a token.
 *
 * @module
 */

import { deadline } from "../async.ts";
import { toHex } from "../hex.ts";
import type { CommandSurface } from "../adapters/surface.ts";
import { serverScope } from "../adapters/scope.ts";
import { ConnectionError, TimeoutError } from "../errors.ts";
import {
  cacheEntryKey,
  cacheKeys,
  cacheLockPrefix,
  cacheTagKey,
  WAKE_WRITTEN,
} from "../keys.ts";
import { Lock } from "../lock/lock.ts";
import { Script } from "../script.ts";
import type { Logger } from "../validate.ts";
import { Wake } from "../wake.ts";
import { type Watchdog, watchdogFor } from "./watchdog.ts";

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

// Write-through: KEYS[1] entry, KEYS[2] its invalidation marker; ARGV[1]
// stored entry, ARGV[2] px, ARGV[3] a new random marker, ARGV[4] the marker's
// lifetime (ms), ARGV[5] wake channel, ARGV[6] the wake message. A new marker,
// as invalidate() writes: a computation that started before (and read the
// old one) does not overwrite the value set here; waiters are woken with it.
const SET_SCRIPT = new Script(
  "CACHE_SET_SCRIPT",
  `redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1`,
);

// KEYS[1] a tag's sorted set: its cache keys, each scored with the server
// time (ms) until which its entry may exist; ARGV[1] a cache key that carries
// the tag, ARGV[2] how long (ms) from now its entry may exist. A score only
// ever grows; members whose time has passed are dropped (so the set holds
// only entries that may still exist, however long the tag lives); the set
// lives at least as long as its longest member.
const TAG_ADD_SCRIPT = new Script(
  "CACHE_TAG_SCRIPT",
  `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms = tonumber(ARGV[2])
local score = now + ms
local had = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0')
if had < score then
  redis.call('ZADD', KEYS[1], string.format('%.0f', score), ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%.0f', now))
if redis.call('PTTL', KEYS[1]) < ms then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1`,
);

/**
 * Added to the lifetime a cache key joins its tag with (ms): the entry is
 * written a round trip after the join, with the same lifetime from then.
 */
const TAG_SLACK_MS = 1_000;

/** Shortest lifetime of an invalidation marker (ms); it is 2 × `lockTtl` above this. */
const MARKER_MIN_MS = 1_000;
/** Entries up to this many characters travel with the wake-up; larger ones are read with GET. */
const PUBLISH_MAX = 64 * 1024;
const RAW = { raw: true };
const NOT_RAW = {};

const utf8 = new TextDecoder();
/** Bytes read raw (a binary codec's MGET) as text. */
function textOf(bytes: Uint8Array): string {
  return utf8.decode(bytes);
}

/** A token as respite makes them, or as an operator may type one: kept as it is. */
const PLAIN_TOKEN = /^[0-9A-Za-z_.:-]{1,128}$/;

/**
 * The namespace's generation token as entries carry it in their header
 * (`cache/entry.ts`): a token as respite makes them (hex) as it is; any
 * other value a `SET` from outside left there — empty, or with a space or
 * a newline, which would break the header and leave every entry a miss —
 * as `~` and its `encodeURIComponent` form. No plain token starts with `~`,
 * and that form is one-to-one, so two values never share a header token.
 */
function tokenOf(raw: string | null): string | null {
  return raw === null || PLAIN_TOKEN.test(raw)
    ? raw
    : "~" + encodeURIComponent(raw);
}

/** A new random invalidation marker. */
function newMarker(): string {
  return toHex(crypto.getRandomValues(new Uint8Array(12)));
}

/**
 * The message that wakes an entry's waiters: the entry itself when it is
 * small text (they need no GET), else {@linkcode WAKE_WRITTEN}. Always the
 * latter with a namespace: a waiter there reads the entry again beside the
 * generation token (`cache/wait.ts`), so the entry would travel for nothing.
 */
function wakeMessage(
  stored: string | Uint8Array,
  namespaced: boolean,
): string | Uint8Array {
  return !namespaced && typeof stored === "string" &&
      stored.length <= PUBLISH_MAX
    ? stored
    : WAKE_WRITTEN;
}

/** Every script a cached function runs (tests load them into a server ahead of use). */
export const CACHE_SCRIPTS: readonly Script[] = [
  WRITE_SCRIPT,
  INVALIDATE_SCRIPT,
  SET_SCRIPT,
  TAG_ADD_SCRIPT,
];

/** What GET returns for an entry: text, bytes (binary codecs) or nothing. */
export type Stored = string | Uint8Array | null;

/**
 * What a writer read before computing: the entry's invalidation marker. Its
 * write only lands if the marker is still the same. `proven` is when the
 * marker was last known to be alive (so an `invalidate()` since then would
 * still be visible): the read, then each refresh of the marker's lifetime
 * while the computation runs.
 */
export interface Generation {
  /** The marker read ("" for none). */
  marker: string;
  /** The namespace's generation token the entry is written with ("": no namespace). */
  ns: string;
  /** When it was last known alive (`performance.now()`). */
  proven: number;
}

/** What a {@linkcode CacheStore} needs. */
export interface CacheStoreOptions {
  /** The client. */
  redis: CommandSurface;
  /** The key prefix. */
  prefix: string;
  /** The lease of an entry's lock (ms); also sets the marker's lifetime. */
  lockTtl: number;
  /** How long one command may take (ms). */
  timeout: number;
  /** Where script warnings go (`undefined`: the client's). */
  logger: Logger | null | undefined;
  /** Whether entries are read as bytes. */
  binary: boolean;
  /** The namespace's generation key (`null`: no namespace). */
  genKey: string | null;
}

/**
 * The namespace's generation token beside an entry: `undefined` without a
 * namespace (not checked), `null` when there is none yet (no entry is
 * current), else the token.
 */
export type CurrentGeneration = string | null | undefined;

/** The Redis side of one cached function: the only code that talks to Redis for it. */
export class CacheStore {
  /** The client. */
  readonly redis: CommandSurface;
  /** Which server the client reaches (see `serverScope` in lib/adapters/scope.ts). */
  readonly scope: string;
  readonly #o: CacheStoreOptions;
  readonly #lockPrefix: string;
  readonly #watchdog: Watchdog;
  readonly #timeoutOpts: { timeout: number };
  readonly #readOpts: { timeout: number; raw: boolean };

  /** @param options The client, prefix, lease, timeout, logger and binary flag. */
  constructor(options: CacheStoreOptions) {
    this.redis = options.redis;
    this.scope = serverScope(options.redis);
    this.#o = options;
    this.#lockPrefix = cacheLockPrefix(options.prefix);
    this.#watchdog = watchdogFor(options.redis, options.timeout);
    this.#timeoutOpts = { timeout: options.timeout };
    this.#readOpts = { timeout: options.timeout, raw: options.binary };
  }

  /** Whether the client is connected. */
  get ready(): boolean {
    return this.redis.status === "ready";
  }

  /** The error a call that finds the client not ready fails open with. */
  notReady(): ConnectionError {
    return new ConnectionError(
      `Redis is not reachable (client ${this.redis.status})`,
    );
  }

  /**
   * What identifies cache key `k` on this store's server, for in-process
   * flights and background refreshes: stores on one server share them,
   * stores on two servers never do.
   */
  flightKey(k: string): string {
    return this.scope + "\0" + k;
  }

  /** The Redis key of the entry for cache key `k`. */
  entryKey(k: string): string {
    return cacheEntryKey(k, this.#o.prefix);
  }

  /** Runs `op` with a signal that aborts after the `timeout` option. */
  async timed<R>(op: (signal: AbortSignal) => Promise<R>): Promise<R> {
    const d = deadline(
      this.#o.timeout,
      () =>
        new TimeoutError(`Redis did not answer within ${this.#o.timeout} ms`),
    );
    try {
      return await op(d.signal);
    } finally {
      d.clear();
    }
  }

  /** The namespace's generation key (`null`: no namespace). */
  get genKey(): string | null {
    return this.#o.genKey;
  }

  /**
   * The hit path's read with a namespace: the entry and the generation
   * token, two GETs sent together, timed out by the watchdog.
   */
  readFastWithGeneration(k: string): Promise<[Stored, string | null]> {
    const entry = cacheEntryKey(k, this.#o.prefix);
    if (this.redis.masters !== undefined) {
      // A cluster: the token lives in its namespace's own slot.
      return Promise.all([
        this.readFast(k),
        this.#watchdog.guard(
          this.redis.command<string | null>(["GET", this.#o.genKey!]),
        ).then(tokenOf),
      ]);
    }
    // One server: one MGET, one reply (cheaper than two GETs).
    return this.#watchdog.guard(
      this.redis.command<[Stored, Stored]>(
        ["MGET", entry, this.#o.genKey!],
        this.#o.binary ? RAW : NOT_RAW,
      ),
    ).then(([stored, gen]) => [
      stored,
      tokenOf(gen === null || typeof gen === "string" ? gen : textOf(gen)),
    ]);
  }

  /** The namespace's current generation token, or `undefined` without one. */
  #currentGeneration(): Promise<string | null> | undefined {
    const key = this.#o.genKey;
    return key === null
      ? undefined
      : this.redis.command<string | null>(["GET", key], this.#timeoutOpts)
        .then(tokenOf);
  }

  /**
   * The namespace's generation token to write an entry with, made (`SET
   * NX GET`) when there is none; `""` without a namespace (nothing sent).
   */
  async claimGeneration(): Promise<string> {
    const key = this.#o.genKey;
    if (key === null) return "";
    const mine = newMarker();
    const had = await this.redis.command<string | null>(
      ["SET", key, mine, "NX", "GET"],
      this.#timeoutOpts,
    );
    return had === null ? mine : tokenOf(had)!;
  }

  /**
   * Makes every entry of the namespace a miss: one SET of a new generation
   * token (O(1), whatever the number of entries).
   */
  async invalidateAll(): Promise<void> {
    const key = this.#o.genKey!;
    await this.timed((signal) =>
      this.redis.command(["SET", key, newMarker()], {
        timeout: this.#o.timeout,
        signal,
      })
    );
  }

  /** The hit path's read: one GET, timed out by the watchdog. */
  readFast(k: string): Promise<Stored> {
    return this.#watchdog.guard(
      this.redis.command<Stored>(
        ["GET", cacheEntryKey(k, this.#o.prefix)],
        this.#o.binary ? RAW : NOT_RAW,
      ),
    );
  }

  /** Reads the entry, and beside it the namespace's current generation. */
  async read(k: string): Promise<[Stored, CurrentGeneration]> {
    return await Promise.all([
      this.#get(cacheEntryKey(k, this.#o.prefix)),
      this.#currentGeneration(),
    ]);
  }

  #get(entryKey: string): Promise<Stored> {
    return this.redis.command<Stored>(["GET", entryKey], this.#readOpts);
  }

  /**
   * Reads the entry, the lock's remaining lease and its holder's token (and
   * the namespace's current generation), in one round trip.
   */
  async readWithLease(
    k: string,
  ): Promise<[Stored, number, string | null, CurrentGeneration]> {
    const keys = cacheKeys(k, this.#o.prefix);
    const opts = this.#timeoutOpts;
    return await Promise.all([
      this.#get(keys.entry),
      this.redis.command<number>(["PTTL", keys.lock.key], opts),
      this.redis.command<string | null>(["GET", keys.lock.key], opts),
      this.#currentGeneration(),
    ]);
  }

  /** How long an invalidation marker lives after it was last written or kept. */
  get markerTtl(): number {
    return Math.max(MARKER_MIN_MS, 2 * this.#o.lockTtl);
  }

  /**
   * Reads the invalidation marker (and the namespace's generation, made if
   * there is none) before a computation starts.
   */
  async readGeneration(k: string): Promise<Generation> {
    const proven = performance.now();
    const [marker, ns] = await Promise.all([
      this.redis.command<string | null>(
        ["GET", cacheKeys(k, this.#o.prefix).marker],
        this.#timeoutOpts,
      ),
      this.claimGeneration(),
    ]);
    return { marker: marker ?? "", ns, proven };
  }

  /**
   * Reads the marker and the entry right after acquiring the lock; the entry
   * is current when written under `gen.ns` (with a namespace).
   */
  async readAsLeader(k: string): Promise<{ stored: Stored; gen: Generation }> {
    const [gen, stored] = await Promise.all([
      this.readGeneration(k),
      this.#get(cacheEntryKey(k, this.#o.prefix)),
    ]);
    return { stored, gen };
  }

  /**
   * Keeps the invalidation marker (if any) alive while a computation runs,
   * so an `invalidate()` during a long computation is still there when it
   * tries to write. Returns the stopper.
   */
  keepGeneration(k: string, gen: Generation): () => void {
    const marker = cacheKeys(k, this.#o.prefix).marker;
    const every = this.markerTtl / 4;
    const timer = setInterval(() => {
      const sent = performance.now();
      this.redis.command<number>(
        ["PEXPIRE", marker, this.markerTtl],
        this.#timeoutOpts,
      ).then(() => {
        if (sent > gen.proven) gen.proven = sent;
      }, () => {});
    }, every);
    return () => clearInterval(timer);
  }

  /**
   * Writes an entry (and wakes waiters) unless invalidated since `gen` was
   * read. Small text entries travel with the wake-up; larger ones (and
   * binary ones) send a marker and the woken waiters GET them, so one write
   * never pushes a large value to every subscriber at once.
   *
   * @returns `false` when nothing was sent (the marker was not proven alive
   *   recently enough); `true` when the script ran, written or not.
   */
  async write(
    k: string,
    stored: string | Uint8Array,
    px: number,
    gen: Generation,
  ): Promise<boolean> {
    // An invalidate() since the marker was last known alive could have come
    // and gone (expired) unseen: do not write.
    if (performance.now() - gen.proven > this.markerTtl / 2) return false;
    const keys = cacheKeys(k, this.#o.prefix);
    await this.timed((signal) =>
      WRITE_SCRIPT.run<number>(this.redis, {
        keys: [keys.entry, keys.marker],
        args: [
          stored,
          Math.max(1, Math.round(px)),
          gen.marker,
          keys.lock.wake,
          wakeMessage(stored, this.#o.genKey !== null),
        ],
        logger: this.#o.logger,
        signal,
      })
    );
    return true;
  }

  /**
   * Deletes the entry and writes a new invalidation marker, so a
   * computation that read the old one does not write.
   */
  async invalidate(k: string): Promise<void> {
    const keys = cacheKeys(k, this.#o.prefix);
    const marker = newMarker();
    await this.timed((signal) =>
      INVALIDATE_SCRIPT.run(this.redis, {
        keys: [keys.entry, keys.marker],
        args: [marker, this.markerTtl],
        logger: this.#o.logger,
        signal,
      })
    );
  }

  /**
   * Writes an entry computed elsewhere (write-through) with a new
   * invalidation marker, so no computation already running overwrites it,
   * and wakes the entry's waiters with it.
   */
  async set(k: string, stored: string | Uint8Array, px: number): Promise<void> {
    const keys = cacheKeys(k, this.#o.prefix);
    const marker = newMarker();
    await this.timed((signal) =>
      SET_SCRIPT.run(this.redis, {
        keys: [keys.entry, keys.marker],
        args: [
          stored,
          Math.max(1, Math.round(px)),
          marker,
          this.markerTtl,
          keys.lock.wake,
          wakeMessage(stored, this.#o.genKey !== null),
        ],
        logger: this.#o.logger,
        signal,
      })
    );
  }

  /**
   * Adds `k` to the sorted set of each of `tags` for `ms` (and a little
   * more) from now, dropping the members whose time has passed (one script
   * per tag: each set lives in its tag's slot).
   */
  async addToTags(
    k: string,
    tags: readonly string[],
    ms: number,
  ): Promise<void> {
    await Promise.all(
      tags.map((tag) =>
        this.timed((signal) =>
          TAG_ADD_SCRIPT.run(this.redis, {
            keys: [cacheTagKey(tag, this.#o.prefix)],
            args: [k, Math.max(1, Math.round(ms)) + TAG_SLACK_MS],
            logger: this.#o.logger,
            signal,
          })
        )
      ),
    );
  }

  /**
   * The cache keys in `tag`'s set, a batch at a time (ZSCAN: no command
   * blocks Redis for a large tag). Nothing is removed from the set here:
   * a computation that joined it just before an `invalidateTag` may read
   * its marker just after, and write; removing its key would hide that
   * entry from the next `invalidateTag`. Members leave by their lifetime.
   */
  async *tagMembers(tag: string): AsyncGenerator<string[]> {
    const key = cacheTagKey(tag, this.#o.prefix);
    let cursor = "0";
    do {
      const [next, flat] = await this.timed((signal) =>
        this.redis.command<[string, string[]]>(
          ["ZSCAN", key, cursor, "COUNT", 200],
          { timeout: this.#o.timeout, signal },
        )
      );
      cursor = String(next);
      const members: string[] = [];
      for (let i = 0; i < flat.length; i += 2) members.push(String(flat[i]));
      if (members.length > 0) yield members;
    } while (cursor !== "0");
  }

  /** The entry's lock (not acquired). */
  newLock(k: string): Lock {
    return new Lock(this.redis, k, {
      ttl: this.#o.lockTtl,
      autoRenew: true,
      prefix: this.#lockPrefix,
      logger: this.#o.logger,
      // One lock per cache key: a fencing counter (a key that never expires)
      // per cache key would pile up, and nothing here uses the token.
      fencing: false,
    });
  }

  /** Tries the lock once, within `timeout`; never waits for it. */
  tryAcquire(lock: Lock): Promise<boolean> {
    return this.timed((signal) => lock.acquire({ wait: 0, signal }));
  }

  /**
   * Subscribes to the wake channel of `k`'s lock, within `timeout`. On a
   * timeout the subscription is dropped, also if it completes later.
   *
   * @param onMessage Sees each message as it arrives.
   * @throws {TimeoutError} When Redis does not confirm it in time.
   */
  async subscribe(
    k: string,
    onMessage: (message: string) => void,
  ): Promise<Wake> {
    const wake = new Wake(
      this.redis,
      cacheKeys(k, this.#o.prefix).lock.wake,
      onMessage,
    );
    try {
      await wake.subscribed(this.#o.timeout);
    } catch (err) {
      wake.close();
      throw err;
    }
    return wake;
  }
}
