/**
 * Timer and abort helpers shared by the client, locks and caches: one copy of
 * each, in the style of Deno std's `async/`.
 *
 * @module
 */

/**
 * Longest delay a timer can wait: longer ones (and `Infinity`) fire at once in
 * every runtime, so such durations are taken as "practically never".
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** `ms` brought into what `setTimeout` honours: 0 to {@linkcode MAX_TIMER_MS}. */
export function timerMs(ms: number): number {
  return Math.min(Math.max(ms, 0), MAX_TIMER_MS);
}

/** Rejects at once when `signal` aborts; otherwise settles like `promise`. */
export function abortable<T>(
  promise: Promise<T>,
  signal: AbortSignal,
): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, timerMs(ms));
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Resolves after `ms`, or as soon as the `wake` function handed to `register`
 * is called; rejects with the signal's reason when it aborts. `register`
 * keeps `wake` where a message can call it and returns what forgets it
 * again, which runs however the sleep ends.
 *
 * @param ms The longest sleep.
 * @param signal Aborts the sleep.
 * @param register Keeps `wake`; returns its removal.
 * @returns Settles when the sleep ends.
 */
export function wakeableSleep(
  ms: number,
  signal: AbortSignal | undefined,
  register: (wake: () => void) => () => void,
): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise<void>((resolve, reject) => {
    const finish = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      unregister();
    };
    const wake = () => {
      finish();
      resolve();
    };
    const onAbort = () => {
      finish();
      reject(signal!.reason);
    };
    const timer = setTimeout(wake, timerMs(ms));
    const unregister = register(wake);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** A signal that aborts after a delay (or with a parent), and its cleanup. */
export interface Deadline {
  /** Aborts with the deadline's reason, or with the parent's. */
  readonly signal: AbortSignal;
  /** Stops the timer and lets go of the parent; call it in a `finally`. */
  clear(): void;
}

/**
 * A signal that aborts after `ms` with `reason()` (made only if it fires),
 * or earlier when `parent` aborts, with the parent's reason.
 */
export function deadline(
  ms: number,
  reason: () => unknown,
  parent?: AbortSignal,
): Deadline {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(reason()), timerMs(ms));
  let onAbort: (() => void) | undefined;
  if (parent !== undefined) {
    if (parent.aborted) ac.abort(parent.reason);
    else {
      onAbort = () => ac.abort(parent.reason);
      parent.addEventListener("abort", onAbort, { once: true });
    }
  }
  return {
    signal: ac.signal,
    clear() {
      clearTimeout(timer);
      if (onAbort !== undefined) parent!.removeEventListener("abort", onAbort);
    },
  };
}

/**
 * Exponential backoff with jitter: `base · 2^attempt`, at most `max`, then a
 * uniform pick in its upper half (so retries of many processes spread out but
 * none comes early).
 */
export function backoff(attempt: number, base: number, max: number): number {
  const d = Math.min(max, base * 2 ** Math.min(Math.max(attempt, 0), 30));
  return d / 2 + Math.random() * d / 2;
}

/**
 * Lets the process exit while `timer` is pending (Deno's numeric ids and
 * Node/Bun timer objects alike).
 */
export function unrefTimer(
  timer: ReturnType<typeof setTimeout> | undefined,
): void {
  if (timer === undefined) return;
  if (typeof timer === "number") {
    (globalThis as { Deno?: { unrefTimer?(id: number): void } }).Deno
      ?.unrefTimer?.(timer);
  } else {
    (timer as { unref?(): void }).unref?.();
  }
}
