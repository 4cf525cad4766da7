/**
 * respite on Node.js 22+ (lib/transport/node.ts, node:net and node:tls), from
 * both `deno test` and `bun test`: a child Node process runs our .ts sources
 * (Node's `--experimental-transform-types`) against throwaway redis-servers
 * started here, plain and TLS, and prints what it saw.
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
  "Node 22+: SET/GET, a pipelined burst, binary and large values, an error reply, pub/sub; TLS with a custom CA",
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
      const r = await run(node, [
        "--experimental-transform-types",
        "--disable-warning=ExperimentalWarning",
        main,
        String(plain.port),
        String(tls.port),
        certs.caFile,
      ], 15_000);
      assert.equal(
        r.code,
        0,
        `node exited with ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`,
      );
      // No warnings either (e.g. DEP0123, an IP address sent as TLS SNI).
      assert.equal(r.stderr, "", "node wrote to stderr");
      const out = JSON.parse(r.stdout.trim().split("\n").pop()!);
      assert.equal(out.node, version.stdout.trim());
      const ua = `Node.js/${major}`;
      assert.deepEqual(out.plain, expectedScenario("node", ua));
      assert.deepEqual(out.tls, expectedScenario("node", ua, true));
      assert.equal(out.tlsServerName, "PONG");
      assert.equal(out.untrusted, "ConnectionError");
      assert.deepEqual(out.throwingOnPush, { pong: "PONG", warnings: 1 });
    } finally {
      await plain.stop();
      await tls.stop();
      await rm(dir, { recursive: true, force: true });
    }
  },
  { timeout: 20_000, skip },
);
