import assert from "node:assert/strict";
import { test } from "./_harness.ts";
import { crc16, keySlot } from "../lib/cluster/slot.ts";
import { commandKeys } from "../lib/cluster/command_keys.ts";
import { mastersOf, parseShards, parseSlots } from "../lib/cluster/slot_map.ts";
import { lockKeys } from "../lib/keys.ts";

test("crc16 and keySlot match the cluster spec's values", () => {
  assert.equal(crc16(new TextEncoder().encode("123456789")), 0x31c3);
  assert.equal(keySlot("foo"), 12182);
  assert.equal(keySlot("bar"), 5061);
  assert.equal(keySlot("{user1000}.following"), keySlot("user1000"));
  assert.equal(keySlot("foo{}{bar}"), keySlot("foo{}{bar}"));
  assert.notEqual(keySlot("foo{}{bar}"), keySlot("bar"));
  assert.equal(keySlot("foo{{bar}}zap"), keySlot("{bar"));
  assert.equal(keySlot("foo{bar}{zap}"), keySlot("bar"));
  assert.equal(keySlot(new TextEncoder().encode("foo")), 12182);
  assert.equal(keySlot("ключ"), keySlot(new TextEncoder().encode("ключ")));
});

test("respite's lock keys of one name share a slot", () => {
  const k = lockKeys("orders");
  assert.match(k.key, /\{orders\}/);
  assert.equal(keySlot(k.key), keySlot("orders"));
  assert.equal(keySlot(k.fence), keySlot("orders"));
  assert.equal(keySlot(k.wake), keySlot("orders"));
});

test("commandKeys finds the keys respite's commands use", () => {
  assert.deepEqual(commandKeys(["GET", "a"]), ["a"]);
  assert.deepEqual(commandKeys(["set", "a", "1", "PX", 5]), ["a"]);
  assert.deepEqual(commandKeys(["DEL", "a", "b"]), ["a", "b"]);
  assert.deepEqual(commandKeys(["EXISTS", "a"]), ["a"]);
  assert.deepEqual(commandKeys(["PTTL", "a"]), ["a"]);
  assert.deepEqual(commandKeys(["MGET", "a", "b", "c"]), ["a", "b", "c"]);
  assert.deepEqual(commandKeys(["EVAL", "return 1", 0]), []);
  assert.deepEqual(commandKeys(["EVALSHA", "s", "2", "k1", "k2", "v"]), [
    "k1",
    "k2",
  ]);
  assert.throws(() => commandKeys(["EVAL", "x", 3, "k"]), RangeError);
  assert.deepEqual(commandKeys(["SPUBLISH", "ch", "m"]), ["ch"]);
  assert.deepEqual(commandKeys(["SSUBSCRIBE", "a", "b"]), ["a", "b"]);
  assert.deepEqual(commandKeys(["PUBLISH", "ch", "m"]), []);
  assert.deepEqual(commandKeys(["PING"]), []);
});

test("slot maps parse from CLUSTER SHARDS (RESP2 and RESP3) and SLOTS", () => {
  const node = (port: number, role: string) => [
    "id",
    "x",
    "port",
    port,
    "ip",
    "127.0.0.1",
    "endpoint",
    "127.0.0.1",
    "role",
    role,
    "health",
    "online",
  ];
  const shards: unknown[][] = [
    ["slots", [0, 8191], "nodes", [
      node(7000, "master"),
      node(7003, "replica"),
    ]],
    ["slots", [8192, 16383], "nodes", [node(7001, "master")]],
  ];
  // deno-lint-ignore no-explicit-any
  const map = parseShards(shards as any, "h");
  assert.equal(map[0], "127.0.0.1:7000");
  assert.equal(map[8191], "127.0.0.1:7000");
  assert.equal(map[16383], "127.0.0.1:7001");
  assert.deepEqual(mastersOf(map), ["127.0.0.1:7000", "127.0.0.1:7001"]);
  const resp3 = shards.map((s) =>
    new Map([["slots", s[1]], [
      "nodes",
      (s[3] as unknown[][]).map((n) => {
        const m = new Map();
        for (let i = 0; i < n.length; i += 2) m.set(n[i], n[i + 1]);
        return m;
      }),
    ]])
  );
  // deno-lint-ignore no-explicit-any
  assert.deepEqual(parseShards(resp3 as any, "h"), map);
  const slots: unknown[] = [[0, 8191, ["", 7000, "id"]], [8192, 16383, [
    "10.0.0.2",
    7001,
  ]]];
  // deno-lint-ignore no-explicit-any
  const m2 = parseSlots(slots as any, "seed");
  assert.equal(m2[5], "seed:7000");
  assert.equal(m2[9000], "10.0.0.2:7001");
});
