/**
 * The eviction check: lock keys carry a TTL, so a server whose
 * `maxmemory-policy` is `volatile-*` may evict a held lock once `maxmemory`
 * is reached, and one with `allkeys-*` also the fencing counter (which has no
 * TTL). On a client's first lock acquisition or `cached()` call, respite asks
 * `CONFIG GET maxmemory-policy` once (of every master, for a cluster
 * client) and warns once if it is not `noeviction`. Internal: not exported
 * from `mod.ts`.
 *
 * @module
 */

import type { CommandSurface } from "./adapters/surface.ts";
import type { Logger } from "./validate.ts";

/** Clients already checked (or being checked): one CONFIG GET each, ever. */
const checked = new WeakSet<CommandSurface>();

/**
 * Checks once per client, in the background, whether Redis may evict lock
 * keys, and warns once through `logger` if so.
 *
 * Never throws, never rejects, never delays the caller: the `CONFIG GET` goes
 * out on the client's connection and its answer is looked at whenever it
 * comes. Any failure — `NOPERM` (an ACL user without `+config|get`), an
 * unknown command (CONFIG renamed, managed services), a dropped connection —
 * is ignored and not retried. A silenced caller (`logger` `null`, or the
 * client's logger when `logger` is `undefined` and that is unset) sends
 * nothing and leaves the check to the next caller that can be told.
 *
 * @param redis The client.
 * @param logger Where the warning goes; `undefined` means the client's logger,
 *   `null` silences it.
 */
export function checkEviction(
  redis: CommandSurface,
  logger: Logger | null | undefined,
): void {
  if (checked.has(redis)) return;
  try {
    const to: Logger | null | undefined = logger === undefined
      ? redis.logger
      : logger;
    if (to === null || to === undefined) return;
    checked.add(redis);
    // A cluster client asks each master; one warning for the first that may
    // evict.
    let warned = false;
    const ask = (node: CommandSurface) =>
      node.command(["CONFIG", "GET", "maxmemory-policy"]).then((reply) => {
        const policy = policyOf(reply);
        if (warned || policy === null || policy === "noeviction") return;
        warned = true;
        try {
          to.warn(evictionWarning(policy));
        } catch {
          // A logger that throws must not become an unhandled rejection.
        }
      }, () => {});
    // One server: asked at once, on the caller's turn (a close right after
    // finds the command already out).
    if (redis.masters === undefined) ask(redis);
    else redis.masters().then((all) => all.forEach(ask), () => {});
  } catch {
    // Nothing here may fail the caller.
  }
}

/** The policy in a CONFIG GET reply (RESP2 pairs or a RESP3 map), or `null`. */
function policyOf(reply: unknown): string | null {
  let v: unknown;
  if (Array.isArray(reply)) v = reply[1];
  else if (reply instanceof Map) v = reply.get("maxmemory-policy");
  return typeof v === "string" && v.length > 0 ? v : null;
}

/**
 * The warning for an evicting policy.
 *
 * @param policy The server's `maxmemory-policy`.
 * @returns The warning's text.
 */
function evictionWarning(policy: string): string {
  // volatile-* evicts only keys with a TTL: lock keys, not fencing counters.
  const what = policy.startsWith("volatile-")
    ? "a held lock could be lost"
    : "a held lock could be lost, or fencing tokens reset";
  return `respite: maxmemory-policy is ${policy}: Redis may evict lock keys (${what}); set maxmemory-policy noeviction on servers that hold locks`;
}
