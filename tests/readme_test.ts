/**
 * README.md's TypeScript blocks, taken from README.md itself (readmeBlocks())
 * and run as a reader would run them.
 *
 * - Every `ts`/`js` block must be tagged `<!-- example: NAME runtime=R -->`
 *   with a known runtime and a unique name, so none slips through untested.
 *   `node` and `workerd` blocks are run by their own tests
 *   (node_runtime_test, workers_runtime_test); this file runs `deno` and
 *   `bun` blocks, spawning the other runtime when it is on PATH (skipped
 *   loudly when not; under CI=true a missing runtime fails).
 * - A `deno`/`bun` block's first line is the command that runs it:
 *   `// deno run <permission flags> FILE.ts` or `// bun run FILE.ts`. The
 *   block is written to FILE.ts in a temporary folder, with
 *   "@respite/respite" pointing at this repository's mod.ts, and run with
 *   exactly those flags, with `REDIS_URL` naming a throwaway redis-server.
 *   The only change to the flags: the ports the README names (Redis's 6379,
 *   the server's 8000) become the throwaway server's and a free one.
 * - A block that is a program asserts with node:assert/strict itself, so a
 *   wrong example exits non-zero and fails here. Deno blocks must also
 *   pass `deno check`.
 * - A block that starts a server (`Deno.serve(` / `Bun.serve(`) has a
 *   scenario below: two processes on free ports (`PORT`), concurrent
 *   requests for a cold key, every answer checked, and the upstream stand-in
 *   (which logs each call) must have run once in the whole fleet. Each is
 *   stopped by its pid.
 * - One import cannot be fetched here: `jsr:@db/redis` (JSR is out of reach
 *   of our machines). It is pointed at a stand-in whose `connect()` returns
 *   an object with `@db/redis`'s documented `sendCommand` surface over
 *   respite's own client (`dbRedisShim` in testing/byo_clients.ts): that
 *   block's code runs as written, but not against the real package.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { runtime, sleep, test } from "./_harness.ts";
import { missingError, run, skipUnless, stop } from "./fixtures/tools.ts";
import { type ReadmeBlock, readmeBlocks } from "../testing/readme.ts";
import { type Proc, runtimeExecutable, spawn } from "../testing/proc.ts";
import { freePort, type RedisServer, startRedis } from "../testing/redis.ts";

const MOD = fileURLToPath(new URL("../mod.ts", import.meta.url));
const BYO_CLIENTS = fileURLToPath(
  new URL("../testing/byo_clients.ts", import.meta.url),
);

/** Stands in for jsr:@db/redis's connect() (see the module doc). */
const DB_REDIS_STANDIN = `import { connect as respite } from ${
  JSON.stringify(MOD)
};
import { dbRedisShim } from ${JSON.stringify(BYO_CLIENTS)};
export async function connect(o: { hostname: string; port: number }) {
  return dbRedisShim(await respite({ hostname: o.hostname, port: o.port })) as {
    sendCommand(...a: unknown[]): Promise<unknown>;
    isConnected: boolean;
    isClosed: boolean;
    close(): void;
  };
}
`;
const CODE_LANGS = new Set([
  "ts",
  "tsx",
  "typescript",
  "js",
  "mjs",
  "javascript",
]);
const KNOWN_RUNTIMES = new Set(["deno", "bun", "node", "workerd"]);
/** The runtimes this file runs; node and workerd blocks have their own tests. */
const RUN_HERE = new Set(["deno", "bun"]);

const blocks = readmeBlocks();
const codeBlocks = blocks.filter((b) => CODE_LANGS.has(b.lang));

/** Where a block is, for messages. */
function where(b: ReadmeBlock): string {
  return `README.md:${b.line} (${b.name ?? "untagged"} ${b.lang})`;
}

interface Command {
  /** Flags between `run` and the file, e.g. `--allow-net=127.0.0.1:6379`. */
  flags: string[];
  /** The file name the block is saved as. */
  file: string;
}

/** The `// deno run … FILE.ts` / `// bun run FILE.ts` first line. */
function command(b: ReadmeBlock): Command {
  const first = b.code.split("\n")[0];
  const m =
    /^\/\/ (deno|bun) run((?: --[\w-]+(?:=\S+)?)*) ([\w.-]+\.(?:ts|js))$/
      .exec(first);
  assert.ok(
    m !== null,
    `${where(b)}: the first line must be the command that runs it, ` +
      `"// ${b.runtime} run [permission flags] FILE.ts"; got: ${first}`,
  );
  assert.equal(m[1], b.runtime, `${where(b)}: command vs runtime=`);
  const flags = m[2].trim() === "" ? [] : m[2].trim().split(" ");
  for (const f of flags) {
    assert.match(f, /^--allow-/, `${where(b)}: only permission flags: ${f}`);
  }
  return { flags, file: m[3] };
}

/** Does the block start a long-running server? */
function isServer(b: ReadmeBlock): boolean {
  return b.code.split("\n").some((l) =>
    !l.trimStart().startsWith("//") && /\b(Deno|Bun)\.serve\(/.test(l)
  );
}

/** `name` on PATH, or undefined. */
function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    const p = join(dir, name);
    if (dir !== "" && existsSync(p)) return p;
  }
  return undefined;
}

/** The executable for a block's runtime: this one, or the other from PATH. */
function executable(rt: string): string | undefined {
  return rt === runtime ? runtimeExecutable() : onPath(rt);
}

/** The same, or the error that says how to install it (a test under CI=true). */
function needExecutable(rt: string): string {
  const exe = executable(rt);
  if (exe === undefined) throw missingError(rt, "PATH");
  return exe;
}

function skipFor(rt: string): string | false {
  return rt === runtime ? false : skipUnless(rt, executable(rt), "PATH");
}

/** A temporary folder holding the block as its stated file name. */
function writeBlock(b: ReadmeBlock, dir: string): string {
  const { file } = command(b);
  const code = b.code.replace(
    /(["'])(?:jsr:)?@respite\/respite\1/g,
    JSON.stringify(MOD),
  );
  assert.notEqual(code, b.code, `${where(b)} does not import @respite/respite`);
  let withStandins = code;
  if (code.includes('"jsr:@db/redis"')) {
    const standin = join(dir, "db_redis_standin.ts");
    writeFileSync(standin, DB_REDIS_STANDIN);
    withStandins = code.replaceAll('"jsr:@db/redis"', JSON.stringify(standin));
  }
  const path = join(dir, file);
  writeFileSync(path, withStandins);
  return path;
}

/** The README's flags with its ports replaced by the test's. */
function flagsFor(b: ReadmeBlock, redis: RedisServer, port?: number): string[] {
  return command(b).flags.map((f) => {
    let out = f.replaceAll("127.0.0.1:6379", `127.0.0.1:${redis.port}`);
    if (port !== undefined) {
      out = out.replaceAll("127.0.0.1:8000", `127.0.0.1:${port}`);
    }
    return out;
  });
}

function argv(b: ReadmeBlock, path: string, flags: string[]): string[] {
  return b.runtime === "deno" ? ["run", ...flags, path] : ["run", path];
}

async function withTemp<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), "respite-readme-"));
  try {
    return await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("README: every ts/js block is tagged with a known runtime, a unique name, and (deno/bun) the command that runs it", () => {
  assert.ok(codeBlocks.length >= 6, `found ${codeBlocks.length} code blocks`);
  const names = new Set<string>();
  for (const b of codeBlocks) {
    assert.ok(
      b.name !== undefined,
      `${
        where(b)
      } is untagged: put <!-- example: NAME runtime=deno|bun|node|workerd --> on the line before its fence`,
    );
    assert.ok(
      KNOWN_RUNTIMES.has(b.runtime),
      `${where(b)}: unknown runtime=${b.runtime} (known: ${[
        ...KNOWN_RUNTIMES,
      ]})`,
    );
    assert.ok(!names.has(b.name), `${where(b)}: the name is used twice`);
    names.add(b.name);
    if (RUN_HERE.has(b.runtime)) {
      command(b);
      if (!isServer(b)) {
        assert.match(
          b.code,
          /import assert from "node:assert\/strict";/,
          `${where(b)} must check its results with node:assert/strict`,
        );
      } else {
        assert.ok(
          b.name in SERVERS,
          `${
            where(b)
          } starts a server: give it a scenario in tests/readme_test.ts`,
        );
      }
    }
  }
  for (const name of Object.keys(SERVERS)) {
    assert.ok(names.has(name), `README.md has no block tagged ${name}`);
  }
});

test("README: the deno blocks type-check (deno check)", async () => {
  const deno = needExecutable("deno");
  await withTemp(async (dir) => {
    const files = codeBlocks
      .filter((b) => b.runtime === "deno")
      .map((b) => writeBlock(b, mkdtempSync(join(dir, `${b.name}-`))));
    assert.ok(files.length > 0);
    const r = await run(deno, ["check", ...files], 120_000, { cwd: dir });
    assert.equal(r.code, 0, `deno check failed:\n${r.stdout}\n${r.stderr}`);
  });
}, { timeout: 150_000, skip: skipFor("deno") });

// Programs: run each, it must exit 0.
for (const b of codeBlocks) {
  if (!RUN_HERE.has(b.runtime) || isServer(b) || b.name === undefined) continue;
  test(
    `README ${b.name} (${b.runtime}) runs with the flags it states, its assertions passing`,
    async () => {
      const exe = needExecutable(b.runtime);
      const redis = await startRedis();
      try {
        await withTemp(async (dir) => {
          const path = writeBlock(b, dir);
          const r = await run(exe, argv(b, path, flagsFor(b, redis)), 60_000, {
            cwd: dir,
            env: { REDIS_URL: redis.url },
          });
          assert.equal(
            r.code,
            0,
            `${where(b)} exited ${r.code}:\n${r.stdout}\n${r.stderr}`,
          );
        });
      } finally {
        await redis.stop();
      }
    },
    { timeout: 90_000, skip: skipFor(b.runtime) },
  );
}

/** What the tests ask a server block, and what the answers must be. */
interface Scenario {
  /** A path the handler answers without the upstream, to see it is up. */
  probe: string;
  /** The cold key's path. */
  path: string;
  /** Every answer's JSON body. */
  body: unknown;
  /** The upstream stand-in's log line, one per call. */
  upstream: RegExp;
}

const SERVERS: Record<string, Scenario> = {
  "deno-serve": {
    probe: "/",
    path: "/report?region=eu",
    body: { region: "eu", total: 3 },
    upstream: /^db\.query /,
  },
  "bun-serve": {
    probe: "/",
    path: "/users/7",
    body: { id: 7, name: "user 7" },
    upstream: /^loadUserFromDb /,
  },
};

const PROCESSES = 2;
const REQUESTS_EACH = 25;

/** Waits until the server answers `probe` (with anything), or it exited. */
async function up(proc: Proc, port: number, probe: string): Promise<void> {
  let exited = false;
  proc.exited.then(() => exited = true);
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (exited) {
      throw new Error(
        `the server exited: ${await proc.stdout()}\n${await proc.stderr()}`,
      );
    }
    try {
      const res = await fetch(`http://127.0.0.1:${port}${probe}`);
      await res.body?.cancel();
      return;
    } catch {
      await sleep(50);
    }
  }
  throw new Error(`no answer on port ${port} within 30 s`);
}

for (const b of codeBlocks) {
  if (!RUN_HERE.has(b.runtime) || !isServer(b) || b.name === undefined) {
    continue;
  }
  const scenario = SERVERS[b.name];
  if (scenario === undefined) continue; // the tag test above fails for it
  test(
    `README ${b.name} (${b.runtime}): ${PROCESSES} servers, ${REQUESTS_EACH} concurrent requests each for a cold key, every answer right, the upstream run once`,
    async () => {
      const exe = needExecutable(b.runtime);
      const redis = await startRedis(); // empty: the key is cold
      const procs: Proc[] = [];
      try {
        await withTemp(async (dir) => {
          const path = writeBlock(b, dir);
          const ports: number[] = [];
          for (let i = 0; i < PROCESSES; i++) {
            const port = await freePort();
            ports.push(port);
            procs.push(
              spawn(exe, argv(b, path, flagsFor(b, redis, port)), {
                cwd: dir,
                env: { REDIS_URL: redis.url, PORT: String(port) },
              }),
            );
          }
          await Promise.all(
            procs.map((p, i) => up(p, ports[i], scenario.probe)),
          );
          const answers = await Promise.all(
            ports.flatMap((port) =>
              Array.from({ length: REQUESTS_EACH }, async () => {
                const res = await fetch(
                  `http://127.0.0.1:${port}${scenario.path}`,
                );
                return { status: res.status, body: await res.text() };
              })
            ),
          );
          for (const a of answers) {
            assert.equal(a.status, 200, a.body);
            assert.deepEqual(JSON.parse(a.body), scenario.body);
          }
          assert.equal(answers.length, PROCESSES * REQUESTS_EACH);
          await Promise.all(procs.map((p) => stop(p)));
          const out = (await Promise.all(procs.map((p) => p.stdout()))).join(
            "\n",
          );
          const calls = out.split("\n").filter((l) =>
            scenario.upstream.test(l)
          );
          assert.equal(
            calls.length,
            1,
            `the upstream ran ${calls.length} times for ${answers.length} requests over ${PROCESSES} processes:\n${out}`,
          );
        });
      } finally {
        await Promise.all(procs.map((p) => stop(p)));
        await redis.stop();
      }
    },
    { timeout: 120_000, skip: skipFor(b.runtime) },
  );
}
