/**
 * A real throwaway Redis Cluster for tests: three (or `masters`) masters on
 * free ports below 55536 (each node also binds port + 10000 for its bus),
 * created with `redis-cli --cluster create`, ready once every node says
 * `cluster_state:ok`; plus a by-hand slot migration with hooks between its
 * steps so a test can act while the slot is half migrated.
 */

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type RedisClient } from "../lib/client/client.ts";
import { freePort, RedisServer } from "./redis.ts";
import { spawn } from "./proc.ts";

/** One node of a test cluster. */
export interface ClusterNode {
  readonly server: RedisServer;
  /** The node's cluster id (`CLUSTER MYID`). */
  readonly id: string;
  /** A client on this node only (not cluster-aware). */
  readonly client: RedisClient;
  readonly port: number;
  readonly url: string;
}

/** A running test cluster. */
export interface TestCluster {
  readonly nodes: ClusterNode[];
  /** Seed URLs, one per node. */
  readonly urls: string[];
  /** The node that serves `slot` now (asks the first node). */
  ownerOf(slot: number): Promise<ClusterNode>;
  /**
   * Starts one more node, with no slots, and joins it to the cluster
   * (CLUSTER MEET); added to `nodes` and `urls` once every node knows it.
   * `args`: extra redis-server arguments for it (Redis 7 turns a master
   * that gives away its last slot into a replica of the receiver unless
   * `--cluster-allow-replica-migration no`).
   */
  addNode(opts?: { args?: string[] }): Promise<ClusterNode>;
  /** Stops every node by pid and removes the temp dirs. */
  stop(): Promise<void>;
}

async function clusterPort(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const p = await freePort();
    if (p < 55536) return p;
  }
  // Ephemeral ports were all high: pick one in a low range at random.
  return 20000 + Math.floor(Math.random() * 30000);
}

async function until(cond: () => Promise<boolean>, ms: number, what: string) {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Starts a cluster of `masters` masters (default 3), no replicas.
 *
 * @param opts `masters`, extra redis-server `args` for every node.
 * @returns The running cluster.
 */
export async function startCluster(
  opts: { masters?: number; args?: string[] } = {},
): Promise<TestCluster> {
  const count = opts.masters ?? 3;
  const dirs: string[] = [];
  const servers: RedisServer[] = [];
  const clients: RedisClient[] = [];
  const cleanup = async () => {
    for (const c of clients) c.close();
    for (const s of servers) await s.stop().catch(() => {});
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  };
  const startNode = async (extra: string[] = []): Promise<RedisServer> => {
    let started: RedisServer | undefined;
    let last: unknown;
    for (let attempt = 0; attempt < 5 && !started; attempt++) {
      const dir = await mkdtemp(join(tmpdir(), "respite-cluster-"));
      dirs.push(dir);
      const server = new RedisServer(await clusterPort(), {
        args: [
          "--cluster-enabled",
          "yes",
          "--cluster-config-file",
          join(dir, "nodes.conf"),
          "--dir",
          dir,
          ...(opts.args ?? []),
          ...extra,
        ],
      });
      try {
        await server.start();
        started = server;
      } catch (err) {
        last = err;
      }
    }
    if (!started) throw last;
    return started;
  };
  try {
    for (let i = 0; i < count; i++) servers.push(await startNode());
    const create = spawn("redis-cli", [
      "--cluster",
      "create",
      ...servers.map((s) => `127.0.0.1:${s.port}`),
      "--cluster-replicas",
      "0",
      "--cluster-yes",
    ]);
    const code = await create.exited;
    if (code !== 0) {
      throw new Error(
        `redis-cli --cluster create failed (${code}): ${await create
          .stdout()} ${await create.stderr()}`,
      );
    }
    const nodes: ClusterNode[] = [];
    for (const server of servers) {
      const client = await connect(server.url);
      clients.push(client);
      const id = String(await client.command(["CLUSTER", "MYID"]));
      nodes.push({ server, id, client, port: server.port, url: server.url });
    }
    await until(
      async () => {
        for (const n of nodes) {
          const info = String(await n.client.command(["CLUSTER", "INFO"]));
          if (!info.includes("cluster_state:ok")) return false;
          if (!info.includes(`cluster_known_nodes:${count}`)) return false;
        }
        return true;
      },
      30_000,
      "cluster_state:ok on every node",
    );
    const urls = nodes.map((n) => n.url);
    return {
      nodes,
      urls,
      async ownerOf(slot) {
        const reply = await nodes[0].client.command(["CLUSTER", "SLOTS"]);
        for (const r of reply as unknown[][]) {
          if (slot >= Number(r[0]) && slot <= Number(r[1])) {
            const port = Number((r[2] as unknown[])[1]);
            return nodes.find((n) => n.port === port)!;
          }
        }
        throw new Error(`slot ${slot} has no owner`);
      },
      async addNode(o = {}) {
        const server = await startNode(o.args);
        servers.push(server);
        const client = await connect(server.url);
        clients.push(client);
        const id = String(await client.command(["CLUSTER", "MYID"]));
        await client.command(["CLUSTER", "MEET", "127.0.0.1", nodes[0].port]);
        const node = { server, id, client, port: server.port, url: server.url };
        await until(
          async () => {
            for (const n of [...nodes, node]) {
              const info = String(await n.client.command(["CLUSTER", "INFO"]));
              if (
                !info.includes("cluster_state:ok") ||
                !info.includes(`cluster_known_nodes:${nodes.length + 1}`)
              ) return false;
            }
            return true;
          },
          30_000,
          "every node knows the new one, cluster_state:ok",
        );
        nodes.push(node);
        urls.push(node.url);
        return node;
      },
      stop: cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** Hooks a test can use to act while a slot is half migrated. */
export interface MigrationHooks {
  /** After IMPORTING/MIGRATING are set, before any key moved. */
  afterMark?: () => Promise<void> | void;
  /** After each key moved, with the key. */
  afterKey?: (key: string) => Promise<void> | void;
  /** After every key moved, before SETSLOT NODE. */
  beforeNode?: () => Promise<void> | void;
}

/**
 * Moves `slot` to `target` by hand, as `redis-cli --cluster reshard` does:
 * SETSLOT IMPORTING on the target, MIGRATING on the source, MIGRATE key by
 * key (GETKEYSINSLOT), then SETSLOT NODE on the target, source and every
 * other master.
 *
 * @param cluster The cluster.
 * @param slot The slot.
 * @param target The node that will own it.
 * @param hooks Called between steps.
 */
export async function migrateSlot(
  cluster: TestCluster,
  slot: number,
  target: ClusterNode,
  hooks: MigrationHooks = {},
): Promise<void> {
  const source = await cluster.ownerOf(slot);
  if (source === target) return;
  await target.client.command([
    "CLUSTER",
    "SETSLOT",
    slot,
    "IMPORTING",
    source.id,
  ]);
  await source.client.command([
    "CLUSTER",
    "SETSLOT",
    slot,
    "MIGRATING",
    target.id,
  ]);
  await hooks.afterMark?.();
  for (;;) {
    const keys = await source.client.command([
      "CLUSTER",
      "GETKEYSINSLOT",
      slot,
      100,
    ]) as string[];
    if (keys.length === 0) break;
    for (const key of keys) {
      await source.client.command([
        "MIGRATE",
        "127.0.0.1",
        target.port,
        "",
        0,
        5000,
        "KEYS",
        key,
      ]);
      await hooks.afterKey?.(key);
    }
  }
  await hooks.beforeNode?.();
  const order = [
    target,
    source,
    ...cluster.nodes.filter((n) => n !== target && n !== source),
  ];
  for (const n of order) {
    await n.client.command(["CLUSTER", "SETSLOT", slot, "NODE", target.id]);
  }
}
