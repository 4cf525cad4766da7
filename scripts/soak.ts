/**
 * Soak: several worker processes of mixed `withLock` and `cached` load
 * against one throwaway redis-server, through a fault proxy, with a server
 * SIGKILL + restart and a proxy stall in the middle; then the invariants.
 *
 * Usage:
 *   deno task soak [--seconds 60] [--procs 8] [--runtime deno|bun]
 *                  [--persistence aof|none] [--stall-ms 3000] [--no-faults]
 *                  [--v8-flags FLAGS] [--json FILE]
 *
 * What it does:
 * - starts redis-server on a free loopback port (testing/redis.ts), by default
 *   with `--appendonly yes --appendfsync always` (`--persistence aof`), so a
 *   SIGKILL + restart keeps every acknowledged write, locks included;
 * - starts a fault proxy (testing/fault_proxy.ts) in front of it;
 * - starts `--procs` workers (testing/soak_worker.ts) under Deno
 *   (`--v8-flags=--expose-gc`) or Bun, which connect through the proxy with a
 *   `commandTimeout` and run, from a common start for `--seconds`: lanes of
 *   `withLock` on a few lock names (a non-atomic read-modify-write counter,
 *   fenced writes, recorded holds) and lanes of `cached` calls on a set of
 *   keys with short ttls;
 * - at 35% of the run: SIGKILL of the server and a restart on the same port;
 *   at 65%: a proxy stall (all bytes held, both ways) of `--stall-ms`, then
 *   resume;
 * - collects one JSON report per worker and checks: every worker reported
 *   and exited 0; no unhandled rejection or uncaught error; every call
 *   settled, within a stated deadline; no wrong value; no overlapping holds
 *   of a lock (with `--persistence none`, overlaps just after the restart —
 *   which forgets the locks — whose earlier holder learned it lost the lock
 *   are counted apart as expected); fences increasing (aof); the counter in
 *   Redis between the confirmed writes and confirmed + unknown ones (aof);
 *   both faults hit requests in flight (proxy counters); every worker
 *   succeeded again at both kinds of call within a stated time after each
 *   fault cleared;
 * - prints a table and exits 1 when a check failed.
 *
 * Loopback only; every process it started is stopped by its pid, also on
 * failure. Runs under Deno (the task) and Bun (the smoke test).
 */

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type RedisClient } from "../mod.ts";
import { type RedisServer, scanKeys, startRedis } from "../testing/redis.ts";
import { type Proc, runtimeExecutable, spawn } from "../testing/proc.ts";
import {
  type FaultProxyStats,
  startFaultProxy,
} from "../testing/fault_proxy.ts";
import type { WorkerConfig, WorkerReport } from "../testing/soak_worker.ts";

/** Options of one soak run (every field has a default). */
export interface SoakOptions {
  /** Length of the load, s (default 60). */
  seconds?: number;
  /** Worker processes (default 8). */
  procs?: number;
  /** Runtime of the workers (default: the current one). */
  runtime?: "deno" | "bun";
  /** `aof`: appendonly + fsync always (default); `none`: no persistence. */
  persistence?: "aof" | "none";
  /** Inject the restart and the stall (default true; false: a baseline without faults). */
  faults?: boolean;
  /** When the server is killed and restarted, as a fraction of the run (default 0.35). */
  restartAt?: number;
  /** When the proxy stalls, as a fraction of the run (default 0.65). */
  stallAt?: number;
  /** How long the stall lasts, ms (default 3_000). */
  stallMs?: number;
  /** Lock names (default 3) and cache keys (default 16). */
  locks?: number;
  keys?: number;
  /** Concurrent loops per worker (default 2 and 2). */
  lockLanes?: number;
  cacheLanes?: number;
  /** The workers' `commandTimeout`, ms (default 1_000). */
  commandTimeout?: number;
  /** Lock lease (default 8_000; above the stall, so a stall alone loses no lock) and wait (default 5_000), ms. */
  lockTtl?: number;
  lockWait?: number;
  /** Cache ttl (default 300), staleWhileRevalidate (default 300) and the computing lock's lease (default 2_000), ms. */
  cacheTtl?: number;
  staleWhileRevalidate?: number;
  cacheLockTtl?: number;
  /** Longest pause between two calls of a lane, ms (default 4). */
  thinkMs?: number;
  /** Every call must settle within this, ms (default 30_000). */
  settleDeadlineMs?: number;
  /**
   * Every worker must succeed again at both kinds of call within this after
   * each fault cleared, ms (default 10_000: the lock ttl, for which a release
   * cut by the fault leaves the lock taken, plus 2 s).
   */
  recoveryMs?: number;
  /** Sabotage: the workers do their read-modify-write without the lock, so the overlap and counter checks must fail (default false). */
  bypassLock?: boolean;
  /** More V8 flags for Deno workers (e.g. `--max-semi-space-size=1`; default none). */
  v8Flags?: string[];
  /** Progress lines go here (default: stderr). */
  log?: (line: string) => void;
}

/** A worker's outcome as the orchestrator saw it. */
export interface WorkerOutcome {
  id: string;
  pid: number;
  exit: number | string | "killed";
  report: WorkerReport | null;
  /** Acquisitions taking over from another process. */
  handoffs: number;
  /** Time from each fault clearing to its first successful lock / cache call, ms (null: none). */
  recovery: {
    restart: { lock: number | null; cache: number | null };
    stall: { lock: number | null; cache: number | null };
  };
  stderrTail: string;
}

/** An overlap of two holds of one lock. */
export interface Overlap {
  lock: number;
  earlier: {
    id: string;
    start: number;
    end: number;
    fence: number;
    flags: number;
  };
  later: {
    id: string;
    start: number;
    end: number;
    fence: number;
    flags: number;
  };
  overlapMs: number;
  expected: boolean;
}

/** Everything one run measured. */
export interface SoakResult {
  options: Required<Omit<SoakOptions, "log">>;
  /** What the server reported (CONFIG GET) at the start. */
  persistence: { appendonly: string; appendfsync: string };
  /** Wall-clock ms. */
  timeline: {
    start: number;
    end: number;
    killAt: number;
    upAt: number;
    stallAt: number;
    resumeAt: number;
  };
  proxy: {
    restart: number;
    stall: number;
    final: FaultProxyStats;
  };
  workers: WorkerOutcome[];
  holds: number;
  overlaps: Overlap[];
  fenceRegressions: number;
  counters: Array<
    {
      lock: number;
      redis: number | null;
      confirmed: number;
      refused: number;
      unknown: number;
    }
  >;
  /** Lock keys left after every worker exited, with their pttl. */
  leftoverLocks: Array<{ key: string; pttl: number }>;
  /** connected_clients after the workers exited (the orchestrator's own included). */
  clientsAfter: number;
  checks: Array<{ ok: boolean; what: string }>;
  failures: string[];
  wallMs: number;
}

type G = {
  Deno?: {
    args: string[];
    exit(code: number): never;
    addSignalListener(s: string, f: () => void): void;
    removeSignalListener(s: string, f: () => void): void;
  };
  Bun?: unknown;
  process?: { env: Record<string, string | undefined>; argv: string[] };
};
const g = globalThis as unknown as G;
const currentRuntime = (): "deno" | "bun" => g.Deno ? "deno" : "bun";
const env = (
  k: string,
): string | undefined => (g.Deno
  ? (globalThis as unknown as {
    Deno: { env: { get(k: string): string | undefined } };
  }).Deno.env.get(k)
  : g.process?.env[k]);

const WORKER = new URL("../testing/soak_worker.ts", import.meta.url)
  .pathname;
const wall = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) =>
  new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));
const BUCKET_MS = 100;

/** What a run has started, for the SIGINT/SIGTERM handler of the task. */
const live = { procs: new Set<Proc>(), servers: new Set<RedisServer>() };

function defaults(o: SoakOptions): Required<Omit<SoakOptions, "log">> {
  return {
    seconds: o.seconds ?? 60,
    procs: o.procs ?? 8,
    runtime: o.runtime ?? currentRuntime(),
    persistence: o.persistence ?? "aof",
    faults: o.faults ?? true,
    restartAt: o.restartAt ?? 0.35,
    stallAt: o.stallAt ?? 0.65,
    stallMs: o.stallMs ?? 3_000,
    locks: o.locks ?? 3,
    keys: o.keys ?? 16,
    lockLanes: o.lockLanes ?? 2,
    cacheLanes: o.cacheLanes ?? 2,
    commandTimeout: o.commandTimeout ?? 1_000,
    lockTtl: o.lockTtl ?? 8_000,
    lockWait: o.lockWait ?? 5_000,
    cacheTtl: o.cacheTtl ?? 300,
    staleWhileRevalidate: o.staleWhileRevalidate ?? 300,
    cacheLockTtl: o.cacheLockTtl ?? 2_000,
    thinkMs: o.thinkMs ?? 4,
    settleDeadlineMs: o.settleDeadlineMs ?? 30_000,
    recoveryMs: o.recoveryMs ?? 10_000,
    v8Flags: o.v8Flags ?? [],
    bypassLock: o.bypassLock ?? false,
  };
}

/** The command that runs the worker under `runtime`. */
function workerCommand(
  runtime: "deno" | "bun",
  config: WorkerConfig,
  v8Flags: string[],
): [string, string[]] {
  const json = JSON.stringify(config);
  const exe = runtime === currentRuntime()
    ? runtimeExecutable()
    : env(runtime === "deno" ? "RESPITE_DENO" : "RESPITE_BUN") ?? runtime;
  if (runtime === "deno") {
    return [exe, [
      "run",
      "-A",
      `--v8-flags=${["--expose-gc", ...v8Flags].join(",")}`,
      WORKER,
      json,
    ]];
  }
  return [exe, ["run", WORKER, json]];
}

async function exitOrKill(
  proc: Proc,
  deadline: number,
): Promise<number | string | "killed"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const r = await Promise.race([
    proc.exited,
    new Promise<"late">((res) =>
      timer = setTimeout(() => res("late"), Math.max(0, deadline - wall()))
    ),
  ]);
  clearTimeout(timer);
  if (r !== "late") return r;
  proc.kill("SIGKILL");
  await proc.exited;
  return "killed";
}

/** Runs one soak and checks its invariants (see the module doc). */
export async function runSoak(options: SoakOptions = {}): Promise<SoakResult> {
  const o = defaults(options);
  const log = options.log ?? ((s: string) => console.error(s));
  const t00 = performance.now();
  const ns = `soak-${Date.now()}:`;
  const T = o.seconds * 1000;
  const procs: Proc[] = [];
  let dir: string | null = null;
  let server: RedisServer | null = null;
  let proxy: Awaited<ReturnType<typeof startFaultProxy>> | null = null;
  let direct: RedisClient | null = null;
  try {
    const args: string[] = [];
    if (o.persistence === "aof") {
      dir = await mkdtemp(join(tmpdir(), "respite-soak-"));
      args.push("--appendonly", "yes", "--appendfsync", "always", "--dir", dir);
    }
    server = await startRedis({ args });
    live.servers.add(server);
    proxy = await startFaultProxy({ port: server.port });
    direct = await connect({ url: server.url, logger: null });
    const [, appendonly] = await direct.send<string[]>(
      "CONFIG",
      "GET",
      "appendonly",
    );
    const [, appendfsync] = await direct.send<string[]>(
      "CONFIG",
      "GET",
      "appendfsync",
    );
    log(
      `redis-server pid ${server.pid} port ${server.port} (appendonly ${appendonly}, appendfsync ${appendfsync}); proxy port ${proxy.port}; ${o.procs} ${o.runtime} workers`,
    );

    const ids = Array.from({ length: o.procs }, (_, i) => `w${i}`);
    for (const id of ids) {
      const config: WorkerConfig = {
        id,
        url: proxy.url,
        ns,
        locks: o.locks,
        keys: o.keys,
        lockLanes: o.lockLanes,
        cacheLanes: o.cacheLanes,
        commandTimeout: o.commandTimeout,
        lockTtl: o.lockTtl,
        lockWait: o.lockWait,
        cacheTtl: o.cacheTtl,
        staleWhileRevalidate: o.staleWhileRevalidate,
        cacheLockTtl: o.cacheLockTtl,
        thinkMs: o.thinkMs,
        settleMs: o.settleDeadlineMs,
        bucketMs: BUCKET_MS,
        bypassLock: o.bypassLock,
      };
      const [cmd, argv] = workerCommand(o.runtime, config, o.v8Flags);
      const p = spawn(cmd, argv);
      procs.push(p);
      live.procs.add(p);
    }
    log(`workers: pids ${procs.map((p) => p.pid).join(" ")}`);

    // Everyone connected and warmed up, then one common start.
    const exitedEarly = procs.map(() => false);
    procs.forEach((p, i) => p.exited.then(() => exitedEarly[i] = true));
    const readyBy = wall() + 60_000;
    while (Number(await direct.send("GET", `${ns}ready`) ?? 0) < o.procs) {
      const dead = exitedEarly.findIndex((x) => x);
      if (dead >= 0) {
        throw new Error(
          `worker ${ids[dead]} exited before the start: ${
            (await procs[dead].stderr()).slice(-2000)
          }`,
        );
      }
      if (wall() > readyBy) throw new Error("workers not ready within 60 s");
      await sleep(50);
    }
    const start = Math.ceil(wall() + 300);
    const end = start + T;
    await direct.send("SET", `${ns}go`, JSON.stringify({ start, end }));
    log(`load from ${new Date(start).toISOString()} for ${o.seconds} s`);

    // The faults.
    let killAt = NaN, upAt = NaN, stallAt = NaN, resumeAt = NaN;
    let restartCut = 0, stallCut = 0;
    if (o.faults) {
      await sleep(start + o.restartAt * T - wall());
      const beforeRestart = proxy.stats.inFlightCut;
      killAt = wall();
      await server.restart();
      upAt = wall();
      log(
        `t+${
          ((killAt - start) / 1000).toFixed(1)
        } s: redis-server SIGKILLed and restarted on port ${server.port} (pid ${server.pid}), answering after ${
          Math.round(upAt - killAt)
        } ms`,
      );
      await sleep(start + o.stallAt * T - wall());
      // Requests the restart cut are counted as the proxy sees the server go.
      restartCut = proxy.stats.inFlightCut - beforeRestart;
      const beforeStall = proxy.stats.inFlightCut;
      stallAt = wall();
      proxy.stall();
      await sleep(o.stallMs);
      proxy.resume();
      resumeAt = wall();
      stallCut = proxy.stats.inFlightCut - beforeStall;
      log(
        `t+${((stallAt - start) / 1000).toFixed(1)} s: proxy stalled for ${
          Math.round(resumeAt - stallAt)
        } ms, then resumed`,
      );
    }

    // Reports.
    const deadline = end + o.settleDeadlineMs + 30_000;
    const exits = await Promise.all(procs.map((p) => exitOrKill(p, deadline)));
    const workers: WorkerOutcome[] = [];
    for (let i = 0; i < procs.length; i++) {
      const out = await procs[i].stdout();
      const err = await procs[i].stderr();
      let report: WorkerReport | null = null;
      for (const line of out.split("\n").reverse()) {
        if (!line.startsWith("{")) continue;
        try {
          report = JSON.parse(line);
          break;
        } catch {
          // not the report
        }
      }
      workers.push({
        id: ids[i],
        pid: procs[i].pid,
        exit: exits[i],
        report,
        handoffs: 0,
        recovery: {
          restart: { lock: null, cache: null },
          stall: { lock: null, cache: null },
        },
        stderrTail: err.slice(-2000),
      });
    }
    const final = proxy.stats;

    // Holds: overlaps, fences, handoffs.
    type Hold = {
      w: number;
      start: number;
      end: number;
      fence: number;
      lock: number;
      flags: number;
    };
    const byLock: Hold[][] = Array.from({ length: o.locks }, () => []);
    workers.forEach((w, wi) => {
      for (const [s, e, f, li, flags] of w.report?.intervals ?? []) {
        byLock[li].push({ w: wi, start: s, end: e, fence: f, lock: li, flags });
      }
    });
    const overlaps: Overlap[] = [];
    let fenceRegressions = 0;
    let holdCount = 0;
    const show = (h: Hold) => ({
      id: ids[h.w],
      start: h.start,
      end: h.end,
      fence: h.fence,
      flags: h.flags,
    });
    for (const list of byLock) {
      list.sort((a, b) => a.start - b.start || a.end - b.end);
      holdCount += list.length;
      let latest: Hold | null = null; // the hold that ends last so far
      let prev: Hold | null = null;
      for (const h of list) {
        if (latest !== null && h.start < latest.end) {
          // Expected only without persistence: the earlier hold began before
          // the restarted server answered, the later one after the kill, and
          // the earlier holder learned that it lost the lock.
          const expected = o.persistence === "none" &&
            latest.start < upAt && h.start >= killAt && latest.flags !== 0;
          overlaps.push({
            lock: h.lock,
            earlier: show(latest),
            later: show(h),
            overlapMs: Math.min(latest.end, h.end) - h.start,
            expected,
          });
        }
        if (prev !== null) {
          if (h.fence <= prev.fence) fenceRegressions++;
          if (prev.w !== h.w) workers[h.w].handoffs++;
        }
        prev = h;
        if (latest === null || h.end > latest.end) latest = h;
      }
    }

    // Recovery: the first successful call of each kind after each fault.
    for (const w of workers) {
      const tl = w.report?.timeline ?? [];
      const first = (from: number, col: number): number | null => {
        for (
          let b = Math.floor((from - start) / BUCKET_MS);
          b < tl.length;
          b++
        ) {
          if (b >= 0 && tl[b][col] > 0) {
            return Math.max(0, start + (b + 1) * BUCKET_MS - from);
          }
        }
        return null;
      };
      w.recovery = {
        restart: { lock: first(upAt, 0), cache: first(upAt, 1) },
        stall: { lock: first(resumeAt, 0), cache: first(resumeAt, 1) },
      };
    }

    // What Redis holds now.
    const counters = [];
    for (let li = 0; li < o.locks; li++) {
      const v = await direct.send<string | null>(
        "HGET",
        `${ns}store:{soak${li}}`,
        "counter",
      );
      const sum = (k: "writesConfirmed" | "writesRefused" | "writesUnknown") =>
        workers.reduce((a, w) => a + (w.report?.[k][li] ?? 0), 0);
      counters.push({
        lock: li,
        redis: v === null ? null : Number(v),
        confirmed: sum("writesConfirmed"),
        refused: sum("writesRefused"),
        unknown: sum("writesUnknown"),
      });
    }
    const leftoverLocks = [];
    for (const key of await scanKeys(direct, `${ns}lock:*`)) {
      if (key.endsWith(":fence")) continue;
      leftoverLocks.push({
        key,
        pttl: await direct.send<number>("PTTL", key),
      });
    }
    const clientsInfo = await direct.send<string>("INFO", "clients");
    const clientsAfter = Number(
      /connected_clients:(\d+)/.exec(clientsInfo)?.[1],
    );

    // Checks.
    const checks: Array<{ ok: boolean; what: string }> = [];
    const check = (ok: boolean, what: string) => checks.push({ ok, what });
    const reps = workers.map((w) => w.report);
    check(
      workers.every((w) => w.exit === 0 && w.report !== null),
      `every worker reported and exited 0 (exits: ${
        workers.map((w) => w.exit).join(" ")
      })`,
    );
    const sumOf = (f: (r: WorkerReport) => number) =>
      reps.reduce((a, r) => a + (r ? f(r) : 0), 0);
    check(
      sumOf((r) => r.unhandledRejections + r.uncaughtErrors) === 0,
      `no unhandled rejection or uncaught error (${
        sumOf((r) => r.unhandledRejections)
      } + ${sumOf((r) => r.uncaughtErrors)})`,
    );
    check(
      sumOf((r) => r.unsettled) === 0,
      `every call settled (${sumOf((r) => r.unsettled)} still pending)`,
    );
    const maxSettle = Math.max(0, ...reps.map((r) => r?.maxSettleMs ?? 0));
    check(
      maxSettle <= o.settleDeadlineMs,
      `every call settled within ${o.settleDeadlineMs} ms (longest ${
        Math.round(maxSettle)
      } ms)`,
    );
    check(
      sumOf((r) => r.wrongValues) === 0,
      `no wrong value (${sumOf((r) => r.wrongValues)})`,
    );
    check(
      sumOf((r) => r.lockOk) > 0 && sumOf((r) => r.cacheOk) > 0,
      "both kinds of call succeeded",
    );
    const unexplained = overlaps.filter((x) => !x.expected).length;
    check(
      unexplained === 0,
      `no unexplained overlapping holds (${unexplained} unexplained, ${
        overlaps.length - unexplained
      } expected after the restart, of ${holdCount} holds)`,
    );
    if (o.persistence === "aof") {
      check(
        fenceRegressions === 0,
        `fences increase with every hold (${fenceRegressions} did not)`,
      );
      for (const c of counters) {
        const v = c.redis ?? 0;
        check(
          c.confirmed <= v && v <= c.confirmed + c.unknown,
          `lock ${c.lock}: counter in Redis ${v} within confirmed writes ${c.confirmed} .. + unknown ${c.unknown}`,
        );
      }
    }
    if (o.faults) {
      check(
        restartCut > 0,
        `the restart hit requests in flight (${restartCut})`,
      );
      check(stallCut > 0, `the stall hit requests in flight (${stallCut})`);
    }
    const recovered = (x: number | null) => x !== null && x <= o.recoveryMs;
    const notRecovered = workers.filter((w) =>
      !recovered(w.recovery.restart.lock) ||
      !recovered(w.recovery.restart.cache) ||
      !recovered(w.recovery.stall.lock) || !recovered(w.recovery.stall.cache)
    );
    if (o.faults) {
      check(
        notRecovered.length === 0,
        `every worker succeeded at both kinds of call within ${o.recoveryMs} ms after each fault cleared (not: ${
          notRecovered.map((w) => w.id).join(" ") || "none"
        })`,
      );
    }

    const failures = checks.filter((c) => !c.ok).map((c) => c.what);
    return {
      options: o,
      persistence: { appendonly, appendfsync },
      timeline: { start, end, killAt, upAt, stallAt, resumeAt },
      proxy: { restart: restartCut, stall: stallCut, final },
      workers,
      holds: holdCount,
      overlaps,
      fenceRegressions,
      counters,
      leftoverLocks,
      clientsAfter,
      checks,
      failures,
      wallMs: performance.now() - t00,
    };
  } finally {
    for (const p of procs) {
      p.kill("SIGKILL"); // by pid; a no-op for those that exited
      await p.exited;
      live.procs.delete(p);
    }
    await direct?.close({ timeout: 1_000 }).catch(() => {});
    await proxy?.close();
    await server?.stop();
    if (server) live.servers.delete(server);
    if (dir !== null) await rm(dir, { recursive: true, force: true });
  }
}

const mb = (b: number) => (b / 1048576).toFixed(1);
const ms = (x: number | null | undefined) =>
  x === null || x === undefined || Number.isNaN(x)
    ? "-"
    : x < 10
    ? x.toFixed(2)
    : x.toFixed(0);

function table(rows: string[][]): string {
  const w = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const line = (r: string[]) =>
    "| " + r.map((cell, c) => cell.padEnd(w[c])).join(" | ") + " |";
  return [
    line(rows[0]),
    "|" + w.map((n) => "-".repeat(n + 2)).join("|") + "|",
    ...rows.slice(1).map(line),
  ].join("\n");
}

/** The result as text: tables, faults, checks. */
export function formatSoak(r: SoakResult): string {
  const o = r.options;
  const out: string[] = [];
  const rel = (t: number) =>
    `t+${((t - r.timeline.start) / 1000).toFixed(1)} s`;
  out.push(
    `soak: ${o.procs} ${o.runtime} workers × ${o.lockLanes} withLock + ${o.cacheLanes} cached lanes, ${o.seconds} s, ${o.locks} locks, ${o.keys} keys; commandTimeout ${o.commandTimeout} ms, lock ttl ${o.lockTtl} ms wait ${o.lockWait} ms, cache ttl ${o.cacheTtl} ms swr ${o.staleWhileRevalidate} ms`,
  );
  if (o.bypassLock) {
    out.push(
      "SABOTAGE: the workers ran their read-modify-write without the lock",
    );
  }
  out.push(
    `server persistence: ${
      o.persistence === "aof"
        ? "appendonly yes, appendfsync always (a restart keeps the locks)"
        : "none (a restart forgets the locks)"
    } — CONFIG GET said appendonly ${r.persistence.appendonly}, appendfsync ${r.persistence.appendfsync}`,
  );
  if (!o.faults) out.push("faults: none (baseline run)");
  else {out.push(
      `faults: ${rel(r.timeline.killAt)} SIGKILL + restart (answering after ${
        Math.round(r.timeline.upAt - r.timeline.killAt)
      } ms; ${r.proxy.restart} requests in flight cut); ${
        rel(r.timeline.stallAt)
      } proxy stall ${
        Math.round(r.timeline.resumeAt - r.timeline.stallAt)
      } ms (${r.proxy.stall} requests held)`,
    );}
  out.push("");
  const head = [
    "proc",
    "pid",
    "lock ok",
    "cache ok",
    "handoffs",
    "errors",
    "lock p50/p99 ms",
    "cache p50/p99 ms",
    "max settle ms",
    "RSS MB start→end",
    "heap MB start→end",
    "heap total MB",
    "recovery ms (restart / stall)",
  ];
  const rows = [head];
  for (const w of r.workers) {
    const p = w.report;
    if (p === null) {
      rows.push([
        w.id,
        String(w.pid),
        ...Array(head.length - 3).fill("-"),
        `no report (exit ${w.exit})`,
      ]);
      continue;
    }
    const errs = Object.values(p.errors).reduce((a, e) => a + e.count, 0);
    const rec = (x: { lock: number | null; cache: number | null }) =>
      `${x.lock === null ? "none" : Math.round(x.lock)}/${
        x.cache === null ? "none" : Math.round(x.cache)
      }`;
    rows.push([
      w.id,
      String(w.pid),
      String(p.lockOk),
      String(p.cacheOk),
      String(w.handoffs),
      String(errs),
      `${ms(p.lockLatency.p50)} / ${ms(p.lockLatency.p99)}`,
      `${ms(p.cacheLatency.p50)} / ${ms(p.cacheLatency.p99)}`,
      ms(p.maxSettleMs),
      `${mb(p.memStart.rss)} → ${mb(p.memEnd.rss)}`,
      `${mb(p.memStart.heapUsed)} → ${mb(p.memEnd.heapUsed)}`,
      `${mb(p.memStart.heapTotal)} → ${mb(p.memEnd.heapTotal)}`,
      o.faults ? `${rec(w.recovery.restart)} ; ${rec(w.recovery.stall)}` : "-",
    ]);
  }
  const reps = r.workers.map((w) => w.report).filter((x) => x !== null);
  const sum = (f: (p: WorkerReport) => number) =>
    reps.reduce((a, p) => a + f(p), 0);
  rows.push([
    "total",
    "",
    String(sum((p) => p.lockOk)),
    String(sum((p) => p.cacheOk)),
    String(r.workers.reduce((a, w) => a + w.handoffs, 0)),
    String(
      sum((p) => Object.values(p.errors).reduce((a, e) => a + e.count, 0)),
    ),
    "",
    "",
    ms(Math.max(0, ...reps.map((p) => p.maxSettleMs))),
    `${mb(sum((p) => p.memStart.rss))} → ${mb(sum((p) => p.memEnd.rss))}`,
    `${mb(sum((p) => p.memStart.heapUsed))} → ${
      mb(sum((p) => p.memEnd.heapUsed))
    }`,
    `${mb(sum((p) => p.memStart.heapTotal))} → ${
      mb(sum((p) => p.memEnd.heapTotal))
    }`,
    "",
  ]);
  out.push(table(rows));
  out.push(
    "(memory after a forced GC, before the load and after it; heap = used, heap total = reserved by the JS engine; latencies of successful calls; a withLock call includes its wait; recovery: first success of withLock/cached after the server answered again / after the stall ended, at 100 ms resolution)",
  );

  // Errors by kind.
  const kinds = new Map<string, string>();
  for (const p of reps) {
    for (const [k, e] of Object.entries(p.errors)) {
      if (!kinds.has(k)) kinds.set(k, e.sample);
    }
  }
  out.push("");
  if (kinds.size === 0) out.push("errors: none");
  else {
    const erows = [[
      "error (call, name[:code][:reason])",
      "total",
      ...r.workers.map((w) => w.id),
      "first message",
    ]];
    for (const [k, s] of [...kinds].sort()) {
      const per = r.workers.map((w) => w.report?.errors[k]?.count ?? 0);
      erows.push([
        k,
        String(per.reduce((a, b) => a + b, 0)),
        ...per.map(String),
        s.length > 100 ? s.slice(0, 100) + "…" : s,
      ]);
    }
    out.push(table(erows));
  }
  const merge = (f: (p: WorkerReport) => Record<string, number>) => {
    const m: Record<string, number> = {};
    for (const p of reps) {
      for (const [k, v] of Object.entries(f(p))) m[k] = (m[k] ?? 0) + v;
    }
    return Object.entries(m).sort().map(([k, v]) => `${k} ${v}`).join(", ") ||
      "none";
  };
  out.push("");
  out.push(
    `cached: ${sum((p) => p.computations)} computations; compute events: ${
      merge((p) => p.computeEvents)
    }`,
  );
  out.push(`cached error hook events: ${merge((p) => p.cacheErrorEvents)}`);
  out.push(
    `withLock gave up waiting (LockNotAcquiredError) while the lock was held by: ${
      merge((p) => p.gaveUpWhileHeldBy)
    }`,
  );
  out.push(`logger warnings: ${merge((p) => p.warnings)}`);
  out.push(
    `unhandled rejections ${
      sum((p) => p.unhandledRejections)
    }, uncaught errors ${sum((p) => p.uncaughtErrors)}, calls unsettled ${
      sum((p) => p.unsettled)
    }, wrong values ${sum((p) => p.wrongValues)}; client close took at most ${
      ms(Math.max(0, ...reps.map((p) => p.closeMs)))
    } ms`,
  );
  const expected = r.overlaps.filter((x) => x.expected).length;
  out.push(
    `holds ${r.holds}; overlaps: ${
      r.overlaps.length - expected
    } unexplained, ${expected} after the restart (expected, reported); fence regressions ${r.fenceRegressions}`,
  );
  for (const x of r.overlaps.slice(0, 10)) {
    out.push(
      `  lock ${x.lock}: ${x.earlier.id} [${rel(x.earlier.start)}, +${
        ms(x.earlier.end - x.earlier.start)
      } ms, fence ${x.earlier.fence}, flags ${x.earlier.flags}] overlaps ${x.later.id} [${
        rel(x.later.start)
      }, fence ${x.later.fence}] by ${ms(x.overlapMs)} ms${
        x.expected ? " (expected)" : ""
      }`,
    );
  }
  for (const c of r.counters) {
    out.push(
      `lock ${c.lock}: counter in Redis ${
        c.redis ?? "(none)"
      }; fenced writes confirmed ${c.confirmed}, refused ${c.refused}, unknown (no answer) ${c.unknown}`,
    );
  }
  out.push(
    `after the run: ${r.leftoverLocks.length} lock keys left${
      r.leftoverLocks.length
        ? ` (${
          r.leftoverLocks.map((l) => `${l.key} pttl ${l.pttl}`).join(", ")
        })`
        : ""
    }; ${r.clientsAfter} clients connected (the orchestrator's included); proxy: ${r.proxy.final.connections} connections, ${r.proxy.final.requests} requests, ${r.proxy.final.inFlightCut} in flight cut in all`,
  );
  out.push("");
  for (const c of r.checks) out.push(`${c.ok ? "PASS" : "FAIL"} ${c.what}`);
  for (const w of r.workers) {
    const p = w.report;
    if (p && p.unhandledSamples.length) {
      out.push(`${w.id} unhandled: ${p.unhandledSamples.join("\n  ")}`);
    }
    if ((w.exit !== 0 || p === null) && w.stderrTail) {
      out.push(`${w.id} stderr: ${w.stderrTail}`);
    }
  }
  out.push(`wall time ${(r.wallMs / 1000).toFixed(1)} s`);
  return out.join("\n");
}

function parseArgs(argv: string[]): SoakOptions {
  const o: SoakOptions = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    const num = () => {
      const n = Number(v);
      if (!(n > 0)) throw new RangeError(`${a} needs a positive number`);
      i++;
      return n;
    };
    if (a === "--seconds") o.seconds = num();
    else if (a === "--procs") o.procs = Math.floor(num());
    else if (a === "--stall-ms") o.stallMs = num();
    else if (a === "--no-faults") o.faults = false;
    else if (a === "--v8-flags") {
      if (!v) throw new RangeError("--v8-flags needs a value");
      o.v8Flags = v.split(",");
      i++;
    } else if (a === "--runtime") {
      if (v !== "deno" && v !== "bun") {
        throw new RangeError("--runtime is deno or bun");
      }
      o.runtime = v;
      i++;
    } else if (a === "--persistence") {
      if (v !== "aof" && v !== "none") {
        throw new RangeError("--persistence is aof or none");
      }
      o.persistence = v;
      i++;
    } else if (a === "--json") {
      i++;
    } else throw new RangeError(`unknown argument ${a}`);
  }
  return o;
}

if (import.meta.main) {
  const argv = g.Deno?.args ?? g.process!.argv.slice(2);
  const opts = parseArgs(argv);
  const jsonAt = argv.indexOf("--json");
  // Interrupted: stop what this run started (by pid), then exit.
  const stop = () => {
    for (const p of live.procs) p.kill("SIGKILL");
    for (const s of live.servers) s.signal("SIGKILL");
    console.error("soak: interrupted; stopped its workers and redis-server");
    g.Deno!.exit(130);
  };
  g.Deno?.addSignalListener("SIGINT", stop);
  g.Deno?.addSignalListener("SIGTERM", stop);
  const result = await runSoak(opts);
  g.Deno?.removeSignalListener("SIGINT", stop);
  g.Deno?.removeSignalListener("SIGTERM", stop);
  console.log(formatSoak(result));
  if (jsonAt >= 0) {
    const { writeFile } = await import("node:fs/promises");
    const slim = {
      ...result,
      workers: result.workers.map((w) => ({
        ...w,
        report: w.report &&
          { ...w.report, intervals: w.report.intervals.length },
      })),
    };
    await writeFile(argv[jsonAt + 1], JSON.stringify(slim, null, 2));
  }
  if (result.failures.length > 0) {
    console.log(`\nFAILED: ${result.failures.length} check(s)`);
    if (g.Deno) g.Deno.exit(1);
    else {(globalThis as unknown as { process: { exit(c: number): never } })
        .process.exit(1);}
  }
}
