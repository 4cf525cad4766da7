/**
 * A connection's read side: decodes the bytes that arrive, routes pub/sub
 * messages and RESP3 pushes aside, and matches every reply, in order, to the
 * command written first (a transaction takes all of its replies at once).
 *
 * @module
 */

import { ConnectionError, ProtocolError, ReplyError } from "../errors.ts";
import type { NotRunQueue } from "./not_run.ts";
import type { ResolvedOptions } from "./options.ts";
import { Fifo, type Pending, settle, settleTransaction } from "./pending.ts";
import { NEED_MORE, Push, type Reply, RespDecoder } from "../resp/decoder.ts";

const MESSAGE_KINDS = new Set(["message", "pmessage", "smessage"]);

/** The hook that takes pub/sub messages (a connection's `ConnectionHooks`). */
export interface MessageHook {
  /** Pub/sub message arrays and RESP3 pushes that are not command replies. */
  onMessage?: (kind: string, data: Reply[]) => void;
}

/** The replies of one connection, on their way to the commands that wait. */
export class Inbox {
  /** Written, waiting for their replies, in order. */
  readonly inflight: Fifo<Pending> = new Fifo<Pending>();
  /**
   * While set, called after each reply that settled a command (close()
   * waits for the last one).
   */
  onAnswered: (() => void) | null = null;
  readonly #options: ResolvedOptions;
  readonly #where: string;
  readonly #subscriber: boolean;
  readonly #hooks: MessageHook;
  readonly #notRun: NotRunQueue;
  readonly #failed: (error: Error) => void;
  #decoder: RespDecoder;
  /** Chunks read on this connection so far: a health check compares counts. */
  #reads = 0;

  /**
   * @param options The connection's options (reply limits, `onPush`, logger).
   * @param where `host:port`, for messages.
   * @param subscriber Whether the connection is used only for SUBSCRIBE.
   * @param hooks The connection's hooks: `onMessage` takes pub/sub messages
   *   (on a subscriber connection).
   * @param notRun Takes the replies that say a command did not run.
   * @param failed Called when the reply stream can no longer be trusted
   *   (malformed, or a failure of ours while reading): the connection must
   *   be dropped with this error.
   */
  constructor(
    options: ResolvedOptions,
    where: string,
    subscriber: boolean,
    hooks: MessageHook,
    notRun: NotRunQueue,
    failed: (error: Error) => void,
  ) {
    this.#options = options;
    this.#where = where;
    this.#subscriber = subscriber;
    this.#hooks = hooks;
    this.#notRun = notRun;
    this.#failed = failed;
    this.#decoder = new RespDecoder(options.replyLimits);
  }

  /** Chunks read so far. */
  get reads(): number {
    return this.#reads;
  }

  /** A new transport: starts decoding afresh. */
  reset(): void {
    this.#decoder = new RespDecoder(this.#options.replyLimits);
  }

  /**
   * Reads a chunk from the transport and hands out every reply it completes.
   * Nothing it throws escapes.
   *
   * @param chunk The bytes.
   * @param borrowed The transport reuses the chunk's memory afterwards.
   */
  read(chunk: Uint8Array, borrowed?: boolean): void {
    this.#reads++;
    const decoder = this.#decoder;
    decoder.feed(chunk);
    try {
      this.#readReplies(decoder);
    } catch (err) {
      // Nothing may escape into the transport's read loop (on Node that
      // ends the process): a failure here is ours, and the reply stream can
      // no longer be trusted.
      this.#failed(
        new ConnectionError(
          `respite failed while reading replies from ${this.#where} (${
            errorText(err)
          }); the connection was closed`,
          { cause: err },
        ),
      );
    } finally {
      if (borrowed) decoder.release(chunk);
    }
  }

  /** Hands a RESP3 push frame to the `onPush` option; what it throws is logged. */
  #push(push: Push): void {
    const onPush = this.#options.onPush;
    if (onPush === undefined) return;
    try {
      onPush(push);
    } catch (err) {
      this.#options.logger.warn(`respite: onPush threw: ${errorText(err)}`);
    }
  }

  #readReplies(decoder: RespDecoder): void {
    const subscriber = this.#subscriber;
    for (;;) {
      let reply;
      try {
        reply = decoder.read(this.inflight.peek()?.raw);
      } catch (err) {
        this.#protocolError(err);
        return;
      }
      if (reply === NEED_MORE) break;
      if (reply instanceof Push) {
        const kind = String(reply.data[0]);
        if (subscriber && this.#serverUnsubscribe(kind, reply.data)) {
          this.#hooks.onMessage?.(kind, reply.data);
        } else if (
          subscriber && !MESSAGE_KINDS.has(kind) &&
          kind.endsWith("subscribe")
        ) {
          this.#reply(reply.data);
        } else if (subscriber && MESSAGE_KINDS.has(kind)) {
          this.#hooks.onMessage?.(kind, reply.data);
        } else {
          this.#push(reply);
        }
        continue;
      }
      if (
        subscriber && Array.isArray(reply) &&
        (MESSAGE_KINDS.has(String(reply[0])) ||
          this.#serverUnsubscribe(String(reply[0]), reply))
      ) {
        this.#hooks.onMessage?.(String(reply[0]), reply);
        continue;
      }
      if (!this.#reply(reply)) return;
    }
  }

  /**
   * Whether a `sunsubscribe` is Redis ending a sharded subscription on its
   * own (the channel's slot moved to another shard), not the reply to our
   * SUNSUBSCRIBE of that channel, which would be the command waiting first.
   */
  #serverUnsubscribe(kind: string, data: Reply[]): boolean {
    if (kind !== "sunsubscribe") return false;
    const p = this.inflight.peek();
    return p === undefined || p.name.toUpperCase() !== "SUNSUBSCRIBE" ||
      String(p.args?.[1]) !== String(data[1]);
  }

  #reply(reply: Reply): boolean {
    const p = this.inflight.peek();
    if (p === undefined) {
      this.#protocolError(
        new ProtocolError("Redis sent a reply nobody asked for"),
      );
      return false;
    }
    if (p.replies > 1) {
      (p.collected ??= []).push(reply);
      if (p.collected.length < p.replies) return true;
      this.inflight.shift();
      settleTransaction(p);
      if (this.onAnswered !== null) this.onAnswered();
      return true;
    }
    this.inflight.shift();
    if (reply instanceof ReplyError) {
      if (!this.#notRun.offer(p, reply)) settle(p, undefined, reply);
    } else {
      this.#notRun.answered();
      settle(p, reply);
    }
    if (this.onAnswered !== null) this.onAnswered();
    return true;
  }

  #protocolError(err: unknown): void {
    const error = err instanceof ProtocolError
      ? err
      : new ProtocolError(String(err), { cause: err });
    this.#failed(
      new ProtocolError(
        `Malformed reply from ${this.#where}: ${error.message}; the connection was closed`,
        { cause: error },
      ),
    );
  }
}

/** An error's message (or the value as text), for a log line. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
