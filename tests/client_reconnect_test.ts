/**
 * Reconnect: in-flight commands fail (never resent), the client comes back by
 * itself with backoff and jitter, AUTH/SELECT are redone, commands issued while
 * reconnecting are queued or fail fast, and close() stops the loop.
 *
 * Every test starts its own redis-server, since it kills and restarts it.
 */
import assert from "node:assert/strict";
import { connect, ConnectionError, type Connector } from "../mod.ts";
import { runtimeConnector } from "../lib/transport/mod.ts";
import { type RedisServer, startRedis } from "../testing/redis.ts";
import { CuttableConnector } from "../testing/connector.ts";
import { sleep, test } from "./_harness.ts";

/** Polls `pred` every 5 ms until it holds; throws after `ms`. */
async function waitFor(
  what: string,
  pred: () => boolean,
  ms = 5_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
    await sleep(5);
  }
}

/** Runs `fn` with a fresh server that is stopped afterwards, whatever happens. */
async function withServer(
  fn: (server: RedisServer) => Promise<void>,
  args: string[] = [],
): Promise<void> {
  const server = await startRedis({ args });
  try {
    await fn(server);
  } finally {
    await server.stop();
  }
}

/** Settles `p` into a record, so a test can look at it later. */
function track<T>(p: Promise<T>): {
  done: boolean;
  value?: T;
  error?: unknown;
  promise: Promise<void>;
} {
  const t: {
    done: boolean;
    value?: T;
    error?: unknown;
    promise: Promise<void>;
  } = { done: false, promise: Promise.resolve() };
  t.promise = p.then(
    (v) => {
      t.done = true;
      t.value = v;
    },
    (e) => {
      t.done = true;
      t.error = e;
    },
  );
  return t;
}

const FAST = { minDelay: 10, maxDelay: 100 };

test("SIGKILL with commands in flight: they reject with ConnectionError and are not resent", async () => {
  await withServer(async (server) => {
    await using r = await connect({
      url: server.url,
      reconnect: FAST,
      blocking: true,
    });
    await r.send("SET", "before", "1");
    // BLPOP holds the server's attention, so the INCR behind it is in flight
    // but has not run when the server dies.
    const blocked = r.send("BLPOP", "never", 10);
    const incr = r.send("INCR", "counter");
    const echo = r.send("ECHO", "hi");
    await sleep(50);
    server.signal("SIGKILL");
    for (const p of [blocked, incr, echo]) {
      await assert.rejects(p, (e: unknown) => {
        assert.ok(e instanceof ConnectionError, `got ${e}`);
        assert.match(e.message, /may or may not have run/);
        return true;
      });
    }
    await server.restart();
    await waitFor("ready again", () => r.status === "ready");
    // The server came back empty; had the client resent INCR, counter would be 1.
    assert.equal(await r.send("GET", "counter"), null);
    assert.equal(await r.send("GET", "before"), null, "not the same server?");
    assert.equal(await r.send("INCR", "counter"), 1);
  });
});

test("the client reconnects by itself, with exponential backoff and jitter", async () => {
  await withServer(async (server) => {
    const real = await runtimeConnector();
    const attempts: number[] = [];
    const counting: Connector = (o, h) => {
      attempts.push(performance.now());
      return real(o, h);
    };
    const minDelay = 10;
    const maxDelay = 100;
    await using r = await connect({
      url: server.url,
      connector: counting,
      reconnect: { minDelay, maxDelay },
    });
    assert.equal(attempts.length, 1);
    await server.stop();
    await waitFor("reconnecting", () => r.status === "reconnecting");
    // Let it fail for a while: delays 5-10, 10-20, 20-40, 40-80, then 50-100.
    await sleep(1_000);
    const failed = attempts.slice(1);
    assert.ok(failed.length >= 8, `only ${failed.length} attempts in 1 s`);
    // Backoff: far fewer attempts than a fixed minDelay would make (~100).
    assert.ok(failed.length <= 25, `${failed.length} attempts in 1 s`);
    // gaps[i]: the delay before attempt i (i >= 1), drawn from [base/2, base].
    const gaps: number[] = [];
    for (let i = 1; i < failed.length; i++) {
      const gap = failed[i] - failed[i - 1];
      gaps.push(gap);
      const base = Math.min(maxDelay, minDelay * 2 ** i);
      // Timers never fire early (1 ms slack for clock granularity), and a busy
      // shared machine may fire them late.
      assert.ok(
        gap >= base / 2 - 1,
        `gap before attempt ${i} was ${gap.toFixed(1)} ms, below ${base / 2}`,
      );
      assert.ok(
        gap <= base + 250,
        `gap before attempt ${i} was ${gap.toFixed(1)} ms, base ${base}`,
      );
    }
    // Jitter: the capped delays (attempts 4 on) spread over [50, 100] ms.
    const capped = gaps.slice(3);
    const spread = Math.max(...capped) - Math.min(...capped);
    assert.ok(
      spread >= 15,
      `no jitter: ${capped.map((g) => g.toFixed(1)).join(", ")}`,
    );
    await server.start();
    await waitFor("ready again", () => r.status === "ready");
    assert.equal(await r.send("PING"), "PONG");
    assert.equal(await r.send("SET", "k", "v"), "OK");
    assert.equal(await r.send("GET", "k"), "v");
  });
});

test("AUTH and SELECT are redone after the server restarts", async () => {
  const password = "pw-for-reconnect-7Hq";
  await withServer(async (server) => {
    const url = `redis://:${password}@${server.host}:${server.port}/2`;
    await using r = await connect({ url, reconnect: FAST });
    await r.send("SET", "first", "1");
    server.signal("SIGKILL");
    await server.restart(); // same port, same --requirepass
    await waitFor("ready again", () => r.status === "ready");
    assert.equal(await r.send("SET", "written-after", "yes"), "OK");
    assert.equal(await r.send("GET", "first"), null, "a restarted server");
    await using check = await connect({
      hostname: server.host,
      port: server.port,
      password,
      db: 2,
    });
    assert.equal(await check.send("GET", "written-after"), "yes", "db 2");
    await using check0 = await connect({
      hostname: server.host,
      port: server.port,
      password,
    });
    assert.equal(await check0.send("GET", "written-after"), null, "db 0");
  }, ["--requirepass", password]);
});

test("commands issued while reconnecting wait in the queue and succeed after the restart", async () => {
  await withServer(async (server) => {
    await using r = await connect({ url: server.url, reconnect: FAST });
    await server.stop();
    await waitFor("reconnecting", () => r.status === "reconnecting");
    const set = track(r.send("SET", "queued", "v"));
    const incrs = Array.from({ length: 50 }, () => track(r.send("INCR", "n")));
    const get = track(r.send("GET", "queued"));
    await sleep(150);
    assert.equal(set.done, false, "a queued command settled while offline");
    assert.equal(get.done, false);
    await server.start();
    await Promise.all([set, ...incrs, get].map((t) => t.promise));
    assert.equal(set.error, undefined);
    assert.equal(set.value, "OK");
    assert.deepEqual(
      incrs.map((t) => t.value),
      Array.from({ length: 50 }, (_, i) => i + 1),
    );
    assert.equal(get.value, "v");
  });
});

test("a queued command that times out or is aborted while reconnecting rejects at once; the rest stay in order", async () => {
  await withServer(async (server) => {
    await using r = await connect({ url: server.url, reconnect: FAST });
    await server.stop();
    await waitFor("reconnecting", () => r.status === "reconnecting");
    const ac = new AbortController();
    const reason = new Error("gave up waiting");
    const before = track(r.send("ECHO", "before"));
    const t0 = performance.now();
    const timedOut = r.command(["INCR", "n"], { timeout: 50 });
    const aborted = r.command(["INCR", "n"], { signal: ac.signal });
    const after = track(r.send("ECHO", "after"));
    await assert.rejects(timedOut, { name: "TimeoutError" });
    assert.ok(performance.now() - t0 < 50 + 400, "timed out late");
    ac.abort(reason);
    await assert.rejects(aborted, (e: unknown) => e === reason);
    assert.equal(before.done, false);
    await server.start();
    await Promise.all([before.promise, after.promise]);
    assert.equal(before.value, "before");
    assert.equal(after.value, "after");
    assert.equal(await r.send("ECHO", "next"), "next");
  });
});

test("a queued command aborted or timed out while reconnecting is never sent", async () => {
  await withServer(async (server) => {
    await using r = await connect({ url: server.url, reconnect: FAST });
    await server.stop();
    await waitFor("reconnecting", () => r.status === "reconnecting");
    const ac = new AbortController();
    const reason = new Error("gave up on the lock");
    const aborted = r.command(["INCR", "k"], { signal: ac.signal });
    const timedOut = r.command(["INCR", "k2"], { timeout: 30 });
    const normal = track(r.send("INCR", "k3"));
    ac.abort(reason);
    await assert.rejects(aborted, (e: unknown) => e === reason);
    await assert.rejects(timedOut, { name: "TimeoutError" });
    assert.equal(normal.done, false);
    await server.start();
    await normal.promise;
    assert.equal(normal.error, undefined);
    assert.equal(normal.value, 1);
    // The server came back empty: had the settled INCRs been written, they
    // would have run after the restart.
    assert.equal(await r.send("EXISTS", "k"), 0, "the aborted INCR was sent");
    assert.equal(
      await r.send("EXISTS", "k2"),
      0,
      "the timed-out INCR was sent",
    );
    assert.equal(await r.send("GET", "k3"), "1");
  });
});

test("queueWhileReconnecting: false rejects at once while reconnecting", async () => {
  await withServer(async (server) => {
    await using r = await connect({
      url: server.url,
      reconnect: FAST,
      queueWhileReconnecting: false,
    });
    await server.stop();
    await waitFor("reconnecting", () => r.status === "reconnecting");
    const t0 = performance.now();
    await assert.rejects(r.send("INCR", "x"), (e: unknown) => {
      assert.ok(e instanceof ConnectionError);
      assert.match(e.message, /reconnecting/);
      return true;
    });
    assert.ok(performance.now() - t0 < 100, "did not fail fast");
    // Bad arguments are still a TypeError, before anything else.
    await assert.rejects(
      r.send("SET", "x", {} as unknown as string),
      TypeError,
    );
    await server.start();
    await waitFor("ready again", () => r.status === "ready");
    assert.equal(await r.send("INCR", "x"), 1, "the rejected INCR was sent");
  });
});

test("maxQueue bounds the commands held while reconnecting", async () => {
  await withServer(async (server) => {
    await using r = await connect({
      url: server.url,
      reconnect: FAST,
      maxQueue: 3,
    });
    await server.stop();
    await waitFor("reconnecting", () => r.status === "reconnecting");
    const held = [1, 2, 3].map((i) => track(r.send("RPUSH", "l", `v${i}`)));
    await assert.rejects(r.send("RPUSH", "l", "v4"), (e: unknown) => {
      assert.ok(e instanceof ConnectionError);
      assert.match(e.message, /3 commands are already queued/);
      return true;
    });
    await server.start();
    await Promise.all(held.map((t) => t.promise));
    assert.deepEqual(held.map((t) => t.value), [1, 2, 3]);
    assert.deepEqual(await r.send("LRANGE", "l", 0, -1), ["v1", "v2", "v3"]);
  });
});

test("reconnect: false closes the client when the connection drops", async () => {
  await withServer(async (server) => {
    const r = await connect({
      url: server.url,
      reconnect: false,
      blocking: true,
    });
    try {
      const id = await r.send<number>("CLIENT", "ID");
      const inflight = track(r.send("BLPOP", "never", 5));
      await using admin = await connect(server.url);
      await sleep(30);
      assert.equal(await admin.send("CLIENT", "KILL", "ID", id), 1);
      await inflight.promise;
      assert.ok(inflight.error instanceof ConnectionError);
      await waitFor("closed", () => r.status === "closed");
      await assert.rejects(r.send("PING"), ConnectionError);
      await sleep(100);
      assert.equal(r.status, "closed", "it came back");
    } finally {
      await r.close();
    }
    assert.equal(r.status, "closed");
  });
});

test("reconnect.maxRetries: gives up, rejects queued commands and closes", async () => {
  await withServer(async (server) => {
    const r = await connect({
      url: server.url,
      reconnect: { minDelay: 10, maxDelay: 20, maxRetries: 2 },
    });
    try {
      await server.stop();
      await waitFor("reconnecting", () => r.status === "reconnecting");
      const queued = [r.send("PING"), r.send("SET", "a", "b")];
      for (const p of queued) {
        await assert.rejects(p, (e: unknown) => {
          assert.ok(e instanceof ConnectionError);
          assert.match(e.message, /after 2 retries/);
          return true;
        });
      }
      assert.equal(r.status, "closed");
      await assert.rejects(r.send("PING"), ConnectionError);
      await server.start();
      await sleep(100);
      assert.equal(r.status, "closed", "it came back after giving up");
    } finally {
      await r.close();
    }
  });
});

test("close() while reconnecting stops the loop and rejects queued commands", async () => {
  await withServer(async (server) => {
    // Long delays: close() must not wait for a pending retry timer.
    const r = await connect({
      url: server.url,
      reconnect: { minDelay: 5_000, maxDelay: 10_000 },
    });
    await server.stop();
    await waitFor("reconnecting", () => r.status === "reconnecting");
    const queued = r.send("PING");
    const t0 = performance.now();
    await r.close();
    assert.ok(performance.now() - t0 < 1_000, "close() waited for the timer");
    assert.equal(r.status, "closed");
    await assert.rejects(queued, ConnectionError);
    await assert.rejects(r.send("PING"), ConnectionError);
  });
});

test("close() during a reconnect attempt resolves only once its socket is closed", async () => {
  await withServer(async (server) => {
    const real = await runtimeConnector();
    let gate: Promise<void> | null = null;
    let entered: () => void = () => {};
    /** Connector calls not finished yet, and transports not closed yet. */
    let connecting = 0;
    let live = 0;
    const slow: Connector = async (o, h) => {
      connecting++;
      try {
        if (gate !== null) {
          entered();
          await gate;
        }
        const t = await real(o, {
          onData: h.onData,
          onClose: (err) => {
            live--;
            h.onClose(err);
          },
        });
        live++;
        return t;
      } finally {
        connecting--;
      }
    };
    const cut = new CuttableConnector(slow);
    const r = await connect({
      url: server.url,
      connector: cut.connector,
      reconnect: { minDelay: 5, maxDelay: 10 },
    });
    const open = Promise.withResolvers<void>();
    const inAttempt = new Promise<void>((res) => entered = res);
    gate = open.promise;
    await cut.cut();
    await inAttempt; // a reconnect attempt is now opening a socket
    let seen: [number, number] | null = null;
    const closed = r.close().then(() => {
      seen = [connecting, live];
    });
    await sleep(50);
    open.resolve(); // the socket opens after close() was called
    await closed;
    assert.deepEqual(
      seen,
      [0, 0],
      "close() resolved while a socket was still opening or open",
    );
    assert.equal(r.status, "closed");
    await assert.rejects(r.send("PING"), ConnectionError);
  });
});

test("close() during the handshake of a reconnect leaves no socket behind", async () => {
  const password = "hs-pw";
  await withServer(async (server) => {
    const cut = new CuttableConnector();
    const r = await connect({
      url: `redis://:${password}@${server.host}:${server.port}/3`,
      reconnect: { minDelay: 1, maxDelay: 2 },
      connector: cut.connector,
    });
    server.signal("SIGSTOP"); // the server accepts sockets but never answers
    try {
      await cut.cut();
      await sleep(50); // a reconnect attempt now waits for the AUTH reply
      assert.equal(r.status, "reconnecting");
      await r.close();
      assert.equal(r.status, "closed");
    } finally {
      server.signal("SIGCONT");
    }
  }, ["--requirepass", password]);
});
