/**
 * Opening a connection's transport for one connection attempt: within the
 * `connectTimeout`, or until the connection's close() ends the attempt; a
 * connector given up on is told with its signal, and the socket it still
 * opens is closed at once.
 *
 * @module
 */

import { ConnectionError, TimeoutError } from "../errors.ts";
import type {
  Connector,
  Transport,
  TransportHandlers,
  TransportOptions,
} from "../transport/types.ts";

/** One connection attempt's end: its connect timeout, or close(). */
export class AttemptLimit {
  readonly #controller = new AbortController();
  /** Aborts when the attempt is given up on; the connector is handed it. */
  readonly signal: AbortSignal = this.#controller.signal;
  /** Rejects when the attempt is given up on; each step races it. */
  readonly expired: Promise<never>;
  #reject!: (err: Error) => void;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #gaveUp = false;
  #cleared = false;

  /**
   * Starts the connect timeout.
   *
   * @param ms The connect timeout.
   * @param where `host:port`, for the message.
   */
  constructor(ms: number, where: string) {
    this.expired = new Promise<never>((_, reject) => {
      this.#reject = reject;
      this.#timer = setTimeout(
        () =>
          this.stop(
            new TimeoutError(`Could not connect to ${where} within ${ms} ms`),
          ),
        ms,
      );
    });
    // Rejected by whatever settles first; never left unhandled.
    this.expired.catch(() => {});
  }

  /** Whether the attempt was given up on (timed out or stopped). */
  get gaveUp(): boolean {
    return this.#gaveUp;
  }

  /**
   * Gives up on the attempt with `err`, unless it already ended or was
   * cleared.
   *
   * @param err Why.
   */
  stop = (err: Error): void => {
    if (this.#gaveUp || this.#cleared) return;
    this.#gaveUp = true;
    this.#reject(err);
    this.#controller.abort(err);
  };

  /** Stops the connect timeout; stop() still works. */
  clearTimer(): void {
    clearTimeout(this.#timer);
  }

  /** The attempt is over: stops the timer; stop() does nothing from now on. */
  end(): void {
    this.#cleared = true;
    clearTimeout(this.#timer);
  }
}

/**
 * Opens a transport with `connector` before `limit` ends. Rejects with the
 * limit's error when it ended first (then whatever the connector still opens
 * is closed at once, and `abandon` gets that closing, for close() to wait
 * for), and with a `ConnectionError` when the connector failed or the
 * connection was closed meanwhile. On failure the limit is ended.
 *
 * @param connector Opens the stream.
 * @param target Where to (the signal is the limit's).
 * @param handlers The connection's data and close callbacks.
 * @param limit The attempt's end.
 * @param where `host:port`, for messages.
 * @param closed Whether the connection was closed meanwhile.
 * @param abandon Called with the closing of a transport opened too late.
 * @returns The open transport.
 */
export async function dial(
  connector: Connector,
  target: Omit<TransportOptions, "signal">,
  handlers: TransportHandlers,
  limit: AttemptLimit,
  where: string,
  closed: () => boolean,
  abandon: (closing: Promise<void>) => void,
): Promise<Transport> {
  let opening: Promise<Transport>;
  try {
    opening = Promise.resolve(
      connector({ ...target, signal: limit.signal }, handlers),
    );
  } catch (err) {
    opening = Promise.reject(err); // a connector that throws at once
  }
  try {
    const transport = await Promise.race([opening, limit.expired]);
    if (closed()) {
      limit.clearTimer();
      await transport.close();
      throw new ConnectionError(`The client for ${where} was closed`);
    }
    return transport;
  } catch (err) {
    limit.end();
    if (limit.gaveUp) {
      // Whatever the connector still opens is closed at once; close()
      // waits for that (within its timeout).
      abandon(opening.then((t) => t.close(), () => {}));
    }
    if (err instanceof TimeoutError || limit.gaveUp) throw err;
    throw new ConnectionError(
      `Could not connect to ${where}: ${
        err instanceof Error ? err.message : String(err)
      }`,
      { cause: err },
    );
  }
}
