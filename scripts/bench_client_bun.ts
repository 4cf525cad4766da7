/**
 * The Bun half of the client benchmark: respite vs Bun's built-in
 * `RedisClient` on the same server. Started by `bench_client.ts` as
 *
 *     bun run scripts/bench_client_bun.ts <redis-url> '<plan as JSON>'
 *
 * and prints its results as one line of JSON on stdout (progress on stderr).
 * Bun-only; the few Bun APIs it uses are typed here, so `deno check` passes
 * without bun-types.
 */

import { connect } from "../lib/client/client.ts";
import {
  type BenchClient,
  type BenchPlan,
  runBench,
  SET_KEY,
} from "./_bench_client_common.ts";

/** The part of Bun's built-in Redis client used here. */
interface BunRedisClient {
  connect(): Promise<void>;
  get(key: string): Promise<string | null>;
  set(key: string, value: string): Promise<string>;
  close(): void;
}

const g = globalThis as unknown as {
  Bun?: {
    version: string;
    RedisClient: new (url: string) => BunRedisClient;
  };
  process: {
    argv: string[];
    stderr: { write(s: string): void };
    exit(code: number): never;
  };
};

if (g.Bun === undefined) {
  throw new Error("bench_client_bun.ts runs under Bun: bun run <this file>");
}
const [url, planJson] = g.process.argv.slice(2);
if (!url || !planJson) {
  g.process.stderr.write(
    "usage: bun run scripts/bench_client_bun.ts <redis-url> '<plan JSON>'\n",
  );
  g.process.exit(2);
}
const plan = JSON.parse(planJson) as BenchPlan;

const respite = await connect(url);
const native = new g.Bun.RedisClient(url);
await native.connect();

const clients: BenchClient[] = [
  {
    name: "respite",
    get: (k) => respite.send("GET", k),
    set: (k, v) => respite.send("SET", k, v),
    close: () => respite.close(),
  },
  {
    name: "Bun.RedisClient",
    get: (k) => native.get(k),
    set: (k, v) => native.set(k, v),
    close: () => native.close(),
  },
];

try {
  const results = await runBench(
    clients,
    plan,
    (r) => g.process.stderr.write(`  bun: round ${r}/${plan.rounds} done\n`),
  );
  console.log(JSON.stringify({ bun: g.Bun.version, results }));
} finally {
  await respite.send("DEL", SET_KEY);
  for (const c of clients) await c.close();
}
