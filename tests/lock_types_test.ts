/**
 * withLock's types, checked by `deno check` (a type error fails the suite,
 * and so does a `@ts-expect-error` with no error under it): inside fn,
 * `this.fence` is a number where fencing is on (the default, or
 * `fencing: true`), `number | null` with `fencing: false` or a boolean known
 * only at run time; `onBusy: "skip"` adds `undefined` to the result. The
 * run-time half checks the same values against a server.
 */
import assert from "node:assert/strict";
import { connect, withLock } from "../mod.ts";
import { startRedis } from "../testing/redis.ts";
import { teardown, test } from "./_harness.ts";

const server = await startRedis();
const redis = await connect(server.url);
let n = 0;
const uniq = () => `types:${Date.now()}:${n++}`;

test("this.fence is a number when fencing is on; number | null when off or unknown", async () => {
  const byDefault = withLock(function () {
    const fence: number = this.fence; // no `!`
    return fence;
  }, { redis, name: uniq() });
  const explicit = withLock(function (x: number) {
    const fence: number = this.fence;
    return fence + x;
  }, { redis, name: (x) => `${uniq()}:${x}`, fencing: true });
  const off = withLock(function () {
    // @ts-expect-error: without fencing there is no token
    const fence: number = this.fence;
    return fence;
  }, { redis, name: uniq(), fencing: false });
  const flag = Math.random() < 2; // a boolean known at run time only
  const unknown = withLock(function () {
    // @ts-expect-error: it may be off
    const fence: number = this.fence;
    const maybe: number | null = this.fence;
    return maybe ?? fence;
  }, { redis, name: uniq(), fencing: flag });
  const a: number = await byDefault();
  const b: number = await explicit(1);
  assert.ok(a > 0 && b > 1);
  assert.equal(await off(), null);
  assert.equal(typeof await unknown(), "number");
});

test('onBusy: "skip" resolves to R | undefined; the default to R', async () => {
  const skip = withLock(() => "ran", {
    redis,
    name: uniq(),
    wait: 0,
    onBusy: "skip",
  });
  const r: string | undefined = await skip();
  // @ts-expect-error: it may be undefined
  const s: string = await skip();
  const strict = withLock(() => "ran", { redis, name: uniq() });
  const t: string = await strict();
  assert.deepEqual([r, s, t], ["ran", "ran", "ran"]);
});

teardown(async () => {
  await redis.close();
  await server.stop();
});
