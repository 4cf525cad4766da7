/**
 * The distributed semaphore: at most `limit` holders of one name fleet-wide.
 * Holders are a ZSET scored by their expiry, waiters a FIFO queue of tickets
 * (which expire too), all in one hash slot. The lease, auto-renewal and the
 * signal that aborts on loss are the lock's ({@linkcode Holding}); the
 * wake-up subscription is lib/wake.ts's.
 *
 * @module
 */

import { abortable, deadline } from "../async.ts";
import type { CommandSurface, RedisLike } from "../adapters/mod.ts";
import { LockNotHeldError } from "../errors.ts";
import { randomHex128 } from "../hex.ts";
import { type SemaphoreKeys, semaphoreKeys } from "../keys.ts";
import { Holding, Lease, leaseMargin } from "../lock/lease.ts";
import {
  type AcquireOptions,
  checkAcquireOptions,
  checkClient,
  checkName,
  checkTtl,
} from "../lock/options.ts";
import {
  type CompareResult,
  noAnswer,
  resendUnanswered,
} from "../lock/scripts.ts";
import type { Logger } from "../validate.ts";
import { waitersIfAny, waitersOf } from "./waiters.ts";
import { checkSemaphoreOptions, type SemaphoreOptions } from "./options.ts";
import {
  semAcquireScript,
  semExtendScript,
  semReleaseScript,
} from "./scripts.ts";

export type { SemaphoreOptions };

/** How long a waiter's ticket lives without a new try (ms). */
const TICKET_TTL = 3_000;
/** A waiter tries again at least this often, which refreshes its ticket. */
const TICKET_REFRESH = TICKET_TTL / 3;
/** The abort reason of an acquisition whose `wait` ran out. */
const WAIT_RAN_OUT = Symbol("wait ran out");

/**
 * A distributed counting semaphore: at most `limit` holders of one name at
 * once, across every process sharing the Redis.
 *
 * `acquire()` runs one Lua script: it drops holders whose lease ran out (by
 * the server's clock), and takes a permit when one is free and no earlier
 * waiter is in line. A waiter queues a ticket (FIFO across processes) and
 * sleeps until a release publishes its ticket on the semaphore's wake
 * channel (releases publish only when someone waits; a release sent on the
 * waiter's own client wakes it from its reply instead), or until the first
 * holder's lease would run out. A crashed holder's permit comes back at its
 * TTL; an abandoned ticket expires after 3 s.
 *
 * One `Semaphore` object is one holder: acquire, work, release.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, Semaphore } from "@respite/respite";
 * await using redis = await connect();
 * await using a = new Semaphore(redis, "doc:api", { limit: 2 });
 * await using b = new Semaphore(redis, "doc:api", { limit: 2 });
 * await using c = new Semaphore(redis, "doc:api", { limit: 2 });
 * assert.equal(await a.acquire({ wait: 0 }), true);
 * assert.equal(await b.acquire({ wait: 0 }), true);
 * assert.equal(await c.acquire({ wait: 0 }), false); // two holders already
 * await a.release();
 * assert.equal(await c.acquire({ wait: 1_000 }), true);
 * ```
 */
export class Semaphore {
  /** The semaphore's name. */
  readonly name: string;
  /** How many holders at most. */
  readonly limit: number;
  /** The lease in ms. */
  readonly ttl: number;
  /** The owner id kept in this object's tokens. */
  readonly id: string;
  /** Whether the lease is renewed every `ttl / 3` while held. */
  readonly autoRenew: boolean;
  /** The Redis keys and channel of this semaphore. */
  readonly keys: SemaphoreKeys;
  #redis: CommandSurface;
  #logger: Logger | null | undefined;
  #holding: Holding | null = null;
  #last: Holding | null = null;
  #idle: AbortController | null = null;
  #acquiring = false;

  /**
   * Creates a semaphore object; nothing is sent until `acquire()`.
   *
   * @param redis The client (respite's, or an adapted one).
   * @param name The name: a non-empty string without `}`.
   * @param options `limit` (required), `ttl`, `autoRenew`, `id`, `prefix`, `logger`.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { connect, Semaphore } from "@respite/respite";
   * await using redis = await connect();
   * const s = new Semaphore(redis, "doc:ctor", { limit: 3, ttl: 5_000 });
   * assert.equal(s.keys.holders, "respite:sem:{doc:ctor}:holders");
   * assert.throws(() => new Semaphore(redis, "doc:ctor", { limit: 0 }), RangeError);
   * ```
   */
  constructor(redis: RedisLike, name: string, options: SemaphoreOptions) {
    this.#redis = checkClient(redis);
    this.name = checkName(name);
    const o = checkSemaphoreOptions(options);
    this.limit = o.limit;
    this.ttl = o.ttl;
    this.autoRenew = o.autoRenew;
    this.id = o.id ?? randomHex128();
    this.#logger = o.logger;
    this.keys = semaphoreKeys(this.name, o.prefix);
  }

  /**
   * Aborts, with a `LockLostError`, when the current permit is lost (its
   * lease ran out, or a renewal or `extend()` found it gone).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { connect, Semaphore } from "@respite/respite";
   * await using redis = await connect();
   * const s = new Semaphore(redis, "doc:signal", { limit: 1, ttl: 50 });
   * await s.acquire();
   * await new Promise((r) => setTimeout(r, 80));
   * assert.ok(s.signal.aborted);
   * ```
   */
  get signal(): AbortSignal {
    const h = this.#last;
    if (h === null) return (this.#idle ??= new AbortController()).signal;
    return h.signal();
  }

  /** Whether this object holds a permit, as far as it knows. */
  get held(): boolean {
    return this.#holding !== null && !this.#holding.isLost();
  }

  /**
   * Takes a permit, waiting up to `wait` ms (default `Infinity`; `0` tries
   * once). Resolves `true` when taken, `false` when the wait ran out; rejects
   * with the signal's reason when `signal` aborts.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { connect, Semaphore } from "@respite/respite";
   * await using redis = await connect();
   * await using a = new Semaphore(redis, "doc:acquire", { limit: 1 });
   * await using b = new Semaphore(redis, "doc:acquire", { limit: 1 });
   * assert.equal(await a.acquire(), true);
   * assert.equal(await b.acquire({ wait: 20 }), false);
   * ```
   */
  async acquire(options: AcquireOptions = {}): Promise<boolean> {
    const { wait, signal } = checkAcquireOptions(options);
    if (this.#acquiring || this.held) {
      throw new TypeError(
        `Semaphore ${this.name} is already ${
          this.#acquiring ? "being acquired" : "held"
        } by this Semaphore object; release it first`,
      );
    }
    signal?.throwIfAborted();
    this.#acquiring = true;
    const d = wait !== 0 && wait !== Infinity
      ? deadline(wait, () => WAIT_RAN_OUT, signal)
      : undefined;
    const both = d?.signal ?? signal;
    let granted: number | null = null;
    let queued = false;
    const waiters = wait === 0
      ? undefined
      : waitersOf(this.#redis, this.keys.wake);
    // A waiter's token carries its waiters' tag: a release on this client
    // hands it a permit in its reply, not by PUBLISH.
    const token = `${this.ttl}:${
      waiters?.tag ?? ""
    }${randomHex128()}:${this.id}`;
    // Listening before any try that queues: a permit handed to this token
    // later is never missed while the subscription is up.
    const unlisten = waiters?.listen(token, (at) => granted ??= at);
    try {
      // Queue at once when the subscription is up already; else try once
      // without queuing, subscribe, and then queue.
      const early = waiters?.ready === true;
      queued = early;
      let r = await this.#try(token, early ? TICKET_TTL : 0, false, both);
      if (r.acquired) return true;
      if (waiters === undefined) return false;
      if (!early) {
        await (both
          ? abortable(waiters.subscribed(), both)
          : waiters.subscribed());
        queued = true;
        r = await this.#try(token, TICKET_TTL, false, both);
        if (r.acquired) return true;
      }
      for (;;) {
        let sleep = Math.min(TICKET_REFRESH, Math.max(r.firstExpiry, 1));
        const until = performance.now() + sleep;
        while (granted === null && sleep > 0) {
          await waiters.sleep(token, sleep, both);
          sleep = until - performance.now();
        }
        if (granted !== null) {
          if (this.#hold(token, r.sent, r.now, granted + this.ttl)) {
            return true;
          }
          // Handed too long ago to trust (the event loop was held up): the
          // try below asks Redis, and a later handover is heard afresh.
          granted = null;
        }
        r = await this.#try(token, TICKET_TTL, true, both);
        if (r.acquired) return true;
      }
    } catch (err) {
      if (err === WAIT_RAN_OUT) return false;
      throw err;
    } finally {
      d?.clear();
      unlisten?.();
      this.#acquiring = false;
      if (queued && this.#holding === null) {
        // Leave the line, and give back a permit handed over meanwhile.
        this.#giveBack(token);
      }
    }
  }

  /**
   * One try. When it holds a permit, the holding is set up (`acquired`);
   * else the ms until the first holder expires. Either way the local send
   * time and the server's time, to place a later handover on this clock.
   */
  async #try(
    token: string,
    ticketTtl: number,
    again: boolean,
    signal: AbortSignal | undefined,
  ): Promise<
    { acquired: boolean; sent: number; now: number; firstExpiry: number }
  > {
    const sent = performance.now();
    let r;
    try {
      r = await semAcquireScript(
        this.#redis,
        this.keys,
        token,
        this.ttl,
        this.limit,
        ticketTtl,
        again,
        { logger: this.#logger, signal },
      );
    } catch (err) {
      // No answer (it may have run: taken a permit, or queued), aborted
      // after it was written, or an error reply (a script that fails half
      // way keeps what it did): give back whatever it may hold.
      this.#giveBack(token);
      throw err;
    }
    if (r.acquired) {
      if (this.#hold(token, sent, r.now, r.expiry)) {
        return { acquired: true, sent, now: r.now, firstExpiry: 0 };
      }
      // Came back too late to trust: give it back, and look again.
      this.#giveBack(token);
      return { acquired: false, sent, now: r.now, firstExpiry: 1 };
    }
    return { acquired: false, sent, now: r.now, firstExpiry: r.firstExpiry };
  }

  /**
   * Gives `token`'s permit back (or takes it out of the line), and wakes
   * from the reply the waiters on this client it handed a permit to (the
   * script publishes only the others).
   */
  async #releaseToken(token: string): Promise<CompareResult> {
    const w = waitersIfAny(this.#redis, this.keys.wake);
    const r = await semReleaseScript(
      this.#redis,
      this.keys,
      token,
      this.limit,
      w?.tag ?? "",
      { logger: this.#logger },
    );
    if (r.near.length > 0) w?.grant(r.now, r.near);
    return r.result;
  }

  /**
   * Gives `token`'s permit or ticket back in the background, sent again
   * while it gets no answer (for up to the lease and its margin after the
   * first failure: by then a permit it held has run out anyway). Running
   * it twice is harmless: a token that holds nothing is left alone.
   */
  #giveBack(token: string): void {
    resendUnanswered(
      this.#redis,
      () => this.#releaseToken(token),
      this.ttl + leaseMargin(this.ttl),
    );
  }

  /**
   * Sets up the holding of a permit expiring at `expiry` on the server's
   * clock, placed on this clock by a try sent at `sent` that ran at `now`
   * (server ms): the server ran it after `sent`, so the expiry is no sooner
   * than `sent + expiry - now`, less the drift margin. `false` (nothing set
   * up) when that is past.
   */
  #hold(token: string, sent: number, now: number, expiry: number): boolean {
    const expiresAt = sent + (expiry - now) - leaseMargin(this.ttl);
    if (performance.now() >= expiresAt) return false;
    const lease = new Lease(this.ttl, expiresAt);
    const redis = this.#redis, keys = this.keys, logger = this.#logger;
    const h = new Holding({
      name: this.name,
      value: token,
      fence: null,
      lease,
      autoRenew: this.autoRenew,
      pexpire: (ttl, signal) =>
        semExtendScript(redis, keys, token, ttl, { logger, signal }),
      onEnd: () => {},
    });
    this.#holding = h;
    this.#last = h;
    return true;
  }

  /**
   * Gives the permit back and wakes the next waiters. Rejects with
   * `LockNotHeldError` when not held, or when Redis found it expired. When
   * Redis does not answer (connection lost, timed out), rejects with that
   * error and sends the release again in the background until it is
   * answered, so the permit comes back without waiting out its TTL.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { connect, Semaphore } from "@respite/respite";
   * await using redis = await connect();
   * const s = new Semaphore(redis, "doc:release", { limit: 1 });
   * await s.acquire();
   * await s.release();
   * assert.equal(s.held, false);
   * ```
   */
  async release(): Promise<void> {
    const h = this.#holding;
    if (h === null) throw this.#notHeld("not-acquired", "release");
    h.release();
    this.#holding = null;
    let r;
    try {
      r = await this.#releaseToken(h.value);
    } catch (err) {
      // No answer: it may not have run. Sent again in the background (a
      // second run is harmless), so the permit does not wait out its TTL.
      if (noAnswer(this.#redis, err)) this.#giveBack(h.value);
      throw err;
    }
    if (r !== "ok") {
      h.lose("expired", "release() found its permit expired");
      throw this.#notHeld("expired", "release");
    }
  }

  /**
   * Sets the lease to `ttl` ms from now (default the semaphore's ttl).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { connect, Semaphore } from "@respite/respite";
   * await using redis = await connect();
   * await using s = new Semaphore(redis, "doc:extend", { limit: 1, ttl: 1_000 });
   * await s.acquire();
   * await s.extend(5_000);
   * assert.equal(s.held, true);
   * ```
   */
  async extend(ttl: number = this.ttl): Promise<void> {
    const h = this.#holding;
    if (h === null || h.isLost()) throw this.#notHeld("not-acquired", "extend");
    const r = await h.pexpire(checkTtl(ttl), true);
    if (r !== "ok") {
      h.lose("expired", "extend() found its permit expired");
      this.#holding = null;
      throw this.#notHeld("expired", "extend");
    }
  }

  #notHeld(
    reason: "expired" | "not-acquired",
    what: string,
  ): LockNotHeldError {
    return new LockNotHeldError(
      `Cannot ${what} semaphore ${this.name}: ${
        reason === "expired"
          ? "its permit expired"
          : "this object holds no permit"
      }`,
      { lock: this.name, reason },
    );
  }

  /** Releases the permit if held (for `await using`). */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#holding === null) return;
    try {
      await this.release();
    } catch (err) {
      if (!(err instanceof LockNotHeldError)) throw err;
    }
  }
}
