/**
 * The opt-in `releaseOnSignal` of a lock: on SIGINT or SIGTERM, release the
 * lock, then end the process as the signal would have (exit 130 or 143),
 * unless the app listens for that signal itself. Through `process`, which
 * Deno 2, Bun and Node all have; where there is none (Workers, browsers)
 * there are no signals to watch and nothing is done.
 *
 * @module
 */

import type { Logger } from "../validate.ts";

/** The signals watched, and the exit code each would have given. */
const SIGNALS = { SIGINT: 130, SIGTERM: 143 } as const;
type Watched = keyof typeof SIGNALS;

interface ProcessLike {
  on(signal: Watched, listener: () => void): unknown;
  off(signal: Watched, listener: () => void): unknown;
  listenerCount(signal: Watched): number;
  exit(code: number): never;
}

function processOf(): ProcessLike | undefined {
  const p = (globalThis as { process?: Partial<ProcessLike> }).process;
  return typeof p?.on === "function" && typeof p.off === "function" &&
      typeof p.listenerCount === "function" && typeof p.exit === "function"
    ? p as ProcessLike
    : undefined;
}

/**
 * Watches SIGINT and SIGTERM while a lock is held.
 *
 * @param name The lock's name, for the warning.
 * @param release Releases the lock.
 * @param logger Where a failed release is reported.
 * @returns Stops watching (call it when the holding ends).
 */
export function releaseOnSignals(
  name: string,
  release: () => Promise<void>,
  logger: Logger | null,
): () => void {
  const proc = processOf();
  if (proc === undefined) return () => {};
  const listeners = new Map<Watched, () => void>();
  const stop = () => {
    for (const [signal, listener] of listeners) proc.off(signal, listener);
    listeners.clear();
  };
  for (const signal of Object.keys(SIGNALS) as Watched[]) {
    const listener = () => {
      stop();
      // The app's own listener, if any, decides what the signal does; without
      // one, the process ends as the signal would have ended it.
      const appListens = proc.listenerCount(signal) > 0;
      release().catch((err) =>
        logger?.warn(
          `respite: releasing lock ${name} on ${signal} failed (${err}); it expires at its TTL`,
        )
      ).finally(() => {
        if (!appListens) proc.exit(SIGNALS[signal]);
      });
    };
    listeners.set(signal, listener);
    proc.on(signal, listener);
  }
  return stop;
}
