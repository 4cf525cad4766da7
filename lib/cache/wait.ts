/**
 * A caller's wait for its turn on a cache miss: take the entry's lock, or
 * wait for whoever holds it to write the value. Waiting does not poll: the
 * writer publishes on the lock's wake channel, and so does the lock's
 * release; the only timer is the holder's remaining lease (a holder that
 * died) and the `wait` bound.
 *
 * @module
 */

import {
  acceptable,
  type Entry,
  ENTRY_START,
  type EntryCodec,
  newerValue,
} from "./entry.ts";
import type { CacheStore, CurrentGeneration } from "./store.ts";
import type { Lock } from "../lock/lock.ts";
import type { Wake } from "../wake.ts";

/** How many times a waiter's `wait` budget restarts when the lock changes hands. */
const MAX_HANDOFFS = 3;

/** How a wait ended (the `outcome` of the `wait` hook's event). */
export type Turn<T> =
  /** This caller holds the lock: it computes. */
  | { outcome: "lead"; lock: Lock }
  /** A usable entry arrived. */
  | { outcome: "value"; entry: Entry<T> }
  /** The `wait` bound ran out. */
  | { outcome: "timeout" }
  /** Redis failed. */
  | { outcome: "error"; error: unknown };

/** What a wait leaves behind for its caller. */
export interface WaitState<T> {
  /** The newest stale value seen, to serve when the wait runs out. */
  prev: Entry<T> | null;
  /** The subscription, once the caller had to wait; the caller closes it. */
  wake: Wake | null;
}

/**
 * Waits for this caller's turn: the lock, a usable entry, the `wait` bound
 * or a Redis failure.
 *
 * @param k The cache key.
 * @param minCreatedAt An entry computed before this (Unix ms) is not usable.
 * @param state `prev` going in; updated, with the subscription, on the way.
 */
export async function awaitTurn<T>(
  store: CacheStore,
  entries: EntryCodec<T>,
  options: { wait: number; random: () => number },
  k: string,
  minCreatedAt: number,
  state: WaitState<T>,
): Promise<Turn<T>> {
  let deadline = performance.now() + options.wait;
  // With a namespace, an entry must carry the namespace's generation token
  // as read after it arrived, so a published entry is not taken as it comes
  // (the token last read may predate an invalidateAll(), and its writer may
  // have read the old token before it): it is read again beside the token.
  const namespaced = store.genKey !== null;
  let gen: CurrentGeneration = undefined;
  // The last entry a writer published (text codecs, no namespace), not yet
  // looked at.
  let sent = null as string | null;
  const onMessage = (message: string) => {
    if (!namespaced && message.startsWith(ENTRY_START)) sent = message;
  };
  let tryLock = true;
  // The lock holder last seen, and how often the budget restarted because
  // the lock changed hands (a new leader deserves a whole `wait`).
  let holder: string | null = null;
  let handoffs = 0;
  while (true) {
    if (tryLock) {
      const lock = store.newLock(k);
      let got: boolean;
      try {
        got = await store.tryAcquire(lock);
      } catch (error) {
        return { outcome: "error", error };
      }
      if (got) return { outcome: "lead", lock };
    }
    if (state.wake === null) {
      // Subscribe before looking again, so no wake-up is lost.
      try {
        state.wake = await store.subscribe(k, onMessage);
      } catch (error) {
        return { outcome: "error", error };
      }
    }
    const wake = state.wake;
    if (sent !== null) {
      // The writer sent the entry with the wake-up: no GET needed.
      const e = entries.decode(k, sent, gen);
      sent = null;
      if (acceptable(e, Date.now(), minCreatedAt)) {
        return { outcome: "value", entry: e };
      }
    }
    const seq = wake.seq;
    let stored, pttl, owner;
    try {
      [stored, pttl, owner, gen] = await store.readWithLease(k);
    } catch (error) {
      return { outcome: "error", error };
    }
    if (owner !== null) {
      if (holder !== null && owner !== holder && handoffs < MAX_HANDOFFS) {
        handoffs++;
        deadline = performance.now() + options.wait;
      }
      holder = owner;
    }
    const e = entries.decode(k, stored, gen);
    if (acceptable(e, Date.now(), minCreatedAt)) {
      return { outcome: "value", entry: e };
    }
    state.prev = newerValue(state.prev, e);
    const remaining = deadline - performance.now();
    if (remaining <= 0) return { outcome: "timeout" };
    if (pttl === -2) {
      tryLock = true; // free: the holder gave up without a usable value
      continue;
    }
    tryLock = false;
    if (wake.seq !== seq) continue; // woken while reading: read again
    // Past the holder's lease (a holder that died), plus jitter so
    // processes do not retry in step; or until woken.
    const delay = pttl === -1
      ? 1_000
      : pttl + 1 + options.random() * Math.min(20, 1 + pttl / 10);
    await wake.sleep(Math.min(delay, remaining));
  }
}
