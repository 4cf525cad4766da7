/**
 * respite on Node.js 22+ (lib/transport/node.ts, node:net and node:tls), from
 * both `deno test` and `bun test`: a child Node process runs our .ts sources
 * with no flags at all (`node main.ts`: Node 22's default type stripping,
 * which takes erasable TypeScript only; deno.json's `erasableSyntaxOnly`
 * keeps lib/ so) against throwaway redis-servers started here, plain and
 * TLS, and prints what it saw: the client scenario, a `Lock`, a `withLock`
 * and a `cached` stampede.
 *
 * Node comes from scripts/install_test_runtimes.sh (pinned, from the npm
 * registry) or RESPITE_NODE. Without it the test is skipped loudly, except
 * under CI=true, where it fails.
 */

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "./_harness.ts";
import { startRedis } from "../testing/redis.ts";
import { expectedScenario } from "./fixtures/scenario.ts";
import {
  findNode,
  makeCerts,
  missingError,
  PINNED,
  run,
  skipUnless,
} from "./fixtures/tools.ts";

const node = findNode();
const what = `Node ${PINNED.node}`;
const skip = skipUnless(what, node, "RESPITE_NODE");
const main = fileURLToPath(new URL("./fixtures/node/main.ts", import.meta.url));

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
      assert.equal(r.stderr, "", "node wrote to stderr");
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
