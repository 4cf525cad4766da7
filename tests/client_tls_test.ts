import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, ConnectionError, type RedisClient } from "../mod.ts";
import { startRedis } from "./_redis.ts";
import { spawn } from "./_proc.ts";
import { teardown, test } from "./_harness.ts";

/** Runs openssl; throws with its output if it fails. */
async function openssl(cwd: string, ...args: string[]): Promise<void> {
  const p = spawn("openssl", args, { cwd });
  const code = await p.exited;
  if (code !== 0) {
    throw new Error(
      `openssl ${args.join(" ")} failed (${code}): ${await p.stderr()}`,
    );
  }
}

/** A self-signed CA (EC P-256, one day) named `name`.crt/.key in `dir`. */
async function makeCa(dir: string, name: string): Promise<void> {
  await openssl(
    dir,
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.crt`,
    "-days",
    "1",
    "-subj",
    `/CN=respite test ${name}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  );
}

const dir = await mkdtemp(join(tmpdir(), "respite-tls-"));
await makeCa(dir, "ca");
await makeCa(dir, "other-ca");
await openssl(
  dir,
  "req",
  "-newkey",
  "ec",
  "-pkeyopt",
  "ec_paramgen_curve:prime256v1",
  "-nodes",
  "-keyout",
  "server.key",
  "-out",
  "server.csr",
  "-subj",
  "/CN=127.0.0.1",
);
await writeFile(
  join(dir, "server.ext"),
  [
    "subjectAltName=IP:127.0.0.1,DNS:localhost",
    "basicConstraints=CA:FALSE",
    "keyUsage=critical,digitalSignature,keyEncipherment",
    "extendedKeyUsage=serverAuth",
    "",
  ].join("\n"),
);
await openssl(
  dir,
  "x509",
  "-req",
  "-in",
  "server.csr",
  "-CA",
  "ca.crt",
  "-CAkey",
  "ca.key",
  "-CAcreateserial",
  "-out",
  "server.crt",
  "-days",
  "1",
  "-extfile",
  "server.ext",
);
const caPem = await readFile(join(dir, "ca.crt"), "utf8");
const otherCaPem = await readFile(join(dir, "other-ca.crt"), "utf8");

const server = await startRedis({
  tls: {
    certFile: join(dir, "server.crt"),
    keyFile: join(dir, "server.key"),
    caFile: join(dir, "ca.crt"),
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
