/**
 * What the idle check (`idleCheck`) costs: the latency of the first command
 * after an idle spell, with the check on (a PING goes first: one extra round
 * trip) and off, and of a command on a busy connection (no check), against
 * one throwaway redis-server on loopback, in one run. Each round: both
 * clients idle past the threshold, then one GET each (alternating which goes
 * first); the median and p90 over the rounds are printed.
 *
 * Usage: deno run -A scripts/bench_idle_check.ts [--rounds N]
 *        bun scripts/bench_idle_check.ts [--rounds N]
 */

import process from "node:process";
import { connect } from "../mod.ts";
import { startRedis } from "../testing/redis.ts";

const args = process.argv.slice(2);
const at = args.indexOf("--rounds");
const ROUNDS = at === -1 ? 200 : Number(args[at + 1]);
if (!(ROUNDS > 0)) throw new RangeError("--rounds needs a positive number");
const THRESHOLD = 20; // ms: short, so the run is short; the cost is the same
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const server = await startRedis();
try {
  const on = await connect({ url: server.url, idleCheck: THRESHOLD });
  const off = await connect({ url: server.url, idleCheck: false });
  await on.send("SET", "respite:bench:idle", "x");
  const times = {
    on: [] as number[],
    off: [] as number[],
    busy: [] as number[],
  };
  const get = async (c: typeof on) => {
    const t = performance.now();
    await c.send("GET", "respite:bench:idle");
    return (performance.now() - t) * 1000;
  };
  for (let i = 0; i < 20; i++) { // warm up
    await get(on);
    await get(off);
  }
  for (let i = 0; i < ROUNDS; i++) {
    await sleep(THRESHOLD + 5);
    if (i % 2 === 0) {
      times.on.push(await get(on));
      times.off.push(await get(off));
    } else {
      times.off.push(await get(off));
      times.on.push(await get(on));
    }
    times.busy.push(await get(on)); // right after: not idle, no check
  }
  await on.close();
  await off.close();
  const q = (xs: number[], p: number) =>
    [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * p)];
  const runtime = "Deno" in globalThis
    ? `Deno ${
      (globalThis as unknown as { Deno: { version: { deno: string } } }).Deno
        .version.deno
    }`
    : `Bun ${
      (globalThis as unknown as { Bun: { version: string } }).Bun.version
    }`;
  console.log(`${runtime}, ${ROUNDS} rounds, GET latency in µs (loopback):`);
  console.log(
    "| after idle, check on | after idle, check off | busy (no check) |",
  );
  console.log("| --- | --- | --- |");
  const cell = (xs: number[]) =>
    `median ${q(xs, 0.5).toFixed(0)}, p90 ${q(xs, 0.9).toFixed(0)}`;
  console.log(
    `| ${cell(times.on)} | ${cell(times.off)} | ${cell(times.busy)} |`,
  );
} finally {
  await server.stop();
}
