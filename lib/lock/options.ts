/**
 * The options of locks — {@linkcode LockOptions}, {@linkcode AcquireOptions},
 * {@linkcode ResetOptions} — their defaults, in one table, and their checks,
 * shared by `Lock` and `withLock`. The checks use `validate.ts`, so messages
 * read alike everywhere, and an unknown option is a `TypeError`: a typo such
 * as `{ tll: 5000 }` never passes silently. They run before anything is
 * sent, so bad input writes nothing to Redis.
 *
 * @module
 */

import type { LockLostError } from "../errors.ts";
import { checkHashTag, checkPrefix, DEFAULT_PREFIX } from "../keys.ts";
import {
  checkBoolean,
  checkFunction,
  checkKnown,
  checkLogger,
  checkMs,
  checkOptions,
  checkSignal,
  checkString,
  fail,
  type Logger,
  SILENT,
} from "../validate.ts";

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
  /**
   * Only with an array of clients (a quorum lock): how long each node may
   * take to answer one step, in ms (default `min(50, max(5, ttl / 10))`). A
   * node that does not answer in time counts as "no" for that step.
   */
  nodeTimeout?: number;
  /**
   * For scripts (Deno, Bun, Node): while the lock is held, SIGINT or SIGTERM
   * releases it, then ends the process as the signal would have (exit 130
   * or 143) — unless the app has its own `process.on` listener for that
   * signal, which then decides (the lock is released all the same). Locks
   * held at once share one listener per signal: a signal releases every one
   * of them, and the process ends once all the releases have settled (each
   * waits for Redis at most for its lease left, as `release()` does). The
   * listeners are removed when the last holding ends. Default `false`: Ctrl-C
   * leaves the lock to expire at its TTL. Where there is no `process`
   * (Workers), nothing is watched.
   */
  releaseOnSignal?: boolean;
  /**
   * Callbacks for observability, called as respite notices each event (a
   * hook that throws, or an async one that rejects, is reported to the
   * logger and otherwise ignored):
   * `acquired` (with the ms waited and the fence), `released` (with the ms
   * held; `kept` for a `release({ keep: true })`), `lost` (with the
   * {@linkcode LockLostError} and its reason, once the loss is noticed: a
   * renewal, the lease timer with `autoRenew` or a read of `signal`, or a
   * release that finds the key gone), and `renewalFailed` (a renewal got no
   * answer; the lease may still hold, and the next try follows soon).
   */
  hooks?: LockHooks;
}

/**
 * The callbacks of {@linkcode LockOptions.hooks}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, Lock, type LockHooks } from "@respite/respite";
 * await using redis = await connect();
 * const seen: string[] = [];
 * const hooks: LockHooks = {
 *   acquired: (e) => seen.push(`acquired ${e.lock} after ${e.waited >= 0}`),
 *   released: (e) => seen.push(`released after ${e.held >= 0}`),
 * };
 * const lock = new Lock(redis, "doc:hooks", { hooks });
 * await lock.acquire();
 * await lock.release();
 * assert.deepEqual(seen, ["acquired doc:hooks after true", "released after true"]);
 * ```
 */
export interface LockHooks {
  /** The lock was acquired, after waiting `waited` ms; `fence` as in {@linkcode Lock.fence}. */
  acquired?(
    event: { lock: string; waited: number; fence: number | null },
  ): void;
  /** The lock was released after being held `held` ms (`kept`: left to its TTL). */
  released?(event: { lock: string; held: number; kept: boolean }): void;
  /** The lock was found lost after being held `held` ms. */
  lost?(event: {
    lock: string;
    reason: LockLostError["reason"];
    error: LockLostError;
    held: number;
  }): void;
  /** A renewal got no answer (`error`); the lease may still hold. */
  renewalFailed?(event: { lock: string; error: unknown }): void;
}

/** The names of {@linkcode LockHooks}. */
export const LOCK_HOOKS: readonly string[] = [
  "acquired",
  "released",
  "lost",
  "renewalFailed",
];

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

/** The defaults of every lock option, in one place. */
export const LOCK_DEFAULTS: {
  readonly ttl: number;
  readonly autoRenew: boolean;
  readonly fencing: boolean;
  readonly prefix: string;
  readonly wait: number;
} = {
  ttl: 30_000,
  autoRenew: false,
  fencing: true,
  prefix: DEFAULT_PREFIX,
  wait: Infinity,
};

/** The keys of {@linkcode LockOptions}. */
export const LOCK_OPTIONS: readonly string[] = [
  "ttl",
  "autoRenew",
  "id",
  "prefix",
  "logger",
  "fencing",
  "nodeTimeout",
  "releaseOnSignal",
  "hooks",
];
/** The keys of {@linkcode AcquireOptions}. */
export const ACQUIRE_OPTIONS: readonly string[] = ["wait", "signal"];
/** The keys of {@linkcode ResetOptions}. */
export const RESET_OPTIONS: readonly string[] = ["prefix"];

/** {@linkcode LockOptions}, checked, with the defaults filled in. */
export interface LockSettings {
  /** The lease (ms). */
  ttl: number;
  /** Whether the lease is renewed while held. */
  autoRenew: boolean;
  /** Whether acquisitions increment the fencing counter. */
  fencing: boolean;
  /** The owner id, if given. */
  id: string | undefined;
  /** The key prefix. */
  prefix: string;
  /** As given: `undefined` means the client's logger, `null` none. */
  logger: Logger | null | undefined;
}

/** `redis` as the command surface (lib/adapters/mod.ts): the one check of a client. */
export { checkClient } from "../adapters/mod.ts";

/** Checks a lock name: a non-empty string that keeps its hash tag. */
export function checkName(name: unknown): string {
  if (typeof name !== "string" || name.length === 0) {
    fail("A lock name", "a non-empty string", name);
  }
  // The lock's keys carry `{<name>}` as their Redis Cluster hash tag. Redis
  // hashes what lies between the first `{` and the next `}`: a `}` inside the
  // name shortens the tag, but equally for every key of the lock, so they still
  // share a slot. A name that starts with `}` leaves the tag empty; Redis then
  // hashes each whole key, and the lock key and its fencing counter could land
  // in different slots.
  checkHashTag("A lock name", name);
  return name;
}

/** Checks a ttl: a positive integer number of ms. */
export function checkTtl(ttl: unknown): number {
  return checkMs("ttl", ttl);
}

/** Checks a wait: a number of ms ≥ 0, or `Infinity` (kept as such). */
export function checkWait(wait: unknown): number {
  if (typeof wait !== "number") fail("wait", "a number of ms", wait);
  if (Number.isNaN(wait) || wait < 0) {
    fail(
      "wait",
      "0 (try once), a positive number of ms, or Infinity",
      wait,
      RangeError,
    );
  }
  return wait;
}

/**
 * Checks the options of a `Lock`, rejecting unknown ones.
 *
 * @returns The settings, with the defaults filled in.
 */
export function checkLockOptions(
  options: LockOptions | undefined,
  what = "Lock option",
): LockSettings {
  const o = checkOptions(what, options, LOCK_OPTIONS);
  return checkLockFields(o);
}

/** Checks the fields of {@linkcode LockOptions} (not unknown keys). */
export function checkLockFields(o: LockOptions): LockSettings {
  const d = LOCK_DEFAULTS;
  const ttl = o.ttl === undefined ? d.ttl : checkTtl(o.ttl);
  const autoRenew = o.autoRenew === undefined
    ? d.autoRenew
    : checkBoolean("autoRenew", o.autoRenew);
  const fencing = o.fencing === undefined
    ? d.fencing
    : checkBoolean("fencing", o.fencing);
  const id = o.id === undefined ? undefined : checkString("id", o.id);
  const prefix = o.prefix === undefined ? d.prefix : checkPrefix(o.prefix);
  checkLogger(o.logger, SILENT);
  return { ttl, autoRenew, fencing, id, prefix, logger: o.logger };
}

/**
 * Checks the options of `acquire()`, rejecting unknown ones.
 *
 * @returns `wait` (default `Infinity`) and `signal`.
 */
export function checkAcquireOptions(
  options: AcquireOptions | undefined,
): { wait: number; signal: AbortSignal | undefined } {
  const o = checkOptions("acquire() option", options, ACQUIRE_OPTIONS);
  return checkAcquireFields(o);
}

/** Checks the fields of {@linkcode AcquireOptions} (not unknown keys). */
export function checkAcquireFields(
  o: AcquireOptions,
): { wait: number; signal: AbortSignal | undefined } {
  return {
    wait: o.wait === undefined ? LOCK_DEFAULTS.wait : checkWait(o.wait),
    signal: checkSignal("signal", o.signal),
  };
}

/**
 * Checks the options of `Lock.reset()`/`resetAll()`, rejecting unknown ones.
 *
 * @returns The prefix.
 */
export function checkResetOptions(options: ResetOptions | undefined): string {
  const o = checkOptions("reset option", options, RESET_OPTIONS);
  return o.prefix === undefined ? LOCK_DEFAULTS.prefix : checkPrefix(o.prefix);
}

/** The hooks of a lock given none (shared: nothing is allocated per lock). */
const NO_HOOKS: LockHooks = Object.freeze({});

/**
 * Checks the `hooks` option of a lock: an object of known callbacks.
 *
 * @param what The option's name, for the message.
 * @param hooks The value given.
 * @returns The hooks (an empty object when none were given).
 */
export function checkLockHooks(what: string, hooks: unknown): LockHooks {
  if (hooks === undefined) return NO_HOOKS;
  if (hooks === null || typeof hooks !== "object" || Array.isArray(hooks)) {
    fail(what, "an object of callbacks", hooks);
  }
  checkKnown(`${what}`, hooks as Record<string, unknown>, LOCK_HOOKS);
  for (const [name, h] of Object.entries(hooks)) {
    if (h !== undefined) checkFunction(`${what}.${name}`, h);
  }
  return hooks as LockHooks;
}
