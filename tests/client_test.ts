import assert from "node:assert/strict";
import { connect, ReplyError } from "../mod.ts";
import { sharedRedis } from "../testing/redis.ts";
import { teardown, test } from "./_harness.ts";

const server = await sharedRedis();
const url = server.url;
let n = 0;
const key = (s: string) => `respite:test:client:${Date.now()}:${n++}:${s}`;

test("simple string, integer, bulk, null, array replies (RESP2)", async () => {
  await using r = await connect(url);
  const k = key("a");
  assert.equal(await r.send("PING"), "PONG");
  assert.equal(await r.send("SET", k, "v"), "OK");
  assert.equal(await r.send("GET", k), "v");
  assert.equal(await r.send("GET", key("missing")), null);
  assert.equal(await r.send("INCR", key("n")), 1);
  assert.equal(await r.send("INCRBY", key("n2"), -5), -5);
  const l = key("l");
  await r.send("RPUSH", l, "a", "b", "c");
  assert.deepEqual(await r.send("LRANGE", l, 0, -1), ["a", "b", "c"]);
  assert.deepEqual(await r.send("LRANGE", key("none"), 0, -1), []);
  await using blocking = await r.duplicate({ blocking: true });
  assert.equal(await blocking.send("BLPOP", key("none"), 0.01), null);
  await r.send("DEL", k, l, key("n"), key("n2"));
});

test("error replies reject with ReplyError carrying the code", async () => {
  await using r = await connect(url);
  const k = key("wrongtype");
  await r.send("SET", k, "x");
  await assert.rejects(r.send("LPUSH", k, "y"), (e: unknown) => {
    assert.ok(e instanceof ReplyError);
    assert.equal(e.code, "WRONGTYPE");
    return true;
  });
  await assert.rejects(r.send("EVALSHA", "0".repeat(40), 0), (e: unknown) => {
    assert.ok(e instanceof ReplyError);
    assert.equal(e.code, "NOSCRIPT");
    return true;
  });
  // The connection is still usable and in order afterwards.
  assert.equal(await r.send("GET", k), "x");
  await r.send("DEL", k);
});

test("nested arrays and errors inside EXEC", async () => {
  await using r = await connect(url);
  const k = key("exec");
  await r.send("SET", k, "x");
  const res = await r.multi([["INCR", k], ["SET", key("e2"), "1"]]);
  assert.ok(res[0] instanceof ReplyError);
  assert.equal(res[1], "OK");
  const nested = await r.send("EVAL", "return {1, {2, {'x', 'y'}}, 'z'}", 0);
  assert.deepEqual(nested, [1, [2, ["x", "y"]], "z"]);
  await r.send("DEL", k, key("e2"));
});

test("binary values with CRLF and NUL round-trip, as bytes and as text", async () => {
  await using r = await connect(url);
  const k = key("bin");
  const bytes = new Uint8Array(256);
  for (let i = 0; i < 256; i++) bytes[i] = i;
  const tricky = new Uint8Array([13, 10, 0, 36, 51, 13, 10, 13, 10, 0, 255]);
  await r.send("SET", k, bytes);
  assert.deepEqual(await r.command(["GET", k], { raw: true }), bytes);
  await r.send("SET", k, tricky);
  assert.deepEqual(await r.command(["GET", k], { raw: true }), tricky);
  await r.send("SET", k, "line1\r\nline2\0end");
  assert.equal(await r.send("GET", k), "line1\r\nline2\0end");
  await r.send("SET", k, "héllo wörld ✓ 🚀");
  assert.equal(await r.send("GET", k), "héllo wörld ✓ 🚀");
  await r.send("DEL", k);
});

test("a 1 MB value and a 20 MB value round-trip intact", async () => {
  await using r = await connect(url);
  const k = key("big");
  for (const size of [1024 * 1024, 20 * 1024 * 1024]) {
    const v = new Uint8Array(size);
    for (let i = 0; i < size; i++) v[i] = (i * 31 + 7) & 0xff;
    await r.send("SET", k, v);
    const got = await r.command<Uint8Array>(["GET", k], { raw: true });
    assert.equal(got.length, size);
    assert.ok(got.every((b, i) => b === v[i]), "bytes differ");
  }
  const s = "x\r\n".repeat(400_000);
  await r.send("SET", k, s);
  assert.equal(await r.send("GET", k), s);
  await r.send("DEL", k);
});

test("10,000 concurrent commands on one connection resolve in order", async () => {
  await using r = await connect(url);
  const k = key("order");
  const results = await Promise.all(
    Array.from({ length: 10_000 }, () => r.send<number>("INCR", k)),
  );
  for (let i = 0; i < results.length; i++) assert.equal(results[i], i + 1);
  const echoes = await Promise.all(
    Array.from({ length: 10_000 }, (_, i) => r.send("ECHO", `m${i}`)),
  );
  echoes.forEach((e, i) => assert.equal(e, `m${i}`));
  await r.send("DEL", k);
});

test("RESP3: maps, sets, doubles, booleans, big numbers, nulls, verbatim", async () => {
  await using r = await connect({ url, protocol: 3 });
  const k = key("r3");
  const hello = await r.send("HELLO", 3) as Map<unknown, unknown>;
  assert.ok(hello instanceof Map);
  assert.equal(hello.get("proto"), 3);
  await r.send("HSET", k, "f1", "v1", "f2", "v2");
  assert.deepEqual(
    await r.send("HGETALL", k),
    new Map([["f1", "v1"], ["f2", "v2"]]),
  );
  const s = key("set");
  await r.send("SADD", s, "a", "b");
  assert.deepEqual(await r.send("SMEMBERS", s), new Set(["a", "b"]));
  const z = key("z");
  await r.send("ZADD", z, 1.5, "m");
  assert.equal(await r.send("ZSCORE", z, "m"), 1.5);
  assert.equal(await r.send("ZINCRBY", z, "inf", "m"), Infinity);
  assert.equal(await r.send("GET", key("nope")), null);
  assert.equal(await r.send("EVAL", "redis.setresp(3); return true", 0), true);
  assert.equal(
    await r.send("EVAL", "redis.setresp(3); return false", 0),
    false,
  );
  assert.equal(
    await r.send("EVAL", "redis.setresp(3); return {double=3.25}", 0),
    3.25,
  );
  assert.equal(
    await r.send(
      "EVAL",
      "redis.setresp(3); return {big_number='123456789012345678901234567890'}",
      0,
    ),
    123456789012345678901234567890n,
  );
  assert.equal(await r.send("EVAL", "redis.setresp(3); return nil", 0), null);
  const info = await r.send("INFO", "server"); // a verbatim string in RESP3
  assert.equal(typeof info, "string");
  assert.ok(String(info).includes("redis_version"));
  await r.send("DEL", k, s, z);
});

test("concurrent callers with interleaved reply types stay matched", async () => {
  await using r = await connect(url);
  const k = key("mix");
  const ops: Promise<unknown>[] = [];
  const expected: unknown[] = [];
  for (let i = 0; i < 2000; i++) {
    switch (i % 4) {
      case 0:
        ops.push(r.send("ECHO", `e${i}`));
        expected.push(`e${i}`);
        break;
      case 1:
        ops.push(r.send("EVAL", `return {${i}, '${i}'}`, 0));
        expected.push([i, String(i)]);
        break;
      case 2:
        ops.push(r.send("GET", `${k}:none`));
        expected.push(null);
        break;
      default:
        ops.push(r.send("NOPE_NOT_A_COMMAND").catch((e: ReplyError) => e.code));
        expected.push("ERR");
    }
  }
  assert.deepEqual(await Promise.all(ops), expected);
});

test("commands after close() reject with ConnectionError; close is idempotent", async () => {
  const r = await connect(url);
  const pending = r.send("PING");
  await r.close();
  assert.equal(
    await pending,
    "PONG",
    "a command issued before close still gets its reply",
  );
  await assert.rejects(r.send("PING"), { name: "ConnectionError" });
  await r.close();
  assert.equal(r.status, "closed");
});

teardown(() => server.stop());
