import assert from "node:assert/strict";
import { teardown, test } from "./_harness.ts";
import { migrateSlot, startCluster } from "../testing/cluster.ts";
import { keySlot } from "../lib/cluster/slot.ts";
import { ReplyError } from "../lib/errors.ts";

const cluster = await startCluster();

test("the fixture's cluster is ok, covers every slot, and agrees with keySlot", async () => {
  assert.equal(cluster.nodes.length, 3);
  for (const n of cluster.nodes) {
    assert.equal(
      Number(await n.client.command(["CLUSTER", "KEYSLOT", "{orders}.x"])),
      keySlot("orders"),
    );
  }
  const owner = await cluster.ownerOf(keySlot("foo"));
  assert.equal(await owner.client.command(["SET", "foo", "1"]), "OK");
  const other = cluster.nodes.find((n) => n !== owner)!;
  await assert.rejects(
    other.client.command(["GET", "foo"]),
    (e: unknown) => e instanceof ReplyError && e.code === "MOVED",
  );
});

test("migrateSlot moves a slot's keys, with hooks while half migrated", async () => {
  const slot = keySlot("mig");
  const source = await cluster.ownerOf(slot);
  const target = cluster.nodes.find((n) => n !== source)!;
  for (let i = 0; i < 5; i++) {
    await source.client.command(["SET", `{mig}.${i}`, String(i)]);
  }
  let asked = 0;
  await migrateSlot(cluster, slot, target, {
    async afterKey(key) {
      // The moved key is gone from the source: ASK to the target.
      await assert.rejects(
        source.client.command(["GET", key]),
        (e: unknown) => e instanceof ReplyError && e.code === "ASK",
      );
      asked++;
    },
  });
  assert.equal(asked, 5);
  assert.equal(await cluster.ownerOf(slot), target);
  assert.equal(await target.client.command(["GET", "{mig}.3"]), "3");
});

teardown(() => cluster.stop());
