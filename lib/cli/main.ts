/**
 * respite's command line: run a command under a Redis lock, from a shell
 * script or cron, and look at or clear a lock.
 *
 * ```sh
 * # at most one nightly job across the fleet; skip when another copy runs
 * REDIS_URL=redis://:secret@redis:6379 \
 *   deno run -A jsr:@respite/respite/cli lock nightly --wait 0 -- ./nightly.sh
 * deno run -A jsr:@respite/respite/cli status nightly --json
 * ```
 *
 * With Bun or Node, run this file from the package: `bun run
 * lib/cli/main.ts …`, `node lib/cli/main.ts …`. `--help` prints the usage
 * and the exit codes: the command's own, 64 bad arguments, 69 Redis
 * unreachable, 75 busy (`--busy-code`), 76 lost (`--lost-code`).
 *
 * @module
 */

import { runCli } from "./run.ts";
import { processRuntime } from "./runtime.ts";

const rt = await processRuntime();
rt.exit(await runCli(rt));
