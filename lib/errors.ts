/**
 * Error classes that callers of respite are expected to catch.
 *
 * Bad arguments are reported with the built-ins `TypeError` and `RangeError`;
 * everything Redis or the network decides is one of the classes below. Every
 * class sets `name`, and `cause` where there is an underlying error. No message
 * ever contains a password.
 *
 * @module
 */

/**
 * Base class of every error respite throws on purpose (other than
 * `TypeError`/`RangeError` for bad arguments).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { RespiteError, ReplyError } from "./errors.ts";
 * const err = new ReplyError("WRONGTYPE Operation against a key holding the wrong kind of value");
 * assert.ok(err instanceof RespiteError);
 * ```
 */
export class RespiteError extends Error {
  /**
   * Creates the error.
   *
   * @param message What went wrong and what to do about it.
   * @param options `cause`, the underlying error, if any.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "RespiteError";
  }
}

/**
 * An error reply from Redis (`-ERR ...`, `-NOSCRIPT ...`, `-MOVED ...`).
 * `code` is the first word of the reply, as Redis sends it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ReplyError } from "./errors.ts";
 * const err = new ReplyError("NOSCRIPT No matching script. Please use EVAL.");
 * assert.equal(err.code, "NOSCRIPT");
 * ```
 */
export class ReplyError extends RespiteError {
  /** The error code Redis sent: `ERR`, `WRONGTYPE`, `NOSCRIPT`, `MOVED`, ... */
  readonly code: string;
  /**
   * Creates the error.
   *
   * @param message The whole error line Redis sent, code included.
   * @param options `cause`, if any.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ReplyError";
    const space = message.indexOf(" ");
    this.code = space === -1 ? message : message.slice(0, space);
  }
}

/**
 * The connection to Redis could not be opened, was lost, or is closed.
 *
 * A command that was already sent when the connection dropped rejects with
 * this error: it may or may not have run on the server, and respite never
 * sends it again on its own.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ConnectionError } from "./errors.ts";
 * const err = new ConnectionError("connection to 127.0.0.1:6379 closed");
 * assert.equal(err.name, "ConnectionError");
 * ```
 */
export class ConnectionError extends RespiteError {
  /**
   * True when the command was never written to Redis (refused at once,
   * failed or timed out while still queued), so it did not run; false when
   * it may have run.
   */
  readonly notSent: boolean;
  /**
   * Creates the error.
   *
   * @param message What happened, naming the host and port (never a password).
   * @param options `cause`, the network error, if any; `notSent: true` when the command was
   *   never written to Redis.
   */
  constructor(message: string, options?: ErrorOptions & { notSent?: boolean }) {
    super(message, options);
    this.name = "ConnectionError";
    this.notSent = options?.notSent ?? false;
  }
}

/**
 * The server sent bytes that are not valid RESP. The connection that received
 * them is closed and every command pending on it rejects with this error.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ProtocolError } from "./errors.ts";
 * const err = new ProtocolError("unexpected type byte 0x3f");
 * assert.equal(err.name, "ProtocolError");
 * ```
 */
export class ProtocolError extends RespiteError {
  /**
   * Creates the error.
   *
   * @param message What was malformed.
   * @param options `cause`, if any.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ProtocolError";
  }
}

/**
 * A command or a connection attempt did not complete within its timeout.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TimeoutError } from "./errors.ts";
 * const err = new TimeoutError("GET timed out after 100 ms");
 * assert.equal(err.name, "TimeoutError");
 * ```
 */
export class TimeoutError extends RespiteError {
  /**
   * True when the command was never written to Redis (refused at once,
   * failed or timed out while still queued), so it did not run; false when
   * it may have run.
   */
  readonly notSent: boolean;
  /**
   * Creates the error.
   *
   * @param message What timed out and after how long.
   * @param options `cause`, if any; `notSent: true` when the command was
   *   never written to Redis.
   */
  constructor(message: string, options?: ErrorOptions & { notSent?: boolean }) {
    super(message, options);
    this.name = "TimeoutError";
    this.notSent = options?.notSent ?? false;
  }
}

/**
 * Why a holding of a lock was lost: the key had expired (or was deleted, e.g.
 * by `Lock.reset`), another holder's token was found in it, or Redis could not
 * be reached to renew it before the lease ran out.
 */
export type LockLostReason = "expired" | "held-by-other" | "unreachable";

/**
 * Why `release()` or `extend()` failed: the key had expired (or was deleted),
 * another holder's token is in it, or this `Lock` object does not hold it at
 * all (never acquired, already released, or already known to be lost).
 */
export type LockNotHeldReason = "expired" | "held-by-other" | "not-acquired";

/**
 * A lock was not acquired within the time the caller was willing to wait
 * (`withLock` rejects with it; `Lock.acquire` resolves `false` instead).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LockNotAcquiredError, RespiteError } from "./errors.ts";
 * const err = new LockNotAcquiredError("Lock orders not acquired within 100 ms", { lock: "orders", wait: 100 });
 * assert.ok(err instanceof RespiteError);
 * assert.equal(err.name, "LockNotAcquiredError");
 * ```
 */
export class LockNotAcquiredError extends RespiteError {
  /** The lock's name. */
  readonly lock: string;
  /** How long the caller waited, in ms. */
  readonly wait: number;
  /**
   * Creates the error.
   *
   * @param message What was not acquired, and within how long.
   * @param options The lock's name, the wait, and `cause`, if any.
   */
  constructor(
    message: string,
    options: { lock: string; wait: number; cause?: unknown },
  ) {
    super(
      message,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = "LockNotAcquiredError";
    this.lock = options.lock;
    this.wait = options.wait;
  }
}

/**
 * A held lock was lost before it was released: its lease ran out, another
 * holder took it, or it could not be renewed. It is the `reason` of the lock's
 * aborted `signal`, and `withLock` rejects with it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LockLostError } from "./errors.ts";
 * const err = new LockLostError("Lock orders lost: its key expired", { lock: "orders", reason: "expired" });
 * assert.equal(err.name, "LockLostError");
 * assert.equal(err.reason, "expired");
 * ```
 */
export class LockLostError extends RespiteError {
  /** The lock's name. */
  readonly lock: string;
  /** Why it was lost. */
  readonly reason: LockLostReason;
  /**
   * Creates the error.
   *
   * @param message What was lost and why.
   * @param options The lock's name, the reason, and `cause` (e.g. the
   *   connection error that prevented renewal).
   */
  constructor(
    message: string,
    options: { lock: string; reason: LockLostReason; cause?: unknown },
  ) {
    super(
      message,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = "LockLostError";
    this.lock = options.lock;
    this.reason = options.reason;
  }
}

/**
 * `release()` or `extend()` was called on a lock the caller does not hold. The
 * current holder, if any, is left untouched.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LockNotHeldError } from "./errors.ts";
 * const err = new LockNotHeldError("Lock orders is held by another owner", { lock: "orders", reason: "held-by-other" });
 * assert.equal(err.name, "LockNotHeldError");
 * assert.equal(err.reason, "held-by-other");
 * ```
 */
export class LockNotHeldError extends RespiteError {
  /** The lock's name. */
  readonly lock: string;
  /** Why it is not held. */
  readonly reason: LockNotHeldReason;
  /**
   * Creates the error.
   *
   * @param message What was attempted and why it failed.
   * @param options The lock's name, the reason, and `cause`, if any.
   */
  constructor(
    message: string,
    options: { lock: string; reason: LockNotHeldReason; cause?: unknown },
  ) {
    super(
      message,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = "LockNotHeldError";
    this.lock = options.lock;
    this.reason = options.reason;
  }
}

/**
 * A value could not be encoded by a `cached` function's codec (a `BigInt` or
 * a cycle under JSON, for example), so nothing was written to Redis; or, as
 * reported through the `error` hook, a stored entry could not be decoded and
 * was treated as a miss.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CodecError } from "./errors.ts";
 * const err = new CodecError("cannot encode", { key: "user:1", cause: new TypeError("BigInt") });
 * assert.equal(err.name, "CodecError");
 * assert.equal(err.key, "user:1");
 * ```
 */
export class CodecError extends RespiteError {
  /** The cache key (as given to `cached`, without prefix). */
  readonly key: string;
  /**
   * Creates the error.
   *
   * @param message What could not be encoded or decoded, and what to do.
   * @param options The cache key, and `cause` (the codec's error).
   */
  constructor(message: string, options: { key: string; cause?: unknown }) {
    super(
      message,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = "CodecError";
    this.key = options.key;
  }
}

/**
 * A `cached` call waited for another process to compute the value for longer
 * than its `wait` option allows, had no stale value to fall back on, and was
 * told to give up (`onWaitTimeout: "throw"`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CachedTimeoutError, RespiteError } from "./errors.ts";
 * const err = new CachedTimeoutError("gave up", { key: "report", wait: 100 });
 * assert.ok(err instanceof RespiteError);
 * assert.equal(err.wait, 100);
 * ```
 */
export class CachedTimeoutError extends RespiteError {
  /** The cache key (as given to `cached`, without prefix). */
  readonly key: string;
  /** How long the caller waited, in ms. */
  readonly wait: number;
  /**
   * Creates the error.
   *
   * @param message What was waited for, and for how long.
   * @param options The cache key and the wait.
   */
  constructor(message: string, options: { key: string; wait: number }) {
    super(message);
    this.name = "CachedTimeoutError";
    this.key = options.key;
    this.wait = options.wait;
  }
}

/**
 * A failure remembered by negative caching (`cached`'s `negativeTtl` option):
 * the function failed recently for this key, possibly in another process, and
 * the failure is served from the cache until it expires. `errorName` and the
 * message are those of the original error.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CachedFailureError } from "./errors.ts";
 * const err = new CachedFailureError("user 7 not found", { key: "user:7", errorName: "NotFoundError" });
 * assert.equal(err.errorName, "NotFoundError");
 * assert.equal(err.message, "user 7 not found");
 * ```
 */
export class CachedFailureError extends RespiteError {
  /** The cache key (as given to `cached`, without prefix). */
  readonly key: string;
  /** The `name` of the original error, e.g. `"NotFoundError"`. */
  readonly errorName: string;
  /**
   * Creates the error.
   *
   * @param message The original error's message.
   * @param options The cache key and the original error's name.
   */
  constructor(message: string, options: { key: string; errorName: string }) {
    super(message);
    this.name = "CachedFailureError";
    this.key = options.key;
    this.errorName = options.errorName;
  }
}

/**
 * A Redis Cluster could not be used for a command: no seed answered, the
 * slot map could not be read, or a command was redirected (MOVED/ASK) or
 * refused (TRYAGAIN/CLUSTERDOWN) more times than allowed. The message says
 * which; `cause` is the last underlying error.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ClusterError, RespiteError } from "./errors.ts";
 * const err = new ClusterError("GET redirected 16 times (last: MOVED 12182 127.0.0.1:7001)");
 * assert.ok(err instanceof RespiteError);
 * assert.equal(err.name, "ClusterError");
 * ```
 */
export class ClusterError extends RespiteError {
  /**
   * Creates the error.
   *
   * @param message What went wrong (never a password).
   * @param options `cause`, if any.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ClusterError";
  }
}

/**
 * A command's keys hash to different cluster slots, so no single master can
 * run it; thrown before anything is sent. Put the keys in one slot with a
 * shared `{hash tag}`. A `RangeError`, as it is a bad argument.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CrossSlotError } from "./errors.ts";
 * const err = new CrossSlotError("MGET", [1, 2]);
 * assert.ok(err instanceof RangeError);
 * assert.deepEqual(err.slots, [1, 2]);
 * ```
 */
export class CrossSlotError extends RangeError {
  /** The distinct slots the keys hash to. */
  readonly slots: readonly number[];
  /**
   * Creates the error.
   *
   * @param command The command name.
   * @param slots The distinct slots its keys hash to.
   */
  constructor(command: string, slots: readonly number[]) {
    super(
      `${command}: keys hash to different cluster slots (${
        slots.join(", ")
      }); give them a shared {hash tag}`,
    );
    this.name = "CrossSlotError";
    this.slots = slots;
  }
}
