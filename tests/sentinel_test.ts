import assert from "node:assert/strict";
import {
  cached,
  connect,
  ConnectionError,
  connectSentinel,
  Lock,
  withLock,
} from "../mod.ts";
import { startSentinels } from "../testing/sentinel.ts";
import { sleep, teardown, test, until, within } from "./_harness.ts";

const setup = await startSentinels();
const { name, sentinels } = setup;

async function roleOf(port: number): Promise<string> {
  await using c = await connect({ port, reconnect: false, logger: null });
  const r = await c.send<string[]>("ROLE");
  return String(r[0]);
}

/**
 * {@link roleOf} for polling through a failover: `null` when the probe's own
 * connection is cut. Sentinel ends every normal client of a server it
 * reconfigures (`CLIENT KILL TYPE normal` with the `REPLICAOF`), so a ROLE in
 * flight at that instant gets a ConnectionError that says nothing about the
 * client under test (it failed one fresh-clone CI run of this test under Bun).
 */
async function roleWhilePolling(port: number): Promise<string | null> {
  try {
    return await roleOf(port);
  } catch (e) {
    if (e instanceof ConnectionError) return null;
    throw e;
  }
}

test("connectSentinel: bad arguments are TypeErrors; unreachable sentinels a ConnectionError", async () => {
  await assert.rejects(connectSentinel([], { name }), TypeError);
  await assert.rejects(
    connectSentinel(["127.0.0.1:99999"], { name }),
    TypeError,
  );
  await assert.rejects(
    connectSentinel(sentinels, {} as { name: string }),
    TypeError,
  );
  await assert.rejects(
    connectSentinel(sentinels, { name, port: 1 } as { name: string }),
    TypeError,
  );
  await assert.rejects(
    connectSentinel(["127.0.0.1:1", "127.0.0.1:2"], {
      name,
      sentinelPassword: "hunter2-secret",
      connectTimeout: 500,
    }),
    (e: unknown) => {
      assert.ok(e instanceof ConnectionError, String(e));
      assert.match(e.message, /127\.0\.0\.1:1/);
      assert.match(e.message, /127\.0\.0\.1:2/);
      assert.doesNotMatch(e.message, /hunter2/);
      return true;
    },
  );
  await assert.rejects(
    connectSentinel(sentinels, { name: "no-such-master", connectTimeout: 500 }),
    ConnectionError,
  );
});

test("connectSentinel: a SENTINEL FAILOVER while locks are held and cached is busy; roles change; READONLY path; locks, withLock and cached work on the new master; fencing tokens keep increasing", async () => {
  const [a, b] = setup.servers;
  await using r = await connectSentinel(sentinels, { name, logger: null });
  const before = await roleOf(a.port) === "master" ? a : b;
  const after = before === a ? b : a;
  assert.equal(
    r.info.port,
    before.port,
  );
  await r.send("SET", "sentinel:test", "1");
  assert.equal(await r.send("GET", "sentinel:test"), "1");
  // A subscription: it must follow the master and call onResubscribed.
  let resubscribed = 0;
  const messages: string[] = [];
  await r.subscribe("sentinel:ch", (m) => messages.push(m), {
    onResubscribed: () => resubscribed++,
  });

  const tokens: number[] = [];
  const lock = new Lock(r, "failover", { ttl: 10_000 });
  for (let i = 0; i < 5; i++) {
    assert.ok(await lock.acquire({ wait: 0 }));
    tokens.push(lock.fence!);
    await lock.release();
  }
  const held = new Lock(r, "held", { ttl: 10_000, autoRenew: false });
  assert.ok(await held.acquire({ wait: 0 }));
  let computing = 0;
  const slow = cached(async () => {
    computing++;
    await sleep(300);
    return "value";
  }, { redis: r, key: () => "sentinel:cached", ttl: 60_000 });
  const busy = slow().catch((e) => e);

  // Wait for the replica to be in sync, then fail over.
  await until("replica in sync", 20_000, async () => {
    await using s = await connect({
      port: setup.sentinelPorts[0],
      logger: null,
    });
    const reps = await s.send<string[][]>("SENTINEL", "REPLICAS", name);
    return reps.some((x) =>
      x.includes("master-link-status") &&
      x[x.indexOf("master-link-status") + 1] === "ok"
    );
  });
  {
    await using s = await connect({
      port: setup.sentinelPorts[0],
      logger: null,
    });
    assert.equal(await s.send("SENTINEL", "FAILOVER", name), "OK");
  }
  await until(
    "roles changed",
    30_000,
    async () =>
      (await roleWhilePolling(after.port)) === "master" &&
      (await roleWhilePolling(before.port)) === "slave",
  );
  await busy;
  // The same client, no restart: commands reach the new master.
  await until("writes work after the failover", 20_000, async () => {
    try {
      await r.send("SET", "sentinel:after", "1");
      return true;
    } catch {
      return false;
    }
  });
  assert.equal(await roleOf(after.port), "master");
  assert.equal(await r.send("GET", "sentinel:after"), "1");
  assert.equal(r.info.port, after.port, "on the new master");
  await until("resubscribed", 20_000, () => resubscribed >= 1);
  {
    // Published on the new master: the subscription is there now.
    await using pub = await connect({ port: after.port, logger: null });
    await until("the message on the new master", 10_000, async () => {
      await pub.send("PUBLISH", "sentinel:ch", "hello");
      return messages.includes("hello");
    });
  }
  assert.ok(await lock.acquire({ wait: 5_000 }));
  tokens.push(lock.fence!);
  await lock.release();
  const w = await withLock(function () {
    return this.fence!;
  }, { redis: r, name: "failover" })();
  tokens.push(w);
  for (let i = 1; i < tokens.length; i++) {
    assert.ok(tokens[i] > tokens[i - 1], `tokens ${tokens.join(", ")}`);
  }
  const n0 = computing;
  const f2 = cached(() => {
    computing++;
    return "fresh";
  }, { redis: r, key: () => "sentinel:cached2", ttl: 60_000 });
  assert.equal(await within(f2(), 10_000, "cached after failover"), "fresh");
  assert.equal(await f2(), "fresh");
  assert.equal(computing, n0 + 1);
  await held.release().catch(() => {});
});

test("READONLY from a demoted master: the command did not run; the client drops the connection, is refused (ROLE) while no master is there, and runs the command exactly once when the master is back", async () => {
  await using r = await connectSentinel(sentinels, {
    name,
    logger: null,
    reconnect: { minDelay: 50, maxDelay: 100 },
  });
  const [a, b] = setup.servers;
  const m = (await roleOf(a.port)) === "master" ? a : b;
  const other = m === a ? b : a;
  assert.equal(r.info.port, m.port, "info names the master it reached");
  await r.send("SET", "ro:count", "0");
  await using admin = await connect({ port: m.port, logger: null });
  const idBefore = await r.send<number>("CLIENT", "ID");
  // Demote the master by hand (the sentinels announce nothing): our client's
  // connection stays open and its next write gets READONLY.
  await admin.send("REPLICAOF", "127.0.0.1", String(other.port));
  await using direct = await connect({ port: m.port, logger: null });
  await assert.rejects(direct.send("INCR", "ro:count"), /READONLY/);
  const incr = r.send<number>("INCR", "ro:count");
  await sleep(400); // refused by ROLE meanwhile: no master at that address
  await admin.send("REPLICAOF", "NO", "ONE");
  assert.equal(await within(incr, 10_000, "the retried INCR"), 1);
  assert.equal(await admin.send("GET", "ro:count"), "1", "ran exactly once");
  const idAfter = await r.send<number>("CLIENT", "ID");
  assert.notEqual(idAfter, idBefore, "a new connection after READONLY");
  assert.equal(await roleOf(m.port), "master");
});

test("sentinels with a password of their own: sentinelPassword is used for them (the master has none); a wrong or missing one is a ConnectionError that never shows it", async () => {
  const own = await startSentinels({
    name: "pw-master",
    sentinelPassword: "sentinel-s3cret",
  });
  try {
    await using r = await connectSentinel(own.sentinels, {
      name: "pw-master",
      sentinelPassword: "sentinel-s3cret",
      logger: null,
    });
    assert.equal(r.info.port, own.servers[0].port);
    assert.equal(await r.send("SET", "pw:k", "v"), "OK");
    const lock = new Lock(r, "pw", { ttl: 5_000 });
    assert.ok(await lock.acquire({ wait: 0 }));
    await lock.release();
    for (const bad of ["wrong-pass-xyz", undefined]) {
      await assert.rejects(
        connectSentinel(own.sentinels, {
          name: "pw-master",
          sentinelPassword: bad,
          connectTimeout: 1_000,
          logger: null,
        }),
        (e: unknown) => {
          assert.ok(e instanceof ConnectionError, String(e));
          assert.doesNotMatch(e.message, /wrong-pass-xyz|s3cret/);
          return true;
        },
      );
    }
  } finally {
    await own.stop();
  }
});

test("connectSentinel: close() while the client asks frozen sentinels for the master settles at once and leaves no socket or timer behind", async () => {
  const r = await connectSentinel(sentinels, {
    name,
    logger: null,
    connectTimeout: 1_000,
    reconnect: { minDelay: 20, maxDelay: 50 },
  });
  const id = await r.send<number>("CLIENT", "ID");
  await using admin = await connect({ port: r.info.port, logger: null });
  setup.signalSentinels("SIGSTOP");
  try {
    // The master connection drops: the reconnect asks the (frozen) sentinels.
    await admin.send("CLIENT", "KILL", "ID", String(id));
    await sleep(150);
    const t0 = performance.now();
    await r.close();
    const took = performance.now() - t0;
    assert.ok(took < 500, `close() took ${Math.round(took)} ms`);
  } finally {
    setup.signalSentinels("SIGCONT");
  }
  // Deno's sanitizers check that nothing of the search is left running.
});

test("connectSentinel: every sentinel unreachable for a while, then back: a command sent meanwhile runs once they answer", async () => {
  await using r = await connectSentinel(sentinels, {
    name,
    logger: null,
    connectTimeout: 300,
    reconnect: { minDelay: 20, maxDelay: 100 },
  });
  const id = await r.send<number>("CLIENT", "ID");
  await using admin = await connect({ port: r.info.port, logger: null });
  setup.signalSentinels("SIGSTOP");
  let pending;
  try {
    await admin.send("CLIENT", "KILL", "ID", String(id));
    await sleep(100);
    pending = r.send("SET", "sentinel:back", "1");
    pending.catch(() => {});
    await sleep(1_000); // several searches fail meanwhile
  } finally {
    setup.signalSentinels("SIGCONT");
  }
  assert.equal(await within(pending, 10_000, "the queued SET"), "OK");
  assert.equal(await admin.send("GET", "sentinel:back"), "1");
});

test("connectSentinel: a bad sentinel address is a TypeError that never shows a password; a user name or password in one is refused (use sentinelPassword)", async () => {
  for (
    const a of [
      "redis://:hunter2-pw@[bad",
      "redis://:hunter2-pw@127.0.0.1:99999",
      "user:hunter2-pw@host:26379",
    ]
  ) {
    await assert.rejects(connectSentinel([a], { name }), (e: unknown) => {
      assert.ok(e instanceof TypeError, String(e));
      assert.doesNotMatch(e.message, /hunter2/);
      return true;
    });
  }
  for (
    const a of [
      `redis://:hunter2-pw@${sentinels[0]}`,
      `redis://someone@${sentinels[0]}`,
    ]
  ) {
    await assert.rejects(connectSentinel([a], { name }), (e: unknown) => {
      assert.ok(e instanceof TypeError, String(e));
      assert.match(e.message, /sentinelPassword/);
      assert.doesNotMatch(e.message, /hunter2/);
      return true;
    });
  }
});

teardown(() => setup.stop());
