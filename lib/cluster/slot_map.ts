/**
 * The cluster's slot map: which master serves each of the 16384 slots,
 * parsed from `CLUSTER SHARDS` (Redis 7+) or `CLUSTER SLOTS` (older).
 *
 * @module
 */

import type { Reply } from "../resp/decoder.ts";
import { SLOT_COUNT } from "./slot.ts";

/** A master's address, as `host:port`. */
export type NodeAddress = string;

/** Slot → master address; `undefined` for a slot no master serves. */
export type SlotMap = (NodeAddress | undefined)[];

function field(entry: Reply, name: string): Reply | undefined {
  if (entry instanceof Map) return entry.get(name) as Reply | undefined;
  if (Array.isArray(entry)) {
    for (let i = 0; i + 1 < entry.length; i += 2) {
      if (String(entry[i]) === name) return entry[i + 1];
    }
  }
  return undefined;
}

function address(host: Reply | undefined, fallback: string, port: Reply) {
  const h = host === undefined || host === null || host === "" ||
      host === "?"
    ? fallback
    : String(host);
  return `${h.includes(":") ? `[${h}]` : h}:${Number(port)}`;
}

/**
 * Parses a `CLUSTER SHARDS` reply (RESP2 arrays or RESP3 maps).
 *
 * @param reply The reply.
 * @param seedHost Host to use when a node announces none (`""`/`?`).
 * @returns The slot map.
 */
export function parseShards(reply: Reply, seedHost: string): SlotMap {
  const map: SlotMap = new Array(SLOT_COUNT);
  if (!Array.isArray(reply)) throw new TypeError("CLUSTER SHARDS: not a list");
  for (const shard of reply) {
    const slots = field(shard, "slots");
    const nodes = field(shard, "nodes");
    if (!Array.isArray(slots) || !Array.isArray(nodes)) continue;
    let master: NodeAddress | undefined;
    for (const node of nodes) {
      if (String(field(node, "role")) !== "master") continue;
      if (String(field(node, "health") ?? "online") !== "online") continue;
      const port = field(node, "port") ?? field(node, "tls-port");
      const host = field(node, "endpoint") ?? field(node, "ip");
      master = address(host, seedHost, port ?? 0);
    }
    if (master === undefined) continue;
    for (let i = 0; i + 1 < slots.length; i += 2) {
      for (let s = Number(slots[i]); s <= Number(slots[i + 1]); s++) {
        map[s] = master;
      }
    }
  }
  return map;
}

/**
 * Parses a `CLUSTER SLOTS` reply.
 *
 * @param reply The reply.
 * @param seedHost Host to use when a node announces none.
 * @returns The slot map.
 */
export function parseSlots(reply: Reply, seedHost: string): SlotMap {
  const map: SlotMap = new Array(SLOT_COUNT);
  if (!Array.isArray(reply)) throw new TypeError("CLUSTER SLOTS: not a list");
  for (const range of reply) {
    if (!Array.isArray(range) || !Array.isArray(range[2])) continue;
    const [host, port] = range[2] as Reply[];
    const master = address(host, seedHost, port);
    for (let s = Number(range[0]); s <= Number(range[1]); s++) map[s] = master;
  }
  return map;
}

/**
 * The distinct masters of a slot map.
 *
 * @param map The map.
 * @returns Their addresses.
 */
export function mastersOf(map: SlotMap): NodeAddress[] {
  return [...new Set(map.filter((a): a is NodeAddress => a !== undefined))];
}
