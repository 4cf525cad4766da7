/**
 * close() and `await using`: commands already issued get their replies,
 * later ones reject, nothing is left behind (the Deno sanitizers check timers
 * and sockets); duplicate() gives an independent connection.
 */
import assert from "node:assert/strict";
import { connect, ConnectionError, type RedisClient } from "../mod.ts";
import { sharedRedis, startRedis } from "../testing/redis.ts";
import { sleep, teardown, test } from "./_harness.ts";

const server = await sharedRedis();
const url = server.url;
let n = 0;
const key = (s: string) => `respite:test:close:${Date.now()}:${n++}:${s}`;

/** Ids of the server's client connections. */
async function clientIds(admin: RedisClient): Promise<number[]> {
  const list = await admin.send<string>("CLIENT", "LIST");
  return list.split("\n").filter((l) => l.trim() !== "").map((l) =>
    Number(/^id=(\d+)/.exec(l)![1])
  );
}

test("`await using` closes the client at the end of the block", async () => {
  await using admin = await connect(url);
  let escaped: RedisClient;
  let id: number;
  {
    await using r = await connect(url);
    escaped = r;
    id = await r.send<number>("CLIENT", "ID");
    assert.ok((await clientIds(admin)).includes(id));
    assert.equal(r.status, "ready");
  }
  assert.equal(escaped.status, "closed");
  await assert.rejects(escaped.send("PING"), ConnectionError);
  const deadline = Date.now() + 3_000;
  while ((await clientIds(admin)).includes(id)) {
    if (Date.now() > deadline) throw new Error("the server still sees it");
    await sleep(10);
  }
});

test("`await using` closes the client when the block throws", async () => {
  let escaped: RedisClient | undefined;
  await assert.rejects(async () => {
    await using r = await connect(url);
    escaped = r;
    await r.send("PING");
    throw new Error("inside");
  }, /inside/);
  assert.equal(escaped!.status, "closed");
});

test("close() waits for the replies of commands already issued", async () => {
  // BLPOP stalls this connection: a client that allows blocking commands.
  const r = await connect({ url, blocking: true });
  try {
    const k = key("list");
    const t0 = performance.now();
    const order: string[] = [];
    const blpop = r.send("BLPOP", k, "0.3").then((v) => {
      order.push("blpop");
      return v;
    });
    const set = r.send("SET", key("s"), "v").then((v) => {
      order.push("set");
      return v;
    });
    const echoes = Array.from(
      { length: 100 },
      (_, i) => r.send("ECHO", `e${i}`),
    );
    const closed = r.close().then(() => order.push("closed"));
    assert.equal(r.status, "closing");
    // Issued after close(): rejects at once, while close() still waits.
    await assert.rejects(r.send("PING"), (e: unknown) => {
      assert.ok(e instanceof ConnectionError);
      assert.match(e.message, /closed/);
      return true;
    });
    assert.deepEqual(order, [], "close() did not wait");
    await closed;
    assert.ok(
      performance.now() - t0 >= 250,
      "close() resolved before the BLPOP's reply",
    );
    assert.deepEqual(order, ["blpop", "set", "closed"]);
    assert.equal(await blpop, null);
    assert.equal(await set, "OK");
    (await Promise.all(echoes)).forEach((e, i) => assert.equal(e, `e${i}`));
    assert.equal(r.status, "closed");
  } finally {
    await r.close();
  }
});

test("close() in the same tick as the commands still sends them", async () => {
  const r = await connect(url);
  const k = key("n");
  const incrs = [r.send("INCR", k), r.send("INCR", k), r.send("INCR", k)];
  await r.close(); // the INCRs were not written yet when close() was called
  assert.deepEqual(await Promise.all(incrs), [1, 2, 3]);
  await using check = await connect(url);
  assert.equal(await check.send("GET", k), "3");
  await check.send("DEL", k);
});

test("commands after close reject with ConnectionError; close is idempotent", async () => {
  const r = await connect(url);
  const first = r.close();
  const second = r.close();
  await Promise.all([first, second]);
  await r.close();
  await r[Symbol.asyncDispose]();
  assert.equal(r.status, "closed");
  for (
    const p of [
      r.send("PING"),
      r.send("SET", "x", "y"),
      r.command(["GET", "x"], { timeout: 50 }),
      r.command(["GET", "x"], { signal: new AbortController().signal }),
    ]
  ) {
    await assert.rejects(p, (e: unknown) => {
      assert.ok(e instanceof ConnectionError, `got ${e}`);
      assert.match(e.message, /closed/);
      return true;
    });
  }
});

test("close() leaves no timer behind from timeouts, signals or commandTimeout", async () => {
  const r = await connect({ url, commandTimeout: 60_000, blocking: true });
  const ac = new AbortController();
  const replies = await Promise.all([
    r.send("PING"),
    r.command(["ECHO", "a"], { timeout: 30_000 }),
    r.command(["ECHO", "b"], { signal: ac.signal }),
  ]);
  assert.deepEqual(replies, ["PONG", "a", "b"]);
  // Pending, with long timers, when close() is called.
  const late = r.command(["BLPOP", key("l"), "0.1"], { timeout: 30_000 });
  await r.close();
  assert.equal(await late, null);
  // The Deno sanitizers fail this test if any of those timers is still set.
});

test("close() while the server dies with commands pending: they reject, close resolves, no reconnect", async () => {
  const own = await startRedis();
  try {
    const r = await connect({
      blocking: true,
      url: own.url,
      reconnect: { minDelay: 1, maxDelay: 5 },
    });
    const blpop = r.send("BLPOP", key("l"), "5");
    blpop.catch(() => {});
    await sleep(30);
    const closed = r.close();
    own.signal("SIGKILL");
    await closed;
    await assert.rejects(blpop, ConnectionError);
    assert.equal(r.status, "closed");
    await own.start(); // same port: nobody must connect to it any more
    await using admin = await connect(own.url);
    await sleep(50);
    assert.equal((await clientIds(admin)).length, 1, "it reconnected");
  } finally {
    await own.stop();
  }
});

test("duplicate() opens an independent connection with the same options", async () => {
  await using r = await connect({ url, db: 4, name: "original" });
  await using d = await r.duplicate({ blocking: true });
  assert.notEqual(d, r);
  const [idR, idD] = await Promise.all([
    r.send<number>("CLIENT", "ID"),
    d.send<number>("CLIENT", "ID"),
  ]);
  assert.notEqual(idR, idD);
  assert.deepEqual(d.info, r.info);
  assert.match(
    String(await d.send("CLIENT", "INFO")),
    / name=original .* db=4 /,
  );
  // A BLPOP on the duplicate does not stall the original.
  const k = key("blocked");
  const t0 = performance.now();
  const blpop = d.send("BLPOP", k, "2");
  for (let i = 0; i < 20; i++) {
    assert.equal(await r.send("ECHO", `${i}`), `${i}`);
  }
  assert.ok(performance.now() - t0 < 1_000, "the original was stalled");
  assert.equal(await r.send("RPUSH", k, "wake"), 1);
  assert.deepEqual(await blpop, [k, "wake"]);
  assert.ok(performance.now() - t0 < 1_500, "BLPOP waited out its timeout");
});

test("closing a duplicate leaves the original open, and the other way round", async () => {
  const r = await connect(url);
  const d = await r.duplicate();
  const d2 = await r.duplicate();
  await d.close();
  assert.equal(d.status, "closed");
  assert.equal(r.status, "ready");
  assert.equal(await r.send("PING"), "PONG");
  await r.close();
  assert.equal(d2.status, "ready");
  assert.equal(await d2.send("PING"), "PONG");
  await d2.close();
  await assert.rejects(d.send("PING"), ConnectionError);
});

teardown(() => server.stop());
