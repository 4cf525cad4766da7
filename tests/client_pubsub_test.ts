/**
 * Pub/sub on the client's one shared subscriber connection: subscribe,
 * publish, unsubscribe; listeners sharing one SUBSCRIBE; many channels; odd
 * payloads; resubscribing after the server restarts; close(); RESP2 and RESP3.
 */
import assert from "node:assert/strict";
import { connect, type MessageListener, type RedisClient } from "../mod.ts";
import { startRedis } from "../testing/redis.ts";
import { sleep, teardown, test } from "./_harness.ts";

// Our own server: one test kills and restarts it.
const server = await startRedis();
const url = server.url;
let n = 0;
const chan = (s: string) => `respite:test:pubsub:${n++}:${s}`;

/** A listener that records messages, and waits for the next ones. */
function inbox(): {
  listener: MessageListener;
  messages: [string, string][];
  waitFor: (count: number, ms?: number) => Promise<[string, string][]>;
} {
  const messages: [string, string][] = [];
  let wake: (() => void) | null = null;
  return {
    messages,
    listener: (message, channel) => {
      messages.push([message, channel]);
      wake?.();
    },
    async waitFor(count, ms = 3_000) {
      const deadline = Date.now() + ms;
      while (messages.length < count) {
        const left = deadline - Date.now();
        if (left <= 0) {
          throw new Error(
            `got ${messages.length} of ${count} messages within ${ms} ms`,
          );
        }
        let timer: ReturnType<typeof setTimeout> | undefined;
        await new Promise<void>((resolve) => {
          wake = resolve;
          timer = setTimeout(resolve, left);
        });
        clearTimeout(timer);
        wake = null;
      }
      return messages;
    },
  };
}

/** PUBSUB NUMSUB for one channel, asked over a separate RESP2 connection. */
async function numsub(admin: RedisClient, channel: string): Promise<number> {
  const reply = await admin.send<[string, number]>(
    "PUBSUB",
    "NUMSUB",
    channel,
  );
  return reply[1];
}

/** The `sub=` counts of the server's pub/sub connections. */
async function pubsubClients(admin: RedisClient): Promise<number[]> {
  const list = await admin.send<string>("CLIENT", "LIST", "TYPE", "pubsub");
  return list.split("\n").filter((l) => l.trim() !== "").map((l) =>
    Number(/ sub=(\d+)/.exec(l)![1])
  );
}

for (const protocol of [2, 3] as const) {
  test(`RESP${protocol}: subscribe, publish, unsubscribe`, async () => {
    await using r = await connect({ url, protocol });
    await using admin = await connect(url);
    const c = chan("basic");
    const box = inbox();
    const unsubscribe = await r.subscribe(c, box.listener);
    // subscribe() resolved only once Redis confirmed it: nothing is missed.
    assert.equal(await numsub(admin, c), 1);
    assert.equal(r.subscriptions, 1);
    assert.equal(await r.send("PUBLISH", c, "one"), 1);
    assert.equal(await admin.send("PUBLISH", c, "two"), 1);
    assert.deepEqual(await box.waitFor(2), [["one", c], ["two", c]]);
    // The main connection still answers commands normally.
    assert.equal(await r.send("ECHO", "still"), "still");
    await unsubscribe();
    assert.equal(await numsub(admin, c), 0);
    assert.equal(r.subscriptions, 0);
    assert.equal(await admin.send("PUBLISH", c, "three"), 0);
    await sleep(30);
    assert.equal(box.messages.length, 2, "a message after unsubscribe");
    await unsubscribe(); // twice is harmless
  });

  test(`RESP${protocol}: payloads with CRLF, NUL, unicode, empty and large`, async () => {
    await using r = await connect({ url, protocol });
    await using admin = await connect(url);
    const c = chan("payloads");
    const box = inbox();
    const unsubscribe = await r.subscribe(c, box.listener);
    const payloads = [
      "line1\r\nline2\r\n",
      "*3\r\n$7\r\nmessage\r\n", // looks like RESP
      "nul\0inside",
      "héllo wörld ✓ 🚀 日本語",
      "",
      "\r\n",
      "x\r\n".repeat(100_000),
    ];
    for (const p of payloads) await admin.send("PUBLISH", c, p);
    const got = await box.waitFor(payloads.length);
    assert.deepEqual(got.map(([m]) => m), payloads);
    assert.ok(got.every(([, ch]) => ch === c));
    // A channel name with odd characters too.
    const odd = chan("ch\r\nä 🚀");
    const box2 = inbox();
    const unsubscribe2 = await r.subscribe(odd, box2.listener);
    await admin.send("PUBLISH", odd, "to the odd channel");
    assert.deepEqual(await box2.waitFor(1), [["to the odd channel", odd]]);
    await unsubscribe();
    await unsubscribe2();
  });

  test(`RESP${protocol}: two listeners on one channel share one SUBSCRIBE`, async () => {
    await using r = await connect({ url, protocol });
    await using admin = await connect(url);
    const prefix = chan("shared");
    const c = `${prefix}:x`;
    const a = inbox();
    const b = inbox();
    const [unA, unB] = await Promise.all([
      r.subscribe(c, a.listener),
      r.subscribe(c, b.listener),
    ]);
    assert.equal(await numsub(admin, c), 1);
    assert.deepEqual(
      await admin.send("PUBSUB", "CHANNELS", `${prefix}:*`),
      [c],
    );
    assert.deepEqual(await pubsubClients(admin), [1], "one connection, 1 sub");
    assert.equal(await admin.send("PUBLISH", c, "m1"), 1);
    assert.deepEqual(await a.waitFor(1), [["m1", c]]);
    assert.deepEqual(await b.waitFor(1), [["m1", c]]);
    // The same function twice is one listener.
    const unA2 = await r.subscribe(c, a.listener);
    await unA2();
    assert.equal(await numsub(admin, c), 1, "b still listens");
    await admin.send("PUBLISH", c, "m2");
    await b.waitFor(2);
    assert.deepEqual(b.messages.map(([m]) => m), ["m1", "m2"]);
    await sleep(30);
    assert.deepEqual(a.messages.map(([m]) => m), ["m1"]);
    await unA(); // already removed by unA2: nothing happens
    assert.equal(await numsub(admin, c), 1);
    await unB(); // the last listener: UNSUBSCRIBE
    assert.equal(await numsub(admin, c), 0);
    assert.deepEqual(await admin.send("PUBSUB", "CHANNELS", `${prefix}:*`), []);
    assert.equal(await admin.send("PUBLISH", c, "m3"), 0);
  });

  test(`RESP${protocol}: 300 channels on one subscriber connection`, async () => {
    await using r = await connect({ url, protocol });
    await using admin = await connect(url);
    const prefix = chan("many");
    const channels = Array.from({ length: 300 }, (_, i) => `${prefix}:${i}`);
    const boxes = channels.map(() => inbox());
    const unsubs = await Promise.all(
      channels.map((c, i) => r.subscribe(c, boxes[i].listener)),
    );
    assert.equal(r.subscriptions, 300);
    assert.deepEqual(await pubsubClients(admin), [300]);
    const counts = await Promise.all(
      channels.map((c, i) => admin.send("PUBLISH", c, `to ${i}`)),
    );
    assert.ok(counts.every((x) => x === 1));
    for (let i = 0; i < channels.length; i++) {
      assert.deepEqual(await boxes[i].waitFor(1), [[`to ${i}`, channels[i]]]);
    }
    // Unsubscribe half concurrently; the rest keep working.
    await Promise.all(unsubs.slice(0, 150).map((u) => u()));
    assert.equal(r.subscriptions, 150);
    assert.deepEqual(await pubsubClients(admin), [150]);
    assert.equal(await admin.send("PUBLISH", channels[0], "gone"), 0);
    assert.equal(await admin.send("PUBLISH", channels[299], "again"), 1);
    assert.equal((await boxes[299].waitFor(2))[1][0], "again");
    await Promise.all(unsubs.slice(150).map((u) => u()));
    assert.deepEqual(await admin.send("PUBSUB", "CHANNELS", `${prefix}:*`), []);
  });

  test(`RESP${protocol}: resubscribes after the server is killed and restarted`, async () => {
    await using r = await connect({
      url,
      protocol,
      reconnect: { minDelay: 10, maxDelay: 100 },
    });
    const c1 = chan("restart1");
    const c2 = chan("restart2");
    const a = inbox();
    const b = inbox();
    await r.subscribe(c1, a.listener);
    await r.subscribe(c2, b.listener);
    server.signal("SIGKILL");
    await server.restart();
    await using admin = await connect(url);
    // Publish until the subscriber connection is back and subscribed again.
    const deadline = Date.now() + 5_000;
    while (a.messages.length === 0 || b.messages.length === 0) {
      if (Date.now() > deadline) throw new Error("never resubscribed");
      if (a.messages.length === 0) await admin.send("PUBLISH", c1, "back");
      if (b.messages.length === 0) await admin.send("PUBLISH", c2, "back");
      await sleep(20);
    }
    assert.deepEqual(a.messages[0], ["back", c1]);
    assert.deepEqual(b.messages[0], ["back", c2]);
    assert.equal(await numsub(admin, c1), 1);
    assert.equal(await numsub(admin, c2), 1);
    assert.deepEqual(await pubsubClients(admin), [2]);
    // Subscribing and publishing still work after the reconnect.
    const c3 = chan("restart3");
    const d = inbox();
    await r.subscribe(c3, d.listener);
    assert.equal(await r.send("PUBLISH", c3, "new"), 1);
    assert.deepEqual(await d.waitFor(1), [["new", c3]]);
  });
}

test("subscribe() while the server is down completes once it is back", async () => {
  const own = await startRedis();
  try {
    await using r = await connect({
      url: own.url,
      reconnect: { minDelay: 10, maxDelay: 50 },
    });
    const c1 = chan("down1");
    const a = inbox();
    await r.subscribe(c1, a.listener); // the subscriber connection is open
    await own.stop();
    const deadline = Date.now() + 5_000;
    while (r.status !== "reconnecting") {
      if (Date.now() > deadline) throw new Error("did not notice");
      await sleep(5);
    }
    await sleep(50); // the subscriber connection noticed too
    const c2 = chan("down2");
    const b = inbox();
    let subscribed = false;
    const pending = r.subscribe(c2, b.listener).then((u) => {
      subscribed = true;
      return u;
    });
    await sleep(100);
    assert.equal(subscribed, false, "subscribed while the server was down");
    await own.start();
    await pending;
    await using admin = await connect(own.url);
    assert.equal(await numsub(admin, c1), 1);
    assert.equal(await numsub(admin, c2), 1);
    await admin.send("PUBLISH", c1, "one");
    await admin.send("PUBLISH", c2, "two");
    assert.deepEqual(await a.waitFor(1), [["one", c1]]);
    assert.deepEqual(await b.waitFor(1), [["two", c2]]);
  } finally {
    await own.stop();
  }
});

test("subscribe then unsubscribe at once, then subscribe again: ends subscribed", async () => {
  await using r = await connect(url);
  await using admin = await connect(url);
  const c = chan("race");
  const first = inbox();
  const un = r.subscribe(c, first.listener);
  const gone = un.then((u) => u());
  const second = inbox();
  const again = r.subscribe(c, second.listener);
  await gone;
  await again;
  assert.equal(await numsub(admin, c), 1);
  await admin.send("PUBLISH", c, "hi");
  assert.deepEqual(await second.waitFor(1), [["hi", c]]);
  assert.equal(first.messages.length, 0);
});

test("a listener that throws is reported to the logger; the others still get the message", async () => {
  const warnings: string[] = [];
  await using r = await connect({
    url,
    logger: { warn: (m) => warnings.push(m) },
  });
  const c = chan("throws");
  const ok = inbox();
  await r.subscribe(c, () => {
    throw new Error("listener bug");
  });
  await r.subscribe(c, ok.listener);
  await r.send("PUBLISH", c, "m");
  assert.deepEqual(await ok.waitFor(1), [["m", c]]);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /listener bug/);
  assert.ok(warnings[0].includes(c));
});

test("a subscribe that failed leaves no dead listener behind", async () => {
  const own = await startRedis();
  try {
    await using r = await connect({
      url: own.url,
      reconnect: { minDelay: 10, maxDelay: 50 },
    });
    await own.stop();
    const c = chan("failed");
    const lost = inbox();
    await assert.rejects(r.subscribe(c, lost.listener));
    assert.equal(r.subscriptions, 0, "the failed listener is still there");
    await own.start();
    const deadline = Date.now() + 5_000;
    while (r.status !== "ready") {
      if (Date.now() > deadline) throw new Error("did not reconnect");
      await sleep(10);
    }
    const box = inbox();
    await r.subscribe(c, box.listener);
    await using admin = await connect(own.url);
    assert.equal(await numsub(admin, c), 1, "the second subscribe was lost");
    await admin.send("PUBLISH", c, "now");
    assert.deepEqual(await box.waitFor(1), [["now", c]]);
    assert.equal(lost.messages.length, 0);
  } finally {
    await own.stop();
  }
});

test("close() with live subscriptions closes the subscriber connection too", async () => {
  const r = await connect(url);
  await using admin = await connect(url);
  const c = chan("close");
  const box = inbox();
  const unsubscribe = await r.subscribe(c, box.listener);
  await r.subscribe(chan("close2"), box.listener);
  assert.deepEqual(await pubsubClients(admin), [2]);
  await r.close();
  assert.equal(r.status, "closed");
  assert.equal(r.subscriptions, 0);
  await assert.rejects(r.subscribe(c, box.listener), TypeError);
  await unsubscribe(); // after close: nothing to do, and no error
  // The server sees the subscriber connection go.
  const deadline = Date.now() + 3_000;
  while ((await pubsubClients(admin)).length > 0) {
    if (Date.now() > deadline) throw new Error("subscriber still connected");
    await sleep(10);
  }
  assert.equal(await admin.send("PUBLISH", c, "after close"), 0);
  // The Deno sanitizers fail this test if a socket or timer is left.
});

test("a client that never subscribed opens no subscriber connection", async () => {
  await using r = await connect(url);
  await using admin = await connect(url);
  await r.send("PING");
  assert.deepEqual(await pubsubClients(admin), []);
  const clients = String(await admin.send("CLIENT", "LIST"))
    .split("\n").filter((l) => l.trim() !== "");
  assert.equal(clients.length, 2);
});

test("onResubscribed is called once Redis has the channel again after a cut; the listener gets no message for it", async () => {
  await using r = await connect({
    url,
    reconnect: { minDelay: 10, maxDelay: 100 },
  });
  await using admin = await connect(url);
  const c = chan("onresub");
  const a = inbox();
  const calls: number[] = [];
  let removedCalls = 0;
  await r.subscribe(c, a.listener, {
    onResubscribed: async () => calls.push(await numsub(admin, c)),
  });
  // Another subscription of the channel, removed before the cut: not told.
  const off = await r.subscribe(c, () => {}, {
    onResubscribed: () => removedCalls++,
  });
  await off();
  await assert.rejects(
    r.subscribe(c, a.listener, { onResubscribed: 1 as never }),
    TypeError,
  );
  await admin.send("CLIENT", "KILL", "TYPE", "pubsub");
  const deadline = Date.now() + 3_000;
  while (calls.length === 0 && Date.now() < deadline) await sleep(5);
  await sleep(100); // no second call
  assert.deepEqual(calls, [1], "called once, with the channel subscribed");
  assert.equal(removedCalls, 0);
  assert.deepEqual(a.messages, [], "no message for the resubscribe");
  await admin.send("PUBLISH", c, "after");
  assert.deepEqual(await a.waitFor(1), [["after", c]]);
});

test("sharded: SSUBSCRIBE gets SPUBLISH and not PUBLISH, a classic subscription of the same name the reverse; both subscribed again after a cut; bad options are TypeErrors", async () => {
  await using r = await connect({
    url,
    reconnect: { minDelay: 10, maxDelay: 100 },
  });
  await using admin = await connect(url);
  const c = chan("sharded");
  const sharded = inbox();
  const classic = inbox();
  let resubscribed = 0;
  const offSharded = await r.subscribe(c, sharded.listener, {
    sharded: true,
    onResubscribed: () => resubscribed++,
    onServerUnsubscribed: () => assert.fail("standalone: never ended"),
  });
  const offClassic = await r.subscribe(c, classic.listener);
  assert.equal(r.subscriptions, 2);
  assert.deepEqual(await admin.send("PUBSUB", "SHARDNUMSUB", c), [c, 1]);
  await admin.send("SPUBLISH", c, "s1");
  await admin.send("PUBLISH", c, "p1");
  assert.deepEqual(await sharded.waitFor(1), [["s1", c]]);
  assert.deepEqual(await classic.waitFor(1), [["p1", c]]);
  for (
    const bad of [
      { sharded: 1 },
      { sharded: "yes" },
      { sharded: true, onServerUnsubscribed: "x" },
    ]
  ) {
    await assert.rejects(
      r.subscribe(chan("bad"), () => {}, bad as never),
      TypeError,
    );
  }
  assert.equal(r.subscriptions, 2, "a refused subscribe left nothing");
  await admin.send("CLIENT", "KILL", "TYPE", "pubsub");
  const deadline = Date.now() + 3_000;
  while (resubscribed === 0 && Date.now() < deadline) await sleep(5);
  assert.equal(resubscribed, 1);
  assert.deepEqual(await admin.send("PUBSUB", "SHARDNUMSUB", c), [c, 1]);
  await admin.send("SPUBLISH", c, "s2");
  await admin.send("PUBLISH", c, "p2");
  assert.deepEqual((await sharded.waitFor(2))[1], ["s2", c]);
  assert.deepEqual((await classic.waitFor(2))[1], ["p2", c]);
  // Unsubscribing one (SUNSUBSCRIBE, matched as its reply) keeps the other.
  await offSharded();
  assert.deepEqual(await admin.send("PUBSUB", "SHARDNUMSUB", c), [c, 0]);
  await admin.send("PUBLISH", c, "p3");
  assert.deepEqual((await classic.waitFor(3))[2], ["p3", c]);
  assert.equal(sharded.messages.length, 2);
  await offClassic();
  assert.equal(r.subscriptions, 0);
});

teardown(() => server.stop());
