/**
 * The handshake a connection runs after every (re)connect, before its queued
 * commands: AUTH or HELLO (with AUTH and SETNAME), CLIENT SETNAME, SELECT,
 * written at once and ahead of everything else; and the mapping of their
 * errors to messages that never show the password.
 *
 * @module
 */

import { ConnectionError, ProtocolError, ReplyError } from "../errors.ts";
import type { ResolvedOptions } from "./options.ts";
import type { Pending } from "./pending.ts";
import type { Reply } from "../resp/decoder.ts";
import { CommandEncoder } from "../resp/encoder.ts";
import type { Transport } from "../transport/types.ts";

/**
 * Runs the handshake on a transport just opened: writes AUTH / HELLO /
 * SELECT / CLIENT SETNAME directly, ahead of queued commands, and waits for
 * their replies. Rejects with the first failure, its text stripped where it
 * may repeat the password.
 *
 * @param o The connection's options.
 * @param where `host:port`, for messages.
 * @param transport The new transport.
 * @param expect Queues a step's reply, in order, with the connection's
 *   commands in flight (there are none yet).
 * @returns Resolves once every step succeeded.
 */
export async function handshake(
  o: ResolvedOptions,
  where: string,
  transport: Transport,
  expect: (p: Pending) => void,
): Promise<void> {
  const steps: { args: unknown[]; what: string }[] = [];
  if (o.protocol === 3) {
    const hello: unknown[] = ["HELLO", 3];
    if (o.password !== undefined) {
      hello.push("AUTH", o.username ?? "default", o.password);
    }
    if (o.name) hello.push("SETNAME", o.name);
    steps.push({ args: hello, what: "HELLO 3" });
  } else {
    if (o.password !== undefined) {
      steps.push({
        args: o.username !== undefined
          ? ["AUTH", o.username, o.password]
          : ["AUTH", o.password],
        what: "AUTH",
      });
    }
    if (o.name) {
      steps.push({
        args: ["CLIENT", "SETNAME", o.name],
        what: "CLIENT SETNAME",
      });
    }
  }
  if (o.db !== 0) steps.push({ args: ["SELECT", o.db], what: "SELECT" });
  // A target found through Sentinel must really be the master now (the
  // sentinels' answer may be a moment old): ROLE says so, or the attempt fails
  // and the reconnect asks the sentinels again.
  if (o.target?.master) steps.push({ args: ["ROLE"], what: "ROLE" });
  if (o.trackingPrefix !== undefined) {
    steps.push({
      args: ["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", o.trackingPrefix],
      what: "CLIENT TRACKING",
    });
  }
  if (steps.length === 0) return;
  const encoder = new CommandEncoder();
  const replies: Promise<Reply>[] = [];
  for (const step of steps) {
    encoder.encode(step.args);
    replies.push(
      new Promise<Reply>((resolve, reject) => {
        expect({
          resolve,
          reject,
          raw: false,
          settled: false,
          name: step.what,
          end: 0,
          batch: -1,
          replies: 1,
          collected: undefined,
        });
      }),
    );
  }
  await transport.write(encoder.take());
  const results = await Promise.allSettled(replies);
  for (let i = 0; i < results.length; i++) {
    const r = results[i];
    if (r.status === "fulfilled") {
      if (steps[i].what === "ROLE") {
        const role = Array.isArray(r.value) ? String(r.value[0]) : "unknown";
        if (role !== "master") {
          throw new ConnectionError(
            `${where} is not a master (ROLE: ${role}); asking the sentinels again`,
          );
        }
      }
      continue;
    }
    const err = r.reason;
    const step = steps[i];
    // AUTH and HELLO carry the password.
    const secret = step.what === "AUTH" || step.what === "HELLO 3";
    if (err instanceof ReplyError) {
      // AUTH and HELLO carry the password, and servers echo arguments
      // (Redis < 6 for HELLO, a renamed AUTH: "unknown command ..., with
      // args beginning with: ..."). So their error text is never shown
      // and never kept as a cause: only its code, and what it means.
      if (!secret) {
        throw new ReplyError(
          `${err.message} (${step.what} at ${where})`,
          {
            cause: err,
          },
        );
      }
      const code = safeCode(err.code, o.password);
      const unknown = /unknown command|unknown subcommand/i.test(err.message);
      const user = o.username === undefined ? "" : ` as user "${o.username}"`;
      let why: string;
      if (unknown && step.what === "HELLO 3") {
        why =
          `RESP3 needs Redis 6 or newer: ${where} does not know HELLO (use protocol 2)`;
      } else if (unknown) {
        why = `${where} does not know the AUTH command (renamed or disabled?)`;
      } else if (code === "WRONGPASS") {
        why = "invalid username-password pair or user is disabled";
      } else {
        why =
          "the server refused it (its reply is not shown, since it may repeat the password)";
      }
      throw new ReplyError(
        `${code} ${why} (${step.what}${user} at ${where})`,
      );
    }
    if (err instanceof ProtocolError && secret) {
      // The decoder quotes what it could not parse; after AUTH or HELLO
      // that may be an echo of the password. Neither text nor cause kept.
      throw new ProtocolError(
        `Malformed reply from ${where} to ${step.what} (not shown: it may repeat the password); the connection was closed`,
      );
    }
    throw err;
  }
}

/**
 * The code of a reply error to an AUTH or HELLO, safe to show: a word of
 * capitals that is not part of the password (a server may echo anything).
 */
function safeCode(code: string, password: string | undefined): string {
  if (!/^[A-Z][A-Z0-9_]{0,31}$/.test(code)) return "ERR";
  if (
    password !== undefined && password.length > 0 && password.includes(code)
  ) {
    return "ERR";
  }
  return code;
}
