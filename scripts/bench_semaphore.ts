/**
 * Semaphore benchmark: respite's `Semaphore` vs redis-semaphore 5.8.0's
 * `Semaphore` (on ioredis), in this Deno process, against one throwaway
 * redis-server, in one run, interleaved rounds (the order rotates), medians.
 *
 * 20 concurrent workers on one semaphore of limit 3, each in a loop:
 * acquire, hold 1 ms (`setTimeout(1)`), release. Reports acquisitions/s and
 * Redis commands per acquisition from `INFO commandstats` deltas over the
 * window: all calls (commands run inside Lua included, as Redis counts
 * them), and requests (what the client sent: calls minus the commands the
 * library's own Lua scripts run). Each library shares one client among its
 * workers. redis-semaphore polls every 10 ms (its default `retryInterval`);
 * it waits up to 60 s (`acquireTimeout`) so no worker gives up. respite's
 * waiters are woken by the release.
 *
 * Usage: deno task bench:semaphore [--rounds N] [--seconds S]
 * With REDIS_URL set, that server is used instead of a throwaway one.
 */

import { Redis as IORedis } from "ioredis";
import { Semaphore as RsSemaphore } from "redis-semaphore";
import { connect, Semaphore } from "../mod.ts";
import { commandCalls, startRedis } from "../testing/redis.ts";

function option(name: string, fallback: number): number {
  const i = Deno.args.indexOf(name);
  if (i === -1) return fallback;
  const n = Number(Deno.args[i + 1]);
  if (!(n > 0)) throw new RangeError(`${name} needs a positive number`);
  return n;
}

const ROUNDS = option("--rounds", 5);
const SECONDS = option("--seconds", 2);
const WORKERS = 20;
const LIMIT = 3;
const HOLD_MS = 1;
const TTL = 10_000;
const log = (s: string) => console.error(s);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Contender {
  name: string;
  holder(resource: string): {
    acquire(): Promise<void>;
    release(): Promise<void>;
  };
  /** Commands the library runs inside its own Lua scripts (not requests). */
  scriptInner: string[];
}

const external = Deno.env.get("REDIS_URL");
const server = external ? null : await startRedis();
const url = external ?? server!.url;
const admin = await connect(url);
const respite = await connect(url);
const io = new IORedis(url);

const contenders: Contender[] = [
  {
    name: "respite Semaphore",
    holder(resource) {
      const s = new Semaphore(respite, resource, { limit: LIMIT, ttl: TTL });
      return {
        acquire: async () => {
          if (!await s.acquire()) throw new Error("not acquired");
        },
        release: () => s.release(),
      };
    },
    scriptInner: [
      "time",
      "zremrangebyscore",
      "zrangebyscore",
      "zrem",
      "zcard",
      "zrank",
      "zadd",
      "zrange",
      "publish",
      "incr",
      "zscore",
      "exists",
    ],
  },
  {
    name: "redis-semaphore Semaphore",
    holder(resource) {
      const s = new RsSemaphore(io, resource, LIMIT, {
        lockTimeout: TTL,
        acquireTimeout: 60_000,
      });
      return {
        acquire: () => s.acquire(),
        release: () => s.release(),
      };
    },
    // Its release is a ZREM the client sends: not inside Lua.
    scriptInner: ["zremrangebyscore", "zcard", "zadd", "pexpire", "zscore"],
  },
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2
    ? s[s.length >> 1]
    : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function contended(c: Contender, round: number) {
  const resource = `respite-bench:sem:${c.name}:${round}`;
  let stop = false;
  let acquisitions = 0;
  let inside = 0;
  let most = 0;
  const perWorker = new Array(WORKERS).fill(0);
  const holders = Array.from({ length: WORKERS }, () => c.holder(resource));
  for (const h of holders) { // warm up
    await h.acquire();
    await h.release();
  }
  const before = await commandCalls(admin);
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
      await sleep(HOLD_MS);
      inside--;
      await h.release();
    }
  });
  await sleep(SECONDS * 1000);
  stop = true;
  const counted = acquisitions;
  const t1 = performance.now();
  const after = await commandCalls(admin);
  await Promise.all(workers);
  let calls = 0, requests = 0;
  for (const [cmd, n] of after) {
    if (cmd === "info") continue;
    const k = n - (before.get(cmd) ?? 0);
    if (k <= 0) continue;
    calls += k;
    if (!c.scriptInner.includes(cmd)) requests += k;
  }
  return {
    rate: counted / ((t1 - t0) / 1000),
    top: Math.max(...perWorker) / counted,
    most,
    calls: calls / counted,
    requests: requests / counted,
  };
}

type Row = {
  rate: number[];
  top: number[];
  most: number[];
  calls: number[];
  requests: number[];
};
const results = new Map<string, Row>();
for (const c of contenders) {
  results.set(c.name, { rate: [], top: [], most: [], calls: [], requests: [] });
}
const serverVersion = String(
  /redis_version:(\S+)/.exec(await admin.send<string>("INFO", "server"))?.[1],
);
log(
  `Deno ${Deno.version.deno}, redis-server ${serverVersion} at ${url}; ` +
    `${ROUNDS} rounds, ${WORKERS} workers, limit ${LIMIT}, ${HOLD_MS} ms hold`,
);
try {
  for (let round = 0; round < ROUNDS; round++) {
    const k = round % contenders.length;
    for (const c of [...contenders.slice(k), ...contenders.slice(0, k)]) {
      const r = results.get(c.name)!;
      const m = await contended(c, round);
      r.rate.push(m.rate);
      r.top.push(m.top);
      r.most.push(m.most);
      r.calls.push(m.calls);
      r.requests.push(m.requests);
      log(
        `round ${round + 1} ${c.name}: ${m.rate.toFixed(0)} acquisitions/s, ` +
          `max ${m.most} holders, top worker ${(m.top * 100).toFixed(0)}%, ` +
          `${m.calls.toFixed(2)} calls and ${
            m.requests.toFixed(2)
          } requests per acquisition`,
      );
    }
  }
  const rs = results.get("redis-semaphore Semaphore")!;
  const rows: string[][] = [[
    "library",
    "acquisitions/s",
    "× redis-semaphore",
    "max holders",
    "top worker",
    "Redis calls/acq (incl. inside Lua)",
    "requests/acq",
    "requests × redis-semaphore",
  ]];
  for (const c of contenders) {
    const r = results.get(c.name)!;
    rows.push([
      c.name,
      median(r.rate).toFixed(0),
      (median(r.rate) / median(rs.rate)).toFixed(2),
      String(Math.max(...r.most)),
      `${(median(r.top) * 100).toFixed(0)}%`,
      median(r.calls).toFixed(2),
      median(r.requests).toFixed(2),
      (median(r.requests) / median(rs.requests)).toFixed(2),
    ]);
  }
  const widths = rows[0].map((_, i) =>
    Math.max(...rows.map((r) => r[i].length))
  );
  const line = (r: string[]) =>
    "| " + r.map((s, i) =>
      i === 0 ? s.padEnd(widths[i]) : s.padStart(widths[i])
    ).join(" | ") + " |";
  console.log(
    `Semaphore benchmark, Deno ${Deno.version.deno}, redis-server ${serverVersion}, ` +
      `medians of ${ROUNDS} rounds of ${SECONDS} s; ${WORKERS} workers, limit ${LIMIT}, ${HOLD_MS} ms hold`,
  );
  console.log(line(rows[0]));
  console.log(
    "|" + widths.map((w, i) =>
      (i === 0 ? "-" : "").padEnd(w + 1, "-") + (i === 0 ? "-" : ":")
    ).join("|") + "|",
  );
  for (const r of rows.slice(1)) {
    console.log(line(r));
  }
} finally {
  await respite.close();
  await admin.close();
  io.disconnect();
  await server?.stop();
}
