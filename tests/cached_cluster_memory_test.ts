/**
 * `cached`'s memory tier on a Redis Cluster: one tracking connection per
 * master (lib/cache/cluster_tracking.ts). Cluster clients on their own
 * connections stand in for separate processes; raw writes go to the owning
 * master on a plain (not cluster-aware) connection.
 */
import assert from "node:assert/strict";
import { cached } from "../mod.ts";
import { type ClusterClient, connectCluster } from "../lib/cluster/client.ts";
import { keySlot } from "../lib/cluster/slot.ts";
import { trackerFor } from "../lib/cache/tracking.ts";
import type { ClusterTracker } from "../lib/cache/cluster_tracking.ts";
import {
  type ClusterNode,
  migrateSlot,
  startCluster,
} from "../testing/cluster.ts";
import { commandCalls } from "../testing/redis.ts";
import { preloadScripts } from "../testing/scripts.ts";
import { sleep, teardown, test } from "./_harness.ts";

const cluster = await startCluster();
/** The three masters that own every slot at the start. */
const masters = [...cluster.nodes];
// A fourth node, joined with no slots (so no master of the slot map): the
// reshard test moves a slot onto it. Redis 7 would turn it into a replica
// when it gives its last slot back, without this flag.
const fresh = await cluster.addNode({
  args: ["--cluster-allow-replica-migration", "no"],
});
for (const n of cluster.nodes) await preloadScripts(n.client);
let n = 0;
const key = (s: string) => `test:cmem:${Date.now()}:${n++}:${s}`;

const open = (): Promise<ClusterClient> =>
  connectCluster(cluster.urls[0], { reconnect: { minDelay: 200 } });

type V = { id: string; at: number };
const make = (
  redis: ClusterClient,
  k: string,
  runs = { n: 0 },
  namespace?: string,
) =>
  cached((id: string): V => ({ id, at: ++runs.n }), {
    redis,
    key: (id) => `${k}:${id}`,
    ttl: 60_000,
    memory: { maxEntries: 1_000 },
    ...(namespace === undefined ? {} : { namespace }),
  });
type Fn = ReturnType<typeof make>;

/** Tracking connections on `node` (CLIENT LIST name=respite-tracking). */
async function trackingIds(node: ClusterNode): Promise<string[]> {
  const list = await node.client.send<string>("CLIENT", "LIST");
  return [...list.matchAll(/^id=(\d+) .*name=respite-tracking /gm)].map((m) =>
    m[1]
  );
}

const ownerOfKey = (k: string) => cluster.ownerOf(keySlot(k));

/** An id whose entry lives on `node`. */
async function idOn(f: Fn, node: ClusterNode, from = 0): Promise<string> {
  for (let i = from;; i++) {
    if ((await ownerOfKey(f.redisKey(String(i)))) === node) return String(i);
  }
}

/** Calls `f(id)` until its tier holds `entries` entries. */
async function remembered(f: Fn, ids: string[]): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    for (const id of ids) await f(id);
    const before = f.memory?.hits ?? 0;
    for (const id of ids) await f(id);
    if ((f.memory?.hits ?? 0) - before === ids.length) return;
    assert.ok(Date.now() < deadline, "never served from memory");
    await sleep(5);
  }
}

/** A valid stored entry holding `value` (made by a tier-less function). */
async function storedOf(redis: ClusterClient, value: V): Promise<string> {
  const tmp = cached((): V => value, {
    redis,
    key: key("tmp"),
    ttl: 60_000,
  });
  await tmp.set([], value);
  return await redis.send<string>("GET", tmp.redisKey());
}

/** Polls until `f(id)` no longer gives `old`; from then on it never does. */
async function gone(f: Fn, id: string, old: number, what: string) {
  const t0 = Date.now();
  while ((await f(id)).at === old) {
    assert.ok(Date.now() - t0 < 5_000, `${what}: old value still served`);
    await sleep(1);
  }
  for (let i = 0; i < 20; i++) {
    assert.notEqual((await f(id)).at, old, `${what}: old value came back`);
  }
}

async function callsOnEveryNode(): Promise<number> {
  let sum = 0;
  for (const node of cluster.nodes) {
    const m = await commandCalls(node.client);
    for (const c of ["get", "mget", "evalsha", "eval", "set"]) {
      sum += m.get(c) ?? 0;
    }
  }
  return sum;
}

test("cluster: one tracking connection per master; memory hits on entries of every master cost no I/O", async () => {
  await using redis = await open();
  const k = key("hit");
  const runs = { n: 0 };
  const f = make(redis, k, runs);
  const ids: string[] = [];
  for (const node of masters) ids.push(await idOn(f, node));
  const before = await Promise.all(masters.map(trackingIds));
  await remembered(f, ids);
  assert.equal(f.memory?.entries, 3);
  const after = await Promise.all(masters.map(trackingIds));
  for (let i = 0; i < masters.length; i++) {
    assert.equal(after[i].length - before[i].length, 1, "one per master");
  }
  const tracker = trackerFor(redis, "respite:") as ClusterTracker;
  assert.equal(tracker.masters.length, 3);
  const calls = await callsOnEveryNode();
  const hits = f.memory!.hits;
  for (let i = 0; i < 1_000; i++) await f(ids[i % 3]);
  assert.equal(await callsOnEveryNode(), calls, "no command on any master");
  assert.equal(f.memory!.hits, hits + 1_000);
  assert.equal(runs.n, 3);
  // A caller's mutation reaches no other caller.
  (await f(ids[0])).at = -5;
  assert.notEqual((await f(ids[0])).at, -5);
  // With a namespace: the generation token is kept too (free of I/O).
  const g = make(redis, key("ns"), { n: 0 }, key("space"));
  await remembered(g, ["1", "2"]);
  const calls2 = await callsOnEveryNode();
  for (let i = 0; i < 200; i++) await g(String(i % 2 + 1));
  assert.equal(await callsOnEveryNode(), calls2, "no command (namespace)");
  // Closing the client closes every tracking connection.
  await redis.close();
  const deadline = Date.now() + 5_000;
  for (let i = 0; i < masters.length; i++) {
    while ((await trackingIds(masters[i])).length > before[i].length) {
      assert.ok(Date.now() < deadline, "tracking connections left open");
      await sleep(20);
    }
  }
});

test("cluster coherence: a write through respite elsewhere, a raw SET and a raw DEL on the owning master each drop the entry from another client's tier, on every master", async () => {
  await using a = await open();
  await using b = await open();
  await using c = await open();
  const k = key("coherent");
  const fa = make(a, k);
  const fb = make(b, k);
  const fc = make(c, k);
  for (const node of masters) {
    const id = await idOn(fa, node);
    for (const how of ["set", "SET", "DEL"] as const) {
      await remembered(fb, [id]);
      await remembered(fc, [id]);
      const old = (await fb(id)).at;
      assert.equal((await fc(id)).at, old);
      const next = 1_000_000 + n++;
      if (how === "set") await fa.set([id], { id, at: next });
      else if (how === "SET") {
        const stored = await storedOf(a, { id, at: next });
        await node.client.send("SET", fa.redisKey(id), stored, "PX", 60_000);
      } else await node.client.send("DEL", fa.redisKey(id));
      await gone(fb, id, old, `${how} on ${node.port}`);
      await gone(fc, id, old, `${how} on ${node.port}`);
      if (how !== "DEL") assert.equal((await fb(id)).at, next);
    }
  }
});

test("cluster invalidateAll(): the generation key on another master than the entries; another client's tier drops them", async () => {
  await using a = await open();
  await using b = await open();
  const k = key("all");
  let ns = "";
  for (let i = 0;; i++) {
    ns = `${k}:ns${i}`;
    const genOwner = await ownerOfKey(`respite:cache:{${ns}}:gen`);
    if (genOwner !== masters[0]) break;
  }
  const fa = make(a, k, { n: 0 }, ns);
  const fb = make(b, k, { n: 0 }, ns);
  const genOwner = await ownerOfKey(`respite:cache:{${ns}}:gen`);
  const id = await idOn(fb, masters[0]);
  const other = await idOn(
    fb,
    masters.find((x) => x !== masters[0] && x !== genOwner)!,
  );
  assert.notEqual(await ownerOfKey(fb.redisKey(id)), genOwner);
  await remembered(fb, [id, other]);
  const old = (await fb(id)).at;
  const oldOther = (await fb(other)).at;
  const calls = await callsOnEveryNode();
  await fb(id);
  assert.equal(await callsOnEveryNode(), calls, "served from memory");
  await fa.invalidateAll();
  await gone(fb, id, old, "invalidateAll (entry)");
  await gone(fb, other, oldOther, "invalidateAll (other)");
  // And from outside respite: a DEL of the token on its master.
  await remembered(fb, [id]);
  const now = (await fb(id)).at;
  await genOwner.client.send("DEL", `respite:cache:{${ns}}:gen`);
  await gone(fb, id, now, "DEL of the token");
});

test("cluster outage: one master's tracking connection killed (CLIENT KILL), then writes there: no old value served; the tier is bypassed until it is back, then serves again", async () => {
  await using b = await open();
  const k = key("outage");
  const fb = make(b, k);
  const node = masters[1];
  const id = await idOn(fb, node);
  const elsewhere = await idOn(fb, masters[2]);
  await remembered(fb, [id, elsewhere]);
  const old = (await fb(id)).at;
  const oldElsewhere = (await fb(elsewhere)).at;
  const ids = await trackingIds(node);
  assert.equal(ids.length, 1, "this client's tracking connection there");
  for (const i of ids) await node.client.send("CLIENT", "KILL", "ID", i);
  await sleep(50); // the loss is seen (EOF); reconnecting takes 200 ms
  const stored = await storedOf(b, { id, at: -1 });
  await node.client.send("SET", fb.redisKey(id), stored, "PX", 60_000);
  // Neither write reached a tracking connection of b on that master.
  assert.equal((await fb(id)).at, -1);
  // The whole tier is bypassed, not only that master's entries: nothing
  // is served from memory while one connection is down.
  const hits = fb.memory!.hits;
  assert.equal((await fb(elsewhere)).at, oldElsewhere);
  assert.equal(fb.memory!.hits, hits, "bypassed while one is down");
  assert.equal(fb.memory!.entries, 0, "flushed");
  // Back: used again, and coherent.
  const deadline = Date.now() + 5_000;
  while ((await trackingIds(node)).length === 0) {
    assert.ok(Date.now() < deadline, "the tracking connection came back");
    await sleep(20);
  }
  await remembered(fb, [id, elsewhere]);
  assert.notEqual((await fb(id)).at, old);
  await node.client.send("DEL", fb.redisKey(id));
  await gone(fb, id, -1, "DEL after the reconnect");
});

test("cluster: a slot migrated to another master while its entry is in the tier (MIGRATE/SETSLOT): the migration, and writes on the new owner during and after it, never leave the old value served", async () => {
  await using a = await open();
  await using b = await open();
  const k = key("migrate");
  const fa = make(a, k);
  const fb = make(b, k);
  const id = await idOn(fb, masters[0]);
  const slot = keySlot(fb.redisKey(id));
  const source = masters[0];
  const target = masters[1];
  await remembered(fb, [id]);
  let old = (await fb(id)).at;
  await migrateSlot(cluster, slot, target, {
    async afterKey() {
      // Moved (same value): what b reads now comes by way of ASK from the
      // target.
      for (let i = 0; i < 20; i++) assert.equal((await fb(id)).at, old);
      // A raw write on the target mid-migration (ASKING: it imports).
      const stored = await storedOf(a, { id, at: 5 });
      await target.client.send("ASKING");
      await target.client.send("SET", fb.redisKey(id), stored, "PX", 60_000);
      await gone(fb, id, old, "SET on the importing target");
      old = 5;
    },
  });
  assert.equal(await cluster.ownerOf(slot), target);
  // Migrated: b's map still names the source until it meets MOVED.
  await remembered(fb, [id]);
  assert.equal((await fb(id)).at, old);
  await target.client.send("DEL", fb.redisKey(id));
  await gone(fb, id, old, "DEL on the new owner");
  await remembered(fb, [id]);
  old = (await fb(id)).at;
  await fa.set([id], { id, at: 77 });
  await gone(fb, id, old, "set() through another client");
  assert.equal((await fb(id)).at, 77);
  // And back, so other tests find the slot where it was.
  await migrateSlot(cluster, slot, source);
  await remembered(fb, [id]);
  old = (await fb(id)).at;
  await source.client.send("DEL", fb.redisKey(id));
  await gone(fb, id, old, "DEL on the owner again");
});

test("cluster: a node added and a slot resharded onto it: reads by way of ASK are not kept (it has no tracking connection yet); once it owns the slot it is tracked before the tier serves; a master gone has its connection closed", async () => {
  await using b = await open();
  const k = key("reshard");
  const fb = make(b, k);
  const id = await idOn(fb, masters[2]);
  const source = masters[2];
  const slot = keySlot(fb.redisKey(id));
  await remembered(fb, [id]);
  let old = (await fb(id)).at;
  const tracker = trackerFor(b, "respite:") as ClusterTracker;
  const tracked = (): number => tracker.masters.length;
  assert.equal(tracked(), 3);
  const dropped = fb.memory!.invalidations;
  await migrateSlot(cluster, slot, fresh, {
    async afterKey() {
      // The source's deletion of the migrated key reached b's tier.
      const end = Date.now() + 5_000;
      while (fb.memory!.invalidations === dropped) {
        assert.ok(Date.now() < end, "MIGRATE's deletion not reported");
        await sleep(1);
      }
      assert.equal(fb.memory!.entries, 0);
      // Moved (same value), read by way of ASK from the new node, and not
      // kept: nothing would tell b when it changes there.
      for (let i = 0; i < 20; i++) assert.equal((await fb(id)).at, old);
      assert.equal(fb.memory!.entries, 0, "a read by way of ASK was kept");
      // A raw write there (a DEL would make b compute mid-migration, where
      // its multi-key scripts meet TRYAGAIN until the slot has moved).
      const stored = await storedOf(b, { id, at: 6 });
      await fresh.client.send("ASKING");
      await fresh.client.send("SET", fb.redisKey(id), stored, "PX", 60_000);
      await gone(fb, id, old, "SET on the new node mid-import");
      old = 6;
    },
  });
  // The new node owns the slot: b meets MOVED, then tracks it.
  const deadline = Date.now() + 10_000;
  while (tracked() !== 4 || !tracker.usable()) {
    await fb(id);
    assert.ok(Date.now() < deadline, "the new master is not tracked");
    await sleep(10);
  }
  assert.equal((await trackingIds(fresh)).length, 1);
  await remembered(fb, [id]);
  old = (await fb(id)).at;
  await fresh.client.send("DEL", fb.redisKey(id));
  await gone(fb, id, old, "DEL on the new master");
  // Back to where it was: the new node owns no slot, is no master of the
  // map, and its tracking connection is closed.
  await migrateSlot(cluster, slot, source);
  const until = Date.now() + 10_000;
  while (tracked() !== 3 || !tracker.usable()) {
    await fb(id);
    assert.ok(Date.now() < until, "the gone master is still tracked");
    await sleep(10);
  }
  while ((await trackingIds(fresh)).length !== 0) {
    assert.ok(Date.now() < until, "its tracking connection is still open");
    await sleep(20);
  }
  await remembered(fb, [id]);
  old = (await fb(id)).at;
  await source.client.send("DEL", fb.redisKey(id));
  await gone(fb, id, old, "DEL on the old owner again");
});

teardown(async () => {
  await cluster.stop();
});
