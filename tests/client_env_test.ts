/**
 * `connect()` without a URL when `REDIS_URL` cannot be read (Deno without
 * `--allow-env`): it tries the default, and says so. A connect error names
 * the URL it tried (never a password), says that `REDIS_URL` could not be
 * read, and names the flag that fixes it; a success warns. Runs `deno run`
 * in a child process under `deno test` and `bun test` alike (under Bun, the
 * `deno` on the PATH or RESPITE_DENO; without one the test is skipped).
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { test } from "./_harness.ts";
import { freePort } from "../testing/redis.ts";
import { findDeno, run } from "./fixtures/tools.ts";

const deno = findDeno();
const worker = fileURLToPath(
  new URL("./fixtures/env_worker.ts", import.meta.url),
);
const SECRET = "s3cr3t-pw-in-redis-url";
const skip = deno === undefined
  ? "no deno binary (set RESPITE_DENO or put deno on the PATH): this case runs `deno run` without --allow-env"
  : false;

/** Runs the worker with `flags`, REDIS_URL naming a closed port. */
async function runWorker(flags: string[]) {
  const port = await freePort(); // nothing listens there
  const r = await run(deno!, ["run", "--no-prompt", ...flags, worker], 30_000, {
    env: {
      REDIS_URL: `redis://app:${SECRET}@127.0.0.1:${port}/2`,
      NO_COLOR: "1",
    },
  });
  assert.equal(r.code, 0, `deno run exited with ${r.code}: ${r.stderr}`);
  const out = JSON.parse(r.stdout.trim().split("\n").pop()!);
  for (const text of [r.stdout, r.stderr]) {
    assert.ok(!text.includes(SECRET), `the password leaked: ${text}`);
  }
  return { out, stderr: r.stderr, port };
}

test(
  "Deno without --allow-env: connect() says it could not read REDIS_URL, which URL it tried, and that --allow-env=REDIS_URL fixes it",
  async () => {
    const { out, stderr } = await runWorker(["--allow-net"]);
    if (out.connected) {
      // Something answers on 127.0.0.1:6379 here: the default was used,
      // and a warning says so.
      assert.deepEqual(
        { hostname: out.info.hostname, port: out.info.port },
        { hostname: "127.0.0.1", port: 6379 },
      );
      assert.match(stderr, /REDIS_URL could not be read/);
      assert.match(stderr, /--allow-env=REDIS_URL/);
      assert.match(stderr, /redis:\/\/127\.0\.0\.1:6379/);
      return;
    }
    assert.equal(out.name, "ConnectionError");
    assert.match(
      out.message,
      /^REDIS_URL could not be read \(Deno was not given env access: run with --allow-env=REDIS_URL, or pass the URL to connect\(\)\), so connect\(\) without a URL tried the default, redis:\/\/127\.0\.0\.1:6379: Could not connect to 127\.0\.0\.1:6379: /,
    );
    assert.match(out.cause, /^ConnectionError: Could not connect/);
  },
  { timeout: 60_000, skip },
);

test(
  "with --allow-env=REDIS_URL, the flag the message names, connect() uses REDIS_URL (its port, not the default) and the password stays out of the error",
  async () => {
    const { out, port } = await runWorker([
      "--allow-net",
      "--allow-env=REDIS_URL",
    ]);
    assert.equal(out.connected, false);
    assert.equal(out.name, "ConnectionError");
    assert.match(
      out.message,
      new RegExp(`^Could not connect to 127\\.0\\.0\\.1:${port}: `),
    );
    assert.doesNotMatch(out.message, /REDIS_URL/);
  },
  { timeout: 60_000, skip },
);
