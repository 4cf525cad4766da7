/**
 * Transport over `node:net` / `node:tls`, for Node.js only (Deno and Bun use
 * their own socket APIs and never load this module).
 *
 * `node:net` and `node:tls` are imported through variables, not string
 * literals. A bundler follows a dynamic `import()` of a literal, and this
 * module is loaded by a dynamic import of this file in ./mod.ts: with literals,
 * esbuild bundling for the browser platform (as wrangler does for Cloudflare
 * Workers, without `nodejs_compat`) stops at `Could not resolve "node:net"`.
 * With variables, every bundler leaves the import to run time, where it only
 * ever runs on Node (and in a bundle made for Node, `node:` built-ins
 * resolve at run time as well). The types come from type-only imports,
 * which are erased.
 *
 * @module
 */

import type { Connector, Transport } from "./types.ts";

type NodeNet = typeof import("node:net");
type NodeTls = typeof import("node:tls");
type NodeSocket = import("node:net").Socket;

// Variables, so that bundlers leave them alone (see the module doc).
const NET_MODULE: string = "node:net";
const TLS_MODULE: string = "node:tls";

/**
 * Opens a TCP or TLS stream with Node's `net`/`tls`; no-delay is on. For TLS,
 * resolves only once the handshake is done and the certificate checked.
 */
export const nodeConnector: Connector = async (options, handlers) => {
  const net = await import(NET_MODULE) as NodeNet;
  const tlsOptions = options.tls;
  // Loaded only when needed: a plain TCP client never loads node:tls.
  const tls = tlsOptions ? await import(TLS_MODULE) as NodeTls : undefined;
  const socket = await new Promise<NodeSocket>((resolve, reject) => {
    let s: NodeSocket;
    const fail = (err: unknown) => reject(err);
    const ok = () => {
      s.off("error", fail);
      resolve(s);
    };
    if (tls && tlsOptions) {
      // SNI must not carry an IP address (RFC 6066; Node warns, DEP0123).
      // Without `servername`, Node checks the certificate against `host`,
      // IP addresses included.
      const servername = tlsOptions.serverName ??
        (net.isIP(options.hostname) ? undefined : options.hostname);
      s = tls.connect({
        host: options.hostname,
        port: options.port,
        ...(tlsOptions.caCerts ? { ca: tlsOptions.caCerts } : {}),
        ...(servername ? { servername } : {}),
      }, ok);
    } else {
      s = net.connect({ host: options.hostname, port: options.port }, ok);
    }
    s.once("error", fail);
    // Given up on (connect timeout, close()): destroy the socket, which
    // also ends a TLS handshake that would otherwise wait for ever.
    const signal = options.signal;
    if (signal !== undefined) {
      const onAbort = () => {
        s.destroy();
        fail(signal.reason);
      };
      if (signal.aborted) onAbort();
      else {
        signal.addEventListener("abort", onAbort, { once: true });
        s.once(
          "secureConnect",
          () => signal.removeEventListener("abort", onAbort),
        );
        s.once("connect", () => {
          if (!tls) signal.removeEventListener("abort", onAbort);
        });
        s.once("close", () => signal.removeEventListener("abort", onAbort));
      }
    }
  });
  socket.setNoDelay(true);
  // TCP keepalive after 15 s idle: a peer that vanished without FIN or RST
  // is found eventually even with nothing in flight.
  socket.setKeepAlive(true, 15_000);
  let closedResolve!: () => void;
  const closed = new Promise<void>((r) => closedResolve = r);
  let isClosed = false;
  let error: unknown;
  socket.on("data", (chunk: Uint8Array) =>
    // A plain Uint8Array view, so that slices of it are copies, not Buffer views.
    handlers.onData(
      new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength),
    ));
  socket.on("error", (err: unknown) => error ??= err);
  socket.on("close", () => {
    isClosed = true;
    handlers.onClose(error);
    closedResolve();
  });
  const transport: Transport = {
    write(bytes) {
      // Writing to a destroyed socket would wait for a "drain" or "close"
      // that already happened; the loss is reported through onClose.
      if (isClosed || socket.destroyed) return;
      if (socket.write(bytes)) return;
      return new Promise<void>((resolve) => {
        const done = () => {
          socket.off("drain", done);
          socket.off("close", done);
          resolve();
        };
        socket.on("drain", done);
        socket.on("close", done);
      });
    },
    close() {
      socket.destroy();
      return closed;
    },
  };
  return transport;
};
