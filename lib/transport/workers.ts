/**
 * Transport over Cloudflare Workers' `cloudflare:sockets`. On Workers a socket
 * belongs to the request that opened it: connect inside the handler and close
 * before the response is done. The transport says when the code running now
 * belongs to another request (`usableHere`), so that the client refuses at
 * once instead of failing later.
 *
 * @module
 */

import type { Connector, Transport } from "./types.ts";

interface WorkersSocket {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
  opened: Promise<unknown>;
  closed: Promise<void>;
  close(): Promise<void>;
}

interface WorkersSockets {
  connect(
    address: { hostname: string; port: number },
    options?: { secureTransport?: "off" | "on"; allowHalfOpen?: boolean },
  ): WorkersSocket;
}

// Kept in a variable so that tools other than workerd do not try to resolve it.
const SOCKETS_MODULE = "cloudflare:sockets";

/**
 * A synchronous test of "is this the request that opened the socket?".
 * Workers has no public request identity (AsyncLocalStorage needs
 * `nodejs_compat`), and a socket's reads and writes from another request
 * only fail asynchronously. An I/O object of workerd's that belongs to the
 * request that made it throws synchronously when touched from another one:
 * the `readyState` of a WebSocket from a `WebSocketPair` (never accepted, so
 * it does no I/O and holds nothing open). Where `WebSocketPair` does not
 * exist, there is no test and the socket is taken as usable.
 */
function requestProbe(): (() => boolean) | undefined {
  const Pair = (globalThis as {
    WebSocketPair?: new () => Record<0 | 1, { readyState: number }>;
  }).WebSocketPair;
  if (typeof Pair !== "function") return undefined;
  let ws: { readyState: number };
  try {
    ws = new Pair()[0];
    void ws.readyState;
  } catch {
    return undefined;
  }
  return () => {
    try {
      void ws.readyState;
      return true;
    } catch {
      return false; // "Cannot perform I/O on behalf of a different request"
    }
  };
}

/**
 * Opens a TCP or TLS stream with `cloudflare:sockets`. Custom CAs and a server
 * name other than the host name are not supported there. Resolves once the
 * connection (and, for TLS, the handshake) is established.
 */
export const workersConnector: Connector = async (options, handlers) => {
  if (options.tls?.caCerts) {
    throw new TypeError(
      "Cloudflare Workers cannot trust a custom CA: use a server certificate from a public CA",
    );
  }
  if (
    options.tls?.serverName !== undefined &&
    options.tls.serverName !== options.hostname
  ) {
    throw new TypeError(
      "Cloudflare Workers checks the certificate against the host name only: " +
        "connect to the name in the certificate instead of setting tls.serverName",
    );
  }
  const { connect } = await import(SOCKETS_MODULE) as WorkersSockets;
  const socket = connect(
    { hostname: options.hostname, port: options.port },
    { secureTransport: options.tls ? "on" : "off", allowHalfOpen: false },
  );
  // `closed` rejects when the socket fails; the read loop reports that.
  socket.closed.catch(() => {});
  try {
    await socket.opened;
  } catch (err) {
    await socket.close().catch(() => {});
    throw err;
  }
  const probe = requestProbe();
  const writer = socket.writable.getWriter();
  const reader = socket.readable.getReader();
  let closing = false;
  const done = (async () => {
    let error: unknown;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (value && value.length > 0) handlers.onData(value);
      }
    } catch (err) {
      if (!closing) error = err;
    }
    if (!closing) {
      // The server or the network ended it: release the socket too.
      closing = true;
      await socket.close().catch(() => {});
    }
    handlers.onClose(error);
  })();
  const transport: Transport = {
    write: (bytes) => closing ? undefined : writer.write(bytes),
    ...(probe ? { usableHere: probe } : {}),
    async close() {
      if (!closing) {
        closing = true;
        try {
          await socket.close();
        } catch {
          // already closed
        }
      }
      await done;
    },
  };
  return transport;
};
