/**
 * The semaphore's Lua scripts: acquire (take a permit if one is free and
 * nobody live is in line before this token, else queue its ticket), release
 * (remove the holder and hand the free permits to the first live tickets in
 * line, publishing them only when someone waits) and extend, all by the
 * server's clock.
 *
 * @module
 */

import type { CommandSurface } from "../adapters/surface.ts";
import type { SemaphoreKeys } from "../keys.ts";
import { Script } from "../script.ts";
import type { CompareResult, SendOptions } from "../lock/scripts.ts";

// Tokens are "<ttl>:<random>:<id>": a permit handed to a waiter gets the
// waiter's own ttl. A waiting token's random part starts with the tag of
// its client's waiters (lib/semaphore/waiters.ts). Both scripts below hand
// free permits to the first live waiters in line themselves (ZPOPMIN off the
// queue, ZADD to holders), and publish "<server ms> <key> ..." on the wake
// channel, each token by its key (`<ttl>:<hex>`, without the owner id,
// which may hold spaces): a waiter that reads its key holds a permit
// without asking again. A release returns, rather than publishes, the
// tokens that carry the releasing client's tag: that client wakes them
// from the reply. Nothing is published when nobody (elsewhere) waits.
//
// Cost, in commands run inside Lua: every redis.call is O(1) or O(log n) in
// the holders or the queue (times the permits handed); nothing scans the
// queue. A holder whose lease ran out is pruned when it matters: when the
// holders look full (acquire) and at every release. A waiter's ticket is
// checked when it reaches the head of the line (ZMSCORE on the popped
// heads): a dead ticket is dropped there, never handed a permit. The queue
// and the tickets always hold the same tokens (added and removed together).
// `hand` is the same text in both scripts (a script is one literal).
//
// Lifetimes: no key outlives its use. The holders' ZSET is kept alive
// (PTTL, then PEXPIRE when shorter) as long as its longest lease, at every
// ZADD to it; the line — tickets, queue and the seq counter — as long as its
// longest ticket, the three together, so the counter never restarts under a
// queue that still exists. A name nobody uses any more (its holders and
// waiters gone, crashed ones included) leaves no key behind.

// KEYS: holders, queue, tickets, seq. ARGV[1] token, ARGV[2] ttl (ms),
// ARGV[3] limit, ARGV[4] ticket ttl (ms; "0": do not queue), ARGV[5] wake
// channel, ARGV[6] "1" when the token may hold a permit already (a waiter's
// later try), else "0". Returns {1, server ms, expiry} when this token holds
// a permit (taken now, or handed to it while it waited), else {0, server ms,
// ms until the first holder expires}.
const SEM_ACQUIRE_SCRIPT = new Script(
  "SEM_ACQUIRE_SCRIPT",
  `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function keep(key, ms)
  if redis.call('PTTL', key) < tonumber(ms) then
    redis.call('PEXPIRE', key, ms)
  end
end
local function hand(free, tag)
  local given, near, far, longest = {}, {}, {}, 0
  while free > 0 do
    local popped = redis.call('ZPOPMIN', KEYS[2], math.min(free, 1000))
    if #popped == 0 then break end
    local heads = {}
    for i = 1, #popped, 2 do heads[#heads + 1] = popped[i] end
    local alive = redis.call('ZMSCORE', KEYS[3], unpack(heads))
    redis.call('ZREM', KEYS[3], unpack(heads))
    local add = {}
    for i, h in ipairs(heads) do
      if alive[i] and tonumber(alive[i]) > now then
        local ttl = string.match(h, '^(%d+):')
        if tonumber(ttl) > longest then longest = tonumber(ttl) end
        add[#add + 1] = now + tonumber(ttl)
        add[#add + 1] = h
        given[#given + 1] = h
        if tag ~= '' and string.sub(h, #ttl + 2, #ttl + 1 + #tag) == tag then
          near[#near + 1] = h
        else
          far[#far + 1] = string.match(h, '^%d+:%x+')
        end
        free = free - 1
      end
    end
    if #add > 0 then redis.call('ZADD', KEYS[1], unpack(add)) end
  end
  if longest > 0 then keep(KEYS[1], longest) end
  if #far > 0 then
    redis.call('PUBLISH', ARGV[5], now .. ' ' .. table.concat(far, ' '))
  end
  return given, near
end
if ARGV[6] == '1' then
  local mine = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if mine and tonumber(mine) > now then return {1, now, tonumber(mine)} end
end
local limit = tonumber(ARGV[3])
local n = redis.call('ZCARD', KEYS[1])
local first = nil
if n >= limit then
  first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if tonumber(first[2]) <= now then
    n = n - redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
    first = nil
  end
end
if n < limit then
  local given = hand(limit - n, '')
  for _, h in ipairs(given) do
    if h == ARGV[1] then return {1, now, now + tonumber(ARGV[2])} end
  end
  if n + #given < limit then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
    keep(KEYS[1], ARGV[2])
    return {1, now, now + tonumber(ARGV[2])}
  end
end
if ARGV[4] ~= '0' then
  if redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[1]) == 1 then
    redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), ARGV[1])
  end
  -- The line (tickets, queue, seq) lives as long as its longest ticket:
  -- the three are kept together, so the counter never restarts under a
  -- queue that still exists.
  if redis.call('PTTL', KEYS[3]) < tonumber(ARGV[4]) then
    redis.call('PEXPIRE', KEYS[3], ARGV[4])
    redis.call('PEXPIRE', KEYS[2], ARGV[4])
    redis.call('PEXPIRE', KEYS[4], ARGV[4])
  end
end
if first == nil then first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES') end
if #first == 0 then return {0, now, 0} end
return {0, now, tonumber(first[2]) - now}`,
);

// KEYS: holders, queue, tickets. ARGV[1] token, ARGV[2] limit, ARGV[3] wake
// channel, ARGV[4] the releasing client's waiters' tag ("" if none).
// Removes the token from the holders (or from the line: a waiter that gives
// up leaves with this too), then hands free permits to the first live
// waiters. Returns {1 released or -1 not a holder (expired, or never),
// server ms, the tokens handed a permit that carry the tag...}.
const SEM_RELEASE_SCRIPT = new Script(
  "SEM_RELEASE_SCRIPT",
  `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function keep(key, ms)
  if redis.call('PTTL', key) < tonumber(ms) then
    redis.call('PEXPIRE', key, ms)
  end
end
local function hand(free, tag)
  local given, near, far, longest = {}, {}, {}, 0
  while free > 0 do
    local popped = redis.call('ZPOPMIN', KEYS[2], math.min(free, 1000))
    if #popped == 0 then break end
    local heads = {}
    for i = 1, #popped, 2 do heads[#heads + 1] = popped[i] end
    local alive = redis.call('ZMSCORE', KEYS[3], unpack(heads))
    redis.call('ZREM', KEYS[3], unpack(heads))
    local add = {}
    for i, h in ipairs(heads) do
      if alive[i] and tonumber(alive[i]) > now then
        local ttl = string.match(h, '^(%d+):')
        if tonumber(ttl) > longest then longest = tonumber(ttl) end
        add[#add + 1] = now + tonumber(ttl)
        add[#add + 1] = h
        given[#given + 1] = h
        if tag ~= '' and string.sub(h, #ttl + 2, #ttl + 1 + #tag) == tag then
          near[#near + 1] = h
        else
          far[#far + 1] = string.match(h, '^%d+:%x+')
        end
        free = free - 1
      end
    end
    if #add > 0 then redis.call('ZADD', KEYS[1], unpack(add)) end
  end
  if longest > 0 then keep(KEYS[1], longest) end
  if #far > 0 then
    redis.call('PUBLISH', ARGV[3], now .. ' ' .. table.concat(far, ' '))
  end
  return given, near
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local r = 1
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  r = -1
  if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then
    redis.call('ZREM', KEYS[3], ARGV[1])
  end
end
local out = {r, now}
local free = tonumber(ARGV[2]) - redis.call('ZCARD', KEYS[1])
if free > 0 then
  local _, near = hand(free, ARGV[4])
  for _, h in ipairs(near) do out[#out + 1] = h end
end
return out`,
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
  if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
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
 * keeps) its ticket for `ticketTtl` ms. `again`: a later try of a waiter,
 * whose token may hold a permit already (a token's first try cannot).
 */
export async function semAcquireScript(
  redis: CommandSurface,
  keys: SemaphoreKeys,
  token: string,
  ttl: number,
  limit: number,
  ticketTtl: number,
  again: boolean,
  options: SendOptions = {},
): Promise<SemAcquireResult> {
  const r = await SEM_ACQUIRE_SCRIPT.run<number[]>(redis, {
    keys: [keys.holders, keys.queue, keys.tickets, keys.seq],
    args: [token, ttl, limit, ticketTtl, keys.wake, again ? 1 : 0],
    logger: options.logger,
    signal: options.signal,
  });
  return r[0] === 1
    ? { acquired: true, now: r[1], expiry: r[2] }
    : { acquired: false, now: r[1], firstExpiry: r[2] };
}

/** What a release found, and the permits it handed to the caller's waiters. */
export interface SemReleaseResult {
  /** `"ok"`: the token held a permit; `"expired"`: it did not (any more). */
  result: CompareResult;
  /** The server's time when the script ran (ms). */
  now: number;
  /** Tokens carrying the caller's tag that now hold a permit (not published). */
  near: string[];
}

/**
 * Gives a permit back (or a ticket: a waiter leaving the line) and hands
 * free permits to the first waiters; those whose token carries `tag` (the
 * caller's own waiters; `""`: none) are returned instead of published.
 */
export async function semReleaseScript(
  redis: CommandSurface,
  keys: SemaphoreKeys,
  token: string,
  limit: number,
  tag: string,
  options: SendOptions = {},
): Promise<SemReleaseResult> {
  const r = await SEM_RELEASE_SCRIPT.run<(number | string)[]>(redis, {
    keys: [keys.holders, keys.queue, keys.tickets],
    args: [token, limit, keys.wake, tag],
    logger: options.logger,
    signal: options.signal,
  });
  return {
    result: r[0] === 1 ? "ok" : "expired",
    now: r[1] as number,
    near: r.slice(2) as string[],
  };
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
