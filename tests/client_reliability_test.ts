/**
 * Defects an adversarial review found in the client (issue 7), each pinned by
 * a test: bad per-command options, passwords echoed by servers, a throwing
 * `onPush`, a connector that throws, an unbounded `close()`, unchecked
 * `connect` options, `logger: null`, lone surrogates, connection-state
 * commands on the shared connection, and replies that mean "did not run"
 * (`BUSY`, `LOADING`).
 */
import assert from "node:assert/strict";
import {
  cached,
  connect,
  ConnectionError,
  Lock,
  type Logger,
  ProtocolError,
  ReplyError,
  Script,
  TimeoutError,
} from "../mod.ts";
import { startFakeServer } from "./_fake_server.ts";
import { answer, handshakeAnswer } from "./_fake_redis.ts";
import { commandCalls, startRedis } from "../testing/redis.ts";
import { sleep, teardown, test } from "./_harness.ts";

const server = await startRedis({ args: ["--lua-time-limit", "50"] });
const url = server.url;
let n = 0;
const key = (s: string) => `respite:test:rel:${Date.now()}:${n++}:${s}`;
const BOUND = { timeout: 30_000 };

/** Every text an error carries: message, stack, and its causes', recursively. */
function texts(err: unknown, depth = 0): string[] {
  if (depth > 10 || err === null || err === undefined) return [];
  if (!(err instanceof Error)) return [String(err)];
  const out = [String(err), err.message, err.stack ?? ""];
  for (const v of Object.values(err)) {
    if (typeof v === "string") out.push(v);
  }
  return out.concat(texts(err.cause, depth + 1));
}

/** Fails if `pw`, or the 12-character start of it (a truncated echo), shows. */
function assertNoPassword(what: string, found: string[], pw: string): void {
  const probe = pw.slice(0, 12);
  for (const t of found) {
    assert.ok(
      !t.includes(probe),
      `${what} shows the password: ${JSON.stringify(t.slice(0, 300))}`,
    );
  }
}

function capture(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, warn: (m: string) => lines.push(m) };
}

// ---------------------------------------------------------------- defect 1

test(
  "a bad signal or option rejects, sends nothing, and later replies still match",
  async () => {
    await using r = await connect(url);
    const k = key("bad-opts");
    const bad: unknown[] = [
      { signal: "nope" },
      { signal: "nope", timeout: 30 },
      { signal: { aborted: false } },
      { timeout: "5" },
      { timeout: -1 },
      { raw: "yes" },
      5,
      "x",
    ];
    for (const opts of bad) {
      await assert.rejects(
        r.command(["SET", k, "v"], opts as never),
        (e: unknown) => e instanceof TypeError || e instanceof RangeError,
        `options ${JSON.stringify(opts)} were accepted`,
      );
    }
    await sleep(80); // the 30 ms timer of the second case has had its time
    assert.equal(await r.send("GET", k), null, "a rejected command was sent");
    const replies = await Promise.all([
      r.send("ECHO", "a"),
      r.send("INCR", key("n")),
      r.send("ECHO", "b"),
    ]);
    assert.deepEqual(
      replies,
      ["a", 1, "b"],
      "replies went to the wrong caller",
    );
  },
  BOUND,
);

// ---------------------------------------------------------------- defect 2

const PASSWORDS = [
  "Sx9-" + "long-secret-".repeat(30), // longer than Redis's 128-byte echo
  "Sx9 pass word with 'single' and \"double\" quotes",
  "Sx9-pässwörd-ünïcødé-密码-🔑",
];

/** Redis's own echo of an unknown command: each argument cut at 128 bytes. */
function echoUnknown(args: string[]): string {
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  const shown = args.slice(1).map((a) =>
    `'${dec.decode(enc.encode(a).slice(0, 128))}' `
  ).join("");
  const line = `-ERR unknown command '${
    args[0]
  }', with args beginning with: ${shown}`;
  // RESP is bytes: the fake server writes latin-1 chars, one per byte.
  return String.fromCharCode(...enc.encode(line)) + "\r\n";
}

for (const protocol of [2, 3] as const) {
  test(
    `RESP${protocol}: a server that echoes the handshake's arguments never puts the password in an error`,
    async () => {
      for (const password of PASSWORDS) {
        const fake = startFakeServer();
        const stops: Array<() => Promise<void>> = [];
        const logger = capture();
        try {
          const opening = connect({
            hostname: "127.0.0.1",
            port: fake.port,
            username: "app",
            password,
            protocol,
            logger,
            connectTimeout: 5_000,
          });
          const conn = await fake.accepted(0);
          stops.push(answer(conn, (args) => echoUnknown(args)));
          const err = await opening.then(
            () => assert.fail("connect() resolved"),
            (e: unknown) => e,
          );
          assert.ok(err instanceof ReplyError, `got ${err}`);
          assertNoPassword("the error", texts(err), password);
          assertNoPassword("a log line", logger.lines, password);
          assert.match(
            (err as Error).message,
            protocol === 3 ? /HELLO/ : /AUTH/,
            "says which step failed",
          );
        } finally {
          for (const s of stops) await s();
          await fake.close();
        }
      }
    },
    BOUND,
  );
}

test(
  "a failed re-authentication after a reconnect keeps the password out of errors and logs",
  async () => {
    const password = PASSWORDS[0];
    const fake = startFakeServer();
    const stops: Array<() => Promise<void>> = [];
    const logger = capture();
    try {
      const opening = connect({
        hostname: "127.0.0.1",
        port: fake.port,
        password,
        logger,
        reconnect: { minDelay: 10, maxDelay: 20, maxRetries: 2 },
      });
      const first = await fake.accepted(0);
      stops.push(answer(first, (args) => handshakeAnswer(args) ?? "+PONG\r\n"));
      const r = await opening;
      assert.equal(await r.send("PING"), "PONG");
      // From now on every new connection echoes AUTH's arguments back.
      const echoing = (async () => {
        for (let i = 1; i <= 3; i++) {
          const c = await fake.accepted(i, 10_000).catch(() => null);
          if (c === null) return;
          stops.push(answer(c, (args) => echoUnknown(args)));
        }
      })();
      await first.close();
      while (r.status === "ready") await sleep(5);
      const err = await r.send("PING").then(
        () => assert.fail("PING resolved"),
        (e: unknown) => e,
      );
      assert.ok(err instanceof ConnectionError, `got ${err}`);
      assertNoPassword("the error", texts(err), password);
      assertNoPassword("a log line", logger.lines, password);
      await r.close();
      await echoing;
    } finally {
      for (const s of stops) await s();
      await fake.close();
    }
  },
  BOUND,
);

for (const protocol of [2, 3] as const) {
  test(
    `RESP${protocol}: a real Redis with ${
      protocol === 2 ? "AUTH" : "HELLO"
    } renamed: the password is in no error`,
    async () => {
      for (const password of PASSWORDS) {
        const renamed = await startRedis({
          args: [
            "--requirepass",
            password,
            "--rename-command",
            protocol === 2 ? "AUTH" : "HELLO",
            "RENAMED_" + (protocol === 2 ? "AUTH" : "HELLO"),
          ],
        });
        try {
          const err = await connect({
            url: renamed.url,
            password,
            protocol,
          }).then(
            async (c) => {
              await c.close();
              assert.fail("connect() resolved");
            },
            (e: unknown) => e,
          );
          assert.ok(err instanceof ReplyError, `got ${err}`);
          assertNoPassword("the error", texts(err), password);
        } finally {
          await renamed.stop();
        }
      }
    },
    { timeout: 60_000 },
  );
}

// ---------------------------------------------------------------- defect 3

test(
  "a throwing onPush is reported, and the command still gets its reply",
  async () => {
    const fake = startFakeServer();
    const logger = capture();
    let stop: (() => Promise<void>) | undefined;
    try {
      const opening = connect({
        hostname: "127.0.0.1",
        port: fake.port,
        protocol: 3,
        logger,
        onPush: () => {
          throw new Error("listener bug");
        },
      });
      const conn = await fake.accepted(0);
      stop = answer(
        conn,
        (args) =>
          handshakeAnswer(args) ??
            ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n+PONG\r\n",
      );
      await using r = await opening;
      assert.equal(await r.send("PING"), "PONG");
      assert.equal(await r.send("PING"), "PONG");
      assert.equal(r.status, "ready");
      assert.equal(logger.lines.length, 2, logger.lines.join("\n"));
      assert.match(logger.lines[0], /onPush threw.*listener bug/);
    } finally {
      await stop?.();
      await fake.close();
    }
  },
  BOUND,
);

test(
  "a push frame nested a million levels deep is a ProtocolError at the depth limit, not an allocation",
  async () => {
    const fake = startFakeServer();
    const stops: Array<() => Promise<void>> = [];
    try {
      const opening = connect({
        hostname: "127.0.0.1",
        port: fake.port,
        protocol: 3,
        reconnect: { minDelay: 10, maxDelay: 20 },
      });
      const deep = ">1\r\n" + "*1\r\n".repeat(1_000_000) + ":1\r\n";
      stops.push(
        answer(
          await fake.accepted(0),
          (args) => handshakeAnswer(args) ?? deep + "+PONG\r\n",
        ),
      );
      const next = (async () => {
        const c = await fake.accepted(1, 10_000).catch(() => null);
        if (c) stops.push(answer(c, (a) => handshakeAnswer(a) ?? "+PONG\r\n"));
      })();
      await using r = await opening;
      const t0 = performance.now();
      await assert.rejects(r.send("PING"), (e: unknown) => {
        assert.ok(e instanceof ProtocolError, `got ${e}`);
        assert.match(e.message, /depth|nest/i);
        return true;
      });
      assert.ok(performance.now() - t0 < 5_000);
      assert.equal(await r.send("PING"), "PONG", "a new connection works");
      await next;
    } finally {
      for (const s of stops) await s();
      await fake.close();
    }
  },
  BOUND,
);

test("replyLimits are checked, and applied to replies", async () => {
  await assert.rejects(
    connect({ url, replyLimits: { maxDepth: 0 } }),
    RangeError,
  );
  await assert.rejects(
    connect({ url, replyLimits: { maxDeep: 5 } as never }),
    TypeError,
  );
  await using r = await connect({
    url,
    replyLimits: { maxDepth: 3, maxBulkLength: 1_000 },
    reconnect: { minDelay: 10, maxDelay: 20 },
  });
  assert.deepEqual(await r.send("EVAL", "return {1, {2, {3}}}", 0), [1, [2, [
    3,
  ]]]);
  await assert.rejects(
    r.send("EVAL", "return {1, {2, {3, {4}}}}", 0),
    ProtocolError,
  );
  const k = key("big");
  await r.send("SET", k, "x".repeat(1_000));
  assert.equal((await r.send<string>("GET", k)).length, 1_000);
  await r.send("SET", k, "x".repeat(1_001));
  await assert.rejects(r.send("GET", k), ProtocolError);
  assert.equal(await r.send("DEL", k), 1);
});

test("onPush must be a function", async () => {
  await assert.rejects(
    connect({ url, onPush: 5 as never }),
    TypeError,
  );
});

// ---------------------------------------------------------------- defect 4

test(
  "a half-dead connection (no FIN, no RST) is found by a health check after a timeout, and replaced",
  async () => {
    const fake = startFakeServer();
    const stops: Array<() => Promise<void>> = [];
    try {
      const opening = connect({
        hostname: "127.0.0.1",
        port: fake.port,
        commandTimeout: 200,
        healthCheckTimeout: 500,
        reconnect: { minDelay: 10, maxDelay: 50 },
      });
      // The first connection answers two PINGs, then goes silent for good
      // (the socket stays open); the next one answers everything.
      const first = await fake.accepted(0);
      stops.push(answer(first, (_args, i) => i < 2 ? "+PONG\r\n" : null));
      const later = (async () => {
        const c = await fake.accepted(1, 15_000).catch(() => null);
        if (c !== null) stops.push(answer(c, () => "+PONG\r\n"));
      })();
      await using r = await opening;
      assert.equal(await r.send("PING"), "PONG");
      assert.equal(await r.send("PING"), "PONG");
      const t0 = performance.now();
      let timeouts = 0;
      let ok = false;
      while (performance.now() - t0 < 10_000) {
        try {
          await r.send("PING");
          ok = true;
          break;
        } catch (err) {
          if (err instanceof TimeoutError) timeouts++;
          else assert.ok(err instanceof ConnectionError, `got ${err}`);
        }
      }
      const took = performance.now() - t0;
      assert.ok(ok, `still no answer after ${took} ms, ${timeouts} timeouts`);
      assert.ok(fake.connections.length >= 2, "it never reconnected");
      assert.ok(took < 5_000, `took ${took} ms to notice`);
      assert.equal(r.status, "ready");
      await later;
    } finally {
      for (const s of stops) await s();
      await fake.close();
    }
  },
  BOUND,
);

// ---------------------------------------------------------------- defect 5

/** A TCP server that accepts and never reads: writes to it stall. */
async function startSinkServer() {
  const net = await import("node:net");
  const sockets = new Set<import("node:net").Socket>();
  const srv = net.createServer((sock) => {
    sock.pause();
    sockets.add(sock);
    sock.on("error", () => {});
    sock.on("close", () => sockets.delete(sock));
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  const port = (srv.address() as { port: number }).port;
  return {
    port,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

test(
  "commands that time out behind a stalled write give their memory back; maxQueue bounds the backlog",
  async () => {
    const { memoryUsage } = await import("node:process");
    const sink = await startSinkServer();
    try {
      const r = await connect({
        hostname: "127.0.0.1",
        port: sink.port,
        healthCheckTimeout: false, // keep the stalled connection for this test
        maxQueue: 200,
      });
      const value = "v".repeat(100_000);
      const rss0 = memoryUsage().rss;
      let timedOut = 0;
      // 4,000 SETs of 100 kB (400 MB) into a socket nobody reads.
      for (let round = 0; round < 200; round++) {
        const batch = Array.from(
          { length: 20 },
          (_, i) => r.command(["SET", `k${i}`, value], { timeout: 20 }),
        );
        for (const p of batch) {
          await p.then(() => {}, (e) => {
            if (e instanceof TimeoutError) timedOut++;
          });
        }
      }
      const grew = (memoryUsage().rss - rss0) / 1e6;
      assert.equal(timedOut, 4_000);
      assert.ok(grew < 150, `RSS grew by ${grew.toFixed(0)} MB`);
      // The backlog of unsent commands is bounded while the write is stuck.
      const many = Array.from({ length: 400 }, () => r.send("PING"));
      const settled = await Promise.allSettled(many.slice(200));
      assert.ok(
        settled.every((x) =>
          x.status === "rejected" && x.reason instanceof ConnectionError &&
          /has not taken a write/.test(x.reason.message)
        ),
        "commands past maxQueue were accepted",
      );
      for (const p of many) p.catch(() => {});
      await r.close({ force: true });
    } finally {
      await sink.close();
    }
  },
  { timeout: 60_000 },
);

// ---------------------------------------------------------------- defect 9

test("a connector that throws synchronously: connect() rejects, nothing is left to reject later", async () => {
  const t0 = performance.now();
  await assert.rejects(
    connect({
      url,
      connectTimeout: 100,
      connector: () => {
        throw new Error("no sockets here");
      },
    }),
    (e: unknown) =>
      e instanceof ConnectionError && /no sockets here/.test(e.message),
  );
  assert.ok(performance.now() - t0 < 1_000);
  await sleep(250); // past connectTimeout: a dangling timeout would reject now
});

// ---------------------------------------------------------------- defect 11

test(
  "close() is bounded: a pending reply from a frozen server fails with ConnectionError",
  async () => {
    const frozen = await startRedis();
    try {
      const r = await connect({ url: frozen.url, closeTimeout: 300 });
      assert.equal(await r.send("PING"), "PONG");
      frozen.signal("SIGSTOP");
      const pending = r.send("PING");
      pending.catch(() => {});
      const t0 = performance.now();
      await r.close();
      const took = performance.now() - t0;
      assert.ok(took >= 250 && took < 3_000, `close() took ${took} ms`);
      await assert.rejects(pending, ConnectionError);
      assert.equal(r.status, "closed");
      // Per call: close({ timeout }) and close({ force: true }).
      frozen.signal("SIGCONT");
      const r2 = await connect(frozen.url);
      const r3 = await connect(frozen.url);
      frozen.signal("SIGSTOP");
      const p2 = r2.send("PING");
      const p3 = r3.send("PING");
      p2.catch(() => {});
      p3.catch(() => {});
      const t1 = performance.now();
      await r2.close({ timeout: 100 });
      await r3.close({ force: true });
      assert.ok(performance.now() - t1 < 2_000);
      await assert.rejects(p2, ConnectionError);
      await assert.rejects(p3, ConnectionError);
      await assert.rejects(r3.close({ timeout: -1 }), RangeError);
    } finally {
      frozen.signal("SIGCONT");
      await frozen.stop();
    }
  },
  BOUND,
);

test(
  "close() on a dedicated connection with BLPOP 0 pending finishes",
  async () => {
    const r = await connect({ url, blocking: true, closeTimeout: 200 });
    const blpop = r.send("BLPOP", key("never"), "0");
    blpop.catch(() => {});
    await sleep(50);
    const t0 = performance.now();
    await r[Symbol.asyncDispose]();
    assert.ok(performance.now() - t0 < 2_000);
    await assert.rejects(blpop, ConnectionError);
  },
  BOUND,
);

// ---------------------------------------------------------------- defect 12

test("connect() checks every option's value and rejects unknown options", async () => {
  const bad: Array<[Record<string, unknown>, typeof TypeError]> = [
    [{ queueWhileReconnecting: "no" }, TypeError],
    [{ reconnect: { minDelay: 500, maxDelay: 100 } }, RangeError],
    [{ reconnect: { maxRetries: 1.5 } }, RangeError],
    [{ reconnect: { minDelai: 5 } }, TypeError],
    [{ tll: 5000 }, TypeError],
    [{ closeTimeout: -1 }, RangeError],
    [{ blocking: "yes" }, TypeError],
    [{ logger: { log() {} } }, TypeError],
  ];
  for (const [opts, type] of bad) {
    await assert.rejects(
      connect({ url, ...opts }),
      type,
      `accepted ${JSON.stringify(opts)}`,
    );
  }
});

test("logger: null on connect() silences warnings", async () => {
  await using r = await connect({ url, logger: null });
  const s = new Script("SILENT_SCRIPT", "return 1");
  const warned: unknown[] = [];
  const original = console.warn;
  console.warn = (...a: unknown[]) => void warned.push(a);
  try {
    await s.run(r);
    await r.send("SCRIPT", "FLUSH");
    assert.equal(await s.run(r), 1);
  } finally {
    console.warn = original;
  }
  assert.deepEqual(warned, []);
});

test("strings with lone surrogates are refused: they would reach Redis changed", async () => {
  await using r = await connect(url);
  const base = key("surrogate");
  for (const bad of ["user-\uD800", "user-\uDFFF", "\uDC00x", "a\uD83D"]) {
    await assert.rejects(r.send("SET", base + bad, "v"), TypeError);
    await assert.rejects(r.send("SET", base, bad), TypeError);
  }
  assert.equal(await r.send("EXISTS", base), 0, "something was written");
  // Well-formed pairs are fine.
  assert.equal(await r.send("SET", base + "-🔑", "v🔑"), "OK");
  assert.equal(await r.send("GET", base + "-🔑"), "v🔑");
  // Lock names and cached() keys are checked when they are made.
  assert.throws(() => new Lock(r, "user-\uD800"), TypeError);
  assert.throws(
    () => cached(() => 1, { redis: r, key: "user-\uDFFF", ttl: 1_000 }),
    TypeError,
  );
  assert.equal(new Lock(r, "user-🔑").name, "user-🔑");
});

const REFUSED: string[][] = [
  ["MULTI"],
  ["multi"],
  ["EXEC"],
  ["DISCARD"],
  ["WATCH", "k"],
  ["UNWATCH"],
  ["SELECT", "1"],
  ["SUBSCRIBE", "c"],
  ["PSUBSCRIBE", "c*"],
  ["SSUBSCRIBE", "c"],
  ["UNSUBSCRIBE"],
  ["PUNSUBSCRIBE"],
  ["SUNSUBSCRIBE"],
  ["RESET"],
  ["QUIT"],
  ["HELLO", "3"],
  ["AUTH", "Sx9-secret"],
  ["HELLO", "3", "AUTH", "default", "Sx9-secret"],
  ["CLIENT", "REPLY", "OFF"],
  ["client", "reply", "skip"],
  ["MONITOR"],
  ["BLPOP", "k", "0"],
  ["BRPOP", "k", "0"],
  ["BLMOVE", "a", "b", "LEFT", "LEFT", "0"],
  ["BRPOPLPUSH", "a", "b", "0"],
  ["BZPOPMIN", "k", "0"],
  ["BZPOPMAX", "k", "0"],
  ["BLMPOP", "0", "1", "k", "LEFT"],
  ["BZMPOP", "0", "1", "k", "MIN"],
  ["XREAD", "BLOCK", "0", "STREAMS", "s", "$"],
  ["XREADGROUP", "GROUP", "g", "c", "block", "0", "STREAMS", "s", ">"],
  ["WAIT", "0", "0"],
  ["WAITAOF", "0", "0", "0"],
];

test(
  "connection-state and blocking commands are refused on the shared connection, before anything is sent",
  async () => {
    await using r = await connect(url);
    const k = key("state");
    await r.send("SET", k, "value");
    for (const cmd of REFUSED) {
      const [name, ...args] = cmd;
      const get = r.send("GET", k);
      await assert.rejects(
        r.send(name, ...args),
        (e: unknown) =>
          e instanceof TypeError &&
          /refused on a shared client/.test(e.message) &&
          !e.message.includes("Sx9-secret"),
        `${cmd.join(" ")} was accepted`,
      );
      assert.equal(
        await get,
        "value",
        `a GET next to ${cmd.join(" ")} went wrong`,
      );
    }
    // Commands that merely look alike still go through.
    assert.equal(await r.send("CLIENT", "GETNAME"), null);
    assert.deepEqual(
      await r.send("XREAD", "COUNT", "1", "STREAMS", key("s"), "0"),
      null,
    );
    // And a dedicated connection for blocking commands takes them.
    await using d = await r.duplicate({ blocking: true });
    const list = key("list");
    await r.send("RPUSH", list, "x");
    assert.deepEqual(await d.send("BLPOP", list, "1"), [list, "x"]);
  },
  BOUND,
);

test(
  "multi() runs commands as one transaction on the shared connection; other callers keep their replies",
  async () => {
    await using r = await connect(url);
    const k = key("multi");
    await r.send("SET", k, "10");
    const [before, tx, after] = await Promise.all([
      r.send("GET", k),
      r.multi([["INCR", k], ["INCRBY", k, 5], ["GET", k]]),
      r.send("GET", k),
    ]);
    assert.equal(before, "10");
    assert.deepEqual(tx, [11, 16, "16"]);
    assert.equal(after, "16");
    // A command error at run time is a value in the array.
    const mixed = await r.multi([["SET", k, "x"], ["INCR", k], ["GET", k]]);
    assert.equal(mixed[0], "OK");
    assert.ok(mixed[1] instanceof ReplyError);
    assert.equal(mixed[2], "x");
    // A command Redis refuses to queue aborts the whole transaction.
    await assert.rejects(
      r.multi([["SET", k, "y"], ["GET"]]),
      (e: unknown) => e instanceof ReplyError && e.code === "EXECABORT",
    );
    assert.equal(await r.send("GET", k), "x");
    await assert.rejects(r.multi([["MULTI"]]), TypeError);
    await assert.rejects(r.multi([]), TypeError);
    assert.equal(await r.send("ECHO", "still in order"), "still in order");
  },
  BOUND,
);

test("the first subscribe() on a client sends SUBSCRIBE once", async () => {
  const own = await startRedis();
  try {
    await using admin = await connect(own.url);
    await using r = await connect(own.url);
    const before = (await commandCalls(admin)).get("subscribe") ?? 0;
    const off = await r.subscribe(key("chan"), () => {});
    await sleep(50); // a second SUBSCRIBE would be out by now
    assert.equal((await commandCalls(admin)).get("subscribe"), before + 1);
    await off();
  } finally {
    await own.stop();
  }
});

// ------------------------------------------------------- replies: did not run

test("BUSY (a script is running) is retried until Redis answers", async () => {
  await using a = await connect(url);
  await using b = await connect(url);
  const k = key("busy");
  // A 600 ms busy script; lua-time-limit is 50 ms, so others get BUSY.
  const script = a.send(
    "EVAL",
    "local t = redis.call('TIME'); local s = t[1] * 1000000 + t[2]; " +
      "while true do local u = redis.call('TIME'); " +
      "if u[1] * 1000000 + u[2] - s > 600000 then break end end " +
      "redis.call('SET', KEYS[1], 'done'); return 1",
    1,
    k,
  );
  await sleep(150);
  const t0 = performance.now();
  assert.equal(await b.send("GET", k), "done");
  assert.ok(performance.now() - t0 < 5_000);
  assert.equal(await script, 1);
}, BOUND);

test(
  "LOADING (a restarted server reading its data) is retried until it is loaded",
  async () => {
    const dir = await tempDir();
    const loading = await startRedis({
      args: ["--dir", dir, "--dbfilename", "d.rdb"],
    });
    try {
      await using w = await connect(loading.url);
      const k = key("loading");
      const pipeline: Promise<unknown>[] = [];
      for (let i = 0; i < 2_000; i++) {
        pipeline.push(w.send("SET", `${k}:${i}`, "v"));
      }
      await Promise.all(pipeline);
      assert.equal(await w.send("SAVE"), "OK");
      await w.close();
      await loading.stop();
      // Started again on the same port, it reads the 2,000 keys at 0.5 ms
      // each: about a second of LOADING replies.
      const again = await startRedis({
        port: loading.port,
        args: [
          "--dir",
          dir,
          "--dbfilename",
          "d.rdb",
          "--key-load-delay",
          "500",
          // Answer clients while loading (every 1 KiB read, not every 2 MiB).
          "--loading-process-events-interval-bytes",
          "1024",
        ],
      });
      try {
        await using r = await connect({ url: again.url });
        const first = await r.send("INFO", "persistence");
        assert.match(
          String(first),
          /loading:1/,
          "the server was still loading",
        );
        assert.equal(await r.send("GET", `${k}:1999`), "v");
      } finally {
        await again.stop();
      }
    } finally {
      await loading.stop();
    }
  },
  { timeout: 60_000 },
);

async function tempDir(): Promise<string> {
  const g = globalThis as { Deno?: { makeTempDir(): Promise<string> } };
  if (g.Deno) return await g.Deno.makeTempDir();
  const { mkdtemp } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  return await mkdtemp(`${tmpdir()}/respite-`);
}

teardown(() => server.stop());
