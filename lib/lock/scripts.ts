/**
 * The lock's four Lua scripts, each behind a function with a typed result:
 * acquire (`SET NX PX` and the fencing counter), unlock (compare-and-delete
 * that wakes waiters), extend (compare-and-PEXPIRE) and reset (delete that
 * wakes waiters). `keys.ts` names the keys and the wake messages.
 *
 * Also the rules for sending them again: a try's compare-and-delete in the
 * background, a release resent until it gets an answer, and the `SCAN` of
 * `resetAll`.
 *
 * @module
 */

import { backoff, delay, unrefTimer } from "../async.ts";
import type { CommandSurface } from "../adapters/surface.ts";
import { ConnectionError, TimeoutError } from "../errors.ts";
import { type LockKeys, lockPattern, wakeChannel } from "../keys.ts";
import { Script } from "../script.ts";
import type { Logger } from "../validate.ts";

// KEYS[1] lock key, KEYS[2] fence counter (only when fencing); ARGV[1] value,
// ARGV[2] ttl (ms), ARGV[3] "1" to fence, "0" not to (the counter is untouched).
// Acquired: {1, fence} ({1} without fencing). Held by someone: {0, pttl of the
// holder}.
//
// Every token is max(counter + 1, the server's clock in microseconds), stored
// back as the new counter, so tokens keep increasing even when the counter went
// back or is gone: a fresh server, one that lost it (a restart without
// persistence, FLUSHALL, eviction), or a replica promoted by a failover with an
// older value. Clock assumption: the clock of the server issuing the next
// token is not behind the clock that issued the last one by more than the time
// elapsed since (NTP-synced servers, a failover that takes seconds), and there
// are fewer than one acquisition per name per microsecond on average, so the
// counter never runs ahead of the clock by more than the loss can hide. INCR
// gives counter + 1 (1 for a missing counter); a clock ahead of it replaces
// it. Microseconds stay below 2^53 until the year 2255, so the value is exact
// as a Lua double and a JS number; '%.0f' writes it without an exponent
// (Lua's tostring would give '1.7e+15').
const ACQUIRE_SCRIPT = new Script(
  "ACQUIRE_SCRIPT",
  `if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if ARGV[3] == '0' then return {1} end
  local f = redis.call('INCR', KEYS[2])
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  if now > f then
    f = now
    redis.call('SET', KEYS[2], string.format('%.0f', f))
  end
  return {1, f}
end
return {0, redis.call('PTTL', KEYS[1])}`,
);

// KEYS[1] lock key; ARGV[1] value, ARGV[2] wake channel, on which it publishes
// WAKE_RELEASED ('released'). The Lua is plain text, not interpolated:
// tests/acl_test.ts hashes the sources in lib/ to name a refused script.
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

// KEYS[1] lock key; ARGV[1] wake channel, on which it publishes WAKE_RESET
// ('reset'). Returns how many keys it deleted.
const RESET_SCRIPT = new Script(
  "RESET_SCRIPT",
  `local n = redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], 'reset')
return n`,
);

/** Every script the lock runs (tests load them into a server ahead of use). */
export const LOCK_SCRIPTS: readonly Script[] = [
  ACQUIRE_SCRIPT,
  UNLOCK_SCRIPT,
  EXTEND_SCRIPT,
  RESET_SCRIPT,
];

/** What a try to acquire found. */
export type AcquireResult =
  | {
    /** The key was set: this try holds the lock. */
    acquired: true;
    /** The fencing token, `null` without fencing. */
    fence: number | null;
  }
  | {
    /** Someone holds the lock. */
    acquired: false;
    /** The holder's remaining lease (ms), `-1` for a key without expiry. */
    pttl: number;
  };

/**
 * What a compare-and-delete or compare-and-PEXPIRE found: `"ok"` (done: the
 * key held the value), `"held-by-other"` (another value), `"expired"` (no
 * key).
 */
export type CompareResult = "ok" | "held-by-other" | "expired";

/** The 1 / 0 / -1 reply of UNLOCK and EXTEND. */
function compared(r: number): CompareResult {
  return r === 1 ? "ok" : r === 0 ? "held-by-other" : "expired";
}

/** How a script is sent: the logger of its warnings, and a signal. */
export interface SendOptions {
  /** Where `NAME not cached.` goes (default: the client's logger); `null` silences it. */
  logger?: Logger | null;
  /** Aborts waiting for the reply. */
  signal?: AbortSignal;
}

/**
 * One try: `SET key value NX PX ttl`, and with `fencing` the counter's next
 * value, atomically.
 *
 * @param redis The client.
 * @param keys The lock's keys.
 * @param value This try's value (a random token and the owner id).
 * @param ttl The lease (ms).
 * @param fencing Whether to increment the fencing counter.
 * @param options `logger`, `signal`.
 * @returns Acquired (with the token), or the holder's remaining lease.
 */
export async function acquireScript(
  redis: CommandSurface,
  keys: LockKeys,
  value: string,
  ttl: number,
  fencing: boolean,
  options: SendOptions = {},
): Promise<AcquireResult> {
  const reply = await ACQUIRE_SCRIPT.run<number[]>(redis, {
    keys: fencing ? [keys.key, keys.fence] : [keys.key],
    args: [value, ttl, fencing ? "1" : "0"],
    logger: options.logger,
    signal: options.signal,
  });
  if (reply[0] !== 1) return { acquired: false, pttl: reply[1] };
  return { acquired: true, fence: fencing ? reply[1] : null };
}

/**
 * Compare-and-delete: deletes the key if it holds `value`, and then wakes its
 * waiters (publishes `WAKE_RELEASED` of keys.ts).
 *
 * @returns What the key held.
 */
export async function unlockScript(
  redis: CommandSurface,
  keys: LockKeys,
  value: string,
  options: SendOptions = {},
): Promise<CompareResult> {
  return compared(
    await UNLOCK_SCRIPT.run<number>(redis, {
      keys: [keys.key],
      args: [value, keys.wake],
      logger: options.logger,
      signal: options.signal,
    }),
  );
}

/**
 * Compare-and-PEXPIRE: sets the key's expiry to `ttl` ms if it holds `value`.
 *
 * @returns What the key held.
 */
export async function extendScript(
  redis: CommandSurface,
  keys: LockKeys,
  value: string,
  ttl: number,
  options: SendOptions = {},
): Promise<CompareResult> {
  return compared(
    await EXTEND_SCRIPT.run<number>(redis, {
      keys: [keys.key],
      args: [value, ttl],
      logger: options.logger,
      signal: options.signal,
    }),
  );
}

/**
 * Deletes a lock key, whoever holds it, and wakes its waiters (publishes
 * `WAKE_RESET` of keys.ts).
 *
 * @param key The lock key.
 * @param wake Its wake channel.
 * @returns Whether there was a key to delete.
 */
export async function resetScript(
  redis: CommandSurface,
  key: string,
  wake: string,
): Promise<boolean> {
  const n = await RESET_SCRIPT.run<number>(redis, {
    keys: [key],
    args: [wake],
  });
  return n === 1;
}

/** Longest pause between two compare-and-deletes of an abandoned try or a release. */
const CLEANUP_MAX_GAP = 500;

/**
 * Whether `err` means no answer from Redis (a `ConnectionError` or a
 * `TimeoutError` while the client is not closing): the command may or may
 * not have run, and may be retried.
 */
export function noAnswer(redis: CommandSurface, err: unknown): boolean {
  if (!(err instanceof ConnectionError || err instanceof TimeoutError)) {
    return false;
  }
  const status = redis.status;
  return status !== "closing" && status !== "closed";
}

/**
 * Compare-and-deletes a try's own value in the background (it may have
 * set the key, or not; the UNLOCK script leaves any other value alone).
 * While that gets no answer (connection lost, timed out, or not sent: the
 * client is reconnecting and does not queue), it is sent again, at growing
 * intervals, until `ttl` after its first failure: the try ran before that
 * failure if at all (it was sent first, on the same connection), so its
 * key has expired by then. Stops when the client is closed.
 *
 * @param ttl The try's lease plus its drift margin (ms).
 */
export function cleanupTry(
  redis: CommandSurface,
  keys: LockKeys,
  value: string,
  ttl: number,
  logger: Logger | null | undefined,
): void {
  resendUnanswered(
    redis,
    () => unlockScript(redis, keys, value, { logger }),
    ttl,
  );
}

/**
 * Runs `send` in the background and, while it gets no answer ({@linkcode
 * noAnswer}), runs it again at growing intervals (20 ms doubling to 500 ms),
 * until `ttl` after its first failure; stops when the client is closed or an
 * answer (any) came. For commands that are harmless to run twice: a
 * compare-and-delete of a token of one's own.
 *
 * @param ttl How long after the first failure it is worth sending (ms).
 */
export function resendUnanswered(
  redis: CommandSurface,
  send: () => Promise<unknown>,
  ttl: number,
): void {
  let until = Infinity;
  let gap = 20;
  const once = (): void => {
    const sentAt = performance.now();
    send().catch((err) => {
      if (!noAnswer(redis, err)) return;
      const now = performance.now();
      if (until === Infinity) until = now + ttl;
      if (now >= until) return;
      const wait = Math.min(gap - (now - sentAt), until - now);
      gap = Math.min(gap * 2, CLEANUP_MAX_GAP);
      if (wait <= 0) {
        once();
      } else {
        unrefTimer(setTimeout(once, wait));
      }
    });
  };
  once();
}

/**
 * A release: compare-and-delete, sent again with backoff while it gets no
 * answer (connection lost, timed out), until `signal` aborts. It compares
 * the holding's own token, so running it twice is harmless.
 *
 * @param validAt Whether a try sent at this time, which got no answer, may
 *   have run while the lease was still valid: then "gone" or "taken" from a
 *   later try may be its doing (`mayHaveRun`).
 * @returns The last answer, and whether an earlier try may have run.
 */
export async function unlockResending(
  redis: CommandSurface,
  keys: LockKeys,
  value: string,
  signal: AbortSignal,
  logger: Logger | null | undefined,
  validAt: (sentAt: number) => boolean,
): Promise<{ result: CompareResult; mayHaveRun: boolean }> {
  let mayHaveRun = false;
  for (let tries = 0;; tries++) {
    const sentAt = performance.now();
    try {
      const result = await unlockScript(redis, keys, value, { logger, signal });
      return { result, mayHaveRun };
    } catch (err) {
      if (signal.aborted || !noAnswer(redis, err)) throw err;
      if (!(err as { notSent?: boolean }).notSent && validAt(sentAt)) {
        mayHaveRun = true;
      }
      await delay(backoff(tries, 20, CLEANUP_MAX_GAP), signal);
    }
  }
}

/**
 * Resets every lock under `prefix`, found with `SCAN` (never `KEYS`).
 *
 * @returns How many lock keys it deleted.
 */
export async function resetAllScript(
  redis: CommandSurface,
  prefix: string,
): Promise<number> {
  const pattern = lockPattern(prefix);
  // A cluster: SCAN every master; the resets are routed by the cluster.
  const scanned = redis.masters ? await redis.masters() : [redis];
  let deleted = 0;
  for (const node of scanned) {
    deleted += await resetOn(redis, node, pattern);
  }
  return deleted;
}

async function resetOn(
  redis: CommandSurface,
  node: CommandSurface,
  pattern: string,
): Promise<number> {
  let cursor = "0";
  let deleted = 0;
  do {
    const [next, keys] = await node.command<[string, string[]]>([
      "SCAN",
      cursor,
      "MATCH",
      pattern,
      "COUNT",
      1000,
      "TYPE",
      "string",
    ]);
    cursor = next;
    const results = await Promise.all(
      keys.map((key) => resetScript(redis, key, wakeChannel(key))),
    );
    for (const was of results) if (was) deleted++;
  } while (cursor !== "0");
  return deleted;
}
