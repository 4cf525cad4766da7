/**
 * One fault case: a lock fleet and a `cached` fleet of OS processes
 * (testing/fault_worker.ts) run against a redis-server through the
 * fault proxy (testing/fault_proxy.ts); the fault is injected while traffic
 * flows, then cleared; the workers' records are checked. Used by
 * tests/fault_fleet_test.ts (one case per fault) and scripts/faults.ts (the
 * whole matrix, both runtimes).
 *
 * Setup: the Redis under test persists every write (`--appendonly yes
 * --appendfsync always`), except for the "sigkill-nopersist" case. A second
 * redis-server, reached directly (never faulted), carries the control keys
 * and the protected resource of the lock fleet: a fenced store (a counter
 * whose reads and writes carry the fencing token; a token lower than the
 * highest seen is refused).
 *
 * Timeline (ms): workers start; `go`; WARMUP_MS of traffic; for a lock
 * fleet, ask for one long hold (LONG_MS, by one loop, which ignores its
 * signal, as a stalled holder would) and wait until it has begun, so the
 * fault hits a holder; for an instant fault (drop, reset, half-close,
 * SIGKILL) also wait until an acquire is outstanding at the proxy, holding
 * replies (drop, reset, half-close: the acquire ran, its reply is lost) or
 * requests (SIGKILL: it never reached the server) for those few ms; inject;
 * after the fault's duration (FAULT_MS), clear it; RECOVERY_MS + TAIL_MS of
 * traffic; `stop`; each worker prints its record and exits.
 *
 * The checks, each reported as a failure line:
 *
 * Every fleet
 * - The fault hit traffic in flight: the proxy's counter for it is > 0
 *   (latency: chunks delayed; chunk: chunks split; stall, black-hole, drop,
 *   reset, half-close, SIGKILL: requests interrupted, `inFlightCut`;
 *   SIGSTOP: requests outstanding just before SIGCONT).
 * - No unhandled rejection and no uncaught error in any worker; every call
 *   settled within the fleet's deadline (lock: LOCK_DEADLINE_MS, i.e. the
 *   acquire `wait` + 1.5 s; cached: CACHED_DEADLINE_MS, i.e. 3 × its `wait`
 *   (a waiter restarts its wait at most 3 times) + 1 s); every worker exited
 *   with code 0 soon after `stop`.
 *
 * Lock fleet (LOCK_PROCS processes × LOCK_LOOPS loops on LOCK_NAMES names,
 * ttl LOCK_TTL with autoRenew)
 * - Persisting server: no overlap at all. Each hold is the interval from
 *   `acquire()` resolving to its write's reply, cut short where the holder
 *   learned it lost the lock. A hold the lock still vouched for at its end
 *   (`held`) must not overlap a later hold of the same name by more than
 *   CLOCK_SLACK_MS (processes map performance.now() to the wall clock each
 *   on its own); one the lock had given up must have learned of the loss no
 *   later than the next holder's start + its worker's measured timer lag +
 *   CLOCK_SLACK_MS (the loss is signalled by a timer). Every vouched-for
 *   hold's read and write were accepted, with fences increasing.
 * - Non-persistent server under SIGKILL + restart (locks forgotten):
 *   overlaps may happen; for each, the earlier holder learned of the loss within one renewal
 *   interval (ttl / 3) + the reconnect backoff cap + SCHED_SLACK_MS of the
 *   newer holder's start, the newer holder has the higher fence, and the
 *   earlier holder's write, sent after the newer holder's read, was refused.
 *   At least one such late write must happen (else nothing was tested).
 * - Exact counter: per name, the store's value equals the number of writes
 *   it applied, which is at least the writes reported accepted and at most
 *   those plus the writes whose outcome is unknown.
 * - Contention: holds changed hands between processes (handoffs > 0).
 * - `acquire({ wait })` resolves true or false: it never rejects because a
 *   connection dropped, a command timed out or Redis is LOADING (it retries
 *   within `wait`). Drop, reset, half-close and SIGKILL are injected while
 *   an acquire is outstanding at the proxy. A try that did reject must not
 *   leave its key behind (checked with `owner()` right after).
 * - Stall, black-hole and SIGSTOP last longer than the lease: the long hold
 *   they catch must be told it lost the lock (its signal aborts) within the
 *   lease (ttl) of the fault's start, plus its worker's timer lag.
 * - A holder that ignored its signal and wrote late (the long hold) is
 *   refused by the store once a newer holder has read it; under stall,
 *   black-hole and SIGSTOP at least one such late write must happen.
 * - Recovery: every process completed ≥ LOCK_RECOVERY_OPS accepted fenced
 *   read-modify-write cycles that began within RECOVERY_MS after the fault
 *   cleared.
 *
 * Cached fleet (CACHED_PROCS processes × CACHED_CALLERS callers, one key,
 * ttl CACHE_TTL, computation COMPUTE_MS)
 * - Bounded computations. Outside the fault window (from injection until
 *   FAULT_GRACE_MS after the fault cleared) no two computations overlap in
 *   the fleet, and each healthy stretch of L ms holds at most L / ttl + 2 of
 *   them (a value stays fresh for ttl once written, so computations start
 *   at least ttl apart; +2 for the stretch's two ends). Inside it (Redis
 *   unreachable: each process fails open) at most one computation at a time
 *   per process (singleflight), so at most CACHED_PROCS at once.
 * - No call rejects (`failOpen` is on: a call computes rather than fail).
 * - Recovery: from FAULT_GRACE_MS after the fault cleared, no `error` hook
 *   event in any process, and every process had ≥ CACHED_RECOVERY_OPS
 *   successful calls within RECOVERY_MS after the fault cleared.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setImmediate } from "node:timers";
import { connect, type RedisClient } from "../mod.ts";
import { type FaultProxy, startFaultProxy } from "./fault_proxy.ts";
import { type Proc, runArgs, spawn } from "./proc.ts";
import { type RedisServer, startRedis } from "./redis.ts";
import {
  calibratedWallClock,
  type Config,
  type Hold,
  type Result,
  storeKeys,
} from "./fault_protocol.ts";

/** The fault modes. */
export const FAULTS = [
  "latency",
  "chunk",
  "stall",
  "blackhole",
  "drop",
  "reset",
  "halfclose",
  "sigkill",
  "sigkill-nopersist",
  "sigstop",
] as const;
export type Fault = typeof FAULTS[number];

/** What each fault does, for tables and test names. */
export const FAULT_TEXT: Record<Fault, string> = {
  latency: "proxy latency 40 ms each way for 700 ms",
  chunk: "proxy cuts every write into 1-byte pieces for 700 ms",
  stall: "proxy holds all bytes for 700 ms (> ttl), then flushes them",
  blackhole:
    "proxy discards all bytes for 700 ms (> ttl): half-dead connections",
  drop: "proxy ends every connection (FIN)",
  reset: "proxy resets every connection (RST)",
  halfclose: "proxy ends the server→client direction only",
  sigkill: "redis-server SIGKILLed and restarted (AOF, fsync always)",
  "sigkill-nopersist":
    "redis-server SIGKILLed and restarted without persistence (locks forgotten)",
  sigstop: "redis-server SIGSTOPped for 700 ms (> ttl), then SIGCONT",
};

/** Faults that act at one moment (the others last FAULT_MS). */
const INSTANT = new Set<Fault>([
  "drop",
  "reset",
  "halfclose",
  "sigkill",
  "sigkill-nopersist",
]);

/** Faults that outlast the lease: a holder they catch loses its lock. */
const LEASE_LOSS = new Set<Fault>(["stall", "blackhole", "sigstop"]);

export const WARMUP_MS = 300;
export const FAULT_MS = 700;
export const RECOVERY_MS = 1_500;
export const TAIL_MS = 300;
export const FAULT_GRACE_MS = 1_000;
export const CLOCK_SLACK_MS = 2;
export const SCHED_SLACK_MS = 100;

export const LOCK_PROCS = 3;
export const LOCK_LOOPS = 2;
export const LOCK_NAMES = ["a", "b"];
export const LOCK_TTL = 500;
export const LOCK_WAIT = 400;
export const LONG_MS = 1_200;
export const LOCK_DEADLINE_MS = LOCK_WAIT + 1_500;
export const LOCK_RECOVERY_OPS = 3;

export const CACHED_PROCS = 3;
export const CACHED_CALLERS = 3;
export const CACHE_TTL = 300;
export const CACHE_LOCK_TTL = 500;
export const CACHE_WAIT = 1_000;
export const CACHE_TIMEOUT = 500;
export const COMPUTE_MS = 40;
export const CACHED_DEADLINE_MS = 3 * CACHE_WAIT + 1_000;
export const CACHED_RECOVERY_OPS = 5;

/** The workers' client options: quick timeouts and reconnects. */
export const CLIENT = {
  commandTimeout: 1_000,
  // A half-dead connection is dropped this long after a timeout (when not
  // one byte came back): the lease-scale setting the recovery bound needs.
  healthCheckTimeout: 500,
  connectTimeout: 1_000,
  reconnect: { minDelay: 20, maxDelay: 200 },
};

/** How to start a worker: a runtime's executable and its arguments. */
export type Launcher = (file: string, args: string[]) => [string, string[]];

export interface CaseOptions {
  fault: Fault;
  /** Which fleets to run (default both). */
  fleets?: Array<"lock" | "cached">;
  /** How to start workers (default: the current runtime). */
  launcher?: Launcher;
  /** The runtime's name for the report (default: the current one). */
  runtime?: string;
  /** Write the timeline and every worker's record to this file (JSON). */
  dump?: string;
}

/** The outcome for one fleet. */
export interface FleetReport {
  fault: Fault;
  fleet: "lock" | "cached";
  runtime: string;
  /** Lock: accepted fenced cycles; cached: successful calls. */
  opsOk: number;
  /** Failed calls by kind, over the fleet. */
  errors: Record<string, number>;
  /** A message for each error kind. */
  errorSamples: Record<string, string>;
  /** The proxy's counter for this fault (see the module doc). */
  inFlight: number;
  /** Lock: overlapping holds (allowed or not); cached: overlapping computations outside the fault window. */
  overlaps: number;
  /** Lock: handoffs between processes; cached: computations. */
  handoffs: number;
  maxSettleMs: number;
  recoveryOk: boolean;
  /** Every check that failed, in words; empty when the case passed. */
  failures: string[];
  /** Worker exit codes and stderr tails, for failures. */
  notes: string[];
}

const wall = calibratedWallClock();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const worker = new URL("./fault_worker.ts", import.meta.url).pathname;

interface Started {
  proc: Proc;
  id: string;
}

async function collect(
  w: Started,
  deadline: number,
): Promise<{ result: Result | null; note: string }> {
  const left = Math.max(deadline - Date.now(), 0);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const exited = await Promise.race([
    w.proc.exited,
    new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), left)),
  ]);
  clearTimeout(timer);
  if (exited === "timeout") {
    w.proc.kill("SIGKILL");
    await w.proc.exited;
  }
  const out = await w.proc.stdout();
  const err = await w.proc.stderr();
  let result: Result | null = null;
  try {
    result = JSON.parse(out.trim().split("\n").pop() ?? "");
  } catch {
    // no result line
  }
  const note = exited === 0
    ? ""
    : `${w.id} exited with ${
      exited === "timeout" ? "nothing (killed: did not exit in time)" : exited
    }; stderr: ${err.slice(-600)}`;
  return { result, note };
}

function merge(into: Record<string, number>, from: Record<string, number>) {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

/** Runs one fault case and checks it; never throws for a failed check. */
export async function runFaultCase(opts: CaseOptions): Promise<FleetReport[]> {
  const fleets = opts.fleets ?? ["lock", "cached"];
  const launcher = opts.launcher ?? runArgs;
  const runtime = opts.runtime ??
    ((globalThis as { Deno?: unknown }).Deno ? "deno" : "bun");
  const fault = opts.fault;
  const persist = fault !== "sigkill-nopersist";
  const dir = persist ? await mkdtemp(join(tmpdir(), "respite-faults-")) : null;
  let store: RedisServer | null = null;
  let target: RedisServer | null = null;
  let proxy: FaultProxy | null = null;
  let ctl: RedisClient | null = null;
  const workers: Started[] = [];
  try {
    store = await startRedis();
    target = await startRedis({
      args: dir
        ? ["--dir", dir, "--appendonly", "yes", "--appendfsync", "always"]
        : [],
    });
    proxy = await startFaultProxy({ port: target.port });
    ctl = await connect(store.url);
    const ns = `respite-fault-${fault}:`;
    const base = {
      url: proxy.url,
      storeUrl: store.url,
      ns,
      client: CLIENT,
    };
    const start = (cfg: Config) => {
      const [cmd, args] = launcher(worker, [JSON.stringify(cfg)]);
      workers.push({ proc: spawn(cmd, args), id: cfg.id });
    };
    const tSpawn = wall();
    const lockIds: string[] = [];
    const cachedIds: string[] = [];
    if (fleets.includes("lock")) {
      for (let i = 0; i < LOCK_PROCS; i++) {
        const id = `lock${i}`;
        lockIds.push(id);
        start({
          ...base,
          mode: "lock",
          id,
          settleDeadlineMs: LOCK_DEADLINE_MS,
          names: LOCK_NAMES,
          ttl: LOCK_TTL,
          wait: LOCK_WAIT,
          loops: LOCK_LOOPS,
          longHolder: i === 0,
          longMs: LONG_MS,
        });
      }
    }
    if (fleets.includes("cached")) {
      for (let i = 0; i < CACHED_PROCS; i++) {
        const id = `cached${i}`;
        cachedIds.push(id);
        start({
          ...base,
          mode: "cached",
          id,
          settleDeadlineMs: CACHED_DEADLINE_MS,
          callers: CACHED_CALLERS,
          cacheTtl: CACHE_TTL,
          lockTtl: CACHE_LOCK_TTL,
          cacheWait: CACHE_WAIT,
          cacheTimeout: CACHE_TIMEOUT,
          computeMs: COMPUTE_MS,
          paceMs: 20,
        });
      }
    }
    const setupNotes: string[] = [];
    const readyBy = Date.now() + 60_000;
    while (Number(await ctl.send("GET", `${ns}ready`) ?? 0) < workers.length) {
      if (Date.now() > readyBy) {
        throw new Error("workers did not start in 60 s");
      }
      await sleep(20);
    }
    await ctl.send("SET", `${ns}go`, "1");
    const tGo = wall();
    await sleep(WARMUP_MS);
    if (fleets.includes("lock")) {
      await ctl.send("SET", `${ns}arm`, "1");
      const by = Date.now() + 10_000;
      while (await ctl.send("EXISTS", `${ns}long`) === 0) {
        if (Date.now() > by) {
          setupNotes.push("no long hold began within 10 s");
          break;
        }
        await sleep(5);
      }
      await sleep(30); // the holder is inside its long hold
    }

    // ------------------------------------------------------------ fault
    const killing = fault === "sigkill" || fault === "sigkill-nopersist";
    if (INSTANT.has(fault)) {
      // An instant fault must catch requests out: wait for one, and with a
      // lock fleet for an acquire (a script run on a lock key and its
      // fencing counter), so a try is cut mid-way. To make sure it is still
      // unanswered when the fault strikes, the proxy briefly holds replies
      // (drop, reset, half-close: the acquire has run in Redis and its reply
      // is lost) or requests (SIGKILL: it never reaches the server).
      proxy.stall(killing ? "up" : "down");
      const wanted = fleets.includes("lock")
        ? (a: string[]) =>
          (a[0] === "EVALSHA" || a[0] === "EVAL") && a[2] === "2" &&
          a[4]?.endsWith(":fence")
        : () => true;
      const by = performance.now() + 5_000;
      let found = false;
      while (!(found = proxy.outstandingRequests().some(wanted))) {
        if (performance.now() > by) break;
        await new Promise((r) => setImmediate(r));
      }
      if (!found) {
        setupNotes.push("no acquire was in flight within 5 s of waiting");
      }
      if (!killing) await sleep(2); // let Redis run it
    }
    const before = proxy.stats;
    const tFault = wall();
    let inFlight = 0;
    switch (fault) {
      case "latency":
        proxy.latency(40);
        await sleep(FAULT_MS);
        inFlight = proxy.stats.chunksDelayed - before.chunksDelayed;
        proxy.resume();
        break;
      case "chunk":
        proxy.chunk(1);
        await sleep(FAULT_MS);
        inFlight = proxy.stats.chunksSplit - before.chunksSplit;
        proxy.resume();
        break;
      case "stall":
        proxy.stall();
        await sleep(FAULT_MS);
        proxy.resume();
        break;
      case "blackhole":
        proxy.blackhole();
        await sleep(FAULT_MS);
        proxy.resume();
        break;
      case "drop":
        proxy.drop();
        proxy.resume();
        break;
      case "reset":
        proxy.reset();
        proxy.resume();
        break;
      case "halfclose":
        proxy.halfClose();
        proxy.resume();
        break;
      case "sigkill":
      case "sigkill-nopersist":
        // Killed while the proxy holds the acquire: wait for the exit and
        // for the proxy to see its upstream close before letting the held
        // requests go, so they meet the cut connection (and are counted)
        // rather than racing the close. Then start again on the same port.
        await target.stop();
        await sleep(50);
        proxy.resume();
        await target.start();
        break;
      case "sigstop":
        target.signal("SIGSTOP");
        await sleep(FAULT_MS);
        inFlight = proxy.stats.outstanding;
        target.signal("SIGCONT");
        break;
    }
    const tClear = wall();
    if (
      fault !== "latency" && fault !== "chunk" && fault !== "sigstop"
    ) {
      inFlight = proxy.stats.inFlightCut - before.inFlightCut;
    }
    await sleep(RECOVERY_MS + TAIL_MS);
    await ctl.send("SET", `${ns}stop`, "1");
    const tStop = wall();
    const exitBy = Date.now() +
      Math.max(LOCK_DEADLINE_MS, CACHED_DEADLINE_MS) + 8_000;
    const collected = await Promise.all(workers.map((w) => collect(w, exitBy)));
    const byId = new Map(workers.map((w, i) => [w.id, collected[i]]));
    const reports: FleetReport[] = [];
    const timeline = { tSpawn, tGo, tFault, tClear, tStop, tDone: wall() };
    if (opts.dump) {
      await writeFile(
        opts.dump,
        JSON.stringify({
          fault,
          runtime,
          timeline,
          proxy: proxy.stats,
          workers: [...byId].map(([id, c]) => ({ id, ...c })),
        }),
      );
    }
    if (lockIds.length > 0) {
      reports.push(
        await checkLock(
          lockIds.map((id) => [id, byId.get(id)!] as const),
          { fault, runtime, persist, inFlight, ctl, ns, setupNotes },
          timeline,
        ),
      );
    }
    if (cachedIds.length > 0) {
      reports.push(
        checkCached(
          cachedIds.map((id) => [id, byId.get(id)!] as const),
          { fault, runtime, inFlight, setupNotes },
          timeline,
        ),
      );
    }
    return reports;
  } finally {
    for (const w of workers) {
      w.proc.kill("SIGKILL");
      await w.proc.exited;
    }
    await ctl?.close();
    await proxy?.close();
    await target?.stop();
    await store?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }
}

type Collected = readonly [string, { result: Result | null; note: string }];

interface Timeline {
  tGo: number;
  tFault: number;
  tClear: number;
  tStop: number;
}

/** The checks every fleet shares: results present, exit, rejections, settle. */
function common(
  got: Collected[],
  deadline: number,
  inFlight: number,
  failures: string[],
  notes: string[],
): {
  results: Array<[string, Result]>;
  errors: Record<string, number>;
  samples: Record<string, string>;
  maxSettle: number;
} {
  const results: Array<[string, Result]> = [];
  const errors: Record<string, number> = {};
  const samples: Record<string, string> = {};
  let maxSettle = 0;
  if (!(inFlight > 0)) {
    failures.push(
      `the fault hit no traffic in flight (proxy counter ${inFlight})`,
    );
  }
  for (const [id, { result, note }] of got) {
    if (note) {
      notes.push(note);
      failures.push(`${id}: ${note.split(";")[0]}`);
    }
    if (result === null) {
      failures.push(`${id}: printed no result`);
      continue;
    }
    results.push([id, result]);
    merge(errors, result.errors);
    for (const [k, m] of Object.entries(result.errorSamples ?? {})) {
      samples[k] ??= m;
    }
    for (const u of result.unhandled) {
      failures.push(`${id}: unhandled rejection: ${u}`);
    }
    for (const u of result.uncaught) failures.push(`${id}: uncaught: ${u}`);
    for (const h of result.hung) {
      failures.push(
        `${id}: a ${h.kind} call was still unsettled after ${h.ms} ms (deadline ${deadline} ms)`,
      );
    }
    for (const [kind, ms] of Object.entries(result.maxSettleMs)) {
      maxSettle = Math.max(maxSettle, ms);
      if (ms > deadline) {
        failures.push(
          `${id}: a ${kind} call took ${
            Math.round(ms)
          } ms to settle (deadline ${deadline} ms)`,
        );
      }
    }
    if (result.closeMs === null) {
      notes.push(`${id}: redis.close() did not finish within 2 s`);
    }
  }
  return { results, errors, samples, maxSettle };
}

async function checkLock(
  got: Collected[],
  ctx: {
    fault: Fault;
    runtime: string;
    persist: boolean;
    inFlight: number;
    ctl: RedisClient;
    ns: string;
    setupNotes: string[];
  },
  t: Timeline,
): Promise<FleetReport> {
  const failures: string[] = [...ctx.setupNotes];
  const notes: string[] = [];
  const { results, errors, samples, maxSettle } = common(
    got,
    LOCK_DEADLINE_MS,
    ctx.inFlight,
    failures,
    notes,
  );
  const lagOf = new Map(results.map(([id, r]) => [id, r.maxLagMs]));
  const holds: Array<Hold & { proc: string }> = [];
  for (const [id, r] of results) {
    for (const h of r.holds ?? []) holds.push({ ...h, proc: id });
  }
  const renewal = LOCK_TTL / 3;
  let overlaps = 0;
  let handoffs = 0;
  let exercised = 0;
  const show = (h: Hold) =>
    `${h.by} fence ${h.f} [${(h.s - t.tGo).toFixed(1)}, ${
      (h.e - t.tGo).toFixed(1)
    }]${h.l === null ? "" : ` lost at ${(h.l - t.tGo).toFixed(1)}`}${
      h.v ? " (held at end)" : ""
    }`;
  const violations: string[] = [];
  for (const name of LOCK_NAMES) {
    const of = holds.filter((h) => h.n === name).sort((a, b) => a.s - b.s);
    for (let i = 1; i < of.length; i++) {
      if (of[i].proc !== of[i - 1].proc) handoffs++;
    }
    // Exact counter.
    const [, valueKey, appliedKey] = storeKeys(ctx.ns, name);
    const value = Number(await ctx.ctl.send("GET", valueKey) ?? 0);
    const applied = await ctx.ctl.send<number>("SCARD", appliedKey);
    const accepted = of.filter((h) => h.w === "accepted").length;
    const unknown = of.filter((h) => h.w === "error").length;
    if (value !== applied) {
      failures.push(
        `lock ${name}: the counter is ${value} but the store applied writes of ${applied} tokens (a lost update, or one token used by two holders)`,
      );
    }
    if (applied < accepted || applied > accepted + unknown) {
      failures.push(
        `lock ${name}: the store applied ${applied} writes; workers saw ${accepted} accepted and ${unknown} unknown`,
      );
    }
    // Vouched-for holds: accepted, fences increasing.
    let prevFence = -Infinity;
    let prevStart = -Infinity;
    for (const h of of) {
      if (!h.v) continue;
      if (ctx.persist && (h.r !== "ok" || h.w !== "accepted")) {
        violations.push(
          `a hold the lock vouched for had its read ${h.r} / write ${h.w}: ${
            show(h)
          }`,
        );
      }
      // Starts closer than the processes' clock slack may be in either
      // order; fences must increase with starts farther apart than that.
      if (
        h.f !== null && h.f <= prevFence && ctx.persist &&
        h.s - prevStart > CLOCK_SLACK_MS
      ) {
        violations.push(`fence ${h.f} after ${prevFence}: ${show(h)}`);
      }
      if (h.f !== null && h.f > prevFence) {
        prevFence = h.f;
        prevStart = h.s;
      }
    }
    // Overlaps.
    for (let i = 0; i < of.length; i++) {
      const a = of[i];
      const believedEnd = a.v ? a.e : Math.min(a.e, a.l ?? a.e);
      for (let j = i + 1; j < of.length && of[j].s < a.e; j++) {
        const b = of[j];
        if (b.by === a.by) continue;
        const over = believedEnd - b.s;
        if (a.e <= b.s) continue;
        // A holder that ignored its signal writes late: refused once a
        // newer holder has read.
        if (a.w !== "skipped" && b.r !== "skipped" && a.ws > b.rd) {
          exercised++;
          if (a.w !== "refused") {
            violations.push(
              `the earlier holder's write, sent after the newer holder's read, was ${a.w} (must be refused): ${
                show(a)
              } and ${show(b)}`,
            );
          }
        }
        if (ctx.persist) {
          const slack = a.v
            ? CLOCK_SLACK_MS
            : (lagOf.get(a.proc) ?? 0) + CLOCK_SLACK_MS;
          if (over > 0) overlaps++;
          if (over > slack) {
            violations.push(
              `overlap of ${over.toFixed(1)} ms (allowed ${
                slack.toFixed(1)
              }): ${show(a)} and ${show(b)}`,
            );
          }
          continue;
        }
        // Not persistent: the restart may have forgotten a's lock. An
        // overlap within CLOCK_SLACK_MS is the processes' clocks disagreeing
        // (as in the persistent case), not two holders: a released, then b.
        if (a.v && over <= CLOCK_SLACK_MS) continue;
        if (believedEnd > b.s) overlaps++;
        const learned = a.l === null ? Infinity : a.l - b.s;
        const bound = renewal + CLIENT.reconnect.maxDelay + SCHED_SLACK_MS;
        if (learned > bound) {
          violations.push(
            `the earlier holder learned of the loss ${
              learned === Infinity ? "never" : `${learned.toFixed(0)} ms`
            } after the newer one started (bound ${bound.toFixed(0)} ms): ${
              show(a)
            } and ${show(b)}`,
          );
        }
        if (a.f !== null && b.f !== null && !(b.f > a.f)) {
          violations.push(
            `the newer holder's fence ${b.f} is not above the earlier one's ${a.f}: ${
              show(a)
            } and ${show(b)}`,
          );
        }
      }
    }
  }
  if ((!ctx.persist || LEASE_LOSS.has(ctx.fault)) && exercised === 0) {
    failures.push(
      "no earlier holder wrote after a newer one read: the stale-write path was not exercised",
    );
  }
  failures.push(...violations.slice(0, 10));
  if (violations.length > 10) {
    failures.push(`... and ${violations.length - 10} more violations`);
  }
  if (handoffs === 0) failures.push("no handoff between processes");
  // acquire() with a wait resolves true or false: a dropped connection or a
  // timeout during a try is retried within the wait, not thrown. Only when
  // Redis could not be reached until the wait ran out does it reject (with
  // the last ConnectionError/TimeoutError), and then at the deadline.
  for (const [kind, n] of Object.entries(errors)) {
    if (kind === "acquire:orphaned-key") {
      failures.push(
        `${n} rejected acquire() calls left their key in Redis (an orphaned lock until its ttl)`,
      );
    } else if (
      kind.startsWith("acquire:") && kind !== "acquire:not-acquired" &&
      kind !== "acquire:unreachable-until-deadline"
    ) {
      failures.push(
        `acquire({ wait: ${LOCK_WAIT} }) rejected ${n} times with ${
          kind.slice(8)
        } (it must retry within its wait and resolve true or false)`,
      );
    }
  }
  // A fault longer than the lease: the holder it caught must have been told.
  if (LEASE_LOSS.has(ctx.fault)) {
    const caught = holds.filter((h) =>
      h.long && h.s < t.tFault && h.e > t.tFault
    );
    if (caught.length === 0) {
      failures.push("the fault caught no long hold in progress");
    }
    for (const h of caught) {
      const by = t.tFault + LOCK_TTL + (lagOf.get(h.proc) ?? 0) +
        CLOCK_SLACK_MS;
      if (h.l === null || h.l > by) {
        failures.push(
          `the holder caught by the fault was not told it lost the lock within its ${LOCK_TTL} ms lease (${
            h.l === null
              ? "never"
              : `${(h.l - t.tFault).toFixed(0)} ms after the fault began`
          }): ${show(h)}`,
        );
      }
    }
  }
  // Recovery.
  let recoveryOk = true;
  for (const [id, r] of results) {
    const ok = (r.holds ?? []).filter((h) =>
      h.w === "accepted" && h.s >= t.tClear && h.s <= t.tClear + RECOVERY_MS
    ).length;
    if (ok < LOCK_RECOVERY_OPS) {
      recoveryOk = false;
      failures.push(
        `${id}: ${ok} accepted cycles within ${RECOVERY_MS} ms after the fault cleared (need ${LOCK_RECOVERY_OPS})`,
      );
    }
  }
  if (results.length < got.length) recoveryOk = false;
  return {
    fault: ctx.fault,
    fleet: "lock",
    runtime: ctx.runtime,
    opsOk: holds.filter((h) => h.w === "accepted").length,
    errors,
    errorSamples: samples,
    inFlight: ctx.inFlight,
    overlaps,
    handoffs,
    maxSettleMs: Math.round(maxSettle),
    recoveryOk,
    failures,
    notes,
  };
}

function checkCached(
  got: Collected[],
  ctx: {
    fault: Fault;
    runtime: string;
    inFlight: number;
    setupNotes: string[];
  },
  t: Timeline,
): FleetReport {
  const failures: string[] = [...ctx.setupNotes];
  const notes: string[] = [];
  const { results, errors, samples, maxSettle } = common(
    got,
    CACHED_DEADLINE_MS,
    ctx.inFlight,
    failures,
    notes,
  );
  const windowEnd = t.tClear + FAULT_GRACE_MS;
  const inWindow = (s: number) => s >= t.tFault && s < windowEnd;
  const all: Array<{ s: number; e: number; proc: string }> = [];
  for (const [id, r] of results) {
    for (const [s, e] of r.computations ?? []) all.push({ s, e, proc: id });
  }
  all.sort((a, b) => a.s - b.s);
  let overlaps = 0;
  const violations: string[] = [];
  for (let i = 0; i < all.length; i++) {
    for (let j = i + 1; j < all.length && all[j].s < all[i].e; j++) {
      const a = all[i], b = all[j];
      if (a.proc === b.proc) {
        violations.push(
          `${a.proc} ran two computations at once (singleflight broken) at ${
            (b.s - t.tGo).toFixed(0)
          } ms`,
        );
      } else if (!inWindow(a.s) && !inWindow(b.s)) {
        overlaps++;
        violations.push(
          `${a.proc} and ${b.proc} computed at once outside the fault window, at ${
            (b.s - t.tGo).toFixed(0)
          } ms (a stampede)`,
        );
      }
    }
  }
  const stretches: Array<[string, number, number]> = [
    ["before the fault", t.tGo, t.tFault],
    ["after the fault window", windowEnd, t.tStop],
  ];
  for (const [what, from, to] of stretches) {
    const n = all.filter((c) => c.s >= from && c.s < to).length;
    const bound = Math.floor((to - from) / CACHE_TTL) + 2;
    if (n > bound) {
      violations.push(
        `${n} computations ${what} (${
          Math.round(to - from)
        } ms; bound ${bound})`,
      );
    }
  }
  failures.push(...violations.slice(0, 10));
  // failOpen (the default): a call computes rather than fail.
  for (const [kind, n] of Object.entries(errors)) {
    failures.push(`${n} calls rejected with ${kind.slice(5)} (failOpen is on)`);
  }
  let recoveryOk = true;
  for (const [id, r] of results) {
    const late = (r.cacheErrors ?? []).filter(([at]) => at >= windowEnd);
    if (late.length > 0) {
      recoveryOk = false;
      const phases = [...new Set(late.map(([, p]) => p))].join(", ");
      failures.push(
        `${id}: ${late.length} cache error events (${phases}) from ${FAULT_GRACE_MS} ms after the fault cleared`,
      );
    }
    const ok = (r.okAt ?? []).filter((at) =>
      at >= t.tClear && at <= t.tClear + RECOVERY_MS
    ).length;
    if (ok < CACHED_RECOVERY_OPS) {
      recoveryOk = false;
      failures.push(
        `${id}: ${ok} successful calls within ${RECOVERY_MS} ms after the fault cleared (need ${CACHED_RECOVERY_OPS})`,
      );
    }
  }
  if (results.length < got.length) recoveryOk = false;
  return {
    fault: ctx.fault,
    fleet: "cached",
    runtime: ctx.runtime,
    opsOk: results.reduce((n, [, r]) => n + (r.okAt?.length ?? 0), 0),
    errors,
    errorSamples: samples,
    inFlight: ctx.inFlight,
    overlaps,
    handoffs: all.length,
    maxSettleMs: Math.round(maxSettle),
    recoveryOk,
    failures,
    notes,
  };
}
