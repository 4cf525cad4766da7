/**
 * The cache-stampede demo: `deno task demo`.
 *
 * A slow "expensive" function (about a second, standing for a heavy query)
 * sits behind a cache key that has just expired. Several OS processes, each
 * with many concurrent callers, ask for it at the same moment. Three rounds:
 *
 *   1. no protection: plain cache-aside (GET, on a miss compute and SET);
 *   2. in-process protection only: the same, deduplicated per process
 *      (what bentocache, cachified, async-cache-dedupe and cache-manager do);
 *   3. respite's cached(): one computation across all processes.
 *
 * For each round it prints how many times the expensive function ran and the
 * callers' p50/p99 latency. It starts a throwaway redis-server (or uses
 * REDIS_URL). Script warnings such as `UNLOCK_SCRIPT not cached.` are printed
 * by the worker processes as they happen (a fresh server does not have
 * respite's Lua scripts yet), and the summary explains them when there were
 * any.
 *
 *   deno task demo [--processes 5] [--callers 20] [--compute 1000]
 */
import { cached, connect, type RedisClient, Singleflight } from "../mod.ts";
import { type RedisServer, sharedRedis } from "../testing/redis.ts";
import { type Proc, runArgs, spawn } from "../testing/proc.ts";

const ROUNDS = [
  { id: "none", title: "no protection (plain cache-aside)" },
  { id: "local", title: "in-process only (singleflight per process)" },
  { id: "respite", title: "respite cached() across processes" },
] as const;
type RoundId = typeof ROUNDS[number]["id"];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function flag(name: string, fallback: number): number {
  const i = Deno.args.indexOf(`--${name}`);
  if (i === -1) return fallback;
  const v = Number(Deno.args[i + 1]);
  if (!Number.isInteger(v) || v <= 0) {
    console.error(`--${name} needs a positive integer`);
    Deno.exit(2);
  }
  return v;
}

// ------------------------------------------------------------------ worker

async function worker(
  url: string,
  ns: string,
  callers: number,
  computeMs: number,
) {
  let warned = 0;
  const redis = await connect({
    url,
    logger: {
      warn(message) {
        warned++;
        console.warn(`  worker ${Deno.pid}: ${message}`);
      },
    },
  });
  try {
    const rounds = new Map<string, PromiseWithResolvers<void>>(
      ROUNDS.map((r) => [r.id, Promise.withResolvers<void>()]),
    );
    const unsubscribe = await redis.subscribe(`${ns}go`, (round) => {
      rounds.get(round)?.resolve();
    });
    await redis.send("INCR", `${ns}ready`);

    /** The expensive function: counts its runs in Redis, takes computeMs. */
    const expensive = async (round: string): Promise<string> => {
      await redis.send("INCR", `${ns}runs:${round}`);
      await sleep(computeMs);
      return JSON.stringify({ report: "quarterly totals", at: Date.now() });
    };
    /** Plain cache-aside. */
    const cacheAside = async (round: string): Promise<string> => {
      const key = `${ns}report:${round}`;
      const hit = await redis.send<string | null>("GET", key);
      if (hit !== null) return hit;
      const value = await expensive(round);
      await redis.send("SET", key, value, "PX", 60_000);
      return value;
    };
    const local = new Singleflight<string>();
    const protectedFn = cached(() => expensive("respite"), {
      redis,
      key: `${ns}report:respite`,
      ttl: 60_000,
    });
    const call: Record<RoundId, () => Promise<string>> = {
      none: () => cacheAside("none"),
      local: () => local.run("report", () => cacheAside("local")),
      respite: () => protectedFn(),
    };

    for (const round of ROUNDS) {
      await rounds.get(round.id)!.promise;
      const latencies = await Promise.all(
        Array.from({ length: callers }, async () => {
          const t0 = performance.now();
          const value = await call[round.id]();
          if (!value.includes("quarterly")) throw new Error("wrong value");
          return performance.now() - t0;
        }),
      );
      await redis.send(
        "RPUSH",
        `${ns}results:${round.id}`,
        JSON.stringify(latencies),
      );
    }
    await redis.send("INCRBY", `${ns}warnings`, warned);
    await unsubscribe();
  } finally {
    await redis.close();
  }
}

// ------------------------------------------------------------------ main

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)];
}

function fmtMs(ms: number): string {
  return ms >= 1_000
    ? `${(ms / 1_000).toFixed(2)} s`
    : `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
}

async function main() {
  const processes = flag("processes", 5);
  const callers = flag("callers", 20);
  const computeMs = flag("compute", 1_000);
  const started = performance.now();
  const server: RedisServer = await sharedRedis();
  const ns = `respite:demo:${Date.now()}:`;
  let redis: RedisClient | null = null;
  let blocking: RedisClient | null = null;
  const procs: Proc[] = [];
  try {
    redis = await connect(server.url);
    blocking = await redis.duplicate({ blocking: true });
    console.log(
      `respite demo: a cache stampede on ${server.url}${
        server.external ? " (REDIS_URL)" : " (throwaway redis-server)"
      }`,
    );
    console.log(
      `  ${processes} processes × ${callers} concurrent callers, an expensive function of ~${
        fmtMs(computeMs)
      }, a key that has just expired`,
    );
    console.log(`  starting ${processes} worker processes…`);
    const self = new URL(import.meta.url).pathname;
    for (let i = 0; i < processes; i++) {
      const [cmd, args] = runArgs(self, [
        "--worker",
        server.url,
        ns,
        String(callers),
        String(computeMs),
      ]);
      procs.push(spawn(cmd, args, { output: "inherit" }));
    }
    const deadline = Date.now() + 60_000;
    while (Number(await redis.send("GET", `${ns}ready`) ?? 0) < processes) {
      if (Date.now() > deadline) throw new Error("workers did not start");
      await sleep(20);
    }

    const rows: string[][] = [];
    for (const round of ROUNDS) {
      // The key "just expired": it existed, with a 1 ms lifetime.
      const key = round.id === "respite"
        ? `respite:cache:{${ns}report:respite}`
        : `${ns}report:${round.id}`;
      await redis.send("SET", key, "expired", "PX", 1);
      await sleep(5);
      const t0 = performance.now();
      await redis.send("PUBLISH", `${ns}go`, round.id);
      const latencies: number[] = [];
      for (let i = 0; i < processes; i++) {
        const got = await blocking.send<[string, string] | null>(
          "BLPOP",
          `${ns}results:${round.id}`,
          30,
        );
        if (got === null) throw new Error(`round ${round.id} timed out`);
        latencies.push(...JSON.parse(got[1]) as number[]);
      }
      const wall = performance.now() - t0;
      latencies.sort((a, b) => a - b);
      const runs = Number(await redis.send("GET", `${ns}runs:${round.id}`));
      const row = [
        `${rows.length + 1}. ${round.title}`,
        String(runs),
        String(latencies.length),
        fmtMs(percentile(latencies, 0.5)),
        fmtMs(percentile(latencies, 0.99)),
        fmtMs(wall),
      ];
      rows.push(row);
      console.log(`  round ${row[0]}: done`);
    }
    for (const p of procs) await p.exited;
    const warnings = Number(await redis.send("GET", `${ns}warnings`) ?? 0);

    const head = [
      "round",
      "expensive fn ran",
      "callers",
      "p50",
      "p99",
      "round took",
    ];
    const widths = head.map((h, i) =>
      Math.max(h.length, ...rows.map((r) => r[i].length))
    );
    const line = (cells: string[]) =>
      cells.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))
        .join("   ");
    console.log("");
    console.log(line(head));
    console.log(widths.map((w) => "─".repeat(w)).join("   "));
    for (const r of rows) console.log(line(r));
    console.log("");
    console.log(
      `The expensive function ran ${rows[0][1]}× without protection, ${
        rows[1][1]
      }× with in-process deduplication (once per process), and ${
        rows[2][1]
      }× with respite (once for the whole fleet).`,
    );
    console.log(
      "Callers wait about as long in every round because this stand-in for a query sleeps; " +
        "what changes is how many times it ran, i.e. the load a stampede puts on your database.",
    );
    if (warnings > 0) {
      console.log(
        `The ${warnings} "… not cached." line${
          warnings === 1 ? "" : "s"
        } above came from a server that did not have respite's Lua scripts yet: ` +
          "each was sent once with EVAL, which loads it. They are harmless when each appears once per process.",
      );
    }
    console.log(
      `Finished in ${
        fmtMs(performance.now() - started)
      } (${Deno.build.os}, deno ${Deno.version.deno}).`,
    );
  } finally {
    for (const p of procs) p.kill("SIGKILL");
    if (redis !== null) {
      const keys = [
        `${ns}ready`,
        `${ns}warnings`,
        ...ROUNDS.flatMap((r) => [
          `${ns}runs:${r.id}`,
          `${ns}report:${r.id}`,
          `${ns}results:${r.id}`,
        ]),
        `respite:cache:{${ns}report:respite}`,
      ];
      await redis.send("DEL", ...keys).catch(() => {});
      await redis.close();
    }
    await blocking?.close();
    await server.stop();
  }
}

if (Deno.args[0] === "--worker") {
  const [, url, ns, callers, computeMs] = Deno.args;
  await worker(url, ns, Number(callers), Number(computeMs));
} else {
  await main();
}
