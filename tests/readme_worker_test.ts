/**
 * README.md's Cloudflare Workers handler (the block tagged
 * `<!-- example: worker runtime=workerd -->`), taken from README.md at test
 * time, bundled with esbuild exactly as wrangler bundles a worker (the
 * `@respite/respite` import mapped to mod.ts, as the package would resolve)
 * and run in workerd against a throwaway redis-server and a slow upstream
 * HTTP server in this process, under `deno test` and `bun test`.
 *
 * 50 concurrent requests on a cold key: every one gets the upstream's
 * answer, the upstream is called once, and each request opens one Redis
 * connection (counted by the server: `total_connections_received`). Then
 * cache hits (one connection each) and 10 concurrent `POST`s through the
 * `withLock` wrapper (no lost update). The figures are printed.
 */

import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "./_harness.ts";
import { PINNED } from "./fixtures/tools.ts";
import { connectionsReceived, startRedis } from "../testing/redis.ts";
import { readmeBlock } from "../testing/readme.ts";
import { connect } from "../mod.ts";
import {
  esbuildWorker,
  needEsbuild,
  needWorkerd,
  nodeImports,
  type Served,
  serveWorker,
  skipWithoutEsbuild,
} from "./fixtures/workerd.ts";

const modTs = fileURLToPath(new URL("../mod.ts", import.meta.url));

/** A slow upstream prices API on 127.0.0.1 that counts its calls. */
async function upstream(): Promise<
  { url: string; calls: () => number; close: () => Promise<void> }
> {
  let calls = 0;
  const server = createServer((req, res) => {
    calls++;
    const sku = decodeURIComponent((req.url ?? "").split("/").pop() ?? "");
    setTimeout(() => {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ sku, cents: 1999 }));
    }, 150);
  });
  await new Promise<void>((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve())
  );
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/prices`,
    calls: () => calls,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

test(
  "README's Cloudflare Workers handler, bundled by esbuild as wrangler does, in workerd: 50 concurrent requests on a cold key -> 1 upstream call, 1 connection per request",
  async () => {
    const workerd = needWorkerd();
    needEsbuild();
    const block = readmeBlock("worker");
    assert.equal(block.runtime, "workerd");
    const dir = await mkdtemp(join(tmpdir(), "respite-readme-worker-"));
    const server = await startRedis();
    const api = await upstream();
    let served: Served | undefined;
    try {
      await writeFile(join(dir, "entry.ts"), block.code);
      await esbuildWorker(join(dir, "entry.ts"), join(dir, "worker.js"), {
        "@respite/respite": modTs,
      });
      const code = await readFile(join(dir, "worker.js"), "utf8");
      assert.deepEqual(nodeImports(code), [], "the bundle imports node:");
      served = await serveWorker(workerd, dir, {
        bindings: { REDIS_URL: server.url, PRICES_API: api.url },
        health: "/prices/health",
      });
      const base = served.base;
      await using redis = await connect(server.url);
      const sku = `sku-${Math.random().toString(36).slice(2)}`;
      const callsBefore = api.calls(); // the health check's

      // 50 concurrent requests on a cold key.
      const n = 50;
      let before = await connectionsReceived(redis);
      const answers = await Promise.all(
        Array.from({ length: n }, async () => {
          const res = await fetch(`${base}/prices/${sku}`);
          return { status: res.status, body: await res.json() };
        }),
      );
      const coldConnections = await connectionsReceived(redis) - before;
      for (const a of answers) {
        assert.equal(a.status, 200, JSON.stringify(a.body));
        assert.deepEqual(a.body, { sku, cents: 1999 });
      }
      const computations = api.calls() - callsBefore;
      assert.equal(computations, 1, "upstream calls for 50 cold requests");
      assert.equal(coldConnections, n, "one connection per request");

      // Cache hits: one connection each, no upstream call.
      const hits = 20;
      before = await connectionsReceived(redis);
      for (let i = 0; i < hits; i++) {
        const res = await fetch(`${base}/prices/${sku}`);
        assert.deepEqual(await res.json(), { sku, cents: 1999 });
      }
      const hitConnections = await connectionsReceived(redis) - before;
      assert.equal(hitConnections, hits, "one connection per hit");
      assert.equal(api.calls() - callsBefore, 1, "a hit called upstream");

      // The withLock wrapper: 10 concurrent read-modify-writes, none lost.
      const stocks = await Promise.all(
        Array.from({ length: 10 }, async () => {
          const res = await fetch(`${base}/prices/${sku}?count=1`, {
            method: "POST",
          });
          const body = await res.json();
          assert.equal(res.status, 200, JSON.stringify(body));
          return (body as { stock: number }).stock;
        }),
      );
      assert.deepEqual(
        stocks.sort((a, b) => a - b),
        Array.from({ length: 10 }, (_, i) => i + 1),
      );
      console.log(
        `README worker in workerd ${PINNED.workerd}: ${n} concurrent requests on a cold key -> ${computations} upstream computation, ${coldConnections} Redis connections (${
          coldConnections / n
        } per request); ${hits} cache hits -> ${hitConnections} connections (${
          hitConnections / hits
        } per request); 10 concurrent locked restocks -> final stock ${
          Math.max(...stocks)
        }`,
      );
      await redis.send(
        "DEL",
        `respite:cache:{price:${sku}}`,
        `shop:stock:${sku}`,
      );
    } finally {
      const stderr = await served?.stop();
      if (stderr) console.log(`workerd stderr (tail):\n${stderr.slice(-1500)}`);
      await api.close();
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    }
  },
  { timeout: 60_000, skip: skipWithoutEsbuild },
);
