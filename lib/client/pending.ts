/**
 * A connection's record of one command waiting for its reply (or a
 * transaction: MULTI, its commands and EXEC, waiting as one), how it settles,
 * and the FIFO that keeps written commands in reply order.
 *
 * @module
 */

import { ConnectionError, ReplyError } from "../errors.ts";
import type { Reply } from "../resp/decoder.ts";

/** One command (or transaction) queued on a connection, until it settles. */
export interface Pending {
  /** Fulfils the caller's promise. */
  resolve: (value: Reply) => void;
  /** Rejects the caller's promise. */
  reject: (error: unknown) => void;
  /** Bulk strings as bytes. */
  raw: boolean;
  /** Settled early (timeout/abort): its reply is read and dropped. */
  settled: boolean;
  /** Its timeout, while it runs. */
  timer?: ReturnType<typeof setTimeout>;
  /** Its signal, while it listens to it. */
  signal?: AbortSignal;
  /** Its listener on `signal`. */
  onAbort?: () => void;
  /** The command's name, for messages. */
  name: string;
  /** Called once, when it settles: counts the commands close() waits for. */
  onSettled?: () => void;
  /**
   * Where its bytes end in the encoder's buffer (they start where the
   * previous unsent command's bytes end), so that they can be left out if
   * it settles before it is written.
   */
  end: number;
  /** The #batch it was queued in: still unsent while that is the current one. */
  batch: number;
  /** Replies it takes: 1, or a transaction's MULTI + commands + EXEC. */
  replies: number;
  /** A transaction's replies so far. */
  collected: Reply[] | undefined;
  /** The command, kept to send it again after a "did not run" reply. */
  args?: readonly unknown[];
  /** performance.now() until which such a command is sent again. */
  retryUntil?: number;
  /** The "did not run" reply it got last (its error if it is given up). */
  notRun?: ReplyError;
}

/** A FIFO with O(1) push and shift. */
export class Fifo<T> {
  #items: (T | undefined)[] = [];
  #head = 0;
  /** Items in the queue. */
  get length(): number {
    return this.#items.length - this.#head;
  }
  /**
   * Adds an item at the end.
   *
   * @param item The item.
   */
  push(item: T): void {
    this.#items.push(item);
  }
  /**
   * The first item, left in place.
   *
   * @returns It, or `undefined` when empty.
   */
  peek(): T | undefined {
    return this.#items[this.#head];
  }
  /**
   * Takes the first item.
   *
   * @returns It, or `undefined` when empty.
   */
  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
  /**
   * Takes every item.
   *
   * @returns Them, first first.
   */
  drain(): T[] {
    const out = this.#items.slice(this.#head) as T[];
    this.#items = [];
    this.#head = 0;
    return out;
  }
}

/**
 * Settles `p` once: with `error` if given, else with `value`; stops its
 * timer and its signal listener.
 *
 * @param p The command.
 * @param value Its reply.
 * @param error Why it failed.
 */
export function settle(
  p: Pending,
  value: Reply | undefined,
  error?: unknown,
): void {
  if (p.settled) return;
  p.settled = true;
  if (p.timer !== undefined) clearTimeout(p.timer);
  if (p.onAbort) p.signal!.removeEventListener("abort", p.onAbort);
  if (error !== undefined) p.reject(error);
  else p.resolve(value as Reply);
  p.onSettled?.();
}

/**
 * Settles a transaction with its replies: EXEC's array, or the error that
 * ended it (an EXECABORT carries the errors of the commands Redis refused to
 * queue).
 *
 * @param p The transaction, with all its replies collected.
 */
export function settleTransaction(p: Pending): void {
  const replies = p.collected!;
  const exec = replies[replies.length - 1];
  if (replies[0] instanceof ReplyError) {
    settle(p, undefined, replies[0]);
  } else if (exec instanceof ReplyError) {
    const refused = replies.slice(1, -1).filter((r) => r instanceof ReplyError)
      .map((r) => (r as ReplyError).message);
    settle(
      p,
      undefined,
      refused.length === 0
        ? exec
        : new ReplyError(`${exec.message} (${refused.join("; ")})`, {
          cause: exec,
        }),
    );
  } else settle(p, exec);
}

/**
 * `error` for commands that were never written: a `ConnectionError` saying so.
 *
 * @param error What ended them.
 * @returns A `ConnectionError` with `notSent` set.
 */
export function unsentError(error: Error): ConnectionError {
  if (error instanceof ConnectionError && error.notSent) return error;
  return new ConnectionError(error.message, {
    cause: error.cause,
    notSent: true,
  });
}

/**
 * Moves the bytes of `batch`'s unsettled commands to the front of `bytes`
 * (which the caller owns), sets each one's `end` to its new place, hands it to
 * `keep`, and returns the bytes kept; a settled command's bytes are dropped.
 *
 * @param bytes The batch's encoded commands, one after the other.
 * @param batch The commands, in the order of their bytes.
 * @param keep Called with each command kept.
 * @returns The kept bytes (a view of `bytes`).
 */
export function squeeze(
  bytes: Uint8Array,
  batch: Pending[],
  keep: (p: Pending) => void,
): Uint8Array {
  let kept = 0;
  let start = 0;
  for (let i = 0; i < batch.length; i++) {
    const p = batch[i];
    const end = p.end;
    if (!p.settled) {
      if (kept !== start) bytes.copyWithin(kept, start, end);
      kept += end - start;
      p.end = kept;
      keep(p);
    }
    start = end;
  }
  return bytes.subarray(0, kept);
}
