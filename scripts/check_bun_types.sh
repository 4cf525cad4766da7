#!/usr/bin/env bash
# Type-checks what respite assumes of Bun against Bun's own types
# (npm:bun-types@1.4.4, the pinned Bun's): the socket API the Bun transport
# calls (lib/transport/bun.ts: BunGlobal, BunSocket) and the RedisClient shape
# the Bun adapter takes (lib/adapters/bun.ts: BunRedisLike). Nothing runs;
# scripts/test.sh calls this. The check file lives in a temporary directory
# with its own config, because bun-types declares globals (Bun, node:url's
# URL, ...) that would clash with Deno's when the rest of the code is checked.
# Fetches bun-types from the npm registry on first use (Deno's npm cache).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
cat >"$dir/deno.json" <<'JSON'
{
  "compilerOptions": {
    "strict": true,
    "lib": ["esnext", "dom", "deno.ns"],
    "types": ["npm:bun-types@1.4.4"]
  }
}
JSON
cat >"$dir/check.ts" <<TS
import type { BunGlobal, BunSocket } from "$root/lib/transport/bun.ts";
import type { BunRedisLike } from "$root/lib/adapters/bun.ts";

// The transport calls Bun.connect with its options and handlers, and uses
// the socket it resolves with.
export const connect: BunGlobal["connect"] = Bun.connect;
export type SocketFits = Bun.Socket<undefined> extends BunSocket ? true
  : never;
export const socketFits: SocketFits = true;

// The adapter takes an app's RedisClient (and its duplicate()) as this shape.
export const redis: BunRedisLike = new Bun.RedisClient();
TS
deno check --quiet --config "$dir/deno.json" "$dir/check.ts"
echo "lib/transport/bun.ts and lib/adapters/bun.ts match bun-types@1.4.4"
