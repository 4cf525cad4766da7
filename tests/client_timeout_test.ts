/**
 * Per-command timeouts, the client-wide `commandTimeout`, and AbortSignal: a
 * timed-out or aborted command rejects at once, and its late reply is read
 * and dropped in order, so the commands after it get their own replies.
 *
 * The stall is one Redis decides: a BLPOP on an empty list holds the
 * connection, so everything behind it waits for its reply.
 */
import assert from "node:assert/strict";
import { connect, type Connector, TimeoutError } from "../mod.ts";
import { runtimeConnector } from "../lib/transport/mod.ts";
import { sharedRedis } from "../testing/redis.ts";
import { sleep, teardown, test } from "./_harness.ts";

const server = await sharedRedis();
const url = server.url;
let n = 0;
const key = (s: string) => `respite:test:timeout:${Date.now()}:${n++}:${s}`;

/** Generous upper slack for timers on a busy, shared 2-core machine. */
const SLACK = 400;

test("a per-command timeout rejects with TimeoutError at its time; the late reply is dropped", async () => {
  await using r = await connect({ url, blocking: true }); // BLPOP stalls it
  await using other = await connect(url);
  const k = key("list");
  const t0 = performance.now();
  const blpop = r.command(["BLPOP", k, "2"], { timeout: 100 });
  // Issued after the BLPOP, so queued behind it on the server.
  const echo = r.send("ECHO", "after");
  const incr = r.send("INCR", key("n"));
  await assert.rejects(blpop, (e: unknown) => {
    assert.ok(e instanceof TimeoutError, `got ${e}`);
    assert.equal(e.name, "TimeoutError");
    assert.match(e.message, /BLPOP timed out after 100 ms/);
    return true;
  });
  const elapsed = performance.now() - t0;
  assert.ok(elapsed >= 99, `rejected early, after ${elapsed.toFixed(1)} ms`);
  assert.ok(elapsed < 100 + SLACK, `rejected late: ${elapsed.toFixed(1)} ms`);
  // Now the server answers the BLPOP (with a value that must go nowhere).
  assert.equal(await other.send("RPUSH", k, "late-value"), 1);
  assert.equal(await echo, "after");
  assert.equal(await incr, 1);
  assert.equal(await other.send("LLEN", k), 0, "the BLPOP did take it");
  // And the connection stays in order afterwards.
  const more = await Promise.all([
    r.send("ECHO", "x"),
    r.send("GET", key("missing")),
    r.send("INCR", key("n2")),
    r.send("ECHO", "y"),
  ]);
  assert.deepEqual(more, ["x", null, 1, "y"]);
});

test("a timeout on a command queued behind a stalled one", async () => {
  await using r = await connect({ url, blocking: true }); // BLPOP stalls it
  const stall = r.send("BLPOP", key("stall"), "0.4"); // no timeout: waits
  const t0 = performance.now();
  const get = r.command(["ECHO", "quick"], { timeout: 100 });
  await assert.rejects(get, TimeoutError);
  const elapsed = performance.now() - t0;
  assert.ok(elapsed >= 99 && elapsed < 100 + SLACK, `${elapsed} ms`);
  assert.equal(await stall, null, "the BLPOP got its own (nil) reply");
  assert.equal(await r.send("ECHO", "next"), "next");
});

test("commandTimeout applies to every command; a per-command timeout overrides it", async () => {
  await using r = await connect({ url, commandTimeout: 150, blocking: true });
  // Fast commands are not affected.
  const many = await Promise.all(
    Array.from({ length: 200 }, (_, i) => r.send("ECHO", `e${i}`)),
  );
  many.forEach((m, i) => assert.equal(m, `e${i}`));
  const t0 = performance.now();
  await assert.rejects(
    r.send("BLPOP", key("a"), "0.5"),
    (e: unknown) => e instanceof TimeoutError && /after 150 ms/.test(e.message),
  );
  const elapsed = performance.now() - t0;
  assert.ok(elapsed >= 149 && elapsed < 150 + SLACK, `${elapsed} ms`);
  // The late nil reply of that BLPOP arrives 0.5 s after it was sent;
  // this command waits behind it, with a timeout long enough to see it.
  assert.equal(
    await r.command(["ECHO", "behind"], { timeout: 5_000 }),
    "behind",
  );
  // A longer per-command timeout lets a 300 ms BLPOP finish.
  const t1 = performance.now();
  assert.equal(
    await r.command(["BLPOP", key("b"), "0.3"], { timeout: 3_000 }),
    null,
  );
  assert.ok(performance.now() - t1 >= 250, "BLPOP returned too early");
  // A shorter one fires first.
  await assert.rejects(
    r.command(["BLPOP", key("c"), "0.3"], { timeout: 50 }),
    (e: unknown) => e instanceof TimeoutError && /after 50 ms/.test(e.message),
  );
  assert.equal(await r.command(["ECHO", "z"], { timeout: 3_000 }), "z");
});

test("several timeouts on one stalled connection fire in order, each near its time", async () => {
  await using r = await connect({ url, blocking: true }); // BLPOP stalls it
  const stall = r.send("BLPOP", key("stall"), "0.6");
  const t0 = performance.now();
  const fired: [number, number][] = [];
  const timeouts = [300, 50, 200, 100];
  await Promise.all(
    timeouts.map((ms) =>
      r.command(["ECHO", String(ms)], { timeout: ms }).then(
        () => assert.fail(`${ms} ms command resolved`),
        (e) => {
          assert.ok(e instanceof TimeoutError);
          fired.push([ms, performance.now() - t0]);
        },
      )
    ),
  );
  assert.deepEqual(fired.map(([ms]) => ms), [50, 100, 200, 300]);
  for (const [ms, at] of fired) {
    assert.ok(at >= ms - 1 && at < ms + SLACK, `${ms} ms fired at ${at}`);
  }
  assert.equal(await stall, null);
  assert.equal(await r.send("ECHO", "ok"), "ok");
});

test("an AbortSignal aborted mid-wait rejects at once with its reason", async () => {
  await using r = await connect({ url, blocking: true }); // BLPOP stalls it
  await using other = await connect(url);
  const k = key("list");
  const ac = new AbortController();
  const reason = new Error("caller gave up");
  const t0 = performance.now();
  const blpop = r.command(["BLPOP", k, "2"], { signal: ac.signal });
  const echo = r.send("ECHO", "after-abort");
  await sleep(50);
  let at = 0;
  const rejected = assert.rejects(blpop, (e: unknown) => {
    at = performance.now() - t0;
    assert.equal(e, reason, "rejects with the signal's reason itself");
    return true;
  });
  ac.abort(reason);
  await rejected;
  assert.ok(at < 50 + SLACK, `abort took effect after ${at} ms`);
  await other.send("RPUSH", k, "for-the-aborted-blpop");
  assert.equal(await echo, "after-abort");
  assert.equal(await other.send("LLEN", k), 0);
  // Aborting later again does nothing to a settled command.
  ac.abort(new Error("twice"));
  assert.equal(await r.send("ECHO", "still-fine"), "still-fine");
});

test("abort() without a reason rejects with an AbortError", async () => {
  await using r = await connect({ url, blocking: true }); // BLPOP stalls it
  const ac = new AbortController();
  const p = r.command(["BLPOP", key("x"), "0.3"], { signal: ac.signal });
  ac.abort();
  await assert.rejects(p, (e: unknown) => {
    assert.equal((e as Error).name, "AbortError");
    return true;
  });
  assert.equal(await r.send("ECHO", "ok"), "ok");
});

test("an already-aborted signal rejects without sending the command", async () => {
  await using r = await connect({ url, blocking: true }); // BLPOP stalls it
  const counter = key("counter");
  const reason = new Error("aborted before");
  const signal = AbortSignal.abort(reason);
  await assert.rejects(
    r.command(["INCR", counter], { signal }),
    (e: unknown) => e === reason,
  );
  await assert.rejects(
    r.command(["SET", counter, "x"], { signal, timeout: 50 }),
    (e: unknown) => e === reason,
  );
  assert.equal(await r.send("GET", counter), null, "the INCR was sent");
  // Bad arguments are still reported as such.
  await assert.rejects(
    r.command(["SET", counter, {} as unknown as string], { signal }),
    TypeError,
  );
});

test("a command's abort listener is removed from the signal once it settles", async () => {
  await using r = await connect({ url, blocking: true }); // BLPOP stalls it
  const ac = new AbortController();
  // Count listeners on this one signal instance.
  let live = 0;
  const signal = ac.signal;
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  signal.addEventListener = ((...a: Parameters<typeof add>) => {
    live++;
    add(...a);
  }) as typeof signal.addEventListener;
  signal.removeEventListener = ((...a: Parameters<typeof remove>) => {
    live--;
    remove(...a);
  }) as typeof signal.removeEventListener;
  // One long-lived signal shared by many commands that complete normally,
  // fail, or time out.
  const replies = await Promise.all(
    Array.from(
      { length: 100 },
      (_, i) => r.command(["ECHO", `s${i}`], { signal }),
    ),
  );
  replies.forEach((m, i) => assert.equal(m, `s${i}`));
  await assert.rejects(r.command(["NOT_A_COMMAND"], { signal }));
  await assert.rejects(
    r.command(["BLPOP", key("t"), "0.2"], { signal, timeout: 20 }),
    TimeoutError,
  );
  assert.equal(live, 0, `${live} abort listeners left on the signal`);
  ac.abort(new Error("late"));
  assert.equal(await r.send("ECHO", "ok"), "ok");
});

test("1,000 interleaved aborted, timed-out and normal commands all get the right outcome", async () => {
  await using r = await connect({ url, blocking: true }); // BLPOP stalls it
  const c = key("counter");
  // Hold the connection so the later aborts and timeouts hit commands that
  // were already written and wait for their replies.
  const stall = r.send("BLPOP", key("stall"), "0.3");
  const lateAbort = new AbortController();
  type Outcome = { kind: string; i: number; p: Promise<unknown> };
  const outcomes: Outcome[] = [];
  const reasons = new Map<number, Error>();
  let sentIncrs = 0;
  for (let i = 0; i < 1_000; i++) {
    const incr = i % 2 === 0;
    const args = incr ? ["INCR", c] : ["ECHO", `m${i}`];
    let kind: string;
    let p: Promise<unknown>;
    switch (i % 5) {
      case 0: { // already aborted: never sent
        const reason = new Error(`pre ${i}`);
        reasons.set(i, reason);
        p = r.command(args, { signal: AbortSignal.abort(reason) });
        kind = "pre";
        break;
      }
      case 1: { // aborted in the same tick, after it was queued: never sent
        const ac = new AbortController();
        p = r.command(args, { signal: ac.signal });
        const reason = new Error(`sync ${i}`);
        reasons.set(i, reason);
        ac.abort(reason);
        kind = "sync";
        break;
      }
      case 2: // aborted while waiting behind the BLPOP
        p = r.command(args, { signal: lateAbort.signal });
        kind = "late";
        if (incr) sentIncrs++;
        break;
      case 3: // times out while waiting behind the BLPOP
        p = r.command(args, { timeout: 60 });
        kind = "timeout";
        if (incr) sentIncrs++;
        break;
      default:
        p = r.command(args, { signal: new AbortController().signal });
        kind = "normal";
        if (incr) sentIncrs++;
    }
    // Attach handlers now: these reject before the loop below gets to them.
    p.catch(() => {});
    outcomes.push({ kind, i, p });
  }
  const lateReason = new Error("late abort");
  await sleep(30);
  lateAbort.abort(lateReason);
  assert.equal(await stall, null);
  let lastIncr = 0;
  for (const { kind, i, p } of outcomes) {
    const settled = await p.then(
      (value) => ({ ok: true, value }),
      (error) => ({ ok: false, value: error }),
    );
    switch (kind) {
      case "pre":
      case "sync":
        assert.equal(settled.ok, false, `#${i} ${kind} resolved`);
        assert.equal(settled.value, reasons.get(i), `#${i} ${kind}`);
        break;
      case "late":
        assert.equal(settled.ok, false, `#${i} late resolved`);
        assert.equal(settled.value, lateReason, `#${i} late`);
        break;
      case "timeout":
        assert.equal(settled.ok, false, `#${i} timeout resolved`);
        assert.ok(settled.value instanceof TimeoutError, `#${i} timeout`);
        break;
      default:
        assert.equal(settled.ok, true, `#${i} normal: ${settled.value}`);
        if (i % 2 === 0) {
          assert.equal(typeof settled.value, "number");
          assert.ok(
            (settled.value as number) > lastIncr,
            `#${i}: INCR replies out of order`,
          );
          lastIncr = settled.value as number;
        } else {
          assert.equal(settled.value, `m${i}`, `#${i} got another's reply`);
        }
    }
  }
  // Every INCR that was written ran once; the ones aborted before they were
  // written never did.
  assert.equal(Number(await r.send("GET", c)), sentIncrs);
  assert.equal(await r.send("ECHO", "end"), "end");
  await r.send("DEL", c);
});

test("commands aborted or timed out before they are written are never sent; the others get their own replies", async () => {
  // Writes wait for `gate` while it is set: a long write the rest queue behind.
  const real = await runtimeConnector();
  let gate: Promise<void> | null = null;
  const gated: Connector = async (o, h) => {
    const t = await real(o, h);
    return {
      releasesWrites: t.releasesWrites,
      write: (bytes) =>
        gate === null ? t.write(bytes) : gate.then(() => t.write(bytes)),
      close: () => t.close(),
    };
  };
  await using r = await connect({ url, connector: gated });
  type Entry = {
    i: number;
    p: Promise<unknown>;
    reason?: Error;
    timedOut?: boolean;
  };
  /** Checks that aborted entries reject with their reason, and the others
   * get their own reply: INCRs of `c` count 1, 2, 3... only if no aborted
   * INCR ran. Returns how many INCRs were kept. */
  const check = async (entries: Entry[], c: string): Promise<number> => {
    let incrs = 0;
    for (const { i, p, reason, timedOut } of entries) {
      const settled = await p.then(
        (value) => ({ ok: true, value }),
        (error) => ({ ok: false, value: error }),
      );
      if (timedOut) {
        assert.ok(settled.value instanceof TimeoutError, `#${i} timeout`);
      } else if (reason !== undefined) {
        assert.equal(settled.ok, false, `#${i} aborted, resolved`);
        assert.equal(settled.value, reason, `#${i}`);
      } else if (i % 2 === 0) {
        assert.equal(settled.value, ++incrs, `#${i}: INCR skipped a count`);
      } else {
        assert.equal(settled.value, `m${i}`, `#${i} got another's reply`);
      }
    }
    assert.equal(Number(await r.send("GET", c)), incrs);
    return incrs;
  };
  // 1. All in one tick: runs of aborted and kept commands (the first and the
  // last aborted), some aborted at once, some after the rest were queued.
  const c1 = key("counter1");
  const entries: Entry[] = [];
  const later: { ac: AbortController; e: Entry }[] = [];
  const n = 600;
  for (let i = 0; i < n; i++) {
    const ac = new AbortController();
    const e: Entry = {
      i,
      p: r.command(i % 2 === 0 ? ["INCR", c1] : ["ECHO", `m${i}`], {
        signal: ac.signal,
      }),
    };
    e.p.catch(() => {});
    entries.push(e);
    if (i % 3 === 0 || i === n - 1) {
      e.reason = new Error(`abort ${i}`);
      ac.abort(e.reason);
    } else if (i % 7 === 1) {
      e.reason = new Error(`abort ${i} later`);
      later.push({ ac, e });
    }
  }
  for (const { ac, e } of later) ac.abort(e.reason);
  assert.ok(await check(entries, c1) > 100);
  // 2. Queued behind a write that does not finish: some time out, some are
  // aborted, over several ticks, before that write ends.
  const c2 = key("counter2");
  const held = Promise.withResolvers<void>();
  gate = held.promise;
  const first = r.send("ECHO", "first");
  await sleep(0);
  const queued: Entry[] = [];
  const acs: { ac: AbortController; e: Entry }[] = [];
  for (let i = 0; i < 200; i++) {
    const ac = new AbortController();
    const timedOut = i % 5 === 2;
    const e: Entry = {
      i,
      timedOut,
      p: r.command(i % 2 === 0 ? ["INCR", c2] : ["ECHO", `m${i}`], {
        signal: ac.signal,
        timeout: timedOut ? 20 : undefined,
      }),
    };
    e.p.catch(() => {});
    queued.push(e);
    if (i % 5 === 0) acs.push({ ac, e });
    if (i % 10 === 9) await sleep(0);
  }
  await sleep(60); // the 20 ms timeouts fire
  for (const { ac, e } of acs) {
    e.reason = new Error(`abort ${e.i}`);
    ac.abort(e.reason);
  }
  gate = null;
  held.resolve();
  assert.equal(await first, "first");
  assert.equal(await check(queued, c2), 60);
  assert.equal(await r.send("ECHO", "end"), "end");
  await r.send("DEL", c1, c2);
});

teardown(() => server.stop());
