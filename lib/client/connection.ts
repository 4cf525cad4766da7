/**
 * One connection to Redis: auto-pipelining (everything issued in one tick
 * leaves in one write), a FIFO queue matching replies to commands, the
 * AUTH/SELECT/HELLO handshake, reconnect with backoff and jitter, per-command
 * timeouts and abort signals, and the checks that find a dead connection
 * (after a timeout, and before writing to one that was idle).
 *
 * @module
 */

import { ConnectionError, TimeoutError } from "../errors.ts";
import { backoff, MAX_TIMER_MS } from "../async.ts";
import type { ResolvedOptions } from "./options.ts";
import { checkCommandOptions, type CommandOptions } from "./command_options.ts";
import { refusal } from "./admission.ts";
import { AttemptLimit, dial } from "./dial.ts";
import { handshake } from "./handshake.ts";
import { NotRunQueue } from "./not_run.ts";
import { errorText, Inbox } from "./inbox.ts";
import { Outbox } from "./outbox.ts";
import { type Pending, settle } from "./pending.ts";
import { validateArgs } from "../resp/encoder.ts";
import type { Reply } from "../resp/decoder.ts";
import type { Connector, Transport } from "../transport/types.ts";
import { runtimeConnector } from "../transport/mod.ts";

/** `PING`, as the idle check writes it. */
const PING = new TextEncoder().encode("*1\r\n$4\r\nPING\r\n");

/** The state of a connection. */
export type ConnectionStatus =
  | "connecting"
  | "ready"
  | "reconnecting"
  | "closing"
  | "closed";

/** Hooks a connection's owner can set. */
export interface ConnectionHooks {
  /** Pub/sub message arrays and RESP3 pushes that are not command replies. */
  onMessage?: (kind: string, data: Reply[]) => void;
  /**
   * After every successful (re)connect and handshake, before queued commands
   * go out; `reconnected` is false for the first one.
   */
  onReady?: (reconnected: boolean) => void;
  /** When the connection gives up for good. */
  onClosed?: () => void;
  /** When a health check starts (a command that was written timed out). */
  onHealthCheck?: () => void;
}

/** One Redis connection. Create with {@linkcode Connection.open}. */
export class Connection {
  readonly options: ResolvedOptions;
  readonly hooks: ConnectionHooks;
  /** True for a connection used only for SUBSCRIBE. */
  readonly subscriber: boolean;
  #status: ConnectionStatus = "connecting";
  #connector: Connector | null = null;
  #transport: Transport | null = null;
  /** When the current outage began (`performance.now()`). */
  #outageStart = 0;
  /**
   * The "lost" line of a loss that cost nothing (no command was in flight),
   * held back until the first reconnect attempt fails: an idle connection
   * that the server's `timeout`, a NAT or a thaw let go, and that is back at
   * once, is not an outage. `null` once written (or when there is none).
   */
  #quietLoss: string | null = null;
  /** Whether this outage's "lost" line was written (so "back" is too). */
  #outageLogged = false;
  /** The last transport opened, kept after it is lost: whose request owns us. */
  #owner: Transport | null = null;
  /** The read side: decoding, and matching replies to commands in flight. */
  #inbox: Inbox;
  /** Written, waiting for their replies, in order (the inbox's queue). */
  #inflight: Inbox["inflight"];
  /** The write side: commands encoded and not yet written. */
  #outbox: Outbox;
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
  /** A health-check PING is out. */
  #probing = false;
  /** performance.now() of the last chunk read, or of the handshake's end. */
  #lastRead = 0;
  /**
   * Date.now() of the same moment: the monotonic clock stands still while
   * the machine sleeps (system suspend), the wall clock does not.
   */
  #lastReadWall = 0;
  /** The transport an idle check's PING is out on: nothing else is written. */
  #idleProbe: Transport | null = null;
  /** Commands answered "did not run" (LOADING, BUSY, TRYAGAIN), to send again. */
  #notRun: NotRunQueue;
  /** Closing what an abandoned connection attempt opens late. */
  #abandoned: Promise<void> | null = null;
  /** Ends the connection attempt in progress (close() during a reconnect). */
  #abortAttempt: ((err: Error) => void) | null = null;
  /** Ends close()'s wait for replies at once. */
  #forceClose: (() => void) | null = null;

  private constructor(
    options: ResolvedOptions,
    hooks: ConnectionHooks,
    subscriber: boolean,
  ) {
    this.options = options;
    this.hooks = hooks;
    this.subscriber = subscriber;
    this.#where = `${options.hostname}:${options.port}`;
    this.#notRun = new NotRunQueue(
      options.retryNotRun,
      (queue) => this.#resend(queue),
    );
    this.#inbox = new Inbox(
      options,
      this.#where,
      subscriber,
      hooks,
      this.#notRun,
      (error) => this.#lost(error, error),
    );
    this.#inflight = this.#inbox.inflight;
    this.#outbox = new Outbox(
      this.#inflight,
      () => this.#writable(),
      (transport, err) => {
        if (this.#transport === transport) this.#lost(err);
      },
    );
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
    conn.hooks.onReady?.(false);
    conn.#outbox.schedule();
    return conn;
  }

  /** `host:port` of the server this connection is to (or was, or tries). */
  get where(): string {
    return this.#where;
  }

  /**
   * Drops the connection to `where` (if it is still the one in use; `null`:
   * whichever it is) so that
   * it reconnects, asking its target again (Sentinel: the master moved).
   * Commands in flight fail as with any connection loss; queued ones wait.
   */
  reroute(where: string | null, reason: string): void {
    if (this.#transport === null) return;
    if (where !== null && this.#where !== where) return;
    this.#lost(new ConnectionError(reason));
  }

  /** The connection's state. */
  get status(): ConnectionStatus {
    return this.#status;
  }

  /** Commands waiting for a reply or to be written. */
  get pending(): number {
    return this.#inflight.length + this.#outbox.length;
  }

  /**
   * Sends one command. Bad arguments throw before anything is queued.
   */
  send(args: readonly unknown[], opts?: CommandOptions): Promise<Reply> {
    // Every check comes before the command is encoded: once its bytes are in
    // the encoder they will be written, and a command written without a
    // pending entry would shift every later reply to the wrong caller.
    if (opts !== undefined) checkCommandOptions(opts);
    const refused = this.#refusal();
    if (refused !== null) {
      validateArgs(args);
      return Promise.reject(refused);
    }
    const signal = opts?.signal;
    if (signal?.aborted) {
      validateArgs(args);
      return Promise.reject(signal.reason);
    }
    this.#outbox.encode(args); // validates first; throws before writing
    return this.#queue(
      String(args[0]),
      opts?.raw ?? false,
      opts?.timeout ?? this.options.commandTimeout,
      signal,
      1,
      args,
    );
  }

  /** "connection" or "subscriber connection", for log lines. */
  get #label(): string {
    return this.subscriber ? "subscriber connection" : "connection";
  }

  /** A line to the logger; a logger that throws is ignored. */
  #warn(message: string): void {
    try {
      this.options.logger.warn(message);
    } catch {
      // never let logging break the connection
    }
  }

  /**
   * Whether this connection belongs to another request than the code
   * running now (Cloudflare Workers; see `Transport.usableHere`). Judged by
   * the last socket opened, also while it is lost and not yet replaced: a
   * reconnect would need the request that owns it.
   */
  get foreignRequest(): boolean {
    const owner = this.#owner;
    return owner !== null && owner.usableHere !== undefined &&
      !owner.usableHere();
  }

  /** Why a command issued now is refused at once (see refusal()), or `null`. */
  #refusal(): Error | null {
    if (this.foreignRequest) return new TypeError(requestRule(this.#where));
    return refusal(
      this.#status,
      this.options,
      this.#where,
      this.#outbox.length,
      this.#outbox.writeStarted,
    );
  }

  /**
   * Sends `MULTI`, `commands` and `EXEC` as one unit: their bytes leave
   * together, and they settle together (a timeout or abort before they are
   * written drops all of them), so the connection is never left inside a
   * transaction. Resolves with EXEC's reply.
   */
  sendTransaction(
    commands: readonly (readonly unknown[])[],
    opts?: CommandOptions,
  ): Promise<Reply> {
    if (opts !== undefined) checkCommandOptions(opts);
    for (const c of commands) validateArgs(c);
    const refused = this.#refusal();
    if (refused !== null) return Promise.reject(refused);
    const signal = opts?.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    this.#outbox.encodeTransaction(commands); // all or nothing
    return this.#queue(
      "MULTI",
      opts?.raw ?? false,
      opts?.timeout ?? this.options.commandTimeout,
      signal,
      commands.length + 2,
    );
  }

  /** Queues the command(s) just encoded, expecting `replies` replies. */
  #queue(
    name: string,
    raw: boolean,
    timeout: number | undefined,
    signal: AbortSignal | undefined,
    replies: number,
    args?: readonly unknown[],
  ): Promise<Reply> {
    // One shared executor, not a closure per command (measured: +5-20%
    // concurrent GET/s on Deno and Bun, less garbage per command).
    const promise = new Promise<Reply>(this.#capture);
    const p: Pending = {
      resolve: this.#resolve!,
      reject: this.#reject!,
      raw,
      settled: false,
      timer: undefined,
      signal: undefined,
      onAbort: undefined,
      name,
      onSettled: this.#onSettled,
      end: 0, // set by the outbox
      batch: 0,
      replies,
      collected: undefined,
      args,
    };
    this.#resolve = this.#reject = null;
    this.#unsettled++;
    this.#outbox.add(p);
    if (timeout !== undefined && timeout < MAX_TIMER_MS) {
      p.timer = setTimeout(() => {
        p.timer = undefined;
        this.#timedOut(p, timeout);
      }, timeout);
    }
    if (signal) {
      p.signal = signal;
      p.onAbort = () => this.#aborted(p, signal.reason);
      signal.addEventListener("abort", p.onAbort, { once: true });
    }
    if (this.#status === "ready") this.#outbox.schedule();
    return promise;
  }

  /** A timeout or abort: a command not written yet will never be. */
  #settleEarly(p: Pending, error: unknown): void {
    if (p.settled) return;
    const unsent = this.#outbox.holds(p);
    settle(p, undefined, error);
    if (unsent) this.#outbox.dropped();
  }

  /**
   * A command's signal aborted. Like a timeout, an abort of a command that
   * was written and is still unanswered is a hint that the connection may
   * be dead (a lock gives up on a try, a caller stops waiting): check it.
   */
  #aborted(p: Pending, reason: unknown): void {
    const written = !this.#outbox.holds(p) && !p.settled;
    this.#settleEarly(p, reason);
    if (written) this.#healthCheck();
  }

  /** A command's timeout ran out. */
  #timedOut(p: Pending, timeout: number): void {
    const written = !this.#outbox.holds(p);
    this.#settleEarly(
      p,
      new TimeoutError(`${p.name} timed out after ${timeout} ms`, {
        notSent: !written,
      }),
    );
    if (written) this.#healthCheck();
  }

  /**
   * Checks now whether the connection is alive (see #healthCheck): for a
   * connection whose sibling was just found dead, e.g. a client's
   * subscriber connection when its command connection reconnected.
   */
  checkHealth(): void {
    this.#healthCheck();
  }

  /**
   * After a command that was written timed out or was aborted unanswered:
   * is the connection alive? A
   * PING goes out; if it times out too and not one byte arrived meanwhile,
   * the connection is dead without having said so (no FIN, no RST: a
   * black-holed path, a frozen peer) and is dropped, which fails what is in
   * flight and reconnects. A server that is merely slow still sends bytes.
   * PING is read-only, so sending it is always safe.
   */
  #healthCheck(): void {
    const timeout = this.options.healthCheckTimeout;
    if (
      timeout === false || this.#probing || this.#status !== "ready" ||
      this.#transport === null
    ) return;
    this.#probing = true;
    this.hooks.onHealthCheck?.();
    const transport = this.#transport;
    const reads = this.#inbox.reads;
    this.#outbox.encode(["PING"]);
    this.#queue("PING", false, timeout, undefined, 1).then(
      () => {
        this.#probing = false;
      },
      (err) => {
        this.#probing = false;
        if (
          err instanceof TimeoutError && this.#transport === transport &&
          this.#inbox.reads === reads
        ) {
          const dead = new ConnectionError(
            `${this.#where} sent nothing for ${timeout} ms after a command timed out, not even the reply to a PING: the connection is taken for dead and opened again; the commands in flight may or may not have run`,
          );
          this.#lost(dead, dead);
        }
      },
    );
  }

  /**
   * The transport the outbox may write to now (it asks right before each
   * write), or `null`: not connected, or an idle check is out on it.
   */
  #writable(): Transport | null {
    if (this.#status !== "ready" && this.#status !== "closing") return null;
    const t = this.#transport;
    if (t === null || this.#idleProbe === t) return null;
    const after = this.options.idleCheck;
    if (after !== false && this.#inflight.length === 0) {
      const idle = Math.max(
        performance.now() - this.#lastRead,
        Date.now() - this.#lastReadWall,
      );
      if (idle > after) {
        this.#idleCheck(t, idle);
        return null;
      }
    }
    return t;
  }

  /** Notes that bytes were read (or a connection was opened) just now. */
  #readNow(): void {
    this.#lastRead = performance.now();
    this.#lastReadWall = Date.now();
  }

  /**
   * Before writing to a connection idle past `idleCheck`: is it still open?
   * A process frozen (or its event loop blocked) longer than the server's
   * `timeout` resumes with the server's close not read yet; a command
   * written then would be lost with the connection, and might or might not
   * have run. So a PING goes first, written directly, and the outbox holds
   * its commands until the answer. Answered: they are written. The
   * connection closes instead: they were never written, so they go out on
   * the next connection (reconnect is immediate). No answer within
   * `healthCheckTimeout` and no byte read: it is taken for dead, the same.
   * PING is read-only, so sending it on a connection in doubt is safe.
   */
  #idleCheck(transport: Transport, idle: number): void {
    this.#idleProbe = transport;
    const reads = this.#inbox.reads;
    const timeout = this.options.healthCheckTimeout;
    const done = () => {
      if (this.#idleProbe !== transport) return;
      this.#idleProbe = null;
      if (this.#transport === transport) this.#outbox.schedule();
    };
    const p: Pending = {
      resolve: done,
      reject: (err) => {
        if (
          err instanceof TimeoutError && this.#transport === transport &&
          this.#inbox.reads === reads
        ) {
          const dead = new ConnectionError(
            `${this.#where} did not answer a PING within ${timeout} ms after the connection was idle for ${
              Math.round(idle)
            } ms: it is taken for dead and opened again (no command was written to it)`,
          );
          this.#idleProbe = null; // found dead, not closed: an outage
          this.#lost(dead, dead);
        }
        done();
      },
      raw: false,
      settled: false,
      name: "PING",
      end: 0,
      batch: -1,
      replies: 1,
      collected: undefined,
    };
    this.#inflight.push(p);
    if (timeout !== false) {
      p.timer = setTimeout(() => {
        p.timer = undefined;
        settle(p, undefined, new TimeoutError(`PING timed out`));
      }, timeout);
    }
    const failed = (err: unknown) => {
      if (this.#transport === transport) this.#lost(err);
    };
    try {
      transport.write(PING.slice())?.catch(failed);
    } catch (err) {
      failed(err);
    }
  }

  /** Sends the commands answered "did not run" again, in their order. */
  #resend(queue: Pending[]): void {
    const closing = this.#status === "closing" || this.#status === "closed";
    for (const p of queue) {
      if (p.settled) continue;
      if (closing) {
        settle(p, undefined, p.notRun);
        continue;
      }
      this.#outbox.encode(p.args!);
      this.#outbox.add(p);
    }
    if (this.#status === "ready") this.#outbox.schedule();
  }

  /** The transport ended or failed: fail what was sent, then reconnect or close. */
  #lost(cause: unknown, error?: Error): void {
    const transport = this.#transport;
    if (transport === null) return;
    this.#transport = null;
    // Closed while an idle check was out: the server (or a NAT) let an idle
    // connection go, which is not an outage; nothing was written to it.
    const idleClosed = this.#idleProbe === transport;
    this.#outbox.lost();
    transport.close().catch(() => {});
    const inflightError = error ??
      new ConnectionError(
        `Connection to ${this.#where} lost; the command may or may not have run`,
        { cause },
      );
    let lostCommands = 0;
    for (const p of this.#inflight.drain()) {
      lostCommands++;
      settle(p, undefined, inflightError);
    }
    this.#inbox.reset();
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
    // One line per outage, however many attempts it takes (and one when it
    // ends, in #reconnectLoop): never one per attempt.
    this.#outageStart = performance.now();
    const line = `respite: lost the ${this.#label} to ${this.#where} (${
      cause === undefined ? "closed by the peer" : errorText(cause)
    }); reconnecting`;
    // Quiet: closed while an idle check was out, or closed by the peer with
    // no command in flight (the server's `timeout`, a CLIENT KILL of an idle
    // connection). A connection found dead, or one that took commands with
    // it, is an outage at once.
    const quiet = idleClosed || (cause === undefined && lostCommands === 0);
    if (quiet) {
      this.#quietLoss = line;
      this.#outageLogged = false;
    } else {
      this.#quietLoss = null;
      this.#outageLogged = true;
      this.#warn(line);
      this.#refuseQueued();
    }
    this.#reconnecting = this.#reconnectLoop(idleClosed).catch(() => {});
  }

  /** Reconnects with backoff; `atOnce`: the first attempt without delay. */
  async #reconnectLoop(atOnce: boolean): Promise<void> {
    const r = this.options.reconnect;
    if (r === false) return;
    let lastError: unknown;
    for (let attempt = 0; attempt < r.maxRetries + 1; attempt++) {
      const delay = atOnce && attempt === 0
        ? 0
        : backoff(attempt, r.minDelay, r.maxDelay);
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
        if (this.#quietLoss !== null) {
          // Not back at once: an outage after all.
          this.#warn(this.#quietLoss);
          this.#quietLoss = null;
          this.#outageLogged = true;
          this.#refuseQueued();
        }
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
      this.#quietLoss = null;
      if (this.#outageLogged) {
        this.#outageLogged = false;
        this.#warn(
          `respite: the ${this.#label} to ${this.#where} is back after ${
            Math.round(performance.now() - this.#outageStart)
          } ms (${attempt + 1} attempt${attempt === 0 ? "" : "s"})`,
        );
      }
      this.hooks.onReady?.(true);
      this.#outbox.flush();
      return;
    }
    this.#giveUp(
      new ConnectionError(
        `Could not reconnect to ${this.#where} after ${r.maxRetries} retries`,
        { cause: lastError },
      ),
    );
  }

  /**
   * With `queueWhileReconnecting: false`, an outage fails the commands
   * waiting to be written (none of them was): at its start, or, for a loss
   * that looked quiet, once the reconnect made at once has failed.
   */
  #refuseQueued(): void {
    if (!this.options.queueWhileReconnecting) {
      this.#outbox.fail(
        new ConnectionError(`Not connected to ${this.#where} (reconnecting)`),
      );
    }
  }

  #giveUp(error: Error): void {
    this.#status = "closed";
    this.#outbox.fail(error);
    this.#notRun.fail(error);
    this.hooks.onClosed?.();
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
    // Ends the attempt: its connect timeout, or close() (see #abortAttempt).
    // A resolved target (Sentinel) is asked again at every attempt; close()
    // stops that search too.
    let target: { hostname: string; port: number };
    if (o.target === undefined) {
      target = { hostname: o.hostname, port: o.port };
    } else {
      const searching = new AbortController();
      this.#abortAttempt = (err) => searching.abort(err);
      try {
        target = await o.target.resolve(searching.signal);
      } finally {
        this.#abortAttempt = null;
      }
    }
    this.#where = `${target.hostname}:${target.port}`;
    const limit = new AttemptLimit(o.connectTimeout, this.#where);
    this.#abortAttempt = limit.stop;
    const given = o.attemptSignal;
    const giveUp = () => limit.stop(given!.reason);
    if (given?.aborted) giveUp();
    else given?.addEventListener("abort", giveUp, { once: true });
    let transport: Transport | null = null;
    try {
      transport = await dial(
        this.#connector,
        { hostname: target.hostname, port: target.port, tls: o.tls },
        {
          onData: (chunk, borrowed) => {
            if (this.#transport === transport) {
              this.#readNow();
              this.#inbox.read(chunk, borrowed);
            }
          },
          onClose: (err) => {
            if (this.#transport === transport) this.#lost(err);
          },
        },
        limit,
        this.#where,
        () => this.#status === "closing" || this.#status === "closed",
        (abandoned) => {
          this.#abandoned = abandoned;
          abandoned.then(() => {
            if (this.#abandoned === abandoned) this.#abandoned = null;
          });
        },
      );
    } catch (err) {
      given?.removeEventListener("abort", giveUp);
      this.#abortAttempt = null;
      throw err;
    }
    this.#transport = transport;
    this.#owner = transport;
    this.#inbox.reset();
    try {
      const handshake = this.#handshake();
      handshake.catch(() => {});
      await Promise.race([handshake, limit.expired]);
      this.#readNow();
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
      limit.end();
      given?.removeEventListener("abort", giveUp);
      this.#abortAttempt = null;
    }
  }

  /** AUTH / HELLO / SELECT / CLIENT SETNAME, written directly, ahead of queued commands. */
  #handshake(): Promise<void> {
    return handshake(
      this.options,
      this.#where,
      this.#transport!,
      (p) => this.#inflight.push(p),
    );
  }

  /**
   * Closes the connection after every command already issued has its reply,
   * waiting for them at most `timeout` ms (default: the `closeTimeout`
   * option); `0` closes at once. Commands still waiting then reject with a
   * `ConnectionError`. Resolves when the socket is closed. Commands issued
   * after this reject. A second call may shorten the wait of the first.
   */
  close(timeout: number = this.options.closeTimeout): Promise<void> {
    if (this.#closedPromise) {
      if (timeout === 0) this.#forceClose?.();
      else if (this.#forceClose !== null && timeout < MAX_TIMER_MS) {
        const force = this.#forceClose;
        const timer = setTimeout(force, timeout);
        this.#closedPromise.finally(() => clearTimeout(timer));
      }
      return this.#closedPromise;
    }
    const wasReady = this.#status === "ready";
    this.#status = "closing";
    this.#closedPromise = (async () => {
      if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
      this.#retryWake?.();
      if (this.#reconnecting !== null) {
        // A reconnect attempt may be opening a socket or in its handshake:
        // fail the handshake, and wait until the loop closed what it opened.
        if (this.#attempting) {
          const closed = new ConnectionError(
            `The client for ${this.#where} was closed`,
          );
          this.#abortAttempt?.(closed); // a connect or handshake still out
          this.#lost(closed);
        }
        await this.#reconnecting;
      }
      if (this.#abandoned !== null && timeout > 0) {
        // A connector given up on that has not returned yet (it was told
        // with its signal): wait for the socket it opens to be closed again.
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          this.#abandoned,
          new Promise<void>((resolve) => {
            this.#forceClose = resolve;
            if (timeout < MAX_TIMER_MS) timer = setTimeout(resolve, timeout);
          }),
        ]);
        clearTimeout(timer);
      }
      if (wasReady && this.#transport !== null && timeout > 0) {
        this.#outbox.flush();
        // Wait for the commands still waiting for their reply; one that timed
        // out or was aborted is settled, and its reply may never come.
        if (this.#unsettled > 0) {
          let timer: ReturnType<typeof setTimeout> | undefined;
          await new Promise<void>((resolve) => {
            this.#idle = resolve;
            this.#inbox.onAnswered = () => {
              if (this.pending === 0) resolve();
            };
            this.#forceClose = resolve;
            if (timeout < MAX_TIMER_MS) timer = setTimeout(resolve, timeout);
          });
          clearTimeout(timer);
          this.#idle = null;
          this.#inbox.onAnswered = null;
        }
      }
      this.#forceClose = null;
      const closed = new ConnectionError(
        `The client for ${this.#where} was closed before Redis answered; the command may or may not have run`,
      );
      this.#outbox.fail(
        new ConnectionError(`The client for ${this.#where} was closed`),
      );
      this.#notRun.fail(closed);
      const t = this.#transport;
      this.#transport = null;
      if (t !== null) {
        // Settle first: a stalled transport's close may take its time.
        for (const p of this.#inflight.drain()) settle(p, undefined, closed);
        await t.close();
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
}

/**
 * The error text for a client used from a request that does not own its
 * socket: the rule, and the fix.
 *
 * @param where `host:port`.
 */
export function requestRule(where: string): string {
  return `This client's connection to ${where} was opened by another request: ` +
    "on Cloudflare Workers a socket belongs to the request that opened it, and no other request (a later one, or a concurrent one) may use it. " +
    "Connect inside the handler (const redis = await connect(...)), pass that client per call " +
    "(cachedFn.get(args, { redis }), or withLock(fn, { redis: (...args) => client })), " +
    "and close it when the request is done (ctx.waitUntil(cachedFn.idle().finally(() => redis.close())))";
}
