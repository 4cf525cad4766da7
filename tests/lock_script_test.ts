/**
 * Locks in scripts: `withLock(fn, { onBusy: "skip" })` resolves to
 * `undefined` without running `fn` when the lock is held, and without
 * waiting; the default still rejects with LockNotAcquiredError. `keep`
 * leaves the lock to its TTL. `releaseOnSignal`: a real script holding a
 * lock gets SIGINT/SIGTERM, releases, and exits 130/143 (or lets the app's
 * own listener decide).
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { connect, Lock, LockNotAcquiredError, withLock } from "../mod.ts";
import { type Proc, runArgs, spawn } from "../testing/proc.ts";
import { sharedRedis } from "../testing/redis.ts";
import { teardown, test, until } from "./_harness.ts";

const server = await sharedRedis();
const redis = await connect(server.url);
let n = 0;
const prefix = () => `respite-test-lockscript-${Date.now()}-${n++}:`;

test('onBusy: "skip" resolves to undefined without running fn while the lock is held', async () => {
  await using r = await connect(server.url);
  const p = prefix();
  await using held = new Lock(r, "job", { prefix: p });
  assert.equal(await held.acquire({ wait: 0 }), true);
  let ran = 0;
  const job = withLock(() => ++ran, {
    redis: r,
    name: "job",
    prefix: p,
    wait: 0,
    onBusy: "skip",
  });
  const t0 = Date.now();
  assert.equal(await job(), undefined);
  assert.ok(Date.now() - t0 < 1_000);
  assert.equal(ran, 0);
  const strict = withLock(() => ++ran, {
    redis: r,
    name: "job",
    prefix: p,
    wait: 0,
  });
  await assert.rejects(strict(), LockNotAcquiredError);
  await held.release();
  assert.equal(await job(), 1);
  assert.equal(ran, 1);
});

test("onBusy: a bad value is a TypeError naming onBusy", async () => {
  await using r = await connect(server.url);
  assert.throws(
    () =>
      withLock(() => 1, {
        redis: r,
        name: "x",
        onBusy: "wait" as "skip",
      }),
    (err: unknown) => err instanceof TypeError && /onBusy/.test(err.message),
  );
});

test("keep: true leaves the key with its TTL when fn ends, and a second run is skipped", async () => {
  await using r = await connect(server.url);
  const p = prefix();
  let ran = 0;
  const job = withLock(() => ++ran, {
    redis: r,
    name: "nightly",
    prefix: p,
    ttl: 5_000,
    wait: 0,
    onBusy: "skip",
    keep: true,
  });
  assert.equal(await job(), 1);
  const key = new Lock(r, "nightly", { prefix: p }).keys.key;
  const pttl = Number(await r.send("PTTL", key));
  assert.ok(pttl > 3_000 && pttl <= 5_000, `PTTL ${pttl}`);
  assert.equal(await job(), undefined);
  assert.equal(ran, 1);
  await Lock.reset(r, "nightly", { prefix: p });
  assert.equal(await job(), 2);
  await Lock.reset(r, "nightly", { prefix: p });
});

test("Lock.release({ keep: true }) sends nothing and leaves the key; a bad keep is a TypeError", async () => {
  await using r = await connect(server.url);
  const p = prefix();
  const lock = new Lock(r, "k", { prefix: p, ttl: 4_000 });
  assert.equal(await lock.acquire({ wait: 0 }), true);
  await assert.rejects(
    lock.release({ keep: "yes" } as unknown as { keep: boolean }),
    TypeError,
  );
  assert.equal(lock.held, true);
  await lock.release({ keep: true });
  assert.equal(lock.held, false);
  assert.equal(await lock.locked(), true);
  assert.ok(Number(await r.send("PTTL", lock.keys.key)) > 2_000);
  await Lock.reset(r, "k", { prefix: p });
});

// ---------------------------------------------------------------- signals

const WORKER = fileURLToPath(
  new URL("./fixtures/signal_worker.ts", import.meta.url),
);

/** Starts the signal worker; resolves once it holds the lock (or is ready). */
async function signalWorker(
  mode: "hold" | "own" | "released" | "withLock",
): Promise<{ proc: Proc; name: string; key: string }> {
  const name = `signals:${mode}:${Date.now()}:${Math.random()}`;
  const key = new Lock(redis, name).keys.key;
  const [cmd, args] = runArgs(WORKER, [server.url, name, mode]);
  const proc = spawn(cmd, args);
  await until(
    `the ${mode} worker is ready`,
    20_000,
    async () =>
      mode === "released"
        ? await redis.send("EXISTS", `${name}:ready`) === 1
        : await redis.send("EXISTS", key) === 1,
  );
  return { proc, name, key };
}

test("releaseOnSignal: SIGINT and SIGTERM release the lock, then the script exits 130 / 143", async () => {
  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    for (const mode of ["hold", "withLock"] as const) {
      const w = await signalWorker(mode);
      w.proc.kill(signal as "SIGTERM");
      assert.equal(
        await w.proc.exited,
        code,
        `${mode} ${signal}: ${await w.proc.stderr()}`,
      );
      assert.equal(await redis.send("EXISTS", w.key), 0, `${mode}: released`);
    }
  }
});

test("releaseOnSignal with the app's own SIGTERM listener: released, and the app decides the exit", async () => {
  const w = await signalWorker("own");
  w.proc.kill("SIGTERM");
  assert.equal(await w.proc.exited, 0, await w.proc.stderr());
  assert.equal(await w.proc.stdout(), "app-handler\n");
  assert.equal(await redis.send("EXISTS", w.key), 0, "released");
});

test("releaseOnSignal: the listeners go with the holding (after release, SIGTERM ends the script the default way)", async () => {
  const w = await signalWorker("released");
  w.proc.kill("SIGTERM");
  assert.equal(await w.proc.exited, "SIGTERM");
  await redis.send("DEL", `${w.name}:ready`);
});

test("releaseOnSignal must be a boolean", () => {
  assert.throws(
    () => new Lock(redis, "x", { releaseOnSignal: 1 as unknown as boolean }),
    TypeError,
  );
  assert.throws(
    () =>
      withLock(() => 1, {
        redis,
        name: "x",
        releaseOnSignal: "yes" as unknown as boolean,
      }),
    TypeError,
  );
});

teardown(() => redis.close());
