/**
 * respite on Node.js 22+ (lib/transport/node.ts, node:net and node:tls), from
 * both `deno test` and `bun test`: a child Node process runs our .ts sources
 * with no flags at all (`node main.ts`: Node 22's default type stripping,
 * which takes erasable TypeScript only, and needs type-only imports marked
 * `import type`; deno.json's `erasableSyntaxOnly` and `verbatimModuleSyntax`
 * make `deno check` keep lib/ so) against throwaway redis-servers started here, plain and
 * TLS, and prints what it saw: the client scenario, a `Lock`, a `withLock`
 * and a `cached` stampede.
 *
 * Node comes from scripts/install_test_runtimes.sh (pinned, from the npm
 * registry) or RESPITE_NODE. Without it the test is skipped loudly, except
 * under CI=true, where it fails.
 */

import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { isDeno, sleep, test } from "./_harness.ts";
import { connect, Lock } from "../mod.ts";
import { freePort, startRedis } from "../testing/redis.ts";
import { runtimeExecutable, spawn } from "../testing/proc.ts";
import { readmeBlock } from "../testing/readme.ts";
import { expectedScenario } from "./fixtures/scenario.ts";
import {
  findNode,
  makeCerts,
  missingError,
  PINNED,
  run,
  skipUnless,
  stop,
} from "./fixtures/tools.ts";

const node = findNode();
const what = `Node ${PINNED.node}`;
const skip = skipUnless(what, node, "RESPITE_NODE");
const main = fileURLToPath(new URL("./fixtures/node/main.ts", import.meta.url));

/**
 * What a node process wrote to stderr besides respite's script warnings (a
 * fresh server does not have the scripts: each warns once per process, which
 * is checked here too).
 */
function otherStderr(stderr: string): string {
  const lines = stderr.split("\n").filter((l) => l !== "");
  const warnings = lines.filter((l) => /^[A-Z_]+_SCRIPT not cached\.$/.test(l));
  assert.equal(new Set(warnings).size, warnings.length, stderr);
  return lines.filter((l) => !warnings.includes(l)).join("\n");
}

test(
  "Node 22+ without flags: SET/GET, a pipelined burst, binary and large values, an error reply, pub/sub, Lock, withLock, cached; TLS with a custom CA",
  async () => {
    if (node === undefined) throw missingError(what, "RESPITE_NODE");
    const version = await run(node, ["--version"], 10_000);
    const major = Number(/^v(\d+)\./.exec(version.stdout.trim())?.[1]);
    assert.ok(
      major >= 22,
      `${node} is ${version.stdout.trim()}; respite's Node transport is tested on Node 22+`,
    );

    const dir = await mkdtemp(join(tmpdir(), "respite-node-"));
    const certs = await makeCerts(dir);
    const plain = await startRedis();
    const tls = await startRedis({ tls: { ...certs } });
    try {
      // No flags, and none through NODE_OPTIONS either: what a user runs.
      const r = await run(
        node,
        [
          main,
          String(plain.port),
          String(tls.port),
          certs.caFile,
        ],
        15_000,
        { env: { NODE_OPTIONS: "" } },
      );
      assert.equal(
        r.code,
        0,
        `node exited with ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`,
      );
      // No warnings either: no ExperimentalWarning for type stripping (Node
      // 22.18+ strips types by default and silently), no DEP0123 (an IP
      // address sent as TLS SNI).
      assert.doesNotMatch(r.stderr, /ExperimentalWarning/);
      assert.equal(otherStderr(r.stderr), "", "node wrote to stderr");
      const out = JSON.parse(r.stdout.trim().split("\n").pop()!);
      assert.equal(out.node, version.stdout.trim());
      assert.deepEqual(out.execArgv, []);
      assert.equal(out.nodeOptions, "");
      const ua = `Node.js/${major}`;
      assert.deepEqual(out.plain, expectedScenario("node", ua));
      assert.deepEqual(out.tls, expectedScenario("node", ua, true));
      assert.equal(out.tlsServerName, "PONG");
      assert.equal(out.untrusted, "ConnectionError");
      assert.deepEqual(out.throwingOnPush, { pong: "PONG", warnings: 1 });
      assert.deepEqual(out.features, {
        lock: { first: true, other: false, fence: true, afterRelease: true },
        withLock: "ran:number",
        cached: { computations: 1, values: ["value-x"], hit: "value-x" },
      });
    } finally {
      await plain.stop();
      await tls.stop();
      await rm(dir, { recursive: true, force: true });
    }
  },
  { timeout: 20_000, skip },
);

/** Asks the server at `base` until it answers (any status), for up to `ms`. */
async function answering(base: string, ms: number): Promise<void> {
  const until = performance.now() + ms;
  for (;;) {
    try {
      await (await fetch(`${base}/`)).body?.cancel();
      return;
    } catch (err) {
      if (performance.now() > until) throw err;
      await sleep(50);
    }
  }
}

test(
  "README's Node http server (example: node-http), as written, under plain `node server.ts`: one computation for 20 concurrent requests, the lock across processes, a clean shutdown",
  async () => {
    if (node === undefined) throw missingError(what, "RESPITE_NODE");
    const block = readmeBlock("node-http");
    assert.equal(block.runtime, "node");
    // The import a reader writes, pointed at this repository's mod.ts.
    const from = `from "@respite/respite"`;
    assert.equal(block.code.split(from).length, 2, `one ${from} in the block`);
    const mod = pathToFileURL(
      fileURLToPath(new URL("../mod.ts", import.meta.url)),
    );
    const code = block.code.replace(from, `from ${JSON.stringify(mod.href)}`);

    const dir = await mkdtemp(join(tmpdir(), "respite-node-http-"));
    const file = join(dir, "server.ts");
    await writeFile(file, code);
    if (isDeno) {
      // Node only strips the types; check them too, as a reader's editor would.
      const checked = await run(runtimeExecutable(), ["check", file], 60_000);
      assert.equal(checked.code, 0, `deno check ${file}: ${checked.stderr}`);
    }
    const redis = await startRedis();
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const server = spawn(node, [file], {
      env: { REDIS_URL: redis.url, PORT: String(port), NODE_OPTIONS: "" },
    });
    const client = await connect(redis.url);
    try {
      await Promise.race([
        answering(base, 10_000),
        server.exited.then(async (code) => {
          throw new Error(
            `node ${file} exited with ${code}: ${await server.stderr()}`,
          );
        }),
      ]);

      const prices = await Promise.all(
        Array.from({ length: 20 }, async () => {
          const r = await fetch(`${base}/price?sku=abc`);
          return { status: r.status, body: await r.json() };
        }),
      );
      for (const p of prices) {
        assert.deepEqual(p, { status: 200, body: { sku: "abc", cents: 300 } });
      }

      // The lock is held by another process (this one): the handler says so.
      const held = new Lock(client, "report", { ttl: 10_000 });
      assert.equal(await held.acquire({ wait: 0 }), true);
      const busy = await fetch(`${base}/report`);
      assert.equal(busy.status, 409);
      assert.equal(await busy.text(), "a report is already running\n");
      await held.release();
      const done = await fetch(`${base}/report`);
      assert.equal(done.status, 200);
      assert.match(await done.text(), /^report done, fence \d+\n$/);
      // Released by the handler's finally: free again.
      assert.equal(await held.acquire({ wait: 0 }), true);
      await held.release();

      const missing = await fetch(`${base}/nope`);
      await missing.body?.cancel();
      assert.equal(missing.status, 404);

      // SIGTERM: the server closes, then the client; node exits by itself.
      await stop(server, 5_000);
      assert.equal(await server.exited, 0, await server.stderr());
      const lines = (await server.stdout()).trim().split("\n");
      assert.deepEqual(lines, ["loading the price of abc", "closed"]);
      assert.equal(
        otherStderr(await server.stderr()),
        "",
        "node wrote to stderr",
      );
    } finally {
      server.kill("SIGKILL");
      await server.exited;
      await client.close();
      await redis.stop();
      await rm(dir, { recursive: true, force: true });
    }
  },
  { timeout: 30_000, skip },
);
