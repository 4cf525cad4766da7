/**
 * Registers tests so one file runs unchanged under `deno test` and `bun test`:
 * under Deno each test is a `Deno.test` with the op and resource sanitizers
 * on (they catch leaked timers and sockets, and do not apply to `node:test`);
 * under Bun it is a `node:test` test.
 */
import { test as nodeTest } from "node:test";

export interface TestOptions {
  /** Fail the test after this many ms (default 60_000). */
  timeout?: number;
  /** Turn Deno's op/resource sanitizers off (only for teardown-style tests). */
  sanitize?: boolean;
  /** Skip, with a reason that is printed. */
  skip?: string | false;
}

type DenoTest = (t: {
  name: string;
  fn: () => Promise<void>;
  sanitizeOps: boolean;
  sanitizeResources: boolean;
  ignore?: boolean;
}) => void;

const denoTest = (globalThis as { Deno?: { test?: DenoTest } }).Deno?.test;

/** True when running under Deno. */
export const isDeno = denoTest !== undefined;
/** True when running under Bun. */
export const isBun =
  typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";
/** The runtime's name, for messages. */
export const runtime = isDeno ? "deno" : isBun ? "bun" : "node";

export function test(
  name: string,
  fn: () => Promise<void> | void,
  opts: TestOptions = {},
): void {
  const timeout = opts.timeout ?? 60_000;
  const run = async () => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        fn(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(new Error(`test "${name}" timed out after ${timeout} ms`)),
            timeout,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  };
  if (opts.skip) {
    console.warn(`SKIPPED ${name}: ${opts.skip}`);
  }
  if (denoTest) {
    denoTest({
      name,
      fn: run,
      sanitizeOps: opts.sanitize ?? true,
      sanitizeResources: opts.sanitize ?? true,
      ignore: !!opts.skip,
    });
  } else {
    nodeTest(name, { timeout: timeout + 5_000, skip: opts.skip || false }, run);
  }
}

/** Registers a last test that runs `fn` (sanitizers off): stop servers here. */
export function teardown(fn: () => Promise<void> | void): void {
  test("(teardown)", fn, { sanitize: false });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Settles like `p`, or rejects when it has not settled within `ms`. */
export async function within<T>(
  p: Promise<T>,
  ms: number,
  what: string,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${what} did not settle within ${ms} ms`)),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Polls `f` every 10 ms until it is true; rejects when `ms` ran out first.
 */
export async function until(
  what: string,
  ms: number,
  f: () => boolean | Promise<boolean>,
): Promise<void> {
  const deadline = performance.now() + ms;
  while (!await f()) {
    if (performance.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    }
    await sleep(10);
  }
}
