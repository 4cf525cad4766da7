/**
 * What the idle check (`idleCheck`) costs: the latency of the first command
 * after an idle spell, with the check on (a PING goes first: one extra round
 * trip) and off, and of a command on a busy connection (no check), against
 * one throwaway redis-server on loopback, in one run. Each round: both
 * clients idle past the threshold, then one GET each (alternating which goes
 * first); the median and p90 over the rounds are printed.
 *
 * Then the thaw itself, `--thaws N` times (default 5): the worker of
 * tests/client_thaw_test.ts, run with this runtime, frozen (SIGSTOP) for
 * 4 s against a server with `timeout 2`, issues an INCR at the resume; it
 * prints how long that INCR took (the PING, the close, the reconnect and the
 * INCR on the new connection).
 *
 * Usage: deno run -A scripts/bench_idle_check.ts [--rounds N] [--thaws N]
 *        bun scripts/bench_idle_check.ts [--rounds N] [--thaws N]
 * With --json the tables go to stderr and the shared JSON document
 * (`_bench_json.ts`: median latencies; the ratio is check off ÷ check on
 * after an idle spell) to stdout once the thaws are done.
 */

import process from "node:process";
import { connect } from "../mod.ts";
import { startRedis } from "../testing/redis.ts";
import { runArgs, spawn } from "../testing/proc.ts";
import {
  benchDoc,
  type BenchRow,
  jsonWanted,
  median,
  printJson,
  ratiosOf,
} from "./_bench_json.ts";

const args = process.argv.slice(2);
function option(name: string, fallback: number): number {
  const at = args.indexOf(name);
  const n = at === -1 ? fallback : Number(args[at + 1]);
  if (!(n >= 0)) throw new RangeError(`${name} needs a number >= 0`);
  return n;
}
const ROUNDS = option("--rounds", 200);
const THAWS = option("--thaws", 5);
const THRESHOLD = 20; // ms: short, so the run is short; the cost is the same
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const JSON_OUT = jsonWanted();
const out = JSON_OUT
  ? (s: string) => console.error(s)
  : (s: string) => console.log(s);
const jsonRows: BenchRow[] = [];

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
  out(`${runtime}, ${ROUNDS} rounds, GET latency in µs (loopback):`);
  out(
    "| after idle, check on | after idle, check off | busy (no check) |",
  );
  out("| --- | --- | --- |");
  const cell = (xs: number[]) =>
    `median ${q(xs, 0.5).toFixed(0)}, p90 ${q(xs, 0.9).toFixed(0)}`;
  out(
    `| ${cell(times.on)} | ${cell(times.off)} | ${cell(times.busy)} |`,
  );
  for (const [library, xs] of Object.entries(times)) {
    jsonRows.push({
      group: "GET latency",
      library,
      median: median(xs),
      unit: "µs",
    });
  }
} finally {
  await server.stop();
}

const worker = new URL("../tests/fixtures/thaw_worker.ts", import.meta.url)
  .pathname;
const thawServer = await startRedis({ args: ["--timeout", "2"] });
try {
  const r = await connect(thawServer.url);
  const took: number[] = [];
  for (let i = 0; i < THAWS; i++) {
    const prefix = `respite:bench:thaw:${i}:`;
    const [cmd, argv] = runArgs(worker, [String(thawServer.port), prefix]);
    const child = spawn(cmd, argv);
    while (await r.send("EXISTS", `${prefix}ready`) === 0) await sleep(10);
    child.kill("SIGSTOP");
    await sleep(4_000);
    child.kill("SIGCONT");
    await child.exited;
    const out = JSON.parse((await child.stdout()).trim().split("\n").pop()!);
    if (out.reply !== 2) throw new Error(`the thawed INCR: ${out.error}`);
    took.push(out.ms);
  }
  await r.close();
  if (THAWS > 0) {
    out(
      `thawed INCR after a 4 s freeze (timeout 2), ${THAWS} runs, ms: ${
        took.map((t) => t.toFixed(1)).join(", ")
      }`,
    );
  }
  if (THAWS > 0) {
    jsonRows.push({
      group: "thawed INCR",
      library: "respite",
      median: median(took),
      unit: "ms",
      samples: took,
    });
  }
} finally {
  await thawServer.stop();
}

if (JSON_OUT) {
  printJson(benchDoc({
    benchmark: "idle-check",
    command: `bench_idle_check.ts ${args.join(" ")}`,
    rounds: ROUNDS,
    rows: jsonRows,
    ratios: ratiosOf(jsonRows, "GET latency", "on", ["off"], {
      better: "lower",
      chart: false,
    }),
    details: { thresholdMs: THRESHOLD, thaws: THAWS },
  }));
}
