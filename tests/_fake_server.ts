/**
 * A fake "Redis" for tests that need a server to misbehave: a plain TCP
 * listener on 127.0.0.1 that records what it receives and writes whatever
 * bytes a test tells it to. Uses `Deno.listen` under Deno and `Bun.listen`
 * under Bun. Only for malformed bytes and silence: behaviour that Redis
 * decides is tested against real redis-server processes.
 */

/** One accepted connection. */
export interface FakeConn {
  /** Everything received so far, one char per byte (latin-1). */
  readonly received: string;
  /** True once the connection is closed, by either side. */
  readonly isClosed: boolean;
  /** Resolves when the connection is closed, by either side. */
  readonly closed: Promise<void>;
  /**
   * Resolves once `received` contains `text`; rejects after `ms` or if the
   * connection closes first.
   */
  waitFor(text: string, ms?: number): Promise<void>;
  /** Writes bytes; a string is written one byte per char (latin-1). */
  write(data: string | Uint8Array): Promise<void>;
  /** Closes the connection from the server's side. */
  close(): Promise<void>;
}

/** A listening fake server. */
export interface FakeServer {
  readonly port: number;
  /** Every connection accepted so far, in order. */
  readonly connections: readonly FakeConn[];
  /** Resolves with the `index`-th accepted connection (default: the next). */
  accepted(index?: number, ms?: number): Promise<FakeConn>;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/** Called with each new connection, e.g. to script its replies. */
export type OnConnection = (conn: FakeConn) => void;

export function latin1(s: string): Uint8Array {
  return Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff);
}

function toBytes(data: string | Uint8Array): Uint8Array {
  return typeof data === "string" ? latin1(data) : data;
}

/** Shared bookkeeping: received bytes, waiters, the closed promise. */
class ConnState {
  received = "";
  isClosed = false;
  closed: Promise<void>;
  #resolveClosed!: () => void;
  #waiters = new Set<() => void>();

  constructor() {
    this.closed = new Promise((r) => this.#resolveClosed = r);
  }

  onData(chunk: Uint8Array): void {
    let s = "";
    for (let i = 0; i < chunk.length; i++) s += String.fromCharCode(chunk[i]);
    this.received += s;
    for (const w of [...this.#waiters]) w();
  }

  onClosed(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.#resolveClosed();
    for (const w of [...this.#waiters]) w();
  }

  waitFor(text: string, ms = 5_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.received.includes(text)) done();
        else if (this.isClosed) {
          done(new Error(`closed before ${JSON.stringify(text)} arrived`));
        }
      };
      const timer = setTimeout(
        () =>
          done(
            new Error(
              `${JSON.stringify(text)} did not arrive within ${ms} ms; got ${
                JSON.stringify(this.received)
              }`,
            ),
          ),
        ms,
      );
      const done = (err?: Error) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        if (err) reject(err);
        else resolve();
      };
      this.#waiters.add(check);
      check();
    });
  }
}

class Accepted {
  conns: FakeConn[] = [];
  #waiters = new Set<() => void>();

  add(c: FakeConn, onConnection?: OnConnection): void {
    this.conns.push(c);
    onConnection?.(c);
    for (const w of [...this.#waiters]) w();
  }

  wait(index: number, ms: number): Promise<FakeConn> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.conns.length > index) {
          clearTimeout(timer);
          this.#waiters.delete(check);
          resolve(this.conns[index]);
        }
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`no connection #${index} within ${ms} ms`));
      }, ms);
      this.#waiters.add(check);
      check();
    });
  }
}

interface DenoConn {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
}
interface DenoListener {
  addr: { port: number };
  accept(): Promise<DenoConn>;
  close(): void;
}
interface BunSocket {
  write(data: Uint8Array): number;
  end(): void;
}
interface BunListener {
  port: number;
  stop(closeActive?: boolean): void;
}

const g = globalThis as unknown as {
  Deno?: { listen(o: { hostname: string; port: number }): DenoListener };
  Bun?: {
    listen(o: {
      hostname: string;
      port: number;
      socket: {
        open(s: BunSocket): void;
        data(s: BunSocket, d: Uint8Array): void;
        close(s: BunSocket): void;
        error(s: BunSocket, e: unknown): void;
      };
    }): BunListener;
  };
};

/** Starts a fake server on a free port of 127.0.0.1. */
export function startFakeServer(onConnection?: OnConnection): FakeServer {
  return g.Deno ? denoServer(onConnection) : bunServer(onConnection);
}

function denoServer(onConnection?: OnConnection): FakeServer {
  const listener = g.Deno!.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = new Accepted();
  const loops: Promise<void>[] = [];
  let stopped = false;
  const acceptLoop = (async () => {
    while (!stopped) {
      let conn: DenoConn;
      try {
        conn = await listener.accept();
      } catch {
        break; // the listener was closed
      }
      const state = new ConnState();
      let shut = false;
      const shutdown = () => {
        if (shut) return;
        shut = true;
        try {
          conn.close();
        } catch {
          // already closed
        }
      };
      const readLoop = (async () => {
        const buf = new Uint8Array(64 * 1024);
        try {
          for (;;) {
            const n = await conn.read(buf);
            if (n === null) break;
            state.onData(buf.subarray(0, n));
          }
        } catch {
          // reset by the peer, or closed by us
        }
        shutdown();
        state.onClosed();
      })();
      loops.push(readLoop);
      accepted.add({
        get received() {
          return state.received;
        },
        get isClosed() {
          return state.isClosed;
        },
        closed: state.closed,
        waitFor: (text, ms) => state.waitFor(text, ms),
        write: async (data) => {
          const b = toBytes(data);
          for (let off = 0; off < b.length;) {
            off += await conn.write(b.subarray(off));
          }
        },
        close: async () => {
          shutdown();
          await readLoop;
        },
      }, onConnection);
    }
  })();
  return {
    port: listener.addr.port,
    get connections() {
      return accepted.conns;
    },
    accepted: (index = accepted.conns.length, ms = 5_000) =>
      accepted.wait(index, ms),
    close: async () => {
      stopped = true;
      try {
        listener.close();
      } catch {
        // already closed
      }
      await acceptLoop;
      await Promise.all(accepted.conns.map((c) => c.close()));
      await Promise.all(loops);
    },
  };
}

function bunServer(onConnection?: OnConnection): FakeServer {
  const accepted = new Accepted();
  const states = new Map<BunSocket, ConnState>();
  const listener = g.Bun!.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        const state = new ConnState();
        states.set(s, state);
        accepted.add({
          get received() {
            return state.received;
          },
          get isClosed() {
            return state.isClosed;
          },
          closed: state.closed,
          waitFor: (text, ms) => state.waitFor(text, ms),
          write: (data) => {
            const b = toBytes(data);
            const n = s.write(b);
            if (n !== b.length) {
              return Promise.reject(
                new Error(`fake server wrote ${n} of ${b.length} bytes`),
              );
            }
            return Promise.resolve();
          },
          close: async () => {
            if (!state.isClosed) s.end();
            await state.closed;
          },
        }, onConnection);
      },
      data(s, d) {
        states.get(s)?.onData(d);
      },
      close(s) {
        states.get(s)?.onClosed();
      },
      error() {},
    },
  });
  return {
    port: listener.port,
    get connections() {
      return accepted.conns;
    },
    accepted: (index = accepted.conns.length, ms = 5_000) =>
      accepted.wait(index, ms),
    close: async () => {
      await Promise.all(accepted.conns.map((c) => c.close()));
      listener.stop(true);
    },
  };
}
