/**
 * The log line of `cached` falling open (Redis unreachable, so the function
 * runs in this process), rate-limited: the first failure is logged at once,
 * then at most one line per {@linkcode FAIL_OPEN_LOG_MS}, which counts the
 * calls it did not log. Hooks still see every failure.
 *
 * @module
 */

import { errorText } from "../client/inbox.ts";
import type { Logger } from "../validate.ts";

/** At most one fail-open line per cached function per this many ms. */
export const FAIL_OPEN_LOG_MS = 10_000;

/** The rate-limited fail-open log of one cached function. */
export class FailOpenLog {
  #last = -Infinity;
  #suppressed = 0;
  readonly #interval: number;
  readonly #now: () => number;

  /**
   * @param interval The shortest time between two lines (ms).
   * @param now The clock (ms).
   */
  constructor(
    interval: number = FAIL_OPEN_LOG_MS,
    now: () => number = () => performance.now(),
  ) {
    this.#interval = interval;
    this.#now = now;
  }

  /**
   * Notes one call that fell open; logs it unless a line went out less than
   * the interval ago.
   *
   * @param logger Where the line goes (`null`: nowhere).
   * @param key The cache key.
   * @param error Why Redis could not be used.
   */
  note(logger: Logger | null, key: string, error: unknown): void {
    if (logger === null) return;
    const t = this.#now();
    if (t - this.#last < this.#interval) {
      this.#suppressed++;
      return;
    }
    const more = this.#suppressed;
    this.#last = t;
    this.#suppressed = 0;
    try {
      logger.warn(
        `respite: cached() could not use Redis for key "${key}" (${
          errorText(error)
        }): computing in this process (failOpen)${
          more > 0
            ? `; ${more} more call${
              more === 1 ? "" : "s"
            } fell open since the last such line`
            : ""
        }; at most one such line per ${this.#interval / 1000} s`,
      );
    } catch {
      // A logger that throws must not fail the call.
    }
  }
}
