/**
 * The semaphore's Lua scripts: acquire (prune expired holders and tickets by
 * the server's clock, take a permit if one is free and it is this ticket's
 * turn, else queue the ticket), release (remove the holder and publish the
 * tickets whose turn it now is, only when someone waits) and extend.
 *
 * @module
 */

import type { CommandSurface } from "../adapters/surface.ts";
import type { SemaphoreKeys } from "../keys.ts";
import { Script } from "../script.ts";
import type { CompareResult, SendOptions } from "../lock/scripts.ts";

// Tokens are "<ttl>:<random>:<id>": a permit handed to a waiter gets the
// waiter's own ttl. Both scripts below hand free permits to the first waiters
// in line themselves (ZADD to holders, out of the queue), and publish
// "<server ms> <token> ..." on the wake channel: a waiter that reads its
// token holds a permit without asking again. Nothing is published when
// nobody waits.

// KEYS: holders, queue, tickets, seq. ARGV[1] token, ARGV[2] ttl (ms),
// ARGV[3] limit, ARGV[4] ticket ttl (ms; "0": do not queue), ARGV[5] wake
// channel. Returns {1, server ms, expiry} when this token holds a permit
// (taken now, or handed to it while it waited), else {0, server ms, ms until
// the first holder expires}.
const SEM_ACQUIRE_SCRIPT = new Script(
  "SEM_ACQUIRE_SCRIPT",
  `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mine = redis.call('ZSCORE', KEYS[1], ARGV[1])
if mine and tonumber(mine) > now then return {1, now, tonumber(mine)} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local free = tonumber(ARGV[3]) - redis.call('ZCARD', KEYS[1])
local waiting = redis.call('ZCARD', KEYS[2])
if waiting > 0 then
  local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
  if #dead > 0 then
    redis.call('ZREM', KEYS[3], unpack(dead))
    redis.call('ZREM', KEYS[2], unpack(dead))
    waiting = redis.call('ZCARD', KEYS[2])
  end
end
if free > 0 and waiting > 0 then
  local heads = redis.call('ZRANGE', KEYS[2], 0, free - 1)
  for _, h in ipairs(heads) do
    redis.call('ZADD', KEYS[1], now + tonumber(string.match(h, '^(%d+):')), h)
  end
  redis.call('ZREM', KEYS[2], unpack(heads))
  redis.call('ZREM', KEYS[3], unpack(heads))
  redis.call('PUBLISH', ARGV[5], now .. ' ' .. table.concat(heads, ' '))
  free = free - #heads
  waiting = waiting - #heads
  mine = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if mine then return {1, now, tonumber(mine)} end
end
if free > 0 and waiting == 0 then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  return {1, now, now + tonumber(ARGV[2])}
end
if ARGV[4] ~= '0' then
  if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
    redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), ARGV[1])
  end
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[1])
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 0 then return {0, now, 0} end
return {0, now, tonumber(first[2]) - now}`,
);

// KEYS: holders, queue, tickets. ARGV[1] token, ARGV[2] limit, ARGV[3] wake
// channel. Removes the token from the holders (and from the line: a waiter
// that gives up leaves with this too), then hands free permits to the first
// waiters. 1 released, -1 not a holder (expired, or never).
const SEM_RELEASE_SCRIPT = new Script(
  "SEM_RELEASE_SCRIPT",
  `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
local r = -1
if s then
  redis.call('ZREM', KEYS[1], ARGV[1])
  if tonumber(s) > now then r = 1 end
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  if not s then
    redis.call('ZREM', KEYS[2], ARGV[1])
    redis.call('ZREM', KEYS[3], ARGV[1])
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
  if #dead > 0 then
    redis.call('ZREM', KEYS[3], unpack(dead))
    redis.call('ZREM', KEYS[2], unpack(dead))
  end
  local free = tonumber(ARGV[2]) - redis.call('ZCARD', KEYS[1])
  if free > 0 then
    local heads = redis.call('ZRANGE', KEYS[2], 0, free - 1)
    if #heads > 0 then
      for _, h in ipairs(heads) do
        redis.call('ZADD', KEYS[1], now + tonumber(string.match(h, '^(%d+):')), h)
      end
      redis.call('ZREM', KEYS[2], unpack(heads))
      redis.call('ZREM', KEYS[3], unpack(heads))
      redis.call('PUBLISH', ARGV[3], now .. ' ' .. table.concat(heads, ' '))
    end
  end
end
return r`,
);

// KEYS: holders. ARGV[1] token, ARGV[2] ttl (ms). 1 extended, -1 not a
// holder (expired: removed).
const SEM_EXTEND_SCRIPT = new Script(
  "SEM_EXTEND_SCRIPT",
  `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) > now then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  return 1
end
if s then redis.call('ZREM', KEYS[1], ARGV[1]) end
return -1`,
);

/** Every script the semaphore runs (tests load them into a server ahead of use). */
export const SEMAPHORE_SCRIPTS: readonly Script[] = [
  SEM_ACQUIRE_SCRIPT,
  SEM_RELEASE_SCRIPT,
  SEM_EXTEND_SCRIPT,
];

/** What a try found, with the server's clock (ms) when it ran. */
export type SemAcquireResult =
  | {
    /** This token holds a permit. */
    acquired: true;
    /** The server's time when the script ran (ms). */
    now: number;
    /** The permit's expiry on the server's clock (ms). */
    expiry: number;
  }
  | {
    /** No permit (yet). */
    acquired: false;
    /** The server's time when the script ran (ms). */
    now: number;
    /** Ms until the first holder's lease runs out (0: no holder). */
    firstExpiry: number;
  };

/**
 * One try to take a permit. With `ticketTtl > 0` a refused try queues (or
 * keeps) its ticket for `ticketTtl` ms.
 */
export async function semAcquireScript(
  redis: CommandSurface,
  keys: SemaphoreKeys,
  token: string,
  ttl: number,
  limit: number,
  ticketTtl: number,
  options: SendOptions = {},
): Promise<SemAcquireResult> {
  const r = await SEM_ACQUIRE_SCRIPT.run<number[]>(redis, {
    keys: [keys.holders, keys.queue, keys.tickets, keys.seq],
    args: [token, ttl, limit, ticketTtl, keys.wake],
    logger: options.logger,
    signal: options.signal,
  });
  return r[0] === 1
    ? { acquired: true, now: r[1], expiry: r[2] }
    : { acquired: false, now: r[1], firstExpiry: r[2] };
}

/**
 * Gives a permit back (or a ticket: a waiter leaving the line) and hands
 * free permits to the first waiters.
 */
export async function semReleaseScript(
  redis: CommandSurface,
  keys: SemaphoreKeys,
  token: string,
  limit: number,
  options: SendOptions = {},
): Promise<CompareResult> {
  const r = await SEM_RELEASE_SCRIPT.run<number>(redis, {
    keys: [keys.holders, keys.queue, keys.tickets],
    args: [token, limit, keys.wake],
    logger: options.logger,
    signal: options.signal,
  });
  return r === 1 ? "ok" : "expired";
}

/** Sets a holder's expiry to `ttl` ms from now if it still holds a permit. */
export async function semExtendScript(
  redis: CommandSurface,
  keys: SemaphoreKeys,
  token: string,
  ttl: number,
  options: SendOptions = {},
): Promise<CompareResult> {
  const r = await SEM_EXTEND_SCRIPT.run<number>(redis, {
    keys: [keys.holders],
    args: [token, ttl],
    logger: options.logger,
    signal: options.signal,
  });
  return r === 1 ? "ok" : "expired";
}
