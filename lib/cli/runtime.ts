/**
 * What the command line needs of its runtime — its arguments, a child
 * process with the terminal's stdio, signals, output and exit — on Deno, Bun
 * and Node alike, through their shared `node:` modules. They are imported
 * through variables (see lib/transport/node.ts for why), so that nothing in
 * `mod.ts`'s graph names a `node:` module.
 *
 * @module
 */

type ChildProcessModule = typeof import("node:child_process");
type NodeProcess = typeof import("node:process");
type OsModule = typeof import("node:os");

const CHILD_PROCESS: string = "node:child_process";
const PROCESS: string = "node:process";
const OS: string = "node:os";

/** The signals the command line forwards to its command. */
export type ForwardedSignal = "SIGINT" | "SIGTERM" | "SIGHUP";

/** How a child process ended. */
export interface ChildExit {
  /** Its exit code, or null when a signal ended it. */
  code: number | null;
  /** The signal that ended it, if one did. */
  signal: string | null;
}

/** A running child process. */
export interface Child {
  /** Its process id. */
  readonly pid: number | undefined;
  /** Sends it a signal (ignored once it exited). */
  kill(signal: ForwardedSignal | "SIGKILL"): void;
  /** Settles once it exited; rejects if it could not be started. */
  readonly exited: Promise<ChildExit>;
}

/** The runtime seam of the command line. */
export interface CliRuntime {
  /** The arguments after the program's name. */
  readonly args: readonly string[];
  /** This process's id. */
  readonly pid: number;
  /** The machine's host name. */
  hostname(): string;
  /** Starts `command` with this process's stdin, stdout and stderr. */
  spawn(command: string, args: readonly string[]): Child;
  /** Listens for `signal`; returns a function that stops listening. */
  onSignal(signal: ForwardedSignal, listener: () => void): () => void;
  /** The number of a signal, for the 128 + N exit code. */
  signalNumber(signal: string): number;
  /** Writes a line to stdout. */
  out(line: string): void;
  /** Writes a line to stderr. */
  err(line: string): void;
  /** Ends the process with `code`. */
  exit(code: number): never;
}

/**
 * The runtime of this process.
 *
 * @returns The seam, over `node:child_process`, `node:process` and `node:os`.
 */
export async function processRuntime(): Promise<CliRuntime> {
  const cp = await import(CHILD_PROCESS) as ChildProcessModule;
  const proc = (await import(PROCESS) as { default: NodeProcess }).default;
  const os = await import(OS) as OsModule;
  return {
    args: proc.argv.slice(2),
    pid: proc.pid,
    hostname: () => os.hostname(),
    spawn(command, args) {
      // Deno's node:child_process reports a command that trapped a forwarded
      // signal and exited with its own code as ended by that signal: Deno's
      // own API reports what happened.
      const deno = (globalThis as { Deno?: DenoLike }).Deno;
      if (deno !== undefined) return denoSpawn(deno, command, args);
      const child = cp.spawn(command, [...args], { stdio: "inherit" });
      const exited = new Promise<ChildExit>((resolve, reject) => {
        child.once("error", reject);
        child.once("exit", (code, signal) => resolve({ code, signal }));
      });
      return {
        pid: child.pid,
        kill(signal) {
          if (child.exitCode === null && child.signalCode === null) {
            try {
              child.kill(signal);
            } catch {
              // gone meanwhile
            }
          }
        },
        exited,
      };
    },
    onSignal(signal, listener) {
      proc.on(signal, listener);
      return () => void proc.off(signal, listener);
    },
    signalNumber(signal) {
      return (os.constants.signals as Record<string, number>)[signal] ?? 0;
    },
    out: (line) => void proc.stdout.write(line + "\n"),
    err: (line) => void proc.stderr.write(line + "\n"),
    exit(code): never {
      proc.exit(code);
      throw new Error("unreachable: process.exit returned");
    },
  };
}

interface DenoLike {
  Command: new (command: string, options: {
    args: string[];
    stdin: "inherit";
    stdout: "inherit";
    stderr: "inherit";
  }) => {
    spawn(): {
      pid: number;
      kill(signal: string): void;
      status: Promise<{ code: number; signal: string | null }>;
    };
  };
}

/** A child process through `Deno.Command`. */
function denoSpawn(
  deno: DenoLike,
  command: string,
  args: readonly string[],
): Child {
  const child = new deno.Command(command, {
    args: [...args],
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  let done = false;
  const exited = child.status.then(({ code, signal }) => {
    done = true;
    return signal === null ? { code, signal: null } : { code: null, signal };
  });
  return {
    pid: child.pid,
    kill(signal) {
      if (done) return;
      try {
        child.kill(signal);
      } catch {
        // gone meanwhile
      }
    },
    exited,
  };
}
