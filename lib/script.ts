/**
 * Lua scripts run with EVALSHA, falling back to EVAL (and warning once) when
 * the server does not have the script cached.
 *
 * @module
 */

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
 * `NAME not cached.` once for that loss: callers that hit the same NOSCRIPT
 * concurrently share one warning, and the next warning comes only after
 * EVALSHA worked again in between. The fallback on a client's first use of a
 * script is silent: a server that has not seen the script yet (a fresh or
 * restarted server, a new process) has lost nothing.
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
  /**
   * Per client: absent before the script first ran; "ok" once it ran (the
   * server has it); "missing" after a loss was reported, until it runs again.
   */
  #state = new WeakMap<CommandSurface, "ok" | "missing">();

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
    const sha = this.#shaHex ?? await this.sha();
    const cmd: Arg[] = ["EVALSHA", sha, keys.length];
    for (let i = 0; i < keys.length; i++) cmd.push(keys[i]);
    for (let i = 0; i < args.length; i++) cmd.push(args[i]);
    try {
      const reply = await client.command<T>(
        cmd,
        signal === undefined ? undefined : { signal },
      );
      this.#state.set(client, "ok");
      return reply;
    } catch (err) {
      if (!(err instanceof ReplyError) || err.code !== "NOSCRIPT") throw err;
    }
    if (this.#state.get(client) === "ok") {
      this.#state.set(client, "missing");
      const logger = options.logger === undefined
        ? client.logger
        : options.logger;
      logger?.warn(`${this.name} not cached.`);
    }
    const evalCmd = cmd.slice();
    evalCmd[0] = "EVAL";
    evalCmd[1] = this.lua;
    const reply = await client.command<T>(
      evalCmd,
      signal === undefined ? undefined : { signal },
    );
    // EVAL cached it again. On one connection, every EVALSHA sent before this
    // EVAL has already had its reply, and every later one finds the script,
    // so a NOSCRIPT from now on is a new loss.
    this.#state.set(client, "ok");
    return reply;
  }
}
