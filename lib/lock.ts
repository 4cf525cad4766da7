/**
 * The distributed lock: `SET key value NX PX ttl` with a fencing counter,
 * compare-and-delete release that wakes waiters over pub/sub, compare-and-
 * PEXPIRE extension, auto-renewal, and a signal that aborts when the lock is
 * lost.
 *
 * @module
 */

import { abortable, delay, MAX_TIMER_MS, unrefTimer } from "./async.ts";
import { RedisClient } from "./client.ts";
import { randomHex128 } from "./hex.ts";
import { describe } from "./validate.ts";
import {
  ConnectionError,
  LockLostError,
  type LockLostReason,
  LockNotHeldError,
  type LockNotHeldReason,
  TimeoutError,
} from "./errors.ts";
import {
  checkPrefix,
  DEFAULT_PREFIX,
  type LockKeys,
  lockKeys,
  lockPattern,
  wakeChannel,
} from "./keys.ts";
import type { Logger } from "./validate.ts";
import { isWellFormed } from "./resp_encoder.ts";
import { Script } from "./script.ts";
import { checkEviction } from "./eviction.ts";

// KEYS[1] lock key, KEYS[2] fence counter (only when fencing); ARGV[1] value,
// ARGV[2] ttl (ms), ARGV[3] "1" to fence, "0" not to (the counter is untouched).
// Acquired: {1, fence} ({1} without fencing). Held by someone: {0, pttl of the
// holder}.
//
// A missing counter (a fresh server, or one that lost it: a restart without
// persistence, FLUSHALL, eviction) starts from the server's clock in
// microseconds, not from 1, so tokens keep increasing across the loss: every
// token issued before was at most its seed time plus one per acquisition,
// which stays below the clock (fewer than one acquisition per microsecond).
// Below 2^53 until the year 2255, so exact as a Lua double and a JS number.
const ACQUIRE_SCRIPT = new Script(
  "ACQUIRE_SCRIPT",
  `if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if ARGV[3] == '0' then return {1} end
  if redis.call('EXISTS', KEYS[2]) == 1 then
    return {1, redis.call('INCR', KEYS[2])}
  end
  local t = redis.call('TIME')
  local f = tonumber(t[1]) * 1000000 + tonumber(t[2])
  redis.call('SET', KEYS[2], string.format('%.0f', f))
  return {1, f}
end
return {0, redis.call('PTTL', KEYS[1])}`,
);

// KEYS[1] lock key; ARGV[1] value, ARGV[2] wake channel.
// 1 released (and waiters woken), 0 held by another value, -1 no such key.
const UNLOCK_SCRIPT = new Script(
  "UNLOCK_SCRIPT",
  `local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], 'released')
  return 1
end
if v then return 0 end
return -1`,
);

// KEYS[1] lock key; ARGV[1] value, ARGV[2] new ttl (ms).
// 1 extended, 0 held by another value, -1 no such key.
const EXTEND_SCRIPT = new Script(
  "EXTEND_SCRIPT",
  `local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if v then return 0 end
return -1`,
);

// KEYS[1] lock key; ARGV[1] wake channel. Returns how many keys it deleted.
const RESET_SCRIPT = new Script(
  "RESET_SCRIPT",
  `local n = redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], 'reset')
return n`,
);

/** Re-check interval for a lock key that has no expiry (set by hand). */
const NO_EXPIRY_RECHECK = 1_000;
/** The abort reason of an acquisition whose `wait` ran out. */
const WAIT_RAN_OUT = Symbol("wait ran out");
/** Longest pause between two compare-and-deletes of an abandoned try. */
const CLEANUP_MAX_GAP = 500;

/**
 * The safety margin taken off every lease for clock drift between this
 * process and Redis: `ttl / 100 + 2` ms (Redlock's drift factor of 1 % plus
 * 2 ms, which also covers Redis keeping expiries in whole ms), at most half
 * the lease so that leases of a few ms stay acquirable.
 */
function leaseMargin(ttl: number): number {
  return Math.min(ttl * 0.01 + 2, ttl / 2);
}

/** Pause before retrying a try that got no answer: exponential, with jitter. */
function retryDelay(failures: number): number {
  const base = Math.min(1_000, 10 * 2 ** Math.min(failures - 1, 10));
  return base / 2 + Math.random() * base / 2;
}

/** Options for {@linkcode Lock}. */
export interface LockOptions {
  /**
   * The lease, in ms: a positive integer (default 30_000). The key expires
   * after it unless extended or renewed. This process counts it from when it
   * sent the acquisition (or renewal), less a clock-drift margin of
   * `ttl / 100 + 2` ms (at most `ttl / 2`).
   */
  ttl?: number;
  /** Renew the lease every `ttl / 3` while held (default `false`). */
  autoRenew?: boolean;
  /** The owner id stored with the lock, returned by `owner()` (default: a random hex id per `Lock` object). */
  id?: string;
  /** Key prefix (default `"respite:"`): the lock lives at `<prefix>lock:{<name>}`. */
  prefix?: string;
  /** Where `ACQUIRE_SCRIPT not cached.` and similar warnings go (default: the client's logger); `null` silences them. */
  logger?: Logger | null;
  /**
   * Keep a fencing counter (default `true`): each successful acquisition
   * increments `<prefix>lock:{<name>}:fence`, a key that never expires, and
   * {@linkcode Lock.fence} is the new value. With `false` the counter is
   * neither read nor written (nothing stays in Redis once the lock is
   * released or expires) and `fence` is always `null`: for locks on many
   * short-lived names whose work needs no fencing token. Locks on one name
   * with and without fencing still exclude each other.
   */
  fencing?: boolean;
}

/** Options for {@linkcode Lock.acquire}. */
export interface AcquireOptions {
  /**
   * How long to wait for the lock, in ms: `0` tries once, `Infinity` (the
   * default) waits until acquired or aborted. Independent of `ttl`: a waiter
   * may rightly wait through several holders' leases. It bounds the whole
   * call, also while Redis does not answer (down, reconnecting): a try still
   * out when it runs out is abandoned. `0` waits for its one try's answer
   * however long it takes (bound it with `signal` or the client's
   * `commandTimeout`). Tries that get no answer (connection lost, timed out)
   * are retried within it; see {@linkcode Lock.acquire} for when it rejects
   * instead of resolving `false`.
   */
  wait?: number;
  /**
   * Stops waiting: `acquire()` rejects at once with the signal's reason, also
   * while Redis does not answer.
   */
  signal?: AbortSignal;
}

/** Options for {@linkcode Lock.reset} and {@linkcode Lock.resetAll}. */
export interface ResetOptions {
  /** Key prefix (default `"respite:"`). */
  prefix?: string;
}

/** One holding of a lock, from a successful acquire to release or loss. */
interface Holding {
  value: string;
  /** The fencing token, `null` without fencing. */
  fence: number | null;
  /** Created on first read of the lock's `signal` (or on loss). */
  controller: AbortController | null;
  /** The loss, once lost (the signal's reason). */
  lostError?: LockLostError;
  /**
   * Whether the lease timer runs: with `autoRenew`, or once the signal was
   * read. Either way, every look at the holding (`held`, `fence`, `signal`,
   * `extend()`, `release()`) also compares `expiresAt` with the clock, so a
   * lease that ran out while the event loop was blocked is noticed at once.
   */
  armed: boolean;
  /** The lease length renewals and the local expiry use (ms). */
  ttl: number;
  /**
   * performance.now() before which the key surely has not expired in Redis: a
   * lower bound of its expiry, over every PEXPIRE sent for this holding (each
   * counted from its send time, minus {@linkcode leaseMargin}).
   */
  expiresAt: number;
  /** Sequence number of the last compare-and-PEXPIRE sent (renewals and `extend()`). */
  sentSeq: number;
  /** Sequence number of the command whose reply last set `expiresAt`. */
  appliedSeq: number;
  /** Sequence number of the `extend()` that last set `ttl`. */
  ttlSeq: number;
  /**
   * PEXPIREs sent and not confirmed (out, or failed without an answer, so
   * they may still run): sequence number → send time + the ttl it carried.
   */
  pending: Map<number, number> | null;
  leaseTimer?: ReturnType<typeof setTimeout>;
  renewTimer?: ReturnType<typeof setTimeout>;
  renewError?: unknown;
  lost: boolean;
}

/**
 * Local waiters for one lock name on one client. Only the head contends in
 * Redis; the others wait here, in order, so a release wakes one contender per
 * process rather than every waiter. They share one subscription to the wake
 * channel.
 */
class WaitQueue {
  readonly waiters: Array<() => void> = [];
  /** The holding of a `Lock` on this client, if one holds the lock. */
  localHolder: Holding | null = null;
  /** Counts wake-ups, so one that arrives during a try is not lost. */
  wakeSeq = 0;
  #wake: (() => void) | null = null;
  #unsubscribe: Promise<() => Promise<void>> | null = null;

  constructor(
    readonly redis: RedisClient,
    readonly channel: string,
    readonly onEmpty: () => void,
  ) {}

  /** Subscribes to the wake channel (once per queue); resolves when Redis confirmed. */
  async subscribed(): Promise<void> {
    if (this.#unsubscribe === null) {
      this.#unsubscribe = this.redis.subscribe(this.channel, () => {
        this.wakeSeq++;
        const wake = this.#wake;
        this.#wake = null;
        wake?.();
      });
      this.#unsubscribe.catch(() => {
        this.#unsubscribe = null;
      });
    }
    await this.#unsubscribe;
  }

  /** Waits for a wake-up, `ms` or an abort (which rejects). */
  sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const finish = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        if (this.#wake === wake) this.#wake = null;
      };
      const wake = () => {
        finish();
        resolve();
      };
      const onAbort = () => {
        finish();
        reject(signal!.reason);
      };
      const timer = setTimeout(wake, Math.min(Math.max(ms, 0), MAX_TIMER_MS));
      this.#wake = wake;
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Removes a waiter; promotes the next head; unsubscribes when empty. */
  remove(waiter: () => void): void {
    const i = this.waiters.indexOf(waiter);
    if (i === -1) return;
    this.waiters.splice(i, 1);
    if (i === 0 && this.waiters.length > 0) this.waiters[0]();
    if (this.waiters.length === 0) {
      this.onEmpty();
      const unsubscribe = this.#unsubscribe;
      this.#unsubscribe = null;
      unsubscribe?.then((u) => u()).catch(() => {});
    }
  }
}

const queues = new WeakMap<RedisClient, Map<string, WaitQueue>>();

function queueOf(
  redis: RedisClient,
  keys: LockKeys,
  create: boolean,
): WaitQueue | undefined {
  let byKey = queues.get(redis);
  let q = byKey?.get(keys.key);
  if (q !== undefined || !create) return q;
  if (byKey === undefined) {
    byKey = new Map();
    queues.set(redis, byKey);
  }
  const map = byKey;
  const created: WaitQueue = new WaitQueue(redis, keys.wake, () => {
    if (map.get(keys.key) === created) map.delete(keys.key);
  });
  q = created;
  map.set(keys.key, q);
  return q;
}

/** Length of the random token in a lock's value (32 hex digits + ":"). */
const TOKEN_LENGTH = 33;

function checkClient(redis: unknown): RedisClient {
  if (!(redis instanceof RedisClient)) {
    throw new TypeError(
      "redis must be a RedisClient from connect(); got " + describe(redis),
    );
  }
  return redis;
}

function checkName(name: unknown): string {
  if (typeof name !== "string") {
    throw new TypeError(
      "A lock name must be a non-empty string; got " + describe(name),
    );
  }
  if (name.length === 0) {
    throw new TypeError('A lock name must be a non-empty string; got ""');
  }
  // The lock's keys carry `{<name>}` as their Redis Cluster hash tag. Redis
  // hashes what lies between the first `{` and the next `}`: a `}` inside the
  // name shortens the tag, but equally for every key of the lock, so they still
  // share a slot. A name that starts with `}` leaves the tag empty; Redis then
  // hashes each whole key, and the lock key and its fencing counter could land
  // in different slots.
  _checkHashTag("A lock name", name);
  return name;
}

/**
 * @internal Throws a `TypeError` when `name`, put in a `{<name>}` hash tag,
 * would leave the tag empty (it starts with `}`); `what` names it in the
 * message ("A lock name", "key", ...).
 */
export function _checkHashTag(what: string, name: string): void {
  if (!isWellFormed(name)) {
    // It would reach Redis with U+FFFD in place of the surrogate, the same
    // key as other names.
    throw new TypeError(
      `${what} must be well-formed text: it contains a lone UTF-16 surrogate, which would turn into U+FFFD and collide with other names`,
    );
  }
  if (name.startsWith("}")) {
    throw new TypeError(
      `${what} must not start with '}' (it would leave the {<name>} hash tag of the lock's keys empty); got ` +
        describe(name),
    );
  }
}

/** @internal Checks a ttl: a positive integer number of ms. */
export function _checkTtl(ttl: unknown): number {
  if (typeof ttl !== "number") {
    throw new TypeError("ttl must be a number of ms; got " + describe(ttl));
  }
  if (!Number.isInteger(ttl) || ttl <= 0 || ttl > MAX_TIMER_MS) {
    throw new RangeError(
      `ttl must be a positive integer number of ms, at most ${MAX_TIMER_MS}; got ${ttl}`,
    );
  }
  return ttl;
}

/** @internal Checks a wait: a number of ms ≥ 0, or Infinity. */
export function _checkWait(wait: unknown): number {
  if (typeof wait !== "number") {
    throw new TypeError("wait must be a number of ms; got " + describe(wait));
  }
  if (Number.isNaN(wait) || wait < 0) {
    throw new RangeError(
      `wait must be 0 (try once), a positive number of ms, or Infinity; got ${wait}`,
    );
  }
  return wait;
}

/** @internal Checks an optional AbortSignal. */
export function _checkSignal(signal: unknown): AbortSignal | undefined {
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError(
      "signal must be an AbortSignal; got " + describe(signal),
    );
  }
  return signal;
}

/**
 * A distributed lock on one name, in one Redis.
 *
 * `acquire()` sets the key `<prefix>lock:{<name>}` with `SET NX PX ttl` and,
 * in the same Lua script, increments the lock's fencing counter (unless the
 * lock was created with `fencing: false`). Waiters do
 * not poll: a release publishes on the lock's wake channel, and the waiting
 * contender retries at once; a waiter also re-checks when the holder's lease
 * would run out, so a lost wake-up costs at most the holder's remaining ttl.
 * Within one process, waiters on one client queue in order and only the first
 * contends in Redis. A contended acquisition costs two requests to Redis
 * (acquire and release).
 *
 * A `Lock` object is one holder: acquire, work, release; it can be acquired
 * again after release. It is not reentrant. Use one object per concurrent
 * holder (they may share a client).
 *
 * Safety: with a single Redis node, a lock is as durable as the node; a
 * failover or restart without fsync can lose it, and a paused process (GC,
 * SIGSTOP) can outlive its lease. {@linkcode Lock.signal} tells the holder
 * when it knows the lock is lost; {@linkcode Lock.fence} lets the protected
 * resource refuse a stale holder.
 *
 * @example
 * ```ts
 * import { connect, Lock } from "@respite/respite";
 * await using redis = await connect();
 * await using lock = new Lock(redis, "doc:report", { ttl: 10_000, autoRenew: true });
 * if (await lock.acquire({ wait: 5_000 })) {
 *   // ... only one process in the fleet runs this at a time ...
 *   lock.signal.throwIfAborted(); // stop if the lock was lost meanwhile
 *   await lock.release(); // or let `await using` release it
 * }
 * ```
 */
export class Lock {
  /** The lock's name. */
  readonly name: string;
  /** The lease in ms. */
  readonly ttl: number;
  /** The owner id stored with the lock. */
  readonly id: string;
  /** Whether the lease is renewed every `ttl / 3` while held. */
  readonly autoRenew: boolean;
  /** Whether acquisitions increment the fencing counter (the `fencing` option). */
  readonly fencing: boolean;
  /** The Redis key, fencing counter key and wake channel of this lock. */
  readonly keys: LockKeys;
  #redis: RedisClient;
  #logger: Logger | null | undefined;
  #holding: Holding | null = null;
  #acquiring = false;
  /** {@linkcode leaseMargin} of `ttl`. */
  #margin: number;
  /**
   * The running acquisition's last try error without an answer from Redis
   * (`ConnectionError`/`TimeoutError`), while no later try got an answer.
   */
  #lastError: unknown = undefined;
  /** How many of the running acquisition's tries in a row got no answer. */
  #failures = 0;
  /** The last holding (kept after release: its signal stays current). */
  #last: Holding | null = null;
  /** The signal's controller before the first acquisition. */
  #idle: AbortController | null = null;

  /**
   * Creates a lock object; nothing is sent to Redis until `acquire()`.
   *
   * @param redis The client to use.
   * @param name The lock's name: a non-empty string without `}`.
   * @param options `ttl`, `autoRenew`, `id`, `prefix`, `logger`, `fencing`.
   *
   * @example
   * ```ts
   * import { connect, Lock } from "@respite/respite";
   * await using redis = await connect();
   * const lock = new Lock(redis, "doc:ctor", { ttl: 5_000, id: "worker-1" });
   * console.assert(lock.keys.key === "respite:lock:{doc:ctor}");
   * ```
   */
  constructor(redis: RedisClient, name: string, options: LockOptions = {}) {
    this.#redis = checkClient(redis);
    this.name = checkName(name);
    if (options === null || typeof options !== "object") {
      throw new TypeError("options must be an object");
    }
    this.ttl = options.ttl === undefined ? 30_000 : _checkTtl(options.ttl);
    this.#margin = leaseMargin(this.ttl);
    if (
      options.autoRenew !== undefined && typeof options.autoRenew !== "boolean"
    ) {
      throw new TypeError("autoRenew must be a boolean");
    }
    this.autoRenew = options.autoRenew ?? false;
    if (
      options.fencing !== undefined && typeof options.fencing !== "boolean"
    ) {
      throw new TypeError("fencing must be a boolean");
    }
    this.fencing = options.fencing ?? true;
    if (options.id !== undefined && typeof options.id !== "string") {
      throw new TypeError("id must be a string");
    }
    this.id = options.id ?? randomHex128();
    const prefix = options.prefix === undefined
      ? DEFAULT_PREFIX
      : checkPrefix(options.prefix);
    if (
      options.logger !== undefined && options.logger !== null &&
      typeof options.logger?.warn !== "function"
    ) {
      throw new TypeError("logger must have a warn() method, or be null");
    }
    this.#logger = options.logger;
    this.keys = lockKeys(this.name, prefix);
  }

  /**
   * An `AbortSignal` that aborts, with a {@linkcode LockLostError} as its
   * reason, when the current holding is lost: a renewal found the key gone or
   * taken, the lease ran out without a successful renewal (Redis unreachable,
   * or no `autoRenew`), or `extend()` found it gone. Each successful
   * `acquire()` starts a new signal; a successful release does not abort
   * it (a release that finds the key gone or taken does). Pass it to the
   * work the lock protects.
   *
   * The lease is counted from when the acquisition (or the last renewal) was
   * sent, less a clock-drift margin of `ttl / 100 + 2` ms. Each read of
   * `signal`, {@linkcode Lock.held} or {@linkcode Lock.fence} compares it with
   * the clock, so after the event loop was blocked past the lease (a busy
   * loop, a long GC, SIGSTOP) the first read says "lost" at once; the timer
   * that aborts the signal otherwise runs only at the next macrotask. A
   * signal object kept from an earlier read cannot check the clock by
   * itself: it aborts at that first read, or when the timer runs.
   *
   * @example
   * ```ts
   * import { connect, Lock, LockLostError } from "@respite/respite";
   * await using redis = await connect();
   * const lock = new Lock(redis, "doc:signal", { ttl: 50 });
   * await lock.acquire();
   * await new Promise((r) => setTimeout(r, 80)); // outlive the lease
   * console.assert(lock.signal.aborted && lock.signal.reason instanceof LockLostError);
   * ```
   */
  get signal(): AbortSignal {
    const h = this.#last;
    if (h === null) return (this.#idle ??= new AbortController()).signal;
    if (h.controller === null) {
      h.controller = new AbortController();
      if (h.lostError !== undefined) h.controller.abort(h.lostError);
    }
    if (this.#holding === h && !h.lost) {
      if (!h.armed) {
        h.armed = true;
        // The timer aborts it when the lease runs out.
        this.#armLease(h);
      }
      // Ran out already (also while the timer could not run): aborts now.
      if (h.expiresAt <= performance.now()) this.#leaseRanOut(h);
    }
    return h.controller.signal;
  }

  /**
   * Whether `h` is lost, noticing first a lease that ran out, whether its
   * timer runs or not (a blocked event loop keeps it from firing).
   */
  #isLost(h: Holding): boolean {
    if (
      !h.lost && this.#holding === h && h.expiresAt <= performance.now()
    ) this.#leaseRanOut(h);
    return h.lost;
  }

  /**
   * The fencing token of the current holding, or `null` when not held (or
   * when the lock was created with `fencing: false`). Tokens
   * of one lock name strictly increase across holders and processes (a
   * counter incremented atomically with each successful acquisition; a failed
   * attempt consumes none). Its key, `<prefix>lock:{<name>}:fence`, never
   * expires and survives `reset()`, so tokens never repeat. A counter that
   * does not exist yet, or was lost (a restart without persistence,
   * `FLUSHDB`/`FLUSHALL`, an `allkeys-*` eviction), starts again from the
   * server's clock in microseconds (e.g. 1764650000000000), so tokens still
   * increase across the loss, as long as the server's clock does not go
   * back. Not covered: a failover to a replica whose copy of the counter is
   * behind (replication is asynchronous), which can hand out a recent token
   * again.
   *
   * A protected resource checks it by remembering the highest token it has
   * accepted and refusing any write that carries a lower one: a holder that
   * was paused past its lease (and whose lock another process has taken since)
   * then cannot overwrite the newer holder's work.
   *
   * @example
   * ```ts
   * import { connect, Lock } from "@respite/respite";
   * await using redis = await connect();
   * // The resource: accept a write only with a token ≥ the highest seen.
   * const write = async (fence: number, value: string) =>
   *   await redis.send("EVAL", `
   *     local seen = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0')
   *     if tonumber(ARGV[1]) < seen then return 0 end
   *     redis.call('HSET', KEYS[1], 'fence', ARGV[1], 'value', ARGV[2])
   *     return 1`, 1, "respite:doc:resource", fence, value);
   * await using lock = new Lock(redis, "doc:fence");
   * await lock.acquire();
   * console.assert(await write(lock.fence!, "mine") === 1);
   * console.assert(await write(lock.fence! - 1, "stale") === 0);
   * await redis.send("DEL", "respite:doc:resource");
   * ```
   */
  get fence(): number | null {
    const h = this.#holding;
    return h === null || this.#isLost(h) ? null : h.fence;
  }

  /**
   * Whether this object holds the lock, as far as it knows (acquired, not
   * released, not lost). Compares the lease with the clock on every read.
   */
  get held(): boolean {
    return this.#holding !== null && !this.#isLost(this.#holding);
  }

  /**
   * Acquires the lock, waiting up to `wait` ms. Resolves `true` when acquired,
   * `false` when the wait ran out. Rejects with the signal's reason when
   * `signal` aborts (at once, also while waiting), with a `TypeError` when
   * this object already holds the lock or is acquiring it, and with a
   * `TypeError`/`RangeError` for a bad `wait`.
   *
   * Neither `wait` nor `signal` waits on Redis: while it is down they still
   * end the call on time. A try abandoned that way is either never sent
   * (still queued in the client) or followed by a compare-and-delete of its
   * own token, so it cannot leave the lock taken behind the caller's back.
   *
   * A success counts only if its reply came back while its lease still ran:
   * within `ttl` less a clock-drift margin (`ttl / 100 + 2` ms, at most
   * `ttl / 2`) of sending it. A later one may have expired in Redis already,
   * and another process may hold the lock, so it is not an acquisition: its
   * key is compare-and-deleted at once and the call goes on waiting (with
   * `wait: 0` it resolves `false`).
   *
   * A try that fails without an answer from Redis — a `ConnectionError`
   * (connection lost: it may or may not have run) or a `TimeoutError` (the
   * client's `commandTimeout`) — is followed by a compare-and-delete of its
   * own token (queued while the client reconnects, and sent again while it
   * fails, for up to `ttl`, after which the key has expired anyway), and is
   * retried with exponential backoff and jitter while `wait` and `signal`
   * allow. With `wait: 0` the call rejects with that error. When `wait` runs
   * out, it resolves `false` if Redis's last answer was "held by another",
   * and rejects with the last `ConnectionError`/`TimeoutError` if no try got
   * an answer since (an unreachable Redis is not reported as a busy lock).
   * A closed client and error replies (`ReplyError`: Redis answered) reject
   * at once; a try that got an error reply is compare-and-deleted as well,
   * since a script that fails half way has run its first commands.
   *
   * @param options `wait` (ms; `0` tries once; default `Infinity`) and `signal`.
   * @returns Whether the lock was acquired.
   *
   * @example
   * ```ts
   * import { connect, Lock } from "@respite/respite";
   * await using redis = await connect();
   * await using a = new Lock(redis, "doc:acquire");
   * await using b = new Lock(redis, "doc:acquire");
   * console.assert(await a.acquire({ wait: 0 }) === true);
   * console.assert(await b.acquire({ wait: 20 }) === false); // a holds it
   * await a.release();
   * console.assert(await b.acquire({ wait: 0 }) === true);
   * ```
   */
  async acquire(options: AcquireOptions = {}): Promise<boolean> {
    const wait = options.wait === undefined
      ? Infinity
      : _checkWait(options.wait);
    const signal = _checkSignal(options.signal);
    if (this.#acquiring || this.held) {
      throw new TypeError(
        `Lock ${this.name} is already ${
          this.#acquiring ? "being acquired" : "held"
        } by this Lock object; release it first, or use one Lock object per holder`,
      );
    }
    signal?.throwIfAborted();
    checkEviction(this.#redis, this.#logger);
    const start = performance.now();
    this.#acquiring = true;
    // One signal for everything this acquisition awaits (tries, the wake
    // subscription, sleeps, the local queue): the caller's signal and the
    // deadline, so neither is ignored while Redis does not answer.
    const timed = wait !== 0 && wait !== Infinity;
    let both = signal;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let onAbort: (() => void) | undefined;
    if (timed) {
      const ac = new AbortController();
      both = ac.signal;
      timer = setTimeout(
        () => ac.abort(WAIT_RAN_OUT),
        Math.min(wait, MAX_TIMER_MS),
      );
      if (signal !== undefined) {
        onAbort = () => ac.abort(signal.reason);
        signal.addEventListener("abort", onAbort, { once: true });
      }
    }
    this.#lastError = undefined;
    this.#failures = 0;
    try {
      const existing = queueOf(this.#redis, this.keys, false);
      if (wait === 0 || existing === undefined) {
        try {
          const pttl = await this.#attempt(both);
          if (pttl === null) return true;
          if (wait === 0) return false;
        } catch (err) {
          if (wait === 0 || both?.aborted || !this.#retryable(err)) throw err;
          this.#lastError = err;
          this.#failures = 1;
        }
      }
      return await this.#waitInQueue(start + wait, both);
    } catch (err) {
      if (err === WAIT_RAN_OUT) return this.#ranOut();
      throw err;
    } finally {
      this.#lastError = undefined;
      clearTimeout(timer);
      if (onAbort !== undefined) signal!.removeEventListener("abort", onAbort);
      this.#acquiring = false;
    }
  }

  /**
   * The end of a wait: `false`, or the last error when no try got an answer
   * from Redis since it.
   */
  #ranOut(): false {
    if (this.#lastError !== undefined) throw this.#lastError;
    return false;
  }

  /** Whether a try's error means no answer from Redis: retried within `wait`. */
  #retryable(err: unknown): boolean {
    if (!(err instanceof ConnectionError || err instanceof TimeoutError)) {
      return false;
    }
    const status = this.#redis.status;
    return status !== "closing" && status !== "closed";
  }

  /** Waits in the local queue for a turn to contend, then contends. */
  async #waitInQueue(
    deadline: number,
    signal: AbortSignal | undefined,
  ): Promise<boolean> {
    const q = queueOf(this.#redis, this.keys, true)!;
    const turn = Promise.withResolvers<boolean>();
    const waiter = () => turn.resolve(true);
    q.waiters.push(waiter);
    try {
      if (q.waiters[0] !== waiter) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const onAbort = () => turn.reject(signal!.reason);
        if (deadline !== Infinity) {
          timer = setTimeout(
            () => turn.resolve(false),
            Math.min(Math.max(deadline - performance.now(), 0), MAX_TIMER_MS),
          );
        }
        signal?.addEventListener("abort", onAbort, { once: true });
        try {
          if (!await turn.promise) return this.#ranOut();
        } finally {
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
        }
      }
      return await this.#contend(q, deadline, signal);
    } finally {
      q.remove(waiter);
    }
  }

  /**
   * The head waiter's loop: subscribe, try, sleep until woken or the lease
   * runs out. A subscription or try without an answer from Redis is retried
   * after a backoff.
   */
  async #contend(
    q: WaitQueue,
    deadline: number,
    signal: AbortSignal | undefined,
  ): Promise<boolean> {
    let subscribed = false;
    let first = true;
    while (true) {
      signal?.throwIfAborted();
      if (this.#failures > 0) {
        const left = deadline - performance.now();
        if (left <= 0) return this.#ranOut();
        await q.sleep(Math.min(retryDelay(this.#failures), left), signal);
      }
      const now = performance.now();
      if (now >= deadline) return this.#ranOut();
      const seq = q.wakeSeq;
      let pttl: number;
      try {
        if (!subscribed) {
          await (signal === undefined
            ? q.subscribed()
            : abortable(q.subscribed(), signal));
          subscribed = true;
        }
        const holder = q.localHolder;
        const t = performance.now();
        if (first && holder !== null && !holder.lost && holder.expiresAt > t) {
          // A Lock on this client holds it: its release will wake us.
          pttl = holder.expiresAt - t;
        } else {
          const r = await this.#attempt(signal);
          if (r === null) return true;
          pttl = r;
          this.#lastError = undefined;
          this.#failures = 0;
        }
      } catch (err) {
        if (signal?.aborted || !this.#retryable(err)) throw err;
        this.#lastError = err;
        this.#failures++;
        first = false;
        continue;
      }
      first = false;
      if (q.wakeSeq !== seq) continue; // woken while trying
      const remaining = deadline - performance.now();
      if (remaining <= 0) return this.#ranOut();
      let delay: number;
      if (pttl === -1) delay = NO_EXPIRY_RECHECK;
      else if (pttl < 0) delay = 0;
      // Past the holder's lease, plus jitter so processes do not retry in step.
      else delay = pttl + 1 + Math.random() * Math.min(20, 1 + pttl / 10);
      await q.sleep(Math.min(delay, remaining), signal);
    }
  }

  /**
   * One try. Resolves `null` when acquired (the holding is set up), else the
   * holder's remaining ttl (`0` for a success that came back too late). A
   * success whose reply came after its lease (less the drift margin) ran out
   * is no acquisition: another process may hold the lock by now.
   *
   * Whenever the try does not end in a holding — it rejects (aborted: a try
   * not yet written is never sent, one that was may still run; the
   * connection was lost or the reply timed out: it may or may not have run;
   * an error reply: a script can fail after its SET) or it came back late —
   * a compare-and-delete of this try's own random value follows it in the
   * background (on the same connection, after the try): it releases the lock
   * if the try took it, and touches nothing otherwise.
   */
  async #attempt(signal: AbortSignal | undefined): Promise<number | null> {
    const value = `${randomHex128()}:${this.id}`;
    const sent = performance.now();
    let reply: number[];
    try {
      reply = await ACQUIRE_SCRIPT.run<number[]>(this.#redis, {
        keys: this.fencing ? [this.keys.key, this.keys.fence] : [this.keys.key],
        args: [value, this.ttl, this.fencing ? "1" : "0"],
        logger: this.#logger,
        signal,
      });
    } catch (err) {
      this.#cleanup(value);
      throw err;
    }
    if (reply[0] !== 1) return reply[1];
    const expiresAt = sent + this.ttl - this.#margin;
    if (performance.now() >= expiresAt) {
      this.#cleanup(value);
      return 0;
    }
    this.#hold(value, this.fencing ? reply[1] : null, expiresAt);
    return null;
  }

  /**
   * Compare-and-deletes a try's own value in the background (it may have
   * set the key, or not; the UNLOCK script leaves any other value alone).
   * While that gets no answer (connection lost, timed out, or not sent: the
   * client is reconnecting and does not queue), it is sent again, at growing
   * intervals, until `ttl` after its first failure: the try ran before that
   * failure if at all (it was sent first, on the same connection), so its
   * key has expired by then. Stops when the client is closed.
   */
  #cleanup(value: string): void {
    let until = Infinity;
    let gap = 20;
    const send = (): void => {
      const sentAt = performance.now();
      this.#unlock(value).catch((err) => {
        if (!this.#retryable(err)) return;
        const now = performance.now();
        if (until === Infinity) until = now + this.ttl + this.#margin;
        if (now >= until) return;
        const delay = Math.min(gap - (now - sentAt), until - now);
        gap = Math.min(gap * 2, CLEANUP_MAX_GAP);
        if (delay <= 0) {
          send();
        } else {
          unrefTimer(setTimeout(send, delay));
        }
      });
    };
    send();
  }

  #hold(value: string, fence: number | null, expiresAt: number): void {
    const h: Holding = {
      value,
      fence,
      controller: null,
      armed: this.autoRenew,
      ttl: this.ttl,
      expiresAt,
      sentSeq: 0,
      appliedSeq: 0,
      ttlSeq: 0,
      pending: null,
      lost: false,
    };
    this.#holding = h;
    this.#last = h;
    if (h.armed) this.#armLease(h);
    if (this.autoRenew) this.#scheduleRenew(h, h.ttl / 3);
    const q = queueOf(this.#redis, this.keys, false);
    if (q !== undefined) q.localHolder = h;
  }

  /** (Re)starts the timer that declares the holding lost when its lease runs out locally. */
  #armLease(h: Holding): void {
    if (!h.armed) return;
    clearTimeout(h.leaseTimer);
    h.leaseTimer = setTimeout(() => {
      h.leaseTimer = undefined;
      this.#leaseRanOut(h);
    }, Math.min(Math.max(h.expiresAt - performance.now(), 0), MAX_TIMER_MS));
    unrefTimer(h.leaseTimer);
  }

  #leaseRanOut(h: Holding): void {
    if (h.renewError !== undefined) {
      this.#lose(
        h,
        "unreachable",
        `could not be renewed before its ${h.ttl} ms lease ran out`,
        h.renewError,
      );
    } else {
      this.#lose(h, "expired", `its ${h.ttl} ms lease ran out`);
    }
  }

  #scheduleRenew(h: Holding, delay: number): void {
    clearTimeout(h.renewTimer);
    h.renewTimer = setTimeout(() => {
      h.renewTimer = undefined;
      void this.#renew(h);
    }, Math.max(delay, 1));
    unrefTimer(h.renewTimer);
  }

  async #renew(h: Holding): Promise<void> {
    if (this.#holding !== h || h.lost) return;
    const sent = performance.now();
    if (h.expiresAt <= sent) {
      // Due after the lease ran out (the event loop was blocked): lost.
      this.#leaseRanOut(h);
      return;
    }
    // Half of what is left, so a renewal that got no answer is known to have
    // failed (and is retried) while the lease still runs.
    const timeout = Math.max((h.expiresAt - sent) / 2, 1);
    const ac = new AbortController();
    const timer = setTimeout(
      () =>
        ac.abort(
          new TimeoutError(
            `renewing lock ${this.name} got no answer within ${
              Math.round(timeout)
            } ms`,
          ),
        ),
      timeout,
    );
    let r: number;
    try {
      r = await this.#pexpire(h, h.ttl, false, ac.signal);
    } catch (err) {
      if (this.#holding !== h || h.lost) return;
      h.renewError = err;
      // Try again soon; the lease timer declares the lock lost if no renewal
      // succeeds before it runs out.
      const left = h.expiresAt - performance.now();
      if (left > 0) this.#scheduleRenew(h, Math.min(h.ttl / 10, left / 2));
      return;
    } finally {
      clearTimeout(timer);
    }
    if (this.#holding !== h || h.lost) return;
    if (r === 1) {
      this.#scheduleNextRenew(h);
    } else if (r === 0) {
      this.#lose(h, "held-by-other", "a renewal found another holder's token");
    } else {
      this.#lose(h, "expired", "a renewal found its key gone");
    }
  }

  /**
   * Sends one compare-and-PEXPIRE of `ttl` ms for `h` (a renewal, or
   * `extend()` when `setsTtl`) and keeps `h.expiresAt` a lower bound of the
   * key's expiry in Redis, whatever order the replies of concurrent commands
   * come back in. Each command carries its own ttl, used for its own expiry
   * (never `h.ttl` re-read at reply time). While out, it may run at any
   * moment, so the bound drops at once to its send time + `ttl` if that is
   * sooner. Its success moves the bound to send time + `ttl`, capped by the
   * commands sent after it that are still out; the reply of a command sent
   * before one whose success was already applied changes nothing.
   */
  async #pexpire(
    h: Holding,
    ttl: number,
    setsTtl: boolean,
    signal?: AbortSignal,
  ): Promise<number> {
    const seq = ++h.sentSeq;
    const bound = performance.now() + ttl - leaseMargin(ttl);
    const pending = h.pending ??= new Map();
    pending.set(seq, bound);
    if (bound < h.expiresAt && this.#holding === h && !h.lost) {
      h.expiresAt = bound;
      this.#armLease(h);
    }
    // On a rejection (no answer) its bound stays pending: it may still run,
    // until a command sent after it succeeds.
    const r = await EXTEND_SCRIPT.run<number>(this.#redis, {
      keys: [this.keys.key],
      args: [h.value, ttl],
      logger: this.#logger,
      signal,
    });
    pending.delete(seq);
    if (r !== 1 || this.#holding !== h || h.lost) return r;
    if (setsTtl && seq > h.ttlSeq) {
      h.ttl = ttl;
      h.ttlSeq = seq;
    }
    if (seq > h.appliedSeq) {
      h.appliedSeq = seq;
      let at = bound;
      for (const [s, b] of pending) {
        if (s < seq) pending.delete(s);
        else if (b < at) at = b;
      }
      h.expiresAt = at;
      h.renewError = undefined;
      this.#armLease(h);
    }
    return r;
  }

  /** Schedules the next renewal a third into the lease left (at most `ttl / 3`). */
  #scheduleNextRenew(h: Holding): void {
    const left = h.expiresAt - performance.now();
    this.#scheduleRenew(h, Math.min(h.ttl, left) / 3);
  }

  #stopTimers(h: Holding): void {
    clearTimeout(h.leaseTimer);
    clearTimeout(h.renewTimer);
    h.leaseTimer = undefined;
    h.renewTimer = undefined;
  }

  #lose(
    h: Holding,
    reason: LockLostReason,
    why: string,
    cause?: unknown,
  ): void {
    if (h.lost) return;
    h.lost = true;
    this.#stopTimers(h);
    const q = queueOf(this.#redis, this.keys, false);
    if (q?.localHolder === h) q.localHolder = null;
    h.lostError = new LockLostError(`Lock ${this.name} was lost: ${why}`, {
      lock: this.name,
      reason,
      cause,
    });
    h.controller?.abort(h.lostError);
  }

  #unlock(value: string, signal?: AbortSignal): Promise<number> {
    return UNLOCK_SCRIPT.run<number>(this.#redis, {
      keys: [this.keys.key],
      args: [value, this.keys.wake],
      logger: this.#logger,
      signal,
    });
  }

  #notHeld(reason: LockNotHeldReason, what: string): LockNotHeldError {
    const why = reason === "expired"
      ? "its key expired or was deleted"
      : reason === "held-by-other"
      ? "another owner holds it now"
      : "this Lock object does not hold it (acquire it first)";
    return new LockNotHeldError(`Cannot ${what} lock ${this.name}: ${why}`, {
      lock: this.name,
      reason,
    });
  }

  /**
   * Releases the lock (compare-and-delete in one Lua script) and wakes its
   * waiters. Stops auto-renewal. Rejects with {@linkcode LockNotHeldError}
   * when this object does not hold it, or when Redis finds it expired or held
   * by another owner (the holding was lost: its signal aborts, if it had not
   * already); the current holder is left untouched.
   *
   * A release whose answer was lost (the connection dropped, it timed out)
   * may not have run: it is sent again, with backoff, until it gets an
   * answer (it compares this holding's own token, so a second run is
   * harmless; a "gone" or "taken" answer to a resent release resolves, since
   * the first one may have done it).
   *
   * Never hangs on an unreachable Redis: it waits for Redis at most for the
   * lease left (at least `min(ttl, 1 s)`), then rejects with a
   * {@linkcode TimeoutError} (other client errors, e.g. a `ConnectionError`,
   * reject as they come). The lock was not confirmed released, but this
   * object no longer holds it and its key expires on its own when the lease
   * runs out, so waiters get it at most that late. It rejects rather than
   * resolving so that the caller knows the lock may have stayed taken until
   * then; work done while `signal` was not aborted was done under the lock.
   *
   * @returns Resolves once released.
   *
   * @example
   * ```ts
   * import { connect, Lock } from "@respite/respite";
   * await using redis = await connect();
   * const lock = new Lock(redis, "doc:release");
   * await lock.acquire();
   * await lock.release();
   * console.assert(await lock.locked() === false);
   * ```
   */
  async release(): Promise<void> {
    const h = this.#holding;
    if (h === null) throw this.#notHeld("not-acquired", "release");
    this.#isLost(h); // a lease that ran out unwatched: its signal aborts
    this.#holding = null;
    this.#stopTimers(h);
    const q = queueOf(this.#redis, this.keys, false);
    if (q?.localHolder === h) q.localHolder = null;
    // Wait for Redis no longer than the lease left (at least min(ttl, 1 s),
    // to tell "expired" from "taken" after a loss): by then the key expires
    // on its own.
    const ms = Math.max(
      h.expiresAt - performance.now(),
      Math.min(h.ttl, 1_000),
    );
    const ac = new AbortController();
    const timer = setTimeout(() =>
      ac.abort(
        new TimeoutError(
          `Releasing lock ${this.name} got no answer from Redis within ${
            Math.round(ms)
          } ms; the lock expires on its own when its ${h.ttl} ms lease runs out`,
        ),
      ), Math.min(ms, MAX_TIMER_MS));
    let r: number;
    // Whether a try that got no answer may have run while the lease was
    // still valid: then "gone" or "taken" from a later try may be its doing.
    let mayHaveRun = false;
    try {
      // A release that got no answer (connection lost, timed out) may not
      // have run: it is sent again, with backoff, within the same bound. It
      // compares this holding's own token, so running it twice is harmless.
      for (let gap = 20;; gap = Math.min(gap * 2, CLEANUP_MAX_GAP)) {
        const sentAt = performance.now();
        try {
          r = await this.#unlock(h.value, ac.signal);
          break;
        } catch (err) {
          if (ac.signal.aborted || !this.#retryable(err)) throw err;
          if (
            !(err as { notSent?: boolean }).notSent && !h.lost &&
            sentAt < h.expiresAt
          ) mayHaveRun = true;
          await delay(gap / 2 + Math.random() * gap / 2, ac.signal);
        }
      }
    } finally {
      clearTimeout(timer);
    }
    if (r === 1) return;
    // An earlier try that may have run within the lease explains "gone" or
    // "taken": it released, and nobody else held the lock before it did.
    if (mayHaveRun) return;
    const reason = r === 0 ? "held-by-other" : "expired";
    // It was lost before the release: the signal says so, too.
    this.#lose(
      h,
      reason,
      r === 0
        ? "release() found another holder's token"
        : "release() found its key gone",
    );
    throw this.#notHeld(reason, "release");
  }

  /**
   * Sets the lease to `ttl` ms from now (compare-and-PEXPIRE in one Lua
   * script); later auto-renewals use that length too. Rejects with
   * {@linkcode LockNotHeldError} when this object does not hold the lock, or
   * when Redis finds it expired or held by another owner (the holding is then
   * lost: its signal aborts); the current holder is left untouched.
   *
   * @param ttl The new lease in ms (default: the current lease length).
   * @returns Resolves once extended.
   *
   * @example
   * ```ts
   * import { connect, Lock } from "@respite/respite";
   * await using redis = await connect();
   * await using lock = new Lock(redis, "doc:extend", { ttl: 1_000 });
   * await lock.acquire();
   * await lock.extend(60_000);
   * console.assert(await redis.send<number>("PTTL", lock.keys.key) > 1_000);
   * ```
   */
  async extend(ttl?: number): Promise<void> {
    const h = this.#holding;
    const lease = ttl === undefined ? h?.ttl ?? this.ttl : _checkTtl(ttl);
    if (h === null) throw this.#notHeld("not-acquired", "extend");
    if (this.#isLost(h)) {
      const lost = h.lostError!;
      throw this.#notHeld(
        lost.reason === "held-by-other" ? "held-by-other" : "expired",
        "extend",
      );
    }
    const r = await this.#pexpire(h, lease, true);
    if (r === 1) {
      if (this.autoRenew && this.#holding === h && !h.lost) {
        this.#scheduleNextRenew(h);
      }
      return;
    }
    const reason = r === 0 ? "held-by-other" : "expired";
    this.#lose(
      h,
      reason,
      r === 0
        ? "extend() found another holder's token"
        : "extend() found its key gone",
    );
    throw this.#notHeld(reason, "extend");
  }

  /**
   * The owner id of whoever holds the lock now (the `id` option of its
   * `Lock`), or `null` when nobody does. Does not acquire anything.
   *
   * @returns The holder's id, or `null`.
   *
   * @example
   * ```ts
   * import { connect, Lock } from "@respite/respite";
   * await using redis = await connect();
   * await using lock = new Lock(redis, "doc:owner", { id: "worker-7" });
   * console.assert(await lock.owner() === null);
   * await lock.acquire();
   * console.assert(await lock.owner() === "worker-7");
   * ```
   */
  async owner(): Promise<string | null> {
    const v = await this.#redis.send<string | null>("GET", this.keys.key);
    if (v === null) return null;
    return v.length >= TOKEN_LENGTH && v[TOKEN_LENGTH - 1] === ":"
      ? v.slice(TOKEN_LENGTH)
      : v;
  }

  /**
   * Whether anyone holds the lock now, without trying to acquire it.
   *
   * @returns `true` when the lock's key exists.
   *
   * @example
   * ```ts
   * import { connect, Lock } from "@respite/respite";
   * await using redis = await connect();
   * await using lock = new Lock(redis, "doc:locked");
   * console.assert(await lock.locked() === false);
   * await lock.acquire();
   * console.assert(await new Lock(redis, "doc:locked").locked() === true);
   * ```
   */
  async locked(): Promise<boolean> {
    return await this.#redis.send<number>("EXISTS", this.keys.key) === 1;
  }

  /**
   * Releases the lock if this object holds it, for `await using`. A lock
   * that was already lost is not an error here (the lock's `signal` has told
   * the holder); other errors are thrown, e.g. the {@linkcode TimeoutError}
   * of a release Redis did not answer within the lease left (so disposal
   * never hangs: see {@linkcode Lock.release}).
   *
   * @returns Resolves once released.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#holding === null) return;
    try {
      await this.release();
    } catch (err) {
      if (!(err instanceof LockNotHeldError)) throw err;
    }
  }

  /**
   * Force-releases the lock called `name`, whoever holds it, and wakes its
   * waiters. The holder finds out at its next renewal or `extend()` (its
   * signal aborts) or when its `release()` fails. The fencing counter is kept,
   * so tokens keep increasing.
   *
   * @param redis The client to use.
   * @param name The lock's name.
   * @param options `prefix`.
   * @returns Whether a lock was held (and is now deleted).
   *
   * @example
   * ```ts
   * import { connect, Lock } from "@respite/respite";
   * await using redis = await connect();
   * await using lock = new Lock(redis, "doc:reset");
   * await lock.acquire();
   * console.assert(await Lock.reset(redis, "doc:reset") === true);
   * console.assert(await lock.locked() === false);
   * ```
   */
  static async reset(
    redis: RedisClient,
    name: string,
    options: ResetOptions = {},
  ): Promise<boolean> {
    checkClient(redis);
    checkName(name);
    const keys = lockKeys(
      name,
      options.prefix === undefined
        ? DEFAULT_PREFIX
        : checkPrefix(options.prefix),
    );
    const n = await RESET_SCRIPT.run<number>(redis, {
      keys: [keys.key],
      args: [keys.wake],
    });
    return n === 1;
  }

  /**
   * Force-releases every lock under `prefix` and wakes their waiters. Finds
   * the locks with `SCAN` (never `KEYS`), so it does not block Redis; locks
   * taken while it runs may or may not be released. Fencing counters are kept.
   *
   * @param redis The client to use.
   * @param options `prefix` (default `"respite:"`).
   * @returns How many locks were held (and are now deleted).
   *
   * @example
   * ```ts
   * import { connect, Lock } from "@respite/respite";
   * await using redis = await connect();
   * const prefix = "respite-doc-resetall:";
   * await using a = new Lock(redis, "a", { prefix });
   * await using b = new Lock(redis, "b", { prefix });
   * await a.acquire();
   * await b.acquire();
   * console.assert(await Lock.resetAll(redis, { prefix }) === 2);
   * // Their holders find out at their next renewal, extend() or release().
   * ```
   */
  static async resetAll(
    redis: RedisClient,
    options: ResetOptions = {},
  ): Promise<number> {
    checkClient(redis);
    const prefix = options.prefix === undefined
      ? DEFAULT_PREFIX
      : checkPrefix(options.prefix);
    const pattern = lockPattern(prefix);
    let cursor = "0";
    let deleted = 0;
    do {
      const [next, keys] = await redis.send<[string, string[]]>(
        "SCAN",
        cursor,
        "MATCH",
        pattern,
        "COUNT",
        1000,
        "TYPE",
        "string",
      );
      cursor = next;
      const results = await Promise.all(
        keys.map((key) =>
          RESET_SCRIPT.run<number>(redis, {
            keys: [key],
            args: [wakeChannel(key)],
          })
        ),
      );
      for (const n of results) deleted += n;
    } while (cursor !== "0");
    return deleted;
  }
}
