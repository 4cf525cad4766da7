/**
 * Redis's server-assisted client-side caching, default tracking against
 * broadcast (`BCAST PREFIX`), on one throwaway redis-server: what the
 * memory tier's choice of mode costs the server, and how many invalidations
 * it sends.
 *
 * 1. Server memory: one RESP3 connection tracks, then reads 100,000 keys
 *    under a prefix. `used_memory` before and after (delta), and
 *    `tracking_total_keys` / `tracking_total_items` / `tracking_total_prefixes`
 *    from `INFO`.
 * 2. Fan-out: 4 tracking connections; 1,000 keys are written once each
 *    (`SET`, one at a time) after they were read by all 4, by one, or by
 *    none of them. Invalidation pushes and invalidated keys delivered per
 *    write, summed over the 4 connections.
 *
 * These are raw RESP3 tracking connections (respite's `Connection`, with
 * the options of a `connect()` client and `onPush`), not the memory tier:
 * this measures Redis's mechanism.
 *
 * Usage: deno task bench:tracking [--keys 100000] [--writes 1000] [--json]
 * With REDIS_URL set, that server is used instead of a throwaway one.
 */

import { connect, type RedisClient } from "../mod.ts";
import { optionsOf } from "../lib/client/client.ts";
import { Connection } from "../lib/client/connection.ts";
import { sharedRedis } from "../testing/redis.ts";
import { benchDoc, printJson } from "./_bench_json.ts";
import { textTable } from "./_text_table.ts";

const log = (s: string) => console.error(s);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function option(name: string, fallback: number): number {
  const i = Deno.args.indexOf(`--${name}`);
  if (i === -1) return fallback;
  const n = Number(Deno.args[i + 1]);
  if (!Number.isInteger(n) || n <= 0) {
    throw new RangeError(`--${name} needs a positive integer`);
  }
  return n;
}

type Mode = "default" | "bcast";

function info(text: string, field: string): number {
  const m = text.match(new RegExp(`^${field}:(\\d+)`, "m"));
  if (m === null) throw new Error(`INFO has no ${field}`);
  return Number(m[1]);
}

/** A RESP3 connection counting the invalidation pushes it gets. */
async function tracker(redis: RedisClient, mode: Mode, prefix: string) {
  const seen = { pushes: 0, keys: 0 };
  const conn = await Connection.open({
    ...optionsOf(redis),
    protocol: 3,
    onPush(push) {
      if (String(push.data[0]) !== "invalidate") return;
      seen.pushes++;
      const keys = push.data[1];
      seen.keys += Array.isArray(keys) ? keys.length : 0;
    },
  });
  if (mode === "bcast") {
    await conn.send(["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", prefix]);
  } else {
    await conn.send(["CLIENT", "TRACKING", "ON"]);
  }
  return { conn, seen };
}

async function inBatches(
  n: number,
  each: (i: number) => Promise<unknown>,
): Promise<void> {
  for (let i = 0; i < n; i += 1_000) {
    await Promise.all(
      Array.from({ length: Math.min(1_000, n - i) }, (_, j) => each(i + j)),
    );
  }
}

async function settle(redis: RedisClient): Promise<void> {
  // Pushes go out with the server's next replies; a round trip on every
  // tracker plus a short wait lets the last ones arrive.
  await redis.send("PING");
  await sleep(200);
}

async function memory(
  redis: RedisClient,
  mode: Mode,
  ns: string,
  keys: number,
) {
  const prefix = `${ns}mem:${mode}:`;
  await inBatches(keys, (i) => redis.send("SET", `${prefix}${i}`, "v"));
  const t = await tracker(redis, mode, prefix);
  await settle(redis);
  const before = await redis.send<string>("INFO", "memory");
  await inBatches(keys, (i) => t.conn.send(["GET", `${prefix}${i}`]));
  await settle(redis);
  const after = await redis.send<string>("INFO", "memory");
  const stats = await redis.send<string>("INFO", "stats");
  const row = {
    mode,
    keys,
    usedMemoryDelta: info(after, "used_memory") -
      info(before, "used_memory"),
    trackingTotalKeys: info(stats, "tracking_total_keys"),
    trackingTotalItems: info(stats, "tracking_total_items"),
    trackingTotalPrefixes: info(stats, "tracking_total_prefixes"),
  };
  await t.conn.close(0);
  await inBatches(keys, (i) => redis.send("DEL", `${prefix}${i}`));
  return row;
}

async function fanOut(
  redis: RedisClient,
  mode: Mode,
  ns: string,
  writes: number,
  readers: "all" | "one" | "none",
) {
  const prefix = `${ns}fan:${mode}:${readers}:`;
  const ts = await Promise.all(
    Array.from({ length: 4 }, () => tracker(redis, mode, prefix)),
  );
  await inBatches(writes, (i) => redis.send("SET", `${prefix}${i}`, "old"));
  const reading = readers === "all" ? ts : readers === "one" ? [ts[0]] : [];
  for (const t of reading) {
    await inBatches(writes, (i) => t.conn.send(["GET", `${prefix}${i}`]));
  }
  await settle(redis);
  for (const t of ts) t.seen.pushes = t.seen.keys = 0;
  for (let i = 0; i < writes; i++) {
    await redis.send("SET", `${prefix}${i}`, "new");
  }
  await Promise.all(ts.map((t) => t.conn.send(["PING"])));
  await settle(redis);
  const pushes = ts.reduce((s, t) => s + t.seen.pushes, 0);
  const delivered = ts.reduce((s, t) => s + t.seen.keys, 0);
  for (const t of ts) await t.conn.close(0);
  await inBatches(writes, (i) => redis.send("DEL", `${prefix}${i}`));
  return {
    mode,
    readers,
    writes,
    pushesPerWrite: pushes / writes,
    keysPerWrite: delivered / writes,
  };
}

async function main() {
  const keys = option("keys", 100_000);
  const writes = option("writes", 1_000);
  const json = Deno.args.includes("--json");
  const server = await sharedRedis();
  const redis = await connect(server.url);
  const ns = `respite:bench:tracking:${Date.now()}:`;
  try {
    const version = (await redis.send<string>("INFO", "server")).match(
      /redis_version:(\S+)/,
    )?.[1];
    log(`redis ${version} at ${server.url}; deno ${Deno.version.deno}`);
    const mem = [];
    for (const mode of ["default", "bcast"] as const) {
      mem.push(await memory(redis, mode, ns, keys));
    }
    const fan = [];
    for (const readers of ["all", "one", "none"] as const) {
      for (const mode of ["default", "bcast"] as const) {
        fan.push(await fanOut(redis, mode, ns, writes, readers));
      }
    }
    if (json) {
      // The shared shape; no ratios: both rows are Redis's own mechanism.
      printJson(benchDoc({
        benchmark: "tracking",
        command: `deno task bench:tracking ${Deno.args.join(" ")}`.trim(),
        runtime: { redis: version },
        rounds: 1,
        rows: [
          ...mem.map((r) => ({
            group: `server memory, ${keys} tracked keys`,
            library: r.mode,
            median: r.usedMemoryDelta,
            unit: "bytes",
          })),
          ...fan.map((r) => ({
            group: `invalidations per write, keys read by ${r.readers}`,
            library: r.mode,
            median: r.pushesPerWrite,
            unit: "pushes/write",
          })),
        ],
        ratios: [],
        details: { keys, writes, memory: mem, fanOut: fan },
      }));
      return;
    }
    console.log(
      `\nServer memory: one connection tracking ${keys} keys it read\n`,
    );
    console.log(textTable(
      [
        "mode",
        "used_memory delta",
        "tracking_total_keys",
        "tracking_total_items",
        "tracking_total_prefixes",
      ],
      mem.map((r) => [
        r.mode,
        `${(r.usedMemoryDelta / 1024).toFixed(0)} KiB`,
        String(r.trackingTotalKeys),
        String(r.trackingTotalItems),
        String(r.trackingTotalPrefixes),
      ]),
    ));
    console.log(
      `\nFan-out: 4 tracking connections, ${writes} writes (SET), per write, summed over the 4\n`,
    );
    console.log(textTable(
      ["keys read by", "mode", "pushes / write", "keys invalidated / write"],
      fan.map((r) => [
        r.readers,
        r.mode,
        r.pushesPerWrite.toFixed(2),
        r.keysPerWrite.toFixed(2),
      ]),
    ));
    console.log(
      `\nredis ${version}, deno ${Deno.version.deno}, ${
        new Date().toISOString().slice(0, 10)
      }`,
    );
  } finally {
    await redis.close();
    await server.stop();
  }
}

await main();
