/**
 * Where one uncontended lock cycle's time goes: respite's `Lock` (fencing on
 * and off) beside the bare commands under it and beside the peers, one
 * worker, one throwaway redis-server, in one Deno process.
 *
 * Rows (µs per acquire + release, one awaited at a time):
 * - respite `Lock`, fencing on and off;
 * - the same two `EVALSHA`s sent bare (our acquire and unlock scripts): the
 *   floor for our scripts, without our lock logic;
 * - a plain `SET NX PX` and one compare-and-delete script (what
 *   redis-semaphore's `Mutex` sends);
 * - two `GET`s on respite and on ioredis (the round-trip floor of each
 *   client);
 * - node-redlock v4 and redis-semaphore's `Mutex` on ioredis.
 *
 * The rows are interleaved finely — blocks of `--block` cycles (default
 * 100), in an order rotated every round, for `--rounds` rounds (default
 * 150) — so that the shared machine's swings fall on every row alike; each
 * row's figure is the median of its blocks.
 *
 * Usage: deno run -A scripts/bench_lock_split.ts [--rounds N] [--block N]
 *   [--json]
 */

import { Redis as IORedis } from "ioredis";
import Redlock from "redlock";
import { Mutex } from "redis-semaphore";
import { connect, Lock } from "../mod.ts";
import { LOCK_SCRIPTS } from "../lib/lock/scripts.ts";
import { startRedis } from "../testing/redis.ts";
import {
  benchDoc,
  type BenchRow,
  jsonWanted,
  median,
  positiveOption,
  printJson,
  ratiosOf,
} from "./_bench_json.ts";

const ROUNDS = positiveOption("--rounds", 150);
const BLOCK = positiveOption("--block", 100);
const TTL = 10_000;
const JSON_OUT = jsonWanted();
const out = JSON_OUT
  ? (s: string) => console.error(s)
  : (s: string) => console.log(s);

const server = await startRedis();
const respite = await connect({ url: server.url, logger: null });
const io = new IORedis(server.url);
const redlock = new Redlock([io], { retryCount: -1 });

// Our scripts as the lock sends them, loaded for the bare rows.
const lua = (name: string) => LOCK_SCRIPTS.find((s) => s.name === name)!.lua;
const ACQUIRE = lua("ACQUIRE_SCRIPT");
const UNLOCK = lua("UNLOCK_SCRIPT");
const DEL_IF_EQUAL =
  `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;
const load = (lua: string) => respite.send<string>("SCRIPT", "LOAD", lua);
const [acquireSha, unlockSha, delSha] = await Promise.all(
  [ACQUIRE, UNLOCK, DEL_IF_EQUAL].map(load),
);

const p = "respite-bench:split:";
const lockOn = new Lock(respite, `${p}fenced`, { ttl: TTL });
const lockOff = new Lock(respite, `${p}plain`, { ttl: TTL, fencing: false });
const mutex = new Mutex(io, `${p}mutex`, {
  lockTimeout: TTL,
  acquireTimeout: 60_000,
});

const rows: Array<[string, () => Promise<unknown>]> = [
  ["respite Lock", async () => {
    await lockOn.acquire();
    await lockOn.release();
  }],
  ["respite Lock (fencing: false)", async () => {
    await lockOff.acquire();
    await lockOff.release();
  }],
  ["bare: our 2 scripts", async () => {
    await respite.send("EVALSHA", acquireSha, 2, `${p}k`, `${p}f`, "v", TTL, 1);
    await respite.send("EVALSHA", unlockSha, 1, `${p}k`, "v", `${p}w`);
  }],
  ["bare: our 2 scripts (no fence)", async () => {
    await respite.send("EVALSHA", acquireSha, 1, `${p}k2`, "v", TTL, 0);
    await respite.send("EVALSHA", unlockSha, 1, `${p}k2`, "v", `${p}w`);
  }],
  ["bare: SET NX PX + 1 script", async () => {
    await respite.send("SET", `${p}k3`, "v", "NX", "PX", TTL);
    await respite.send("EVALSHA", delSha, 1, `${p}k3`, "v");
  }],
  ["bare: 2 GET (respite)", async () => {
    await respite.send("GET", `${p}x`);
    await respite.send("GET", `${p}x`);
  }],
  ["bare: 2 GET (ioredis)", async () => {
    await io.get(`${p}x`);
    await io.get(`${p}x`);
  }],
  ["redlock v4", async () => {
    const held = await redlock.lock(`${p}redlock`, TTL);
    await held.unlock();
  }],
  ["redis-semaphore Mutex", async () => {
    await mutex.acquire();
    await mutex.release();
  }],
];

try {
  for (const [, cycle] of rows) for (let i = 0; i < 300; i++) await cycle();
  const blocks = new Map<string, number[]>(rows.map(([n]) => [n, []]));
  for (let round = 0; round < ROUNDS; round++) {
    const k = round % rows.length;
    for (const [name, cycle] of [...rows.slice(k), ...rows.slice(0, k)]) {
      const t0 = performance.now();
      for (let i = 0; i < BLOCK; i++) await cycle();
      blocks.get(name)!.push((performance.now() - t0) * 1000 / BLOCK);
    }
  }
  const results: BenchRow[] = rows.map(([name]) => ({
    group: "lock cycle, one worker",
    library: name,
    median: median(blocks.get(name)!),
    unit: "µs/cycle",
    samples: blocks.get(name)!,
  }));
  const fastest = Math.min(
    ...results.filter((r) =>
      !r.library.startsWith("respite") &&
      !r.library.startsWith("bare")
    ).map((r) => r.median),
  );
  out(
    `Lock cycle split, Deno ${Deno.version.deno}; medians of ${ROUNDS} rotated blocks of ${BLOCK} cycles (µs per acquire + release)`,
  );
  out(
    `${"row".padEnd(32)} ${"µs/cycle".padStart(9)} ${
      "× fastest peer".padStart(15)
    }`,
  );
  for (const r of results) {
    out(
      `${r.library.padEnd(32)} ${r.median.toFixed(1).padStart(9)} ${
        (fastest / r.median).toFixed(2).padStart(14)
      }×`,
    );
  }
  if (JSON_OUT) {
    printJson(benchDoc({
      benchmark: "lock-split",
      command: `deno run -A scripts/bench_lock_split.ts ${Deno.args.join(" ")}`,
      rounds: ROUNDS,
      rows: results,
      ratios: ["respite Lock", "respite Lock (fencing: false)"].flatMap((
        ours,
      ) =>
        ratiosOf(results, "lock cycle, one worker", ours, [
          "redlock v4",
          "redis-semaphore Mutex",
        ], { better: "lower", chart: false })
      ),
      details: { block: BLOCK, ttl: TTL },
    }));
  }
} finally {
  await respite.close();
  io.disconnect();
  await server.stop();
}
