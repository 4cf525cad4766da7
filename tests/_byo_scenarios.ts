/**
 * The bring-your-own-client scenarios, shared by tests/byo_*_test.ts (one
 * file per kind of client): respite's `Lock`, `withLock` and `cached` on an
 * app's own client, against a real redis-server:
 *
 * - multi-process exclusivity: 4 processes × 100 read-modify-write cycles
 *   under one lock, through the adapted client: an exact shared counter and
 *   no overlapping holds;
 * - wake-up handoff: a waiter on a second client of the kind acquires within
 *   a generous bound of the holder's release (the lease is 10 s: a waiter
 *   that was not woken would sleep out the holder's lease);
 * - one computation per stampede: 4 processes × 50 concurrent calls of a
 *   cold cached function;
 * - errors as respite's classes: an error reply is a `ReplyError` with its
 *   code, NOSCRIPT falls back to EVAL (and warns once), a closed client is a
 *   `ConnectionError`.
 *
 * Each prints its figures (the README's "Bring your own client" table).
 */
import assert from "node:assert/strict";
import {
  connect,
  ConnectionError,
  Lock,
  type Logger,
  ReplyError,
  withLock,
} from "../mod.ts";
import {
  type ClientKind,
  openClient,
  unavailable,
} from "../testing/byo_clients.ts";
import { type Proc, runArgs, spawn } from "../testing/proc.ts";
import { sharedRedis } from "../testing/redis.ts";
import { runtime, sleep, teardown, test } from "./_harness.ts";

const worker = new URL("./fixtures/byo_worker.ts", import.meta.url).pathname;

/** What the scenarios measured for one kind of client. */
function report(kind: ClientKind, what: string): void {
  console.log(`  byo ${kind} (${runtime}): ${what}`);
}

/** Registers the scenarios for `kind`. */
export async function byoScenarios(kind: ClientKind): Promise<void> {
  const skip = unavailable(kind);
  const server = skip ? null : await sharedRedis();
  const url = server?.url ?? "";
  let n = 0;
  const ns = (s: string) =>
    `respite:test:byo:${kind}:${Date.now()}:${n++}:${s}:`;

  async function fleet(
    count: number,
    cfg: (i: number) => Record<string, unknown>,
    space: string,
  ): Promise<unknown[]> {
    await using control = await connect(url);
    const procs: Proc[] = Array.from({ length: count }, (_, i) => {
      const [cmd, args] = runArgs(worker, [
        JSON.stringify({ kind, url, ns: space, ...cfg(i) }),
      ]);
      return spawn(cmd, args);
    });
    try {
      const deadline = Date.now() + 60_000;
      while (Number(await control.send("GET", `${space}ready`) ?? 0) < count) {
        if (Date.now() > deadline) {
          const errs = await Promise.all(procs.map((p) => p.stderr()));
          throw new Error(`workers did not start: ${errs.join("\n")}`);
        }
        await sleep(20); // the test waits for processes to start
      }
      await control.send("PUBLISH", `${space}go`, "go");
      const out: unknown[] = [];
      for (const p of procs) {
        const code = await p.exited;
        const text = await p.stdout();
        if (code !== 0) {
          throw new Error(`worker exited ${code}: ${await p.stderr()}`);
        }
        out.push(JSON.parse(text.trim().split("\n").pop()!));
      }
      return out;
    } finally {
      for (const p of procs) p.kill("SIGKILL");
      await Promise.all(procs.map((p) => p.exited));
    }
  }

  test(
    `byo ${kind}: 4 processes × 100 cycles under one Lock: exact counter, no overlapping holds`,
    async () => {
      const space = ns("mutex");
      const procs = 4, cycles = 100;
      const outs = await fleet(
        procs,
        (i) => ({ mode: "mutex", cycles, id: `w${i}` }),
        space,
      ) as Array<{ id: string; intervals: Array<[number, number]> }>;
      await using r = await connect(url);
      const counter = Number(await r.send("GET", `${space}counter`));
      assert.equal(counter, procs * cycles);
      const all = outs.flatMap((o) =>
        o.intervals.map(([s, e]) => ({ s, e, id: o.id }))
      );
      all.sort((a, b) => a.s - b.s);
      assert.equal(new Set(all.map((x) => x.id)).size, procs);
      for (let i = 1; i < all.length; i++) {
        assert.ok(
          all[i - 1].e <= all[i].s,
          `hold of ${all[i - 1].id} overlaps ${all[i].id}`,
        );
      }
      report(
        kind,
        `exclusivity counter ${counter}/${
          procs * cycles
        } (4 processes × 100 cycles)`,
      );
    },
    { skip, timeout: 120_000 },
  );

  test(
    `byo ${kind}: a waiter on another client acquires right after the release (woken, not sleeping out the 10 s lease)`,
    async () => {
      const a = await openClient(kind, url);
      const b = await openClient(kind, url);
      try {
        const p = ns("handoff");
        const rounds = 20;
        const took: number[] = [];
        for (let i = 0; i < rounds; i++) {
          const holder = new Lock(a.redis, "h", {
            prefix: p,
            ttl: 10_000,
            logger: null,
          });
          assert.equal(await holder.acquire({ wait: 0 }), true);
          const waiter = new Lock(b.redis, "h", {
            prefix: p,
            ttl: 10_000,
            logger: null,
          });
          const got = waiter.acquire({ wait: 20_000 });
          await sleep(30); // the waiter has tried, subscribed and sleeps
          const released = performance.now();
          await holder.release();
          assert.equal(await got, true);
          took.push(performance.now() - released);
          await waiter.release();
        }
        took.sort((x, y) => x - y);
        const median = took[rounds >> 1], max = took[rounds - 1];
        assert.ok(max < 1_000, `slowest handoff ${max.toFixed(1)} ms`);
        report(
          kind,
          `handoff release→acquire median ${median.toFixed(1)} ms, max ${
            max.toFixed(1)
          } ms (${rounds} rounds, lease 10 s)`,
        );
      } finally {
        await a.close();
        await b.close();
      }
    },
    { skip, timeout: 60_000 },
  );

  test(
    `byo ${kind}: 4 processes × 50 concurrent calls of a cold cached function: 1 computation`,
    async () => {
      const space = ns("stampede");
      const outs = await fleet(
        4,
        () => ({ mode: "stampede", callers: 50, computeMs: 300 }),
        space,
      ) as Array<
        { results: Array<{ ok: boolean; value: string; ms: number }> }
      >;
      await using r = await connect(url);
      const computations = Number(await r.send("GET", `${space}computations`));
      const all = outs.flatMap((o) => o.results);
      assert.equal(all.length, 200);
      const values = new Set(
        all.map((x) => x.ok ? x.value : `error ${x.value}`),
      );
      assert.equal(values.size, 1, `one value for all: ${[...values]}`);
      assert.equal(computations, 1);
      const slowest = Math.max(...all.map((x) => x.ms));
      assert.ok(slowest < 3_000, `slowest caller ${slowest.toFixed(0)} ms`);
      report(
        kind,
        `stampede ${computations} computation for 200 calls in 4 processes (slowest ${
          slowest.toFixed(0)
        } ms, compute 300 ms)`,
      );
      await r.send("DEL", `${space}k`);
    },
    { skip, timeout: 120_000 },
  );

  test(
    `byo ${kind}: errors are respite's: ReplyError with its code, NOSCRIPT falls back to EVAL (one warning), a closed client is a ConnectionError`,
    async () => {
      const c = await openClient(kind, url);
      let closed = false;
      try {
        await using r = await connect(url);
        const p = ns("errors");
        const warnings: string[] = [];
        const logger: Logger = { warn: (m: string) => warnings.push(m) };
        // A lock key of the wrong type: SET NX finds it taken; GET of it
        // (owner()) is a WRONGTYPE error reply.
        await r.send("HSET", `${p}lock:{wrong}`, "f", "v");
        const wrong = new Lock(c.redis, "wrong", { prefix: p, logger });
        assert.equal(await wrong.acquire({ wait: 0 }), false);
        await assert.rejects(
          () => wrong.owner(),
          (err: unknown) =>
            err instanceof ReplyError && err.code === "WRONGTYPE",
        );
        // NOSCRIPT: the script cache flushed between two acquisitions.
        const lock = new Lock(c.redis, "noscript", { prefix: p, logger });
        assert.equal(await lock.acquire({ wait: 0 }), true);
        await lock.release();
        await r.send("SCRIPT", "FLUSH");
        assert.equal(await lock.acquire({ wait: 0 }), true);
        await lock.release();
        assert.deepEqual(
          warnings.filter((w) => w.endsWith("not cached.")),
          ["ACQUIRE_SCRIPT not cached.", "UNLOCK_SCRIPT not cached."],
        );
        // withLock on the same client runs the function under the lock.
        const run = withLock(async () => await Promise.resolve("ran"), {
          redis: c.redis,
          name: "wl",
          prefix: p,
          logger,
        });
        assert.equal(await run(), "ran");
        await c.close();
        closed = true;
        await assert.rejects(
          () =>
            new Lock(c.redis, "after", { prefix: p, logger }).acquire({
              wait: 0,
            }),
          (err: unknown) => err instanceof ConnectionError,
        );
      } finally {
        if (!closed) await c.close();
      }
    },
    { skip, timeout: 30_000 },
  );

  teardown(async () => {
    await server?.stop();
  });
}
