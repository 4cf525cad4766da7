import assert from "node:assert/strict";
import {
  connect,
  ConnectionError,
  type ConnectOptions,
  ProtocolError,
  type RedisClient,
  TimeoutError,
} from "../mod.ts";
import {
  type FakeConn,
  type FakeServer,
  startFakeServer,
} from "./_fake_server.ts";
import { freePort } from "../testing/redis.ts";
import { sleep, test } from "./_harness.ts";

/** Every test here is bounded well below the harness default. */
const BOUND = { timeout: 15_000 };

/** Waits until `cond()` holds; fails after `ms`. */
async function until(
  cond: () => boolean,
  what: string,
  ms = 5_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/**
 * Runs `fn` with a fake server and a client connected to it, and closes both
 * afterwards whatever happens (close() itself must not hang either).
 */
async function withFake(
  options: Omit<ConnectOptions, "port" | "hostname">,
  fn: (
    server: FakeServer,
    client: RedisClient,
    conn: FakeConn,
  ) => Promise<void>,
): Promise<void> {
  const server = startFakeServer();
  let client: RedisClient | undefined;
  try {
    client = await connect({
      hostname: "127.0.0.1",
      port: server.port,
      connectTimeout: 5_000,
      ...options,
    });
    const conn = await server.accepted(0);
    await fn(server, client, conn);
  } finally {
    if (client) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        client.close(),
        new Promise((_, reject) =>
          timer = setTimeout(
            () => reject(new Error("client.close() hung")),
            5_000,
          )
        ),
      ]).finally(() => clearTimeout(timer));
    }
    await server.close();
  }
}

function isProtocolError(match?: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof ProtocolError, `expected a ProtocolError, got ${e}`);
    assert.equal(e.name, "ProtocolError");
    assert.match(e.message, /Malformed reply from 127\.0\.0\.1:\d+/);
    assert.match(e.message, /connection was closed/);
    if (match) assert.match(e.message, match);
    return true;
  };
}

const NO_RECONNECT = { reconnect: false } as const;

test(
  "a bad type byte: the pending command rejects with ProtocolError, the connection closes",
  async () => {
    await withFake(NO_RECONNECT, async (_server, client, conn) => {
      const ping = client.send("PING");
      await conn.waitFor("PING");
      await conn.write("?oops\r\n");
      await assert.rejects(ping, isProtocolError(/type byte 0x3f/));
      await conn.closed; // the client closed its socket
      await until(() => client.status === "closed", "status closed");
      await assert.rejects(client.send("PING"), ConnectionError);
    });
  },
  BOUND,
);

test(
  "a bad type byte with no line end does not leave the command hanging",
  async () => {
    await withFake(NO_RECONNECT, async (_server, client, conn) => {
      const ping = client.send("PING");
      await conn.waitFor("PING");
      await conn.write("HTTP/1.1 400"); // no CRLF, ever
      await assert.rejects(ping, isProtocolError(/type byte 0x48/));
      await conn.closed;
    });
  },
  BOUND,
);

test("a bad length rejects every pipelined command still waiting", async () => {
  await withFake(NO_RECONNECT, async (_server, client, conn) => {
    const replies = [
      client.send("PING"),
      client.send("ECHO", "a"),
      client.send("ECHO", "b"),
    ];
    await conn.waitFor("$1\r\nb\r\n");
    await conn.write("+PONG\r\n$abc\r\nxyz\r\n");
    assert.equal(await replies[0], "PONG");
    await assert.rejects(replies[1], isProtocolError(/length/));
    await assert.rejects(replies[2], isProtocolError(/length/));
    await conn.closed;
    await until(() => client.status === "closed", "status closed");
  });
}, BOUND);

test("CR without LF is a ProtocolError", async () => {
  await withFake(NO_RECONNECT, async (_server, client, conn) => {
    const get = client.send("GET", "k");
    await conn.waitFor("GET");
    await conn.write("+OK\rX\n");
    await assert.rejects(get, isProtocolError(/CR not followed by LF/));
    await conn.closed;
  });
}, BOUND);

test(
  "a malformed element inside an array fails the reply being read",
  async () => {
    await withFake(NO_RECONNECT, async (_server, client, conn) => {
      const lrange = client.send("LRANGE", "k", 0, -1);
      await conn.waitFor("LRANGE");
      await conn.write("*3\r\n:1\r\n");
      await sleep(20);
      await conn.write("$2\r\nok\r\n#maybe\r\n");
      await assert.rejects(lrange, isProtocolError(/boolean/));
      await conn.closed;
    });
  },
  BOUND,
);

test("a reply nobody asked for closes the connection", async () => {
  await withFake(NO_RECONNECT, async (_server, client, conn) => {
    await conn.write("+surprise\r\n");
    await conn.closed;
    await until(() => client.status === "closed", "status closed");
    await assert.rejects(client.send("PING"), ConnectionError);
  });
  // One command pending, two replies: the first is its reply, the second is
  // unexpected and closes the connection.
  await withFake(NO_RECONNECT, async (_server, client, conn) => {
    const ping = client.send("PING");
    await conn.waitFor("PING");
    await conn.write("+PONG\r\n+EXTRA\r\n");
    assert.equal(await ping, "PONG");
    await conn.closed;
    await until(() => client.status === "closed", "status closed");
  });
}, BOUND);

test(
  "a bulk string shorter than declared, then close: ConnectionError, no hang",
  async () => {
    await withFake(NO_RECONNECT, async (_server, client, conn) => {
      const get = client.send("GET", "k");
      const echo = client.send("ECHO", "x");
      await conn.waitFor("ECHO");
      await conn.write("$10\r\nabc");
      await sleep(20);
      await conn.close();
      for (const p of [get, echo]) {
        await assert.rejects(p, (e: unknown) => {
          assert.ok(e instanceof ConnectionError, `got ${e}`);
          assert.match(e.message, /may or may not have run/);
          return true;
        });
      }
      await until(() => client.status === "closed", "status closed");
      await assert.rejects(client.send("PING"), ConnectionError);
    });
  },
  BOUND,
);

test(
  "with reconnect on: after a ProtocolError the client reconnects, and never resends",
  async () => {
    await withFake(
      { reconnect: { minDelay: 5, maxDelay: 20 } },
      async (server, client, conn) => {
        const bad = client.send("SET", "k", "first");
        await conn.waitFor("first");
        await conn.write("!!!\r\n");
        await assert.rejects(bad, isProtocolError());
        await conn.closed;
        const second = await server.accepted(1);
        await until(() => client.status === "ready", "reconnected");
        const ping = client.send("PING");
        await second.waitFor("PING");
        await second.write("+PONG\r\n");
        assert.equal(await ping, "PONG");
        assert.ok(
          !second.received.includes("first"),
          "the failed command was sent again",
        );
      },
    );
  },
  BOUND,
);

test(
  "a server that never answers: a command with a timeout rejects with TimeoutError",
  async () => {
    await withFake(NO_RECONNECT, async (_server, client, conn) => {
      const t0 = Date.now();
      await assert.rejects(
        client.command(["GET", "k"], { timeout: 200 }),
        (e: unknown) => {
          assert.ok(e instanceof TimeoutError, `got ${e}`);
          assert.match(e.message, /GET timed out after 200 ms/);
          return true;
        },
      );
      assert.ok(Date.now() - t0 < 3_000, "the timeout fired late");
      await conn.waitFor("GET");
      // The connection is still up and in order: a late reply to GET is
      // dropped, the next reply goes to the next command. (After the
      // timeout the client checks the connection with a PING, which the
      // server answers in its turn.)
      await conn.waitFor("PING");
      const echo = client.send("ECHO", "hi");
      await conn.waitFor("hi");
      await conn.write("$4\r\nlate\r\n+PONG\r\n$2\r\nhi\r\n");
      assert.equal(await echo, "hi");
      assert.equal(client.status, "ready");
    });
  },
  BOUND,
);

test(
  "close() does not wait for the reply of a command that timed out",
  async () => {
    await withFake(NO_RECONNECT, async (_server, client, conn) => {
      await assert.rejects(
        client.command(["GET", "k"], { timeout: 100 }),
        TimeoutError,
      );
      await conn.waitFor("GET");
      // The reply never comes; withFake fails if close() hangs.
    });
    await withFake(
      { ...NO_RECONNECT, commandTimeout: 100 },
      async (_s, client) => {
        const get = client.send("GET", "k");
        const closing = client.close(); // waits for GET, which then times out
        await assert.rejects(get, TimeoutError);
        await closing;
        assert.equal(client.status, "closed");
      },
    );
  },
  BOUND,
);

test(
  "a server that never answers the handshake: connect() times out",
  async () => {
    const server = startFakeServer();
    try {
      const t0 = Date.now();
      await assert.rejects(
        connect({
          hostname: "127.0.0.1",
          port: server.port,
          password: "pw",
          connectTimeout: 300,
        }),
        TimeoutError,
      );
      assert.ok(Date.now() - t0 < 3_000);
      const conn = await server.accepted(0);
      await conn.closed; // and the client closed what it opened
    } finally {
      await server.close();
    }
  },
  BOUND,
);

test(
  "garbage in reply to the handshake: connect() rejects with ProtocolError",
  async () => {
    const server = startFakeServer((conn) => {
      conn.waitFor("HELLO").then(() => conn.write("?\r\n"), () => {});
    });
    try {
      await assert.rejects(
        connect({ hostname: "127.0.0.1", port: server.port, protocol: 3 }),
        isProtocolError(),
      );
      await (await server.accepted(0)).closed;
    } finally {
      await server.close();
    }
  },
  BOUND,
);

test("a port nobody listens on: ConnectionError, quickly", async () => {
  const port = await freePort();
  const t0 = Date.now();
  await assert.rejects(
    connect({ hostname: "127.0.0.1", port }),
    (e: unknown) => {
      assert.ok(e instanceof ConnectionError, `got ${e}`);
      assert.match(e.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
      assert.ok(e.cause !== undefined, "keeps the network error as cause");
      return true;
    },
  );
  assert.ok(Date.now() - t0 < 3_000, "took too long");
}, BOUND);
