/**
 * A fault-injecting TCP proxy for tests: listens on 127.0.0.1 (a free port)
 * and pipes every accepted connection to a target (a `redis-server`), with
 * faults switched on and off while traffic flows. It runs in the test
 * process under Deno and Bun alike (`node:net`, which both provide; no other
 * dependency).
 *
 * Faults:
 * - `latency(ms)`: every chunk read from either side is delivered `ms` later
 *   (a delay line: chunks keep their order and are not serialized by it).
 * - `chunk(size, { gapMs })`: every write to either side is cut into
 *   `size`-byte pieces, each a separate write issued after the previous one
 *   completed and the event loop turned once. That is fast, but a receiver
 *   slower than the proxy reads several pieces at once (measured for 153
 *   bytes in 1-byte pieces, read through respite's transport in another
 *   process: 2–20 reads under Bun, 13–53 under Deno). With `gapMs` (0 or
 *   more) a timer of that many ms separates the pieces, so each arrives on
 *   its own (153 reads of 153 bytes in the same measurement), at a few ms
 *   per piece.
 * - `stall(direction)`: bytes are held, both ways (or only `"up"`,
 *   client→server, or `"down"`, server→client), until `resume()`, which
 *   flushes them in order. Connections stay open. With `{ only: word }`,
 *   only the connections that sent a request with that argument (any case,
 *   among its first 6), e.g. `"TRACKING"` for a tracking connection.
 * - `blackhole()`: bytes are discarded, both ways, with no FIN and no RST.
 *   Connections accepted while it is on are black-holed too. A connection
 *   that lost bytes stays black-holed until it closes, also after
 *   `resume()`: a TCP stream cannot carry on with a hole in it (a real
 *   network either retransmits, which is `stall()`, or the connection is
 *   dead). New connections after `resume()` are clean.
 * - `halfClose()`: for every current connection, ends the server→client
 *   direction (a FIN to the client; later server bytes are discarded) while
 *   client→server bytes still reach the server.
 * - `drop()`: ends every current connection on both sides (FIN).
 * - `reset()`: destroys every current connection on both sides with an RST
 *   (`socket.resetAndDestroy()`, or `destroy()` where it is missing).
 * - `refuse(true)`: new connections are destroyed (RST) as soon as they are
 *   accepted, until `refuse(false)`.
 * - `resume()`: no latency, no chunking, no stall, no black-hole for new
 *   bytes; stalled bytes are flushed.
 *
 * Counting operations. The proxy reads the RESP stream both ways (a frame
 * counter, not a decoder): each top-level frame from the client is a
 * request (an inline command line counts as one), each top-level frame from
 * the server that is not a RESP3 push (`>`) is a reply. A connection that
 * sent SUBSCRIBE, PSUBSCRIBE or SSUBSCRIBE is a subscriber connection from
 * then on: its frames are left out, since its messages answer no request.
 * A request is outstanding from when the proxy received it until a reply
 * frame was delivered to the client after it (FIFO, as Redis answers).
 * `inFlightCut` adds up the outstanding requests that a fault hit:
 * - at `drop()`, `reset()` and `halfClose()`: those of the connections cut;
 * - when the server ends or breaks a connection (the server died): those of
 *   that connection;
 * - at `stall()` and `blackhole()`: those outstanding when it began, plus
 *   every request received while it is on;
 * - every request received on a connection after it was cut (by a fault or
 *   by the server), before the client noticed.
 * An operation hit by two faults counts twice. Latency and chunking
 * interrupt nothing; `chunksDelayed` and `chunksSplit` show that they
 * applied.
 */
import net from "node:net";
import { setImmediate } from "node:timers";

/** Counters of a {@linkcode FaultProxy}, as a snapshot. */
export interface FaultProxyStats {
  /** Connections accepted so far. */
  connections: number;
  /** Connections open now. */
  open: number;
  /** Bytes written to the server. */
  bytesUp: number;
  /** Bytes written to clients. */
  bytesDown: number;
  /** Chunks held back by `latency()` or `stall()` before delivery. */
  chunksDelayed: number;
  /** Chunks cut into more than one piece by `chunk()`. */
  chunksSplit: number;
  /** Bytes discarded (black-hole, or after a half-close). */
  bytesDiscarded: number;
  /** Connections ended by `drop()`, `reset()`, `halfClose()` or `refuse()`. */
  connectionsCut: number;
  /** Outstanding requests a fault hit (see the module doc). */
  inFlightCut: number;
  /** Requests outstanding now, over every open non-subscriber connection. */
  outstanding: number;
  /** Requests received from clients (non-subscriber connections). */
  requests: number;
  /** Replies delivered to clients (non-subscriber connections). */
  replies: number;
  /** Connections whose server side could not be opened (server down). */
  upstreamFailed: number;
  /** Connections the server side ended or broke while open. */
  serverClosed: number;
}

/** A running fault proxy (see the module doc). */
export interface FaultProxy {
  /** The port it listens on, on 127.0.0.1. */
  readonly port: number;
  /** `redis://127.0.0.1:<port>`. */
  readonly url: string;
  /** Delays every chunk by `ms`, both directions (0: off). */
  latency(ms: number): void;
  /**
   * Cuts writes into `size`-byte pieces (`null`: off); `gapMs` puts a timer
   * between pieces (see the module doc).
   */
  chunk(size: number | null, options?: { gapMs?: number }): void;
  /**
   * Holds all bytes, both ways (default) or one way, until `resume()`;
   * `only`: of the connections that sent that argument (see the module doc).
   */
  stall(
    direction?: "both" | "up" | "down",
    options?: { only?: string },
  ): void;
  /** Discards all bytes, both ways, until `resume()` (see the module doc). */
  blackhole(): void;
  /** Ends the server→client direction of every current connection. */
  halfClose(): void;
  /** Ends every current connection (FIN both sides). */
  drop(): void;
  /** Destroys every current connection with an RST. */
  reset(): void;
  /** Refuses (destroys at once) new connections while on. */
  refuse(on: boolean): void;
  /** Back to a clean pipe; flushes stalled bytes. */
  resume(): void;
  /** A snapshot of the counters. */
  readonly stats: FaultProxyStats;
  /**
   * The outstanding requests (see the module doc) of every open connection:
   * for each, its first 6 arguments (64 bytes of each at most).
   */
  outstandingRequests(): string[][];
  /** Closes the listener and every connection. */
  close(): Promise<void>;
}

const CR = 13;
const LF = 10;
const PUSH = 0x3e; // ">"
/** How many leading arguments of a request are kept, and how many bytes of each. */
const ARG_COUNT = 6;
const ARG_BYTES = 64;
const ATTRIBUTE = 0x7c; // "|"

/**
 * Counts complete top-level RESP frames in a byte stream fed in any chunks.
 * Aggregates are followed element by element; bulk payloads are skipped by
 * their declared length. Attributes (`|`) are skipped and not counted. The
 * first ARG_COUNT bulk strings of a top-level array (up to ARG_BYTES bytes
 * each) are passed on, to recognize SUBSCRIBE and to tell which requests are
 * outstanding.
 */
export class FrameCounter {
  /** Elements left in each open aggregate, innermost last. */
  #left: number[] = [];
  /** Elements seen so far in each open aggregate. */
  #seen: number[] = [];
  #isAttribute: boolean[] = [];
  #state: "type" | "line" | "bulk" = "type";
  #type = 0;
  #topType = 0;
  #line = "";
  /** Payload + CRLF bytes left of the current bulk string. */
  #skip = 0;
  #capture = false;
  #args: string[] = [];

  readonly onFrame: (type: number, args: string[]) => void;

  constructor(onFrame: (type: number, args: string[]) => void) {
    this.onFrame = onFrame;
  }

  feed(b: Uint8Array): void {
    let i = 0;
    while (i < b.length) {
      if (this.#state === "bulk") {
        const n = Math.min(this.#skip, b.length - i);
        if (this.#capture) {
          for (let j = i; j < i + n; j++) {
            // The payload ends 2 bytes (CRLF) before the end of the skip.
            const payloadLeft = this.#skip - (j - i) - 2;
            const a = this.#args;
            if (payloadLeft > 0 && a[a.length - 1].length < ARG_BYTES) {
              a[a.length - 1] += String.fromCharCode(b[j]);
            }
          }
        }
        this.#skip -= n;
        i += n;
        if (this.#skip === 0) {
          this.#state = "type";
          this.#capture = false;
          this.#valueDone();
        }
        continue;
      }
      const c = b[i++];
      if (this.#state === "type") {
        if (c === CR || c === LF) continue; // empty inline lines
        this.#type = c;
        this.#line = "";
        this.#state = "line";
        continue;
      }
      if (c === LF) {
        this.#state = "type";
        this.#lineDone();
      } else if (c !== CR && this.#line.length < 64) {
        this.#line += String.fromCharCode(c);
      }
    }
  }

  #lineDone(): void {
    const t = this.#type;
    if (this.#left.length === 0) {
      this.#topType = t;
      this.#args = [];
    }
    const n = Number(this.#line);
    switch (t) {
      case 0x24: // $ bulk string
      case 0x21: // ! bulk error
      case 0x3d: // = verbatim string
        if (!(n >= 0)) return this.#valueDone(); // null
        this.#skip = n + 2;
        this.#state = "bulk";
        this.#capture = this.#left.length === 1 &&
          this.#seen[0] < ARG_COUNT;
        if (this.#capture) this.#args.push("");
        return;
      case 0x2a: // * array
      case 0x7e: // ~ set
      case PUSH:
      case 0x25: // % map
      case ATTRIBUTE: {
        const count = !(n > 0) ? 0 : t === 0x25 || t === ATTRIBUTE ? n * 2 : n;
        if (count === 0) return t === ATTRIBUTE ? undefined : this.#valueDone();
        this.#left.push(count);
        this.#seen.push(0);
        this.#isAttribute.push(t === ATTRIBUTE);
        return;
      }
      default: // a simple type, or (at top level) an inline command
        return this.#valueDone();
    }
  }

  /** A value finished: close the aggregates it completes; count a frame. */
  #valueDone(): void {
    while (this.#left.length > 0) {
      const top = this.#left.length - 1;
      this.#seen[top]++;
      if (--this.#left[top] > 0) return;
      this.#left.pop();
      this.#seen.pop();
      // An attribute is not a value: what follows it is.
      if (this.#isAttribute.pop()) return;
    }
    const args = this.#args;
    this.#args = [];
    this.onFrame(this.#topType, args);
  }
}

const SUBSCRIBE = new Set(["SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE"]);

interface Item {
  bytes: Uint8Array;
  /** performance.now() when it was read. */
  at: number;
  /** Top-level frames this chunk completes (replies, for the down pipe). */
  frames: number;
}

/** One direction of one connection: a queue and its pump. */
interface Pipe {
  dest: net.Socket;
  up: boolean;
  queue: Item[];
  pumping: boolean;
  /** The source ended: end `dest` once the queue is written. */
  eof: boolean;
  /** Discard everything from now on (cut, half-closed). */
  discard: boolean;
  timer: ReturnType<typeof setTimeout> | undefined;
}

interface Conn {
  client: net.Socket;
  server: net.Socket;
  up: Pipe;
  down: Pipe;
  connected: boolean;
  subscriber: boolean;
  /** Requests received from the client. */
  requests: number;
  /** Replies delivered to the client. */
  replies: number;
  /** The leading arguments of each outstanding request, oldest first. */
  pending: string[][];
  /** Every leading argument it sent (upper case), for `stall({ only })`. */
  args: Set<string>;
  /** Black-holed: every byte is discarded until it closes. */
  dead: boolean;
  halfClosed: boolean;
  /** Already counted as cut (by a fault, or the server went away). */
  cut: boolean;
  closed: boolean;
  killTimer: ReturnType<typeof setTimeout> | undefined;
}

function destroyWithReset(s: net.Socket): void {
  const r = (s as { resetAndDestroy?: () => void }).resetAndDestroy;
  try {
    if (typeof r === "function" && !s.destroyed) r.call(s);
    else s.destroy();
  } catch {
    s.destroy();
  }
}

/** Resolves after the event loop has run I/O callbacks once more. */
const nextTurn = (): Promise<void> =>
  new Promise<void>((resolve) => setImmediate(resolve));

function pipe(dest: net.Socket, up: boolean): Pipe {
  return {
    dest,
    up,
    queue: [],
    pumping: false,
    eof: false,
    discard: false,
    timer: undefined,
  };
}

/**
 * Starts a fault proxy on a free port of 127.0.0.1 in front of `target`.
 *
 * @param target Where to connect each accepted connection (default host
 *   127.0.0.1).
 * @returns The running proxy.
 */
export async function startFaultProxy(
  target: { hostname?: string; port: number },
): Promise<FaultProxy> {
  const host = target.hostname ?? "127.0.0.1";
  const conns = new Set<Conn>();
  let latencyMs = 0;
  let chunkSize: number | null = null;
  let chunkGap: number | undefined;
  let stalled = false;
  let stallWay: "both" | "up" | "down" = "both";
  let stallOnly: string | null = null;
  const stalls = (c: Conn) =>
    stalled && (stallOnly === null || c.args.has(stallOnly));
  const held = (c: Conn, p: Pipe) =>
    stalls(c) && (stallWay === "both" || (stallWay === "up") === p.up);
  let blackholed = false;
  let refusing = false;
  const s = {
    connections: 0,
    bytesUp: 0,
    bytesDown: 0,
    chunksDelayed: 0,
    chunksSplit: 0,
    bytesDiscarded: 0,
    connectionsCut: 0,
    inFlightCut: 0,
    requests: 0,
    replies: 0,
    upstreamFailed: 0,
    serverClosed: 0,
  };

  const outstanding = (c: Conn) =>
    c.subscriber ? 0 : Math.max(0, c.requests - c.replies);

  /** Writes; resolves whether the bytes were handed over. */
  const write = (sock: net.Socket, bytes: Uint8Array): Promise<boolean> =>
    new Promise<boolean>((resolve) => {
      if (sock.destroyed || sock.writableEnded) return resolve(false);
      try {
        sock.write(bytes, (err) => resolve(!err));
      } catch {
        resolve(false);
      }
    });

  function discardQueue(p: Pipe): void {
    clearTimeout(p.timer);
    p.timer = undefined;
    for (const item of p.queue) s.bytesDiscarded += item.bytes.length;
    p.queue = [];
  }

  async function pump(c: Conn, p: Pipe): Promise<void> {
    if (p.pumping) return;
    p.pumping = true;
    try {
      while (p.queue.length > 0) {
        if (c.closed || c.dead || p.discard) return discardQueue(p);
        if (held(c, p)) return; // resume() pumps again
        const head = p.queue[0];
        const wait = head.at + latencyMs - performance.now();
        if (latencyMs > 0 && wait > 0) {
          clearTimeout(p.timer);
          p.timer = setTimeout(() => {
            p.timer = undefined;
            void pump(c, p);
          }, wait);
          return;
        }
        p.queue.shift();
        const size = chunkSize;
        if (size !== null && head.bytes.length > size) s.chunksSplit++;
        const step = size ?? head.bytes.length;
        let written = 0;
        for (let i = 0; i < head.bytes.length; i += step) {
          if (c.closed || c.dead || p.discard) break;
          const piece = head.bytes.subarray(i, i + step);
          if (!await write(p.dest, piece)) break;
          written += piece.length;
          if (p.up) s.bytesUp += piece.length;
          else s.bytesDown += piece.length;
          // Let the event loop turn (or a timer run), between pieces.
          if (step < head.bytes.length) {
            if (chunkGap === undefined) await nextTurn();
            else await new Promise((r) => setTimeout(r, chunkGap));
          }
        }
        if (!p.up && written === head.bytes.length) {
          c.replies += head.frames;
          if (!c.subscriber) {
            s.replies += head.frames;
            c.pending.splice(0, head.frames);
          }
        }
      }
    } finally {
      p.pumping = false;
    }
    if (p.eof && p.queue.length === 0 && !c.closed) finish(c, p);
  }

  /** The source of `p` ended and its bytes are out: pass the FIN on. */
  function finish(c: Conn, p: Pipe): void {
    if (p.up) {
      if (!c.dead) c.server.end();
      return;
    }
    // The server ended: what the client still waits for will not come.
    if (!c.cut) {
      c.cut = true;
      s.serverClosed++;
      s.inFlightCut += outstanding(c);
    }
    c.client.end();
  }

  function closeConn(c: Conn): void {
    if (c.closed) return;
    c.closed = true;
    conns.delete(c);
    clearTimeout(c.up.timer);
    clearTimeout(c.down.timer);
    clearTimeout(c.killTimer);
    c.client.destroy();
    c.server.destroy();
  }

  /** The proxy ends `c`: FIN both ways, or RST with `hard`. */
  function cut(c: Conn, hard: boolean): void {
    if (c.closed) return;
    if (!c.cut) {
      c.cut = true;
      s.inFlightCut += outstanding(c);
    }
    s.connectionsCut++;
    c.up.discard = c.down.discard = true;
    discardQueue(c.up);
    discardQueue(c.down);
    if (hard) {
      destroyWithReset(c.client);
      destroyWithReset(c.server);
      closeConn(c);
    } else {
      c.client.end();
      c.server.end();
      // Both peers normally close at once; do not wait for them forever.
      c.killTimer = setTimeout(() => closeConn(c), 1_000);
    }
  }

  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    s.connections++;
    client.on("error", () => {});
    if (refusing) {
      s.connectionsCut++;
      destroyWithReset(client);
      return;
    }
    client.setNoDelay(true);
    const upstream = net.connect({
      host,
      port: target.port,
      allowHalfOpen: true,
    });
    upstream.on("error", () => {});
    upstream.setNoDelay(true);
    const c: Conn = {
      client,
      server: upstream,
      up: pipe(upstream, true),
      down: pipe(client, false),
      connected: false,
      subscriber: false,
      requests: 0,
      replies: 0,
      pending: [],
      args: new Set(),
      dead: blackholed,
      halfClosed: false,
      cut: false,
      closed: false,
      killTimer: undefined,
    };
    conns.add(c);
    let frames = 0;
    const upCounter = new FrameCounter((_type, args) => {
      for (const a of args) c.args.add(a.toUpperCase());
      if (
        !c.subscriber && args.length > 0 &&
        SUBSCRIBE.has(args[0].toUpperCase())
      ) {
        c.subscriber = true;
        s.requests -= c.requests;
        s.replies -= c.replies;
        c.pending = [];
      }
      c.requests++;
      if (c.subscriber) return;
      c.pending.push(args);
      s.requests++;
      // Sent into a held, black-holed or cut path: it will not be answered
      // (stall: not before resume()).
      if (stalls(c) || c.dead || c.cut) s.inFlightCut++;
    });
    const downCounter = new FrameCounter((type) => {
      if (type !== PUSH) frames++;
    });
    const onData = (p: Pipe, counter: FrameCounter) => (d: Uint8Array) => {
      frames = 0;
      counter.feed(d);
      if (c.closed || c.dead || p.discard) {
        s.bytesDiscarded += d.length;
        return;
      }
      if (latencyMs > 0 || held(c, p)) s.chunksDelayed++;
      p.queue.push({ bytes: d, at: performance.now(), frames });
      void pump(c, p);
    };
    client.on("data", onData(c.up, upCounter));
    upstream.on("data", onData(c.down, downCounter));
    upstream.on("connect", () => c.connected = true);
    const ended = (p: Pipe) => () => {
      if (p.eof) return;
      p.eof = true;
      if (!p.up && !c.connected) {
        s.upstreamFailed++;
        return closeConn(c);
      }
      if (c.dead || p.discard) {
        if (!p.up) finish(c, p);
        // The client gave up on a black-holed or half-closed connection.
        else closeConn(c);
        return;
      }
      void pump(c, p);
    };
    client.on("end", ended(c.up));
    upstream.on("end", ended(c.down));
    // A break (RST) ends a side as well as a FIN does.
    upstream.on("close", ended(c.down));
    client.on("close", () => closeConn(c));
  });
  server.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;

  const pumpAll = () => {
    for (const c of conns) {
      void pump(c, c.up);
      void pump(c, c.down);
    }
  };

  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    latency(ms: number) {
      if (!(ms >= 0)) throw new RangeError("latency must be >= 0 ms");
      latencyMs = ms;
      pumpAll();
    },
    chunk(size: number | null, options: { gapMs?: number } = {}) {
      if (size !== null && !(Number.isInteger(size) && size > 0)) {
        throw new RangeError("chunk size must be a positive integer or null");
      }
      const gap = options.gapMs;
      if (gap !== undefined && !(gap >= 0)) {
        throw new RangeError("gapMs must be >= 0");
      }
      chunkSize = size;
      chunkGap = gap;
    },
    stall(
      direction: "both" | "up" | "down" = "both",
      options: { only?: string } = {},
    ) {
      if (!["both", "up", "down"].includes(direction)) {
        throw new TypeError('stall() takes "both", "up" or "down"');
      }
      if (stalled) return;
      stalled = true;
      stallWay = direction;
      stallOnly = options.only?.toUpperCase() ?? null;
      for (const c of conns) {
        if (!c.dead && stalls(c)) s.inFlightCut += outstanding(c);
      }
    },
    blackhole() {
      blackholed = true;
      for (const c of conns) {
        if (c.dead) continue;
        c.dead = true;
        s.inFlightCut += outstanding(c);
        discardQueue(c.up);
        discardQueue(c.down);
      }
    },
    halfClose() {
      for (const c of conns) {
        if (c.halfClosed || c.cut || c.closed) continue;
        c.halfClosed = true;
        c.cut = true;
        s.connectionsCut++;
        s.inFlightCut += outstanding(c);
        c.down.discard = true;
        discardQueue(c.down);
        c.client.end();
        if (c.up.eof) closeConn(c);
      }
    },
    drop() {
      for (const c of [...conns]) cut(c, false);
    },
    reset() {
      for (const c of [...conns]) cut(c, true);
    },
    refuse(on: boolean) {
      refusing = on;
    },
    resume() {
      latencyMs = 0;
      chunkSize = null;
      chunkGap = undefined;
      stalled = false;
      stallOnly = null;
      blackholed = false;
      pumpAll();
    },
    get stats(): FaultProxyStats {
      let out = 0;
      for (const c of conns) out += outstanding(c);
      return { ...s, open: conns.size, outstanding: out };
    },
    outstandingRequests() {
      const out: string[][] = [];
      for (const c of conns) {
        if (!c.subscriber) out.push(...c.pending.map((a) => [...a]));
      }
      return out;
    },
    async close() {
      for (const c of [...conns]) closeConn(c);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
