/**
 * respite on Cloudflare Workers (lib/transport/workers.ts, cloudflare:sockets)
 * in workerd, the open-source Workers runtime, from both `deno test` and
 * `bun test`: tests/fixtures/workers/worker.ts is bundled into one ES module,
 * served by workerd on a free 127.0.0.1 port (tests/fixtures/workerd.ts), and
 * asked to run the shared scenario against throwaway redis-servers, plain and
 * TLS. Bundled twice: by esbuild exactly as wrangler bundles a worker
 * (platform browser, conditions workerd/worker/browser, only `cloudflare:*`
 * external, no `nodejs_compat`), and by this runtime's own bundler
 * (`deno bundle` under Deno, `Bun.build` under Bun). Neither bundle may
 * import a `node:` module.
 *
 * workerd and esbuild come from scripts/install_test_runtimes.sh (pinned,
 * from the npm registry) or RESPITE_WORKERD / RESPITE_ESBUILD. Without them
 * the test is skipped loudly, except under CI=true, where it fails.
 */

import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "./_harness.ts";
import { startRedis } from "../testing/redis.ts";
import { expectedScenario } from "./fixtures/scenario.ts";
import { makeCerts } from "./fixtures/tools.ts";
import {
  esbuildWorker,
  needEsbuild,
  needWorkerd,
  nodeImports,
  runtimeBundle,
  runtimeBundler,
  type Served,
  serveWorker,
  skipWithoutEsbuild,
  skipWithoutWorkerd,
} from "./fixtures/workerd.ts";

const entry = fileURLToPath(
  new URL("./fixtures/workers/worker.ts", import.meta.url),
);

/** Bundles the worker with `bundle`, then runs the scenario in workerd. */
async function bundledScenario(
  bundle: (out: string) => Promise<unknown>,
): Promise<void> {
  const workerd = needWorkerd();
  const dir = await mkdtemp(join(tmpdir(), "respite-workerd-"));
  let served: Served | undefined;
  const certs = await makeCerts(dir);
  const plain = await startRedis();
  const tls = await startRedis({ tls: { ...certs } });
  try {
    await bundle(join(dir, "worker.js"));
    const code = await readFile(join(dir, "worker.js"), "utf8");
    // One self-contained module: no static imports left (cloudflare:sockets
    // is imported at run time, through a variable specifier), and no node:
    // module anywhere in it, not even dynamically.
    assert.doesNotMatch(code, /^\s*import\s*(?:[\w{*][^;]*from\s*)?["']/m);
    assert.match(code, /cloudflare:sockets/);
    assert.deepEqual(nodeImports(code), [], "the bundle imports node: modules");

    served = await serveWorker(workerd, dir, { tls: true });
    const base = served.base;
    const ask = async (query: string) => {
      const res = await fetch(`${base}/?${query}`);
      const body = await res.text();
      assert.equal(res.status, 200, body);
      return JSON.parse(body);
    };
    assert.deepEqual(
      await ask(`port=${plain.port}`),
      expectedScenario("workers", "Cloudflare-Workers"),
    );
    assert.deepEqual(
      await ask(`port=${tls.port}&tls=1`),
      expectedScenario("workers", "Cloudflare-Workers", true),
    );
  } finally {
    await served?.stop();
    await plain.stop();
    await tls.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

test(
  `Cloudflare Workers (workerd): cloudflare:sockets, plain and TLS, from a worker bundled by ${runtimeBundler}`,
  () => bundledScenario((out) => runtimeBundle(entry, out)),
  { timeout: 20_000, skip: skipWithoutWorkerd },
);

test(
  "Cloudflare Workers (workerd): cloudflare:sockets, plain and TLS, from a worker bundled by esbuild as wrangler does (no node: import)",
  () =>
    bundledScenario(async (out) => {
      needEsbuild();
      const warnings = await esbuildWorker(entry, out);
      assert.equal(warnings, "", "esbuild warned");
    }),
  { timeout: 20_000, skip: skipWithoutEsbuild },
);
