/**
 * Transport over Bun's native `Bun.connect` sockets (not `node:net`).
 *
 * @module
 */

import type { Connector, Transport, TransportHandlers } from "./types.ts";

/** The part of Bun's socket API this module uses (checked against bun-types by scripts/check_bun_types.sh). */
export interface BunSocket {
  write(data: Uint8Array): number;
  end(): void;
  terminate?(): void;
  setNoDelay?(on?: boolean): boolean;
  setKeepAlive?(on?: boolean, initialDelay?: number): boolean;
}

/** The socket handlers this module gives `Bun.connect`. */
export interface BunSocketHandlers {
  data(socket: BunSocket, data: Uint8Array): void;
  drain(socket: BunSocket): void;
  close(socket: BunSocket, error?: unknown): void;
  error(socket: BunSocket, error: unknown): void;
  connectError?(socket: BunSocket, error: unknown): void;
  handshake?(
    socket: BunSocket,
    success: boolean,
    authorizationError: Error | null,
  ): void;
}

/** The options this module gives `Bun.connect`. */
export interface BunConnectOptions {
  hostname: string;
  port: number;
  tls?: boolean | { ca?: string[]; serverName?: string };
  socket: BunSocketHandlers;
}

/** The part of the `Bun` global this module uses. */
export interface BunGlobal {
  connect(options: BunConnectOptions): Promise<BunSocket>;
}

/** Opens a TCP or TLS stream with `Bun.connect`; no-delay is on. */
export const bunConnector: Connector = async (options, handlers) => {
  const bun = (globalThis as unknown as { Bun: BunGlobal }).Bun;
  const state = new BunState(handlers);
  // Bun.connect resolves before the TLS handshake: wait for it, so that an
  // untrusted certificate fails the connect and not the first command.
  let handshakeDone: (error?: unknown) => void = () => {};
  const handshake = new Promise<void>((resolve, reject) => {
    handshakeDone = (error) => error === undefined ? resolve() : reject(error);
  });
  handshake.catch(() => {});
  const socket = await bun.connect({
    hostname: options.hostname,
    port: options.port,
    ...(options.tls
      ? {
        tls: {
          ...(options.tls.caCerts ? { ca: options.tls.caCerts } : {}),
          serverName: options.tls.serverName ?? options.hostname,
        },
      }
      : {}),
    socket: {
      data: (_s, data) => state.data(data),
      drain: () => state.drain(),
      close: (_s, error) => {
        handshakeDone(
          error ?? state.error ??
            new Error("the connection closed during the TLS handshake"),
        );
        state.closed(error);
      },
      error: (_s, error) => state.error = error,
      ...(options.tls
        ? {
          handshake: (_s: BunSocket, _ok: boolean, error: Error | null) =>
            handshakeDone(error ?? undefined),
        }
        : {}),
    },
  });
  socket.setNoDelay?.(true);
  // TCP keepalive after 15 s idle: a peer that vanished without FIN or RST
  // is found eventually even with nothing in flight.
  socket.setKeepAlive?.(true, KEEPALIVE_MS);
  state.socket = socket;
  if (options.tls) {
    // Given up on (connect timeout, close()): a TLS handshake with a silent
    // peer would wait for ever; end it by closing the socket.
    const signal = options.signal;
    const onAbort = () => handshakeDone(signal!.reason ?? new Error("aborted"));
    if (signal?.aborted) onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await handshake;
    } catch (err) {
      await state.close();
      throw err;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }
  return state;
};

/** Idle time before the first TCP keepalive probe. */
const KEEPALIVE_MS = 15_000;

class BunState implements Transport {
  /** Unwritten bytes are kept only until `drain` resolves `write`'s promise. */
  readonly releasesWrites = true;
  socket: BunSocket | null = null;
  error: unknown;
  #handlers: TransportHandlers;
  #backlog: Uint8Array | null = null;
  #drained: (() => void) | null = null;
  #isClosed = false;
  #closed: Promise<void>;
  #closedResolve!: () => void;

  constructor(handlers: TransportHandlers) {
    this.#handlers = handlers;
    this.#closed = new Promise((r) => this.#closedResolve = r);
  }

  data(chunk: Uint8Array): void {
    // Bun hands us a Buffer we own; pass it on as a plain Uint8Array view so
    // that slices of it are plain copies.
    this.#handlers.onData(
      new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength),
    );
  }

  drain(): void {
    if (this.#backlog === null || this.socket === null) return;
    const rest = this.#backlog;
    const n = this.socket.write(rest);
    if (n < rest.length) {
      this.#backlog = rest.subarray(Math.max(n, 0));
      return;
    }
    this.#backlog = null;
    const done = this.#drained;
    this.#drained = null;
    done?.();
  }

  closed(error?: unknown): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    const done = this.#drained;
    this.#drained = null;
    done?.();
    this.#handlers.onClose(error ?? this.error);
    this.#closedResolve();
  }

  write(bytes: Uint8Array): Promise<void> | void {
    if (this.#isClosed || this.socket === null) return;
    const n = this.socket.write(bytes);
    if (n >= bytes.length) return;
    this.#backlog = bytes.subarray(Math.max(n, 0));
    return new Promise<void>((resolve) => this.#drained = resolve);
  }

  close(): Promise<void> {
    if (!this.#isClosed) {
      if (this.socket?.terminate) this.socket.terminate();
      else this.socket?.end();
    }
    return this.#closed;
  }
}
