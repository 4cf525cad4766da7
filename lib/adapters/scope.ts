/**
 * Which Redis server a client reaches, as far as this process can tell. Two
 * places need it: `cached` lets concurrent calls join only a lookup made on
 * the same server, and a script warns `NAME not cached.` once per loss per
 * server, however many clients of this process reach it.
 *
 * @module
 */

import type { CommandSurface } from "./surface.ts";

/** Numbers the clients whose server is not known. */
let unknownServers = 0;

/** One answer per client object: the same client is always the same scope. */
const scopes = new WeakMap<CommandSurface, string>();

/**
 * The scope of a client's server. Clients with the same `server` (adapters:
 * one per underlying client) or, for respite's clients, the same `info`
 * (user, host, port and db, as connected) are one scope: per-request clients
 * to one Redis (Cloudflare Workers) share it. Any other client is a scope of
 * its own. JSON, so it holds no NUL (`cached` uses NUL as a separator).
 *
 * @param redis The client.
 * @returns A string naming the server.
 */
export function serverScope(redis: CommandSurface): string {
  let scope = scopes.get(redis);
  if (scope === undefined) {
    scope = computeScope(redis);
    scopes.set(redis, scope);
  }
  return scope;
}

function computeScope(redis: CommandSurface): string {
  if (typeof redis.server === "string") {
    return JSON.stringify(["s", redis.server]);
  }
  const info = (redis as { info?: unknown }).info;
  if (typeof info === "object" && info !== null) {
    const { hostname, port, db, username } = info as Record<string, unknown>;
    if (
      typeof hostname === "string" && typeof port === "number" &&
      typeof db === "number"
    ) {
      return JSON.stringify(["i", username ?? null, hostname, port, db]);
    }
  }
  return JSON.stringify(["c", unknownServers++]);
}
