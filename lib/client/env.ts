/**
 * `REDIS_URL`, for a `connect()` called without a URL: reading it where the
 * runtime lets us, and saying so when it does not (Deno without
 * `--allow-env`), so that the default server is never used in silence: a
 * failed connect says which URL it tried (never a password), that
 * `REDIS_URL` could not be read, and which flag fixes it; a connect that
 * succeeds with the default warns once.
 *
 * @module
 */

import { ConnectionError, RespiteError, TimeoutError } from "../errors.ts";
import type { ResolvedOptions } from "./options.ts";

/** What `REDIS_URL` gave: the URL, or why it could not be read. */
export interface EnvUrl {
  /** Its value, when set, readable and not empty. */
  url?: string;
  /** Set when it could not be read: why, and what fixes it. */
  unreadable?: string;
}

/**
 * Reads `REDIS_URL`: `Deno.env` on Deno, `process.env` elsewhere (Bun, Node);
 * nothing on runtimes with neither (Workers take settings from `env`).
 *
 * @returns Its value, or why it could not be read.
 */
export function readRedisUrl(): EnvUrl {
  const g = globalThis as {
    Deno?: { env: { get(name: string): string | undefined } };
    process?: { env?: Record<string, string | undefined> };
  };
  try {
    if (g.Deno) return { url: g.Deno.env.get("REDIS_URL") || undefined };
    return { url: g.process?.env?.REDIS_URL || undefined };
  } catch (err) {
    const name = err instanceof Error ? err.name : "";
    return {
      unreadable:
        g.Deno && (name === "NotCapable" || name === "PermissionDenied")
          ? "Deno was not given env access: run with --allow-env=REDIS_URL, or pass the URL to connect()"
          : `reading it threw ${
            name || String(err)
          }: pass the URL to connect()`,
    };
  }
}

/**
 * The URL a connection goes to, without its password: scheme, user, host,
 * port and database.
 *
 * @param o The resolved options.
 * @returns E.g. `redis://127.0.0.1:6379`.
 */
export function targetUrl(o: ResolvedOptions): string {
  const user = o.username === undefined
    ? ""
    : `${encodeURIComponent(o.username)}@`;
  const host = o.hostname.includes(":") ? `[${o.hostname}]` : o.hostname;
  const db = o.db === 0 ? "" : `/${o.db}`;
  return `${o.tls ? "rediss" : "redis"}://${user}${host}:${o.port}${db}`;
}

/**
 * Opens a client with the default options after `REDIS_URL` could not be
 * read: a connect error gets a message that says so; a success warns once.
 *
 * @param opening The client being opened with the defaults.
 * @param o Its options.
 * @param why Why `REDIS_URL` could not be read (see {@linkcode readRedisUrl}).
 * @returns `opening`, with its error explained.
 */
export async function withUnreadableEnv<C>(
  opening: Promise<C>,
  o: ResolvedOptions,
  why: string,
): Promise<C> {
  const note =
    `REDIS_URL could not be read (${why}), so connect() without a URL tried the default, ${
      targetUrl(o)
    }`;
  let client: C;
  try {
    client = await opening;
  } catch (err) {
    if (!(err instanceof RespiteError)) throw err;
    const message = `${note}: ${err.message}`;
    if (err instanceof TimeoutError) {
      throw new TimeoutError(message, { cause: err });
    }
    if (err instanceof ConnectionError) {
      throw new ConnectionError(message, { cause: err });
    }
    throw err; // a ReplyError from the handshake: the server was reached
  }
  o.logger.warn(
    `respite: ${note}; it answered, but it may not be the server you meant.`,
  );
  return client;
}
