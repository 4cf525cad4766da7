/**
 * Runs a command with REDIS_URL pointing at a throwaway redis-server (started
 * here on a free loopback port, no persistence, stopped by its pid after), or
 * at the server REDIS_URL already names. With `--cluster`, also a throwaway
 * 3-master Redis Cluster, named by REDIS_CLUSTER_URL (one seed), for the
 * examples of `connectCluster`.
 *
 * Usage: deno run -A scripts/with_redis.ts [--cluster] -- <command> [args...]
 */
import { startCluster } from "../testing/cluster.ts";
import { sharedRedis } from "../testing/redis.ts";
import { spawn } from "../testing/proc.ts";

const sep = Deno.args.indexOf("--");
const cmd = sep === -1 ? Deno.args : Deno.args.slice(sep + 1);
if (cmd.length === 0) {
  console.error("usage: with_redis.ts -- <command> [args...]");
  Deno.exit(2);
}
const withCluster = Deno.args.slice(0, Math.max(sep, 0)).includes("--cluster");
const server = await sharedRedis();
let code: number | string = 1;
const cluster = withCluster ? await startCluster() : null;
try {
  const env: Record<string, string> = { REDIS_URL: server.url };
  if (cluster !== null) env.REDIS_CLUSTER_URL = cluster.urls[0];
  const child = spawn(cmd[0], cmd.slice(1), { env, output: "inherit" });
  code = await child.exited;
} finally {
  await server.stop();
  await cluster?.stop();
}
Deno.exit(typeof code === "number" ? code : 1);
