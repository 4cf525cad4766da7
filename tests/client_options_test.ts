import assert from "node:assert/strict";
import { createServer } from "node:net";
import {
  connect,
  type ConnectOptions,
  type Connector,
  type RedisClient,
} from "../mod.ts";
import { startRedis } from "../testing/redis.ts";
import { isDeno, teardown, test } from "./_harness.ts";

const server = await startRedis();
const url = server.url;
const SECRET = "Pa55-w0rd-Secret";

let n = 0;
const key = (s: string) => `respite:test:options:${n++}:${s}`;

/** A connector that records whether it was ever asked to open anything. */
function spyConnector(): { connector: Connector; calls: () => number } {
  let calls = 0;
  return {
    connector: () => {
      calls++;
      return Promise.reject(new Error("the spy connector never connects"));
    },
    calls: () => calls,
  };
}

type ErrorClass = typeof TypeError | typeof RangeError;

async function rejectsBeforeConnecting(
  input: string | ConnectOptions,
  type: ErrorClass,
  what: string,
): Promise<Error> {
  const spy = spyConnector();
  const opts: ConnectOptions = typeof input === "string"
    ? { url: input, connector: spy.connector }
    : { connector: spy.connector, ...input };
  let promise: Promise<RedisClient>;
  try {
    promise = connect(opts);
  } catch (err) {
    assert.fail(`${what}: connect() threw instead of rejecting: ${err}`);
  }
  let caught: unknown;
  try {
    const c = await promise;
    await c.close();
  } catch (err) {
    caught = err;
  }
  assert.ok(
    caught instanceof type,
    `${what}: expected ${type.name}, got ${caught}`,
  );
  assert.equal((caught as Error).constructor, type, what);
  assert.equal(spy.calls(), 0, `${what}: a connection was attempted`);
  return caught as Error;
}

const BAD_URLS: [string, ErrorClass][] = [
  ["http://127.0.0.1:6379", TypeError],
  ["https://user:PW@127.0.0.1", TypeError],
  ["tcp://127.0.0.1:6379", TypeError],
  ["redis:/127.0.0.1", TypeError],
  ["redis//127.0.0.1", TypeError],
  ["127.0.0.1:6379", TypeError],
  ["not a url", TypeError],
  ["", TypeError],
  ["redis://:PW@127.0.0.1:0", RangeError],
  ["redis://:PW@127.0.0.1:70000", RangeError],
  ["redis://:PW@127.0.0.1:65536", RangeError],
  ["redis://:PW@127.0.0.1:abc", RangeError],
  ["redis://:PW@127.0.0.1:-1", RangeError],
  ["redis://:PW@127.0.0.1:6379x", RangeError],
  ["redis://:PW@[::1]:99999", RangeError],
  ["rediss://user:PW@127.0.0.1:123456", RangeError],
  ["redis://:PW@127.0.0.1:6379/abc", RangeError],
  ["redis://:PW@127.0.0.1:6379/-1", RangeError],
  ["redis://:PW@127.0.0.1:6379/1.5", RangeError],
  ["redis://:PW@127.0.0.1:6379/99999999999999999999", RangeError],
  ["redis://:PW@127.0.0.1:6379?db=x", RangeError],
  ["redis://:PW@127.0.0.1:6379?protocol=4", RangeError],
  ["redis://:PW@127.0.0.1:6379?protocol=1", RangeError],
  ["redis://u:PW%ZZ@127.0.0.1:6379", TypeError],
  ["redis://u:PW@exa mple.com:6379", TypeError],
];

test("bad URLs reject with TypeError/RangeError before any connection", async () => {
  for (const [bad, type] of BAD_URLS) {
    const withSecret = bad.replace("PW", SECRET);
    const err = await rejectsBeforeConnecting(withSecret, type, withSecret);
    assert.ok(err.message.length > 10, "the message says something");
  }
});

/**
 * The error connect() fails with (a client it opens is closed, and fails
 * the test), and all of its text: message, stack, cause.
 */
async function connectError(
  options: Parameters<typeof connect>[0],
): Promise<{ caught: Error; text: string }> {
  let caught: unknown;
  try {
    const r = await connect(options);
    await r.close();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof Error, `connect(${JSON.stringify(options)})`);
  const text = `${caught}\n${caught.message}\n${caught.stack}\n${
    String(caught.cause ?? "")
  }`;
  return { caught, text };
}

test("URL errors never contain the password", async () => {
  const urls = [
    `redis://:${SECRET}@127.0.0.1:0`,
    `redis://:${SECRET}@127.0.0.1:70000`,
    `redis://alice:${SECRET}@127.0.0.1:abc`,
    `redis://alice:${SECRET}@127.0.0.1:6379/db`,
    `redis://alice:${SECRET}@127.0.0.1:6379/?protocol=9`,
    `redis://alice:${SECRET}%ZZ@127.0.0.1:6379`,
    `http://alice:${SECRET}@127.0.0.1:6379`,
    `redis://alice:${SECRET}@bad host:6379`,
    `redis:alice:${SECRET}@127.0.0.1:6379`,
  ];
  for (const u of urls) {
    const { text } = await connectError(u);
    assert.ok(!text.includes(SECRET), `the password leaked for ${u}: ${text}`);
    assert.ok(!text.includes(u), "the URL is not repeated");
  }
});

test("a password with an unencoded '?', '#' or '/' never ends up in an error (as a port or a host name)", async () => {
  // Passwords a generator makes: digits, then a character that ends the
  // URL's authority when not percent-encoded. The URL then names another
  // host and port (the user name, the password's digits): the connect
  // error must not show them, nor may a connection to them be tried.
  const passwords = ["4321?Zq9", "4321#Zq9", "4321/Zq9"];
  for (const pw of passwords) {
    const u = `redis://alice:${pw}@127.0.0.1:1`;
    const { caught, text } = await connectError({
      url: u,
      connectTimeout: 2_000,
      reconnect: false,
    });
    assert.ok(
      !text.includes("4321"),
      `part of the password leaked for ${u}: ${text}`,
    );
    assert.ok(
      caught instanceof TypeError || caught instanceof RangeError,
      `a malformed URL is an argument error, before any connection: ${caught}`,
    );
  }
});

const BAD_OPTIONS: [string, unknown, ErrorClass][] = [
  ["port 0", { port: 0 }, RangeError],
  ["port 70000", { port: 70000 }, RangeError],
  ['port "abc"', { port: "abc" }, RangeError],
  ['port "6379"', { port: "6379" }, RangeError],
  ["port 1.5", { port: 1.5 }, RangeError],
  ["port NaN", { port: NaN }, RangeError],
  ["port -1", { port: -1 }, RangeError],
  ["db -1", { db: -1 }, RangeError],
  ["db 1.5", { db: 1.5 }, RangeError],
  ['db "3"', { db: "3" }, RangeError],
  ["db 2^53", { db: 2 ** 53 }, RangeError],
  ["protocol 4", { protocol: 4 }, RangeError],
  ["protocol 1", { protocol: 1 }, RangeError],
  ['protocol "3"', { protocol: "3" }, RangeError],
  ["connectTimeout -1", { connectTimeout: -1 }, RangeError],
  ["connectTimeout 0", { connectTimeout: 0 }, RangeError],
  ["connectTimeout NaN", { connectTimeout: NaN }, RangeError],
  ['connectTimeout "5"', { connectTimeout: "5" }, TypeError],
  ["commandTimeout -5", { commandTimeout: -5 }, RangeError],
  ["commandTimeout -Infinity", { commandTimeout: -Infinity }, RangeError],
  ["reconnect.minDelay -1", { reconnect: { minDelay: -1 } }, RangeError],
  ["reconnect.maxDelay -1", { reconnect: { maxDelay: -1 } }, RangeError],
  ["reconnect.maxRetries -1", { reconnect: { maxRetries: -1 } }, RangeError],
  ["reconnect true", { reconnect: true }, TypeError],
  ["maxQueue -1", { maxQueue: -1 }, RangeError],
  ["idleCheck -1", { idleCheck: -1 }, RangeError],
  ["idleCheck NaN", { idleCheck: NaN }, RangeError],
  ['idleCheck "1s"', { idleCheck: "1s" }, TypeError],
  ["idleCheck true", { idleCheck: true }, TypeError],
  ["hostname empty", { hostname: "" }, TypeError],
  ["hostname 42", { hostname: 42 }, TypeError],
  ["password 42", { password: 42 }, TypeError],
  ["username {}", { username: {} }, TypeError],
  ["name 42", { name: 42 }, TypeError],
  ['tls "yes"', { tls: "yes" }, TypeError],
  ["logger {}", { logger: {} }, TypeError],
];

test("bad options reject with TypeError/RangeError before any connection", async () => {
  for (const [what, opts, type] of BAD_OPTIONS) {
    await rejectsBeforeConnecting(opts as ConnectOptions, type, what);
  }
  // Options override the URL: a bad option next to a good URL still fails.
  await rejectsBeforeConnecting({ url, port: 0 }, RangeError, "url + port 0");
});

test("connect(url, options): the second argument is refused with a TypeError before connecting, not dropped; urls.map(connect) still connects", async () => {
  const listener = createServer(); // counts connections: none may be made
  let accepted = 0;
  listener.on("connection", (s) => {
    accepted++;
    s.destroy();
  });
  await new Promise<void>((r) => listener.listen(0, "127.0.0.1", r));
  const port = (listener.address() as { port: number }).port;
  try {
    const call = connect as unknown as (a: unknown, b: unknown) => Promise<
      RedisClient
    >;
    await assert.rejects(
      call(`redis://127.0.0.1:${port}`, { protocol: 3 }),
      (e: unknown) => {
        assert.ok(e instanceof TypeError, String(e));
        assert.match((e as Error).message, /\{ url, \.\.\.options \}/);
        return true;
      },
    );
    assert.equal(accepted, 0);
  } finally {
    await new Promise((r) => listener.close(r));
  }
  const clients = await Promise.all([url, url].map(connect));
  for (const c of clients) {
    assert.equal(await c.send("PING"), "PONG");
    c.close();
  }
});

test("a connector that is not a function or a runtime name is a TypeError", async () => {
  for (const connector of [42, "tcp", "", {}, null, true]) {
    await assert.rejects(
      connect({ url, connector: connector as unknown as Connector }),
      (e: unknown) => {
        assert.ok(e instanceof TypeError, `${connector}: ${e}`);
        assert.match(e.message, /connector/);
        return true;
      },
    );
  }
  await assert.rejects(connect(42 as unknown as string), TypeError);
});

/** How many times the server ran a command, from INFO commandstats. */
async function calls(admin: RedisClient, command: string): Promise<number> {
  const info = String(await admin.send("INFO", "commandstats"));
  const m = new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(info);
  return m ? Number(m[1]) : 0;
}

test("an argument that is not a string, number, bigint or bytes: TypeError, nothing sent", async () => {
  await using r = await connect(url);
  await using admin = await connect(url);
  const k = key("bad");
  const good = key("good");
  const setsBefore = await calls(admin, "set");
  const bad: [unknown, ErrorClass][] = [
    [null, TypeError],
    [undefined, TypeError],
    [true, TypeError],
    [{ toString: () => "x" }, TypeError],
    [["x"], TypeError],
    [new ArrayBuffer(1), TypeError],
    [Symbol("s"), TypeError],
    [NaN, RangeError],
    [Infinity, RangeError],
  ];
  // Issued in the same tick as good commands: those must be unaffected.
  const results = await Promise.allSettled([
    r.send("SET", good, "1"),
    ...bad.map(([v]) => r.send("SET", k, v as string)),
    r.command(["SET", k, "v", "EX", {} as unknown as string]),
    r.send(42 as unknown as string, k),
    r.send("SET", good, "2"),
  ]);
  assert.deepEqual(results[0], { status: "fulfilled", value: "OK" });
  assert.deepEqual(results[results.length - 1], {
    status: "fulfilled",
    value: "OK",
  });
  for (let i = 0; i < bad.length; i++) {
    const res = results[i + 1];
    assert.equal(res.status, "rejected", String(bad[i][0]));
    assert.ok(
      (res as PromiseRejectedResult).reason instanceof bad[i][1],
      `${String(bad[i][0])}: ${(res as PromiseRejectedResult).reason}`,
    );
  }
  const cmd = results[bad.length + 1] as PromiseRejectedResult;
  assert.ok(cmd.reason instanceof TypeError);
  const name = results[bad.length + 2] as PromiseRejectedResult;
  assert.ok(name.reason instanceof TypeError);
  // Nothing of the bad commands reached Redis.
  assert.equal(await r.send("EXISTS", k), 0);
  assert.equal(await r.send("GET", good), "2");
  assert.equal(await calls(admin, "set"), setsBefore + 2);
  assert.equal(r.status, "ready");
  await r.send("DEL", good);
});

test("per-command timeout must be a positive number; nothing is sent otherwise", async () => {
  await using r = await connect(url);
  await using admin = await connect(url);
  const k = key("timeout");
  const before = await calls(admin, "set");
  for (const timeout of [-1, 0, NaN, -Infinity, "100"]) {
    await assert.rejects(
      r.command(["SET", k, "v"], { timeout: timeout as number }),
      typeof timeout === "number" ? RangeError : TypeError,
      String(timeout),
    );
  }
  assert.equal(await calls(admin, "set"), before);
  assert.equal(await r.send("EXISTS", k), 0);
});

test("timeouts too long for a timer (and Infinity) mean no timeout, not an instant one", async () => {
  for (
    const opts of [
      { connectTimeout: Infinity },
      { connectTimeout: 3e9 },
      { commandTimeout: Infinity },
      { commandTimeout: 3e9 },
      { reconnect: { maxDelay: Infinity } },
    ]
  ) {
    await using r = await connect({ url, ...opts, blocking: true });
    // BLPOP on an empty list waits 0.1 s, then answers nil.
    assert.equal(
      await r.send("BLPOP", key("empty"), 0.1),
      null,
      JSON.stringify(opts),
    );
  }
  await using r = await connect({ url, blocking: true });
  for (const timeout of [Infinity, 3e9]) {
    assert.equal(
      await r.command(["BLPOP", key("empty"), 0.1], { timeout }),
      null,
    );
  }
});

test("connect() with no argument uses REDIS_URL", async () => {
  const g = globalThis as {
    Deno?: {
      env: {
        get(k: string): string | undefined;
        set(k: string, v: string): void;
        delete(k: string): void;
      };
    };
    process?: { env: Record<string, string | undefined> };
  };
  const get = () =>
    isDeno ? g.Deno!.env.get("REDIS_URL") : g.process!.env.REDIS_URL;
  const set = (v: string | undefined) => {
    if (isDeno) {
      if (v === undefined) g.Deno!.env.delete("REDIS_URL");
      else g.Deno!.env.set("REDIS_URL", v);
    } else if (v === undefined) delete g.process!.env.REDIS_URL;
    else g.process!.env.REDIS_URL = v;
  };
  const saved = get();
  set(`redis://127.0.0.1:${server.port}/7`);
  try {
    await using r = await connect();
    assert.equal(r.info.port, server.port);
    assert.equal(r.info.db, 7);
    assert.match(String(await r.send("CLIENT", "INFO")), / db=7 /);
  } finally {
    set(saved);
  }
  assert.equal(get(), saved);
});

teardown(() => server.stop());
