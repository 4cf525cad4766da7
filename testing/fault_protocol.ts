/**
 * What the fault harness (fault_run.ts) and its workers (fault_worker.ts)
 * share: the worker's configuration and report, the fenced store's keys, and
 * the cross-process wall clock both sides time holds with.
 *
 * @module
 */

/** The worker's configuration (its one JSON argument). */
export interface Config {
  mode: "lock" | "cached" | "reads";
  url: string;
  storeUrl: string;
  ns: string;
  id: string;
  /** A call that takes longer than this is reported as hung. */
  settleDeadlineMs: number;
  /** Client options for the connection under test. */
  client?: {
    commandTimeout?: number;
    healthCheckTimeout?: number;
    connectTimeout?: number;
    reconnect?: { minDelay?: number; maxDelay?: number };
  };
  // lock
  names?: string[];
  ttl?: number;
  wait?: number;
  loops?: number;
  /** Loop 0 takes the one long hold when `<ns>arm` appears. */
  longHolder?: boolean;
  longMs?: number;
  // cached
  callers?: number;
  cacheTtl?: number;
  lockTtl?: number;
  cacheWait?: number;
  cacheTimeout?: number;
  computeMs?: number;
  paceMs?: number;
  // reads
  port?: number;
  send?: string;
  expect?: number;
}

/** One holding of a lock, as a worker saw it (times: shared wall clock, ms). */
export interface Hold {
  /** Lock name. */
  n: string;
  /** Worker id and loop. */
  by: string;
  /** Fencing token (null: the lock said it was already lost). */
  f: number | null;
  /** acquire() resolved true. */
  s: number;
  /** The write's reply came (or the hold's work ended without one). */
  e: number;
  /** When the holder learned it lost the lock (signal aborted, or release said not held); null if never. */
  l: number | null;
  /** `lock.held` right after the write: the lock still vouched for the hold. */
  v: boolean;
  /** Fenced read: "ok", "refused" or "error". */
  r: string;
  /** When the read's reply came. */
  rd: number;
  /** Fenced write: "accepted", "refused", "error" or "skipped". */
  w: string;
  /** When the write was sent. */
  ws: number;
  /** A long hold (see the module doc). */
  long: boolean;
  /** release(): "ok", "not-held" or an error name. */
  rel: string;
}

/** What a worker prints. */
export interface Result {
  id: string;
  mode: string;
  runtime: string;
  /** Calls made, by kind. */
  ops: Record<string, number>;
  /** Failed calls, by "kind:ErrorName" (and "acquire:not-acquired"). */
  errors: Record<string, number>;
  /** The first message seen for each error kind. */
  errorSamples: Record<string, string>;
  /** Longest time a call took to settle, by kind (ms). */
  maxSettleMs: Record<string, number>;
  /** Calls still unsettled past the deadline. */
  hung: Array<{ kind: string; ms: number }>;
  unhandled: string[];
  uncaught: string[];
  /** Warnings the client and the library logged. */
  warnings: number;
  /** Longest lateness of a 10 ms timer (event-loop lag), ms. */
  maxLagMs: number;
  /** How long redis.close() took (ms), or null if it did not end within 2 s. */
  closeMs: number | null;
  holds?: Hold[];
  /** lock: every acquire() that did not acquire: [start, end, name, loop, outcome]. */
  misses?: Array<[number, number, string, string, string]>;
  /** cached: each computation's [start, end]. */
  computations?: Array<[number, number]>;
  /** cached: when each call succeeded. */
  okAt?: number[];
  /** cached: each `error` hook event: [time, phase]. */
  cacheErrors?: Array<[number, string]>;
  /** reads */
  reads?: number;
  bytes?: number;
  text?: string;
}

/** The fenced store's keys for a lock name: highest token, value, applied tokens. */
export function storeKeys(ns: string, name: string): string[] {
  return [
    `${ns}store:{${name}}:hi`,
    `${ns}store:{${name}}:value`,
    `${ns}store:{${name}}:applied`,
  ];
}

/**
 * A wall clock comparable across processes: performance.now() mapped to the
 * system clock at a tick of Date.now(). `performance.timeOrigin +
 * performance.now()` is not: in one run, a Deno worker's holds appeared
 * 15–25 ms earlier than the fencing order proved they were.
 *
 * A calibration is off when the process is descheduled inside its loop:
 * between the performance.now() read and the Date.now() that sees the tick
 * (too large), or between the previous Date.now() and that performance.now()
 * (too small). The median of 9 is kept: with a median of 3, on a machine
 * running three test suites at once, one worker's holds came out 2 ms or
 * more off, and the fleet checks reported fence-order violations between
 * holds that the fenced store had proved were in order.
 */
export function calibratedWallClock(): () => number {
  const offsets: number[] = [];
  for (let i = 0; i < 9; i++) {
    const d0 = Date.now();
    let d = d0;
    let p = 0;
    while (d === d0) {
      p = performance.now();
      d = Date.now();
    }
    offsets.push(d - p);
  }
  offsets.sort((a, b) => a - b);
  const offset = offsets[4];
  return () => offset + performance.now();
}
