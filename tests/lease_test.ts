/**
 * The lease arithmetic of `lib/lock/lease.ts` on a fake clock: no Redis, no real
 * time. Each test drives `Lease` the way `Holding` does (send, then answered
 * and confirm when the reply comes) with the replies in the order under test.
 */
import assert from "node:assert/strict";
import { Lease, leaseMargin } from "../lib/lock/lease.ts";
import { test } from "./_harness.ts";

/** A clock the test moves by hand. */
function fakeClock(start = 1_000): { now: () => number; t: number } {
  const c = { t: start, now: () => c.t };
  return c;
}

test("the drift margin is ttl/100 + 2 ms, at most half the lease", () => {
  assert.equal(leaseMargin(30_000), 302);
  assert.equal(leaseMargin(1_000), 12);
  assert.equal(leaseMargin(100), 3);
  // Short leases: half the lease, so they stay acquirable.
  assert.equal(leaseMargin(4), 2);
  assert.equal(leaseMargin(2), 1);
  assert.equal(leaseMargin(1), 0.5);
});

test("an acquisition's lease is counted from its send time, less the margin, not from its reply", () => {
  const c = fakeClock(1_000);
  const sentAt = c.t;
  c.t += 400; // the reply took 400 ms
  const lease = Lease.acquired(1_000, sentAt, c.now)!;
  assert.ok(lease !== null);
  assert.equal(lease.expiresAt, 1_000 + 1_000 - 12);
  assert.equal(lease.left(), 1_000 - 12 - 400);
});

test("an acquisition whose reply came at or after its lease's end is no lease", () => {
  const c = fakeClock(0);
  c.t = 1_000 - 12 - 1;
  assert.ok(Lease.acquired(1_000, 0, c.now) !== null);
  c.t = 1_000 - 12;
  assert.equal(Lease.acquired(1_000, 0, c.now), null);
  c.t = 5_000;
  assert.equal(Lease.acquired(1_000, 0, c.now), null);
  // A 2 ms lease: margin 1 ms, so a reply within 1 ms still holds.
  c.t = 0.5;
  assert.ok(Lease.acquired(2, 0, c.now) !== null);
});

test("a renewal's bound is counted from its send time, not its reply time", () => {
  const c = fakeClock(0);
  const lease = Lease.acquired(1_000, 0, c.now)!;
  c.t = 300;
  const sent = lease.send(1_000);
  assert.equal(sent.lowered, false);
  c.t = 700; // a slow reply
  lease.answered(sent);
  assert.equal(lease.confirm(sent, false), "applied");
  assert.equal(lease.expiresAt, 300 + 1_000 - 12);
  assert.equal(lease.pending.size, 0);
});

test("a renewal racing extend(): out-of-order replies neither lower the bound nor revert the ttl", () => {
  const c = fakeClock(0);
  const lease = Lease.acquired(1_000, 0, c.now)!;
  c.t = 100;
  const renewal = lease.send(lease.ttl); // carries 1_000
  c.t = 110;
  const extend = lease.send(60_000);
  // extend()'s reply first.
  c.t = 120;
  lease.answered(extend);
  assert.equal(lease.confirm(extend, true), "applied");
  assert.equal(lease.ttl, 60_000);
  // The renewal was sent first on the same connection, so it ran first: the
  // extension is the key's last PEXPIRE.
  const bound = 110 + 60_000 - leaseMargin(60_000);
  assert.equal(lease.expiresAt, bound);
  assert.equal(lease.pending.size, 0);
  // Then the renewal's reply, with its shorter ttl: changes nothing.
  c.t = 130;
  lease.answered(renewal);
  assert.equal(lease.confirm(renewal, false), "stale");
  assert.equal(lease.ttl, 60_000);
  assert.equal(lease.expiresAt, bound);
  // The next renewal carries the extended ttl.
  c.t = 200;
  const next = lease.send(lease.ttl);
  assert.equal(next.ttl, 60_000);
  lease.answered(next);
  assert.equal(lease.confirm(next, false), "applied");
  assert.equal(lease.expiresAt, 200 + 60_000 - leaseMargin(60_000));
});

test("an older extend() replying last does not revert the ttl set by a newer one", () => {
  const c = fakeClock(0);
  const lease = Lease.acquired(1_000, 0, c.now)!;
  c.t = 10;
  const first = lease.send(60_000);
  c.t = 20;
  const second = lease.send(5_000);
  c.t = 30;
  lease.answered(second);
  assert.equal(lease.confirm(second, true), "applied");
  assert.equal(lease.ttl, 5_000);
  assert.equal(lease.expiresAt, 20 + 5_000 - leaseMargin(5_000));
  lease.answered(first);
  assert.equal(lease.confirm(first, true), "stale");
  assert.equal(lease.ttl, 5_000);
  assert.equal(lease.expiresAt, 20 + 5_000 - leaseMargin(5_000));
});

test("a renewal sent after extend() and answered first keeps its own (shorter) expiry; the extend's ttl still applies to later renewals", () => {
  const c = fakeClock(0);
  const lease = Lease.acquired(1_000, 0, c.now)!;
  c.t = 100;
  const extend = lease.send(60_000);
  c.t = 110;
  const renewal = lease.send(lease.ttl); // still 1_000: extend() unconfirmed
  c.t = 120;
  lease.answered(renewal);
  assert.equal(lease.confirm(renewal, false), "applied");
  // It ran last: the key's expiry is its 1_000 ms.
  assert.equal(lease.expiresAt, 110 + 1_000 - 12);
  lease.answered(extend);
  assert.equal(lease.confirm(extend, true), "stale");
  assert.equal(
    lease.expiresAt,
    110 + 1_000 - 12,
    "not raised by the older reply",
  );
  assert.equal(
    lease.ttl,
    60_000,
    "but extend()'s ttl is what renewals use now",
  );
});

test("a shorter PEXPIRE lowers the bound as soon as it is sent, and a success sent before it stays capped by it", () => {
  const c = fakeClock(0);
  const lease = Lease.acquired(30_000, 0, c.now)!;
  c.t = 10;
  const long = lease.send(30_000);
  assert.equal(long.lowered, false);
  c.t = 20;
  const short = lease.send(100);
  assert.equal(short.lowered, true);
  assert.equal(lease.expiresAt, 20 + 100 - 3);
  // The long one's success does not lift the bound past the short one out.
  c.t = 30;
  lease.answered(long);
  assert.equal(lease.confirm(long, false), "applied");
  assert.equal(lease.expiresAt, 20 + 100 - 3);
});

test("a PEXPIRE without an answer stays pending (it may still run) until a later one succeeds", () => {
  const c = fakeClock(0);
  const lease = Lease.acquired(30_000, 0, c.now)!;
  c.t = 10;
  const lost = lease.send(200); // its reply never comes (connection lost)
  assert.equal(lost.lowered, true);
  assert.equal(lease.expiresAt, 10 + 200 - 4);
  assert.equal(lease.pending.size, 1);
  c.t = 50;
  const later = lease.send(30_000);
  lease.answered(later);
  assert.equal(lease.confirm(later, false), "applied");
  // Sent after the lost one, so it ran after it: the lost one is forgotten.
  assert.equal(lease.pending.size, 0);
  assert.equal(lease.expiresAt, 50 + 30_000 - 302);
});

test("a renewal reply after the lease ran out locally does not resurrect it", () => {
  const c = fakeClock(0);
  const lease = Lease.acquired(1_000, 0, c.now)!;
  c.t = 600;
  const renewal = lease.send(1_000);
  c.t = 1_000 - 12; // the first lease's bound passed while the reply was out
  assert.equal(lease.ranOut(), true);
  lease.answered(renewal);
  assert.equal(lease.confirm(renewal, false), "ran-out");
  assert.equal(lease.expiresAt, 1_000 - 12);
  assert.equal(lease.ranOut(), true);
  // Nor once it ended (lost or released).
  lease.ended = true;
  assert.equal(lease.ranOut(), false);
  assert.equal(lease.confirm(renewal, false), "ended");
  assert.equal(lease.expiresAt, 1_000 - 12);
});

test("after the lease ended, a PEXPIRE sent does not move the bound", () => {
  const c = fakeClock(0);
  const lease = Lease.acquired(30_000, 0, c.now)!;
  lease.ended = true;
  const sent = lease.send(100);
  assert.equal(sent.lowered, false);
  assert.equal(lease.expiresAt, 30_000 - 302);
});

test("a success clears the renewal error; a stale or late one does not", () => {
  const c = fakeClock(0);
  const lease = Lease.acquired(1_000, 0, c.now)!;
  const err = new Error("no answer");
  lease.renewError = err;
  const a = lease.send(1_000);
  const b = lease.send(1_000);
  lease.answered(b);
  assert.equal(lease.confirm(b, false), "applied");
  assert.equal(lease.renewError, undefined);
  lease.renewError = err;
  lease.answered(a);
  assert.equal(lease.confirm(a, false), "stale");
  assert.equal(lease.renewError, err);
});

test("renewal timing: a third into the lease left, at most ttl/3; a timeout of half what is left; a retry within it", () => {
  const c = fakeClock(0);
  const lease = Lease.acquired(3_000, 0, c.now)!;
  assert.equal(lease.firstRenewal(), 1_000);
  // expiresAt = 3_000 - 32 = 2_968
  assert.equal(lease.nextRenewal(), 2_968 / 3); // min(ttl, left) / 3
  c.t = 1_468; // left 1_500
  assert.equal(lease.nextRenewal(), 500);
  assert.equal(lease.renewTimeout(), 750);
  assert.equal(lease.retryDelay(), 300); // min(ttl / 10, left / 2)
  c.t = 2_868; // left 100
  assert.equal(lease.retryDelay(), 50);
  assert.equal(lease.renewTimeout(), 50);
  c.t = 2_967.5; // left 0.5
  assert.equal(lease.renewTimeout(), 1); // at least 1 ms
  c.t = 2_968;
  assert.equal(lease.retryDelay(), null);
  assert.equal(lease.ranOut(), true);
});

test("release waits for Redis for the lease left, at least min(ttl, 1 s)", () => {
  const c = fakeClock(0);
  const lease = Lease.acquired(30_000, 0, c.now)!;
  assert.equal(lease.releaseWait(), 30_000 - 302);
  c.t = 29_500;
  assert.equal(lease.releaseWait(), 1_000);
  const short = Lease.acquired(200, 29_500, c.now)!;
  c.t = 29_650;
  assert.equal(short.releaseWait(), 200);
});
