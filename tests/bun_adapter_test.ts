/**
 * Bun's `RedisClient` adapter (lib/adapters/bun.ts) across Bun's own
 * reconnects (Bun only: skipped under Deno, with the reason printed):
 *
 * - a release published while the subscriber connection is down (between
 *   the cut and Bun's reconnect) is lost; the adapter's resubscribe then
 *   tells the waiter to look again, so it does not sleep out the holder's
 *   10 s lease;
 * - after that resubscribe, each message reaches a listener once (Bun would
 *   deliver it twice to a channel subscribed again without unsubscribing);
 * - status: `"ready"` before the first connection and while connected,
 *   `"reconnecting"` after a drop (Bun reconnects on its own), `"closed"`
 *   only after the app's `close()`; the app's own `onclose` is still
 *   called, also one it set after respite adapted the client.
 */
import assert from "node:assert/strict";
import { connect, Lock } from "../mod.ts";
import { RESUBSCRIBED } from "../lib/adapters/common.ts";
import { checkClient } from "../lib/adapters/mod.ts";
import { sharedRedis } from "../testing/redis.ts";
import { isBun, sleep, teardown, test } from "./_harness.ts";

const server = await sharedRedis();
const url = server.url;

interface BunClient {
  connect(): Promise<void>;
  send(cmd: string, args: string[]): Promise<unknown>;
  close(): void;
  readonly connected: boolean;
  onclose: ((error: Error) => void) | null;
}

const g = globalThis as {
  Bun?: { RedisClient: new (url: string) => BunClient };
};
const skip = isBun ? false : "Bun's RedisClient exists only under Bun";

test(
  "Bun RedisClient: a release published while the subscriber is down still wakes the waiter",
  async () => {
    await using control = await connect(url);
    const bun = new g.Bun!.RedisClient(url);
    await bun.connect();
    const name = `respite:test:bun:gap:${Date.now()}`;
    const holder = new Lock(control, name, { ttl: 10_000, autoRenew: false });
    const waiter = new Lock(bun as never, name, {
      ttl: 10_000,
      autoRenew: false,
    });
    try {
      assert.equal(await holder.acquire(), true);
      const waiting = waiter.acquire({ wait: 4_000 });
      await sleep(300); // the waiter subscribed, tried, and sleeps
      await control.send("CLIENT", "KILL", "TYPE", "pubsub");
      // Released at once: before Bun reconnected the subscriber (it takes
      // tens of ms), so the release's message reaches no one.
      const released = performance.now();
      await holder.release();
      assert.equal(await waiting, true, "the waiter was never woken");
      const ms = performance.now() - released;
      console.log(`  woken ${Math.round(ms)} ms after a release in the gap`);
      assert.ok(ms < 1_000, `woken ${Math.round(ms)} ms after the release`);
    } finally {
      await waiter.release().catch(() => {});
      await holder.release().catch(() => {});
      bun.close();
    }
  },
  { skip },
);

test(
  "Bun RedisClient: status is reconnecting after a drop, closed only after close(); the app's onclose is kept",
  async () => {
    await using control = await connect(url);
    const bun = new g.Bun!.RedisClient(url);
    const calls: string[] = [];
    bun.onclose = () => calls.push("first");
    const surface = checkClient(bun);
    try {
      assert.equal(surface.status, "ready", "before the first connection");
      assert.equal(await surface.command(["PING"]), "PONG");
      assert.equal(surface.status, "ready");
      const id = await bun.send("CLIENT", ["ID"]);
      const blocked = assert.rejects(
        surface.command(["BLPOP", `${Date.now()}:none`, "2"]),
        { name: "ConnectionError" },
      );
      await sleep(50);
      await control.send("CLIENT", "KILL", "ID", String(id));
      await blocked;
      assert.equal(bun.connected, false);
      assert.equal(surface.status, "reconnecting", "after a drop");
      const t = performance.now();
      while (!bun.connected && performance.now() - t < 3_000) await sleep(5);
      assert.equal(surface.status, "ready", "after Bun reconnected");
      assert.equal(calls.length, 0, "onclose on a drop");
      // An onclose the app sets after respite adapted the client is kept.
      bun.onclose = () => calls.push("second");
      assert.equal(surface.status, "ready");
      const hook = bun.onclose;
      assert.equal(surface.status, "ready");
      assert.equal(bun.onclose, hook, "wrapped once, not at each read");
      bun.close();
      assert.equal(surface.status, "closed", "after close()");
      assert.deepEqual(calls, ["second"]);
      await assert.rejects(surface.command(["PING"]), {
        name: "ConnectionError",
      });
      assert.equal(surface.status, "closed");
    } finally {
      bun.close();
    }
  },
  { skip },
);

test(
  "Bun RedisClient: after the subscriber reconnected, a message reaches the listener once",
  async () => {
    await using control = await connect(url);
    const bun = new g.Bun!.RedisClient(url);
    await bun.connect();
    const surface = checkClient(bun);
    const channel = `respite:test:bun:once:${Date.now()}`;
    const got: string[] = [];
    const unsubscribe = await surface.subscribe(channel, (m) => got.push(m));
    try {
      await control.send("CLIENT", "KILL", "TYPE", "pubsub");
      const t = performance.now();
      while (!got.includes(RESUBSCRIBED) && performance.now() - t < 3_000) {
        await sleep(5);
      }
      assert.deepEqual(got, [RESUBSCRIBED], "told to look again, once");
      assert.deepEqual(
        await control.send("PUBSUB", "NUMSUB", channel),
        [channel, 1],
      );
      await control.send("PUBLISH", channel, "m1");
      await sleep(100);
      assert.deepEqual(got, [RESUBSCRIBED, "m1"]);
    } finally {
      await unsubscribe();
      bun.close();
    }
  },
  { skip },
);

teardown(async () => {
  await server.stop();
});
