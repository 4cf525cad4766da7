/**
 * The timeout of `cached`'s hit-path reads, without a timer per read.
 *
 * @module
 */

import { MAX_TIMER_MS } from "../async.ts";
import type { CommandSurface } from "../adapters/surface.ts";
import { TimeoutError } from "../errors.ts";

/** Reads that share one watchdog timer. */
interface Epoch {
  started: number;
  pending: number;
  rejects: Array<(err: unknown) => void>;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * Times out hit-path reads without a timer per read (a timer per command
 * costs more than the read itself at high concurrency): reads that start
 * within the same quarter of `timeout` share one timer, which fires between
 * `timeout` and 1.25 × `timeout` after each of them started.
 */
export class Watchdog {
  readonly #timeout: number;
  #epoch: Epoch | null = null;

  /** @param timeout How long a read may take (ms). */
  constructor(timeout: number) {
    this.#timeout = timeout;
  }

  /**
   * Settles like `p`, or rejects with a `TimeoutError` once the read has
   * taken `timeout` (up to 1.25 × `timeout`) ms.
   */
  guard<T>(p: Promise<T>): Promise<T> {
    const now = performance.now();
    let e = this.#epoch;
    if (e === null || now - e.started > this.#timeout / 4) {
      const epoch: Epoch = {
        started: now,
        pending: 0,
        rejects: [],
        timer: setTimeout(() => {
          if (this.#epoch === epoch) this.#epoch = null;
          const err = new TimeoutError(
            `Redis did not answer within ${this.#timeout} ms`,
          );
          for (const reject of epoch.rejects) reject(err);
        }, Math.min(this.#timeout * 1.25, MAX_TIMER_MS)),
      };
      this.#epoch = e = epoch;
    }
    const epoch = e;
    epoch.pending++;
    return new Promise<T>((resolve, reject) => {
      epoch.rejects.push(reject);
      p.then((v) => {
        this.#settle(epoch);
        resolve(v);
      }, (err) => {
        this.#settle(epoch);
        reject(err);
      });
    });
  }

  #settle(epoch: Epoch): void {
    if (--epoch.pending === 0) {
      clearTimeout(epoch.timer);
      if (this.#epoch === epoch) this.#epoch = null;
    }
  }
}

/** Watchdogs shared by every cached function on a client, per timeout. */
const watchdogs = new WeakMap<CommandSurface, Map<number, Watchdog>>();

/** The watchdog that every cached function on `redis` with this `timeout` shares. */
export function watchdogFor(redis: CommandSurface, timeout: number): Watchdog {
  let byTimeout = watchdogs.get(redis);
  if (byTimeout === undefined) {
    byTimeout = new Map();
    watchdogs.set(redis, byTimeout);
  }
  let w = byTimeout.get(timeout);
  if (w === undefined) {
    w = new Watchdog(timeout);
    byTimeout.set(timeout, w);
  }
  return w;
}
