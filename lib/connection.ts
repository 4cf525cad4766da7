/**
 * One connection to Redis: auto-pipelining (everything issued in one tick
 * leaves in one write), a FIFO queue matching replies to commands, the
 * AUTH/SELECT/HELLO handshake, reconnect with backoff and jitter, per-command
 * timeouts and abort signals.
 *
 * @module
 */

import {
  ConnectionError,
  ProtocolError,
  ReplyError,
  TimeoutError,
} from "./errors.ts";
import { MAX_TIMER_MS, type ResolvedOptions } from "./options.ts";
import { CommandEncoder, validateArgs } from "./resp_encoder.ts";
import { NEED_MORE, Push, type Reply, RespDecoder } from "./resp_decoder.ts";
import {
  type Connector,
  runtimeConnector,
  type Transport,
} from "./transport.ts";

/** Per-command options. */
export interface CommandOptions {
  /** Reject with a `TimeoutError` after this many ms (overrides the client's default). */
  timeout?: number;
  /** Reject at once when this signal aborts. */
  signal?: AbortSignal;
  /** Return bulk strings as `Uint8Array` instead of `string`. */
  raw?: boolean;
}

/** The state of a connection. */
export type ConnectionStatus =
  | "connecting"
  | "ready"
  | "reconnecting"
  | "closing"
  | "closed";

interface Pending {
  resolve: (value: Reply) => void;
  reject: (error: unknown) => void;
  raw: boolean;
  /** Settled early (timeout/abort): its reply is read and dropped. */
  settled: boolean;
  timer?: ReturnType<typeof setTimeout>;
  signal?: AbortSignal;
  onAbort?: () => void;
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
}

/** A FIFO with O(1) push and shift. */
class Fifo<T> {
  #items: (T | undefined)[] = [];
  #head = 0;
  get length(): number {
    return this.#items.length - this.#head;
  }
  push(item: T): void {
    this.#items.push(item);
  }
  peek(): T | undefined {
    return this.#items[this.#head];
  }
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
  drain(): T[] {
    const out = this.#items.slice(this.#head) as T[];
    this.#items = [];
    this.#head = 0;
    return out;
  }
}

/** Hooks a connection's owner can set. */
export interface ConnectionHooks {
  /** Pub/sub message arrays and RESP3 pushes that are not command replies. */
  onMessage?: (kind: string, data: Reply[]) => void;
  /** After every successful (re)connect and handshake, before queued commands go out. */
  onReady?: () => void;
  /** When the connection gives up for good. */
  onClosed?: () => void;
}

const MESSAGE_KINDS = new Set(["message", "pmessage", "smessage"]);

/** One Redis connection. Create with {@linkcode Connection.open}. */
export class Connection {
  readonly options: ResolvedOptions;
  readonly hooks: ConnectionHooks;
  /** True for a connection used only for SUBSCRIBE. */
  readonly subscriber: boolean;
  #status: ConnectionStatus = "connecting";
  #connector: Connector | null = null;
  #transport: Transport | null = null;
  #decoder = new RespDecoder();
  #encoder = new CommandEncoder();
  /** Encoded in #encoder, not yet written. */
  #unsent: Pending[] = [];
  /** Bumped whenever #unsent is handed over (written or failed). */
  #batch = 0;
  /** Commands in #unsent that settled early (timeout/abort): never written. */
  #dropped = 0;
  /** Written, waiting for their replies, in order. */
  #inflight = new Fifo<Pending>();
  #writing = false;
  #flushQueued = false;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #retryWake: (() => void) | null = null;
  /** The running reconnect loop, so close() can wait for what it opened. */
  #reconnecting: Promise<void> | null = null;
  #closedPromise: Promise<void> | null = null;
  #idle: (() => void) | null = null;
  /** Commands issued by send() and not yet settled (replied, failed, timed out). */
  #unsettled = 0;
  /** Set by #capture, taken by send() right after. */
  #resolve: ((value: Reply) => void) | null = null;
  #reject: ((error: unknown) => void) | null = null;
  #capture = (
    resolve: (value: Reply) => void,
    reject: (error: unknown) => void,
  ): void => {
    this.#resolve = resolve;
    this.#reject = reject;
  };
  #onSettled = (): void => {
    if (--this.#unsettled === 0 && this.#idle !== null) this.#idle();
  };
  #where: string;
  /** True while #attempt runs: a drop then fails the attempt, not the connection. */
  #attempting = false;

  private constructor(
    options: ResolvedOptions,
    hooks: ConnectionHooks,
    subscriber: boolean,
  ) {
    this.options = options;
    this.hooks = hooks;
    this.subscriber = subscriber;
    this.#where = `${options.hostname}:${options.port}`;
  }

  /**
   * Opens a connection and runs the handshake. Rejects (and leaves nothing
   * open) if the server cannot be reached in time or the handshake fails.
   */
  static async open(
    options: ResolvedOptions,
    hooks: ConnectionHooks = {},
    subscriber = false,
  ): Promise<Connection> {
    const conn = new Connection(options, hooks, subscriber);
    await conn.#attempt();
    conn.#status = "ready";
    conn.hooks.onReady?.();
    conn.#scheduleFlush();
    return conn;
  }

  /** The connection's state. */
  get status(): ConnectionStatus {
    return this.#status;
  }

  /** Commands waiting for a reply or to be written. */
  get pending(): number {
    return this.#inflight.length + this.#unsent.length - this.#dropped;
  }

  /**
   * Sends one command. Bad arguments throw before anything is queued.
   */
  send(args: readonly unknown[], opts?: CommandOptions): Promise<Reply> {
    const status = this.#status;
    if (status === "closing" || status === "closed") {
      return Promise.reject(
        new ConnectionError(`The client for ${this.#where} is closed`),
      );
    }
    if (status !== "ready") {
      if (!this.options.queueWhileReconnecting) {
        validateArgs(args);
        return Promise.reject(
          new ConnectionError(`Not connected to ${this.#where} (reconnecting)`),
        );
      }
      if (this.#unsent.length >= this.options.maxQueue) {
        validateArgs(args);
        return Promise.reject(
          new ConnectionError(
            `Not connected to ${this.#where}, and ${this.options.maxQueue} commands are already queued`,
          ),
        );
      }
    }
    const t = opts?.timeout;
    if (t !== undefined && (typeof t !== "number" || !(t > 0))) {
      throw new RangeError(
        `timeout must be a positive number of ms, got ${String(t)}`,
      );
    }
    const signal = opts?.signal;
    if (signal?.aborted) {
      validateArgs(args);
      return Promise.reject(signal.reason);
    }
    this.#encoder.encode(args);
    // One shared executor, not a closure per command (measured: +5-20%
    // concurrent GET/s on Deno and Bun, less garbage per command).
    const promise = new Promise<Reply>(this.#capture);
    const p: Pending = {
      resolve: this.#resolve!,
      reject: this.#reject!,
      raw: opts?.raw ?? false,
      settled: false,
      timer: undefined,
      signal: undefined,
      onAbort: undefined,
      name: String(args[0]),
      onSettled: this.#onSettled,
      end: this.#encoder.length,
      batch: this.#batch,
    };
    this.#resolve = this.#reject = null;
    this.#unsettled++;
    const timeout = opts?.timeout ?? this.options.commandTimeout;
    if (timeout !== undefined && timeout < MAX_TIMER_MS) {
      p.timer = setTimeout(() => {
        p.timer = undefined;
        this.#settleEarly(
          p,
          new TimeoutError(`${p.name} timed out after ${timeout} ms`),
        );
      }, timeout);
    }
    if (signal) {
      p.signal = signal;
      p.onAbort = () => this.#settleEarly(p, signal.reason);
      signal.addEventListener("abort", p.onAbort, { once: true });
    }
    this.#unsent.push(p);
    if (this.#status === "ready") this.#scheduleFlush();
    return promise;
  }

  /** A timeout or abort: a command not written yet will never be. */
  #settleEarly(p: Pending, error: unknown): void {
    if (p.settled) return;
    if (p.batch === this.#batch) this.#dropped++;
    settle(p, undefined, error);
  }

  #scheduleFlush(): void {
    if (this.#flushQueued || this.#writing) return;
    this.#flushQueued = true;
    queueMicrotask(() => {
      this.#flushQueued = false;
      this.#flush();
    });
  }

  #flush(): void {
    while (
      !this.#writing && this.#encoder.length > 0 &&
      (this.#status === "ready" || this.#status === "closing") &&
      this.#transport !== null
    ) {
      // A transport that lets go of written bytes gets a view of the
      // encoder's buffer (no copy); we only come back here once it is done.
      let bytes = this.#transport.releasesWrites
        ? this.#encoder.takeView()
        : this.#encoder.take();
      const batch = this.#unsent;
      this.#unsent = [];
      this.#batch++;
      if (this.#dropped === 0) {
        for (let i = 0; i < batch.length; i++) this.#inflight.push(batch[i]);
      } else {
        this.#dropped = 0;
        bytes = this.#keepUnsettled(bytes, batch);
        if (bytes.length === 0) continue;
      }
      let result: Promise<void> | void;
      try {
        result = this.#transport.write(bytes);
      } catch (err) {
        this.#lost(err);
        return;
      }
      if (result !== undefined) {
        this.#writing = true;
        const transport = this.#transport;
        result.then(
          () => {
            this.#writing = false;
            if (this.#transport === transport) this.#flush();
          },
          (err) => {
            this.#writing = false;
            if (this.#transport === transport) this.#lost(err);
          },
        );
      }
    }
  }

  /**
   * Moves the bytes of `batch`'s unsettled commands to the front of `bytes`
   * (which we own until it is written) and queues those commands for their
   * replies; the settled ones are dropped, never sent.
   */
  #keepUnsettled(bytes: Uint8Array, batch: Pending[]): Uint8Array {
    let kept = 0;
    let start = 0;
    for (let i = 0; i < batch.length; i++) {
      const p = batch[i];
      const end = p.end;
      if (!p.settled) {
        if (kept !== start) bytes.copyWithin(kept, start, end);
        kept += end - start;
        this.#inflight.push(p);
      }
      start = end;
    }
    return bytes.subarray(0, kept);
  }

  #onData(chunk: Uint8Array, borrowed?: boolean): void {
    const decoder = this.#decoder;
    decoder.feed(chunk);
    try {
      this.#readReplies(decoder);
    } finally {
      if (borrowed) decoder.release(chunk);
    }
  }

  #readReplies(decoder: RespDecoder): void {
    for (;;) {
      let reply;
      try {
        reply = decoder.read(this.#inflight.peek()?.raw);
      } catch (err) {
        this.#protocolError(err);
        return;
      }
      if (reply === NEED_MORE) break;
      if (reply instanceof Push) {
        const kind = String(reply.data[0]);
        if (
          this.subscriber && !MESSAGE_KINDS.has(kind) &&
          kind.endsWith("subscribe")
        ) {
          this.#reply(reply.data);
        } else if (this.subscriber && MESSAGE_KINDS.has(kind)) {
          this.hooks.onMessage?.(kind, reply.data);
        } else {
          this.options.onPush?.(reply);
        }
        continue;
      }
      if (
        this.subscriber && Array.isArray(reply) &&
        MESSAGE_KINDS.has(String(reply[0]))
      ) {
        this.hooks.onMessage?.(String(reply[0]), reply);
        continue;
      }
      if (!this.#reply(reply)) return;
    }
  }

  #reply(reply: Reply): boolean {
    const p = this.#inflight.shift();
    if (p === undefined) {
      this.#protocolError(
        new ProtocolError("Redis sent a reply nobody asked for"),
      );
      return false;
    }
    if (reply instanceof ReplyError) settle(p, undefined, reply);
    else settle(p, reply);
    if (this.#idle !== null && this.pending === 0) this.#idle();
    return true;
  }

  #protocolError(err: unknown): void {
    const error = err instanceof ProtocolError
      ? err
      : new ProtocolError(String(err), { cause: err });
    const wrapped = new ProtocolError(
      `Malformed reply from ${this.#where}: ${error.message}; the connection was closed`,
      { cause: error },
    );
    this.#lost(wrapped, wrapped);
  }

  /** The transport ended or failed: fail what was sent, then reconnect or close. */
  #lost(cause: unknown, error?: Error): void {
    const transport = this.#transport;
    if (transport === null) return;
    this.#transport = null;
    this.#writing = false;
    transport.close().catch(() => {});
    const inflightError = error ??
      new ConnectionError(
        `Connection to ${this.#where} lost; the command may or may not have run`,
        { cause },
      );
    for (const p of this.#inflight.drain()) settle(p, undefined, inflightError);
    this.#decoder = new RespDecoder();
    if (this.#attempting) return;
    if (this.#status === "closing" || this.#status === "closed") {
      this.#finishClose();
      return;
    }
    if (this.options.reconnect === false) {
      this.#giveUp(inflightError);
      return;
    }
    this.#status = "reconnecting";
    if (!this.options.queueWhileReconnecting) {
      this.#failUnsent(
        new ConnectionError(`Not connected to ${this.#where} (reconnecting)`),
      );
    }
    this.#reconnecting = this.#reconnectLoop().catch(() => {});
  }

  async #reconnectLoop(): Promise<void> {
    const r = this.options.reconnect;
    if (r === false) return;
    let lastError: unknown;
    for (let attempt = 0; attempt < r.maxRetries + 1; attempt++) {
      const base = Math.min(
        r.maxDelay,
        r.minDelay * 2 ** Math.min(attempt, 30),
      );
      const delay = base / 2 + Math.random() * base / 2; // jitter
      await new Promise<void>((resolve) => {
        this.#retryWake = resolve;
        this.#retryTimer = setTimeout(resolve, delay);
      });
      this.#retryTimer = undefined;
      this.#retryWake = null;
      if (this.#status !== "reconnecting") return;
      try {
        await this.#attempt();
      } catch (err) {
        lastError = err;
        if (this.#status !== "reconnecting") return;
        continue;
      }
      if (this.#status !== "reconnecting") {
        // closed while the handshake ran
        const t = this.#transport;
        this.#transport = null;
        await t?.close();
        this.#finishClose();
        return;
      }
      this.#status = "ready";
      this.hooks.onReady?.();
      this.#flush();
      return;
    }
    this.#giveUp(
      new ConnectionError(
        `Could not reconnect to ${this.#where} after ${r.maxRetries} retries`,
        { cause: lastError },
      ),
    );
  }

  #giveUp(error: Error): void {
    this.#status = "closed";
    this.#failUnsent(error);
    this.hooks.onClosed?.();
  }

  #failUnsent(error: Error): void {
    const unsent = this.#unsent;
    this.#unsent = [];
    this.#batch++;
    this.#dropped = 0;
    this.#encoder.take();
    for (const p of unsent) settle(p, undefined, error);
  }

  /** Opens the transport and runs the handshake; on failure leaves nothing open. */
  async #attempt(): Promise<void> {
    this.#attempting = true;
    try {
      await this.#attemptOnce();
    } finally {
      this.#attempting = false;
    }
  }

  async #attemptOnce(): Promise<void> {
    const o = this.options;
    if (this.#connector === null) {
      this.#connector = typeof o.connector === "function"
        ? o.connector
        : await runtimeConnector(o.connector);
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    let timedOut = false;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        timedOut = true;
        reject(
          new TimeoutError(
            `Could not connect to ${this.#where} within ${o.connectTimeout} ms`,
          ),
        );
      }, o.connectTimeout);
    });
    let transport: Transport | null = null;
    const opening = this.#connector(
      { hostname: o.hostname, port: o.port, tls: o.tls },
      {
        onData: (chunk, borrowed) => {
          if (this.#transport === transport) this.#onData(chunk, borrowed);
        },
        onClose: (err) => {
          if (this.#transport === transport) this.#lost(err);
        },
      },
    );
    try {
      transport = await Promise.race([opening, timeout]);
      if (this.#status === "closing" || this.#status === "closed") {
        clearTimeout(timer);
        await transport.close();
        throw new ConnectionError(`The client for ${this.#where} was closed`);
      }
    } catch (err) {
      clearTimeout(timer);
      if (timedOut) opening.then((t) => t.close(), () => {});
      if (err instanceof TimeoutError) throw err;
      throw new ConnectionError(
        `Could not connect to ${this.#where}: ${errorText(err)}`,
        { cause: err },
      );
    }
    this.#transport = transport;
    this.#decoder = new RespDecoder();
    try {
      const handshake = this.#handshake();
      handshake.catch(() => {});
      await Promise.race([handshake, timeout]);
    } catch (err) {
      this.#transport = null;
      for (const p of this.#inflight.drain()) {
        settle(
          p,
          undefined,
          new ConnectionError("handshake failed", { cause: err }),
        );
      }
      await transport.close();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** AUTH / HELLO / SELECT / CLIENT SETNAME, written directly, ahead of queued commands. */
  async #handshake(): Promise<void> {
    const o = this.options;
    const steps: { args: unknown[]; what: string }[] = [];
    if (o.protocol === 3) {
      const hello: unknown[] = ["HELLO", 3];
      if (o.password !== undefined) {
        hello.push("AUTH", o.username ?? "default", o.password);
      }
      if (o.name) hello.push("SETNAME", o.name);
      steps.push({ args: hello, what: "HELLO 3" });
    } else {
      if (o.password !== undefined) {
        steps.push({
          args: o.username !== undefined
            ? ["AUTH", o.username, o.password]
            : ["AUTH", o.password],
          what: "AUTH",
        });
      }
      if (o.name) {
        steps.push({
          args: ["CLIENT", "SETNAME", o.name],
          what: "CLIENT SETNAME",
        });
      }
    }
    if (o.db !== 0) steps.push({ args: ["SELECT", o.db], what: "SELECT" });
    if (steps.length === 0) return;
    const encoder = new CommandEncoder();
    const replies: Promise<Reply>[] = [];
    for (const step of steps) {
      encoder.encode(step.args);
      replies.push(
        new Promise<Reply>((resolve, reject) => {
          this.#inflight.push({
            resolve,
            reject,
            raw: false,
            settled: false,
            name: step.what,
            end: 0,
            batch: -1,
          });
        }),
      );
    }
    await this.#transport!.write(encoder.take());
    const results = await Promise.allSettled(replies);
    for (let i = 0; i < results.length; i++) {
      const r = results[i];
      if (r.status === "fulfilled") continue;
      const err = r.reason;
      const step = steps[i];
      if (err instanceof ReplyError) {
        if (
          step.what === "HELLO 3" &&
          /unknown command|unknown subcommand/i.test(err.message)
        ) {
          throw new ReplyError(
            `${err.code} RESP3 needs Redis 6 or newer: ${this.#where} does not know HELLO (${err.message})`,
            { cause: err },
          );
        }
        const user = o.username === undefined ? "" : ` as user "${o.username}"`;
        throw new ReplyError(
          `${err.message} (${step.what}${
            step.what === "AUTH" || step.what === "HELLO 3" ? user : ""
          } at ${this.#where})`,
          { cause: err },
        );
      }
      throw err;
    }
  }

  /**
   * Closes the connection after every command already issued has its reply.
   * Resolves when the socket is closed. Commands issued after this reject.
   */
  close(): Promise<void> {
    if (this.#closedPromise) return this.#closedPromise;
    const wasReady = this.#status === "ready";
    this.#status = "closing";
    this.#closedPromise = (async () => {
      if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
      this.#retryWake?.();
      if (this.#reconnecting !== null) {
        // A reconnect attempt may be opening a socket or in its handshake:
        // fail the handshake, and wait until the loop closed what it opened.
        if (this.#attempting) {
          this.#lost(
            new ConnectionError(`The client for ${this.#where} was closed`),
          );
        }
        await this.#reconnecting;
      }
      if (wasReady && this.#transport !== null) {
        this.#flush();
        // Wait for the commands still waiting for their reply; one that timed
        // out or was aborted is settled, and its reply may never come.
        if (this.#unsettled > 0) {
          await new Promise<void>((resolve) => this.#idle = resolve);
          this.#idle = null;
        }
      }
      this.#failUnsent(
        new ConnectionError(`The client for ${this.#where} was closed`),
      );
      const t = this.#transport;
      this.#transport = null;
      if (t !== null) {
        await t.close();
        for (const p of this.#inflight.drain()) {
          settle(
            p,
            undefined,
            new ConnectionError(`The client for ${this.#where} was closed`),
          );
        }
      }
      this.#finishClose();
    })();
    return this.#closedPromise;
  }

  #finishClose(): void {
    if (this.#status === "closed") return;
    this.#status = "closed";
    this.#idle?.();
    this.hooks.onClosed?.();
  }

  /** Drops the connection as if the network failed (for tests of reconnect). */
  async simulateDrop(): Promise<void> {
    const t = this.#transport;
    await t?.close();
  }
}

function settle(p: Pending, value: Reply | undefined, error?: unknown): void {
  if (p.settled) return;
  p.settled = true;
  if (p.timer !== undefined) clearTimeout(p.timer);
  if (p.onAbort) p.signal!.removeEventListener("abort", p.onAbort);
  if (error !== undefined) p.reject(error);
  else p.resolve(value as Reply);
  p.onSettled?.();
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
