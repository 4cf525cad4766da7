/**
 * A stand-in for the slow service a semaphore exists to bound, for
 * bench_semaphore.ts: a TCP server on 127.0.0.1 that answers each byte it
 * receives with one byte, `ms` later (a timer in this process).
 *
 * It runs in a process of its own so that how late its timers fire depends
 * only on its own traffic, which is the same whichever library the holders
 * in the benchmark's process use.
 *
 * Usage: (deno run -A | bun run) scripts/_slow_service.ts PORT MS
 *
 * @module
 */

import { createServer } from "node:net";
import { scriptArgs } from "../testing/proc.ts";

const [port, ms] = scriptArgs().map(Number);
if (!(port > 0) || !(ms >= 0)) {
  throw new RangeError("usage: _slow_service.ts PORT MS");
}
const ONE = new Uint8Array([1]);
createServer((socket) => {
  socket.setNoDelay(true);
  socket.on("data", (chunk: Uint8Array) => {
    for (let i = 0; i < chunk.length; i++) {
      setTimeout(() => {
        if (!socket.destroyed) socket.write(ONE);
      }, ms);
    }
  });
  socket.on("error", () => {});
}).listen(port, "127.0.0.1");
