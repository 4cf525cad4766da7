/**
 * The local waiters of one lock name on one client. Only the head contends
 * in Redis; the others wait here, in order, so a release wakes one contender
 * per process rather than every waiter. They share one {@linkcode Wake}: one
 * subscription to the lock's wake channel, whose `seq` keeps a wake-up that
 * arrives during a try from being lost. The queue unsubscribes when it
 * empties.
 *
 * @module
 */

import type { CommandSurface } from "../adapters/surface.ts";
import type { LockKeys } from "../keys.ts";
import { Wake } from "../wake.ts";

/** What the queue needs to know of a local holder: whether its lease runs, and until when. */
export interface LocalHolder {
  /** Whether the holding was lost or released. */
  readonly ended: boolean;
  /** The clock's time before which its key surely has not expired. */
  readonly expiresAt: number;
}

/** The local waiters for one lock name on one client. */
export class WaitQueue {
  /** The waiters in order; the head contends. Each is called when it becomes the head. */
  readonly waiters: Array<() => void> = [];
  /** The holding of a `Lock` on this client, if one holds the lock. */
  localHolder: LocalHolder | null = null;
  /** The wake channel's subscription, shared by the waiters. */
  readonly wake: Wake;
  /** Called once the last waiter left. */
  readonly onEmpty: () => void;

  /**
   * @param redis The client.
   * @param channel The lock's wake channel.
   * @param onEmpty Called once the last waiter left.
   */
  constructor(redis: CommandSurface, channel: string, onEmpty: () => void) {
    this.wake = new Wake(redis, channel);
    this.onEmpty = onEmpty;
  }

  /** Removes a waiter; promotes the next head; unsubscribes when empty. */
  remove(waiter: () => void): void {
    const i = this.waiters.indexOf(waiter);
    if (i === -1) return;
    this.waiters.splice(i, 1);
    if (i === 0 && this.waiters.length > 0) this.waiters[0]();
    if (this.waiters.length === 0) {
      this.onEmpty();
      this.wake.close();
    }
  }
}

const queues = new WeakMap<CommandSurface, Map<string, WaitQueue>>();

/**
 * The queue of the lock `keys` on `redis`: the existing one, else a new one
 * when `create` (its wake subscription made through `wakeVia`: all the nodes
 * of a quorum lock), else `undefined`.
 */
export function queueOf(
  redis: CommandSurface,
  keys: LockKeys,
  create: boolean,
  wakeVia: CommandSurface = redis,
): WaitQueue | undefined {
  let byKey = queues.get(redis);
  let q = byKey?.get(keys.key);
  if (q !== undefined || !create) return q;
  if (byKey === undefined) {
    byKey = new Map();
    queues.set(redis, byKey);
  }
  const map = byKey;
  const created: WaitQueue = new WaitQueue(wakeVia, keys.wake, () => {
    if (map.get(keys.key) === created) map.delete(keys.key);
  });
  q = created;
  map.set(keys.key, q);
  return q;
}
