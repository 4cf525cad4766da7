/**
 * Bring-your-own-client benchmark: respite's `Lock` and `cached` on
 * respite's own client (passed through as it is) and on an app's ioredis and
 * node-redis clients (through their adapters), against one throwaway
 * redis-server, rounds interleaved; medians. Uncontended `withLock` cycles
 * (acquire + release, 100 concurrent workers on their own names) and cached
 * hits (1,000 concurrent calls, each of its own warm key: one GET each).
 *
 * Usage: deno run -A scripts/bench_byo.ts [--rounds N] [--seconds S] [--base PATH] [--json]
 * With --json the table goes to stderr and the shared JSON document
 * (`_bench_json.ts`; the ratios are respite's own client against each
 * adapter) to stdout.
 * `--base` also loads respite from another checkout's mod.ts (a revision
 * before this change) and adds its row, "respite (base)", measured in the
 * same interleaved rounds, so load on the machine hits both alike.
 */
import { Redis as IORedis } from "ioredis";
import { createClient } from "redis";
import { startRedis } from "../testing/redis.ts";
import type * as Respite from "../mod.ts";

function option(name: string, fallback: string): string {
  const i = Deno.args.indexOf(name);
  return i === -1 ? fallback : Deno.args[i + 1];
}
import { benchDoc, type BenchRow, printJson, ratiosOf } from "./_bench_json.ts";
const ROUNDS = Number(option("--rounds", "5"));
const SECONDS = Number(option("--seconds", "1"));
const basePath = option("--base", "");
const here = await import("../mod.ts") as typeof Respite;
const base = basePath === ""
  ? null
  : await import(`file://${basePath}`) as typeof Respite;

const server = await startRedis();
const url = server.url;
const respite = await here.connect(url);
const ioredis = new IORedis(url);
const nodeRedis = createClient({ url });
await nodeRedis.connect();
const kinds: Array<[string, object, typeof Respite]> = [
  ["respite", respite, here],
  ["ioredis", ioredis, here],
  ["node-redis", nodeRedis, here],
];
const baseClient = base === null ? null : await base.connect(url);
if (base !== null) kinds.unshift(["respite (base)", baseClient!, base]);

async function lockCycles(
  redis: object,
  tag: string,
  { withLock }: typeof Respite,
): Promise<number> {
  let n = 0;
  const until = performance.now() + SECONDS * 1_000;
  await Promise.all(Array.from({ length: 100 }, async (_, w) => {
    const run = withLock(async () => {}, {
      redis: redis as Respite.RedisClient,
      name: `bench:byo:${tag}:${w}`,
      ttl: 10_000,
      autoRenew: false,
      fencing: false,
    });
    while (performance.now() < until) {
      await run();
      n++;
    }
  }));
  return n / SECONDS;
}

async function cachedHits(
  redis: object,
  tag: string,
  { cached }: typeof Respite,
): Promise<number> {
  const f = cached((i: number) => Promise.resolve(i), {
    redis: redis as Respite.RedisClient,
    key: (i) => `bench:byo:${tag}:hit:${i}`,
    ttl: 600_000,
  });
  const keys = Array.from({ length: 1_000 }, (_, i) => i);
  await Promise.all(keys.map((i) => f(i)));
  let n = 0;
  const until = performance.now() + SECONDS * 1_000;
  while (performance.now() < until) {
    await Promise.all(keys.map((i) => f(i)));
    n += 1_000;
  }
  await f.idle();
  return n / SECONDS;
}

const results = new Map<string, { lock: number[]; hit: number[] }>();
for (let r = 0; r < ROUNDS; r++) {
  for (const [name, redis, lib] of kinds) {
    const row = results.get(name) ?? { lock: [], hit: [] };
    const tag = name.replace(/\W/g, "");
    row.lock.push(await lockCycles(redis, tag, lib));
    row.hit.push(await cachedHits(redis, tag, lib));
    results.set(name, row);
  }
}
const JSON_OUT = Deno.args.includes("--json");
const out = JSON_OUT
  ? (s: string) => console.error(s)
  : (s: string) => console.log(s);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
out(
  `Deno ${Deno.version.deno}, ${ROUNDS} rounds × ${SECONDS} s, medians${
    base === null ? "" : ` (base: ${basePath})`
  }:`,
);
out(
  "| client | withLock cycles/s (100 workers) | cached hits/s (1,000 concurrent, 1,000 keys) |",
);
out("| --- | --- | --- |");
for (const [name, row] of results) {
  out(
    `| ${name} | ${Math.round(median(row.lock))} | ${
      Math.round(median(row.hit))
    } |`,
  );
}
if (JSON_OUT) {
  const rows: BenchRow[] = [];
  for (const [name, row] of results) {
    rows.push(
      {
        group: "byo withLock cycles",
        library: name,
        median: median(row.lock),
        unit: "cycles/s",
        samples: row.lock,
      },
      {
        group: "byo cached hits",
        library: name,
        median: median(row.hit),
        unit: "hits/s",
        samples: row.hit,
      },
    );
  }
  const others = [...results.keys()].filter((n) => n !== "respite");
  printJson(benchDoc({
    benchmark: "byo",
    command: `deno run -A scripts/bench_byo.ts ${Deno.args.join(" ")}`,
    rounds: ROUNDS,
    rows,
    ratios: ["byo withLock cycles", "byo cached hits"].flatMap((g) =>
      ratiosOf(rows, g, "respite", others, { chart: false })
    ),
    details: { seconds: SECONDS },
  }));
}
await respite.close();
await baseClient?.close();
await ioredis.quit();
await nodeRedis.close();
await server.stop();
