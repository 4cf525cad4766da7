/**
 * `checkClient(x)`: the one place where what an app passed as `redis` turns
 * into the {@linkcode CommandSurface} that locks and caches use. Detected by
 * shape, never by `instanceof` (two installed copies of a package would fail
 * that): respite's own client passes through as it is; an ioredis,
 * node-redis, Bun `RedisClient` or `@db/redis` client gets its adapter
 * (one file each in this folder). The result is kept per object, so calling
 * this on every call costs one `WeakMap` lookup.
 *
 * @module
 */

import type { RedisClient } from "../client/client.ts";
import { describe } from "../validate.ts";
import { type BunRedisLike, BunRedisSurface, isBunRedis } from "./bun.ts";
import { type DbRedisLike, DbRedisSurface, isDbRedis } from "./db_redis.ts";
import { type IoredisLike, IoredisSurface, isIoredis } from "./ioredis.ts";
import {
  isNodeRedis,
  isNodeRedis5,
  isNodeRedisClusterOrSentinel,
  type NodeRedisLike,
  NodeRedisSurface,
} from "./node_redis.ts";
import type { CommandSurface } from "./surface.ts";

export type { CommandSurface } from "./surface.ts";

/**
 * What may be passed as `redis`: respite's {@linkcode RedisClient}, or an
 * app's ioredis (v5, v6), node-redis (v5, v6), Bun `RedisClient` or
 * `@db/redis` client. Told apart by shape at run time; this type only keeps
 * out objects that have none of their methods. See the README's "Bring your
 * own client" for what each kind needs and how its waiters are woken.
 *
 * @example
 * ```ts
 * import { withLock } from "@respite/respite";
 * import { Redis } from "npm:ioredis@6.0.0";
 * import assert from "node:assert/strict";
 * const ioredis = new Redis(Deno.env.get("REDIS_URL") ?? "redis://127.0.0.1:6379");
 * const run = withLock(async () => "done", { redis: ioredis, name: "doc:byo" });
 * assert.equal(await run(), "done");
 * await ioredis.quit();
 * ```
 */
export type RedisLike =
  | RedisClient
  | CommandSurface
  | {
    /** ioredis */
    call?: unknown;
    /** node-redis, `@db/redis` */
    sendCommand?: unknown;
    /** Bun's `RedisClient` */
    send?: unknown;
  };

const surfaces = new WeakMap<object, CommandSurface>();

const STATUSES = new Set([
  "connecting",
  "ready",
  "reconnecting",
  "closing",
  "closed",
]);

/** respite's client (any copy), or anything that already is the surface. */
function isSurface(x: Record<string, unknown>): boolean {
  return typeof x.command === "function" &&
    typeof x.subscribe === "function" && STATUSES.has(x.status as string) &&
    typeof x.logger === "object" && x.logger !== null;
}

const ACCEPTED =
  "a respite client from connect(), or an ioredis (v5, v6), node-redis (v5, v6: createClient()), Bun RedisClient or @db/redis client";

/**
 * Turns `redis` into the command surface: respite's client as it is, any
 * other accepted client through its adapter (made once per object).
 *
 * @param redis What the app passed as `redis`.
 * @returns The surface.
 * @throws {TypeError} For anything else, naming what is accepted.
 */
export function checkClient(redis: unknown): CommandSurface {
  if (typeof redis === "object" && redis !== null) {
    const known = surfaces.get(redis);
    if (known !== undefined) return known;
    const s = adapt(redis as Record<string, unknown>);
    surfaces.set(redis, s);
    return s;
  }
  throw new TypeError(`redis must be ${ACCEPTED}; got ${describe(redis)}`);
}

function adapt(x: Record<string, unknown>): CommandSurface {
  // The other clients first: ioredis also has `command` and `subscribe`.
  if (isIoredis(x)) {
    if (x.isCluster === true) {
      throw new TypeError(
        "redis must be a single-node ioredis client; an ioredis Cluster is not supported yet",
      );
    }
    if ((x.options as { stringNumbers?: unknown } | undefined)?.stringNumbers) {
      throw new TypeError(
        "redis: an ioredis client with stringNumbers: true is not supported (respite reads integer replies as numbers); " +
          "pass one without it, e.g. client.duplicate({ stringNumbers: false })",
      );
    }
    const keyPrefix = (x.options as { keyPrefix?: unknown } | undefined)
      ?.keyPrefix;
    if (typeof keyPrefix === "string" && keyPrefix !== "") {
      throw new TypeError(
        "redis: an ioredis client with keyPrefix is not supported (ioredis prefixes the keys of commands but not SCAN's " +
          'pattern, so Lock.resetAll would find nothing, and it would prefix the keys SCAN returns twice); pass one without it, e.g. client.duplicate({ keyPrefix: "" }), ' +
          'and give respite\'s own prefix option instead (e.g. { prefix: "app:" })',
      );
    }
    return new IoredisSurface(x as unknown as IoredisLike);
  }
  if (isNodeRedis(x)) {
    if (isNodeRedisClusterOrSentinel(x)) {
      throw new TypeError(
        "redis must be a single-node node-redis client (createClient()); a node-redis cluster or sentinel client is not supported yet",
      );
    }
    if (!isNodeRedis5(x)) {
      throw new TypeError(
        "redis is a node-redis v4 client (or older); respite supports node-redis v5 and v6",
      );
    }
    return new NodeRedisSurface(x as unknown as NodeRedisLike);
  }
  if (isBunRedis(x)) return new BunRedisSurface(x as unknown as BunRedisLike);
  if (isDbRedis(x)) return new DbRedisSurface(x as unknown as DbRedisLike);
  if (isSurface(x)) return x as unknown as CommandSurface;
  throw new TypeError(`redis must be ${ACCEPTED}; got ${describe(x)}`);
}
