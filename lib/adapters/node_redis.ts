/**
 * An app's node-redis client (`createClient()` of the `redis` package, v5
 * and v6; tested with 6.3.1; v4 is refused: its command options differ) as a
 * {@linkcode CommandSurface}, by its shape: `sendCommand(args, options)`,
 * `isOpen`/`isReady`, `withTypeMapping`, `duplicate()`. Nothing from the
 * package is imported.
 *
 * Wake-ups: one `duplicate()` of the client, connected and subscribed with
 * node-redis's own `subscribe(channel, listener)`, opened when a caller
 * first has to wait and closed when the app's client ends (its `end` event)
 * or after a second without subscriptions. node-redis subscribes it again
 * after a reconnect, before its `ready` event; a message published while it
 * was down is lost, so on that event the waiters are told to look again
 * (`Channels.resubscribe`). Shared by the client's faces (`withAbortSignal()`...).
 *
 * @module
 */

import type { CommandOptions } from "../client/command_options.ts";
import type { Reply } from "../resp/decoder.ts";
import type { Arg } from "../resp/encoder.ts";
import type { Logger } from "../validate.ts";
import {
  bufferClass,
  Channels,
  listenerSubscriber,
  mapError,
  nodeArgs,
  sendWith,
  type SubscriberConnection,
} from "./common.ts";
import type { ConnectionStatus } from "../client/connection.ts";
import type { CommandSurface } from "./surface.ts";

/** The part of a node-redis client used here. */
export interface NodeRedisLike {
  sendCommand(args: unknown[], options?: object): Promise<unknown>;
  readonly isOpen: boolean;
  readonly isReady: boolean;
  duplicate(): NodeRedisLike;
  connect(): Promise<unknown>;
  subscribe(
    channel: string,
    listener: (message: string, channel: string) => void,
  ): Promise<unknown>;
  unsubscribe(channel: string): Promise<unknown>;
  destroy?(): void;
  disconnect?(): Promise<void>;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
}

/** Whether `x` has node-redis's shape (any major). */
export function isNodeRedis(x: Record<string, unknown>): boolean {
  return typeof x.sendCommand === "function" && "isReady" in x &&
    "isOpen" in x && typeof x.duplicate === "function";
}

/**
 * Whether `x` is a node-redis cluster (`createCluster()`) or sentinel
 * (`createSentinel()`) client: their `sendCommand` takes other arguments
 * (`firstKey, isReadonly, args` / `isReadonly, args`).
 */
export function isNodeRedisClusterOrSentinel(
  x: Record<string, unknown>,
): boolean {
  return typeof x.getSlotMaster === "function" ||
    typeof x.nodeClient === "function" ||
    typeof x.getMasterNode === "function" ||
    typeof x.getSentinelNode === "function";
}

/** Whether a node-redis client is v5 or later (it has `withTypeMapping`). */
export function isNodeRedis5(x: Record<string, unknown>): boolean {
  return typeof x.withTypeMapping === "function";
}

const REPLY_CLASSES = new Set([
  "ErrorReply",
  "SimpleError",
  "BlobError",
  "MultiErrorReply",
]);
const isReply = (err: Error) =>
  REPLY_CLASSES.has(err.constructor?.name ?? "") ||
  REPLY_CLASSES.has(err.name);
const map = (err: unknown) => mapError(err, "node-redis", isReply);

/** RESP's `$` (blob string) type, as node-redis's `RESP_TYPES.BLOB_STRING`. */
const BLOB_STRING = 36;
let rawOptions: object | null = null;
/** No type mapping: node-redis's default reply types. */
const TEXT_OPTIONS = { typeMapping: {} };

/**
 * What the faces of one node-redis client share: its subscriber connection
 * (and the `end` listener that closes it) and its server id.
 */
interface Shared {
  readonly channels: Channels;
  readonly server: string;
}

/** One {@linkcode Shared} per underlying client (see {@linkcode underlying}). */
const shared = new WeakMap<object, Shared>();
let clients = 0;

/**
 * The client behind a face: node-redis's `withAbortSignal()`,
 * `withTypeMapping()`, `withCommandOptions()` and `asap()` (and
 * `createClient()` itself) return `Object.create(client)` objects whose
 * `_self` is the one client that holds the socket and the listeners.
 */
function underlying(client: NodeRedisLike): NodeRedisLike {
  const self = (client as { _self?: unknown })._self;
  return typeof self === "object" && self !== null &&
      typeof (self as { duplicate?: unknown }).duplicate === "function"
    ? self as NodeRedisLike
    : client;
}

function sharedFor(client: NodeRedisLike): Shared {
  const base = underlying(client);
  let s = shared.get(base);
  if (s === undefined) {
    const channels: Channels = new Channels(() =>
      openSubscriber(base, channels)
    );
    s = { channels, server: `node-redis#${++clients}` };
    shared.set(base, s);
    base.on("end", () => channels.close());
  }
  return s;
}

async function openSubscriber(
  client: NodeRedisLike,
  channels: Channels,
): Promise<SubscriberConnection> {
  const sub = client.duplicate();
  sub.on("error", () => {}); // node-redis reconnects; an unheard error would throw
  try {
    await sub.connect();
  } catch (err) {
    throw map(err);
  }
  const conn = listenerSubscriber(sub, channels, map, () => {
    if (sub.destroy) sub.destroy();
    else sub.disconnect?.().catch(() => {});
  });
  // Every "ready" from now on is a reconnect's, emitted once node-redis
  // subscribed its channels again: tell their waiters to look again.
  sub.on("ready", () => {
    channels.resubscribe(conn, (msg) => console.warn(msg), {
      unsubscribe: false,
    });
  });
  return conn;
}

/**
 * A node-redis client (or a face of one: its commands keep the face's
 * options, e.g. its abort signal), adapted. The faces of one client share
 * one subscriber connection and one `end` listener.
 */
export class NodeRedisSurface implements CommandSurface {
  readonly #client: NodeRedisLike;
  readonly #channels: Channels;
  /** Where warnings go. */
  readonly logger: Logger = console;
  /** The same for every face of one client: they reach one server. */
  readonly server: string;

  /** @param client The app's node-redis client, or a face of it. */
  constructor(client: NodeRedisLike) {
    this.#client = client;
    const s = sharedFor(client);
    this.#channels = s.channels;
    this.server = s.server;
  }

  /** node-redis's state in respite's words. */
  get status(): ConnectionStatus {
    const c = this.#client;
    return c.isReady ? "ready" : c.isOpen ? "reconnecting" : "closed";
  }

  /** Sends one command (bulk strings as Buffers when `raw`). */
  command<T extends Reply = Reply>(
    args: readonly Arg[],
    options?: CommandOptions,
  ): Promise<T> {
    return sendWith<T>(
      () => {
        const a = nodeArgs(args);
        if (options?.raw) {
          rawOptions ??= { typeMapping: { [BLOB_STRING]: bufferClass() } };
          return this.#client.sendCommand(a, rawOptions);
        } else {
          // node-redis's default replies (numbers as numbers, strings as
          // strings), whatever type mapping the app gave the client or this
          // face of it: the scripts compare integer replies with 1.
          return this.#client.sendCommand(a, TEXT_OPTIONS);
        }
      },
      options,
      map,
    );
  }

  /** Subscribes on the duplicate connection. */
  subscribe(
    channel: string,
    listener: (message: string, channel: string) => void,
  ): Promise<() => Promise<void>> {
    return this.#channels.subscribe(channel, listener);
  }
}
