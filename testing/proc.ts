/**
 * Starting and stopping OS processes under Deno (Deno.Command) and Bun
 * (Bun.spawn). Processes are stopped only by their own pid.
 */

export interface Proc {
  pid: number;
  /** Sends a signal to this process only. */
  kill(signal?: "SIGKILL" | "SIGTERM" | "SIGSTOP" | "SIGCONT"): void;
  /** Resolves with the exit code (or the signal's name) once it exited. */
  exited: Promise<number | string>;
  /** All of stdout, once the process exited (when piped). */
  stdout(): Promise<string>;
  /** All of stderr, once the process exited (when piped). */
  stderr(): Promise<string>;
}

export interface SpawnOptions {
  env?: Record<string, string>;
  /** Pipe stdout/stderr so they can be read (default: piped). */
  output?: "piped" | "inherit" | "null";
  cwd?: string;
}

interface DenoLike {
  Command: new (cmd: string, o: unknown) => {
    spawn(): {
      pid: number;
      kill(sig: string): void;
      status: Promise<{ code: number; signal: string | null }>;
      stdout: ReadableStream<Uint8Array>;
      stderr: ReadableStream<Uint8Array>;
    };
  };
  execPath(): string;
}
interface BunLike {
  spawn(cmd: string[], o: unknown): {
    pid: number;
    kill(sig?: string | number): void;
    exited: Promise<number>;
    signalCode: string | null;
    stdout: ReadableStream<Uint8Array>;
    stderr: ReadableStream<Uint8Array>;
  };
  which(name: string): string | null;
}

const g = globalThis as unknown as {
  Deno?: DenoLike;
  Bun?: BunLike;
  process?: { execPath: string; env: Record<string, string> };
};

async function readAll(
  stream: ReadableStream<Uint8Array> | null | undefined,
): Promise<string> {
  if (!stream) return "";
  return await new Response(stream).text();
}

export function spawn(
  cmd: string,
  args: string[],
  opts: SpawnOptions = {},
): Proc {
  const mode = opts.output ?? "piped";
  if (g.Deno) {
    const child = new g.Deno.Command(cmd, {
      args,
      env: opts.env,
      cwd: opts.cwd,
      stdin: "null",
      stdout: mode,
      stderr: mode,
    }).spawn();
    const out = mode === "piped" ? readAll(child.stdout) : Promise.resolve("");
    const err = mode === "piped" ? readAll(child.stderr) : Promise.resolve("");
    const exited = child.status.then(async (s) => {
      await Promise.all([out, err]);
      return s.signal ?? s.code;
    });
    return {
      pid: child.pid,
      kill: (sig = "SIGTERM") => {
        try {
          child.kill(sig);
        } catch {
          // already gone
        }
      },
      exited,
      stdout: () => exited.then(() => out),
      stderr: () => exited.then(() => err),
    };
  }
  const bun = g.Bun!;
  const m = mode === "null"
    ? "ignore"
    : mode === "inherit"
    ? "inherit"
    : "pipe";
  const child = bun.spawn([cmd, ...args], {
    env: opts.env ? { ...g.process!.env, ...opts.env } : undefined,
    cwd: opts.cwd,
    stdin: "ignore",
    stdout: m,
    stderr: m,
  });
  const out = m === "pipe" ? readAll(child.stdout) : Promise.resolve("");
  const err = m === "pipe" ? readAll(child.stderr) : Promise.resolve("");
  const exited = child.exited.then(async (code) => {
    await Promise.all([out, err]);
    return child.signalCode ?? code;
  });
  return {
    pid: child.pid,
    kill: (sig = "SIGTERM") => {
      try {
        child.kill(sig);
      } catch {
        // already gone
      }
    },
    exited,
    stdout: () => exited.then(() => out),
    stderr: () => exited.then(() => err),
  };
}

/** The current runtime's executable, to start worker processes with. */
export function runtimeExecutable(): string {
  if (g.Deno) return g.Deno.execPath();
  return g.process!.execPath;
}

/** Arguments that run a TypeScript file with the current runtime. */
export function runArgs(file: string, args: string[] = []): [string, string[]] {
  if (g.Deno) return [g.Deno.execPath(), ["run", "-A", file, ...args]];
  return [g.process!.execPath, ["run", file, ...args]];
}

/**
 * The arguments a script run by {@linkcode runArgs} was given (after the
 * runtime and the file), under Deno, Bun and Node alike.
 */
export function scriptArgs(): string[] {
  return g.Deno !== undefined
    ? (g.Deno as unknown as { args: string[] }).args
    : (g.process as unknown as { argv: string[] }).argv.slice(2);
}
