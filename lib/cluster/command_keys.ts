/**
 * Which arguments of a command are keys, so a cluster client can route it
 * to the master that owns their slot. Commands not listed are keyless and
 * go to any master (PING, SCRIPT LOAD, CLUSTER ..., TIME, ...).
 *
 * @module
 */

import type { Arg } from "../resp/encoder.ts";

/** How to find the keys of one command, by argument position (name = 0). */
type KeySpec =
  | { readonly kind: "first" } // args[1]
  | { readonly kind: "all"; readonly step: number } // args[1], args[1+step], ...
  | { readonly kind: "numkeys" } // args[2] keys follow at args[3...]
  | { readonly kind: "channels" }; // every argument is a channel (sharded)

const FIRST: KeySpec = { kind: "first" };
const ALL: KeySpec = { kind: "all", step: 1 };
const PAIRS: KeySpec = { kind: "all", step: 2 };
const NUMKEYS: KeySpec = { kind: "numkeys" };
const CHANNELS: KeySpec = { kind: "channels" };

// Lowercase names (matched case-insensitively).
const SPECS: ReadonlyMap<string, KeySpec> = new Map<string, KeySpec>([
  ...[
    "get",
    "set",
    "setex",
    "psetex",
    "setnx",
    "getset",
    "getdel",
    "getex",
    "incr",
    "incrby",
    "decr",
    "decrby",
    "append",
    "strlen",
    "expire",
    "pexpire",
    "expireat",
    "pexpireat",
    "persist",
    "ttl",
    "pttl",
    "type",
    "dump",
    "restore",
    "hget",
    "hset",
    "hdel",
    "hgetall",
    "hmget",
    "hincrby",
    "lpush",
    "rpush",
    "lpop",
    "rpop",
    "lrange",
    "llen",
    "sadd",
    "srem",
    "smembers",
    "sscan",
    "zadd",
    "zrem",
    "zrange",
    "zscore",
    "zscan",
    "xadd",
  ].map((c): [string, KeySpec] => [c, FIRST]),
  ...["del", "unlink", "exists", "mget", "touch", "watch"].map(
    (c): [string, KeySpec] => [c, ALL],
  ),
  ["mset", PAIRS],
  ["msetnx", PAIRS],
  ["eval", NUMKEYS],
  ["evalsha", NUMKEYS],
  ["eval_ro", NUMKEYS],
  ["evalsha_ro", NUMKEYS],
  ["fcall", NUMKEYS],
  ["fcall_ro", NUMKEYS],
  ["spublish", FIRST],
  ["ssubscribe", CHANNELS],
  ["sunsubscribe", CHANNELS],
]);

/**
 * The keys (or, for SPUBLISH/SSUBSCRIBE, the shard channels) of a command;
 * an empty array for a keyless one. PUBLISH is keyless: classic pub/sub is
 * broadcast across the whole cluster.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { commandKeys } from "./command_keys.ts";
 * assert.deepEqual(commandKeys(["EVALSHA", "abc", 2, "k1", "k2", "argv"]), ["k1", "k2"]);
 * assert.deepEqual(commandKeys(["MSET", "a", 1, "b", 2]), ["a", "b"]);
 * assert.deepEqual(commandKeys(["PING"]), []);
 * ```
 *
 * @param args The command name followed by its arguments.
 * @returns The key arguments, in order.
 * @throws {RangeError} EVAL-style `numkeys` that is not a count of the
 *   arguments present.
 */
export function commandKeys(args: readonly Arg[]): Arg[] {
  const name = String(args[0]);
  const spec = SPECS.get(name.toLowerCase());
  if (spec === undefined) return [];
  switch (spec.kind) {
    case "first":
      return args.length > 1 ? [args[1]] : [];
    case "channels":
      return args.slice(1);
    case "all": {
      const keys: Arg[] = [];
      for (let i = 1; i < args.length; i += spec.step) keys.push(args[i]);
      return keys;
    }
    case "numkeys": {
      const n = Number(args[2] instanceof Uint8Array ? NaN : args[2]);
      if (!Number.isInteger(n) || n < 0 || 3 + n > args.length) {
        throw new RangeError(
          `${name}: numkeys must be an integer count of the keys that follow, got ${
            String(args[2])
          }`,
        );
      }
      return args.slice(3, 3 + n);
    }
  }
}
