/**
 * Code written once at module scope of a Cloudflare worker (a `cached`
 * function, a `withLock` wrapper) used by many requests, in workerd, from
 * both `deno test` and `bun test`. tests/fixtures/workers/requests.ts is
 * bundled by esbuild as wrangler does (tests/fixtures/workerd.ts) and run
 * against a throwaway redis-server.
 *
 * On Workers a socket belongs to the request that opened it. A client kept
 * at module scope from an earlier request is refused at once, with a
 * TypeError naming the rule and the fix, by `cached`, `withLock` and the
 * client itself — never a silent fall-open. The pattern that works
 * (a client connected per request, passed per call) computes a cold key
 * once for 50 concurrent requests; a request that only hits the cache opens
 * one connection and no subscriber; a request that has to wait for another
 * process's computation opens the subscriber too. Connections are counted
 * by the server: `total_connections_received` in `INFO stats`.
 */

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "./_harness.ts";
import {
  connectionsReceived,
  type RedisServer,
  startRedis,
} from "../testing/redis.ts";
import { cached, connect } from "../mod.ts";
import {
  esbuildWorker,
  needEsbuild,
  needWorkerd,
  type Served,
  serveWorker,
  skipWithoutEsbuild,
} from "./fixtures/workerd.ts";

const entry = fileURLToPath(
  new URL("./fixtures/workers/requests.ts", import.meta.url),
);

/** Bundles the worker, starts a redis-server and workerd; runs `body`. */
async function withWorker(
  body: (
    ask: (path: string) => Promise<{ status: number; body: unknown }>,
    server: RedisServer,
  ) => Promise<void>,
): Promise<void> {
  const workerd = needWorkerd();
  needEsbuild();
  const dir = await mkdtemp(join(tmpdir(), "respite-workerd-requests-"));
  const server = await startRedis();
  let served: Served | undefined;
  try {
    await esbuildWorker(entry, join(dir, "worker.js"));
    served = await serveWorker(workerd, dir);
    const base = served.base;
    const ask = async (path: string) => {
      const sep = path.includes("?") ? "&" : "?";
      const res = await fetch(`${base}${path}${sep}port=${server.port}`);
      const text = await res.text();
      try {
        return { status: res.status, body: JSON.parse(text) };
      } catch {
        throw new Error(`${path}: status ${res.status}, not JSON: ${text}`);
      }
    };
    await body(ask, server);
  } finally {
    const stderr = await served?.stop();
    if (stderr) console.log(`workerd stderr (tail):\n${stderr.slice(-1500)}`);
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

test(
  "Workers: a client left at module scope by an earlier request is refused at once (TypeError naming the rule and the fix) by cached, withLock and send; cached never falls open",
  () =>
    withWorker(async (ask) => {
      const first = await ask("/leftover?key=a");
      assert.equal(first.status, 200, JSON.stringify(first.body));
      const b = first.body as Record<string, unknown>;
      assert.equal(b.value, "value of a");
      assert.equal(typeof b.locked, "number");
      assert.equal(b.send, "PONG");

      const t0 = performance.now();
      const later = await Promise.all(
        Array.from({ length: 50 }, () => ask("/leftover?key=b")),
      );
      const ms = performance.now() - t0;
      const rule =
        /opened by another request: on Cloudflare Workers a socket belongs to the request that opened it.*Connect inside the handler.*pass that client per call/;
      for (const r of later) {
        assert.equal(r.status, 200, JSON.stringify(r.body));
        const parts = r.body as Record<string, { error?: Error }>;
        for (const part of ["value", "locked", "send"]) {
          const err = parts[part]?.error;
          assert.ok(err, `${part} did not fail: ${JSON.stringify(parts)}`);
          assert.equal(err.name, "TypeError", `${part}: ${err.message}`);
          assert.match(err.message, rule, part);
        }
      }
      // At once: no timeout, no reconnect attempt in between.
      assert.ok(ms < 5_000, `50 refused requests took ${ms} ms`);
      const stats = (await ask("/stats")).body as {
        computed: number;
        failOpen: number;
      };
      assert.deepEqual(
        { computed: stats.computed, failOpen: stats.failOpen },
        { computed: 1, failOpen: 0 },
        "cached fell open (or computed) for a refused call",
      );
    }),
  { timeout: 30_000, skip: skipWithoutEsbuild },
);

test(
  "Workers: module-scope cached/withLock with a client per request: 50 concurrent requests on a cold key compute once; a cache hit opens 1 connection, no subscriber; a waiter opens the subscriber",
  () =>
    withWorker(async (ask, server) => {
      await using redis = await connect({ port: server.port });
      const cold = `cold:${Math.random()}`;

      // 50 concurrent requests on a cold key.
      let before = await connectionsReceived(redis);
      const replies = await Promise.all(
        Array.from(
          { length: 50 },
          () => ask(`/value?key=${encodeURIComponent(cold)}&ms=200`),
        ),
      );
      const coldConnections = await connectionsReceived(redis) - before;
      for (const r of replies) {
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.deepEqual(r.body, { value: `value of ${cold}` });
      }
      const stats = (await ask("/stats")).body as {
        computed: number;
        failOpen: number;
        logged: string[];
      };
      assert.equal(stats.computed, 1, "computations for 50 cold requests");
      assert.equal(stats.failOpen, 0);
      assert.ok(
        coldConnections <= 50,
        `${coldConnections} connections for 50 cold requests`,
      );

      // Hits only: exactly one connection per request (no subscriber).
      const hits = 20;
      before = await connectionsReceived(redis);
      for (let i = 0; i < hits; i++) {
        const r = await ask(`/value?key=${encodeURIComponent(cold)}&ms=0`);
        assert.deepEqual(r.body, { value: `value of ${cold}` });
      }
      const hitConnections = await connectionsReceived(redis) - before;
      assert.equal(hitConnections, hits, "connections for cache hits");

      // A request that has to wait for another process's computation (this
      // test process holds the entry's lock while it computes) opens the
      // subscriber connection too.
      const heldKey = `held:${Math.random()}`;
      const elsewhere = cached(
        async (key: string, _ms: number) => {
          await new Promise((r) => setTimeout(r, 600));
          return `value of ${key}`;
        },
        { redis, key: (key) => key, ttl: 60_000 },
      );
      const computing = elsewhere(heldKey, 0);
      await new Promise((r) => setTimeout(r, 150)); // it holds the lock now
      before = await connectionsReceived(redis);
      const waited = await ask(
        `/value?key=${encodeURIComponent(heldKey)}&ms=0`,
      );
      const waitConnections = await connectionsReceived(redis) - before;
      assert.deepEqual(waited.body, { value: `value of ${heldKey}` });
      assert.equal(await computing, `value of ${heldKey}`);
      assert.equal(
        ((await ask("/stats")).body as { computed: number }).computed,
        1,
        "the waiting request computed",
      );
      assert.equal(waitConnections, 2, "connections for a waiting request");

      // withLock at module scope, its client from the call's arguments.
      const fences = await Promise.all(
        Array.from({ length: 10 }, () => ask("/locked?name=lk")),
      );
      const got = fences.map((f) => (f.body as { fence: number }).fence);
      assert.ok(got.every((f) => typeof f === "number"), JSON.stringify(got));
      assert.equal(new Set(got).size, 10, "fences are distinct");

      console.log(
        `workerd, per-request client: 50 concurrent cold requests -> ${stats.computed} computation, ${coldConnections} connections (${
          coldConnections / 50
        } per request); ${hits} hit-only requests -> ${hitConnections} connections (${
          hitConnections / hits
        } per request); a waiting request -> ${waitConnections} connections`,
      );
      await redis.send("DEL", `respite:cache:{${cold}}`);
    }),
  { timeout: 30_000, skip: skipWithoutEsbuild },
);
