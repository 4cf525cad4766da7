/**
 * A scripted fake Redis on top of tests/_fake_server.ts: it decodes the
 * commands a client sends and answers each with what a handler returns. Only
 * for answers Redis itself cannot be made to give (echoed passwords, silence
 * with the socket left open, push frames at chosen moments).
 */
import { NEED_MORE, RespDecoder } from "../lib/resp/decoder.ts";
import { type FakeConn, latin1 } from "./_fake_server.ts";

/** What a handler answers: RESP bytes (latin-1 string), or `null` for silence. */
export type Answer = string | null;

/**
 * Answers every command `conn` receives, in order, with `handler(args)`.
 * Returns a function that stops answering (the connection stays open) and
 * resolves once the answering loop has ended (await it before the test ends:
 * Deno's sanitizers see its timer).
 */
export function answer(
  conn: FakeConn,
  handler: (args: string[], index: number) => Answer,
): () => Promise<void> {
  const decoder = new RespDecoder();
  let seen = 0;
  let index = 0;
  let stopped = false;
  const loop = async () => {
    while (!stopped && !conn.isClosed) {
      const got = conn.received;
      if (got.length > seen) {
        decoder.feed(latin1(got.slice(seen)));
        seen = got.length;
        for (;;) {
          const cmd = decoder.read();
          if (cmd === NEED_MORE) break;
          const a = handler((cmd as unknown[]).map(String), index++);
          if (a !== null && !conn.isClosed) await conn.write(a).catch(() => {});
        }
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  };
  const done = loop();
  return () => {
    stopped = true;
    return done;
  };
}

/** The usual answers to a handshake: OK for AUTH/SELECT/CLIENT, a map for HELLO. */
export function handshakeAnswer(args: string[]): Answer | undefined {
  const name = args[0].toUpperCase();
  if (name === "AUTH" || name === "SELECT" || name === "CLIENT") {
    return "+OK\r\n";
  }
  if (name === "HELLO") {
    return args[1] === "3"
      ? "%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n"
      : "*4\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:2\r\n";
  }
  return undefined;
}
