/**
 * A real Redis Sentinel set-up for tests: one master, one replica
 * (`--replicaof`), three sentinels (`redis-server sentinel.conf --sentinel`)
 * monitoring it with quorum 2, on free ports, with a temporary directory for
 * each sentinel's config (Sentinel rewrites it, so it must be writable).
 * Everything is stopped by its pid in {@linkcode SentinelSetup.stop}.
 */

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, type RedisServer, startRedis } from "./redis.ts";
import { type Proc, spawn } from "./proc.ts";
import { connect } from "../lib/client/client.ts";

export interface SentinelSetupOptions {
  /** The master's name (default "respite-master"). */
  name?: string;
  /** `requirepass` for the sentinels. */
  sentinelPassword?: string;
}

export interface SentinelSetup {
  name: string;
  /** The servers: [0] starts as master, [1] as its replica. */
  servers: RedisServer[];
  /** The sentinels' ports. */
  sentinelPorts: number[];
  /** "127.0.0.1:port" of each sentinel. */
  sentinels: string[];
  /** Sends a signal to every sentinel process (SIGSTOP freezes them). */
  signalSentinels(sig: "SIGSTOP" | "SIGCONT" | "SIGKILL"): void;
  /** Stops the sentinels and the servers, and removes the temp dirs. */
  stop(): Promise<void>;
}

/** Starts the servers and sentinels and waits until every sentinel sees the replica. */
export async function startSentinels(
  opts: SentinelSetupOptions = {},
): Promise<SentinelSetup> {
  const name = opts.name ?? "respite-master";
  const procs: Proc[] = [];
  const dirs: string[] = [];
  const servers: RedisServer[] = [];
  const stop = async () => {
    for (const p of procs) {
      p.kill("SIGCONT");
      p.kill("SIGKILL");
      await p.exited;
    }
    for (const s of servers) await s.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  };
  try {
    const master = await startRedis();
    servers.push(master);
    const replica = await startRedis({
      args: ["--replicaof", "127.0.0.1", String(master.port)],
    });
    servers.push(replica);
    const sentinelPorts: number[] = [];
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const dir = await mkdtemp(join(tmpdir(), "respite-sentinel-"));
      dirs.push(dir);
      const conf = join(dir, "sentinel.conf");
      const lines = [
        `port ${port}`,
        "bind 127.0.0.1",
        "protected-mode no",
        `dir ${dir}`,
        `sentinel monitor ${name} 127.0.0.1 ${master.port} 2`,
        `sentinel down-after-milliseconds ${name} 1000`,
        `sentinel failover-timeout ${name} 5000`,
        `sentinel parallel-syncs ${name} 1`,
      ];
      if (opts.sentinelPassword !== undefined) {
        lines.push(`requirepass ${opts.sentinelPassword}`);
        // The sentinels talk to each other with the same password.
        lines.push(`sentinel sentinel-pass ${opts.sentinelPassword}`);
      }
      await writeFile(conf, lines.join("\n") + "\n");
      procs.push(
        spawn("redis-server", [conf, "--sentinel", "--loglevel", "warning"]),
      );
      sentinelPorts.push(port);
    }
    const sentinels = sentinelPorts.map((p) => `127.0.0.1:${p}`);
    // Ready when each sentinel answers, knows the replica and the other two.
    const deadline = Date.now() + 30_000;
    for (const port of sentinelPorts) {
      for (;;) {
        if (Date.now() > deadline) {
          throw new Error(`sentinel on ${port} not ready within 30 s`);
        }
        try {
          await using c = await connect({
            hostname: "127.0.0.1",
            port,
            password: opts.sentinelPassword,
            reconnect: false,
            connectTimeout: 500,
            logger: null,
          });
          const replicas = await c.send<string[][]>(
            "SENTINEL",
            "REPLICAS",
            name,
          );
          const others = await c.send<string[][]>(
            "SENTINEL",
            "SENTINELS",
            name,
          );
          if (replicas.length >= 1 && others.length >= 2) break;
        } catch {
          // not up yet
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const signalSentinels = (sig: "SIGSTOP" | "SIGCONT" | "SIGKILL") => {
      for (const p of procs) p.kill(sig);
    };
    return { name, servers, sentinelPorts, sentinels, signalSentinels, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
