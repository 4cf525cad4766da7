/**
 * Coherence benchmark for `cached`'s memory tier: how long after a write the
 * old value is gone from the in-process tiers of 4 other processes.
 *
 * 4 worker processes each hold one cached function (`memory` on) whose entry
 * they have just served from memory. This process then changes the entry,
 * one of three ways, interleaved write by write:
 *
 * - `respite set()`: `fn.set()` of a cached function on the same key, here
 *   (another process than the 4);
 * - `raw SET`: a plain `SET ... KEEPTTL` of the entry's own bytes, from a
 *   connection that is not respite's `cached` (what another service does);
 * - `raw DEL`: a plain `DEL` of the entry, from that connection.
 *
 * Each worker polls its own tier without I/O (`fn.memory.entries`, the
 * number of entries the tier holds: 1 until the invalidation has dropped
 * it) and notes the time it saw 0. The figure per write is the time from
 * just before the write was sent to the last of the 4 tiers dropping the
 * entry (times from `performance.timeOrigin + performance.now()` in each
 * process: one machine, one clock). Between polls a worker waits for a
 * zero timeout, which lets its event loop read the tracking socket; the
 * median interval between polls is printed (the probe's own resolution).
 *
 * Usage: deno task bench:coherence [--writes 200] [--json]
 * `--writes` is per kind of write. With --json the table goes to stderr
 * and the shared JSON document (`_bench_json.ts`) to stdout. With
 * REDIS_URL set, that server is used instead of a throwaway one.
 */

import { cached, connect, type RedisClient } from "../mod.ts";
import { sharedRedis } from "../testing/redis.ts";
import { type Proc, runArgs, scriptArgs, spawn } from "../testing/proc.ts";
import {
  benchDoc,
  type BenchRow,
  jsonWanted,
  median,
  printJson,
  redisVersion,
} from "./_bench_json.ts";
import { textTable } from "./_text_table.ts";

const PROCESSES = 4;
const KINDS = ["respite set()", "raw SET", "raw DEL"] as const;
type Kind = typeof KINDS[number];

const log = (s: string) => console.error(s);
/** Milliseconds since the epoch, sub-millisecond, comparable across processes. */
const clock = () => performance.timeOrigin + performance.now();

function option(name: string, fallback: number): number {
  const args = Deno.args;
  const i = args.indexOf(`--${name}`);
  if (i === -1) return fallback;
  const n = Number(args[i + 1]);
  if (!Number.isInteger(n) || n <= 0) {
    throw new RangeError(`--${name} needs a positive integer`);
  }
  return n;
}

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)];

/** The cached function every process uses for the one key. */
function theFunction(redis: RedisClient, ns: string, id: string) {
  let n = 0;
  return cached(() => ({ by: id, n: ++n }), {
    redis,
    key: `${ns}v`,
    ttl: 600_000,
    memory: { maxEntries: 10 },
  });
}

/**
 * A worker: `--worker <url> <ns> <id>`. On each `arm` command
 * (BLPOP on its own list) it reads the value until it is served from
 * memory, reports it is armed, then polls its tier, without I/O, until the
 * entry is gone, and reports when.
 */
async function worker(url: string, ns: string, id: string) {
  const redis = await connect(url);
  const blocking = await redis.duplicate({ blocking: true });
  const f = theFunction(redis, ns, id);
  try {
    await redis.send("INCR", `${ns}ready`);
    for (;;) {
      const got = await blocking.send<[string, string] | null>(
        "BLPOP",
        `${ns}cmd:${id}`,
        120,
      );
      if (got === null || got[1] === "exit") return;
      // Armed: the entry is in the tier and was just served from it.
      const deadline = Date.now() + 10_000;
      for (;;) {
        const hits = f.memory?.hits ?? 0;
        await f();
        if ((f.memory?.hits ?? 0) > hits) break;
        if (Date.now() > deadline) throw new Error("never served from memory");
      }
      await redis.send("RPUSH", `${ns}armed`, id);
      // Poll the tier, no I/O: the tracking connection's push drops it.
      // A zero timeout between polls lets the event loop read the socket.
      const start = clock();
      let polls = 0;
      const giveUp = Date.now() + 10_000;
      while (f.memory!.entries > 0) {
        await new Promise((r) => setTimeout(r, 0));
        polls++;
        if (Date.now() > giveUp) throw new Error("the entry never went");
      }
      const seen = clock();
      const interval = polls === 0 ? 0 : (seen - start) / polls;
      await redis.send("RPUSH", `${ns}seen`, `${id} ${seen} ${interval}`);
    }
  } finally {
    await blocking.close();
    await redis.close();
  }
}

async function main() {
  const writes = option("writes", 200);
  const server = await sharedRedis();
  const ns = `respite:bench:coherence:${Date.now()}:`;
  const redis = await connect(server.url);
  const raw = await connect(server.url); // the "other service"
  const blocking = await redis.duplicate({ blocking: true });
  const procs: Proc[] = [];
  const self = new URL(import.meta.url).pathname;
  try {
    const version = redisVersion(await redis.send<string>("INFO", "server"));
    log(
      `redis ${version} at ${server.url}; deno ${Deno.version.deno}; ${navigator.hardwareConcurrency} CPUs; ${PROCESSES} processes; ${writes} writes per kind`,
    );
    for (let i = 0; i < PROCESSES; i++) {
      const [cmd, args] = runArgs(self, [
        "--worker",
        server.url,
        ns,
        String(i),
      ]);
      procs.push(spawn(cmd, args, { output: "inherit" }));
    }
    let exited = 0;
    for (const p of procs) p.exited.then(() => exited++);
    const deadline = Date.now() + 60_000;
    while (Number(await redis.send("GET", `${ns}ready`) ?? 0) < PROCESSES) {
      if (Date.now() > deadline || exited > 0) {
        throw new Error("workers did not start");
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    // Memory off here: this process only writes.
    const writer = cached(() => ({ by: "writer", n: 0 }), {
      redis,
      key: `${ns}v`,
      ttl: 600_000,
    });
    const entryKey = writer.redisKey();
    const all: Record<Kind, number[]> = {
      "respite set()": [],
      "raw SET": [],
      "raw DEL": [],
    };
    const each: Record<Kind, number[]> = {
      "respite set()": [],
      "raw SET": [],
      "raw DEL": [],
    };
    const intervals: number[] = [];
    let n = 0;
    // Write 0 of each kind warms up; not counted.
    for (let w = 0; w <= writes; w++) {
      for (const kind of KINDS) {
        for (let i = 0; i < PROCESSES; i++) {
          await redis.send("RPUSH", `${ns}cmd:${i}`, "arm");
        }
        for (let i = 0; i < PROCESSES; i++) {
          const got = await blocking.send("BLPOP", `${ns}armed`, 30);
          if (got === null) throw new Error("a worker did not arm");
        }
        const bytes = kind === "raw SET"
          ? await raw.send<string>("GET", entryKey)
          : null;
        const t0 = clock();
        if (kind === "respite set()") {
          await writer.set([], { by: "writer", n: ++n });
        } else if (kind === "raw SET") {
          await raw.send("SET", entryKey, bytes!, "KEEPTTL");
        } else await raw.send("DEL", entryKey);
        const seen: number[] = [];
        for (let i = 0; i < PROCESSES; i++) {
          const got = await blocking.send<[string, string] | null>(
            "BLPOP",
            `${ns}seen`,
            30,
          );
          if (got === null) throw new Error(`${kind}: a tier kept the entry`);
          const [, at, interval] = got[1].split(" ");
          seen.push(Number(at) - t0);
          intervals.push(Number(interval));
        }
        if (w === 0) continue;
        all[kind].push(Math.max(...seen));
        each[kind].push(...seen);
      }
    }
    for (let i = 0; i < PROCESSES; i++) {
      await redis.send("RPUSH", `${ns}cmd:${i}`, "exit");
    }
    for (const p of procs) await p.exited;
    const rows: string[][] = [];
    const benchRows: BenchRow[] = [];
    for (const kind of KINDS) {
      const a = [...all[kind]].sort((x, y) => x - y);
      const e = [...each[kind]].sort((x, y) => x - y);
      rows.push([
        kind,
        String(a.length),
        percentile(a, 0.5).toFixed(2),
        percentile(a, 0.99).toFixed(2),
        a[a.length - 1].toFixed(2),
        percentile(e, 0.5).toFixed(2),
        percentile(e, 0.99).toFixed(2),
      ]);
      for (const [p, q] of [["p50", 0.5], ["p99", 0.99]] as const) {
        benchRows.push({
          group: `coherence ${p}, gone from all ${PROCESSES} tiers`,
          library: kind,
          median: percentile(a, q),
          unit: "ms",
        });
      }
    }
    const table = textTable(
      [
        "write",
        "writes",
        `all ${PROCESSES} p50 ms`,
        `all ${PROCESSES} p99 ms`,
        "max ms",
        "each p50 ms",
        "each p99 ms",
      ],
      rows,
    );
    const out = jsonWanted() ? log : (s: string) => console.log(s);
    out(
      `\nCoherence: ms from a write to the old value gone from the memory tiers of ${PROCESSES} processes (${writes} writes per kind; a worker polled its tier every ${
        median(intervals.filter((x) => x > 0)).toFixed(2)
      } ms, median)\n`,
    );
    out(table);
    out(
      `\nredis ${version}, deno ${Deno.version.deno}, ${Deno.build.os}/${Deno.build.arch}, ${navigator.hardwareConcurrency} CPUs, ${
        new Date().toISOString().slice(0, 10)
      }`,
    );
    if (jsonWanted()) {
      printJson(benchDoc({
        benchmark: "coherence",
        command: `deno task bench:coherence ${Deno.args.join(" ")}`.trim(),
        runtime: { redis: version },
        rounds: writes,
        rows: benchRows,
        ratios: [],
        details: {
          processes: PROCESSES,
          writesPerKind: writes,
          pollIntervalMs: median(intervals.filter((x) => x > 0)),
        },
      }));
    }
  } finally {
    for (const p of procs) p.kill("SIGKILL");
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
    await blocking.close();
    await raw.close();
    await redis.close();
    await server.stop();
  }
}

if (Deno.args[0] === "--worker") {
  const [, url, ns, id] = scriptArgs();
  await worker(url, ns, id);
} else {
  await main();
}
