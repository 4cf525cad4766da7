/**
 * The command line's work: `lock` runs a command under a lock, `status`
 * and `reset` look at and clear one. Returns the exit code; all I/O goes
 * through the runtime seam (./runtime.ts) and respite's public API.
 *
 * @module
 */

import { connect, type RedisClient } from "../client/client.ts";
import { readRedisUrl } from "../client/env.ts";
import { RespiteError } from "../errors.ts";
import { lockKeys } from "../keys.ts";
import { Lock } from "../lock/lock.ts";
import {
  type CliArgs,
  EXIT,
  type LockArgs,
  type OtherArgs,
  parseArgs,
  USAGE,
  UsageError,
} from "./args.ts";
import type { CliRuntime, ForwardedSignal } from "./runtime.ts";

const FORWARDED: readonly ForwardedSignal[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/**
 * Runs the command line.
 *
 * @param rt The runtime.
 * @returns The exit code.
 */
export async function runCli(rt: CliRuntime): Promise<number> {
  let args: CliArgs;
  try {
    args = parseArgs(rt.args);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    rt.err(`respite: ${err.message} (respite --help for usage)`);
    return EXIT.usage;
  }
  if (args.kind === "help") {
    rt.out(USAGE);
    return 0;
  }
  let redis: RedisClient;
  try {
    const url = args.url ?? readRedisUrl().url;
    redis = await connect(
      url === undefined ? { logger: logTo(rt) } : { url, logger: logTo(rt) },
    );
  } catch (err) {
    if (err instanceof TypeError || err instanceof RangeError) {
      // A malformed --url or REDIS_URL (the message never shows a password).
      rt.err(
        `respite: bad Redis URL (--url or REDIS_URL): ${
          message(err)
        } (respite --help for usage)`,
      );
      return EXIT.usage;
    }
    rt.err(`respite: cannot reach Redis: ${message(err)}`);
    return EXIT.unavailable;
  }
  try {
    if (args.kind === "lock") return await lockCommand(rt, redis, args);
    return await lookCommand(rt, redis, args);
  } catch (err) {
    if (!(err instanceof RespiteError)) throw err;
    rt.err(`respite: ${message(err)}`);
    return EXIT.unavailable;
  } finally {
    await redis.close();
  }
}

/** `respite lock NAME … -- COMMAND`. */
async function lockCommand(
  rt: CliRuntime,
  redis: RedisClient,
  args: LockArgs,
): Promise<number> {
  const lock = new Lock(redis, args.name, {
    ttl: args.ttl,
    autoRenew: true,
    id: args.id ?? `${rt.hostname()}:${rt.pid}`,
    ...(args.prefix === undefined ? {} : { prefix: args.prefix }),
  });
  // A signal while waiting gives up the wait, and exits as the signal would.
  const giveUp = new AbortController();
  let waitSignal: ForwardedSignal | null = null;
  const stopWaiting = FORWARDED.map((s) =>
    rt.onSignal(s, () => {
      waitSignal ??= s;
      giveUp.abort();
    })
  );
  let acquired: boolean;
  try {
    acquired = await lock.acquire({ wait: args.wait, signal: giveUp.signal });
  } catch (err) {
    if (waitSignal !== null) return 128 + rt.signalNumber(waitSignal);
    throw err;
  } finally {
    for (const off of stopWaiting) off();
  }
  if (!acquired) {
    const within = args.wait === Infinity ? "" : ` within ${args.wait} ms`;
    rt.err(`respite: lock ${args.name} is busy (not acquired${within})`);
    return args.busyCode;
  }

  let child;
  try {
    child = rt.spawn(args.command[0], args.command.slice(1));
  } catch (err) {
    await lock.release();
    rt.err(`respite: cannot run ${args.command[0]}: ${message(err)}`);
    return 127;
  }
  const forwarding = FORWARDED.map((s) => rt.onSignal(s, () => child.kill(s)));
  let lost = false;
  let killTimer: ReturnType<typeof setTimeout> | undefined;
  const onLost = () => {
    lost = true;
    rt.err(
      `respite: lock ${args.name} was lost while the command ran (${
        message(lock.signal.reason)
      }); stopping it`,
    );
    child.kill("SIGTERM");
    killTimer = setTimeout(() => child.kill("SIGKILL"), args.grace);
  };
  lock.signal.addEventListener("abort", onLost, { once: true });
  let code: number;
  try {
    const exit = await child.exited;
    code = exit.code ?? 128 + rt.signalNumber(exit.signal ?? "");
  } catch (err) {
    rt.err(`respite: cannot run ${args.command[0]}: ${message(err)}`);
    code = 127;
  } finally {
    for (const off of forwarding) off();
    lock.signal.removeEventListener("abort", onLost);
    clearTimeout(killTimer);
  }
  if (lost) {
    await lock.release({ keep: true }); // nothing to send: it is gone
    return args.lostCode;
  }
  try {
    await lock.release(args.keep ? { keep: true } : undefined);
  } catch (err) {
    if (!(err instanceof RespiteError)) throw err;
    if (!lock.held && lock.signal.aborted) {
      rt.err(`respite: lock ${args.name} was lost as the command ended`);
      return args.lostCode;
    }
    rt.err(
      `respite: could not release lock ${args.name} (${
        message(err)
      }); it expires within ${args.ttl} ms`,
    );
  }
  return code;
}

/** `respite status NAME` and `respite reset NAME`. */
async function lookCommand(
  rt: CliRuntime,
  redis: RedisClient,
  args: OtherArgs,
): Promise<number> {
  const prefix = args.prefix === undefined ? {} : { prefix: args.prefix };
  if (args.kind === "reset") {
    const wasHeld = await Lock.reset(redis, args.name, prefix);
    if (args.json) {
      rt.out(JSON.stringify({ name: args.name, reset: true, wasHeld }));
    } else {
      rt.out(
        wasHeld
          ? `${args.name}: reset (it was held)`
          : `${args.name}: was not held`,
      );
    }
    return 0;
  }
  const keys = lockKeys(args.name, args.prefix);
  const lock = new Lock(redis, args.name, prefix);
  const [owner, ttl, fence] = await Promise.all([
    lock.owner(),
    redis.send<number>("PTTL", keys.key),
    redis.send<string | null>("GET", keys.fence),
  ]);
  const held = owner !== null && ttl !== -2;
  const status = {
    name: args.name,
    held,
    owner: held ? owner : null,
    ttl: held && ttl >= 0 ? ttl : null,
    fence: fence === null ? null : Number(fence),
  };
  if (args.json) {
    rt.out(JSON.stringify(status));
  } else {
    const last = status.fence === null
      ? "no fencing token issued"
      : `last fencing token ${status.fence}`;
    rt.out(
      held
        ? `${args.name}: held by ${status.owner}, ${
          status.ttl === null ? "no expiry" : `${status.ttl} ms left`
        }, ${last}`
        : `${args.name}: free, ${last}`,
    );
  }
  return held ? 0 : 1;
}

/** The client's warnings, on stderr. */
function logTo(rt: CliRuntime) {
  return { warn: (m: string) => rt.err(m) };
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
