/**
 * Runs a command with REDIS_URL pointing at a throwaway redis-server (started
 * here on a free loopback port, no persistence, stopped by its pid after), or
 * at the server REDIS_URL already names.
 *
 * Usage: deno run -A scripts/with_redis.ts -- <command> [args...]
 */
import { sharedRedis } from "../testing/redis.ts";
import { spawn } from "../testing/proc.ts";

const sep = Deno.args.indexOf("--");
const cmd = sep === -1 ? Deno.args : Deno.args.slice(sep + 1);
if (cmd.length === 0) {
  console.error("usage: with_redis.ts -- <command> [args...]");
  Deno.exit(2);
}
const server = await sharedRedis();
let code: number | string = 1;
try {
  const child = spawn(cmd[0], cmd.slice(1), {
    env: { REDIS_URL: server.url },
    output: "inherit",
  });
  code = await child.exited;
} finally {
  await server.stop();
}
Deno.exit(typeof code === "number" ? code : 1);
