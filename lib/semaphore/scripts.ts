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

// KEYS: holders, queue, tickets, seq. ARGV[1] token, ARGV[2] ttl (ms),
// ARGV[3] limit, ARGV[4] ticket ttl (ms; "0": do not queue), ARGV[5] wake
// channel. Returns {1} acquired, or {0, ms until the first holder expires}.
// When a permit is taken and more are free with tickets waiting, the next
// tickets are published so that they try now.
const SEM_ACQUIRE_SCRIPT = new Script(
  "SEM_ACQUIRE_SCRIPT",
  `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
if #dead > 0 then
  redis.call('ZREM', KEYS[3], unpack(dead))
  redis.call('ZREM', KEYS[2], unpack(dead))
end
local free = limit - redis.call('ZCARD', KEYS[1])
local rank = redis.call('ZRANK', KEYS[2], ARGV[1])
local waiting = redis.call('ZCARD', KEYS[2])
if free > 0 and ((rank and rank < free) or ((not rank) and waiting < free)) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  if rank then
    redis.call('ZREM', KEYS[2], ARGV[1])
    redis.call('ZREM', KEYS[3], ARGV[1])
    waiting = waiting - 1
  end
  if free > 1 and waiting > 0 then
    local next = redis.call('ZRANGE', KEYS[2], 0, free - 2)
    redis.call('PUBLISH', ARGV[5], table.concat(next, ' '))
  end
  return {1}
end
if ARGV[4] ~= '0' then
  if not rank then
    redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), ARGV[1])
  end
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[1])
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 0 then return {0, 0} end
return {0, tonumber(first[2]) - now}`,
);

// KEYS: holders, queue. ARGV[1] token, ARGV[2] limit, ARGV[3] wake channel.
// 1 released, -1 not a holder (expired or never). Publishes the tickets whose
// turn it is when any wait.
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
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  local free = tonumber(ARGV[2]) - redis.call('ZCARD', KEYS[1])
  if free > 0 then
    local next = redis.call('ZRANGE', KEYS[2], 0, free - 1)
    redis.call('PUBLISH', ARGV[3], table.concat(next, ' '))
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

/** What a try found: acquired, or the ms until the first holder expires. */
export type SemAcquireResult =
  | { acquired: true }
  | { acquired: false; firstExpiry: number };

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
    ? { acquired: true }
    : { acquired: false, firstExpiry: r[1] };
}

/** Gives a permit back and wakes the tickets whose turn it is. */
export async function semReleaseScript(
  redis: CommandSurface,
  keys: SemaphoreKeys,
  token: string,
  limit: number,
  options: SendOptions = {},
): Promise<CompareResult> {
  const r = await SEM_RELEASE_SCRIPT.run<number>(redis, {
    keys: [keys.holders, keys.queue],
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
