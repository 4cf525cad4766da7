/**
 * The semaphore when things go wrong: a try or a release whose reply is
 * lost, a waiter that hears of its permit too late, owner ids the wake
 * channel must not split.
 */
import assert from "node:assert/strict";
import { connect, ConnectionError, Semaphore } from "../mod.ts";
import { commandCalls, startRedis } from "../testing/redis.ts";
import { CuttableConnector } from "../testing/connector.ts";
import { startFaultProxy } from "../testing/fault_proxy.ts";
import { sleep, teardown, test, until, within } from "./_harness.ts";

const server = await startRedis();
const url = server.url;
let n = 0;
const prefix = () => `respite-test-semfault-${Date.now()}-${n++}:`;

/**
 * Runs `call` on a client whose connection is cut while the server, stopped
 * (SIGSTOP), has read its command and not answered; the server resumes
 * after the cut, so the command runs and its reply is lost.
 */
async function lostReply<T>(
  call: (r: Awaited<ReturnType<typeof connect>>, p: string) => Promise<T>,
  check: (
    r: Awaited<ReturnType<typeof connect>>,
    p: string,
    got: Promise<T>,
  ) => Promise<void>,
  setup?: (r: Awaited<ReturnType<typeof connect>>, p: string) => Promise<void>,
) {
  const own = await startRedis();
  try {
    const cut = new CuttableConnector();
    await using r = await connect({ url: own.url, connector: cut.connector });
    const p = prefix();
    // Scripts cached, the connection warm.
    const warm = new Semaphore(r, "warm", { limit: 1, prefix: p });
    assert.ok(await warm.acquire({ wait: 0 }));
    await warm.release();
    await setup?.(r, p);
    own.signal("SIGSTOP");
    let got: Promise<T>;
    try {
      got = call(r, p);
      got.catch(() => {});
      await sleep(30);
      await cut.cut();
      await sleep(100);
    } finally {
      own.signal("SIGCONT");
    }
    await check(r, p, got);
  } finally {
    await own.stop();
  }
}

for (const wait of [0, 5_000]) {
  test(`a try of acquire({ wait: ${wait} }) whose reply is lost leaves no permit behind (not for its 60 s TTL)`, async () => {
    await lostReply(
      (r, p) =>
        new Semaphore(r, "s", { limit: 2, prefix: p, ttl: 60_000 })
          .acquire({ wait }),
      async (r, p, got) => {
        await assert.rejects(within(got, 2_000, "acquire()"), ConnectionError);
        // The try ran (the server read it before the cut): it took a
        // permit, which the give-back frees after the reconnect.
        await until(
          "permit given back",
          3_000,
          async () => await r.send("ZCARD", `${p}sem:{s}:holders`) === 0,
        );
        assert.equal(await r.send("ZCARD", `${p}sem:{s}:queue`), 0);
      },
    );
  });
}

test("a release that got no answer rejects with the ConnectionError, and is sent again: the permit comes back without waiting out its 60 s TTL", async () => {
  const own = await startRedis();
  try {
    const cut = new CuttableConnector();
    // Commands are refused while the client reconnects: the release is
    // never written.
    await using r = await connect({
      url: own.url,
      connector: cut.connector,
      queueWhileReconnecting: false,
    });
    const p = prefix();
    const s = new Semaphore(r, "s", { limit: 1, prefix: p, ttl: 60_000 });
    assert.ok(await s.acquire({ wait: 0 }));
    own.signal("SIGSTOP"); // the reconnect cannot finish meanwhile
    let got: Promise<void>;
    try {
      await cut.cut();
      got = s.release();
      got.catch(() => {});
      await assert.rejects(within(got, 2_000, "release()"), ConnectionError);
      assert.equal(s.held, false);
    } finally {
      own.signal("SIGCONT");
    }
    await using admin = await connect(own.url);
    await until(
      "permit back",
      3_000,
      async () => await admin.send("ZCARD", `${p}sem:{s}:holders`) === 0,
    );
    await r.send("PING"); // reconnected
  } finally {
    await own.stop();
  }
});

test("a waiter on another client whose owner id holds spaces is woken by the release (not by its 1 s look)", async () => {
  await using a = await connect(url);
  await using b = await connect(url);
  const p = prefix();
  const holder = new Semaphore(a, "s", { limit: 1, prefix: p });
  const waiter = new Semaphore(b, "s", {
    limit: 1,
    prefix: p,
    id: "worker 1 on host a:b",
  });
  for (let round = 0; round < 3; round++) {
    assert.ok(await holder.acquire({ wait: 0 }));
    const got = waiter.acquire({ wait: 5_000 });
    await until(
      "queued",
      2_000,
      async () => await a.send("ZCARD", `${p}sem:{s}:queue`) === 1,
    );
    const t0 = performance.now();
    await holder.release();
    assert.equal(await got, true);
    const took = performance.now() - t0;
    assert.ok(took < 500, `woken after ${took} ms`);
    await waiter.release();
  }
});

test("a waiter that hears of its permit after it ran out asks Redis again and then sleeps: no stream of tries while the next holder holds", async () => {
  const proxy = await startFaultProxy({ port: server.port });
  await using a = await connect(url);
  await using b = await connect(proxy.url);
  await using c = await connect(url);
  await using admin = await connect(url);
  const p = prefix();
  const queue = `${p}sem:{s}:queue`;
  const holder = new Semaphore(a, "s", { limit: 1, prefix: p });
  // A permit handed to `late` lasts 20 ms.
  const late = new Semaphore(b, "s", { limit: 1, prefix: p, ttl: 20 });
  const next = new Semaphore(c, "s", { limit: 1, prefix: p, ttl: 10_000 });
  assert.ok(await holder.acquire({ wait: 0 }));
  const lateGot = late.acquire({ wait: 3_000 });
  lateGot.catch(() => {}); // awaited below
  await until(
    "late queued",
    2_000,
    async () => await admin.send("ZCARD", queue) === 1,
  );
  const nextGot = next.acquire({ wait: 10_000 });
  await until(
    "next queued",
    2_000,
    async () => await admin.send("ZCARD", queue) === 2,
  );
  // late's subscriber connection hears nothing for 60 ms: its 20 ms
  // permit runs out in Redis before it reads the message.
  proxy.stall("down", { only: "SUBSCRIBE" });
  await holder.release(); // hands the permit to `late`, published
  await sleep(60);
  proxy.resume();
  // late's next try finds its permit gone and hands it to `next`.
  assert.equal(await within(nextGot, 2_000, "next acquire"), true);
  const before = await commandCalls(admin);
  await sleep(300);
  const after = await commandCalls(admin);
  const tries = (after.get("evalsha") ?? 0) - (before.get("evalsha") ?? 0);
  // Its ticket is refreshed once a second; before, it tried again and again.
  assert.ok(tries <= 2, `${tries} scripts in 300 ms while next held`);
  await next.release();
  assert.equal(await lateGot, true);
  await late.release().catch(() => {}); // 20 ms: may have run out
  await until(
    "line empty",
    2_000,
    async () => await admin.send("ZCARD", queue) === 0,
  );
  await b.close();
  await proxy.close();
});

teardown(async () => {
  await server.stop();
});
