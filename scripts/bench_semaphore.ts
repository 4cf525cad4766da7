/**
 * Semaphore benchmark: respite's `Semaphore` vs redis-semaphore 5.8.0's
 * `Semaphore` (on ioredis 6.0.0), in this process (Deno or Bun), against one
 * throwaway redis-server, in one run: interleaved rounds (the order of the
 * libraries rotates each round), medians.
 *
 * 20 concurrent workers on one semaphore of limit 3, each in a loop:
 * acquire, hold, release. Three rows: a zero hold (release at once: the
 * semaphore's own overhead), a 5 ms hold (`setTimeout(5)` in this process:
 * the work a semaphore exists to bound) and a 5 ms call: the holder sends a
 * byte to a stand-in service in another process (`_slow_service.ts`, one
 * socket per worker) that answers 5 ms later, as a holder calling a
 * rate-limited API does. The call's row is there because a timer hold is
 * not the same length for both libraries on Deno: its timers fire about
 * 1 ms late in a quiet process and earlier in one whose event loop other
 * events wake (measured: 6.18 ms for respite's holders against 5.87 ms for
 * redis-semaphore's, which poll), so the timer row partly measures how busy
 * each library keeps the process. The service's timers run in its own
 * process, under the same traffic whichever library holds. Each library shares one client among its 20
 * workers, with a 10 s lease and no renewal within a round.
 *
 * Per acquisition, from `INFO commandstats` deltas over the window (as Redis
 * counts them, commands run inside Lua included):
 * - requests: the commands the library's client sent. respite sends only
 *   EVALSHA/EVAL (its scripts) and SUBSCRIBE/UNSUBSCRIBE (its wake-ups);
 *   redis-semaphore sends EVALSHA/EVAL (acquire, refresh) and ZREM (its
 *   release). ioredis's own count of the commands it sent is checked
 *   against this (the run fails if they differ by more than 1%).
 * - inside Lua: every other command (what the scripts ran).
 * - all: the two together.
 *
 * "hold measured" is the mean time a holder actually spent in its
 * `setTimeout` hold (Deno's timers fire late, by how much depends on what
 * else wakes the event loop), so that 3 / rate − hold is what each library
 * adds per acquisition ("cycle − hold": a permit's cycle, limit / rate,
 * less the measured hold, per round, median). "max holders" counts holders
 * in this process between acquire and release (at a zero hold that is
 * synchronous: 1).
 *
 * Peer configuration: redis-semaphore's defaults but for the timeouts —
 * `retryInterval` 10 ms (its default: a refused acquire tries again every
 * 10 ms), `lockTimeout` 10 s (the same lease as respite's `ttl`),
 * `acquireTimeout` 60 s (so no worker gives up), `refreshInterval` its
 * default 0.8 × lockTimeout (8 s: never reached by a hold). respite:
 * `ttl` 10 s, `autoRenew` off (its default); its waiters are woken by the
 * release that hands them a permit.
 *
 * Usage: deno task bench:semaphore [--rounds N] [--seconds S] [--json]
 *        bun run scripts/bench_semaphore.ts [--rounds N] [--seconds S] [--json]
 * (defaults: 7 rounds of 2 s per row and library). The table goes to
 * stdout; with --json, the shared JSON document (`_bench_json.ts`: every
 * round's rates, the medians and ratios, the table's figures) goes to stdout and the table to stderr. With REDIS_URL set, that
 * server is used instead of a throwaway one.
 */

import { Redis as IORedis } from "ioredis";
import { Semaphore as RsSemaphore } from "redis-semaphore";
import { connect, Semaphore } from "../mod.ts";
import { commandCalls, freePort, startRedis } from "../testing/redis.ts";
import { runArgs, spawn } from "../testing/proc.ts";
import { connect as tcpConnect, type Socket } from "node:net";
import {
  args,
  benchDoc,
  type BenchRatio,
  type BenchRow,
  median,
  printJson,
} from "./_bench_json.ts";

const g = globalThis as {
  Deno?: {
    version: { deno: string };
    env: { get(k: string): string | undefined };
  };
  Bun?: { version: string };
  process?: { env: Record<string, string | undefined> };
};
const RUNTIME = g.Bun ? `Bun ${g.Bun.version}` : `Deno ${g.Deno!.version.deno}`;
const ARGS = args();

function option(name: string, fallback: number): number {
  const i = ARGS.indexOf(name);
  if (i === -1) return fallback;
  const n = Number(ARGS[i + 1]);
  if (!(n > 0)) throw new RangeError(`${name} needs a positive number`);
  return n;
}

const ROUNDS = option("--rounds", 7);
const SECONDS = option("--seconds", 2);
const JSON_OUT = ARGS.includes("--json");
const WORKERS = 20;
const LIMIT = 3;
interface Hold {
  /** The row's name. */
  label: string;
  /** How long a holder holds (ms). */
  ms: number;
  /** Through a call to the service in another process, not a timer here. */
  call: boolean;
}
const HOLDS: Hold[] = [
  { label: "0 ms", ms: 0, call: false },
  { label: "5 ms", ms: 5, call: false },
  { label: "5 ms call", ms: 5, call: true },
];
const CALL_MS = 5;
const TTL = 10_000;
const RETRY_INTERVAL = 10;
const log = (s: string) => console.error(s);
const table = JSON_OUT ? log : (s: string) => console.log(s);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One worker's socket to the stand-in service: `call()` is one request. */
class ServiceCall {
  #socket: Socket;
  #waiting: (() => void) | null = null;
  constructor(socket: Socket) {
    this.#socket = socket;
    socket.on("data", (chunk: Uint8Array) => {
      for (let i = 0; i < chunk.length; i++) {
        const w = this.#waiting;
        this.#waiting = null;
        w?.();
      }
    });
  }
  static open(port: number): Promise<ServiceCall> {
    return new Promise((resolve, reject) => {
      const socket = tcpConnect({ port, host: "127.0.0.1" }, () => {
        socket.setNoDelay(true);
        socket.off("error", reject);
        resolve(new ServiceCall(socket));
      });
      socket.once("error", reject);
    });
  }
  call(): Promise<void> {
    return new Promise((resolve) => {
      this.#waiting = resolve;
      this.#socket.write(ONE);
    });
  }
  close(): void {
    this.#socket.destroy();
  }
}
const ONE = new Uint8Array([1]);

interface Contender {
  name: string;
  holder(resource: string): {
    acquire(): Promise<void>;
    release(): Promise<void>;
  };
  /** The commands its client sends (the rest run inside its Lua scripts). */
  requests: string[];
  /** The client's own count of the commands it sent, if it keeps one. */
  sentByClient?: () => number;
}

const external = g.Deno
  ? g.Deno.env.get("REDIS_URL")
  : g.process?.env.REDIS_URL;
const server = external ? null : await startRedis();
const url = external ?? server!.url;
const admin = await connect(url);
const respite = await connect(url);
const io = new IORedis(url);
const servicePort = await freePort();
const service = spawn(
  ...runArgs(new URL("./_slow_service.ts", import.meta.url).pathname, [
    String(servicePort),
    String(CALL_MS),
  ]),
  { output: "null" },
);
const calls: ServiceCall[] = [];
for (let i = 0; i < WORKERS; i++) {
  for (let tries = 0;; tries++) {
    try {
      calls.push(await ServiceCall.open(servicePort));
      break;
    } catch (err) {
      if (tries > 200) throw err;
      await sleep(25);
    }
  }
}
// ioredis sends every command through sendCommand (scripts included).
let ioSent = 0;
{
  const send = io.sendCommand.bind(io);
  io.sendCommand = ((...args: Parameters<typeof send>) => {
    ioSent++;
    return send(...args);
  }) as typeof io.sendCommand;
}

const RESPITE = "respite Semaphore";
const PEER = "redis-semaphore Semaphore";
const contenders: Contender[] = [
  {
    name: RESPITE,
    holder(resource) {
      const s = new Semaphore(respite, resource, { limit: LIMIT, ttl: TTL });
      return {
        acquire: async () => {
          if (!await s.acquire()) throw new Error("not acquired");
        },
        release: () => s.release(),
      };
    },
    requests: ["evalsha", "eval", "subscribe", "unsubscribe"],
  },
  {
    name: PEER,
    holder(resource) {
      const s = new RsSemaphore(io, resource, LIMIT, {
        lockTimeout: TTL,
        acquireTimeout: 60_000,
        retryInterval: RETRY_INTERVAL,
      });
      return {
        acquire: () => s.acquire(),
        release: () => s.release(),
      };
    },
    requests: ["evalsha", "eval", "zrem"],
    sentByClient: () => ioSent,
  },
];

interface Measure {
  rate: number;
  acquisitions: number;
  most: number;
  top: number;
  requests: number;
  inside: number;
  all: number;
  scripts: number;
  /** The mean time a holder actually spent in its hold (timer lateness included). */
  held: number;
  /**
   * What a permit's cycle took beyond its measured hold (ms): limit / rate
   * − held, the library's own share (the handover) with a hold > 0.
   */
  overhead: number;
}

async function contended(
  c: Contender,
  hold: Hold,
  round: number,
): Promise<Measure> {
  const resource = `respite-bench:sem:${c.name}:${hold.label}:${round}`;
  let stop = false;
  let acquisitions = 0;
  let inside = 0;
  let most = 0;
  let heldMs = 0, holds = 0;
  const perWorker = new Array(WORKERS).fill(0);
  const holders = Array.from({ length: WORKERS }, () => c.holder(resource));
  for (const h of holders) { // warm up
    await h.acquire();
    await h.release();
  }
  const before = await commandCalls(admin);
  const sent0 = c.sentByClient?.();
  const t0 = performance.now();
  const workers = holders.map(async (h, i) => {
    while (!stop) {
      await h.acquire();
      most = Math.max(most, ++inside);
      if (inside > LIMIT) throw new Error(`${c.name}: ${inside} holders`);
      if (!stop) {
        acquisitions++;
        perWorker[i]++;
      }
      if (hold.ms > 0) {
        const h0 = performance.now();
        await (hold.call ? calls[i].call() : sleep(hold.ms));
        heldMs += performance.now() - h0;
        holds++;
      }
      inside--;
      await h.release();
    }
  });
  await sleep(SECONDS * 1000);
  stop = true;
  const counted = acquisitions;
  const t1 = performance.now();
  const sent1 = c.sentByClient?.();
  const after = await commandCalls(admin);
  await Promise.all(workers);
  let requests = 0, insideLua = 0, scripts = 0;
  for (const [cmd, n] of after) {
    if (cmd === "info") continue; // the admin's own readings
    const k = n - (before.get(cmd) ?? 0);
    if (k <= 0) continue;
    if (c.requests.includes(cmd)) requests += k;
    else insideLua += k;
    if (cmd === "evalsha" || cmd === "eval") scripts += k;
  }
  if (sent0 !== undefined && sent1 !== undefined) {
    const sent = sent1 - sent0;
    if (Math.abs(sent - requests) > Math.max(2, requests * 0.01)) {
      throw new Error(
        `${c.name}: its client sent ${sent} commands, Redis counted ${requests} requests`,
      );
    }
  }
  return {
    rate: counted / ((t1 - t0) / 1000),
    acquisitions: counted,
    most,
    top: Math.max(...perWorker) / counted,
    requests: requests / counted,
    inside: insideLua / counted,
    all: (requests + insideLua) / counted,
    scripts: scripts / counted,
    held: holds === 0 ? 0 : heldMs / holds,
    overhead: holds === 0
      ? 0
      : LIMIT / (counted / ((t1 - t0) / 1000)) * 1000 - heldMs / holds,
  };
}

const serverVersion = String(
  /redis_version:(\S+)/.exec(await admin.send<string>("INFO", "server"))?.[1],
);
const key = (name: string, hold: Hold) => `${name}@${hold.label}`;
const results = new Map<string, Measure[]>();
for (const hold of HOLDS) {
  for (const c of contenders) results.set(key(c.name, hold), []);
}
const setup = `${WORKERS} workers, limit ${LIMIT}, ttl ${TTL} ms; ` +
  `redis-semaphore retryInterval ${RETRY_INTERVAL} ms`;
log(
  `${RUNTIME}, redis-server ${serverVersion} at ${url}; ` +
    `${ROUNDS} rounds of ${SECONDS} s, holds ${
      HOLDS.map((h) => h.label).join(" / ")
    }; ${setup}`,
);
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const hold of HOLDS) {
      const k = round % contenders.length;
      for (const c of [...contenders.slice(k), ...contenders.slice(0, k)]) {
        const m = await contended(c, hold, round);
        results.get(key(c.name, hold))!.push(m);
        log(
          `round ${round + 1}, hold ${hold.label}, ${c.name}: ` +
            `${m.rate.toFixed(0)} acquisitions/s, max ${m.most} holders, ` +
            `top worker ${(m.top * 100).toFixed(0)}%, per acquisition ` +
            `${m.requests.toFixed(2)} requests + ${
              m.inside.toFixed(2)
            } inside Lua = ${m.all.toFixed(2)}`,
        );
      }
    }
  }
  const rows: string[][] = [[
    "hold",
    "library",
    "acquisitions/s",
    "× redis-semaphore",
    "requests/acq",
    "× redis-semaphore",
    "inside Lua/acq",
    "× redis-semaphore",
    "all commands/acq",
    "hold measured",
    "cycle − hold",
    "max holders",
    "top worker",
  ]];
  const summary: Record<string, unknown>[] = [];
  for (const hold of HOLDS) {
    const peer = results.get(key(PEER, hold))!;
    for (const c of contenders) {
      const ms = results.get(key(c.name, hold))!;
      // Ratios: the median of each round's ratio (both ran in that round).
      const ratio = (f: (m: Measure) => number) =>
        median(ms.map((m, i) => f(m) / f(peer[i])));
      const med = (f: (m: Measure) => number) => median(ms.map(f));
      const s = {
        hold: hold.label,
        library: c.name,
        acquisitionsPerSecond: med((m) => m.rate),
        rateRatio: ratio((m) => m.rate),
        requestsPerAcquisition: med((m) => m.requests),
        requestsRatio: ratio((m) => m.requests),
        insideLuaPerAcquisition: med((m) => m.inside),
        insideLuaRatio: ratio((m) => m.inside),
        allPerAcquisition: med((m) => m.all),
        scriptsPerAcquisition: med((m) => m.scripts),
        heldMs: med((m) => m.held),
        overheadMs: med((m) => m.overhead),
        maxHolders: Math.max(...ms.map((m) => m.most)),
        topWorkerShare: med((m) => m.top),
        rounds: ms,
      };
      summary.push(s);
      rows.push([
        hold.label,
        c.name,
        s.acquisitionsPerSecond.toFixed(0),
        s.rateRatio.toFixed(2),
        s.requestsPerAcquisition.toFixed(2),
        s.requestsRatio.toFixed(2),
        s.insideLuaPerAcquisition.toFixed(2),
        s.insideLuaRatio.toFixed(2),
        s.allPerAcquisition.toFixed(2),
        `${s.heldMs.toFixed(2)} ms`,
        `${s.overheadMs.toFixed(2)} ms`,
        String(s.maxHolders),
        `${(s.topWorkerShare * 100).toFixed(0)}%`,
      ]);
    }
  }
  const widths = rows[0].map((_, i) =>
    Math.max(...rows.map((r) => r[i].length))
  );
  const line = (r: string[]) =>
    "| " + r.map((s, i) =>
      i <= 1 ? s.padEnd(widths[i]) : s.padStart(widths[i])
    ).join(" | ") + " |";
  table(
    `Semaphore benchmark, ${RUNTIME}, redis-server ${serverVersion}, ` +
      `medians of ${ROUNDS} interleaved rounds of ${SECONDS} s; ${setup}; ` +
      `ratios: median of per-round ratios`,
  );
  table(line(rows[0]));
  table(
    "|" + widths.map((w, i) =>
      (i <= 1 ? "-" : "").padEnd(w + 1, "-") + (i <= 1 ? "-" : ":")
    ).join("|") + "|",
  );
  for (const r of rows.slice(1)) {
    table(line(r));
  }
  if (JSON_OUT) {
    const jsonRows: BenchRow[] = [];
    const ratios: BenchRatio[] = [];
    for (const hold of HOLDS) {
      const peer = results.get(key(PEER, hold))!;
      for (const c of contenders) {
        const ms = results.get(key(c.name, hold))!;
        const group = `semaphore ${hold.label} hold`;
        jsonRows.push({
          group,
          library: c.name,
          median: median(ms.map((m) =>
            m.rate
          )),
          unit: "acquisitions/s",
          samples: ms.map((m) => m.rate),
        });
        if (c.name === PEER) continue;
        // As in the table: the median of each round's ratio.
        ratios.push({
          group,
          ours: c.name,
          peer: PEER,
          ratio: median(ms.map((m, i) => m.rate / peer[i].rate)),
          better: "higher",
          chart: true,
        });
      }
    }
    printJson(benchDoc({
      benchmark: "semaphore",
      command: g.Bun
        ? `bun run scripts/bench_semaphore.ts ${ARGS.join(" ")}`
        : `deno task bench:semaphore ${ARGS.join(" ")}`,
      runtime: { redis: serverVersion },
      rounds: ROUNDS,
      rows: jsonRows,
      ratios,
      details: {
        seconds: SECONDS,
        workers: WORKERS,
        limit: LIMIT,
        ttl: TTL,
        holds: HOLDS,
        service:
          `a byte answered ${CALL_MS} ms later by scripts/_slow_service.ts in its own process`,
        peer: {
          library: "redis-semaphore 5.8.0 on ioredis 6.0.0",
          retryInterval: RETRY_INTERVAL,
          lockTimeout: TTL,
          acquireTimeout: 60_000,
        },
        results: summary,
      },
    }));
  }
} finally {
  for (const c of calls) c.close();
  service.kill("SIGTERM");
  await service.exited;
  await respite.close();
  await admin.close();
  io.disconnect();
  await server?.stop();
}
