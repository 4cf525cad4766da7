/**
 * Whether a connection takes a command issued now, or refuses it at once
 * (never sent): closed, reconnecting without `queueWhileReconnecting`, or a
 * backlog of `maxQueue` commands that cannot go out.
 *
 * @module
 */

import { ConnectionError } from "../errors.ts";
import type { ResolvedOptions } from "./options.ts";

/**
 * A write unfinished for this long means the peer is not reading: then
 * `maxQueue` bounds the commands waiting behind it.
 */
const STALLED_WRITE_MS = 1_000;

/**
 * Why a command issued now is refused at once, or `null` when it may be
 * queued: the client is closed, it is reconnecting and does not queue, or
 * the backlog is full: `maxQueue` commands are waiting to be written while
 * reconnecting, or behind a write that has not finished for
 * STALLED_WRITE_MS (a peer that does not read). A write merely in progress
 * (a big pipeline to a server reading at full speed) is no reason to refuse.
 *
 * @param status The connection's status.
 * @param options Its options.
 * @param where `host:port`, for messages.
 * @param unsent Commands waiting to be written (not settled).
 * @param writeStarted `performance.now()` when the write in progress
 *   started, or -1 when none is.
 * @returns The error to reject the command with, or `null`.
 */
export function refusal(
  status: string,
  options: ResolvedOptions,
  where: string,
  unsent: number,
  writeStarted: number,
): ConnectionError | null {
  if (status === "closing" || status === "closed") {
    return new ConnectionError(`The client for ${where} is closed`, {
      notSent: true,
    });
  }
  if (status !== "ready" && !options.queueWhileReconnecting) {
    return new ConnectionError(
      `Not connected to ${where} (reconnecting)`,
      { notSent: true },
    );
  }
  if (unsent < options.maxQueue) return null;
  if (status !== "ready") {
    return new ConnectionError(
      `Not connected to ${where}, and ${options.maxQueue} commands are already queued`,
      { notSent: true },
    );
  }
  if (
    writeStarted >= 0 && performance.now() - writeStarted >= STALLED_WRITE_MS
  ) {
    return new ConnectionError(
      `${options.maxQueue} commands are waiting to be written to ${where}, which has not taken a write for ${STALLED_WRITE_MS} ms (a stalled connection?)`,
      { notSent: true },
    );
  }
  return null;
}
