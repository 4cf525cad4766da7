/**
 * The opt-in `releaseOnSignal` of a lock: on SIGINT or SIGTERM, release the
 * lock, then end the process as the signal would have (exit 130 or 143),
 * unless the app listens for that signal itself. Through `process`, which
 * Deno 2, Bun and Node all have; where there is none (Workers, browsers)
 * there are no signals to watch and nothing is done.
 *
 * Every lock held with the option shares one listener per signal (the first
 * holding adds them, the last one to end removes them), so that many locks
 * held at once neither pile up listeners (Node and Bun warn of a leak past
 * ten) nor mistake each other's listener for the app's: on a signal, every
 * such lock is released, and the process ends only once all the releases
 * have settled.
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

/** One holding watched: how to release it, and where a failure goes. */
interface Watch {
  name: string;
  release: () => Promise<void>;
  logger: Logger | null;
}

/** The holdings watched now, in the order they began. */
const watched = new Set<Watch>();
/** The shared listeners, while anything is watched. */
let listeners: Map<Watched, () => void> | null = null;

function install(proc: ProcessLike): void {
  listeners = new Map();
  for (const signal of Object.keys(SIGNALS) as Watched[]) {
    const listener = () => onSignal(proc, signal);
    listeners.set(signal, listener);
    proc.on(signal, listener);
  }
}

function uninstall(proc: ProcessLike): void {
  if (listeners === null) return;
  for (const [signal, listener] of listeners) proc.off(signal, listener);
  listeners = null;
}

function onSignal(proc: ProcessLike, signal: Watched): void {
  const all = [...watched];
  watched.clear();
  uninstall(proc);
  // The app's own listener, if any, decides what the signal does; without
  // one, the process ends as the signal would have ended it — once every
  // lock is released (or its release failed), not at the first.
  const appListens = proc.listenerCount(signal) > 0;
  Promise.all(all.map((w) =>
    w.release().catch((err) =>
      w.logger?.warn(
        `respite: releasing lock ${w.name} on ${signal} failed (${err}); it expires at its TTL`,
      )
    )
  )).finally(() => {
    if (!appListens) proc.exit(SIGNALS[signal]);
  });
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
  const w: Watch = { name, release, logger };
  watched.add(w);
  if (listeners === null) install(proc);
  return () => {
    if (!watched.delete(w)) return;
    if (watched.size === 0) uninstall(proc);
  };
}
