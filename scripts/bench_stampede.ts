/**
 * Stampede benchmark: respite's `cached` vs plain cache-aside vs bentocache
 * (Redis as its only layer, L2, on ioredis) vs async-cache-dedupe (Redis
 * storage, on ioredis), against one redis-server, in one run.
 *
 * 1. Stampede: P worker processes × C concurrent callers ask for one cold
 *    key whose computation takes D ms (it INCRs a counter in Redis, then
 *    sleeps D). Per library and round: how many computations ran, and the
 *    callers' p50/p99 latency (from the moment each worker got the start
 *    signal). Medians over the rounds.
 * 2. Hit path: 1,000 warm distinct keys read round-robin, at concurrency 1
 *    (one caller awaiting each read) and 100 (100 such callers), in this
 *    process: ops/s, median over the rounds, and the ratio to bentocache.
 *
 * "respite (memory)" is `cached` with its in-process tier (`memory`), kept
 * coherent by CLIENT TRACKING; "bentocache (memory+redis)" is bentocache
 * with its memory L1 in front of the same Redis L2 (no bus: one process).
 * Like with like: bentocache's L1 keeps serialized items by default (its
 * `memoryDriver`'s `serialize`), so each L1 hit parses one, as each respite
 * memory hit decodes its kept text; both hand every caller a fresh object.
 * "respite (namespace)" is `cached` with a `namespace` (for `invalidateAll()`):
 * each hit also GETs the generation token, in the same round trip.
 * "cachified" is @epic-web/cachified on Redis (ioredis, a JSON adapter
 * written here); "cachified (lru+redis)" puts an lru-cache LRU in front of
 * it, two nested cachified calls as its README shows for two levels.
 * "respite (cluster)" is `cached` on `connectCluster`, on a throwaway
 * 3-master Redis Cluster (its hit-path ratio is to bentocache on the single
 * server); "respite (cluster, memory)" adds the memory tier there (one
 * tracking connection per master).
 *
 * Usage: deno task bench:stampede [--processes 4] [--callers 50]
 *          [--compute 200] [--rounds 3] [--ops 20000] [--json]
 * With --json the tables go to stderr and the shared JSON document
 * (`_bench_json.ts`, built from the tables' cells) to stdout.
 * With REDIS_URL set, that server is used instead of a throwaway one.
 */

import { BentoCache, bentostore } from "bentocache";
import { redisDriver } from "bentocache/drivers/redis";
import { memoryDriver } from "bentocache/drivers/memory";
import { createCache } from "async-cache-dedupe";
import {
  type Cache as CachifiedCache,
  type CacheEntry,
  cachified,
  totalTtl,
} from "@epic-web/cachified";
import { LRUCache } from "lru-cache";
import { Redis as IORedis } from "ioredis";
import {
  cached,
  type ClusterClient,
  connect,
  connectCluster,
  type RedisClient,
} from "../mod.ts";
import { startCluster } from "../testing/cluster.ts";
import { sharedRedis } from "../testing/redis.ts";
import { type Proc, runArgs, spawn } from "../testing/proc.ts";
import { stampedeJson } from "./_bench_stampede_json.ts";
import { textTable } from "./_text_table.ts";

const LIBS = [
  "respite",
  "respite (memory)",
  "respite (namespace)",
  "respite (cluster)",
  "respite (cluster, memory)",
  "cache-aside",
  "bentocache",
  "bentocache (memory+redis)",
  "async-cache-dedupe",
  "cachified",
  "cachified (lru+redis)",
];
type Lib = typeof LIBS[number];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (s: string) => console.error(s);

function option(name: string, fallback: number): number {
  const i = Deno.args.indexOf(`--${name}`);
  if (i === -1) return fallback;
  const n = Number(Deno.args[i + 1]);
  if (!Number.isInteger(n) || n <= 0) {
    throw new RangeError(`--${name} needs a positive integer`);
  }
  return n;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2
    ? s[s.length >> 1]
    : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)];

/** One library's way to get-or-compute a key. */
interface Getter {
  get(key: string, compute: () => Promise<unknown>): Promise<unknown>;
  close(): Promise<void>;
}

function ioredis(url: string): IORedis {
  return new IORedis(url, { lazyConnect: false, enableOfflineQueue: true });
}

/** respite's `cached` on `redis`, one cached function per key. */
function respiteGetter(
  redis: RedisClient | ClusterClient,
  memory?: { maxEntries: number },
  namespace?: string,
): Getter {
  const fns = new Map<
    string,
    ReturnType<typeof cached<[() => Promise<unknown>], unknown>>
  >();
  return {
    get(key, compute) {
      let f = fns.get(key);
      if (f === undefined) {
        f = cached((c: () => Promise<unknown>) => c(), {
          redis,
          key,
          ttl: 600_000,
          memory,
          namespace,
        });
        fns.set(key, f);
      }
      return f(compute);
    },
    close: () => redis.close(),
  };
}

/** The contenders, each with its own connection(s). */
async function makeGetters(
  url: string,
  clusterUrl: string,
): Promise<Record<Lib, Getter>> {
  const respite = respiteGetter(await connect(url));
  const respiteMemory = respiteGetter(await connect(url), {
    maxEntries: 10_000,
  });
  // With a namespace (for invalidateAll): one more GET per hit.
  const respiteNamespace = respiteGetter(
    await connect(url),
    undefined,
    "bench",
  );
  const respiteCluster = respiteGetter(await connectCluster(clusterUrl));
  // The memory tier on a cluster: one tracking connection per master.
  const respiteClusterMemory = respiteGetter(await connectCluster(clusterUrl), {
    maxEntries: 10_000,
  });
  const plain = await connect(url);
  const cacheAside: Getter = {
    async get(key, compute) {
      const hit = await plain.send<string | null>("GET", key);
      if (hit !== null) return JSON.parse(hit);
      const value = await compute();
      await plain.send("SET", key, JSON.stringify(value), "PX", 600_000);
      return value;
    },
    close: () => plain.close(),
  };
  const bentoConn = ioredis(url);
  const bento = new BentoCache({
    default: "redis",
    stores: {
      redis: bentostore().useL2Layer(redisDriver({ connection: bentoConn })),
    },
  });
  const bentocache: Getter = {
    get: (key, compute) =>
      bento.getOrSet({ key, factory: () => compute(), ttl: 600_000 }),
    close: async () => {
      await bento.disconnectAll();
      bentoConn.disconnect();
    },
  };
  const acdConn = ioredis(url);
  const acd = createCache({
    ttl: 600,
    storage: { type: "redis", options: { client: acdConn } },
  });
  let compute: (() => Promise<unknown>) | null = null;
  acd.define("fetchValue", (_key: string) => compute!());
  const acdCache = acd as unknown as {
    fetchValue(key: string): Promise<unknown>;
  };
  const asyncCacheDedupe: Getter = {
    get(key, c) {
      compute = c; // one computation per key at a time: safe to share
      return acdCache.fetchValue(key);
    },
    close: async () => {
      acdConn.disconnect();
      await Promise.resolve();
    },
  };
  const bentoMemConn = ioredis(url);
  const bentoMem = new BentoCache({
    default: "tiered",
    stores: {
      tiered: bentostore()
        .useL1Layer(memoryDriver({ maxItems: 10_000 }))
        .useL2Layer(redisDriver({ connection: bentoMemConn })),
    },
  });
  const bentocacheMemory: Getter = {
    get: (key, compute) =>
      bentoMem.getOrSet({ key, factory: () => compute(), ttl: 600_000 }),
    close: async () => {
      await bentoMem.disconnectAll();
      bentoMemConn.disconnect();
    },
  };
  return {
    respite,
    "respite (memory)": respiteMemory,
    "respite (namespace)": respiteNamespace,
    "bentocache (memory+redis)": bentocacheMemory,
    "respite (cluster)": respiteCluster,
    "respite (cluster, memory)": respiteClusterMemory,
    "cache-aside": cacheAside,
    bentocache,
    "async-cache-dedupe": asyncCacheDedupe,
    cachified: cachifiedGetter(url),
    "cachified (lru+redis)": cachifiedGetter(url, 10_000),
  };
}

/** cachified's cache adapter over Redis on ioredis (JSON entries, PX ttl). */
function cachifiedRedis(conn: IORedis): CachifiedCache {
  return {
    async get(key) {
      const hit = await conn.get(key);
      return hit === null ? null : JSON.parse(hit);
    },
    async set(key, value: CacheEntry) {
      const ttl = totalTtl(value?.metadata);
      const text = JSON.stringify(value);
      if (ttl === Infinity) await conn.set(key, text);
      else await conn.set(key, text, "PX", Math.max(1, Math.ceil(ttl)));
    },
    async delete(key) {
      await conn.del(key);
    },
  };
}

/** cachified's LRU adapter, as its README writes it for lru-cache. */
function cachifiedLru(max: number): CachifiedCache {
  const lru = new LRUCache<string, CacheEntry>({ max });
  return {
    set(key, value) {
      const ttl = totalTtl(value?.metadata);
      return lru.set(key, value, {
        ttl: ttl === Infinity ? undefined : ttl,
        start: value?.metadata?.createdTime,
      });
    },
    get: (key) => lru.get(key),
    delete: (key) => lru.delete(key),
  };
}

/**
 * cachified on Redis only, or with an LRU in front of it: two nested
 * cachified calls, the outer on the LRU, whose fresh value is the inner
 * one on Redis (the two-level pattern of cachified's README).
 */
function cachifiedGetter(url: string, lruMax?: number): Getter {
  const conn = ioredis(url);
  const redisCache = cachifiedRedis(conn);
  const lru = lruMax === undefined ? null : cachifiedLru(lruMax);
  const fromRedis = (key: string, compute: () => Promise<unknown>) =>
    cachified({
      key,
      cache: redisCache,
      ttl: 600_000,
      getFreshValue: () => compute(),
    });
  return {
    get: (key, compute) =>
      lru === null ? fromRedis(key, compute) : cachified({
        key,
        cache: lru,
        ttl: 600_000,
        getFreshValue: () => fromRedis(key, compute),
      }),
    close: async () => {
      conn.disconnect();
      await Promise.resolve();
    },
  };
}

// --------------------------------------------------------------- worker

async function worker(
  url: string,
  clusterUrl: string,
  ns: string,
  callers: number,
  computeMs: number,
) {
  const control = await connect(url);
  const getters = await makeGetters(url, clusterUrl);
  const queue: string[] = [];
  let wake: (() => void) | null = null;
  const unsubscribe = await control.subscribe(`${ns}go`, (msg) => {
    queue.push(msg);
    wake?.();
  });
  await control.send("INCR", `${ns}ready`);
  try {
    while (true) {
      if (queue.length === 0) {
        await new Promise<void>((r) => wake = r);
        wake = null;
        continue;
      }
      const msg = queue.shift()!;
      if (msg === "exit") break;
      const [lib, round] = msg.split("|") as [Lib, string];
      const key = `${ns}${lib}:${round}`;
      const t0 = performance.now();
      const compute = async () => {
        await control.send("INCR", `${ns}runs:${lib}:${round}`);
        await sleep(computeMs);
        return { report: "totals", values: [1, 2, 3] };
      };
      const latencies = await Promise.all(
        Array.from({ length: callers }, async () => {
          const v = await getters[lib].get(key, compute) as { report: string };
          if (v?.report !== "totals") throw new Error(`${lib}: wrong value`);
          return performance.now() - t0;
        }),
      );
      await control.send(
        "RPUSH",
        `${ns}res:${lib}:${round}`,
        JSON.stringify(latencies),
      );
    }
  } finally {
    await unsubscribe();
    for (const g of Object.values(getters)) await g.close();
    await control.close();
  }
}

// --------------------------------------------------------------- main

/** Every table printed, for `--json`. */
const tables: { head: string[]; rows: string[][] }[] = [];
const JSON_OUT = Deno.args.includes("--json");
const out = JSON_OUT ? log : (s: string) => console.log(s);

function table(head: string[], rows: string[][]): string {
  tables.push({ head, rows });
  return textTable(head, rows);
}

async function stampede(
  redis: RedisClient,
  url: string,
  clusterUrl: string,
  ns: string,
  P: number,
  C: number,
  D: number,
  rounds: number,
): Promise<string> {
  const self = new URL(import.meta.url).pathname;
  const procs: Proc[] = [];
  const blocking = await redis.duplicate({ blocking: true });
  try {
    for (let i = 0; i < P; i++) {
      const [cmd, args] = runArgs(self, [
        "--worker",
        url,
        clusterUrl,
        ns,
        String(C),
        String(D),
      ]);
      procs.push(spawn(cmd, args, { output: "inherit" }));
    }
    let exited = 0;
    for (const p of procs) p.exited.then(() => exited++);
    const deadline = Date.now() + 60_000;
    while (Number(await redis.send("GET", `${ns}ready`) ?? 0) < P) {
      if (Date.now() > deadline || exited > 0) {
        throw new Error("workers did not start");
      }
      await sleep(20);
    }
    const rows: string[][] = [];
    for (const lib of LIBS) {
      const comps: number[] = [];
      const p50s: number[] = [];
      const p99s: number[] = [];
      // Round 0 warms each worker's code paths and connections; not counted.
      for (let round = 0; round <= rounds; round++) {
        await redis.send("PUBLISH", `${ns}go`, `${lib}|${round}`);
        const lat: number[] = [];
        for (let i = 0; i < P; i++) {
          const got = await blocking.send<[string, string] | null>(
            "BLPOP",
            `${ns}res:${lib}:${round}`,
            60,
          );
          if (got === null) throw new Error(`${lib} round ${round} timed out`);
          lat.push(...JSON.parse(got[1]) as number[]);
        }
        if (round === 0) continue;
        lat.sort((a, b) => a - b);
        comps.push(
          Number(await redis.send("GET", `${ns}runs:${lib}:${round}`)),
        );
        p50s.push(percentile(lat, 0.5));
        p99s.push(percentile(lat, 0.99));
      }
      log(
        `  stampede ${lib}: computations ${comps.join(", ")}; p99 ${
          p99s.map((x) => x.toFixed(1)).join(", ")
        } ms`,
      );
      rows.push([
        lib,
        comps.join(" / "),
        median(p50s).toFixed(1),
        median(p99s).toFixed(1),
        (median(p99s) - D).toFixed(1),
      ]);
    }
    await redis.send("PUBLISH", `${ns}go`, "exit");
    for (const p of procs) await p.exited;
    return table(
      ["library", "computations (per round)", "p50 ms", "p99 ms", "p99 - D ms"],
      rows,
    );
  } finally {
    for (const p of procs) p.kill("SIGKILL");
    await blocking.close();
  }
}

async function hitPath(
  url: string,
  clusterUrl: string,
  ns: string,
  ops: number,
  rounds: number,
): Promise<string> {
  const getters = await makeGetters(url, clusterUrl);
  const KEYS = 1_000;
  const keys = Array.from({ length: KEYS }, (_, i) => `${ns}hit:${i}`);
  const value = { id: 1, name: "a cached row", tags: ["x", "y", "z"], n: 3.14 };
  const compute = () => Promise.resolve(value);
  const results: Record<string, Record<number, number>> = {};
  try {
    for (const lib of LIBS) {
      if (lib === "cache-aside") continue;
      const g = getters[lib];
      for (const k of keys) await g.get(k, compute); // warm
    }
    for (const concurrency of [1, 100]) {
      // Interleave libraries round by round, so drift hits them alike.
      const samples: Record<string, number[]> = {};
      for (let round = 0; round <= rounds; round++) {
        for (const lib of LIBS) {
          if (lib === "cache-aside") continue;
          const g = getters[lib];
          let next = 0;
          const t0 = performance.now();
          await Promise.all(
            Array.from({ length: concurrency }, async () => {
              while (true) {
                const i = next++;
                if (i >= ops) return;
                const v = await g.get(keys[i % KEYS], compute) as {
                  id: number;
                };
                if (v.id !== 1) throw new Error(`${lib}: wrong value`);
              }
            }),
          );
          const rate = ops / ((performance.now() - t0) / 1_000);
          if (round > 0) (samples[lib] ??= []).push(rate); // round 0 warms up
        }
      }
      for (const [lib, s] of Object.entries(samples)) {
        (results[lib] ??= {})[concurrency] = median(s);
        log(
          `  hit path c=${concurrency} ${lib}: ${
            s.map((x) => x.toFixed(0)).join(", ")
          } ops/s`,
        );
      }
    }
  } finally {
    for (const g of Object.values(getters)) await g.close();
  }
  const bento = results.bentocache;
  const bentoMem = results["bentocache (memory+redis)"];
  const own = results.respite;
  const rows = Object.entries(results).map(([lib, r]) => [
    lib,
    r[1].toFixed(0),
    `${(r[1] / bento[1]).toFixed(2)}×`,
    `${(r[1] / bentoMem[1]).toFixed(2)}×`,
    `${(r[1] / own[1]).toFixed(2)}×`,
    r[100].toFixed(0),
    `${(r[100] / bento[100]).toFixed(2)}×`,
    `${(r[100] / bentoMem[100]).toFixed(2)}×`,
  ]);
  return table(
    [
      "library",
      "c=1 ops/s",
      "vs bento",
      "vs bento mem+redis",
      "vs respite (Redis)",
      "c=100 ops/s",
      "vs bento",
      "vs bento mem+redis",
    ],
    rows,
  );
}

async function main() {
  const P = option("processes", 4);
  const C = option("callers", 50);
  const D = option("compute", 200);
  const rounds = option("rounds", 3);
  const ops = option("ops", 20_000);
  const server = await sharedRedis();
  const cluster = await startCluster();
  const ns = `respite:bench:stampede:${Date.now()}:`;
  const redis = await connect(server.url);
  try {
    const version = (await redis.send<string>("INFO", "server")).match(
      /redis_version:(\S+)/,
    )?.[1];
    log(
      `redis ${version} at ${server.url}; deno ${Deno.version.deno}; ${navigator.hardwareConcurrency} CPUs`,
    );
    log(
      `stampede: ${P} processes × ${C} callers, cold key, compute ${D} ms, ${rounds} rounds (+1 warm-up)`,
    );
    const a = await stampede(
      redis,
      server.url,
      cluster.urls[0],
      ns,
      P,
      C,
      D,
      rounds,
    );
    log(
      `hit path: 1,000 warm keys, ${ops} reads per round, ${rounds} rounds (+1 warm-up)`,
    );
    const b = await hitPath(server.url, cluster.urls[0], ns, ops, rounds);
    out(
      `\nStampede: ${P} processes × ${C} concurrent callers, cold key, compute D = ${D} ms (medians of ${rounds} rounds)\n`,
    );
    out(a);
    out(
      `\nHit path: 1,000 warm keys, ops/s (medians of ${rounds} rounds of ${ops} reads)\n`,
    );
    out(b);
    out(
      `\nredis ${version}, deno ${Deno.version.deno}, ${Deno.build.os}/${Deno.build.arch}, ${navigator.hardwareConcurrency} CPUs, ${
        new Date().toISOString().slice(0, 10)
      }`,
    );
    if (JSON_OUT) {
      console.log(JSON.stringify(
        stampedeJson(tables, {
          command: `deno task bench:stampede ${Deno.args.join(" ")}`,
          redis: version,
          rounds,
          details: { processes: P, callers: C, computeMs: D, ops },
        }),
        null,
        2,
      ));
    }
  } finally {
    let cursor = "0";
    do {
      const [next, keys] = await redis.send<[string, string[]]>(
        "SCAN",
        cursor,
        "MATCH",
        `*${ns}*`,
        "COUNT",
        1000,
      );
      cursor = next;
      if (keys.length) await redis.send("DEL", ...keys);
    } while (cursor !== "0");
    await redis.close();
    await server.stop();
    await cluster.stop();
  }
}

if (Deno.args[0] === "--worker") {
  const [, url, clusterUrl, ns, callers, computeMs] = Deno.args;
  await worker(url, clusterUrl, ns, Number(callers), Number(computeMs));
} else {
  await main();
}
