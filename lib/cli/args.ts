/**
 * The command line's arguments: `lock`, `status` and `reset`, their flags,
 * and the exit codes a caller can change. Pure: no I/O.
 *
 * @module
 */

import { redact } from "../adapters/common.ts";
import { MAX_TIMER_MS } from "../async.ts";
import { checkPrefix } from "../keys.ts";
import { checkName } from "../lock/options.ts";

/** Exit codes of `respite lock` that are not the command's own. */
export const EXIT = {
  /** Bad arguments (sysexits' EX_USAGE). */
  usage: 64,
  /** Redis could not be reached or answered with an error (EX_UNAVAILABLE). */
  unavailable: 69,
  /** The lock was not acquired within `--wait` (EX_TEMPFAIL); `--busy-code`. */
  busy: 75,
  /** The lock was lost while the command ran; `--lost-code`. */
  lost: 76,
} as const;

/**
 * A bad command line: exit {@linkcode EXIT.usage} with this one-line reason.
 * The reason may quote an argument: a URL's `user:password@` is left out.
 */
export class UsageError extends Error {
  override name = "UsageError";
  /** @param message The reason (credentials in URLs are removed). */
  constructor(message: string) {
    super(redact(message));
  }
}

/** Flags common to every subcommand. */
export interface CommonArgs {
  /** The lock's name. */
  name: string;
  /** `--url`: the server (else `REDIS_URL`, else redis://127.0.0.1:6379). */
  url?: string;
  /** `--prefix`: the key prefix (default `respite:`). */
  prefix?: string;
  /** `--json`: print JSON instead of text. */
  json: boolean;
}

/** `respite lock NAME [flags] -- COMMAND [ARGS…]`. */
export interface LockArgs extends CommonArgs {
  kind: "lock";
  /** `--ttl`: the lease in ms, renewed while the command runs. */
  ttl: number;
  /** `--wait`: how long to wait for the lock, in ms (default: no bound). */
  wait: number;
  /** `--keep`: leave the lock to expire at its TTL instead of releasing it. */
  keep: boolean;
  /** `--grace`: ms between SIGTERM and SIGKILL for a command whose lock was lost. */
  grace: number;
  /** `--busy-code`. */
  busyCode: number;
  /** `--lost-code`. */
  lostCode: number;
  /** `--id`: the owner id stored in the lock (default host:pid). */
  id?: string;
  /** The command and its arguments. */
  command: string[];
}

/** `respite status NAME` / `respite reset NAME`. */
export interface OtherArgs extends CommonArgs {
  kind: "status" | "reset";
}

/** What the command line asked for. */
export type CliArgs = LockArgs | OtherArgs | { kind: "help" };

/** Usage text, printed by `--help`. */
export const USAGE = `Usage:
  respite lock NAME [options] -- COMMAND [ARGS...]
  respite status NAME [--json] [--url URL] [--prefix P]
  respite reset NAME [--json] [--url URL] [--prefix P]
  respite --help

lock: runs COMMAND while holding the lock NAME, renewing it while the
command runs; forwards SIGINT, SIGTERM and SIGHUP to it; releases the lock
when it ends and exits with its exit code (128 + N if signal N ended it).
  --ttl MS          the lease, renewed while the command runs (default 30000)
  --wait MS         how long to wait for the lock (default: until it is free);
                    0 tries once
  --keep            leave the lock to expire at its TTL instead of releasing
                    it: at most one run per TTL across the fleet
  --busy-code N     exit code when the lock was not acquired (default 75)
  --lost-code N     exit code when the lock was lost while the command ran;
                    the command gets SIGTERM, then SIGKILL after --grace
                    (default 76)
  --grace MS        default 5000
  --id ID           the owner id shown by status (default HOST:PID)
status: whether NAME is held, by which owner id, the TTL left and the last
fencing token; exits 0 when held, 1 when free.
reset: deletes the lock whatever its holder, waking waiters; exits 0.

Common options:
  --url URL         the Redis server; prefer the REDIS_URL environment
                    variable for a password (a command line shows in ps)
  --prefix P        the key prefix (default respite:)
  --json            print one JSON object

Other exit codes: 64 bad arguments (or a malformed Redis URL), 69 Redis
unreachable or refused.`;

const NUMBER_FLAGS = {
  "--ttl": "ttl",
  "--wait": "wait",
  "--grace": "grace",
  "--busy-code": "busyCode",
  "--lost-code": "lostCode",
} as const;

/**
 * Parses the arguments after the program's name.
 *
 * @param argv The arguments.
 * @returns What to do.
 * @throws {UsageError} For a bad command line.
 */
export function parseArgs(argv: readonly string[]): CliArgs {
  if (argv.length === 0) throw new UsageError("no subcommand given");
  const [kind, ...rest] = argv;
  if (kind === "--help" || kind === "-h" || kind === "help") {
    return { kind: "help" };
  }
  if (kind !== "lock" && kind !== "status" && kind !== "reset") {
    throw new UsageError(`unknown subcommand ${JSON.stringify(kind)}`);
  }
  const dash = kind === "lock" ? rest.indexOf("--") : -1;
  const flags = dash === -1 ? rest : rest.slice(0, dash);
  const command = dash === -1 ? [] : rest.slice(dash + 1);
  let name: string | undefined;
  const out: Record<string, unknown> = { json: false, keep: false };
  const seen = new Set<string>();
  for (let i = 0; i < flags.length; i++) {
    const a = flags[i];
    if (a === "--help" || a === "-h") return { kind: "help" };
    if (a.startsWith("-")) {
      // Which one would win is a guess the caller should not have to make.
      if (seen.has(a)) throw new UsageError(`${a} given more than once`);
      seen.add(a);
    }
    if (a === "--json") {
      out.json = true;
    } else if (a === "--keep" && kind === "lock") {
      out.keep = true;
    } else if (
      a === "--url" || a === "--prefix" || (a === "--id" && kind === "lock")
    ) {
      const v = flags[++i];
      if (v === undefined || v === "") {
        throw new UsageError(`${a} needs a value`);
      }
      out[a.slice(2)] = v;
    } else if (a in NUMBER_FLAGS && kind === "lock") {
      const v = flags[++i];
      out[NUMBER_FLAGS[a as keyof typeof NUMBER_FLAGS]] = number(a, v);
    } else if (a.startsWith("-")) {
      throw new UsageError(`unknown option ${a} for ${kind}`);
    } else if (name === undefined) {
      name = a;
    } else {
      throw new UsageError(
        kind === "lock"
          ? `unexpected ${JSON.stringify(a)}: put the command after --`
          : `unexpected ${JSON.stringify(a)}`,
      );
    }
  }
  if (name === undefined) throw new UsageError(`${kind} needs a lock NAME`);
  // The library's own checks, here, so that a bad NAME or --prefix is a
  // usage error found before anything connects (not a crash after).
  usage(() => checkName(name));
  if (out.prefix !== undefined) usage(() => checkPrefix(out.prefix));
  const common: CommonArgs = {
    name,
    url: out.url as string | undefined,
    prefix: out.prefix as string | undefined,
    json: out.json as boolean,
  };
  if (kind !== "lock") return { kind, ...common };
  if (command.length === 0) {
    throw new UsageError("lock needs a command after --");
  }
  const ttl = (out.ttl as number | undefined) ?? 30_000;
  if (ttl < 1) throw new UsageError("--ttl must be at least 1 ms");
  // A timer cannot wait longer: a longer one would fire at once (a lease
  // renewed in a loop, the command SIGKILLed with no grace at all).
  for (const f of ["ttl", "grace"] as const) {
    const v = out[f] as number | undefined;
    if (v !== undefined && v > MAX_TIMER_MS) {
      throw new UsageError(`--${f} must be at most ${MAX_TIMER_MS} ms`);
    }
  }
  for (const f of ["busyCode", "lostCode"] as const) {
    const v = out[f] as number | undefined;
    if (v !== undefined && v > 255) {
      throw new UsageError(
        `--${f === "busyCode" ? "busy" : "lost"}-code must be 0..255`,
      );
    }
  }
  return {
    kind,
    ...common,
    ttl,
    wait: (out.wait as number | undefined) ?? Infinity,
    keep: out.keep as boolean,
    grace: (out.grace as number | undefined) ?? 5_000,
    busyCode: (out.busyCode as number | undefined) ?? EXIT.busy,
    lostCode: (out.lostCode as number | undefined) ?? EXIT.lost,
    id: out.id as string | undefined,
    command,
  };
}

/** Runs a library check, turning its TypeError/RangeError into a UsageError. */
function usage(check: () => unknown): void {
  try {
    check();
  } catch (err) {
    if (err instanceof TypeError || err instanceof RangeError) {
      throw new UsageError(err.message);
    }
    throw err;
  }
}

function number(flag: string, v: string | undefined): number {
  if (v === undefined) throw new UsageError(`${flag} needs a value`);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) {
    throw new UsageError(
      `${flag} needs a whole number, got ${JSON.stringify(v)}`,
    );
  }
  return Number(v);
}
