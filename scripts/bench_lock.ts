/**
 * Lock benchmark: respite's `Lock` vs node-redlock v4 (`redlock`) and
 * redis-semaphore's `Mutex`, both on ioredis, in this Deno process, against
 * one throwaway redis-server, in one run.
 *
 * - uncontended: one worker, acquire + release in a loop (cycles/s);
 * - uncontended ×100: 100 concurrent workers, each on its own lock name (no
 *   contention), acquire + release in a loop (total cycles/s) — what a server
 *   handling many requests that each lock a different resource sees;
 * - contended: 20 concurrent workers on one lock, each in a loop: acquire,
 *   hold 1 ms (`setTimeout(1)`; the measured hold is printed), release.
 *   Handoffs/s counts acquisitions by a different worker than the previous
 *   holder: a worker that releases and at once re-acquires (barging past
 *   waiters that poll) is not a handoff. Acquisitions/s counts them all, and
 *   "top worker" is the busiest worker's share of the acquisitions (1/20 =
 *   5% is perfectly fair);
 * - Redis commands per contended acquisition, from `INFO commandstats`
 *   deltas over the contended window: all calls (commands run inside Lua
 *   scripts included, as Redis counts them), and requests (commands the
 *   client sent: the calls minus those each library's own Lua scripts make).
 *
 * Each library uses one client shared by its workers, as an application
 * would. Peers use their default retry settings, except that redlock retries
 * without limit (`retryCount: -1`) and redis-semaphore waits up to 60 s
 * (`acquireTimeout`), so no worker gives up: redlock polls every 200 ± 100 ms,
 * redis-semaphore every 10 ms. respite waiters are woken by the release.
 *
 * Quorum (Redlock) columns: respite's `Lock` over an array of N clients and
 * redlock v4 over N ioredis clients, N = 3 and N = 5, on five throwaway
 * redis-servers (the first is the single-node server). Their "calls" and
 * "requests" columns count the first node only (each node sees the same).
 *
 * Cluster columns: respite's `Lock` on `connectCluster`, redlock v4 and
 * redis-semaphore's `Mutex` on one ioredis `Cluster` client each, on a
 * throwaway 3-master Redis Cluster; their calls and requests are summed
 * over the three masters (each lock lives on one).
 *
 * Usage: deno task bench:lock [--rounds N] [--seconds S] [--json]
 * With --json the table goes to stderr and the shared JSON document
 * (`_bench_json.ts`) to stdout.
 * With REDIS_URL set, that server is used instead of a throwaway one.
 */

import { Cluster as IOCluster, Redis as IORedis } from "ioredis";
import Redlock from "redlock";
import { Mutex } from "redis-semaphore";
import { connect, connectCluster, Lock } from "../mod.ts";
import { startCluster } from "../testing/cluster.ts";
import { commandCalls, startRedis } from "../testing/redis.ts";
import {
  benchDoc,
  type BenchRow,
  jsonWanted,
  positiveOption,
  printJson,
  ratiosOf,
} from "./_bench_json.ts";

const ROUNDS = positiveOption("--rounds", 5);
const SECONDS = positiveOption("--seconds", 2);
const WORKERS = 20;
const HOLD_MS = 1;
const TTL = 10_000;
const log = (s: string) => console.error(s);
const JSON_OUT = jsonWanted();
/** Where the table goes: stdout, or stderr when stdout carries the JSON. */
const out = JSON_OUT ? log : (s: string) => console.log(s);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One library under test: how to acquire and release one lock. */
interface Contender {
  name: string;
  /** Makes a holder for `resource`; `acquire` waits until acquired. */
  holder(resource: string): {
    acquire(): Promise<void>;
    release(): Promise<void>;
  };
  /** Commands the library runs inside its own Lua scripts (not requests). */
  scriptInner: string[];
  /** Where its commands are counted (default: the single-node server). */
  count?: () => Promise<Map<string, number>>;
}

const external = Deno.env.get("REDIS_URL");
const server = external ? null : await startRedis();
const url = external ?? server!.url;

const admin = await connect(url);
const respite = await connect(url);
const ioA = new IORedis(url);
const ioB = new IORedis(url);
const redlock = new Redlock([ioA], { retryCount: -1 });
// Four more independent servers for the quorum columns (always throwaway).
const extra = await Promise.all([1, 2, 3, 4].map(() => startRedis()));
const respiteNodes = [
  respite,
  ...await Promise.all(extra.map((s) => connect(s.url))),
];
const ioNodes = [ioA, ...extra.map((s) => new IORedis(s.url))];

// A throwaway 3-master cluster for the cluster columns.
const cluster = await startCluster();
const respiteCluster = await connectCluster(cluster.urls[0]);
const seeds = cluster.nodes.map((n) => ({ host: "127.0.0.1", port: n.port }));
const ioCluster = new IOCluster(seeds);
const ioClusterB = new IOCluster(seeds);
const redlockCluster = new Redlock([ioCluster as never], { retryCount: -1 });
/** Commands counted over every master of the cluster. */
async function clusterCalls(): Promise<Map<string, number>> {
  const sum = new Map<string, number>();
  for (const n of cluster.nodes) {
    for (const [cmd, k] of await commandCalls(n.client)) {
      sum.set(cmd, (sum.get(cmd) ?? 0) + k);
    }
  }
  return sum;
}

/** Commands respite's lock scripts run inside Redis (not requests). */
const RESPITE_INNER = ["set", "incr", "time", "pttl", "get", "del", "pexpire"];

/** respite's `Lock` on `redis` (a client, a cluster client, or N nodes). */
function respiteLock(
  name: string,
  redis: ConstructorParameters<typeof Lock>[0],
  publish: "publish" | "spublish",
  count?: Contender["count"],
): Contender {
  return {
    name,
    holder(resource) {
      const lock = new Lock(redis, resource, { ttl: TTL });
      return {
        acquire: async () => {
          if (!await lock.acquire()) throw new Error("not acquired");
        },
        release: () => lock.release(),
      };
    },
    scriptInner: [...RESPITE_INNER, publish],
    count,
  };
}

/** node-redlock v4 (`rl`, over its clients). */
function redlockOf(
  name: string,
  rl: Redlock,
  count?: Contender["count"],
): Contender {
  return {
    name,
    holder(resource) {
      let held: { unlock(): Promise<unknown> } | null = null;
      return {
        acquire: async () => {
          held = await rl.lock(resource, TTL);
        },
        release: async () => {
          await held!.unlock();
          held = null;
        },
      };
    },
    scriptInner: ["exists", "set", "get", "del"],
    count,
  };
}

/** redis-semaphore's `Mutex` on an ioredis client or cluster. */
function mutexOn(
  name: string,
  io: IORedis | IOCluster,
  count?: Contender["count"],
): Contender {
  return {
    name,
    holder(resource) {
      const mutex = new Mutex(io as IORedis, resource, {
        lockTimeout: TTL,
        acquireTimeout: 60_000,
      });
      return {
        acquire: () => mutex.acquire(),
        release: () => mutex.release(),
      };
    },
    scriptInner: ["get", "del"],
    count,
  };
}

const respiteQuorum = (n: number) =>
  respiteLock(`respite Lock N=${n}`, respiteNodes.slice(0, n), "publish");
const redlockQuorum = (n: number) =>
  redlockOf(
    `redlock v4 N=${n}`,
    new Redlock(ioNodes.slice(0, n), { retryCount: -1 }),
  );

const contenders: Contender[] = [
  respiteLock("respite Lock", respite, "publish"),
  redlockOf("redlock v4", redlock),
  mutexOn("redis-semaphore Mutex", ioB),
  respiteLock(
    "respite Lock (cluster)",
    respiteCluster,
    "spublish",
    clusterCalls,
  ),
  redlockOf("redlock v4 (cluster)", redlockCluster, clusterCalls),
  mutexOn("redis-semaphore Mutex (cluster)", ioClusterB, clusterCalls),
  respiteQuorum(3),
  redlockQuorum(3),
  respiteQuorum(5),
  redlockQuorum(5),
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2
    ? s[s.length >> 1]
    : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function delta(
  before: Map<string, number>,
  after: Map<string, number>,
): Map<string, number> {
  const d = new Map<string, number>();
  for (const [cmd, n] of after) {
    if (cmd === "info") continue;
    const k = n - (before.get(cmd) ?? 0);
    if (k > 0) d.set(cmd, k);
  }
  return d;
}

async function uncontended(c: Contender, round: number): Promise<number> {
  const h = c.holder(`respite-bench:u:${c.name}:${round}`);
  for (let i = 0; i < 50; i++) { // warm up (scripts cached, JIT)
    await h.acquire();
    await h.release();
  }
  let cycles = 0;
  const t0 = performance.now();
  const end = t0 + SECONDS * 1000 / 2;
  while (performance.now() < end) {
    await h.acquire();
    await h.release();
    cycles++;
  }
  return cycles / ((performance.now() - t0) / 1000);
}

const PARALLEL = 100;

async function uncontendedParallel(
  c: Contender,
  round: number,
): Promise<number> {
  const holders = Array.from(
    { length: PARALLEL },
    (_, i) => c.holder(`respite-bench:p:${c.name}:${round}:${i}`),
  );
  await Promise.all(holders.map(async (h) => { // warm up
    await h.acquire();
    await h.release();
  }));
  let cycles = 0;
  const t0 = performance.now();
  const end = t0 + SECONDS * 1000 / 2;
  await Promise.all(holders.map(async (h) => {
    while (performance.now() < end) {
      await h.acquire();
      await h.release();
      cycles++;
    }
  }));
  return cycles / ((performance.now() - t0) / 1000);
}

async function contended(
  c: Contender,
  round: number,
): Promise<
  {
    rate: number;
    handoffs: number;
    top: number;
    hold: number;
    calls: number;
    requests: number;
  }
> {
  const resource = `respite-bench:c:${c.name}:${round}`;
  let stop = false;
  let acquisitions = 0;
  let handoffs = 0;
  let last = -1;
  let inside = 0;
  const perWorker = new Array(WORKERS).fill(0);
  const holds: number[] = [];
  const holders = Array.from({ length: WORKERS }, () => c.holder(resource));
  // Warm up: each holder once, one after another.
  for (const h of holders) {
    await h.acquire();
    await h.release();
  }
  const count = c.count ?? (() => commandCalls(admin));
  const before = await count();
  const t0 = performance.now();
  const workers = holders.map(async (h, i) => {
    while (!stop) {
      await h.acquire();
      if (++inside !== 1) throw new Error(`${c.name}: two holders at once`);
      if (!stop) {
        acquisitions++;
        perWorker[i]++;
        if (last !== i) handoffs++;
      }
      last = i;
      const held = performance.now();
      await sleep(HOLD_MS);
      if (holds.length < 5_000) holds.push(performance.now() - held);
      inside--;
      await h.release();
    }
  });
  await sleep(SECONDS * 1000);
  stop = true;
  const counted = acquisitions;
  const countedHandoffs = handoffs;
  const t1 = performance.now();
  const after = await count();
  await Promise.all(workers); // drain: each worker finishes its wait
  const d = delta(before, after);
  let calls = 0;
  let requests = 0;
  for (const [cmd, k] of d) {
    calls += k;
    if (!c.scriptInner.includes(cmd)) requests += k;
  }
  const seconds = (t1 - t0) / 1000;
  return {
    rate: counted / seconds,
    handoffs: countedHandoffs / seconds,
    top: Math.max(...perWorker) / counted,
    hold: median(holds),
    calls: calls / counted,
    requests: requests / counted,
  };
}

const results = new Map<
  string,
  {
    u: number[];
    p: number[];
    c: number[];
    h: number[];
    top: number[];
    hold: number[];
    calls: number[];
    requests: number[];
  }
>();
for (const c of contenders) {
  results.set(c.name, {
    u: [],
    p: [],
    c: [],
    h: [],
    top: [],
    hold: [],
    calls: [],
    requests: [],
  });
}

const serverVersion = String(
  /redis_version:(\S+)/.exec(await admin.send<string>("INFO", "server"))?.[1],
);
log(
  `Deno ${Deno.version.deno}, redis-server ${serverVersion} at ${url}; ` +
    `${ROUNDS} rounds, ${WORKERS} contended workers, ${HOLD_MS} ms hold`,
);
try {
  for (let round = 0; round < ROUNDS; round++) {
    // Rotate the order each round, so no library always runs first or last.
    const k = round % contenders.length;
    for (const c of [...contenders.slice(k), ...contenders.slice(0, k)]) {
      const r = results.get(c.name)!;
      r.u.push(await uncontended(c, round));
      r.p.push(await uncontendedParallel(c, round));
      const k = await contended(c, round);
      r.c.push(k.rate);
      r.h.push(k.handoffs);
      r.top.push(k.top);
      r.hold.push(k.hold);
      r.calls.push(k.calls);
      r.requests.push(k.requests);
      log(
        `round ${round + 1} ${c.name}: uncontended ${
          r.u.at(-1)!.toFixed(0)
        }/s, ×${PARALLEL} ${r.p.at(-1)!.toFixed(0)}/s; contended ${
          k.handoffs.toFixed(0)
        } handoffs/s, ${k.rate.toFixed(0)} acquisitions/s, top worker ${
          (k.top * 100).toFixed(0)
        }%, hold ${k.hold.toFixed(2)} ms, ${k.calls.toFixed(2)} calls and ${
          k.requests.toFixed(2)
        } requests per acquisition`,
      );
    }
  }

  const rl1 = results.get("redlock v4")!;
  const rs = results.get("redis-semaphore Mutex")!;
  const rows: string[][] = [[
    "library",
    "uncontended acq+rel/s",
    "× redlock (same N)",
    `uncontended ×${PARALLEL} locks acq+rel/s`,
    "× redlock (same N)",
    "contended handoffs/s",
    "× redlock (same N)",
    "× redis-semaphore (same servers)",
    "contended acquisitions/s",
    "top worker",
    "Redis calls/acq (incl. inside Lua)",
    "requests/acq",
  ]];
  for (const c of contenders) {
    const r = results.get(c.name)!;
    // Compared with the peer on the same servers: N nodes, or the cluster.
    const nm = / (N=\d+|\(cluster\))$/.exec(c.name)?.[0];
    const rl = nm ? results.get(`redlock v4${nm}`)! : rl1;
    const sem = results.get(`redis-semaphore Mutex${nm ?? ""}`) ?? rs;
    rows.push([
      c.name,
      median(r.u).toFixed(0),
      (median(r.u) / median(rl.u)).toFixed(2),
      median(r.p).toFixed(0),
      (median(r.p) / median(rl.p)).toFixed(2),
      median(r.h).toFixed(0),
      (median(r.h) / median(rl.h)).toFixed(2),
      (median(r.h) / median(sem.h)).toFixed(2),
      median(r.c).toFixed(0),
      `${(median(r.top) * 100).toFixed(0)}%`,
      median(r.calls).toFixed(2),
      median(r.requests).toFixed(2),
    ]);
  }
  const holdMs = median(contenders.flatMap((c) => results.get(c.name)!.hold));
  const widths = rows[0].map((_, i) =>
    Math.max(...rows.map((r) => r[i].length))
  );
  const line = (r: string[]) =>
    "| " + r.map((s, i) =>
      i === 0 ? s.padEnd(widths[i]) : s.padStart(widths[i])
    ).join(" | ") + " |";
  out(
    `Lock benchmark, Deno ${Deno.version.deno}, redis-server ${serverVersion}, ` +
      `medians of ${ROUNDS} rounds (${SECONDS / 2} s uncontended, ${
        SECONDS / 2
      } s uncontended ×${PARALLEL}, ${SECONDS} s contended per round); contended: ${WORKERS} workers, ` +
      `${HOLD_MS} ms hold (setTimeout(${HOLD_MS}) measured ${
        holdMs.toFixed(2)
      } ms)`,
  );
  out(line(rows[0]));
  out(
    "|" + widths.map((w, i) =>
      (i === 0 ? "-" : "").padEnd(w + 1, "-") + (i === 0 ? "-" : ":")
    ).join("|") + "|",
  );
  for (const r of rows.slice(1)) {
    out(line(r));
  }
  if (JSON_OUT) {
    const rows: BenchRow[] = [];
    const groups = [
      ["lock uncontended", "u", "acq+rel/s"],
      [`lock uncontended ×${PARALLEL}`, "p", "acq+rel/s"],
      ["lock contended", "h", "handoffs/s"],
    ] as const;
    for (const c of contenders) {
      const r = results.get(c.name)!;
      for (const [group, k, unit] of groups) {
        rows.push({
          group: `${group}${/ (N=\d+|\(cluster\))$/.exec(c.name)?.[0] ?? ""}`,
          library: c.name,
          median: median(r[k]),
          unit,
          samples: r[k],
        });
      }
    }
    const ratios = [];
    for (const c of contenders) {
      if (!c.name.startsWith("respite")) {
        continue;
      }
      const nm = / (N=\d+|\(cluster\))$/.exec(c.name)?.[0] ?? "";
      for (const [group] of groups) {
        ratios.push(...ratiosOf(rows, group + nm, c.name, [
          `redlock v4${nm}`,
          `redis-semaphore Mutex${nm}`,
        ], { chart: nm === "" && !group.includes("×") }));
      }
    }
    printJson(benchDoc({
      benchmark: "lock",
      command: `deno task bench:lock ${Deno.args.join(" ")}`,
      runtime: { redis: serverVersion },
      rounds: ROUNDS,
      rows,
      ratios,
      details: {
        seconds: SECONDS,
        workers: WORKERS,
        holdMs: HOLD_MS,
        measuredHoldMs: holdMs,
        ttl: TTL,
        perAcquisition: contenders.map((c) => ({
          library: c.name,
          calls: median(results.get(c.name)!.calls),
          requests: median(results.get(c.name)!.requests),
          topWorker: median(results.get(c.name)!.top),
        })),
      },
    }));
  }
} finally {
  await respite.close();
  await admin.close();
  for (const c of respiteNodes.slice(1)) await c.close();
  for (const c of ioNodes) c.disconnect();
  ioB.disconnect();
  await server?.stop();
  for (const s of extra) await s.stop();
  await respiteCluster.close();
  ioCluster.disconnect();
  ioClusterB.disconnect();
  await cluster.stop();
}
