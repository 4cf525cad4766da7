import assert from "node:assert/strict";
import { connect, Lock } from "../mod.ts";
import { sharedRedis } from "../testing/redis.ts";
import { runArgs, spawn } from "../testing/proc.ts";
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
    // A counter ahead of the server's clock counts up by one per token (a
    // token is max(counter + 1, clock in µs)): it ends at start + count.
    await r.send("SET", `${p}lock:{mutex}:fence`, String(2 ** 52));
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
      2 ** 52 + procs * cycles,
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

/**
 * The fenced store of the `fence` JSDoc: a write carries a token and is
 * refused when it is lower than the highest token seen. Every write is
 * logged. KEYS[1] the store (a hash); ARGV[1] token, ARGV[2] value.
 */
const FENCED_STORE = `
local seen = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0')
local ok = tonumber(ARGV[1]) >= seen
redis.call('RPUSH', KEYS[1] .. ':log', ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. (ok and 'accepted' or 'refused'))
if not ok then return 0 end
redis.call('HSET', KEYS[1], 'fence', ARGV[1], 'value', ARGV[2])
return 1`;

for (const how of ["idle", "busy"]) {
  test(
    `fencing end to end: a holder stopped (SIGSTOP, ${how}) past its ttl resumes and writes with its old token; the fenced store refuses it, and its signal has aborted with LockLostError before the write`,
    async () => {
      await using r = await connect(url);
      const p = prefix();
      const ttl = 300;
      const sha = await r.send<string>("SCRIPT", "LOAD", FENCED_STORE);
      const store = `${p}store`;
      const a = startWorker(["fenced", url, p, String(ttl), "A", sha, how]);
      try {
        await until(
          "A to write under the lock",
          10_000,
          async () => await r.send("EXISTS", `${p}fenced-ready`) === 1,
        );
        a.kill("SIGSTOP");
        const aToken = Number(await r.send("GET", `${p}fenced-ready`));
        // A cannot renew while stopped: its key expires within its ttl.
        const b = new Lock(r, "fenced", { prefix: p, ttl: 10_000, id: "B" });
        const t0 = performance.now();
        assert.equal(await b.acquire({ wait: 5_000 }), true);
        const took = performance.now() - t0;
        assert.ok(took <= ttl + 150, `B acquired after ${took} ms`);
        assert.ok(b.fence! > aToken, "B has a newer token");
        assert.equal(
          await r.send("EVALSHA", sha, 1, store, b.fence!, "B:write"),
          1,
          "B's write is accepted",
        );
        await r.send("SET", `${p}go`, "1");
        a.kill("SIGCONT");
        const result = await output(a);
        assert.equal(result.token, aToken);
        assert.equal(result.first, 1, "A's write under its lease was accepted");
        assert.equal(result.second, 0, "A's write after the pause is refused");
        assert.deepEqual(
          result.before,
          {
            aborted: true,
            held: false,
            fence: null,
            abortedBeforeResume: result.before.abortedBeforeResume,
          },
          "A's signal had aborted before its write",
        );
        assert.equal(result.after.aborted, true);
        assert.equal(result.after.lostError, true, "a LockLostError");
        assert.ok(
          ["expired", "held-by-other"].includes(result.after.reason),
          `reason ${result.after.reason}`,
        );
        assert.match(result.release, /^LockNotHeldError/);
        assert.deepEqual(await r.send("HGETALL", store), [
          "fence",
          String(b.fence),
          "value",
          "B:write",
        ]);
        assert.deepEqual(await r.send("LRANGE", `${store}:log`, 0, -1), [
          `${aToken} A:first accepted`,
          `${b.fence} B:write accepted`,
          `${aToken} A:second refused`,
        ]);
        assert.equal(await b.owner(), "B", "A's release left B's lock alone");
        await b.release();
        console.log(
          `  ${how}: A's signal aborted ${
            result.before.abortedBeforeResume
              ? "when its timers fired on resume"
              : "on the synchronous check just before the write"
          } (reason ${result.after.reason})`,
        );
      } finally {
        a.kill("SIGCONT");
        a.kill("SIGKILL");
        await a.exited;
      }
    },
    { timeout: 30_000 },
  );
}

teardown(async () => {
  await server.stop();
});
