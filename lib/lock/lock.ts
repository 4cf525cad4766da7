/**
 * The distributed lock: `SET key value NX PX ttl` with a fencing counter,
 * compare-and-delete release that wakes waiters over pub/sub, compare-and-
 * PEXPIRE extension, auto-renewal, and a signal that aborts when the lock is
 * lost.
 *
 * This file holds the protocol and the contention logic; the lease is in
 * `lock/lease.ts`, the Lua scripts in `lock/scripts.ts`, the local waiter queue in
 * `lock/queue.ts`, and the options and their checks in `lock/options.ts`.
 *
 * @module
 */

import { releaseOnSignals } from "./signals.ts";
import { deadline } from "../async.ts";
import type { CommandSurface, RedisLike } from "../adapters/mod.ts";
import {
  LockNotHeldError,
  type LockNotHeldReason,
  TimeoutError,
} from "../errors.ts";
import { checkEviction } from "../eviction.ts";
import { randomHex128 } from "../hex.ts";
import { type LockKeys, lockKeys } from "../keys.ts";
import { Holding, Lease, leaseMargin } from "./lease.ts";
import {
  type AcquireOptions,
  checkAcquireOptions,
  checkClient,
  checkLockHooks,
  checkLockOptions,
  checkName,
  checkResetOptions,
  checkTtl,
  type LockHooks,
  type LockOptions,
  type ResetOptions,
} from "./options.ts";
import { Acquisition } from "./acquire.ts";
import { queueOf } from "./queue.ts";
import { defaultNodeTimeout, Quorum, wakeOnAll } from "./quorum.ts";
import {
  acquireScript,
  cleanupTry,
  type CompareResult,
  extendScript,
  resetAllScript,
  resetScript,
  unlockResending,
} from "./scripts.ts";
import { checkBoolean, checkOptions, fail, type Logger } from "../validate.ts";

export type { AcquireOptions, LockHooks, LockOptions, ResetOptions };

/** Length of the random token in a lock's value (32 hex digits + ":"). */
const TOKEN_LENGTH = 33;

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
 * import assert from "node:assert/strict";
 * import { connect, Lock } from "@respite/respite";
 * await using redis = await connect();
 * await using lock = new Lock(redis, "doc:report", { ttl: 10_000, autoRenew: true });
 * if (await lock.acquire({ wait: 5_000 })) {
 *   // ... only one process in the fleet runs this at a time ...
 *   assert.equal(await new Lock(redis, "doc:report").acquire({ wait: 0 }), false);
 *   lock.signal.throwIfAborted(); // stop if the lock was lost meanwhile
 *   await lock.release(); // or let `await using` release it
 * }
 * assert.equal(lock.held, false);
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
  #redis: CommandSurface;
  /** The quorum backend of a lock over an array of clients, else `null`. */
  #quorum: Quorum | null = null;
  /** What waiters subscribe through: the client, or every node of a quorum. */
  #wakeVia: CommandSurface;
  #logger: Logger | null | undefined;
  #holding: Holding | null = null;
  /** The `releaseOnSignal` option. */
  readonly #releaseOnSignal: boolean;
  /** The `hooks` option. */
  readonly #hooks: LockHooks;
  /** When the current `acquire()` started, for the `acquired` hook. */
  #acquireStart = 0;
  /** When the current holding began, for the `released` and `lost` hooks. */
  #heldSince = 0;
  #acquiring = false;
  /** The last holding (kept after release: its signal stays current). */
  #last: Holding | null = null;
  /** The signal's controller before the first acquisition. */
  #idle: AbortController | null = null;

  /**
   * Creates a lock object; nothing is sent to Redis until `acquire()`.
   *
   * @param redis The client to use: respite's, or an app's ioredis,
   *   node-redis, Bun `RedisClient` or `@db/redis` client (see
   *   {@linkcode RedisLike}); or an array of clients of independent servers
   *   for a quorum (Redlock) lock: each step runs on all of them in
   *   parallel (each allowed `nodeTimeout` ms) and counts with ⌊N/2⌋ + 1
   *   of them within the lease's validity (ttl − elapsed − `ttl / 100 + 2`
   *   ms). Its `fence` is the largest token among the nodes that took it: a
   *   best-effort ordering, not the strict order of a single node's counter
   *   (see the README's Redlock section). An empty array is a `RangeError`,
   *   the same client twice a `TypeError`.
   * @param name The lock's name: a non-empty string without `}`.
   * @param options `ttl`, `autoRenew`, `id`, `prefix`, `logger`, `fencing`,
   *   and with an array of clients `nodeTimeout`.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { connect, Lock } from "@respite/respite";
   * await using redis = await connect();
   * const lock = new Lock(redis, "doc:ctor", { ttl: 5_000, id: "worker-1" });
   * assert.equal(lock.keys.key, "respite:lock:{doc:ctor}");
   * ```
   */
  constructor(
    redis: RedisLike | readonly RedisLike[],
    name: string,
    options: LockOptions = {},
  ) {
    const nodes = Array.isArray(redis) ? checkNodes(redis) : null;
    this.#redis = nodes === null ? checkClient(redis as RedisLike) : nodes[0];
    this.#wakeVia = nodes === null ? this.#redis : wakeOnAll(nodes);
    this.name = checkName(name);
    const o = checkLockOptions(options);
    const nt = (options as LockOptions).nodeTimeout;
    if (nodes === null && nt !== undefined) {
      throw new TypeError(
        "The Lock option nodeTimeout needs an array of clients (a quorum lock)",
      );
    }
    if (nt !== undefined && !(Number.isInteger(nt) && nt > 0)) {
      throw new RangeError(
        `The Lock option nodeTimeout must be a positive integer of ms, got ${nt}`,
      );
    }
    const ros = (options as LockOptions).releaseOnSignal;
    this.#releaseOnSignal = ros === undefined
      ? false
      : checkBoolean("Lock option releaseOnSignal", ros);
    this.#hooks = checkLockHooks(
      "Lock option hooks",
      (options as LockOptions).hooks,
    );
    this.ttl = o.ttl;
    this.autoRenew = o.autoRenew;
    this.fencing = o.fencing;
    this.id = o.id ?? randomHex128();
    this.#logger = o.logger;
    this.keys = lockKeys(this.name, o.prefix);
    if (nodes !== null) {
      this.#quorum = new Quorum(
        nodes,
        this.keys,
        nt ?? defaultNodeTimeout(this.ttl),
        this.#logger,
      );
    }
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
   * import assert from "node:assert/strict";
   * import { connect, Lock, LockLostError } from "@respite/respite";
   * await using redis = await connect();
   * const lock = new Lock(redis, "doc:signal", { ttl: 50 });
   * await lock.acquire();
   * await new Promise((r) => setTimeout(r, 80)); // outlive the lease
   * assert.ok(lock.signal.aborted);
   * assert.ok(lock.signal.reason instanceof LockLostError);
   * ```
   */
  get signal(): AbortSignal {
    const h = this.#last;
    if (h === null) return (this.#idle ??= new AbortController()).signal;
    return h.signal();
  }

  /**
   * The fencing token of the current holding, or `null` when not held (or
   * when the lock was created with `fencing: false`). Tokens
   * of one lock name strictly increase across holders and processes: each
   * is max(counter + 1, the server's clock in microseconds, e.g.
   * 1796287145476612), issued and stored back atomically with the
   * acquisition (a failed attempt issues none). Its key,
   * `<prefix>lock:{<name>}:fence`, never expires and survives `reset()`. A
   * counter that went back or was lost (a restart without persistence,
   * `FLUSHDB`/`FLUSHALL`, an `allkeys-*` eviction, a failover to a replica
   * whose copy lags behind) so resumes above every token issued before,
   * assuming the clock of the server issuing a token is not behind the clock
   * that issued the previous one by more than the time elapsed between them,
   * and fewer than one acquisition of the name per microsecond on average.
   *
   * A protected resource checks it by remembering the highest token it has
   * accepted and refusing any write that carries a lower one: a holder that
   * was paused past its lease (and whose lock another process has taken since)
   * then cannot overwrite the newer holder's work.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
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
   * assert.equal(await write(lock.fence!, "mine"), 1);
   * assert.equal(await write(lock.fence! - 1, "stale"), 0);
   * await redis.send("DEL", "respite:doc:resource");
   * ```
   */
  get fence(): number | null {
    const h = this.#holding;
    return h === null || h.isLost() ? null : h.fence;
  }

  /**
   * Whether this object holds the lock, as far as it knows (acquired, not
   * released, not lost). Compares the lease with the clock on every read.
   */
  get held(): boolean {
    return this.#holding !== null && !this.#holding.isLost();
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
   * import assert from "node:assert/strict";
   * import { connect, Lock } from "@respite/respite";
   * await using redis = await connect();
   * await using a = new Lock(redis, "doc:acquire");
   * await using b = new Lock(redis, "doc:acquire");
   * assert.equal(await a.acquire({ wait: 0 }), true);
   * assert.equal(await b.acquire({ wait: 20 }), false); // a holds it
   * await a.release();
   * assert.equal(await b.acquire({ wait: 0 }), true);
   * ```
   */
  async acquire(options: AcquireOptions = {}): Promise<boolean> {
    const { wait, signal } = checkAcquireOptions(options);
    if (this.#acquiring || this.held) {
      throw new TypeError(
        `Lock ${this.name} is already ${
          this.#acquiring ? "being acquired" : "held"
        } by this Lock object; release it first, or use one Lock object per holder`,
      );
    }
    signal?.throwIfAborted();
    checkEviction(this.#redis, this.#logger);
    this.#acquiring = true;
    this.#acquireStart = performance.now();
    try {
      return await new Acquisition(
        this.#redis,
        this.keys,
        (s) => this.#attempt(s),
        this.#wakeVia,
      ).run(wait, signal);
    } finally {
      this.#acquiring = false;
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
    const { ttl, keys } = this, redis = this.#redis, logger = this.#logger;
    const cleanup = () =>
      cleanupTry(redis, keys, value, ttl + leaseMargin(ttl), logger);
    const sent = performance.now();
    if (this.#quorum !== null) {
      const q = await this.#quorum.acquire(
        value,
        ttl,
        this.fencing,
        sent,
        signal,
      );
      if (!q.acquired) return q.pttl;
      const lease = Lease.acquired(ttl, sent);
      if (lease === null) {
        this.#quorum.unlock(value).catch(() => {});
        return 0;
      }
      this.#hold(value, q.fence, lease);
      return null;
    }
    let r;
    try {
      r = await acquireScript(redis, keys, value, ttl, this.fencing, {
        logger,
        signal,
      });
    } catch (err) {
      cleanup();
      throw err;
    }
    if (!r.acquired) return r.pttl;
    const lease = Lease.acquired(ttl, sent);
    if (lease === null) {
      cleanup();
      return 0;
    }
    this.#hold(value, r.fence, lease);
    return null;
  }

  #hold(value: string, fence: number | null, lease: Lease): void {
    const redis = this.#redis, keys = this.keys, logger = this.#logger;
    const quorum = this.#quorum;
    const unwatch = this.#releaseOnSignal
      ? releaseOnSignals(
        this.name,
        () => this.#holding === h ? this.release() : Promise.resolve(),
        logger === undefined ? redis.logger : logger,
      )
      : null;
    const h: Holding = new Holding({
      name: this.name,
      value,
      fence,
      lease,
      autoRenew: this.autoRenew,
      pexpire: (ttl, signal) =>
        quorum !== null
          ? quorum.pexpire(value, ttl, signal)
          : extendScript(redis, keys, value, ttl, { logger, signal }),
      onLost: (error) =>
        this.#emit("lost", {
          lock: this.name,
          reason: error.reason,
          error,
          held: performance.now() - this.#heldSince,
        }),
      onRenewError: (error) =>
        this.#emit("renewalFailed", { lock: this.name, error }),
      onEnd: () => {
        unwatch?.();
        const q = queueOf(redis, keys, false);
        if (q?.localHolder === h) q.localHolder = null;
      },
    });
    this.#holding = h;
    this.#last = h;
    const q = queueOf(redis, keys, false);
    if (q !== undefined) q.localHolder = h;
    this.#heldSince = performance.now();
    this.#emit("acquired", {
      lock: this.name,
      waited: this.#heldSince - this.#acquireStart,
      fence,
    });
  }

  /**
   * Calls hook `name`; one that throws, or an async one whose promise
   * rejects (an unhandled rejection would end the process), is reported to
   * the logger.
   */
  #emit<K extends keyof LockHooks>(
    name: K,
    event: Parameters<NonNullable<LockHooks[K]>>[0],
  ): void {
    const hook = this.#hooks[name] as
      | ((e: typeof event) => unknown)
      | undefined;
    if (hook === undefined) return;
    const report = (how: string, err: unknown) => {
      const logger = this.#logger === undefined
        ? this.#redis.logger
        : this.#logger;
      logger?.warn(
        `respite: the Lock ${this.name} ${name} hook ${how}: ${err}`,
      );
    };
    let r: unknown;
    try {
      r = hook(event);
    } catch (err) {
      report("threw", err);
      return;
    }
    if (
      r !== null && typeof r === "object" &&
      typeof (r as PromiseLike<unknown>).then === "function"
    ) {
      Promise.resolve(r).catch((err) => report("rejected", err));
    }
  }

  /** Calls the `released` hook. */
  #released(kept: boolean): void {
    this.#emit("released", {
      lock: this.name,
      held: performance.now() - this.#heldSince,
      kept,
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
   * With `{ keep: true }` nothing is sent: this object stops renewing and
   * forgets the holding, and the key stays until its lease runs out (a job
   * that must run at most once per `ttl` across the fleet).
   *
   * @param options `keep`: leave the key to expire at its TTL (default `false`).
   * @returns Resolves once released.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { connect, Lock } from "@respite/respite";
   * await using redis = await connect();
   * const lock = new Lock(redis, "doc:release");
   * await lock.acquire();
   * await lock.release();
   * assert.equal(await lock.locked(), false);
   * ```
   */
  async release(options?: { keep?: boolean }): Promise<void> {
    if (options !== undefined) {
      checkOptions("release() option", options, ["keep"]);
      if (options.keep !== undefined && typeof options.keep !== "boolean") {
        fail("release() option keep", "a boolean", options.keep);
      }
    }
    const h = this.#holding;
    if (h === null) throw this.#notHeld("not-acquired", "release");
    h.release(); // a lease that ran out unwatched: its signal aborts
    this.#holding = null;
    if (options?.keep === true) {
      if (!h.lost) this.#released(true);
      return;
    }
    // Wait for Redis no longer than the lease left (at least min(ttl, 1 s),
    // to tell "expired" from "taken" after a loss): by then the key expires
    // on its own.
    const ms = h.lease.releaseWait();
    const d = deadline(ms, () =>
      new TimeoutError(
        `Releasing lock ${this.name} got no answer from Redis within ${
          Math.round(ms)
        } ms; the lock expires on its own when its ${h.lease.ttl} ms lease runs out`,
      ));
    let r: CompareResult, mayHaveRun: boolean;
    if (this.#quorum !== null) {
      d.clear();
      r = await this.#quorum.unlock(h.value, Math.max(ms, 1));
      if (r === "ok") return this.#released(false);
      h.lose(r, "release() found no node holding its token");
      throw this.#notHeld(r, "release");
    }
    try {
      ({ result: r, mayHaveRun } = await unlockResending(
        this.#redis,
        this.keys,
        h.value,
        d.signal,
        this.#logger,
        (sentAt) => !h.lost && sentAt < h.expiresAt,
      ));
    } finally {
      d.clear();
    }
    if (r === "ok") return this.#released(false);
    // An earlier try that may have run within the lease explains "gone" or
    // "taken": it released, and nobody else held the lock before it did.
    if (mayHaveRun) return this.#released(false);
    // It was lost before the release: the signal says so, too.
    h.lose(
      r,
      r === "held-by-other"
        ? "release() found another holder's token"
        : "release() found its key gone",
    );
    throw this.#notHeld(r, "release");
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
   * import assert from "node:assert/strict";
   * import { connect, Lock } from "@respite/respite";
   * await using redis = await connect();
   * await using lock = new Lock(redis, "doc:extend", { ttl: 1_000 });
   * await lock.acquire();
   * await lock.extend(60_000);
   * assert.ok(await redis.send<number>("PTTL", lock.keys.key) > 1_000);
   * ```
   */
  async extend(ttl?: number): Promise<void> {
    const h = this.#holding;
    const lease = ttl === undefined ? h?.lease.ttl ?? this.ttl : checkTtl(ttl);
    if (h === null) throw this.#notHeld("not-acquired", "extend");
    if (h.isLost()) {
      const lost = h.lostError!;
      throw this.#notHeld(
        lost.reason === "held-by-other" ? "held-by-other" : "expired",
        "extend",
      );
    }
    const r = await h.pexpire(lease, true);
    if (r === "ok") {
      // A success whose reply came after the lease ran out extends nothing
      // this process may use: the holding is lost (held and signal say so).
      if (h.isLost()) throw this.#notHeld("expired", "extend");
      if (this.autoRenew && !h.ended) h.scheduleNextRenew();
      return;
    }
    h.lose(
      r,
      r === "held-by-other"
        ? "extend() found another holder's token"
        : "extend() found its key gone",
    );
    throw this.#notHeld(r, "extend");
  }

  /**
   * The owner id of whoever holds the lock now (the `id` option of its
   * `Lock`), or `null` when nobody does. Does not acquire anything.
   *
   * @returns The holder's id, or `null`.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { connect, Lock } from "@respite/respite";
   * await using redis = await connect();
   * await using lock = new Lock(redis, "doc:owner", { id: "worker-7" });
   * assert.equal(await lock.owner(), null);
   * await lock.acquire();
   * assert.equal(await lock.owner(), "worker-7");
   * ```
   */
  async owner(): Promise<string | null> {
    const v = this.#quorum !== null
      ? await this.#quorum.value()
      : await this.#redis.command<string | null>(["GET", this.keys.key]);
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
   * import assert from "node:assert/strict";
   * import { connect, Lock } from "@respite/respite";
   * await using redis = await connect();
   * await using lock = new Lock(redis, "doc:locked");
   * assert.equal(await lock.locked(), false);
   * await lock.acquire();
   * assert.equal(await new Lock(redis, "doc:locked").locked(), true);
   * ```
   */
  async locked(): Promise<boolean> {
    if (this.#quorum !== null) return await this.#quorum.value() !== null;
    return await this.#redis.command<number>(["EXISTS", this.keys.key]) === 1;
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
   * import assert from "node:assert/strict";
   * import { connect, Lock } from "@respite/respite";
   * await using redis = await connect();
   * await using lock = new Lock(redis, "doc:reset");
   * await lock.acquire();
   * assert.equal(await Lock.reset(redis, "doc:reset"), true);
   * assert.equal(await lock.locked(), false);
   * ```
   */
  static async reset(
    redis: RedisLike,
    name: string,
    options: ResetOptions = {},
  ): Promise<boolean> {
    const surface = checkClient(redis);
    checkName(name);
    const keys = lockKeys(name, checkResetOptions(options));
    return await resetScript(surface, keys.key, keys.wake);
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
   * import assert from "node:assert/strict";
   * import { connect, Lock } from "@respite/respite";
   * await using redis = await connect();
   * const prefix = "respite-doc-resetall:";
   * await using a = new Lock(redis, "a", { prefix });
   * await using b = new Lock(redis, "b", { prefix });
   * await a.acquire();
   * await b.acquire();
   * assert.equal(await Lock.resetAll(redis, { prefix }), 2);
   * // Their holders find out at their next renewal, extend() or release().
   * ```
   */
  static async resetAll(
    redis: RedisLike,
    options: ResetOptions = {},
  ): Promise<number> {
    const surface = checkClient(redis);
    return await resetAllScript(surface, checkResetOptions(options));
  }
}

/**
 * Checks the clients of a quorum lock: a non-empty array of distinct
 * clients.
 */
function checkNodes(redis: readonly RedisLike[]): CommandSurface[] {
  if (redis.length < 1) {
    throw new RangeError("A quorum Lock needs at least one client, got none");
  }
  if (new Set(redis).size !== redis.length) {
    throw new TypeError(
      "A quorum Lock was given the same client twice: each node must be a different, independent server",
    );
  }
  const nodes = redis.map((c) => checkClient(c));
  if (new Set(nodes).size !== nodes.length) {
    throw new TypeError("A quorum Lock was given the same client twice");
  }
  return nodes;
}
