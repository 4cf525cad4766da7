/**
 * Throwaway `redis-server` processes for tests and scripts: a free port on
 * loopback, no persistence, started and stopped by this code by their pid.
 * `REDIS_URL` makes {@linkcode sharedRedis} use an existing server instead.
 */

import type { RedisClient } from "../lib/client/client.ts";
import { runtimeConnector } from "../lib/transport/mod.ts";
import type { TlsOptions } from "../lib/transport/types.ts";
import { type Proc, spawn } from "./proc.ts";

export interface RedisServerOptions {
  /** Extra redis-server arguments, e.g. ["--requirepass", "secret"]. */
  args?: string[];
  /** Serve TLS only, on the port, with these PEM files. */
  tls?: { certFile: string; keyFile: string; caFile: string; caPem: string };
  /** Reuse this port (for restarts). */
  port?: number;
}

export class RedisServer {
  readonly host = "127.0.0.1";
  port: number;
  readonly external: boolean;
  #opts: RedisServerOptions;
  #proc: Proc | null = null;
  #log = "";

  constructor(port: number, opts: RedisServerOptions, external = false) {
    this.port = port;
    this.#opts = opts;
    this.external = external;
  }

  get url(): string {
    return `${this.#opts.tls ? "rediss" : "redis"}://${this.host}:${this.port}`;
  }

  get pid(): number | undefined {
    return this.#proc?.pid;
  }

  /** Starts redis-server and waits until it answers. */
  async start(): Promise<void> {
    if (this.external) return;
    const o = this.#opts;
    const args = [
      "--bind",
      this.host,
      "--save",
      "",
      "--appendonly",
      "no",
      "--protected-mode",
      "no",
      "--loglevel",
      "warning",
      // A replica loads its master's data from the socket: nothing is written
      // to the working directory (a full sync would leave a dump.rdb there).
      "--repl-diskless-load",
      "swapdb",
    ];
    if (o.tls) {
      args.push(
        "--port",
        "0",
        "--tls-port",
        String(this.port),
        "--tls-cert-file",
        o.tls.certFile,
        "--tls-key-file",
        o.tls.keyFile,
        "--tls-ca-cert-file",
        o.tls.caFile,
        "--tls-auth-clients",
        "no",
      );
    } else {
      args.push("--port", String(this.port));
    }
    args.push(...(o.args ?? []));
    const proc = spawn("redis-server", args);
    this.#proc = proc;
    let exited = false;
    proc.exited.then(() => exited = true);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (exited) {
        this.#log = await proc.stdout();
        this.#proc = null;
        throw new Error(
          `redis-server on port ${this.port} exited: ${this.#log.slice(-500)}`,
        );
      }
      if (
        await probe(
          this.host,
          this.port,
          o.tls ? { caCerts: [o.tls.caPem] } : undefined,
        )
      ) {
        return;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    proc.kill("SIGKILL");
    await proc.exited;
    this.#proc = null;
    throw new Error(
      `redis-server on port ${this.port} did not answer within 10 s`,
    );
  }

  /** Sends a signal to the server process (SIGKILL: it dies at once). */
  signal(sig: "SIGKILL" | "SIGSTOP" | "SIGCONT" | "SIGTERM"): void {
    if (this.external) {
      throw new Error("cannot signal an external REDIS_URL server");
    }
    this.#proc?.kill(sig);
  }

  /** Kills the server with SIGKILL and waits until it is gone. */
  async stop(): Promise<void> {
    const proc = this.#proc;
    if (proc === null) return;
    this.#proc = null;
    proc.kill("SIGCONT");
    proc.kill("SIGKILL");
    await proc.exited;
  }

  /** Kills it and starts it again on the same port (an empty server). */
  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }
}

/** Starts a new redis-server on a free port. */
export async function startRedis(
  opts: RedisServerOptions = {},
): Promise<RedisServer> {
  let lastError: unknown;
  for (let i = 0; i < 5; i++) {
    const port = opts.port ?? await freePort();
    const server = new RedisServer(port, opts);
    try {
      await server.start();
      return server;
    } catch (err) {
      lastError = err;
      if (opts.port !== undefined) break;
    }
  }
  throw lastError;
}

/**
 * The server most tests share: the one `REDIS_URL` names, or a new
 * throwaway one.
 */
export async function sharedRedis(): Promise<RedisServer> {
  const url = envUrl();
  if (url) {
    const u = new URL(url);
    return new RedisServer(Number(u.port || 6379), {}, true);
  }
  return await startRedis();
}

function envUrl(): string | undefined {
  const g = globalThis as {
    Deno?: { env: { get(k: string): string | undefined } };
    process?: { env: Record<string, string | undefined> };
  };
  return g.Deno ? g.Deno.env.get("REDIS_URL") : g.process?.env.REDIS_URL;
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const g = globalThis as {
    Deno?: {
      listen(
        o: { hostname: string; port: number },
      ): { addr: { port: number }; close(): void };
    };
    Bun?: {
      listen(o: unknown): { port: number; stop(force?: boolean): void };
    };
  };
  if (g.Deno) {
    const l = g.Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = l.addr.port;
    l.close();
    return port;
  }
  const l = g.Bun!.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: { data() {} },
  });
  const port = l.port;
  l.stop(true);
  await Promise.resolve();
  return port;
}

/** True if something on host:port answers a PING with any bytes. */
async function probe(
  host: string,
  port: number,
  tls?: TlsOptions,
): Promise<boolean> {
  const connector = await runtimeConnector();
  let got: (ok: boolean) => void = () => {};
  const answered = new Promise<boolean>((r) => got = r);
  let t;
  try {
    t = await connector({ hostname: host, port, tls }, {
      onData: () => got(true),
      onClose: () => got(false),
    });
  } catch {
    return false;
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await t.write(new TextEncoder().encode("PING\r\n"));
    const ok = await Promise.race([
      answered,
      new Promise<boolean>((r) => timer = setTimeout(() => r(false), 1000)),
    ]);
    return ok;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
    await t.close();
  }
}

/** Every key matching `pattern`, found with SCAN (never KEYS), sorted. */
export async function scanKeys(
  r: RedisClient,
  pattern: string,
): Promise<string[]> {
  const out: string[] = [];
  let cursor = "0";
  do {
    const [next, keys] = await r.send<[string, string[]]>(
      "SCAN",
      cursor,
      "MATCH",
      pattern,
      "COUNT",
      1000,
    );
    out.push(...keys);
    cursor = next;
  } while (cursor !== "0");
  return out.sort();
}

/** How many times the server ran each command so far (INFO commandstats), by name. */
export async function commandCalls(
  r: RedisClient,
): Promise<Map<string, number>> {
  const info = await r.send<string>("INFO", "commandstats");
  const m = new Map<string, number>();
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    m.set(match[1], Number(match[2]));
  }
  return m;
}

/** Connections the server has accepted so far (`total_connections_received`). */
export async function connectionsReceived(r: RedisClient): Promise<number> {
  const info = await r.send<string>("INFO", "stats");
  const m = /total_connections_received:(\d+)/.exec(info);
  if (m === null) {
    throw new Error(`no total_connections_received in INFO stats: ${info}`);
  }
  return Number(m[1]);
}
