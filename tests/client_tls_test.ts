import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, ConnectionError, type RedisClient } from "../mod.ts";
import { startRedis } from "../testing/redis.ts";
import { makeCerts } from "./fixtures/tools.ts";
import { teardown, test } from "./_harness.ts";

const dir = await mkdtemp(join(tmpdir(), "respite-tls-"));
const certs = await makeCerts(dir);
// A second, unrelated CA that a client may wrongly trust.
const otherCaPem = (await makeCerts(await mkdtemp(join(dir, "other-")))).caPem;
const caPem = certs.caPem;

const server = await startRedis({
  tls: {
    certFile: certs.certFile,
    keyFile: certs.keyFile,
    caFile: certs.caFile,
    caPem,
  },
});
const url = `rediss://${server.host}:${server.port}`;
let n = 0;
const key = (s: string) => `respite:test:tls:${n++}:${s}`;

/** connect() itself must reject (not the first command after it). */
async function rejectsWithConnectionError(
  attempt: Promise<RedisClient>,
): Promise<void> {
  let caught: unknown;
  try {
    const c = await attempt;
    await c.close();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught !== undefined, "connect() accepted an untrusted server");
  assert.ok(
    caught instanceof ConnectionError,
    `expected a ConnectionError, got ${caught}`,
  );
  assert.ok(caught.message.includes(`${server.port}`), caught.message);
  assert.ok(caught.cause !== undefined, "the TLS error is kept as the cause");
}

test("rediss:// with a custom CA: commands and binary values round-trip", async () => {
  await using r = await connect({ url, tls: { caCerts: [caPem] } });
  assert.equal(r.info.tls, true);
  assert.equal(await r.send("PING"), "PONG");
  const k = key("bin");
  const tricky = new Uint8Array([13, 10, 0, 255, 36, 13, 10]);
  const counter = key("n");
  await r.send("SET", k, tricky);
  assert.deepEqual(await r.command(["GET", k], { raw: true }), tricky);
  const results = await Promise.all(
    Array.from({ length: 2000 }, () => r.send<number>("INCR", counter)),
  );
  assert.equal(new Set(results).size, 2000);
  // The server did see a TLS connection: plain TCP clients have no TLS info.
  assert.match(String(await r.send("INFO", "server")), /redis_version/);
  await r.send("DEL", k);
});

test("a 1 MB value and a 5 MB value round-trip over TLS", async () => {
  await using r = await connect({ url, tls: { caCerts: [caPem] } });
  const k = key("big");
  for (const size of [1024 * 1024, 5 * 1024 * 1024]) {
    const v = new Uint8Array(size);
    for (let i = 0; i < size; i++) v[i] = (i * 131 + 17) & 0xff;
    await r.send("SET", k, v);
    assert.equal(await r.send("STRLEN", k), size);
    const got = await r.command<Uint8Array>(["GET", k], { raw: true });
    assert.equal(got.length, size);
    assert.ok(got.every((b, i) => b === v[i]), "bytes differ");
  }
  await r.send("DEL", k);
});

test("TLS from the options object, with RESP3 and a db", async () => {
  await using r = await connect({
    hostname: server.host,
    port: server.port,
    tls: { caCerts: [caPem], serverName: "localhost" },
    protocol: 3,
    db: 2,
  });
  assert.match(String(await r.send("CLIENT", "INFO")), / db=2 .*resp=3\b/);
});

test("a client that does not trust the CA fails with ConnectionError", async () => {
  // The system's roots only.
  await rejectsWithConnectionError(connect({ url, reconnect: false }));
  await rejectsWithConnectionError(connect({ url }));
  // Another CA.
  await rejectsWithConnectionError(
    connect({ url, tls: { caCerts: [otherCaPem] }, reconnect: false }),
  );
  // The right CA, but a name the certificate is not for.
  await rejectsWithConnectionError(
    connect({
      url,
      tls: { caCerts: [caPem], serverName: "wrong.example" },
      reconnect: false,
    }),
  );
  // Still fine with the right settings afterwards.
  await using r = await connect({ url, tls: { caCerts: [caPem] } });
  assert.equal(await r.send("PING"), "PONG");
});

teardown(async () => {
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});
