/**
 * respite on Cloudflare Workers (lib/transport/workers.ts, cloudflare:sockets)
 * in workerd, the open-source Workers runtime, from both `deno test` and
 * `bun test`: tests/fixtures/workers/worker.ts is bundled into one ES module
 * (by `deno bundle` under Deno, `Bun.build` under Bun), served by workerd on
 * a free 127.0.0.1 port, and asked to run the shared scenario against
 * throwaway redis-servers, plain and TLS.
 *
 * The worker may reach 127.0.0.1 and nothing else: its global outbound is a
 * network service that allows only 127.0.0.1/32 (workerd's default outbound
 * allows public addresses only, so loopback would be refused), and it trusts
 * the test's CA for TLS.
 *
 * workerd comes from scripts/install_test_runtimes.sh (pinned, from the npm
 * registry) or RESPITE_WORKERD. Without it the test is skipped loudly, except
 * under CI=true, where it fails.
 */

import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { isDeno, sleep, test } from "./_harness.ts";
import { type Proc, spawn } from "../testing/proc.ts";
import { freePort, startRedis } from "../testing/redis.ts";
import { expectedScenario } from "./fixtures/scenario.ts";
import {
  findWorkerd,
  makeCerts,
  missingError,
  PINNED,
  run,
  skipUnless,
  stop,
} from "./fixtures/tools.ts";

const workerd = findWorkerd();
const what = `workerd ${PINNED.workerd}`;
const skip = skipUnless(what, workerd, "RESPITE_WORKERD");
const entry = fileURLToPath(
  new URL("./fixtures/workers/worker.ts", import.meta.url),
);

/** Bundles the worker into one ES module at `out`, with this runtime's bundler. */
async function bundle(out: string): Promise<void> {
  if (isDeno) {
    const deno = (globalThis as unknown as { Deno: { execPath(): string } })
      .Deno.execPath();
    const r = await run(deno, [
      "bundle",
      "--no-config",
      "--no-lock",
      "--platform",
      "browser",
      "--output",
      out,
      entry,
    ], 60_000);
    assert.equal(r.code, 0, `deno bundle failed: ${r.stderr}`);
    return;
  }
  const bun = (globalThis as unknown as {
    Bun: {
      build(o: unknown): Promise<{
        success: boolean;
        logs: unknown[];
        outputs: { text(): Promise<string> }[];
      }>;
    };
  }).Bun;
  const r = await bun.build({
    entrypoints: [entry],
    target: "browser",
    format: "esm",
  });
  assert.ok(r.success, `Bun.build failed: ${r.logs.join("\n")}`);
  assert.equal(r.outputs.length, 1);
  await writeFile(out, await r.outputs[0].text());
}

function config(httpPort: number): string {
  return `using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = (
      modules = [(name = "worker.js", esModule = embed "worker.js")],
      compatibilityDate = "2025-01-01",
      globalOutbound = "loopback-only",
    )),
    (name = "loopback-only", network = (
      allow = ["127.0.0.1/32"],
      tlsOptions = (trustedCertificates = [embed "ca.crt"]),
    )),
  ],
  sockets = [
    (name = "http", address = "127.0.0.1:${httpPort}", http = (), service = "main"),
  ],
);
`;
}

/** Starts workerd on a free port and waits until the worker answers. */
async function serve(
  bin: string,
  dir: string,
): Promise<{ proc: Proc; base: string }> {
  let lastError = "";
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    await writeFile(join(dir, "config.capnp"), config(port));
    const proc = spawn(bin, ["serve", join(dir, "config.capnp")], {
      cwd: dir,
    });
    let exited = false;
    proc.exited.then(() => exited = true);
    const base = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 10_000;
    while (!exited && Date.now() < deadline) {
      try {
        const res = await fetch(`${base}/health`);
        if ((await res.text()) === "ok") return { proc, base };
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    if (!exited) await stop(proc);
    lastError = `workerd exited or did not answer on ${base}: ${
      (await proc.stderr()).slice(-2000)
    }`;
  }
  throw new Error(lastError);
}

test(
  "Cloudflare Workers (workerd): cloudflare:sockets, plain and TLS, from a bundled worker",
  async () => {
    if (workerd === undefined) throw missingError(what, "RESPITE_WORKERD");
    const dir = await mkdtemp(join(tmpdir(), "respite-workerd-"));
    let worker: Proc | undefined;
    const certs = await makeCerts(dir);
    const plain = await startRedis();
    const tls = await startRedis({ tls: { ...certs } });
    try {
      await bundle(join(dir, "worker.js"));
      const code = await readFile(join(dir, "worker.js"), "utf8");
      // One self-contained module: no static imports left (cloudflare:sockets
      // is imported at run time, through a variable specifier).
      assert.doesNotMatch(code, /^\s*import\s*(?:[\w{*][^;]*from\s*)?["']/m);
      assert.match(code, /cloudflare:sockets/);

      const served = await serve(workerd, dir);
      worker = served.proc;
      const ask = async (query: string) => {
        const res = await fetch(`${served.base}/?${query}`);
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
      if (worker) await stop(worker);
      await plain.stop();
      await tls.stop();
      await rm(dir, { recursive: true, force: true });
    }
  },
  { timeout: 20_000, skip },
);
