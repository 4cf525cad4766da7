/**
 * Client benchmark: GET and SET, sequential (each awaited) and concurrent
 * (10,000 in flight), against one local redis-server.
 *
 * - Deno: respite vs ioredis vs node-redis (npm peers, dev-only).
 * - Bun (child process, `bench_client_bun.ts`): respite vs Bun's built-in
 *   `RedisClient`.
 * - `redis-benchmark` as the ceiling.
 * - Cluster rows (Deno): respite's `connectCluster` vs ioredis's `Cluster`
 *   on a throwaway 3-master Redis Cluster (the benchmark keys hash to one
 *   master, so this measures each client's routing on top of its pipeline;
 *   `--no-cluster` leaves them out).
 *
 * Every measurement is repeated for several rounds with the clients
 * interleaved; the table shows medians in ops/s and ratios against ioredis
 * (Deno) and Bun's client (Bun).
 *
 * Usage: deno task bench:client [--json] [--rounds N] [--seq N] [--batches N] [--no-bun] [--no-cluster]
 * With REDIS_URL set, that server is used instead of a throwaway one.
 */

import { Cluster as IOCluster, Redis as IORedis } from "ioredis";
import { createClient } from "redis";
import { connect } from "../lib/client/client.ts";
import { connectCluster } from "../lib/cluster/client.ts";
import { startCluster, type TestCluster } from "../testing/cluster.ts";
import { startRedis } from "../testing/redis.ts";
import {
  type BenchClient,
  type BenchPlan,
  type BenchResult,
  GET_KEY,
  median,
  runBench,
  SET_KEY,
  VALUE,
  type Workload,
  WORKLOADS,
} from "./_bench_client_common.ts";
import {
  benchDoc,
  type BenchRatio,
  type BenchRow,
  printJson,
  ratiosOf,
} from "./_bench_json.ts";

function flag(name: string): boolean {
  return Deno.args.includes(name);
}
function option(name: string, fallback: number): number {
  const i = Deno.args.indexOf(name);
  if (i === -1) return fallback;
  const n = Number(Deno.args[i + 1]);
  if (!Number.isInteger(n) || n <= 0) {
    throw new RangeError(`${name} needs a positive integer`);
  }
  return n;
}

const plan: BenchPlan = {
  rounds: option("--rounds", 15),
  seqOps: option("--seq", 3_000),
  inFlight: 10_000,
  batches: option("--batches", 3),
};
const wantJson = flag("--json");
const withBun = !flag("--no-bun");
const withCluster = !flag("--no-cluster");
const log = (s: string) => console.error(s);

const external = Deno.env.get("REDIS_URL");
const server = external ? null : await startRedis();
const url = external ?? server!.url;
const { hostname, port } = new URL(url);
const started = Date.now();
const cluster: TestCluster | null = withCluster ? await startCluster() : null;

try {
  const admin = await connect(url);
  await admin.send("SET", GET_KEY, VALUE);
  const serverVersion = String(
    /redis_version:(\S+)/.exec(String(await admin.send("INFO", "server")))
      ?.[1],
  );

  // ---- Deno half
  log(
    `Deno ${Deno.version.deno}: respite, ioredis, node-redis against ${url} ` +
      `(${plan.rounds} rounds)`,
  );
  const respite = await connect(url);
  const ioredis = new IORedis(url, { lazyConnect: true });
  await ioredis.connect();
  const raw = await rawPingPong(hostname, Number(port || 6379));
  const nodeRedis = createClient({ url });
  nodeRedis.on("error", (err: unknown) => log(`node-redis: ${err}`));
  await nodeRedis.connect();
  const denoClients: BenchClient[] = [
    {
      name: "respite",
      get: (k) => respite.send("GET", k),
      set: (k, v) => respite.send("SET", k, v),
      close: () => respite.close(),
    },
    {
      name: "ioredis",
      get: (k) => ioredis.get(k),
      set: (k, v) => ioredis.set(k, v),
      close: async () => {
        await ioredis.quit();
      },
    },
    {
      name: "node-redis",
      get: (k) => nodeRedis.get(k),
      set: (k, v) => nodeRedis.set(k, v),
      close: async () => {
        await nodeRedis.close();
      },
    },
    raw,
  ];
  if (cluster !== null) {
    const rc = await connectCluster(cluster.urls[0]);
    const ic = new IOCluster(
      cluster.nodes.map((n) => ({ host: "127.0.0.1", port: n.port })),
      { lazyConnect: true },
    );
    await ic.connect();
    await rc.send("SET", GET_KEY, VALUE);
    denoClients.splice(denoClients.length - 1, 0, {
      name: "respite (cluster)",
      get: (k) => rc.send("GET", k),
      set: (k, v) => rc.send("SET", k, v),
      close: () => rc.close(),
    }, {
      name: "ioredis Cluster",
      get: (k) => ic.get(k),
      set: (k, v) => ic.set(k, v),
      close: async () => {
        await ic.quit();
      },
    });
  }
  let deno: BenchResult[];
  try {
    deno = await runBench(
      denoClients,
      plan,
      (r) => log(`  deno: round ${r}/${plan.rounds} done`),
    );
  } finally {
    for (const c of denoClients) await c.close();
  }

  // ---- Bun half
  let bun: { bun: string; results: BenchResult[] } | null = null;
  if (withBun) {
    log(`Bun: respite, Bun.RedisClient (child process)`);
    const script = new URL("./bench_client_bun.ts", import.meta.url).pathname;
    const out = await new Deno.Command("bun", {
      args: ["run", script, url, JSON.stringify(plan)],
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).output();
    const text = new TextDecoder().decode(out.stdout).trim();
    if (!out.success) {
      throw new Error(`the Bun half failed (exit ${out.code}): ${text}`);
    }
    bun = JSON.parse(text.split("\n").pop()!);
  }

  // ---- redis-benchmark ceiling
  log("redis-benchmark");
  const ceilingRuns: { label: string; args: string[] }[] = [
    {
      label: "redis-benchmark -P 64 -c 50",
      args: ["-P", "64", "-c", "50", "-n", "200000"],
    },
    {
      label: "redis-benchmark -P 64 -c 1",
      args: ["-P", "64", "-c", "1", "-n", "200000"],
    },
    { label: "redis-benchmark -c 1", args: ["-c", "1", "-n", "20000"] },
  ];
  const ceilings: { label: string; get: number; set: number }[] = [];
  for (const run of ceilingRuns) {
    const gets: number[] = [];
    const sets: number[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await redisBenchmark(run.args);
      gets.push(r.GET);
      sets.push(r.SET);
    }
    ceilings.push({ label: run.label, get: median(gets), set: median(sets) });
  }

  await admin.send("DEL", GET_KEY, SET_KEY);
  await admin.close();

  const seconds = (Date.now() - started) / 1000;
  const cpu = cpuModel();
  const header =
    `respite client benchmark, ${new Date().toISOString().slice(0, 10)}: ` +
    `redis-server ${serverVersion} on ${hostname}:${port}, ${cpu}, ` +
    `${navigator.hardwareConcurrency} CPUs; Deno ${Deno.version.deno}` +
    (bun ? `, Bun ${bun.bun}` : "") +
    `.\nMedians of ${plan.rounds} interleaved rounds, ops/s. ` +
    `seq = ${plan.seqOps} commands, each awaited; ` +
    `conc = ${plan.batches} batches of ${plan.inFlight} in flight.`;

  const rows: string[][] = [[
    "runtime",
    "client",
    ...WORKLOADS,
  ]];
  const fmt = (n: number | null) =>
    n === null ? "" : Math.round(n).toLocaleString("en-US");
  const ratio = (a: number | null, b: number | null) =>
    a === null || b === null ? "" : `${(a / b).toFixed(2)}x`;
  for (const r of deno) {
    rows.push(["Deno", r.client, ...WORKLOADS.map((w) => fmt(r.median[w]))]);
  }
  for (const r of bun?.results ?? []) {
    rows.push(["Bun", r.client, ...WORKLOADS.map((w) => fmt(r.median[w]))]);
  }
  for (const c of ceilings) {
    rows.push(["-", c.label, fmt(c.get), fmt(c.set), "", ""]);
  }
  rows.push([]);
  const byName = (rs: BenchResult[], n: string) =>
    rs.find((r) => r.client === n)!;
  const ratioRow = (label: string, a: BenchResult, b: BenchResult) =>
    rows.push([
      "ratio",
      label,
      ...WORKLOADS.map((w) => ratio(a.median[w], b.median[w])),
    ]);
  ratioRow(
    "respite / ioredis (Deno)",
    byName(deno, "respite"),
    byName(deno, "ioredis"),
  );
  ratioRow(
    "respite / node-redis (Deno)",
    byName(deno, "respite"),
    byName(deno, "node-redis"),
  );
  if (cluster !== null) {
    ratioRow(
      "respite / ioredis, cluster (Deno)",
      byName(deno, "respite (cluster)"),
      byName(deno, "ioredis Cluster"),
    );
  }
  ratioRow(
    "respite / Deno.conn ping-pong",
    byName(deno, "respite"),
    deno[deno.length - 1],
  );
  if (bun) {
    ratioRow(
      "respite / Bun.RedisClient (Bun)",
      byName(bun.results, "respite"),
      byName(bun.results, "Bun.RedisClient"),
    );
  }

  const targets: { what: string; got: number; want: number }[] = [];
  const target = (
    what: string,
    a: BenchResult,
    b: BenchResult,
    w: Workload,
    want: number,
  ) => targets.push({ what, got: a.median[w]! / b.median[w]!, want });
  const dr = byName(deno, "respite");
  const di = byName(deno, "ioredis");
  target("Deno conc GET vs ioredis", dr, di, "conc GET", 3);
  target("Deno seq GET vs ioredis", dr, di, "seq GET", 1.5);
  if (bun) {
    const br = byName(bun.results, "respite");
    const bn = byName(bun.results, "Bun.RedisClient");
    target("Bun conc GET vs Bun.RedisClient", br, bn, "conc GET", 0.5);
    target("Bun seq GET vs Bun.RedisClient", br, bn, "seq GET", 0.9);
  }

  if (wantJson) {
    printJson(benchDoc({
      benchmark: "client",
      command: `deno task bench:client ${Deno.args.join(" ")}`,
      runtime: { redis: serverVersion, bun: bun?.bun },
      rounds: plan.rounds,
      ...clientRowsAndRatios(deno, bun?.results ?? null, ceilings),
      details: { cpu, plan, ceilings, targets, seconds },
    }));
  } else {
    console.log(header);
    console.log();
    console.log(table(rows));
    console.log();
    for (const t of targets) {
      console.log(
        `target ${t.what}: ${t.got.toFixed(2)}x (want >= ${t.want}x) ${
          t.got >= t.want ? "MET" : "MISSED"
        }`,
      );
    }
    console.log(`(run took ${seconds.toFixed(0)} s)`);
  }
} finally {
  await server?.stop();
  await cluster?.stop();
}

async function redisBenchmark(
  extra: string[],
): Promise<{ GET: number; SET: number }> {
  const out = await new Deno.Command("redis-benchmark", {
    args: [
      "-h",
      hostname,
      "-p",
      port || "6379",
      "-t",
      "get,set",
      "-q",
      ...extra,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const result: Record<string, number> = {};
  for (const line of text.split(/[\r\n]+/)) {
    const m = /^(GET|SET): ([\d.]+) requests per second/.exec(line.trim());
    if (m) result[m[1]] = Number(m[2]);
  }
  if (!result.GET || !result.SET) {
    throw new Error(
      `could not read redis-benchmark's output: ${text.slice(-300)} ${
        new TextDecoder().decode(out.stderr)
      }`,
    );
  }
  return { GET: result.GET, SET: result.SET };
}

function cpuModel(): string {
  try {
    const info = Deno.readTextFileSync("/proc/cpuinfo");
    return /model name\s*:\s*(.+)/.exec(info)?.[1].trim() ?? "unknown CPU";
  } catch {
    return `${Deno.build.os}/${Deno.build.arch}`;
  }
}

function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) {
    r.forEach((c, i) => widths[i] = Math.max(widths[i] ?? 0, c.length));
  }
  return rows.map((r) =>
    r.map((c, i) => i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))
      .join("  ").trimEnd()
  ).join("\n");
}

/**
 * Not a client: GET/SET bytes written straight to a `Deno.connect` socket,
 * each reply read before the next command. The floor of what any client on
 * Deno can reach sequentially; shown as a reference row.
 */
async function rawPingPong(
  hostname: string,
  port: number,
): Promise<BenchClient> {
  const conn = await Deno.connect({ hostname, port });
  conn.setNoDelay(true);
  const enc = new TextEncoder();
  const getCmd = enc.encode(
    `*2\r\n$3\r\nGET\r\n$${GET_KEY.length}\r\n${GET_KEY}\r\n`,
  );
  const setCmd = enc.encode(
    `*3\r\n$3\r\nSET\r\n$${SET_KEY.length}\r\n${SET_KEY}\r\n` +
      `$${VALUE.length}\r\n${VALUE}\r\n`,
  );
  const getReply = `$${VALUE.length}\r\n${VALUE}\r\n`.length;
  const setReply = "+OK\r\n".length;
  const buf = new Uint8Array(4096);
  const roundTrip = async (cmd: Uint8Array, replyLength: number) => {
    let off = 0;
    while (off < cmd.length) off += await conn.write(cmd.subarray(off));
    for (let got = 0; got < replyLength;) {
      const n = await conn.read(buf);
      if (n === null) throw new Error("raw socket: server closed");
      got += n;
    }
    return buf[0] === 36 ? VALUE : "OK";
  };
  return {
    name: "(Deno.conn ping-pong, no client)",
    get: () => roundTrip(getCmd, getReply),
    set: () => roundTrip(setCmd, setReply),
    close: () => conn.close(),
    only: ["seq GET", "seq SET"],
  };
}

/**
 * The shared JSON shape: one group per runtime and workload, the
 * redis-benchmark ceilings as rows of the GET groups, and respite's ratios
 * (the GET rows against the Deno and Bun peers, the floor and the ceiling are
 * the ones charted).
 */
function clientRowsAndRatios(
  deno: BenchResult[],
  bun: BenchResult[] | null,
  ceilings: { label: string; get: number; set: number }[],
): { rows: BenchRow[]; ratios: BenchRatio[] } {
  const rows: BenchRow[] = [];
  const ratios: BenchRatio[] = [];
  const add = (runtime: string, results: BenchResult[]) => {
    for (const r of results) {
      for (const w of WORKLOADS) {
        const m = r.median[w];
        if (m === null) continue;
        rows.push({
          group: `${w} (${runtime})`,
          library: r.client,
          median: m,
          unit: "ops/s",
          samples: r.samples[w],
        });
      }
    }
    for (const c of ceilings) {
      const seq = c.label === "redis-benchmark -c 1";
      for (const [op, m] of [["GET", c.get], ["SET", c.set]] as const) {
        rows.push({
          group: `${seq ? "seq" : "conc"} ${op} (${runtime})`,
          library: c.label,
          median: m,
          unit: "ops/s",
        });
      }
    }
  };
  add("Deno", deno);
  if (bun) add("Bun", bun);
  const ceilingNames = ceilings.map((c) => c.label);
  const peers = {
    Deno: ["ioredis", "node-redis", "(Deno.conn ping-pong, no client)"],
    Bun: ["Bun.RedisClient"],
  };
  for (const runtime of ["Deno", "Bun"] as const) {
    for (const w of WORKLOADS) {
      const group = `${w} (${runtime})`;
      const charted = w.endsWith("GET");
      const headline = w === "conc GET"
        ? [...peers[runtime], "redis-benchmark -P 64 -c 50"]
        : peers[runtime];
      ratios.push(...ratiosOf(rows, group, "respite", headline, {
        chart: charted,
      }));
      ratios.push(
        ...ratiosOf(
          rows,
          group,
          "respite",
          ceilingNames.filter((n) => !headline.includes(n)),
          { chart: false },
        ),
      );
    }
  }
  for (const w of WORKLOADS) {
    ratios.push(
      ...ratiosOf(rows, `${w} (Deno)`, "respite (cluster)", [
        "ioredis Cluster",
      ], { chart: false }),
    );
  }
  return { rows, ratios };
}
