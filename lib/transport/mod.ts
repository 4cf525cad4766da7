/**
 * The choice of a transport for the runtime we are on. Each runtime's module
 * (./deno.ts, ./bun.ts, ./node.ts, ./workers.ts) is loaded only on that
 * runtime, with a dynamic import from here, so Deno and Bun never load a
 * `node:` module. The interfaces live in ./types.ts, which those modules
 * import instead of this one: nothing imports back here.
 *
 * @module
 */

import type { Connector, Runtime } from "./types.ts";

/**
 * Tells which runtime this is.
 *
 * @returns The runtime's name.
 */
export function detectRuntime(): Runtime {
  const g = globalThis as {
    Deno?: { connect?: unknown };
    Bun?: { connect?: unknown };
    navigator?: { userAgent?: string };
    process?: { versions?: { node?: string } };
  };
  if (typeof g.Deno?.connect === "function") return "deno";
  if (typeof g.Bun?.connect === "function") return "bun";
  if (g.navigator?.userAgent === "Cloudflare-Workers") return "workers";
  if (typeof g.process?.versions?.node === "string") return "node";
  throw new Error(
    "respite cannot tell which runtime this is (not Deno, Bun, Node or Cloudflare Workers); " +
      "pass a `connector` in the connection options",
  );
}

/**
 * Loads the connector for a runtime (the current one by default).
 *
 * @param runtime Which runtime's sockets to use.
 * @returns Its connector.
 */
export async function runtimeConnector(
  runtime: Runtime = detectRuntime(),
): Promise<Connector> {
  switch (runtime) {
    case "deno":
      return (await import("./deno.ts")).denoConnector;
    case "bun":
      return (await import("./bun.ts")).bunConnector;
    case "node":
      return (await import("./node.ts")).nodeConnector;
    case "workers":
      return (await import("./workers.ts")).workersConnector;
  }
}
