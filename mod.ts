/**
 * respite: distributed locks and cache-stampede protection over Redis, for
 * Deno, Bun, Node and Cloudflare Workers, with its own small raw-RESP client
 * and no npm dependencies.
 *
 * - {@linkcode connect} opens an auto-pipelined Redis client.
 * - {@linkcode Script} runs Lua with EVALSHA, falling back to EVAL.
 * - {@linkcode Lock} and {@linkcode withLock}: distributed locks with fencing
 *   tokens, auto-renewal, waiters woken on release, and lock loss surfaced.
 * - {@linkcode cached}: cache-stampede protection across processes — one
 *   computation per key in the whole fleet, waiters woken when it is written,
 *   stale-while-revalidate, XFetch early refresh.
 *
 * @example
 * ```ts
 * import { connect } from "@respite/respite";
 *
 * // With no argument, connect() uses REDIS_URL, else redis://127.0.0.1:6379.
 * await using redis = await connect();
 * await redis.send("SET", "respite:example", "hello");
 * console.assert(await redis.send("GET", "respite:example") === "hello");
 * await redis.send("DEL", "respite:example");
 * ```
 *
 * @module
 */

export {
  type ClientInfo,
  type CloseOptions,
  connect,
  RedisClient,
} from "./lib/client/client.ts";
export type { MessageListener } from "./lib/client/subscriber.ts";
export type { CommandOptions } from "./lib/client/command_options.ts";
export type { ConnectionStatus } from "./lib/client/connection.ts";
export {
  ConnectionError,
  ProtocolError,
  ReplyError,
  RespiteError,
  TimeoutError,
} from "./lib/errors.ts";
export type { ConnectOptions, ReconnectOptions } from "./lib/client/options.ts";
export type { Logger } from "./lib/validate.ts";
export { type DecoderLimits, Push, type Reply } from "./lib/resp/decoder.ts";
export type { Arg } from "./lib/resp/encoder.ts";
export { Script, type ScriptRunOptions } from "./lib/script.ts";
export type { CommandSurface, RedisLike } from "./lib/adapters/mod.ts";
export {
  type AcquireOptions,
  Lock,
  type LockOptions,
  type ResetOptions,
} from "./lib/lock/lock.ts";
export { withLock, type WithLockOptions } from "./lib/lock/with_lock.ts";
export {
  LockLostError,
  type LockLostReason,
  LockNotAcquiredError,
  LockNotHeldError,
  type LockNotHeldReason,
} from "./lib/errors.ts";
export type { LockKeys } from "./lib/keys.ts";
export { cached } from "./lib/cache/cached.ts";
export type {
  CachedEntry,
  CachedEntryInfo,
  CachedFunction,
  CachedOptions,
  CacheErrorEvent,
  CacheEvent,
  CacheHooks,
  CallOptions,
  ComputeEvent,
  WaitEvent,
} from "./lib/cache/options.ts";
export {
  type BinaryCodec,
  type Codec,
  jsonCodec,
  type TextCodec,
} from "./lib/cache/codec.ts";
export { Singleflight } from "./lib/cache/singleflight.ts";
export {
  CachedFailureError,
  CacheTimeoutError,
  CodecError,
} from "./lib/errors.ts";
export type {
  Connector,
  Runtime,
  TlsOptions,
  Transport,
  TransportHandlers,
  TransportOptions,
} from "./lib/transport/types.ts";
