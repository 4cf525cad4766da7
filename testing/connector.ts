/**
 * A connector for tests that wraps a real one (the runtime's, by default) and
 * lets a test cut a socket the way a network failure would: the transport is
 * closed under the connection, which sees its `onClose` and reconnects (or
 * gives up), exactly as when the peer or the path goes away. Pass
 * `cut.connector` as the `connector` option of `connect()`.
 *
 * ```ts
 * const cut = new CuttableConnector();
 * await using redis = await connect({ url, connector: cut.connector });
 * await cut.cut(); // the command connection drops; the client reconnects
 * ```
 */

import { runtimeConnector } from "../lib/transport/mod.ts";
import type { Connector, Transport } from "../lib/transport/types.ts";

/** Wraps a connector and keeps the sockets it opened, to cut them. */
export class CuttableConnector {
  readonly #inner: Connector | undefined;
  /** Transports opened and not closed yet, oldest first. */
  #open: Transport[] = [];

  /**
   * @param inner The connector to wrap; the runtime's own by default.
   */
  constructor(inner?: Connector) {
    this.#inner = inner;
  }

  /** The connector to pass to `connect()`. */
  readonly connector: Connector = async (options, handlers) => {
    const inner = this.#inner ?? await runtimeConnector();
    // Set once the inner connector returned: onClose may come before.
    const opened: { transport?: Transport; closed?: true } = {};
    const t = await inner(options, {
      onData: handlers.onData,
      onClose: (err) => {
        opened.closed = true;
        const i = opened.transport ? this.#open.indexOf(opened.transport) : -1;
        if (i >= 0) this.#open.splice(i, 1);
        handlers.onClose(err);
      },
    });
    opened.transport = t;
    if (!opened.closed) this.#open.push(t);
    return t;
  };

  /** How many sockets opened through this connector are open now. */
  get open(): number {
    return this.#open.length;
  }

  /**
   * Cuts the oldest socket still open: a client's command connection, which
   * `connect()` opens first (its subscriber connection opens on the first
   * subscribe), as long as it has not reconnected since. Resolves once the
   * socket is closed and the connection was told. Rejects when no socket is
   * open, so that a test that meant to cut one cannot pass without.
   *
   * @returns Resolves once the cut socket's close ran.
   */
  async cut(): Promise<void> {
    const t = this.#open[0];
    if (t === undefined) {
      throw new Error("CuttableConnector.cut(): no socket is open");
    }
    await t.close();
  }
}
