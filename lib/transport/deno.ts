/**
 * Transport over `Deno.connect` / `Deno.connectTls`.
 *
 * @module
 */

import type { Connector, Transport, TransportHandlers } from "./types.ts";

/** Opens a TCP or TLS stream with Deno's own socket API; no-delay and keepalive are on. */
export const denoConnector: Connector = async (options, handlers) => {
  const tcp = await Deno.connect({
    hostname: options.hostname,
    port: options.port,
    signal: options.signal,
  });
  tcp.setNoDelay(true);
  // TCP keepalive (Deno uses the system's idle time): a peer that vanished
  // without FIN or RST is found eventually even with nothing in flight.
  tcp.setKeepAlive(true);
  let conn: Deno.Conn = tcp;
  // Given up on (connect timeout, close()): close the socket, which also
  // ends a TLS handshake that would otherwise wait for ever.
  const signal = options.signal;
  const onAbort = () => {
    try {
      conn.close();
    } catch {
      // already closed
    }
  };
  if (signal?.aborted) {
    onAbort();
    throw signal.reason;
  }
  signal?.addEventListener("abort", onAbort, { once: true });
  if (options.tls) {
    // startTls rather than connectTls: it verifies the certificate against
    // `serverName` when one is given (connectTls has no such option). The
    // handshake runs now, so an untrusted certificate fails the connect and
    // not the first command.
    try {
      const tls = await Deno.startTls(tcp, {
        hostname: options.tls.serverName ?? options.hostname,
        caCerts: options.tls.caCerts,
      });
      conn = tls;
      await tls.handshake();
    } catch (err) {
      try {
        conn.close();
      } catch {
        // already closed
      }
      throw err;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }
  signal?.removeEventListener("abort", onAbort);
  return new DenoTransport(conn, handlers);
};

class DenoTransport implements Transport {
  /** `write` resolves only after Deno is done with the bytes. */
  readonly releasesWrites = true;
  #conn: Deno.Conn;
  #closed = false;
  #done: Promise<void>;

  constructor(conn: Deno.Conn, handlers: TransportHandlers) {
    this.#conn = conn;
    this.#done = this.#readLoop(handlers);
  }

  async #readLoop(handlers: TransportHandlers): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    let error: unknown;
    try {
      for (;;) {
        const n = await this.#conn.read(buf);
        if (n === null) break;
        // Lent, not copied: an allocation per read costs Deno ~0.5 µs.
        handlers.onData(buf.subarray(0, n), true);
      }
    } catch (err) {
      if (!this.#closed) error = err;
    }
    this.#shut();
    handlers.onClose(error);
  }

  async write(bytes: Uint8Array): Promise<void> {
    let off = 0;
    while (off < bytes.length) {
      off += await this.#conn.write(bytes.subarray(off));
    }
  }

  #shut(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }

  close(): Promise<void> {
    this.#shut();
    return this.#done;
  }
}
