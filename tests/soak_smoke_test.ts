/**
 * The soak (scripts/soak.ts, `deno task soak`) in small: the same
 * orchestrator and worker code, with 2 worker processes of the current
 * runtime for 8 s, a redis-server SIGKILL + restart and a proxy stall, and
 * every invariant the soak checks. A second case bypasses the lock in the
 * workers and shows that the overlap, fence and counter checks then fail.
 */
import assert from "node:assert/strict";
import { formatSoak, runSoak } from "../scripts/soak.ts";
import { runtime, test } from "./_harness.ts";

const workerRuntime = runtime === "bun" ? "bun" : "deno";

test(
  `soak smoke: 2 ${workerRuntime} processes of withLock + cached for 8 s through a fault proxy, a server SIGKILL + restart (appendfsync always) and a 1 s stall: every soak check passes`,
  async () => {
    const r = await runSoak({
      seconds: 8,
      procs: 2,
      runtime: workerRuntime,
      persistence: "aof",
      restartAt: 0.1,
      stallAt: 0.3,
      stallMs: 1_000,
      // Three times the stall: a stall alone loses no lease.
      lockTtl: 3_000,
      lockWait: 2_000,
      cacheLockTtl: 1_000,
      recoveryMs: 4_000,
      log: () => {},
    });
    const text = formatSoak(r);
    assert.deepEqual(r.failures, [], text);
    assert.equal(r.workers.length, 2);
    for (const w of r.workers) {
      assert.ok(w.report !== null, text);
      assert.ok(w.report.lockOk > 0 && w.report.cacheOk > 0, text);
    }
    // Real contention between the processes, and both faults hit traffic.
    assert.ok(r.workers.every((w) => w.handoffs > 0), text);
    assert.ok(r.proxy.restart > 0 && r.proxy.stall > 0, text);
    assert.equal(r.persistence.appendfsync, "always");
    assert.ok(r.checks.some((c) => c.what.startsWith("lock 0: counter")));
  },
  { timeout: 90_000 },
);

test(
  "soak smoke, sabotaged: with the workers' read-modify-write run without the lock, the overlap, fence and counter checks fail",
  async () => {
    const r = await runSoak({
      seconds: 3,
      procs: 2,
      runtime: workerRuntime,
      faults: false,
      locks: 1,
      bypassLock: true,
      log: () => {},
    });
    const text = formatSoak(r);
    const failed = (prefix: string) =>
      r.failures.some((f) => f.startsWith(prefix));
    assert.ok(failed("no unexplained overlapping holds"), text);
    assert.ok(failed("fences increase"), text);
    assert.ok(failed("lock 0: counter in Redis"), text);
    assert.ok(r.overlaps.length > 0 && r.overlaps.every((x) => !x.expected));
    // Nothing else failed: the sabotage is what the checks caught.
    assert.equal(r.failures.length, 3, text);
  },
  { timeout: 60_000 },
);
