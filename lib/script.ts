/**
 * Lua scripts run with EVALSHA, falling back to EVAL (and warning once per
 * loss) when the server does not have the script cached.
 *
 * @module
 */

import { serverScope } from "./adapters/scope.ts";
import type { CommandSurface } from "./adapters/surface.ts";
import { ReplyError } from "./errors.ts";
import { toHex } from "./hex.ts";
import type { Reply } from "./resp/decoder.ts";
import type { Arg } from "./resp/encoder.ts";
import { checkOptions, type Logger } from "./validate.ts";

const RUN_OPTIONS = ["keys", "args", "logger", "signal"];

/** What {@linkcode Script.run} sends, and how. */
export interface ScriptRunOptions {
  /** The keys the script touches: `KEYS` (default none). */
  keys?: readonly Arg[];
  /** Its other arguments: `ARGV` (default none). */
  args?: readonly Arg[];
  /** Where the `NAME not cached.` warning goes (default: the client's logger). `null` silences it. */
  logger?: Logger | null;
  /** Aborts waiting for the reply. */
  signal?: AbortSignal;
}

/**
 * A Lua script with a name (used in warnings) and its SHA-1.
 *
 * `run()` sends EVALSHA. If Redis answers NOSCRIPT, it sends EVAL instead
 * (which also caches the script on the server again) and warns
 * `NAME not cached.`: on every fallback, a client's first use on a fresh or
 * restarted server included, but once per loss of the script on one server
 * in this process. Callers that meet the same loss concurrently, on one
 * client or on several clients of that server, share one warning; the next
 * warning comes only after an EVALSHA sent after it worked. A server that
 * already has the script prints nothing. The warning is harmless when it
 * appears once: the script was loaded again.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, Script } from "@respite/respite";
 * const ECHO_SCRIPT = new Script("ECHO_SCRIPT", "return ARGV[1]");
 * await using redis = await connect();
 * assert.equal(await ECHO_SCRIPT.run(redis, { args: ["hi"], logger: null }), "hi");
 * ```
 */
export class Script {
  /** The name used in warnings, e.g. `UNLOCK_SCRIPT`. */
  readonly name: string;
  /** The Lua source. */
  readonly lua: string;
  #sha: Promise<string> | null = null;
  /** The SHA-1 once computed, so `run()` need not await it again. */
  #shaHex: string | null = null;
  /** Per server (see `serverScope`): what this process knows of the script there. */
  #state = new Map<string, ServerState>();
  /** The same script waking waiters with SPUBLISH, made on first use. */
  #sharded: Script | null = null;

  /**
   * Creates a script; its SHA-1 is computed on first use.
   *
   * @param name The name used in warnings, e.g. `UNLOCK_SCRIPT`.
   * @param lua The Lua source.
   */
  constructor(name: string, lua: string) {
    if (typeof name !== "string" || name.length === 0) {
      throw new TypeError("A script needs a non-empty name");
    }
    if (typeof lua !== "string" || lua.length === 0) {
      throw new TypeError("A script needs a non-empty Lua source");
    }
    this.name = name;
    this.lua = lua;
  }

  /**
   * The script's SHA-1, in hex, computed with `crypto.subtle`.
   *
   * @returns The hex digest Redis knows the script by.
   */
  sha(): Promise<string> {
    if (this.#sha === null) {
      this.#sha = crypto.subtle.digest(
        "SHA-1",
        new TextEncoder().encode(this.lua),
      )
        .then((buf) => this.#shaHex = toHex(new Uint8Array(buf)));
    }
    return this.#sha;
  }

  /**
   * Runs the script.
   *
   * @param client The client to run it on.
   * @param options `keys`, `args`, `logger` and `signal`.
   * @returns The script's reply.
   * @throws {TypeError} For an unknown option or a bad signal.
   */
  async run<T extends Reply = Reply>(
    client: CommandSurface,
    options: ScriptRunOptions = {},
  ): Promise<T> {
    const { keys = [], args = [], signal } = checkOptions(
      "Script.run() option",
      options,
      RUN_OPTIONS,
    );
    if (client.shardedPubSub === true && this.lua.includes(PUBLISH)) {
      this.#sharded ??= new Script(
        this.name,
        this.lua.replaceAll(PUBLISH, SHARDED_PUBLISH),
      );
      return await this.#sharded.run(client, options);
    }
    const sha = this.#shaHex ?? await this.sha();
    const cmd: Arg[] = ["EVALSHA", sha, keys.length];
    for (let i = 0; i < keys.length; i++) cmd.push(keys[i]);
    for (let i = 0; i < args.length; i++) cmd.push(args[i]);
    const scope = serverScope(client);
    const sent = ++sends;
    try {
      const reply = await client.command<T>(
        cmd,
        signal === undefined ? undefined : { signal },
      );
      this.#found(scope, sent);
      return reply;
    } catch (err) {
      if (!(err instanceof ReplyError)) throw err;
      if (err.code !== "NOSCRIPT") {
        // The server answered otherwise (the script ran and failed, or the
        // command was refused): it was not a loss.
        this.#found(scope, sent);
        throw err;
      }
    }
    const state = this.#state.get(scope);
    if (
      state === undefined ||
      (state.found > state.warned && state.found < sent)
    ) {
      // A loss no caller has reported yet: a fresh server, a restart, a
      // SCRIPT FLUSH. The script was found (if ever) by a command sent before
      // this EVALSHA and after the last reported loss, so this is a new one.
      // Concurrent callers whose EVALSHAs went out before any later proof
      // are the same loss, and stay silent.
      if (state === undefined) {
        this.#remember(scope, { warned: sent, found: -1 });
      } else state.warned = sent;
      const logger = options.logger === undefined
        ? client.logger
        : options.logger;
      logger?.warn(`${this.name} not cached.`);
    }
    const evalCmd = cmd.slice();
    evalCmd[0] = "EVAL";
    evalCmd[1] = this.lua;
    const evalSent = ++sends;
    try {
      const reply = await client.command<T>(
        evalCmd,
        signal === undefined ? undefined : { signal },
      );
      this.#found(scope, evalSent);
      return reply;
    } catch (err) {
      // A script that ran and failed was cached by EVAL all the same.
      if (err instanceof ReplyError) this.#found(scope, evalSent);
      throw err;
    }
  }

  /**
   * Keeps `state` for `scope`, forgetting the oldest server beyond
   * {@linkcode MAX_SERVERS} (clients made per request must not grow it).
   */
  #remember(scope: string, state: ServerState): void {
    this.#state.delete(scope);
    this.#state.set(scope, state);
    if (this.#state.size > MAX_SERVERS) {
      this.#state.delete(this.#state.keys().next().value!);
    }
  }

  /** A command sent as number `sent` found the script on `scope`'s server. */
  #found(scope: string, sent: number): void {
    const state = this.#state.get(scope);
    if (state === undefined) this.#remember(scope, { warned: -1, found: sent });
    else if (sent > state.found) state.found = sent;
  }
}

/**
 * What a script knows of one server, as numbers of the commands sent (see
 * {@linkcode sends}): `warned`, the EVALSHA whose NOSCRIPT was last reported
 * (-1: none); `found`, the latest EVALSHA or EVAL that found the script there
 * (-1: none).
 */
interface ServerState {
  warned: number;
  found: number;
}

/**
 * How a script wakes waiters, and how it does on a client with
 * `shardedPubSub` (a cluster): the channel shares its keys' hash tag, so it
 * is in the slot the script runs on, as SPUBLISH from a script requires.
 */
const PUBLISH = "redis.call('PUBLISH',";
const SHARDED_PUBLISH = "redis.call('SPUBLISH',";

/** How many servers a script remembers (a forgotten one warns again at its next loss only). */
const MAX_SERVERS = 1024;

/** Numbers EVALSHAs and EVALs as they are sent, across scripts and clients. */
let sends = 0;
