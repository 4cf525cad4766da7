/**
 * Memory benchmark: what respite keeps on the JavaScript heap, measured
 * after a forced garbage collection, on the runtime running this script.
 *
 * - bytes per idle client: N `connect()`ed clients, heap after minus heap
 *   before, divided by N;
 * - bytes per pending command: one client, its server paused with
 *   `CLIENT PAUSE … ALL` from another connection, N GETs issued and not yet
 *   answered (heap while they are in flight minus heap before, / N);
 * - bytes per held lock: N `Lock`s with `autoRenew`, each acquired and held
 *   (its renewal timer armed), / N;
 * - no growth: 100,000 operations of each kind (GET/SET, lock
 *   acquire+release cycles, `cached` hits) after a warm-up: the heap after
 *   a forced GC at the end within 10% of the heap at the start: PASS/FAIL
 *   (the process exits 1 on a FAIL).
 *
 * Only the JS heap is counted (sockets' native buffers are not), so the
 * figures are what respite's own objects cost.
 *
 * Usage: deno task bench:memory [--json]            (Deno; --v8-flags=--expose-gc)
 *        bun run scripts/bench_memory.ts [--json]   (Bun; Bun.gc(true))
 * With --json the table goes to stderr and the shared JSON document
 * (`_bench_json.ts`) to stdout.
 */

import process from "node:process";
import { cached, connect, Lock, type RedisClient } from "../mod.ts";
import { startRedis } from "../testing/redis.ts";
import {
  args,
  benchDoc,
  type BenchRow,
  jsonWanted,
  printJson,
  redisVersion,
} from "./_bench_json.ts";

// deno-lint-ignore no-explicit-any
const g = globalThis as any;
const RUNTIME = g.Bun ? "Bun" : "Deno";
const JSON_OUT = jsonWanted();
const log = (s: string) => console.error(s);
const out = JSON_OUT ? log : (s: string) => console.log(s);
const CLIENTS = 200;
const PENDING = 20_000;
const LOCKS = 1_000;
const OPS = 100_000;
const GROWTH_LIMIT = 0.1;

/** Forces a full collection (twice: finalizers may free more). */
async function gc(): Promise<void> {
  for (let i = 0; i < 2; i++) {
    if (g.Bun) g.Bun.gc(true);
    else if (typeof g.gc === "function") g.gc();
    else {
      throw new Error(
        "no forced GC: run with --v8-flags=--expose-gc (deno task bench:memory)",
      );
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function heap(): Promise<number> {
  await gc();
  return process.memoryUsage().heapUsed;
}

/** Heap growth per item while `hold` keeps `n` items alive. */
async function perItem(
  n: number,
  hold: () => Promise<() => Promise<void>>,
): Promise<number> {
  const before = await heap();
  const release = await hold();
  const during = await heap();
  await release();
  return (during - before) / n;
}

const server = await startRedis();
const admin = await connect(server.url);
const rows: BenchRow[] = [];
const growth: {
  what: string;
  start: number;
  end: number;
  change: number;
  pass: boolean;
}[] = [];
try {
  const version = redisVersion(await admin.send<string>("INFO", "server"));
  await admin.send("CONFIG", "SET", "maxclients", "10000");

  // Warm the code paths once, so compiled code is not counted below.
  {
    const c = await connect(server.url);
    for (let i = 0; i < 1_000; i++) await c.send("GET", "respite:mem:k");
    await c.close();
  }

  const idle = await perItem(CLIENTS, async () => {
    const cs: RedisClient[] = [];
    for (let i = 0; i < CLIENTS; i++) cs.push(await connect(server.url));
    return async () => {
      for (const c of cs) await c.close();
    };
  });
  rows.push({
    group: "memory",
    library: "idle client (connect())",
    median: idle,
    unit: "bytes",
  });

  const busy = await connect({ url: server.url, maxQueue: PENDING * 2 });
  await busy.send("SET", "respite:mem:k", "v");
  const pending = await perItem(PENDING, async () => {
    await admin.send("CLIENT", "PAUSE", 60_000, "ALL");
    const ps: Promise<unknown>[] = [];
    for (let i = 0; i < PENDING; i++) {
      ps.push(busy.send("GET", "respite:mem:k"));
    }
    await new Promise((r) => setTimeout(r, 50)); // let them be written
    return async () => {
      await admin.send("CLIENT", "UNPAUSE");
      const replies = await Promise.all(ps);
      if (replies.some((r) => r !== "v")) throw new Error("wrong reply");
    };
  });
  rows.push({
    group: "memory",
    library: "pending command (GET, server paused)",
    median: pending,
    unit: "bytes",
  });

  const held = await perItem(LOCKS, async () => {
    const locks: Lock[] = [];
    for (let i = 0; i < LOCKS; i++) {
      const lock = new Lock(busy, `respite:mem:lock:${i}`, {
        ttl: 30_000,
        autoRenew: true,
      });
      if (!await lock.acquire()) throw new Error("not acquired");
      locks.push(lock);
    }
    return async () => {
      for (const l of locks) await l.release();
    };
  });
  rows.push({
    group: "memory",
    library: "held lock (Lock, autoRenew)",
    median: held,
    unit: "bytes",
  });

  // ---- no growth over OPS operations of each kind (100 callers at once)
  const run = async (ops: number, op: (i: number) => Promise<unknown>) => {
    let next = 0;
    await Promise.all(Array.from({ length: 100 }, async () => {
      while (next < ops) await op(next++);
    }));
  };
  const hit = cached((_i: number) => Promise.resolve({ a: 1, b: "two" }), {
    redis: busy,
    key: (i: number) => `respite:mem:hit:${i % 100}`,
    ttl: 600_000,
  });
  const kinds: [string, (i: number) => Promise<unknown>][] = [
    [
      "GET/SET",
      (i) =>
        i % 2
          ? busy.send("GET", "respite:mem:k")
          : busy.send("SET", "respite:mem:k", "v"),
    ],
    ["lock cycles", async (i) => {
      const lock = new Lock(busy, `respite:mem:cycle:${i % 100}`, {
        ttl: 10_000,
        autoRenew: true,
      });
      if (!await lock.acquire()) throw new Error("not acquired");
      await lock.release();
    }],
    ["cached hits", (i) => hit(i)],
  ];
  for (const [what, op] of kinds) {
    await run(OPS / 10, op); // warm-up
    const start = await heap();
    await run(OPS, op);
    const end = await heap();
    const change = (end - start) / start;
    growth.push({ what, start, end, change, pass: change <= GROWTH_LIMIT });
    log(`${what}: ${start} -> ${end} bytes (${(change * 100).toFixed(1)}%)`);
  }
  await busy.send("DEL", "respite:mem:k");
  await busy.close();

  const kb = (n: number) => `${(n / 1024).toFixed(0)} KiB`;
  out(
    `Memory, ${RUNTIME} ${
      g.Bun ? g.Bun.version : g.Deno.version.deno
    }, redis-server ${version}, JS heap after forced GC, ${
      new Date().toISOString().slice(0, 10)
    }`,
  );
  for (const r of rows) {
    out(`  ${r.library.padEnd(38)} ${Math.round(r.median)} bytes each`);
  }
  for (const x of growth) {
    out(
      `  ${`${OPS.toLocaleString("en-US")} ${x.what}`.padEnd(38)} ${
        kb(x.start)
      } -> ${kb(x.end)} (${x.change >= 0 ? "+" : ""}${
        (x.change * 100).toFixed(1)
      }%, limit +${GROWTH_LIMIT * 100}%) ${x.pass ? "PASS" : "FAIL"}`,
    );
  }
  if (JSON_OUT) {
    printJson(benchDoc({
      benchmark: `memory-${RUNTIME.toLowerCase()}`,
      command: g.Bun
        ? `bun run scripts/bench_memory.ts ${args().join(" ")}`
        : `deno task bench:memory ${args().join(" ")}`,
      runtime: { redis: version },
      rounds: 1,
      rows,
      ratios: [],
      details: {
        counts: { clients: CLIENTS, pending: PENDING, locks: LOCKS, ops: OPS },
        growth,
        growthLimit: GROWTH_LIMIT,
      },
    }));
  }
  if (growth.some((x) => !x.pass)) process.exitCode = 1;
} finally {
  await admin.close();
  await server.stop();
}
