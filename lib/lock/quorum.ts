/**
 * The quorum (Redlock) backend of a {@linkcode Lock} over independent
 * masters: every step runs on all nodes in parallel, each node given at most
 * a small per-node timeout, and counts only with ⌊N/2⌋ + 1 agreeing nodes
 * while the lease's validity (ttl − elapsed − drift, drift = ttl / 100 + 2 ms,
 * elapsed on `performance.now()`) is still positive.
 *
 * @module
 */

import type { CommandSurface } from "../adapters/surface.ts";
import type { LockKeys } from "../keys.ts";
import { delay } from "../async.ts";
import { TimeoutError } from "../errors.ts";
import type { Logger } from "../validate.ts";
import { leaseMargin } from "./lease.ts";
import {
  acquireScript,
  type CompareResult,
  extendScript,
  unlockScript,
} from "./scripts.ts";

/** The default per-node timeout (ms): `min(50, max(5, ttl / 10))`. */
export function defaultNodeTimeout(ttl: number): number {
  return Math.min(50, Math.max(5, Math.floor(ttl / 10)));
}

/** What one quorum try found. */
export type QuorumTry =
  | { acquired: true; fence: number | null }
  | { acquired: false; pttl: number };

/**
 * Runs `run` on every node with one shared timeout of `ms` (one timer per
 * step, not per node): each node's value, or `undefined` when it did not
 * answer in time or failed. `enough`, checked at each answer, ends the wait
 * early (the nodes still out count as not answering): a node that is frozen
 * or down then costs nothing once the outcome is known. Those nodes' commands
 * are not aborted then (one not yet written would never be sent): they run
 * on, until they settle or the timeout aborts them.
 */
function onAll<T>(
  nodes: readonly CommandSurface[],
  ms: number,
  outer: AbortSignal | undefined,
  run: (node: CommandSurface, signal: AbortSignal) => Promise<T>,
  errors?: unknown[],
  enough?: (rs: readonly (T | undefined)[]) => boolean,
  grace = 0,
): Promise<(T | undefined)[]> {
  const c = new AbortController();
  const timer = setTimeout(() => c.abort(), ms);
  const signal = outer === undefined
    ? c.signal
    : AbortSignal.any([c.signal, outer]);
  const rs: (T | undefined)[] = nodes.map(() => undefined);
  let done = false;
  let graceTimer: ReturnType<typeof setTimeout> | undefined;
  const { promise, resolve } = Promise.withResolvers<(T | undefined)[]>();
  const finish = () => {
    if (done) return;
    done = true;
    clearTimeout(graceTimer);
    resolve([...rs]);
  };
  Promise.all(
    nodes.map((n, i) =>
      run(n, signal).then((r) => {
        if (done) return;
        rs[i] = r;
        if (graceTimer === undefined && enough?.(rs)) {
          // Decided: the others get `grace` ms more to answer (so that a
          // responsive node's part is done when this returns), then they
          // count as not answering.
          if (grace <= 0) finish();
          else graceTimer = setTimeout(finish, grace);
        }
      }, (err) => {
        if (!done) errors?.push(err);
      })
    ),
  ).finally(() => {
    clearTimeout(timer);
    finish();
  });
  return promise;
}

/**
 * A step that too few nodes answered to decide it: what a single node's
 * lock reports as a `TimeoutError` (no answer), not as a lost lock.
 */
function tooFewAnswers(
  step: string,
  key: string,
  answered: number,
  nodes: number,
  quorum: number,
  ms: number,
  errors: unknown[],
): TimeoutError {
  return new TimeoutError(
    `${step} the lock ${key}: only ${answered} of ${nodes} nodes answered within ${
      Math.round(ms)
    } ms, fewer than could decide it (a quorum is ${quorum})`,
    errors.length > 0 ? { cause: errors[0] } : undefined,
  );
}

/**
 * What a quorum lock's waiters subscribe through: the wake channel on every
 * node at once (a release publishes on each), confirmed as soon as one node
 * confirmed it, so a node that is down, frozen or paused neither blocks nor
 * fails the wait while others carry the wake-up (it was node 0 alone: with
 * it down, a waiter never tried and failed at its `wait`). Only the wake
 * path uses it: `subscribe`, and `status` (ready while any node is).
 */
export function wakeOnAll(nodes: readonly CommandSurface[]): CommandSurface {
  return {
    get status() {
      return nodes.some((n) => n.status === "ready")
        ? "ready"
        : nodes[0].status;
    },
    get logger() {
      return nodes[0].logger;
    },
    command: (args, options) => nodes[0].command(args, options),
    subscribe(channel, listener, options) {
      const { promise, resolve, reject } = Promise.withResolvers<
        () => Promise<void>
      >();
      const removers: (() => Promise<void>)[] = [];
      let removed = false;
      let failed = 0;
      let firstError: unknown;
      const removeAll = async () => {
        removed = true;
        await Promise.allSettled(removers.splice(0).map((r) => r()));
      };
      for (const node of nodes) {
        node.subscribe(channel, listener, options).then((remove) => {
          // Confirmed by this node: the wait may go on.
          if (removed) void remove().catch(() => {});
          else removers.push(remove);
          resolve(removeAll);
        }, (err) => {
          firstError ??= err;
          if (++failed === nodes.length) reject(firstError);
        });
      }
      return promise;
    },
  };
}

/** The quorum backend: the nodes, their quorum and the per-node timeout. */
export class Quorum {
  /** The nodes' command surfaces. */
  readonly nodes: readonly CommandSurface[];
  /** ⌊N/2⌋ + 1. */
  readonly quorum: number;
  /** Per-node timeout of each step (ms). */
  readonly nodeTimeout: number;
  /** When this Lock's last try split the nodes (`null`: it did not). */
  #splitAt: number | null = null;
  #keys: LockKeys;
  #logger: Logger | null | undefined;

  /**
   * @param nodes The nodes (checked: non-empty, distinct).
   * @param keys The lock's keys (the same on every node).
   * @param nodeTimeout Per-node timeout (ms).
   * @param logger Warnings' logger.
   */
  constructor(
    nodes: readonly CommandSurface[],
    keys: LockKeys,
    nodeTimeout: number,
    logger: Logger | null | undefined,
  ) {
    this.nodes = nodes;
    this.quorum = Math.floor(nodes.length / 2) + 1;
    this.nodeTimeout = nodeTimeout;
    this.#keys = keys;
    this.#logger = logger;
  }

  /**
   * One try on every node. On success the fence is the largest token among
   * the nodes that took it. On failure every node is compare-and-deleted of
   * `value` at once (also nodes that did not answer in time: their try may
   * still run).
   */
  async acquire(
    value: string,
    ttl: number,
    fencing: boolean,
    sent: number,
    signal: AbortSignal | undefined,
  ): Promise<QuorumTry> {
    const keys = this.#keys, logger = this.#logger;
    if (this.#splitAt !== null) {
      // The last try split the nodes with another contender, so no one got
      // a quorum; each loser's unlock wakes the others, and retrying at once,
      // each try lasting the same node timeout, they split again in step: a
      // livelock that lasted seconds with two of five nodes frozen. Redlock's
      // remedy: retry after a random delay, so one contender tries alone.
      // Before the next try rather than after the split, so that a try
      // (`wait: 0` included) still ends within its node timeout.
      const since = performance.now() - this.#splitAt;
      this.#splitAt = null;
      if (since < this.nodeTimeout) {
        await delay(Math.random() * this.nodeTimeout, signal);
      }
    }
    const results = await onAll(
      this.nodes,
      this.nodeTimeout,
      signal,
      (n, s) =>
        acquireScript(n, keys, value, ttl, fencing, { logger, signal: s }),
    );
    let ok = 0, fence: number | null = null, pttl = Infinity;
    for (const r of results) {
      if (r === undefined) continue;
      if (r.acquired) {
        ok++;
        if (r.fence !== null && (fence === null || r.fence > fence)) {
          fence = r.fence;
        }
      } else if (r.pttl >= 0) pttl = Math.min(pttl, r.pttl);
    }
    const validity = ttl - (performance.now() - sent) - leaseMargin(ttl);
    if (ok >= this.quorum && validity > 0) return { acquired: true, fence };
    this.unlock(value).catch(() => {});
    // A split (this try took some nodes, others took the rest) is followed
    // by a random pause before this Lock's next try: see #splitAt.
    if (ok > 0) this.#splitAt = performance.now();
    // Retry after the shortest foreign lease seen, or soon with jitter when
    // nodes did not answer (never 0, which means "late success").
    const retry = pttl === Infinity || pttl < 1
      ? this.nodeTimeout + Math.random() * this.nodeTimeout
      : pttl;
    signal?.throwIfAborted();
    return { acquired: false, pttl: Math.ceil(retry) };
  }

  /**
   * Compare-and-PEXPIRE on every node: `"ok"` with a quorum answered within
   * the new lease's validity; `"expired"` (or `"held-by-other"` when a
   * quorum of answers said so) when the answers rule a quorum out even if
   * every node that did not answer had said "ok", or a quorum came too late.
   * Otherwise — too few answers to tell, nodes paused or unreachable —
   * it rejects with a `TimeoutError`, as a single node's lock does when its
   * node does not answer: a renewal is then retried while the lease runs
   * (and the loss, if it comes, says "unreachable").
   */
  async pexpire(
    value: string,
    ttl: number,
    signal?: AbortSignal,
  ): Promise<CompareResult> {
    const keys = this.#keys, logger = this.#logger;
    const sent = performance.now();
    const errors: unknown[] = [];
    const rs = await onAll(
      this.nodes,
      this.nodeTimeout,
      signal,
      (n, s) => extendScript(n, keys, value, ttl, { logger, signal: s }),
      errors,
    );
    signal?.throwIfAborted();
    const ok = rs.filter((r) => r === "ok").length;
    const validity = ttl - (performance.now() - sent) - leaseMargin(ttl);
    if (ok >= this.quorum && validity > 0) return "ok";
    const unanswered = rs.filter((r) => r === undefined).length;
    if (ok < this.quorum && ok + unanswered >= this.quorum) {
      throw tooFewAnswers(
        "Extending",
        keys.key,
        rs.length - unanswered,
        rs.length,
        this.quorum,
        this.nodeTimeout,
        errors,
      );
    }
    const other = rs.filter((r) => r === "held-by-other").length;
    return other >= this.quorum ? "held-by-other" : "expired";
  }

  /**
   * Compare-and-delete on every node (each waits at most `wait` ms):
   * `"ok"` when any node deleted it; else, when a quorum answered, what
   * they said (`"held-by-other"` if any did); else a `TimeoutError`: too
   * few answers to tell a lost lock from unreachable nodes (a single
   * node's release that gets no answer rejects alike).
   */
  async unlock(value: string, wait = this.nodeTimeout * 4): Promise<
    CompareResult
  > {
    const keys = this.#keys, logger = this.#logger;
    const errors: unknown[] = [];
    // Done once every node answered, or a quorum answered and one of them
    // deleted it and the others had a short grace: no need to wait out
    // `wait` (the lease left) for a node that is frozen or down, whose key
    // expires on its own.
    const quorum = this.quorum;
    const rs = await onAll(
      this.nodes,
      wait,
      undefined,
      (n, s) => unlockScript(n, keys, value, { logger, signal: s }),
      errors,
      (rs) =>
        rs.includes("ok") &&
        rs.filter((r) => r !== undefined).length >= quorum,
      // A responsive node's delete is done when release() returns (its
      // next holder finds it free); only a frozen or dead one is left.
      Math.min(wait, Math.max(2 * this.nodeTimeout, 100)),
    );
    if (rs.some((r) => r === "ok")) return "ok";
    const answered = rs.filter((r) => r !== undefined).length;
    if (answered < this.quorum) {
      throw tooFewAnswers(
        "Releasing",
        keys.key,
        answered,
        rs.length,
        this.quorum,
        wait,
        errors,
      );
    }
    const other = rs.filter((r) => r === "held-by-other").length;
    return other > 0 ? "held-by-other" : "expired";
  }

  /** The value held by a quorum of nodes, or `null`. */
  async value(): Promise<string | null> {
    const key = this.#keys.key;
    const rs = await onAll(
      this.nodes,
      this.nodeTimeout * 4,
      undefined,
      (n, s) => n.command<string | null>(["GET", key], { signal: s }),
    );
    const counts = new Map<string, number>();
    for (const r of rs) {
      if (typeof r === "string") counts.set(r, (counts.get(r) ?? 0) + 1);
    }
    for (const [v, c] of counts) if (c >= this.quorum) return v;
    return null;
  }
}
