/**
 * The byte-stream abstraction under a connection: the interfaces a runtime's
 * transport (deno.ts, bun.ts, node.ts, workers.ts in this directory)
 * implements, and nothing else, so that those modules import only this one
 * and never ./mod.ts, which loads them.
 *
 * @module
 */

/** Where and how to open a byte stream. */
export interface TransportOptions {
  /** Host name or IP address. */
  hostname: string;
  /** TCP port. */
  port: number;
  /** TLS settings, or `undefined` for plain TCP. */
  tls?: TlsOptions;
  /**
   * Aborts when the client gives up on this attempt (connect timeout,
   * close()): a connector closes whatever socket it opened so far (a TLS
   * handshake with a silent peer, say) and rejects.
   */
  signal?: AbortSignal;
}

/** TLS settings for `rediss://` connections. */
export interface TlsOptions {
  /** PEM-encoded CA certificates to trust instead of the system's. */
  caCerts?: string[];
  /** The name to verify the server's certificate against; defaults to the host name. */
  serverName?: string;
}

/** Callbacks a transport calls as data arrives and when the stream ends. */
export interface TransportHandlers {
  /**
   * Bytes arrived. The receiver owns `chunk` and may keep it, unless
   * `borrowed` is true: then `chunk` is only valid during this call (the
   * transport reads into the same memory again) and the receiver copies
   * what it keeps.
   *
   * @param chunk The bytes.
   * @param borrowed Whether `chunk`'s memory is reused after the call.
   */
  onData(chunk: Uint8Array, borrowed?: boolean): void;
  /**
   * The stream ended, by either side. Called exactly once.
   *
   * @param error The reason, if it ended abnormally.
   */
  onClose(error?: unknown): void;
}

/** An open byte stream. */
export interface Transport {
  /**
   * Writes all of `bytes`. Returns a promise when the caller must wait before
   * writing again (backpressure), or nothing when it may go on at once.
   *
   * @param bytes The bytes; the transport may keep a reference to them.
   */
  write(bytes: Uint8Array): Promise<void> | void;
  /**
   * True when the transport keeps no reference to the bytes given to
   * `write` once `write` returned nothing or its promise settled, so that
   * the caller may reuse that memory for the next write. When false or
   * absent, the caller hands every write a buffer of its own.
   */
  readonly releasesWrites?: boolean;
  /**
   * Closes the stream; resolves once it is fully closed and `onClose` ran.
   */
  close(): Promise<void>;
  /**
   * Whether the code running now may use this stream. Absent means always.
   * On Cloudflare Workers a socket belongs to the request that opened it;
   * another request (a later one, or a concurrent one in the same isolate)
   * cannot read or write it, and this returns false there. Synchronous and
   * free: it does no I/O.
   */
  usableHere?(): boolean;
}

/**
 * Opens a transport. Rejects if the stream cannot be opened.
 *
 * @param options Where to connect.
 * @param handlers Called for data and close.
 */
export type Connector = (
  options: TransportOptions,
  handlers: TransportHandlers,
) => Promise<Transport>;

/** The runtimes respite knows how to open sockets on. */
export type Runtime = "deno" | "bun" | "node" | "workers";
