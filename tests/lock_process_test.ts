import assert from "node:assert/strict";
import { connect, Lock } from "../mod.ts";
import { sharedRedis } from "./_redis.ts";
import { runArgs, spawn } from "./_proc.ts";
import { sleep, teardown, test } from "./_harness.ts";

const server = await sharedRedis();
const url = server.url;
const worker = new URL("./fixtures/lock_worker.ts", import.meta.url).pathname;
let n = 0;
const prefix = () => `respite-test-lockproc-${Date.now()}-${n++}:`;
const wallClock = () => performance.timeOrigin + performance.now();

function startWorker(args: string[]) {
  const [cmd, argv] = runArgs(worker, args);
  return spawn(cmd, argv);
}

async function output(proc: ReturnType<typeof startWorker>) {
  const code = await proc.exited;
  const out = await proc.stdout();
  if (code !== 0) {
    throw new Error(`worker exited with ${code}: ${out}${await proc.stderr()}`);
  }
  return JSON.parse(out.trim().split("\n").pop()!);
}

async function until(what: string, ms: number, f: () => Promise<boolean>) {
  const deadline = Date.now() + ms;
  while (!await f()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

test(
  "mutual exclusion across 4 processes × 200 read-modify-write cycles: exact count, no overlapping holds, increasing fences",
  async () => {
    await using r = await connect(url);
    const p = prefix();
    const procs = 4;
    const cycles = 200;
    const workers = Array.from(
      { length: procs },
      (_, i) => startWorker(["mutex", url, p, String(cycles), `w${i}`]),
    );
    const results = await Promise.all(workers.map(output));
    // The counter is read, then written 0–5 ms later: any overlap loses updates.
    assert.equal(Number(await r.send("GET", `${p}counter`)), procs * cycles);
    const all: Array<[number, number, number, string]> = [];
    for (const { id, intervals } of results) {
      assert.equal(intervals.length, cycles);
      for (const [s, e, f] of intervals) all.push([s, e, f, id]);
    }
    all.sort((a, b) => a[0] - b[0]);
    const ids = new Set(all.map((x) => x[3]));
    assert.equal(ids.size, procs, "every process got the lock");
    for (let i = 1; i < all.length; i++) {
      const [prevStart, prevEnd, prevFence, prevId] = all[i - 1];
      const [start, , fence, id] = all[i];
      assert.ok(
        prevEnd <= start,
        `hold ${prevId} [${prevStart}, ${prevEnd}] overlaps ${id} from ${start}`,
      );
      assert.ok(fence > prevFence, `fence ${fence} after ${prevFence}`);
    }
    // Each acquisition took exactly one token.
    assert.equal(
      Number(await r.send("GET", `${p}lock:{mutex}:fence`)),
      procs * cycles,
    );
    assert.equal(await r.send("EXISTS", `${p}lock:{mutex}`), 0);
  },
  { timeout: 60_000 },
);

test(
  "a holder killed with SIGKILL: another process acquires within ttl + a small margin",
  async () => {
    await using r = await connect(url);
    const p = prefix();
    const ttl = 1_000;
    const holder = startWorker(["hold", url, p, String(ttl), "doomed"]);
    try {
      await until(
        "the worker to hold the lock",
        10_000,
        async () => await r.send("EXISTS", `${p}acquired-at`) === 1,
      );
      const acquiredAt = Number(await r.send("GET", `${p}acquired-at`));
      holder.kill("SIGKILL");
      await holder.exited;
      const lock = new Lock(r, "held", { prefix: p, ttl: 5_000 });
      assert.equal(await lock.owner(), "doomed");
      assert.equal(await lock.acquire({ wait: 5_000 }), true);
      const took = wallClock() - acquiredAt;
      assert.ok(
        took >= ttl - 50,
        `acquired ${took} ms after the dead holder did`,
      );
      assert.ok(
        took <= ttl + 150,
        `acquired ${took} ms after the dead holder did`,
      );
      await lock.release();
    } finally {
      holder.kill("SIGKILL");
      await holder.exited;
    }
  },
  { timeout: 30_000 },
);

test(
  "lock lost: a holder stopped (SIGSTOP) past its ttl loses it to another process; on SIGCONT its signal aborts and withLock rejects with LockLostError",
  async () => {
    await using r = await connect(url);
    const p = prefix();
    const ttl = 400;
    const stalled = startWorker(["stall", url, p, String(ttl), "sleeper"]);
    try {
      await until(
        "the worker to run under the lock",
        10_000,
        async () => await r.send("EXISTS", `${p}stall-fence`) === 1,
      );
      stalled.kill("SIGSTOP");
      const theirFence = Number(await r.send("GET", `${p}stall-fence`));
      const lock = new Lock(r, "stall", {
        prefix: p,
        ttl: 10_000,
        id: "thief",
      });
      const t0 = performance.now();
      assert.equal(await lock.acquire({ wait: 5_000 }), true);
      const took = performance.now() - t0;
      assert.ok(took <= ttl + 150, `acquired after ${took} ms`);
      assert.ok(lock.fence! > theirFence, "a newer fencing token");
      stalled.kill("SIGCONT");
      const result = await output(stalled);
      assert.deepEqual(result, {
        rejected: "LockLostError",
        lost: true,
        reason: result.reason,
        fence: theirFence,
      });
      assert.ok(
        ["held-by-other", "expired"].includes(result.reason),
        `reason ${result.reason}`,
      );
      // The resumed worker's release did not touch our lock.
      assert.equal(await lock.owner(), "thief");
      assert.ok(await r.send<number>("PTTL", lock.keys.key) > 5_000);
      await lock.release();
    } finally {
      stalled.kill("SIGCONT");
      stalled.kill("SIGKILL");
      await stalled.exited;
    }
  },
  { timeout: 30_000 },
);

teardown(async () => {
  await server.stop();
});
