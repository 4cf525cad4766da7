import assert from "node:assert/strict";
import { connect, type RedisClient, ReplyError } from "../mod.ts";
import { startRedis } from "../testing/redis.ts";
import { CuttableConnector } from "../testing/connector.ts";
import { teardown, test } from "./_harness.ts";

const PASSWORD = "s3cr3t-Hunter2-pw";
const server = await startRedis({ args: ["--requirepass", PASSWORD] });
const host = server.host;
const port = server.port;
const base = `${host}:${port}`;

const ALICE_PW = "alice-Pw-9f3k";
/** A password that needs percent-encoding in a URL. */
const BOB_PW = "p@ss:w/rd %é#?&=+x";
const CAROL = "carol@corp:ops";
const CAROL_PW = "c/a:r@l";

{
  const admin = await connect({ hostname: host, port, password: PASSWORD });
  try {
    await admin.send(
      "ACL",
      "SETUSER",
      "alice",
      "on",
      `>${ALICE_PW}`,
      "~*",
      "+@all",
    );
    await admin.send(
      "ACL",
      "SETUSER",
      "bob",
      "on",
      `>${BOB_PW}`,
      "~*",
      "+@all",
    );
    await admin.send(
      "ACL",
      "SETUSER",
      CAROL,
      "on",
      `>${CAROL_PW}`,
      "~*",
      "+@all",
    );
  } finally {
    await admin.close();
  }
}

let n = 0;
const key = (s: string) => `respite:test:auth:${n++}:${s}`;

/** Every string a caller or a log could see of `err`, through its cause chain. */
function visibleText(err: unknown): string {
  const parts: string[] = [];
  const seen = new Set<unknown>();
  for (let e = err; e !== undefined && e !== null && !seen.has(e);) {
    seen.add(e);
    parts.push(String(e));
    if (e instanceof Error) {
      parts.push(e.message, e.stack ?? "");
      for (const k of Object.getOwnPropertyNames(e)) {
        const v = (e as unknown as Record<string, unknown>)[k];
        if (typeof v === "string") parts.push(v);
      }
      try {
        parts.push(JSON.stringify(e));
      } catch {
        // not serializable; the rest is checked
      }
      e = e.cause;
    } else break;
  }
  return parts.join("\n");
}

async function rejectsWrongPass(
  attempt: Promise<RedisClient>,
  secret: string,
  user?: string,
): Promise<void> {
  let caught: unknown;
  try {
    const c = await attempt;
    await c.close();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught !== undefined, "connecting with a wrong password succeeded");
  assert.ok(caught instanceof ReplyError, `not a ReplyError: ${caught}`);
  assert.equal(caught.code, "WRONGPASS");
  assert.match(caught.message, /WRONGPASS/);
  assert.match(caught.message, /AUTH|HELLO/, "says which step failed");
  assert.ok(caught.message.includes(base), "names the server");
  if (user) assert.ok(caught.message.includes(user), "names the user");
  const text = visibleText(caught);
  assert.ok(!text.includes(secret), `the password leaked: ${text}`);
  assert.ok(
    !text.includes(encodeURIComponent(secret)),
    "the encoded password leaked",
  );
}

test("password-only AUTH, from the URL and from options", async () => {
  {
    await using r = await connect(`redis://:${PASSWORD}@${base}`);
    assert.equal(await r.send("PING"), "PONG");
    assert.equal(await r.send("ACL", "WHOAMI"), "default");
  }
  {
    await using r = await connect({ hostname: host, port, password: PASSWORD });
    assert.equal(await r.send("PING"), "PONG");
    assert.equal(await r.send("ACL", "WHOAMI"), "default");
  }
  {
    // Options override the URL's parts.
    await using r = await connect({
      url: `redis://:wrong@${base}`,
      password: PASSWORD,
    });
    assert.equal(await r.send("PING"), "PONG");
  }
  {
    // The user "default" named explicitly.
    await using r = await connect(`redis://default:${PASSWORD}@${base}`);
    assert.equal(await r.send("ACL", "WHOAMI"), "default");
  }
});

test("without a password the server refuses commands with NOAUTH", async () => {
  await using r = await connect(`redis://${base}`);
  await assert.rejects(r.send("PING"), (e: unknown) => {
    assert.ok(e instanceof ReplyError);
    assert.equal(e.code, "NOAUTH");
    return true;
  });
});

test("a wrong password rejects with a ReplyError that never shows the password", async () => {
  const wrong = "Wr0ng-Passw0rd-zz";
  await rejectsWrongPass(connect(`redis://:${wrong}@${base}`), wrong);
  await rejectsWrongPass(
    connect({ hostname: host, port, password: wrong }),
    wrong,
  );
  await rejectsWrongPass(
    connect({ hostname: host, port, password: wrong, protocol: 3 }),
    wrong,
  );
  await rejectsWrongPass(
    connect(`redis://alice:${wrong}@${base}`),
    wrong,
    "alice",
  );
  // Another user's real password is wrong for this one; it must not show either.
  await rejectsWrongPass(
    connect(`redis://alice:${encodeURIComponent(BOB_PW)}@${base}/2`),
    BOB_PW,
    "alice",
  );
  await rejectsWrongPass(
    connect(`redis://nobody:${wrong}@${base}?protocol=3`),
    wrong,
    "nobody",
  );
});

test("an ACL user and password from the URL", async () => {
  await using r = await connect(`redis://alice:${ALICE_PW}@${base}`);
  assert.equal(await r.send("ACL", "WHOAMI"), "alice");
  const k = key("alice");
  assert.equal(await r.send("SET", k, "v"), "OK");
  assert.equal(await r.send("GET", k), "v");
  await r.send("DEL", k);
  assert.equal(r.info.username, "alice");
  assert.ok(!JSON.stringify(r.info).includes(ALICE_PW));
});

test("percent-encoded user names and passwords are decoded", async () => {
  {
    await using r = await connect(
      `redis://bob:${encodeURIComponent(BOB_PW)}@${base}`,
    );
    assert.equal(await r.send("ACL", "WHOAMI"), "bob");
  }
  {
    await using r = await connect(
      `redis://${encodeURIComponent(CAROL)}:${
        encodeURIComponent(CAROL_PW)
      }@${base}`,
    );
    assert.equal(await r.send("ACL", "WHOAMI"), CAROL);
  }
  {
    // The same, given as options: nothing to decode.
    await using r = await connect({
      hostname: host,
      port,
      username: "bob",
      password: BOB_PW,
    });
    assert.equal(await r.send("ACL", "WHOAMI"), "bob");
  }
});

test("db selection from the URL path and from options", async () => {
  const k = key("db3");
  await using viaUrl = await connect(`redis://:${PASSWORD}@${base}/3`);
  await using viaOpt = await connect({
    hostname: host,
    port,
    password: PASSWORD,
    db: 3,
  });
  await using viaQuery = await connect(`redis://:${PASSWORD}@${base}?db=3`);
  await using db0 = await connect({ hostname: host, port, password: PASSWORD });
  for (const c of [viaUrl, viaOpt, viaQuery]) {
    assert.match(String(await c.send("CLIENT", "INFO")), / db=3 /);
    assert.equal(c.info.db, 3);
  }
  assert.match(String(await db0.send("CLIENT", "INFO")), / db=0 /);
  await viaUrl.send("SET", k, "in three");
  assert.equal(await viaOpt.send("GET", k), "in three");
  assert.equal(await viaQuery.send("GET", k), "in three");
  assert.equal(await db0.send("GET", k), null);
  await viaOpt.send("DEL", k);
});

test("RESP3 with AUTH: HELLO 3 AUTH for the default user and an ACL user", async () => {
  {
    await using r = await connect({
      hostname: host,
      port,
      password: PASSWORD,
      protocol: 3,
    });
    const hello = await r.send("HELLO", 3);
    assert.ok(hello instanceof Map);
    assert.equal(hello.get("proto"), 3);
    assert.equal(await r.send("ACL", "WHOAMI"), "default");
    const h = key("h");
    await r.send("HSET", h, "f", "v");
    assert.deepEqual(await r.send("HGETALL", h), new Map([["f", "v"]]));
    await r.send("DEL", h);
  }
  {
    await using r = await connect(
      `redis://alice:${ALICE_PW}@${base}/5?protocol=3`,
    );
    assert.equal(await r.send("ACL", "WHOAMI"), "alice");
    assert.match(String(await r.send("CLIENT", "INFO")), / db=5 .* resp=3\b/);
  }
});

test("the connection name is set with CLIENT SETNAME (RESP2) and HELLO SETNAME (RESP3)", async () => {
  {
    await using r = await connect({
      url: `redis://:${PASSWORD}@${base}`,
      name: "respite-auth-test",
    });
    assert.equal(await r.send("CLIENT", "GETNAME"), "respite-auth-test");
  }
  {
    await using r = await connect({
      url: `redis://alice:${ALICE_PW}@${base}/4`,
      protocol: 3,
      name: "respite-resp3",
    });
    assert.equal(await r.send("CLIENT", "GETNAME"), "respite-resp3");
    assert.match(
      String(await r.send("CLIENT", "INFO")),
      / name=respite-resp3 .* db=4 /,
    );
  }
  {
    await using r = await connect(`redis://:${PASSWORD}@${base}`);
    assert.equal(await r.send("CLIENT", "GETNAME"), null);
  }
});

test("AUTH, SELECT and the name are redone after a reconnect", async () => {
  for (const protocol of [2, 3] as const) {
    const cut = new CuttableConnector();
    await using r = await connect({
      url: `redis://alice:${ALICE_PW}@${base}/6`,
      name: "again",
      protocol,
      reconnect: { minDelay: 10, maxDelay: 50 },
      connector: cut.connector,
    });
    const id = await r.send("CLIENT", "ID");
    await cut.cut();
    const info = String(await r.send("CLIENT", "INFO"));
    assert.notEqual(await r.send("CLIENT", "ID"), id, "did not reconnect");
    assert.match(info, / name=again .* db=6 .* user=alice /);
    assert.equal(await r.send("ACL", "WHOAMI"), "alice");
  }
});

teardown(() => server.stop());
