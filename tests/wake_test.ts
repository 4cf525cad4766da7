/** `Wake`, the primitive under lock and cache waiters, against a real Redis. */
import assert from "node:assert/strict";
import { connect } from "../mod.ts";
import { Wake } from "../lib/wake.ts";
import { startRedis } from "../testing/redis.ts";
import { sleep, teardown, test, within } from "./_harness.ts";

const server = await startRedis();
let n = 0;
const channel = () => `respite:test:wake:${Date.now()}:${n++}`;

test("a message ends every sleeper's sleep at once and is counted", async () => {
  await using r = await connect(server.url);
  await using pub = await connect(server.url);
  const ch = channel();
  const w = new Wake(r, ch);
  await w.subscribed();
  const seq = w.seq;
  const t0 = performance.now();
  const sleeps = [w.sleep(30_000), w.sleep(30_000)];
  assert.equal(await pub.send("PUBLISH", ch, "released"), 1);
  await within(Promise.all(sleeps), 5_000, "the woken sleeps");
  assert.ok(performance.now() - t0 < 5_000);
  assert.equal(w.seq, seq + 1);
  assert.equal(w.last, "released");
  w.close();
});

test("a sleep without a message ends after its time; an abort rejects with the reason", async () => {
  await using r = await connect(server.url);
  const w = new Wake(r, channel());
  await w.subscribed();
  const t0 = performance.now();
  await w.sleep(50);
  const took = performance.now() - t0;
  assert.ok(took >= 45, `slept ${took} ms`);
  const reason = new Error("stop");
  const ac = new AbortController();
  const p = w.sleep(30_000, ac.signal);
  ac.abort(reason);
  await assert.rejects(p, (e) => e === reason);
  await assert.rejects(
    w.sleep(10, AbortSignal.abort(reason)),
    (e) => e === reason,
  );
  assert.equal(w.seq, 0);
  w.close();
});

test("subscribed() with a timeout rejects with a TimeoutError when Redis does not confirm", async () => {
  await using r = await connect(server.url);
  await using admin = await connect(server.url);
  // A paused server answers nothing (CLIENT PAUSE ALL holds the SUBSCRIBE).
  await admin.send("CLIENT", "PAUSE", "300", "ALL");
  const w = new Wake(r, channel());
  await assert.rejects(w.subscribed(50), { name: "TimeoutError" });
  await sleep(300);
  await within(w.subscribed(), 5_000, "the subscription after the pause");
  w.close();
});

test("after close() the subscription is gone: a publish reaches nobody", async () => {
  await using r = await connect(server.url);
  await using pub = await connect(server.url);
  const ch = channel();
  const w = new Wake(r, ch);
  await w.subscribed();
  w.close();
  for (let i = 0; i < 100; i++) {
    if (await pub.send("PUBLISH", ch, "x") === 0) break;
    await sleep(10);
  }
  assert.equal(await pub.send("PUBLISH", ch, "x"), 0);
  await assert.rejects(w.subscribed(), /closed/);
});

teardown(() => server.stop());
