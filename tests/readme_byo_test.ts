/**
 * The README's "Bring your own client" examples, taken from README.md at
 * test time (testing/readme.ts) and run as a reader would, with the
 * permissions the README states, against a throwaway redis-server
 * (REDIS_URL). Each block runs under its own runtime (the Deno blocks when
 * this file runs under Deno, the Bun block under Bun), and fails on a false
 * assertion. `@respite/respite` is pointed at this checkout's mod.ts. The
 * `@db/redis` block's `jsr:@db/redis` import (JSR cannot be reached from
 * these machines) is pointed at a stand-in whose `connect()` returns an
 * object with `@db/redis`'s documented `sendCommand` surface over respite's
 * own client (`dbRedisShim` in testing/byo_clients.ts): the block's code is
 * run as written, but not against the real package.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readmeBlock } from "../testing/readme.ts";
import { sharedRedis } from "../testing/redis.ts";
import { isBun, isDeno, teardown, test } from "./_harness.ts";
import { run } from "./fixtures/tools.ts";

const server = await sharedRedis();
const dir = mkdtempSync(join(tmpdir(), "respite-readme-byo-"));
const mod = new URL("../mod.ts", import.meta.url).pathname;
const clients = new URL("../testing/byo_clients.ts", import.meta.url).pathname;

writeFileSync(
  join(dir, "db_redis_standin.ts"),
  `import { connect as respite } from ${JSON.stringify(mod)};
import { dbRedisShim } from ${JSON.stringify(clients)};
/** Stands in for jsr:@db/redis's connect(): see tests/readme_byo_test.ts. */
export async function connect(o: { hostname: string; port: number }) {
  return dbRedisShim(await respite({ hostname: o.hostname, port: o.port })) as {
    sendCommand(...a: unknown[]): Promise<unknown>;
    isConnected: boolean;
    isClosed: boolean;
    close(): void;
  };
}
`,
);

const EXAMPLES: Array<
  { name: string; runtime: "deno" | "bun"; flags: string[] }
> = [
  {
    name: "byo-ioredis",
    runtime: "deno",
    flags: ["--allow-net", "--allow-env", "--allow-read"],
  },
  {
    name: "byo-node-redis",
    runtime: "deno",
    flags: ["--allow-net", "--allow-env", "--allow-read"],
  },
  {
    name: "byo-db-redis",
    runtime: "deno",
    flags: ["--allow-net", "--allow-env"],
  },
  { name: "byo-bun", runtime: "bun", flags: [] },
];

for (const { name, runtime, flags } of EXAMPLES) {
  const here = runtime === "deno" ? isDeno : isBun;
  test(
    `README example ${name} runs (${runtime}${
      flags.length ? " " + flags.join(" ") : ""
    })`,
    async () => {
      const block = readmeBlock(name);
      assert.equal(block.runtime, runtime);
      let code = block.code.replaceAll(
        '"@respite/respite"',
        JSON.stringify(mod),
      );
      if (name === "byo-db-redis") {
        assert.match(code, /from "jsr:@db\/redis";/);
        code = code.replace(
          '"jsr:@db/redis"',
          JSON.stringify(join(dir, "db_redis_standin.ts")),
        );
      }
      const file = join(dir, `${name}.ts`);
      writeFileSync(file, code);
      const [cmd, args] = runtime === "deno"
        ? ["deno", ["run", "--no-config", "--no-lock", ...flags, file]]
        : ["bun", ["run", file]];
      const r = await run(cmd, args, 60_000, {
        env: { REDIS_URL: server.url },
      });
      assert.equal(
        r.code,
        0,
        `README line ${block.line}: ${name} failed:\n${r.stdout}\n${r.stderr}`,
      );
    },
    {
      skip: here
        ? false
        : `the ${runtime} block runs when this file runs under ${runtime}`,
      timeout: 90_000,
    },
  );
}

teardown(async () => {
  rmSync(dir, { recursive: true, force: true });
  await server.stop();
});
