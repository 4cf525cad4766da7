/**
 * Connection options: the public shape, URL parsing, defaults and checks.
 *
 * @module
 */

import { MAX_TIMER_MS } from "../async.ts";
import { type DecoderLimits, type Push, RespDecoder } from "../resp/decoder.ts";
import type { Connector, Runtime, TlsOptions } from "../transport/types.ts";
import {
  checkBoolean,
  checkDuration,
  checkFunction,
  checkKnown,
  checkLogger,
  checkString,
  fail,
  type Logger,
} from "../validate.ts";

/** How to reconnect after the connection drops. */
export interface ReconnectOptions {
  /** Delay before the first attempt, in ms (default 50). */
  minDelay?: number;
  /** Longest delay between attempts, in ms (default 2_000). */
  maxDelay?: number;
  /** Attempts before giving up and closing the client (default `Infinity`). */
  maxRetries?: number;
}

/** Options for {@linkcode connect}. Every field is optional. */
export interface ConnectOptions {
  /** A `redis://` or `rediss://` URL; the other fields override its parts. */
  url?: string;
  /** Host name or IP address (default `"127.0.0.1"`). */
  hostname?: string;
  /** TCP port (default 6379). */
  port?: number;
  /** ACL user name; without it, AUTH uses the password alone. */
  username?: string;
  /** Password for AUTH. Never appears in an error message. */
  password?: string;
  /** Database number to SELECT (default 0). */
  db?: number;
  /** `true` or TLS settings to connect over TLS (the default for `rediss://`). */
  tls?: boolean | TlsOptions;
  /** RESP version: 2 (default) or 3 (sends `HELLO 3`; needs Redis 6+). */
  protocol?: 2 | 3;
  /** Connection name sent with CLIENT SETNAME / HELLO SETNAME. */
  name?: string;
  /** Give up opening a connection after this many ms (default 10_000). */
  connectTimeout?: number;
  /** Default per-command timeout in ms (default: none). */
  commandTimeout?: number;
  /** Reconnect settings, or `false` to close the client when the connection drops. */
  reconnect?: false | ReconnectOptions;
  /**
   * While reconnecting, keep new commands in a queue until the connection is
   * back (`true`, the default) or reject them at once with a
   * `ConnectionError` (`false`).
   */
  queueWhileReconnecting?: boolean;
  /**
   * Most commands waiting to be written, while reconnecting or while the
   * connection does not take what is written to it (a stalled peer); more
   * reject at once with a `ConnectionError` (default 10_000). Commands that
   * time out or are aborted before they are written give their memory back
   * at once.
   */
  maxQueue?: number;
  /**
   * How long `close()` (and `await using`) waits for the replies of commands
   * already issued, in ms, before it closes the socket anyway and rejects
   * them with a `ConnectionError` (default 5_000).
   */
  closeTimeout?: number;
  /**
   * After a command that was written times out (or is aborted unanswered),
   * a `PING` checks the connection; when it gets no answer within this many
   * ms and not one byte arrived meanwhile, the connection is taken for dead
   * (a half-open TCP connection: no FIN, no RST), dropped, and opened again
   * (default 5_000; `false` turns the check off). Sockets also have TCP
   * keepalive on.
   *
   * The trade-off: Redis answers in order, so while one command runs on the
   * server (a long script, a big `DEL`) nothing comes back, and a command
   * that runs longer than this after another one timed out looks the same
   * as a dead connection. The default is Redis's own `busy-reply-threshold`
   * (5 s), past which Redis itself treats a script as stuck; raise it if you
   * run longer commands, lower it to find dead connections sooner.
   */
  healthCheckTimeout?: number | false;
  /**
   * A connection that was idle longer than this, in ms (nothing in flight,
   * not one byte read), is checked with a `PING` before the next command is
   * written to it; the command waits for the answer (default 500; `false`
   * turns the check off). If the connection turns out to be closed, it is
   * opened again and the command is written to the new one, so it runs once,
   * with no error. This is for a process that was frozen (a serverless
   * function between two invocations, a stopped container, a laptop asleep)
   * or whose event loop was blocked longer than the server's `timeout` or a
   * NAT's idle timeout: when it resumes, the server's close has not been
   * read yet, and a command written at once would be lost with the
   * connection, with no way to tell whether it ran. (A `PING` is read-only:
   * sending it on a connection in doubt is always safe.)
   *
   * The cost is one round trip, only for the first command after an idle
   * spell; a busy connection never pays it. The default is under every
   * `timeout` a Redis server can have with a margin: Redis counts whole
   * seconds, so `timeout 1` may close a connection idle just over 1 s (as
   * the server counts, from its last reply, a little before our last read). A check
   * with no answer within `healthCheckTimeout` drops the connection as dead
   * (no command was written to it) and opens it again.
   */
  idleCheck?: number | false;
  /**
   * How long to keep sending again a command Redis answered with `LOADING`
   * (restarted, reading its data), `BUSY` (a script is running) or
   * `TRYAGAIN`, in ms: those replies mean it did not run. With backoff up to
   * 500 ms; after this budget the reply's `ReplyError` is returned (default
   * 10_000; `false` never sends again). The command's own timeout and signal
   * still apply.
   */
  retryNotRun?: number | false;
  /**
   * A connection of its own for blocking commands (`BLPOP`, `XREAD BLOCK`,
   * `WAIT`, ...), which are refused on a shared, auto-pipelined client
   * (default `false`). {@linkcode RedisClient.duplicate} makes one.
   */
  blocking?: boolean;
  /** The socket API to use: a runtime's name, or your own connector (default: detected). */
  connector?: Runtime | Connector;
  /** Where warnings go (default `console`); `null` silences them. */
  logger?: Logger | null;
  /** Called with RESP3 push frames that are not pub/sub messages. */
  onPush?: (push: Push) => void;
  /**
   * What a reply may declare before the connection is closed with a
   * `ProtocolError` (nothing is allocated for it first): the longest bulk
   * string (default 512 MiB, Redis's `proto-max-bulk-len`), the most
   * elements of an aggregate (default 2^31 − 1) and the deepest nesting
   * (default 10,000; a Lua script's reply nests at most ~8,000).
   */
  replyLimits?: DecoderLimits;
}

/** Options after parsing and defaults. */
export interface ResolvedOptions {
  hostname: string;
  port: number;
  username?: string;
  password?: string;
  db: number;
  tls?: TlsOptions;
  protocol: 2 | 3;
  name?: string;
  connectTimeout: number;
  commandTimeout?: number;
  reconnect: false | Required<ReconnectOptions>;
  queueWhileReconnecting: boolean;
  maxQueue: number;
  closeTimeout: number;
  healthCheckTimeout: number | false;
  idleCheck: number | false;
  retryNotRun: number | false;
  blocking: boolean;
  connector?: Runtime | Connector;
  logger: Logger;
  onPush?: (push: Push) => void;
  replyLimits?: DecoderLimits;
  /**
   * Internal (connectSentinel): where to connect, asked again before every
   * connection attempt instead of `hostname`/`port`; with `master`, the
   * handshake also sends ROLE and refuses a server that is not a master.
   */
  target?: Target;
  /**
   * Internal (connectSentinel's short-lived sentinel connections): gives up
   * a connection attempt when it aborts, as its connect timeout would.
   */
  attemptSignal?: AbortSignal;
  /**
   * Internal (`cached`'s memory tier, lib/cache/tracking.ts): the handshake
   * also turns on server-assisted client-side caching in broadcast mode for
   * keys starting with this prefix (`CLIENT TRACKING ON BCAST PREFIX`), so
   * after every reconnect too. Needs RESP3: the invalidations then arrive on
   * this connection as pushes (`onPush`).
   */
  trackingPrefix?: string;
}

/** Where a connection goes, found again at each (re)connect. Internal. */
export interface Target {
  /**
   * Where to connect now; `signal` aborts when the client is closed
   * meanwhile (stop looking, leave nothing open).
   */
  resolve(signal: AbortSignal): Promise<{ hostname: string; port: number }>;
  master: boolean;
}

/** An optional duration option (see {@linkcode checkDuration}). */
function duration(
  name: string,
  value: unknown,
  zeroOk = false,
): number | undefined {
  return value === undefined ? undefined : checkDuration(name, value, zeroOk);
}

/** Redis keeps the number of databases in a C int. */
const MAX_DB = 2 ** 31 - 1;

const URL_SHAPE =
  "expected redis://[[user]:password@]host[:port][/db] or rediss://...";

/**
 * Parses a URL or an options object into complete, checked options.
 *
 * @param input A URL string or an options object.
 * @returns The resolved options.
 * @throws {TypeError} For a malformed URL, an unknown scheme or a wrong type.
 * @throws {RangeError} For a bad port, db or duration.
 */
export function resolveOptions(
  input: string | ConnectOptions,
): ResolvedOptions {
  let opts: ConnectOptions;
  if (typeof input === "string") opts = { url: input };
  else if (input !== null && typeof input === "object") opts = input;
  else {
    throw new TypeError(
      "connect() takes a redis:// URL or an options object",
    );
  }
  checkKnown("connect() option", opts, OPTION_NAMES);
  const fromUrl = opts.url === undefined ? {} : parseUrl(opts.url);
  const merged: ConnectOptions = { ...fromUrl };
  for (const [k, v] of Object.entries(opts)) {
    if (k !== "url" && v !== undefined) {
      (merged as Record<string, unknown>)[k] = v;
    }
  }
  const hostname = merged.hostname ?? "127.0.0.1";
  checkString("hostname", hostname, true);
  const port = merged.port ?? 6379;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    fail("port", "an integer from 1 to 65535", port, RangeError);
  }
  const db = merged.db ?? 0;
  if (!Number.isInteger(db) || db < 0 || db > MAX_DB) {
    fail("db", "a non-negative integer", db, RangeError);
  }
  for (const key of ["username", "password", "name"] as const) {
    if (merged[key] !== undefined) checkString(key, merged[key]);
  }
  const protocol = merged.protocol ?? 2;
  if (protocol !== 2 && protocol !== 3) {
    fail("protocol", "2 or 3", protocol, RangeError);
  }
  const connectTimeout = duration("connectTimeout", merged.connectTimeout) ??
    10_000;
  let commandTimeout = duration("commandTimeout", merged.commandTimeout);
  if (commandTimeout === MAX_TIMER_MS) commandTimeout = undefined; // none
  let reconnect: ResolvedOptions["reconnect"] = false;
  if (merged.reconnect !== false) {
    const r = merged.reconnect ?? {};
    if (typeof r !== "object" || r === null) {
      fail("reconnect", "false or an options object", r);
    }
    checkKnown("reconnect option", r, ["minDelay", "maxDelay", "maxRetries"]);
    const maxRetries = r.maxRetries ?? Infinity;
    if (
      typeof maxRetries !== "number" ||
      !(maxRetries === Infinity ||
        (Number.isInteger(maxRetries) && maxRetries >= 0))
    ) {
      fail(
        "reconnect.maxRetries",
        "an integer >= 0 or Infinity",
        maxRetries,
        RangeError,
      );
    }
    const minDelay = duration("reconnect.minDelay", r.minDelay, true) ?? 50;
    const maxDelay = duration("reconnect.maxDelay", r.maxDelay, true) ??
      Math.max(2_000, minDelay);
    if (minDelay > maxDelay) {
      throw new RangeError(
        `reconnect.minDelay (${minDelay}) must not exceed reconnect.maxDelay (${maxDelay})`,
      );
    }
    reconnect = { minDelay, maxDelay, maxRetries };
  }
  const maxQueue = merged.maxQueue ?? 10_000;
  if (!Number.isInteger(maxQueue) || maxQueue < 0) {
    fail("maxQueue", "a non-negative integer", maxQueue, RangeError);
  }
  let tls: TlsOptions | undefined;
  if (merged.tls === true) tls = {};
  else if (merged.tls && typeof merged.tls === "object") tls = merged.tls;
  else if (merged.tls !== undefined && merged.tls !== false) {
    fail("tls", "a boolean or an options object", merged.tls);
  }
  if (
    merged.connector !== undefined && typeof merged.connector !== "function" &&
    !["deno", "bun", "node", "workers"].includes(merged.connector)
  ) {
    fail(
      "connector",
      '"deno", "bun", "node", "workers" or a function',
      merged.connector,
    );
  }
  const logger = checkLogger(merged.logger, console);
  for (const key of ["queueWhileReconnecting", "blocking"] as const) {
    if (merged[key] !== undefined) checkBoolean(key, merged[key]);
  }
  if (merged.onPush !== undefined) checkFunction("onPush", merged.onPush);
  // The decoder checks its limits (TypeError/RangeError) as it is made.
  if (merged.replyLimits !== undefined) new RespDecoder(merged.replyLimits);
  const closeTimeout = merged.closeTimeout === 0
    ? 0
    : duration("closeTimeout", merged.closeTimeout) ?? 5_000;
  const healthCheckTimeout = merged.healthCheckTimeout === false
    ? false
    : duration("healthCheckTimeout", merged.healthCheckTimeout) ?? 5_000;
  const idleCheck = merged.idleCheck === false
    ? false
    : duration("idleCheck", merged.idleCheck, true) ?? 500;
  const retryNotRun = merged.retryNotRun === false
    ? false
    : duration("retryNotRun", merged.retryNotRun, true) ?? 10_000;
  return {
    hostname,
    port,
    username: merged.username,
    password: merged.password,
    db,
    tls,
    protocol,
    name: merged.name,
    connectTimeout,
    commandTimeout,
    reconnect,
    queueWhileReconnecting: merged.queueWhileReconnecting ?? true,
    maxQueue,
    closeTimeout,
    healthCheckTimeout,
    idleCheck,
    retryNotRun,
    blocking: merged.blocking ?? false,
    connector: merged.connector,
    logger,
    onPush: merged.onPush,
    replyLimits: merged.replyLimits === undefined
      ? undefined
      : { ...merged.replyLimits },
  };
}

/** A logger that drops everything (`logger: null`). */
const OPTION_NAMES = [
  "url",
  "hostname",
  "port",
  "username",
  "password",
  "db",
  "tls",
  "protocol",
  "name",
  "connectTimeout",
  "commandTimeout",
  "reconnect",
  "queueWhileReconnecting",
  "maxQueue",
  "closeTimeout",
  "healthCheckTimeout",
  "idleCheck",
  "retryNotRun",
  "blocking",
  "connector",
  "logger",
  "onPush",
  "replyLimits",
];

/**
 * Parses `redis://` and `rediss://` URLs. Error messages never repeat the URL,
 * since it may hold a password.
 */
function parseUrl(url: string): ConnectOptions {
  if (typeof url !== "string") throw new TypeError("url must be a string");
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined) {
    throw new TypeError(`Malformed Redis URL: ${URL_SHAPE}`);
  }
  if (scheme !== "redis" && scheme !== "rediss") {
    throw new TypeError(
      `Unknown URL scheme "${scheme}:": ${URL_SHAPE}`,
    );
  }
  const port =
    /^[a-z]+:\/\/(?:[^@/?#]*@)?(?:\[[^\]]*\]|[^:/?#]*)(?::([^/?#]*))?/i
      .exec(url)?.[1];
  if (port !== undefined && port !== "") {
    if (!/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
      throw new RangeError(
        "The port in a Redis URL must be an integer from 1 to 65535",
      );
    }
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new TypeError(`Malformed Redis URL: ${URL_SHAPE}`);
  }
  // An "@" after the host: a password (or user name) with a "/", "?" or "#"
  // that was not percent-encoded ended the host part early, so the URL
  // names the wrong host and port (part of the password, maybe), which an
  // error would then show. Refuse it, naming the fix.
  if (`${u.pathname}${u.search}${u.hash}`.includes("@")) {
    throw new TypeError(
      `Malformed Redis URL: an "@" after the host; percent-encode "/", "?", "#" and "@" in the user name and password (encodeURIComponent): ${URL_SHAPE}`,
    );
  }
  const out: ConnectOptions = {};
  let host = u.hostname;
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  if (host) out.hostname = host;
  if (u.port) out.port = Number(u.port);
  try {
    if (u.username) out.username = decodeURIComponent(u.username);
    if (u.password) out.password = decodeURIComponent(u.password);
  } catch {
    throw new TypeError(
      "Malformed Redis URL: bad percent-encoding in the user info",
    );
  }
  const path = u.pathname.replace(/^\//, "");
  const dbText = path || u.searchParams.get("db");
  if (dbText) {
    if (!/^\d+$/.test(dbText)) {
      throw new RangeError(
        "The database in a Redis URL must be a non-negative integer",
      );
    }
    out.db = Number(dbText);
  }
  const protocol = u.searchParams.get("protocol");
  if (protocol !== null) {
    if (protocol !== "2" && protocol !== "3") {
      throw new RangeError("protocol in a Redis URL must be 2 or 3");
    }
    out.protocol = Number(protocol) as 2 | 3;
  }
  if (scheme === "rediss") out.tls = true;
  return out;
}
