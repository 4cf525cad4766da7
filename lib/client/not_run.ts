/**
 * Sending again what Redis answered LOADING, BUSY or TRYAGAIN: a reply that
 * says the command did not run (still loading the dataset, a script or
 * function running too long, a slot in migration), so sending it again is
 * safe. One queue and one timer per connection, with backoff, within the
 * `retryNotRun` budget.
 *
 * @module
 */

import { backoff } from "../async.ts";
import type { ReplyError } from "../errors.ts";
import { type Pending, settle, unsentError } from "./pending.ts";

/** Reply codes that mean the command did not run, and may be sent again. */
const NOT_RUN = new Set(["LOADING", "BUSY", "TRYAGAIN"]);

/** A connection's commands answered "did not run", waiting to go out again. */
export class NotRunQueue {
  readonly #budget: number | false;
  readonly #resend: (queue: Pending[]) => void;
  /** Commands answered "did not run", waiting to be sent again, in order. */
  #queue: Pending[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Consecutive rounds of sending again (the backoff); 0 once one is answered. */
  #round = 0;

  /**
   * @param budget The `retryNotRun` option: ms after the first such answer
   *   until which a command is sent again, or `false` for never.
   * @param resend Called with the commands to send again, in their order,
   *   when the backoff ran out.
   */
  constructor(budget: number | false, resend: (queue: Pending[]) => void) {
    this.#budget = budget;
    this.#resend = resend;
  }

  /**
   * Takes a command that Redis answered with LOADING, BUSY or TRYAGAIN, to
   * send it again with backoff, until `retryNotRun` ms after the first such
   * answer (or the command's own timeout or signal ends it first).
   *
   * @param p The command.
   * @param err Its error reply.
   * @returns Whether it was taken; if not, the caller settles it with `err`.
   */
  offer(p: Pending, err: ReplyError): boolean {
    const budget = this.#budget;
    if (
      budget === false || p.settled || p.args === undefined ||
      !NOT_RUN.has(err.code)
    ) return false;
    const now = performance.now();
    p.retryUntil ??= now + budget;
    if (now >= p.retryUntil) return false;
    p.notRun = err;
    // One queue and one timer: what was answered "did not run" goes out
    // again in the order it was sent.
    this.#queue.push(p);
    if (this.#timer === undefined) {
      const n = ++this.#round;
      this.#timer = setTimeout(() => this.#fire(), backoff(n, 10, 500));
    }
    return true;
  }

  /** A command was answered: the backoff starts over, unless a resend is due. */
  answered(): void {
    if (this.#round !== 0 && this.#timer === undefined) this.#round = 0;
  }

  /**
   * Fails the commands waiting to be sent again (closing, giving up).
   *
   * @param error What ended them; they reject with it as never sent.
   */
  fail(error: Error): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const queue = this.#queue;
    this.#queue = [];
    if (queue.length === 0) return;
    const notSent = unsentError(error); // answered "did not run", not sent again
    for (const p of queue) settle(p, undefined, notSent);
  }

  #fire(): void {
    this.#timer = undefined;
    const queue = this.#queue;
    this.#queue = [];
    this.#resend(queue);
  }
}
