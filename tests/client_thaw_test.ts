/**
 * Serverless freeze/thaw: a client whose process was frozen (SIGSTOP) longer
 * than the server's `timeout` finds its idle connection closed by the server,
 * but its runtime has not read that close yet when the next command is
 * issued at the resume. The command must still work, with no error, and run
 * exactly once: the client checks a connection idle past `idleCheck` with a
 * PING before it writes to it (a PING is read-only, so it may be sent on a
 * connection in doubt), and on a closed one it reconnects and then writes.
 *
 * The worker (tests/fixtures/thaw_worker.ts) runs under the runtime that
 * runs this test (Deno or Bun).
 */

import assert from "node:assert/strict";
import { connect } from "../mod.ts";
import { commandCalls, startRedis } from "../testing/redis.ts";
import { startFaultProxy } from "../testing/fault_proxy.ts";
import { runArgs, spawn } from "../testing/proc.ts";
import { sleep, test, until } from "./_harness.ts";

const worker = new URL("./fixtures/thaw_worker.ts", import.meta.url).pathname;
let n = 0;

/** Whether the server lists a client named `name` (CLIENT LIST). */
async function listed(
  r: Awaited<ReturnType<typeof connect>>,
  name: string,
): Promise<boolean> {
  const list = await r.send<string>("CLIENT", "LIST");
  return list.split("\n").some((line) => line.includes(` name=${name} `));
}

/**
 * Starts the worker against a server with `timeout 2`, stops it for 4 s
 * (until the server has closed its idle connection), continues it, and
 * returns what it printed and the counter it incremented.
 */
async function freezeThaw(
  options: Record<string, unknown> = {},
): Promise<{ out: Record<string, unknown>; counter: string | null }> {
  const server = await startRedis({ args: ["--timeout", "2"] });
  const r = await connect(server.url);
  const prefix = `respite-test-thaw-${Date.now()}-${n++}:`;
  const [cmd, args] = runArgs(worker, [
    String(server.port),
    prefix,
    JSON.stringify(options),
  ]);
  const child = spawn(cmd, args);
  try {
    await until(
      "the worker to be ready",
      20_000,
      async () => await r.send("EXISTS", `${prefix}ready`) === 1,
    );
    child.kill("SIGSTOP");
    const stopped = performance.now();
    await until(
      "the server to close the frozen worker's idle connection",
      10_000,
      async () => !await listed(r, `${prefix}client`),
    );
    const left = 4_000 - (performance.now() - stopped);
    if (left > 0) await sleep(left);
    child.kill("SIGCONT");
    const code = await child.exited;
    const stdout = await child.stdout();
    assert.equal(
      code,
      0,
      `worker exited with ${code}: ${stdout}${await child.stderr()}`,
    );
    return {
      out: JSON.parse(stdout.trim().split("\n").pop()!),
      counter: await r.send<string | null>("GET", `${prefix}counter`),
    };
  } finally {
    child.kill("SIGCONT");
    child.kill("SIGKILL");
    await child.exited;
    await r.close();
    await server.stop();
  }
}

test(
  "freeze/thaw: a client frozen 4 s (SIGSTOP) past the server's timeout of 2 s works on its next command, issued at the resume before the close is read; the command runs once",
  async () => {
    const { out, counter } = await freezeThaw();
    assert.ok(
      (out.jump as number) >= 3_500,
      `the worker saw its clock jump ${out.jump} ms`,
    );
    // The runtime had not seen the close when the command was issued.
    assert.equal(out.statusAtResume, "ready");
    assert.equal(out.error, undefined, `the INCR failed: ${out.error}`);
    assert.equal(out.reply, 2);
    assert.equal(counter, "2", "the INCR ran exactly once");
    assert.deepEqual(out.warnings, []);
  },
  { timeout: 40_000 },
);

test(
  "freeze/thaw, the control: with idleCheck: false the same command is lost with the connection (the test reproduces the failure)",
  async () => {
    const { out, counter } = await freezeThaw({ idleCheck: false });
    assert.ok((out.jump as number) >= 3_500);
    assert.equal(out.statusAtResume, "ready");
    assert.match(
      String(out.error),
      /^ConnectionError: .* lost; the command may or may not have run$/,
    );
    assert.equal(counter, "1", "the server had closed the connection first");
  },
  { timeout: 40_000 },
);

test(
  "idleCheck costs one PING, only for the first command after the connection was idle that long; a busy connection sends none",
  async () => {
    const server = await startRedis();
    try {
      await using r = await connect({ url: server.url, idleCheck: 200 });
      const pings = async () => (await commandCalls(r)).get("ping") ?? 0;
      const before = await pings();
      for (let i = 0; i < 50; i++) await r.send("INCR", "respite-test-idle");
      await Promise.all(
        Array.from({ length: 50 }, () => r.send("INCR", "respite-test-idle")),
      );
      assert.equal(await pings(), before, "no PING while busy");
      await sleep(300);
      const [a, b] = await Promise.all([
        r.send("INCR", "respite-test-idle"),
        r.send("INCR", "respite-test-idle"),
      ]);
      assert.deepEqual([a, b], [101, 102]);
      // INFO commandstats counts the PING before the INFO that reads it.
      assert.equal(await pings(), before + 1, "one PING after 300 ms idle");
      await r.send("INCR", "respite-test-idle");
      assert.equal(await pings(), before + 1, "and none right after");
    } finally {
      await server.stop();
    }
  },
);

test(
  "idleCheck on a black-holed idle connection (no FIN, no RST): no answer to the PING within healthCheckTimeout, so it is dropped and the command goes out on a new connection, once",
  async () => {
    const server = await startRedis();
    const proxy = await startFaultProxy({ port: server.port });
    try {
      await using direct = await connect(server.url);
      await using r = await connect({
        url: proxy.url,
        idleCheck: 100,
        healthCheckTimeout: 300,
      });
      await r.send("SET", "respite-test-idle-bh", "0");
      await sleep(200);
      proxy.blackhole();
      const t0 = performance.now();
      const reply = r.send("INCR", "respite-test-idle-bh");
      await sleep(50); // the PING is lost in the hole
      proxy.resume(); // the old connection stays black-holed; new ones are clean
      assert.equal(await reply, 1);
      const took = performance.now() - t0;
      assert.ok(took >= 300 && took < 2_000, `took ${took} ms`);
      assert.equal(await direct.send("GET", "respite-test-idle-bh"), "1");
      assert.equal(proxy.stats.connections, 2);
    } finally {
      await proxy.close();
      await server.stop();
    }
  },
);

test(
  "freeze/thaw with queueWhileReconnecting: false: the command held behind the idle check was never written, so the idle close (not an outage) must not fail it; it runs once, with no error",
  async () => {
    const { out, counter } = await freezeThaw({
      queueWhileReconnecting: false,
    });
    assert.ok((out.jump as number) >= 3_500);
    assert.equal(out.statusAtResume, "ready");
    assert.equal(out.error, undefined, `the INCR failed: ${out.error}`);
    assert.equal(out.reply, 2);
    assert.equal(counter, "2", "the INCR ran exactly once");
  },
  { timeout: 40_000 },
);

test(
  "idleCheck's logging: an idle connection found dead (no answer to the PING) is an outage and is logged, lost then back; one the server closed while idle is not",
  async () => {
    const server = await startRedis();
    const proxy = await startFaultProxy({ port: server.port });
    const warnings: string[] = [];
    try {
      await using r = await connect({
        url: proxy.url,
        idleCheck: 100,
        healthCheckTimeout: 300,
        logger: { warn: (m) => warnings.push(m) },
      });
      await r.send("PING");
      await sleep(200);
      proxy.blackhole();
      const reply = r.send("INCR", "respite-test-idle-log");
      await sleep(50);
      proxy.resume();
      assert.equal(await reply, 1);
      assert.equal(warnings.length, 2, warnings.join("\n"));
      assert.match(warnings[0], /did not answer a PING .* reconnecting$/);
      assert.match(warnings[1], /is back after/);
      await r.send("DEL", "respite-test-idle-log");
    } finally {
      await proxy.close();
      await server.stop();
    }
  },
);
