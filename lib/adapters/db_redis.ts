/**
 * A `@db/redis` client (JSR; also deno.land/x/redis, v0.32 and later) as a
 * {@linkcode CommandSurface}, by its shape: `sendCommand(command, args,
 * { returnUint8Arrays })`, `isConnected`, `isClosed`. Nothing is imported
 * from the package.
 *
 * Wake-ups: by re-checking, not pub/sub. `@db/redis` has no `duplicate()`,
 * and its `subscribe()` puts the client's own connection into subscriber
 * mode, where it can send no other command: respite cannot subscribe through
 * the app's client without taking it over. So a waiter looks at Redis again
 * after at most {@linkcode DB_REDIS_RECHECK_MS} ms (with backoff from 5 ms),
 * and at once when a release on this client wakes it locally.
 *
 * @module
 */

import type { CommandOptions } from "../client/command_options.ts";
import type { Reply } from "../resp/decoder.ts";
import type { Arg } from "../resp/encoder.ts";
import type { Logger } from "../validate.ts";
import { mapError, sendWith } from "./common.ts";
import type { ConnectionStatus } from "../client/connection.ts";
import type { CommandSurface } from "./surface.ts";

/** The longest a waiter on a `@db/redis` client sleeps between looks (ms). */
export const DB_REDIS_RECHECK_MS = 50;

/** The part of a `@db/redis` client used here. */
export interface DbRedisLike {
  sendCommand(
    command: string,
    args?: (string | number | Uint8Array)[],
    options?: { returnUint8Arrays?: boolean },
  ): Promise<unknown>;
  readonly isConnected: boolean;
  readonly isClosed: boolean;
}

/** Whether `x` has the shape of a `@db/redis` client. */
export function isDbRedis(x: Record<string, unknown>): boolean {
  return typeof x.sendCommand === "function" && "isConnected" in x &&
    "isClosed" in x;
}

const isReply = (err: Error) =>
  err.constructor?.name === "ErrorReplyError" || err.name === "ErrorReplyError";
const map = (err: unknown) => mapError(err, "@db/redis", isReply);
const RAW = { returnUint8Arrays: true };

function dbArgs(args: readonly Arg[]): (string | number | Uint8Array)[] {
  const out = new Array<string | number | Uint8Array>(args.length - 1);
  for (let i = 1; i < args.length; i++) {
    const a = args[i];
    out[i - 1] = typeof a === "bigint" ? String(a) : a;
  }
  return out;
}

/** A `@db/redis` client, adapted. */
export class DbRedisSurface implements CommandSurface {
  readonly #client: DbRedisLike;
  /** Where warnings go. */
  readonly logger: Logger = console;
  /** Waiters re-check: see the module doc. */
  readonly recheckMs: number = DB_REDIS_RECHECK_MS;

  /** @param client The app's `@db/redis` client. */
  constructor(client: DbRedisLike) {
    this.#client = client;
  }

  /** Closed once the app closed it; else ready (it connects lazily, reconnects itself). */
  get status(): ConnectionStatus {
    return this.#client.isClosed ? "closed" : "ready";
  }

  /** Sends one command. */
  command<T extends Reply = Reply>(
    args: readonly Arg[],
    options?: CommandOptions,
  ): Promise<T> {
    return sendWith<T>(
      () => {
        return this.#client.sendCommand(
          String(args[0]),
          dbArgs(args),
          options?.raw ? RAW : undefined,
        );
      },
      options,
      map,
    );
  }

  /** No pub/sub (see the module doc): resolves at once; waiters re-check. */
  subscribe(): Promise<() => Promise<void>> {
    return Promise.resolve(() => Promise.resolve());
  }
}
