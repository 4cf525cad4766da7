/**
 * Opens an app's own Redis client of each kind respite accepts as `redis`,
 * for the bring-your-own-client tests (tests/byo_*_test.ts) and their worker
 * (tests/fixtures/byo_worker.ts): the real ioredis and node-redis packages
 * (Deno: the `npm:` specifiers of deno.json's imports; Bun, which cannot
 * import `npm:`: the same pinned versions, installed by
 * scripts/install_byo_clients.sh), Bun's built-in `RedisClient` (Bun only),
 * and a `@db/redis` stand-in (see {@linkcode dbRedisShim}).
 */
import { connect, type RedisClient, ReplyError } from "../mod.ts";
import { spawn } from "./proc.ts";

/** The kinds of client the tests run respite on. */
export type ClientKind =
  | "respite"
  | "ioredis"
  | "node-redis"
  | "bun"
  | "db-redis";

/** A client of some kind, and how to close it. */
export interface OpenClient {
  /** What the app passes as `redis`. */
  redis: object;
  /** Closes it (and waits until it says it ended). */
  close(): Promise<void>;
}

const g = globalThis as {
  Deno?: unknown;
  Bun?: {
    RedisClient: new (url: string) => BunClient;
    resolveSync(name: string, from: string): string;
  };
};

interface BunClient {
  connect(): Promise<void>;
  close(): void;
}

/** Whether `kind` can run on this runtime; a reason when it cannot. */
export function unavailable(kind: ClientKind): string | false {
  if (kind === "bun" && g.Bun === undefined) {
    return "Bun's RedisClient exists only under Bun (this is Deno)";
  }
  return false;
}

let installed: Promise<string> | null = null;

/** The directory scripts/install_byo_clients.sh installs into (runs it once). */
function byoDir(): Promise<string> {
  installed ??= (async () => {
    const script = new URL("../scripts/install_byo_clients.sh", import.meta.url)
      .pathname;
    const p = spawn("bash", [script]);
    const code = await p.exited;
    if (code !== 0) {
      throw new Error(`install_byo_clients.sh failed: ${await p.stderr()}`);
    }
    return (await p.stdout()).trim().split("\n").pop()!;
  })();
  return installed;
}

/** Loads an npm package: `npm:` under Deno, the pinned install under Bun. */
export async function load<T>(name: "ioredis" | "redis"): Promise<T> {
  if (g.Bun === undefined) {
    return name === "ioredis"
      ? await import("ioredis") as T
      : await import("redis") as T;
  }
  const dir = await byoDir();
  return await import(g.Bun.resolveSync(name, dir)) as T;
}

/**
 * The stand-in for a `@db/redis` client (JSR, which these machines cannot
 * reach): an object with the documented surface of `@db/redis`'s `Redis`
 * interface that respite's adapter uses — `sendCommand(command, args?,
 * { returnUint8Arrays? })`, `isConnected`, `isClosed`, `close()` — and its
 * error class for error replies (`ErrorReplyError`, whose message is the
 * error line with its leading `-`), built over respite's own client.
 */
export function dbRedisShim(client: RedisClient): object {
  class ErrorReplyError extends Error {}
  let closed = false;
  return {
    get isConnected() {
      return client.status === "ready";
    },
    get isClosed() {
      return closed;
    },
    async sendCommand(
      command: string,
      args: (string | number | Uint8Array)[] = [],
      options: { returnUint8Arrays?: boolean } = {},
    ) {
      try {
        return await client.command(
          [command, ...args],
          options.returnUint8Arrays ? { raw: true } : undefined,
        );
      } catch (err) {
        if (err instanceof ReplyError) {
          throw new ErrorReplyError(`-${err.message}`);
        }
        throw err;
      }
    },
    /** Closes it (`@db/redis`'s returns nothing; this one its promise, for tests). */
    close() {
      closed = true;
      return client.close();
    },
  };
}

/** Opens a client of `kind` to `url`. */
export async function openClient(
  kind: ClientKind,
  url: string,
): Promise<OpenClient> {
  switch (kind) {
    case "respite": {
      const c = await connect(url);
      return { redis: c, close: () => c.close() };
    }
    case "ioredis": {
      type M = typeof import("ioredis");
      const { Redis } = await load<M>("ioredis");
      const c = new Redis(url, { lazyConnect: true });
      await c.connect();
      return {
        redis: c,
        close: async () => {
          const ended = new Promise((r) => c.once("end", r));
          await c.quit();
          await ended;
        },
      };
    }
    case "node-redis": {
      type M = typeof import("redis");
      const { createClient } = await load<M>("redis");
      const c = createClient({ url });
      c.on("error", () => {});
      await c.connect();
      return {
        redis: c,
        close: async () => {
          await c.close();
        },
      };
    }
    case "bun": {
      if (g.Bun === undefined) throw new Error(unavailable("bun") as string);
      const c = new g.Bun.RedisClient(url);
      await c.connect();
      return { redis: c, close: () => Promise.resolve(c.close()) };
    }
    case "db-redis": {
      const c = await connect(url);
      const shim = dbRedisShim(c) as { close(): Promise<void> };
      return { redis: shim, close: () => shim.close() };
    }
  }
}
