/**
 * Transport over `node:net` / `node:tls`, for Node.js only (Deno and Bun use
 * their own socket APIs and never load this module).
 *
 * @module
 */

import type { Connector, Transport } from "./transport.ts";

/** Opens a TCP or TLS stream with Node's `net`/`tls`; no-delay is on. */
export const nodeConnector: Connector = async (options, handlers) => {
  const net = await import("node:net");
  const tls = await import("node:tls");
  type Sock = import("node:net").Socket;
  const socket: Sock = await new Promise<Sock>((resolve, reject) => {
    const s: Sock = options.tls
      ? tls.connect({
        host: options.hostname,
        port: options.port,
        ca: options.tls.caCerts,
        servername: options.tls.serverName ?? options.hostname,
      }, () => ok())
      : net.connect({ host: options.hostname, port: options.port }, () => ok());
    const fail = (err: unknown) => reject(err);
    const ok = () => {
      s.off("error", fail);
      resolve(s);
    };
    s.once("error", fail);
  });
  socket.setNoDelay(true);
  let closedResolve!: () => void;
  const closed = new Promise<void>((r) => closedResolve = r);
  let error: unknown;
  socket.on("data", (chunk: Uint8Array) =>
    // A plain Uint8Array view, so that slices of it are copies, not Buffer views.
    handlers.onData(
      new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength),
    ));
  socket.on("error", (err: unknown) => error = err);
  socket.on("close", () => {
    handlers.onClose(error);
    closedResolve();
  });
  const transport: Transport = {
    write(bytes) {
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
