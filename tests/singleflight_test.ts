/** `Singleflight`: one shared call per key while in flight. */
import assert from "node:assert/strict";
import { Singleflight } from "../mod.ts";
import { sleep, test } from "./_harness.ts";

test("concurrent calls share one run per key; the key is free once it settles", async () => {
  const group = new Singleflight<string>();
  let runs = 0;
  const work = async (v: string) => {
    runs++;
    await sleep(20);
    return v;
  };
  const results = await Promise.all([
    ...Array.from({ length: 500 }, () => group.run("a", () => work("A"))),
    ...Array.from({ length: 500 }, () => group.run("b", () => work("B"))),
  ]);
  assert.equal(runs, 2);
  assert.deepEqual(new Set(results), new Set(["A", "B"]));
  assert.equal(group.size, 0);
  assert.equal(await group.run("a", () => work("A2")), "A2");
  assert.equal(runs, 3);
});

test("a rejection reaches every caller; a synchronous throw too", async () => {
  const group = new Singleflight<number>();
  const fail = () => sleep(5).then(() => Promise.reject(new Error("boom")));
  const calls = Array.from({ length: 10 }, () => group.run("k", fail));
  for (const c of calls) await assert.rejects(c, /boom/);
  await assert.rejects(
    group.run("k", () => {
      throw new Error("sync");
    }),
    /sync/,
  );
  assert.equal(group.has("k"), false);
});

test("a caller's signal stops only its own wait", async () => {
  const group = new Singleflight<string>();
  let runs = 0;
  const ac = new AbortController();
  const work = async () => {
    runs++;
    await sleep(50);
    return "done";
  };
  const leaving = group.run("k", work, { signal: ac.signal });
  const staying = group.run("k", work);
  ac.abort(new Error("left"));
  await assert.rejects(leaving, /left/);
  assert.equal(await staying, "done");
  assert.equal(runs, 1);
  // Every caller aborted: the work still completes, and is not reported.
  const ac2 = new AbortController();
  const alone = group.run("k2", work, { signal: ac2.signal });
  ac2.abort();
  await assert.rejects(alone);
  await sleep(70);
  assert.equal(runs, 2);
  await assert.rejects(
    group.run("k3", work, { signal: AbortSignal.abort() }),
  );
});

test("forget: the next caller starts a new run, waiting callers keep theirs", async () => {
  const group = new Singleflight<number>();
  let n = 0;
  const work = () => sleep(20).then(() => ++n);
  const first = group.run("k", work);
  group.forget("k");
  const second = group.run("k", work);
  assert.deepEqual(await Promise.all([first, second]), [1, 2]);
});
