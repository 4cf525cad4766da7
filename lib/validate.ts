/**
 * Argument checks shared by every public entry point, with one message style:
 * the argument's or option's name, what it must be, then what was given —
 * `ttl must be a positive integer number of ms; got string "5s"`. A wrong
 * type is a `TypeError`; a value of the right type out of range is a
 * `RangeError`. An unknown option is a `TypeError` that lists the known ones,
 * so a typo (`{ tll: 5000 }`) never passes silently.
 *
 * These run before anything is sent, so bad input changes nothing in Redis.
 *
 * @module
 */

import { MAX_TIMER_MS } from "./async.ts";

/** Where warnings go: anything with a `warn(message)` method, like `console`. */
export interface Logger {
  /** Called with one line of text. */
  warn(message: string): void;
}

/** The logger that `logger: null` selects. */
export const SILENT: Logger = { warn() {} };

/**
 * A short, safe description of a given value for an error message: its type
 * and value, at most 40 characters of a string, the class name of an object.
 */
export function describe(v: unknown): string {
  if (v === null) return "null";
  if (typeof v === "string") return "string " + JSON.stringify(v.slice(0, 40));
  if (typeof v === "object") {
    if (Array.isArray(v)) return "an array";
    return v.constructor?.name ?? "object";
  }
  if (typeof v === "function") return "a function";
  if (typeof v === "symbol") return "a symbol";
  return `${typeof v} ${String(v)}`;
}

/** Throws `Err` with the one message style: `<name> must be <what>; got <value>`. */
export function fail(
  name: string,
  what: string,
  value: unknown,
  Err: typeof TypeError | typeof RangeError = TypeError,
): never {
  throw new Err(`${name} must be ${what}; got ${describe(value)}`);
}

/**
 * An options argument: `undefined` is `{}`; anything else must be a plain
 * object whose keys are all in `known`.
 *
 * @param what What the options are for, in messages: `"Lock option"`.
 */
export function checkOptions<T extends object>(
  what: string,
  value: T | undefined,
  known: readonly string[],
): T {
  if (value === undefined) return {} as T;
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    fail(`${what}s`, "an object", value);
  }
  checkKnown(what, value, known);
  return value;
}

/** Rejects a key of `obj` not in `known` (a typo would otherwise be ignored). */
export function checkKnown(
  what: string,
  obj: object,
  known: readonly string[],
): void {
  for (const k of Object.keys(obj)) {
    if (!known.includes(k)) {
      throw new TypeError(
        `Unknown ${what} "${k}" (known: ${known.join(", ")})`,
      );
    }
  }
}

/**
 * A whole number of ms from `min` (default 1) to {@linkcode MAX_TIMER_MS}.
 */
export function checkMs(name: string, value: unknown, min = 1): number {
  if (typeof value !== "number") fail(name, "a number of ms", value);
  if (!Number.isInteger(value) || value < min || value > MAX_TIMER_MS) {
    fail(
      name,
      `${
        min === 0 ? "a non-negative" : "a positive"
      } integer number of ms, at most ${MAX_TIMER_MS}`,
      value,
      RangeError,
    );
  }
  return value;
}

/**
 * A duration that may be fractional or `Infinity`: a number > 0 (≥ 0 with
 * `zeroOk`); longer than a timer can wait is taken as "practically never"
 * and clamped to {@linkcode MAX_TIMER_MS}.
 */
export function checkDuration(
  name: string,
  value: unknown,
  zeroOk = false,
): number {
  const what = `a ${zeroOk ? "non-negative" : "positive"} number of ms`;
  if (typeof value !== "number") fail(name, what, value);
  if (Number.isNaN(value) || (zeroOk ? value < 0 : value <= 0)) {
    fail(name, what, value, RangeError);
  }
  return Math.min(value, MAX_TIMER_MS);
}

/** A boolean. */
export function checkBoolean(name: string, value: unknown): boolean {
  if (typeof value !== "boolean") fail(name, "a boolean", value);
  return value;
}

/** A function. */
export function checkFunction<F>(name: string, value: unknown): F {
  if (typeof value !== "function") fail(name, "a function", value);
  return value as F;
}

/** A string (`nonEmpty`: of at least one character). */
export function checkString(
  name: string,
  value: unknown,
  nonEmpty = false,
): string {
  const what = nonEmpty ? "a non-empty string" : "a string";
  if (typeof value !== "string") fail(name, what, value);
  if (nonEmpty && value.length === 0) fail(name, what, value);
  return value;
}

/**
 * An optional `AbortSignal`. Checked by shape, not class, so a signal from
 * another realm (a polyfill, a test runner's) is accepted; an object that
 * lacks `removeEventListener` would fail later, inside a timer, so it is
 * refused here.
 */
export function checkSignal(
  name: string,
  value: unknown,
): AbortSignal | undefined {
  if (value === undefined) return undefined;
  const s = value as Partial<AbortSignal> | null;
  if (
    s === null || typeof s !== "object" || typeof s.aborted !== "boolean" ||
    typeof s.addEventListener !== "function" ||
    typeof s.removeEventListener !== "function"
  ) {
    fail(name, "an AbortSignal", value);
  }
  return value as AbortSignal;
}

/**
 * A `logger` option: `undefined` gives `fallback`, `null` the silent logger,
 * anything else must have a `warn()` method.
 */
export function checkLogger(value: unknown, fallback: Logger): Logger {
  if (value === undefined) return fallback;
  if (value === null) return SILENT;
  if (typeof (value as Partial<Logger>).warn !== "function") {
    fail("logger", "null or an object with a warn(message) method", value);
  }
  return value as Logger;
}
