/**
 * Per-command options (`timeout`, `signal`, `raw`) and their checks, which
 * run before anything is encoded.
 *
 * @module
 */

import {
  checkBoolean,
  checkDuration,
  checkKnown,
  checkSignal,
  fail,
} from "../validate.ts";

/** Per-command options. */
export interface CommandOptions {
  /** Reject with a `TimeoutError` after this many ms (overrides the client's default). */
  timeout?: number;
  /** Reject at once when this signal aborts. */
  signal?: AbortSignal;
  /** Return bulk strings as `Uint8Array` instead of `string`. */
  raw?: boolean;
}

/**
 * Checks per-command options; throws `TypeError`/`RangeError` for a bad one.
 * Runs before anything is encoded.
 *
 * @param opts What the caller passed.
 */
export function checkCommandOptions(
  opts: unknown,
): asserts opts is CommandOptions {
  if (opts === null || typeof opts !== "object") {
    fail("command options", "an object ({ timeout, signal, raw })", opts);
  }
  checkKnown("command option", opts, ["timeout", "signal", "raw"]);
  const o = opts as Record<string, unknown>;
  if (o.timeout !== undefined) checkDuration("timeout", o.timeout);
  checkSignal("signal", o.signal);
  if (o.raw !== undefined) checkBoolean("raw", o.raw);
}
