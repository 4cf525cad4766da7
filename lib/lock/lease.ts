/**
 * The lease of one holding of a lock: how long this process may take the key
 * to be its own, kept as a lower bound of the key's expiry in Redis over every
 * compare-and-PEXPIRE sent (renewals and `extend()`), whatever order their
 * replies come back in; when the next renewal is due; and when the holding is
 * lost.
 *
 * {@linkcode Lease} is the arithmetic alone, on a clock it is given (by
 * default `performance.now`), so it is tested with a fake clock, without Redis
 * or real time. {@linkcode Holding} drives it: the timers (the lease running
 * out, auto-renewal), the signal that aborts on loss, and the PEXPIREs, which
 * it sends through a function it is given.
 *
 * @module
 */

import { deadline, timerMs, unrefTimer } from "../async.ts";
import { LockLostError, type LockLostReason, TimeoutError } from "../errors.ts";
import type { CompareResult } from "./scripts.ts";

/** A monotonic clock in ms. */
export type Clock = () => number;

/** The default clock: `performance.now()`. */
export const monotonic: Clock = () => performance.now();

/**
 * The safety margin taken off every lease for clock drift between this
 * process and Redis: `ttl / 100 + 2` ms (Redlock's drift factor of 1 % plus
 * 2 ms, which also covers Redis keeping expiries in whole ms), at most half
 * the lease so that leases of a few ms stay acquirable.
 */
export function leaseMargin(ttl: number): number {
  return Math.min(ttl * 0.01 + 2, ttl / 2);
}

/** What became of a confirmed PEXPIRE, for {@linkcode Lease.confirm}. */
export type Confirmed =
  /** It moved the bound (the lease timer must follow). */
  | "applied"
  /** A command sent after it was applied already: nothing changes. */
  | "stale"
  /** The lease had run out locally before the reply: not resurrected. */
  | "ran-out"
  /** The holding was released or lost: nothing changes. */
  | "ended";

/** A compare-and-PEXPIRE sent, from {@linkcode Lease.send}. */
export interface SentPexpire {
  /** Its sequence number. */
  readonly seq: number;
  /** The ttl it carried (ms). */
  readonly ttl: number;
  /** Its send time + `ttl` − the margin: the key's expiry is no sooner if it ran. */
  readonly bound: number;
  /** Whether sending it lowered the lease's bound. */
  readonly lowered: boolean;
}

/** The bookkeeping of one holding's lease, on an injectable clock. */
export class Lease {
  /** The clock every time here is read from. */
  readonly now: Clock;
  /** The lease length renewals and the local expiry use (ms). */
  ttl: number;
  /**
   * The clock's time before which the key surely has not expired in Redis: a
   * lower bound of its expiry, over every PEXPIRE sent for this holding (each
   * counted from its send time, minus {@linkcode leaseMargin}).
   */
  expiresAt: number;
  /** Sequence number of the last compare-and-PEXPIRE sent (renewals and `extend()`). */
  sentSeq = 0;
  /** Sequence number of the command whose reply last set `expiresAt`. */
  appliedSeq = 0;
  /** Sequence number of the `extend()` that last set `ttl`. */
  ttlSeq = 0;
  /**
   * PEXPIREs sent and not confirmed (out, or failed without an answer, so
   * they may still run): sequence number → send time + the ttl it carried,
   * less the margin.
   */
  readonly pending: Map<number, number> = new Map();
  /** Why the last renewal failed without an answer, until one succeeds. */
  renewError: unknown = undefined;
  /** Released or lost: the bookkeeping stops. */
  ended = false;

  /**
   * The lease of an acquisition of `ttl` ms sent at `sentAt`, or `null` when
   * its reply came too late: at or after `sentAt + ttl - leaseMargin(ttl)`,
   * when the key may have expired in Redis already (and another process may
   * hold the lock).
   */
  static acquired(
    ttl: number,
    sentAt: number,
    now: Clock = monotonic,
  ): Lease | null {
    const expiresAt = sentAt + ttl - leaseMargin(ttl);
    if (now() >= expiresAt) return null;
    return new Lease(ttl, expiresAt, now);
  }

  /**
   * @param ttl The lease length (ms).
   * @param expiresAt The first bound of the key's expiry, on `now`.
   * @param now The clock.
   */
  constructor(ttl: number, expiresAt: number, now: Clock = monotonic) {
    this.ttl = ttl;
    this.expiresAt = expiresAt;
    this.now = now;
  }

  /** How long the lease still runs (ms; ≤ 0 once run out). */
  left(): number {
    return this.expiresAt - this.now();
  }

  /** Whether the lease ran out locally and has not been ended yet. */
  ranOut(): boolean {
    return !this.ended && this.expiresAt <= this.now();
  }

  /**
   * Records a compare-and-PEXPIRE of `ttl` ms being sent now. While it is
   * out it may run at any moment, so the bound drops at once to its send
   * time + `ttl` (less the margin) if that is sooner.
   *
   * @returns The command, to pass to {@linkcode Lease.answered} and
   *   {@linkcode Lease.confirm}; `lowered` says whether the bound dropped.
   */
  send(ttl: number): SentPexpire {
    const seq = ++this.sentSeq;
    const bound = this.now() + ttl - leaseMargin(ttl);
    this.pending.set(seq, bound);
    const lowered = !this.ended && bound < this.expiresAt;
    if (lowered) this.expiresAt = bound;
    return { seq, ttl, bound, lowered };
  }

  /**
   * The command got an answer (any): it no longer runs later. One that got
   * none (connection lost, timed out) stays pending, since it may still run,
   * until a command sent after it succeeds.
   */
  answered(sent: SentPexpire): void {
    this.pending.delete(sent.seq);
  }

  /**
   * The command succeeded (call after {@linkcode Lease.answered}). Its own
   * ttl is used for its own expiry (never `this.ttl` re-read at reply time).
   * It moves the bound to its send time + ttl (less the margin), capped by
   * the commands sent after it that are still out; the reply of a command
   * sent before one whose success was already applied changes nothing, and
   * neither does any reply once the lease has run out locally (the holding
   * is then lost, not resurrected).
   *
   * @param setsTtl Whether it was an `extend()`, whose ttl later renewals use.
   */
  confirm(sent: SentPexpire, setsTtl: boolean): Confirmed {
    if (this.ended) return "ended";
    if (this.expiresAt <= this.now()) return "ran-out";
    const { seq } = sent;
    if (setsTtl && seq > this.ttlSeq) {
      this.ttl = sent.ttl;
      this.ttlSeq = seq;
    }
    if (seq <= this.appliedSeq) return "stale";
    this.appliedSeq = seq;
    let at = sent.bound;
    for (const [s, b] of this.pending) {
      if (s < seq) this.pending.delete(s);
      else if (b < at) at = b;
    }
    this.expiresAt = at;
    this.renewError = undefined;
    return "applied";
  }

  /** Delay of the first renewal: a third of the lease. */
  firstRenewal(): number {
    return this.ttl / 3;
  }

  /** Delay of the next renewal: a third into the lease left (at most `ttl / 3`). */
  nextRenewal(): number {
    return Math.min(this.ttl, this.left()) / 3;
  }

  /**
   * How long a renewal sent now may wait for its answer: half of what is
   * left (at least 1 ms), so a renewal that got no answer is known to have
   * failed (and is retried) while the lease still runs.
   */
  renewTimeout(): number {
    return Math.max(this.left() / 2, 1);
  }

  /**
   * After a renewal without an answer: the delay of the next try (soon, and
   * within the lease left), or `null` when the lease has run out.
   */
  retryDelay(): number | null {
    const left = this.left();
    return left > 0 ? Math.min(this.ttl / 10, left / 2) : null;
  }

  /**
   * How long `release()` waits for Redis: no longer than the lease left (at
   * least `min(ttl, 1 s)`, to tell "expired" from "taken" after a loss): by
   * then the key expires on its own.
   */
  releaseWait(): number {
    return Math.max(this.left(), Math.min(this.ttl, 1_000));
  }
}

/** What a {@linkcode Holding} is made of. */
export interface HoldingInit {
  /** The lock's name, for messages. */
  name: string;
  /** This holding's value in the lock key (its random token and owner id). */
  value: string;
  /** The fencing token, `null` without fencing. */
  fence: number | null;
  /** Its lease. */
  lease: Lease;
  /** Renew the lease every `ttl / 3` (and run the lease timer from the start). */
  autoRenew: boolean;
  /** Sends one compare-and-PEXPIRE of this holding's value. */
  pexpire(ttl: number, signal?: AbortSignal): Promise<CompareResult>;
  /** Called once when the holding ends (released or lost). */
  onEnd(): void;
  /** Called once when it is found lost (the signal's reason). */
  onLost?(error: LockLostError): void;
  /** Called when a renewal got no answer (the lease may still hold). */
  onRenewError?(error: unknown): void;
}

/**
 * One holding of a lock, from a successful acquire to release or loss: its
 * lease, the timer that declares it lost when the lease runs out, the
 * auto-renewal loop, and the signal that aborts on loss.
 */
export class Holding {
  /** This holding's value in the lock key. */
  readonly value: string;
  /** The fencing token, `null` without fencing. */
  readonly fence: number | null;
  /** Its lease. */
  readonly lease: Lease;
  /** The loss, once lost (the signal's reason). */
  lostError: LockLostError | undefined = undefined;
  #init: HoldingInit;
  /** Created on first read of the signal (or on loss). */
  #controller: AbortController | null = null;
  /**
   * Whether the lease timer runs: with `autoRenew`, or once the signal was
   * read. Either way, every look at the holding (`held`, `fence`, `signal`,
   * `extend()`, `release()`) also compares `expiresAt` with the clock, so a
   * lease that ran out while the event loop was blocked is noticed at once.
   */
  #armed: boolean;
  #leaseTimer: ReturnType<typeof setTimeout> | undefined;
  #renewTimer: ReturnType<typeof setTimeout> | undefined;

  /** Starts the holding (its lease timer and renewals with `autoRenew`). */
  constructor(init: HoldingInit) {
    this.#init = init;
    this.value = init.value;
    this.fence = init.fence;
    this.lease = init.lease;
    this.#armed = init.autoRenew;
    if (this.#armed) this.#arm();
    if (init.autoRenew) this.#scheduleRenew(this.lease.firstRenewal());
  }

  /** Whether it was lost. */
  get lost(): boolean {
    return this.lostError !== undefined;
  }

  /** Whether it was released or lost. */
  get ended(): boolean {
    return this.lease.ended;
  }

  /** The clock's time before which its key surely has not expired. */
  get expiresAt(): number {
    return this.lease.expiresAt;
  }

  /**
   * The signal that aborts on loss. Reading it starts the lease timer, and
   * a lease that ran out already (also while the timer could not run)
   * aborts it now.
   */
  signal(): AbortSignal {
    if (this.#controller === null) {
      this.#controller = new AbortController();
      if (this.lostError !== undefined) this.#controller.abort(this.lostError);
    }
    if (!this.ended) {
      if (!this.#armed) {
        this.#armed = true;
        // The timer aborts it when the lease runs out.
        this.#arm();
      }
      if (this.lease.ranOut()) this.#ranOut();
    }
    return this.#controller.signal;
  }

  /**
   * Whether it is lost, noticing first a lease that ran out, whether its
   * timer runs or not (a blocked event loop keeps it from firing).
   */
  isLost(): boolean {
    if (this.lease.ranOut()) this.#ranOut();
    return this.lost;
  }

  /** Ends it for a release: stops its timers (after noticing a lease that ran out). */
  release(): void {
    this.isLost(); // a lease that ran out unwatched: its signal aborts
    if (this.ended) return;
    this.lease.ended = true;
    this.#stopTimers();
    this.#init.onEnd();
  }

  /** Declares it lost (also after a release): the signal aborts. */
  lose(reason: LockLostReason, why: string, cause?: unknown): void {
    if (this.lost) return;
    const wasEnded = this.lease.ended;
    this.lease.ended = true;
    this.#stopTimers();
    if (!wasEnded) this.#init.onEnd();
    const name = this.#init.name;
    this.lostError = new LockLostError(`Lock ${name} was lost: ${why}`, {
      lock: name,
      reason,
      cause,
    });
    this.#controller?.abort(this.lostError);
    this.#init.onLost?.(this.lostError);
  }

  /**
   * Sends one compare-and-PEXPIRE of `ttl` ms (a renewal, or `extend()` when
   * `setsTtl`) and keeps the lease's bound a lower bound of the key's expiry
   * in Redis, whatever order the replies of concurrent commands come back
   * in (see {@linkcode Lease.send} and {@linkcode Lease.confirm}).
   */
  async pexpire(
    ttl: number,
    setsTtl: boolean,
    signal?: AbortSignal,
  ): Promise<CompareResult> {
    const sent = this.lease.send(ttl);
    if (sent.lowered) this.#arm();
    // On a rejection (no answer) its bound stays pending: it may still run,
    // until a command sent after it succeeds.
    const r = await this.#init.pexpire(ttl, signal);
    this.lease.answered(sent);
    if (r !== "ok") return r;
    const c = this.lease.confirm(sent, setsTtl);
    if (c === "applied") this.#arm();
    else if (c === "ran-out") this.#ranOut();
    return r;
  }

  /** Schedules the next renewal a third into the lease left (at most `ttl / 3`). */
  scheduleNextRenew(): void {
    this.#scheduleRenew(this.lease.nextRenewal());
  }

  /** (Re)starts the timer that declares it lost when its lease runs out locally. */
  #arm(): void {
    if (!this.#armed) return;
    clearTimeout(this.#leaseTimer);
    this.#leaseTimer = setTimeout(() => {
      this.#leaseTimer = undefined;
      this.#ranOut();
    }, timerMs(this.lease.left()));
    unrefTimer(this.#leaseTimer);
  }

  #ranOut(): void {
    const { ttl, renewError } = this.lease;
    if (renewError !== undefined) {
      this.lose(
        "unreachable",
        `could not be renewed before its ${ttl} ms lease ran out`,
        renewError,
      );
    } else {
      this.lose("expired", `its ${ttl} ms lease ran out`);
    }
  }

  #stopTimers(): void {
    clearTimeout(this.#leaseTimer);
    clearTimeout(this.#renewTimer);
    this.#leaseTimer = undefined;
    this.#renewTimer = undefined;
  }

  #scheduleRenew(delay: number): void {
    clearTimeout(this.#renewTimer);
    this.#renewTimer = setTimeout(() => {
      this.#renewTimer = undefined;
      void this.#renew();
    }, Math.max(delay, 1));
    unrefTimer(this.#renewTimer);
  }

  async #renew(): Promise<void> {
    if (this.ended) return;
    if (this.lease.ranOut()) {
      // Due after the lease ran out (the event loop was blocked): lost.
      this.#ranOut();
      return;
    }
    const timeout = this.lease.renewTimeout();
    const d = deadline(timeout, () =>
      new TimeoutError(
        `renewing lock ${this.#init.name} got no answer within ${
          Math.round(timeout)
        } ms`,
      ));
    let r: CompareResult;
    try {
      r = await this.pexpire(this.lease.ttl, false, d.signal);
    } catch (err) {
      if (this.ended) return;
      this.lease.renewError = err;
      this.#init.onRenewError?.(err);
      // Try again soon; the lease timer declares the lock lost if no renewal
      // succeeds before it runs out.
      const retry = this.lease.retryDelay();
      if (retry !== null) this.#scheduleRenew(retry);
      return;
    } finally {
      d.clear();
    }
    if (this.ended) return;
    if (r === "ok") {
      this.scheduleNextRenew();
    } else if (r === "held-by-other") {
      this.lose("held-by-other", "a renewal found another holder's token");
    } else {
      this.lose("expired", "a renewal found its key gone");
    }
  }
}
