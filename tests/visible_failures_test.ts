/**
 * Failures that must be visible in the logs, against real redis-servers
 * that are stopped and started again: `cached` falling open warns through
 * the logger (rate-limited: one line, then at most one per interval, which
 * counts the calls in between), not only through the `error` hook; a
 * client's reconnect loop warns once when an outage starts and once when it
 * ends, however many attempts it takes.
 */
import assert from "node:assert/strict";
import { cached, connect } from "../mod.ts";
import { FailOpenLog } from "../lib/cache/fail_open_log.ts";
import { preloadScripts } from "../testing/scripts.ts";
import { startRedis } from "../testing/redis.ts";
import { sleep, test } from "./_harness.ts";

const FAST = { minDelay: 10, maxDelay: 40 };

async function until(what: string, ok: () => boolean, ms = 5_000) {
  const deadline = Date.now() + ms;
  while (!ok()) {
    assert.ok(Date.now() < deadline, `timed out waiting: ${what}`);
    await sleep(10);
  }
}

test("cached falling open warns through the logger: one line for 50 calls on 50 keys while Redis is down, none once it is back", async () => {
  const server = await startRedis();
  try {
    const clientLines: string[] = [];
    await using redis = await connect({
      url: server.url,
      reconnect: FAST,
      logger: { warn: (m) => clientLines.push(m) },
    });
    await preloadScripts(redis); // so the only lines are about failing open
    const lines: string[] = [];
    let runs = 0;
    const f = cached((id: number) => ++runs + id * 0, {
      redis,
      key: (id) => `visible:${id}`,
      ttl: 60_000,
      logger: { warn: (m) => lines.push(m) },
    });
    await f(0);
    assert.equal(lines.length, 0, lines.join("\n"));
    await server.stop();
    await until("the client noticed", () => redis.status !== "ready");
    for (let i = 1; i <= 50; i++) await f(i);
    await Promise.all(Array.from({ length: 50 }, (_, i) => f(100 + i)));
    assert.equal(runs, 101, "every call computed (fail open)");
    const failOpen = lines.filter((l) => l.includes("(failOpen)"));
    assert.equal(failOpen.length, 1, lines.join("\n"));
    assert.match(
      failOpen[0],
      /^respite: cached\(\) could not use Redis for key "visible:1" \(.+\): computing in this process \(failOpen\); at most one such line per 10 s$/,
    );
    await server.start();
    await until("reconnected", () => redis.status === "ready");
    lines.length = 0;
    for (let i = 200; i < 210; i++) await f(i);
    assert.deepEqual(lines.filter((l) => l.includes("(failOpen)")), []);
    // Without a logger of its own, cached uses the client's.
    const g = cached(() => 1, { redis, key: "visible:g", ttl: 60_000 });
    await server.stop();
    await until("the client noticed", () => redis.status !== "ready");
    clientLines.length = 0;
    await g();
    assert.equal(
      clientLines.filter((l) => l.includes("(failOpen)")).length,
      1,
      clientLines.join("\n"),
    );
  } finally {
    await server.stop();
  }
});

test("the fail-open line is rate-limited: at most one per interval, counting the calls it did not log; null silences it", () => {
  let now = 0;
  const log = new FailOpenLog(10_000, () => now);
  const lines: string[] = [];
  const logger = { warn: (m: string) => lines.push(m) };
  for (let i = 0; i < 30; i++) {
    log.note(logger, `k${i}`, new Error("down"));
    now += 100; // 30 calls over 3 s
  }
  assert.equal(lines.length, 1);
  now = 10_000;
  log.note(logger, "k", new Error("still down"));
  assert.equal(lines.length, 2);
  assert.match(
    lines[1],
    /\(still down\).*; 29 more calls fell open since the last such line;/,
  );
  log.note(null, "k", new Error("x"));
  now = 30_000;
  log.note(logger, "k", new Error("x"));
  assert.equal(lines.length, 3);
  assert.doesNotMatch(lines[2], /more call/);
});

test("a reconnect loop warns once per outage (lost, then back), whatever the number of attempts", async () => {
  const server = await startRedis();
  try {
    const lines: string[] = [];
    await using redis = await connect({
      url: server.url,
      reconnect: FAST,
      logger: { warn: (m) => lines.push(m) },
    });
    for (let outage = 1; outage <= 2; outage++) {
      await server.stop();
      await until("reconnecting", () => redis.status === "reconnecting");
      await sleep(600); // 600 ms of attempts, every 10-40 ms
      await server.start();
      await until("back", () => redis.status === "ready");
      assert.equal(await redis.send("PING"), "PONG");
      const lost = lines.filter((l) => l.includes("reconnecting"));
      const back = lines.filter((l) => l.includes("is back after"));
      assert.equal(lost.length, outage, lines.join("\n"));
      assert.equal(back.length, outage, lines.join("\n"));
      assert.equal(lines.length, 2 * outage, lines.join("\n"));
      assert.match(
        lost[outage - 1],
        new RegExp(
          `^respite: lost the connection to 127\\.0\\.0\\.1:${server.port} \\(.+\\); reconnecting$`,
        ),
      );
      const attempts = Number(
        /\((\d+) attempts\)$/.exec(back[outage - 1])?.[1],
      );
      assert.ok(attempts > 5, `only ${attempts} attempts: ${back}`);
    }
  } finally {
    await server.stop();
  }
});

test("an idle connection the server lets go (its timeout) and that is back at the first attempt is no outage: nothing is logged", async () => {
  const server = await startRedis({ args: ["--timeout", "1"] });
  try {
    const lines: string[] = [];
    await using redis = await connect({
      url: server.url,
      reconnect: FAST,
      logger: { warn: (m) => lines.push(m) },
    });
    const before = await redis.send<number>("CLIENT", "ID");
    // Redis closes a connection idle past 1 s (counted in whole seconds, so
    // after 1-2 s). Another connection watches for it, every 50 ms so it is
    // never idle itself: asking on the idle connection would reset its idle
    // time, and a poll in step with the server's clock may never see it go.
    await using watcher = await connect({ url: server.url });
    const deadline = Date.now() + 10_000;
    while (
      (await watcher.send<string>("CLIENT", "LIST", "ID", before)) !== ""
    ) {
      assert.ok(Date.now() < deadline, "the server never closed the client");
      await sleep(50);
    }
    // The client reconnects on its own, at once.
    await until("back", () => redis.status === "ready");
    const after = await redis.send<number>("CLIENT", "ID");
    assert.notEqual(after, before);
    assert.deepEqual(lines, []);
    // A real outage is still logged: lost, then back.
    await server.stop();
    await until("reconnecting", () => redis.status === "reconnecting");
    await sleep(200);
    await server.start();
    await until("back", () => redis.status === "ready");
    assert.equal(lines.length, 2, lines.join("\n"));
  } finally {
    await server.stop();
  }
});
