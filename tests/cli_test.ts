/**
 * The command line (lib/cli/), end to end with real processes under the
 * runtime running the tests: a command run under the lock and its exit code
 * passed through, two invocations contending, SIGTERM forwarded with the
 * lock released, a lock lost while the command runs (the CLI SIGSTOPped past
 * its TTL), --keep, status and reset with --json, and bad arguments.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect, Lock } from "../mod.ts";
import { type Proc, runArgs, spawn } from "../testing/proc.ts";
import { connectionsReceived, startRedis } from "../testing/redis.ts";
import { sleep, teardown, test, until } from "./_harness.ts";

const server = await startRedis();
const admin = await connect(server.url);
const dir = await mkdtemp(join(tmpdir(), "respite-cli-"));
const CLI = fileURLToPath(new URL("../lib/cli/main.ts", import.meta.url));
let n = 0;
const uniq = (s: string) => `cli:${Date.now()}:${n++}:${s}`;

/** Starts the CLI with `args` against the test server. */
function cli(args: string[], env: Record<string, string> = {}): Proc {
  const [cmd, argv] = runArgs(CLI, args);
  return spawn(cmd, argv, { env: { REDIS_URL: server.url, ...env } });
}

/** Runs the CLI to its end. */
async function run(
  args: string[],
  env?: Record<string, string>,
): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const p = cli(args, env);
  const [code, stdout, stderr] = await Promise.all([
    p.exited,
    p.stdout(),
    p.stderr(),
  ]);
  return { code, stdout, stderr };
}

const exists = async (path: string) => {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
};

/** The lines of stderr that are not the scripts' first-use warnings. */
const errLines = (stderr: string) =>
  stderr.split("\n").filter((l) => l !== "" && !l.endsWith(" not cached."));

test("the command's exit code passes through (0, 3, and 128 + N for a signal); the lock is held while it runs and released after", async () => {
  const name = uniq("codes");
  const key = new Lock(admin, name).keys.key;
  const ok = await run(["lock", name, "--", "sh", "-c", "echo out"]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(ok.stdout, "out\n");
  const three = await run([
    "lock",
    name,
    "--",
    "sh",
    "-c",
    // The lock is held while the command runs: ask Redis from inside.
    `test "$(redis-cli -p ${server.port} EXISTS '${key}')" = 1 && exit 3`,
  ]);
  assert.equal(three.code, 3, three.stderr);
  const killed = await run(["lock", name, "--", "sh", "-c", "kill -KILL $$"]);
  assert.equal(killed.code, 137);
  assert.equal(await admin.send("EXISTS", key), 0, "released");
  const missing = await run(["lock", name, "--", "respite-no-such-command"]);
  assert.equal(missing.code, 127);
  assert.match(errLines(missing.stderr).join("\n"), /cannot run/);
  assert.equal(await admin.send("EXISTS", key), 0, "released");
});

test("two invocations contend: --wait 0 exits with the busy code (75, or --busy-code), a waiting one runs after the holder", async () => {
  const name = uniq("contend");
  const key = new Lock(admin, name).keys.key;
  const mark = join(dir, `${name}.started`);
  const holder = cli([
    "lock",
    name,
    "--",
    "sh",
    "-c",
    `touch '${mark}'; sleep 0.8; echo holder-done`,
  ]);
  await until("the holder's command started", 10_000, () => exists(mark));
  const busy = await run(["lock", name, "--wait", "0", "--", "true"]);
  assert.equal(busy.code, 75);
  assert.deepEqual(errLines(busy.stderr), [
    `respite: lock ${name} is busy (not acquired within 0 ms)`,
  ]);
  const custom = await run([
    "lock",
    name,
    "--wait",
    "0",
    "--busy-code",
    "9",
    "--",
    "true",
  ]);
  assert.equal(custom.code, 9);
  // A waiter: runs once the holder released, and sees the holder finished.
  const waiter = await run([
    "lock",
    name,
    "--wait",
    "20000",
    "--",
    "sh",
    "-c",
    `test -e '${mark}' && echo waiter-ran`,
  ]);
  assert.equal(await holder.exited, 0);
  assert.equal(await holder.stdout(), "holder-done\n");
  assert.equal(waiter.code, 0, waiter.stderr);
  assert.equal(waiter.stdout, "waiter-ran\n");
  assert.equal(await admin.send("EXISTS", key), 0);
});

test("SIGTERM to the CLI is forwarded to the command; the lock is released and the command's code returned", async () => {
  const name = uniq("sigterm");
  const key = new Lock(admin, name).keys.key;
  const mark = join(dir, `${name}.started`);
  const p = cli([
    "lock",
    name,
    "--",
    "sh",
    "-c",
    `trap 'echo got-term; exit 7' TERM; touch '${mark}'; while :; do sleep 0.05; done`,
  ]);
  await until("the command started", 10_000, () => exists(mark));
  assert.equal(await admin.send("EXISTS", key), 1);
  p.kill("SIGTERM");
  assert.equal(await p.exited, 7);
  assert.equal(await p.stdout(), "got-term\n");
  assert.equal(await admin.send("EXISTS", key), 0, "released");
});

test("a lock lost while the command runs (CLI SIGSTOPped past its TTL, the lock taken by another): the command is stopped, exit with the lost code", async () => {
  const name = uniq("lost");
  const key = new Lock(admin, name).keys.key;
  const mark = join(dir, `${name}.started`);
  const p = cli([
    "lock",
    name,
    "--ttl",
    "300",
    "--lost-code",
    "42",
    "--",
    "sh",
    "-c",
    `trap 'echo stopped; exit 0' TERM; touch '${mark}'; while :; do sleep 0.05; done`,
  ]);
  await until("the command started", 10_000, () => exists(mark));
  p.kill("SIGSTOP");
  try {
    await until(
      "the lease ran out",
      5_000,
      async () => await admin.send("EXISTS", key) === 0,
    );
    const other = new Lock(admin, name, { ttl: 10_000 });
    assert.equal(await other.acquire({ wait: 0 }), true);
    await sleep(100);
  } finally {
    p.kill("SIGCONT");
  }
  assert.equal(await p.exited, 42);
  assert.equal(await p.stdout(), "stopped\n", "the command got SIGTERM");
  assert.match(errLines(await p.stderr()).join("\n"), /was lost/);
  const pttl = await admin.send<number>("PTTL", key);
  assert.ok(pttl > 5_000, `the other holder's lock is untouched (${pttl})`);
  await Lock.reset(admin, name);
});

test("--keep leaves the lock to expire at its TTL: a second run within it is busy", async () => {
  const name = uniq("keep");
  const key = new Lock(admin, name).keys.key;
  const first = await run([
    "lock",
    name,
    "--ttl",
    "5000",
    "--keep",
    "--",
    "true",
  ]);
  assert.equal(first.code, 0, first.stderr);
  const pttl = await admin.send<number>("PTTL", key);
  assert.ok(pttl > 3_000 && pttl <= 5_000, `pttl ${pttl}`);
  const second = await run(["lock", name, "--wait", "0", "--", "true"]);
  assert.equal(second.code, 75);
  await admin.send("DEL", key);
});

test("status and reset, as text and --json (exit 0 held, 1 free)", async () => {
  const name = uniq("status");
  const free = await run(["status", name, "--json"]);
  assert.equal(free.code, 1);
  assert.deepEqual(JSON.parse(free.stdout), {
    name,
    held: false,
    owner: null,
    ttl: null,
    fence: null,
  });
  const lock = new Lock(admin, name, { ttl: 20_000, id: "worker-7" });
  assert.equal(await lock.acquire({ wait: 0 }), true);
  const held = await run(["status", name, "--json"]);
  assert.equal(held.code, 0);
  const s = JSON.parse(held.stdout);
  assert.equal(s.held, true);
  assert.equal(s.owner, "worker-7");
  assert.ok(s.ttl > 10_000 && s.ttl <= 20_000, String(s.ttl));
  assert.equal(s.fence, lock.fence);
  const text = await run(["status", name]);
  assert.match(
    text.stdout,
    new RegExp(
      `^${name}: held by worker-7, \\d+ ms left, last fencing token ${lock.fence}\\n$`,
    ),
  );
  const reset = await run(["reset", name, "--json"]);
  assert.equal(reset.code, 0);
  assert.deepEqual(JSON.parse(reset.stdout), {
    name,
    reset: true,
    wasHeld: true,
  });
  assert.equal(await lock.locked(), false);
  const again = await run(["reset", name]);
  assert.equal(again.stdout, `${name}: was not held\n`);
});

test("bad arguments exit 64 with a one-line reason and change nothing; --help prints the usage; a password never shows", async () => {
  const name = uniq("bad");
  const before = await admin.send<number>("DBSIZE");
  for (
    const [args, reason] of [
      [[], /no subcommand/],
      [["frobnicate"], /unknown subcommand/],
      [["lock"], /needs a lock NAME/],
      [["lock", name], /needs a command after --/],
      [
        ["lock", name, "--ttl", "soon", "--", "true"],
        /--ttl needs a whole number/,
      ],
      [["lock", name, "--ttl", "0", "--", "true"], /--ttl must be/],
      [["lock", name, "--frob", "--", "true"], /unknown option --frob/],
      [["lock", name, "extra", "--", "true"], /put the command after --/],
      [["lock", name, "--busy-code", "300", "--", "true"], /0\.\.255/],
      [["status"], /needs a lock NAME/],
      [["status", name, "--keep"], /unknown option --keep for status/],
    ] as [string[], RegExp][]
  ) {
    const r = await run(args);
    assert.equal(r.code, 64, `${args.join(" ")}: ${r.stderr}`);
    const lines = errLines(r.stderr);
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], reason);
    assert.equal(r.stdout, "");
  }
  assert.equal(await admin.send("DBSIZE"), before, "nothing written");
  const help = await run(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage:\n {2}respite lock NAME/);
  assert.match(help.stdout, /75/);
  const closed = await run(["status", name], {
    REDIS_URL: "redis://:s3cret-pw@127.0.0.1:1",
  });
  assert.equal(closed.code, 69);
  assert.match(closed.stderr, /cannot reach Redis/);
  assert.doesNotMatch(closed.stderr + closed.stdout, /s3cret-pw/);
  // A URL given where a word was expected is quoted without its password.
  for (
    const args of [
      ["status", name, "redis://:s3cret-pw@127.0.0.1:6379"],
      ["status", name, "--url=redis://u:s3cret-pw@h:1"],
      ["lock", name, "redis://:s3cret-pw@h", "--", "true"],
    ]
  ) {
    const r = await run(args);
    assert.equal(r.code, 64, r.stderr);
    assert.equal(errLines(r.stderr).length, 1, r.stderr);
    assert.doesNotMatch(r.stderr + r.stdout, /s3cret-pw/, args.join(" "));
  }
});

test("a bad NAME or --prefix, --ttl/--grace longer than a timer can wait, an option given twice, a malformed URL: exit 64 before connecting (no crash), nothing written, no password; options after -- are the command's", async () => {
  const name = uniq("bad2");
  const before = await admin.send<number>("DBSIZE");
  const connected = await connectionsReceived(admin);
  for (
    const [args, reason] of [
      [["lock", "", "--", "true"], /lock name must be a non-empty string/],
      [["lock", "}x", "--", "true"], /must not start with '\}'/],
      [["status", ""], /lock name must be a non-empty string/],
      [["reset", "}x"], /must not start with '\}'/],
      [["lock", name, "--prefix", "a{b", "--", "true"], /prefix must be/],
      [
        ["lock", name, "--ttl", "3000000000", "--", "true"],
        /--ttl must be at most 2147483647 ms/,
      ],
      [
        ["lock", name, "--grace", "3000000000", "--", "true"],
        /--grace must be at most 2147483647 ms/,
      ],
      [
        ["lock", name, "--ttl", "100", "--ttl", "200", "--", "true"],
        /--ttl given more than once/,
      ],
      [
        ["lock", name, "--keep", "--keep", "--", "true"],
        /--keep given more than once/,
      ],
      [["status", name, "--json", "--json"], /--json given more than once/],
      [["lock", name, "--ttl", "-5", "--", "true"], /whole number/],
      [["lock", name, "--wait", "NaN", "--", "true"], /whole number/],
      [["lock", name, "--wait", "1e3", "--", "true"], /whole number/],
    ] as [string[], RegExp][]
  ) {
    const r = await run(args);
    assert.equal(r.code, 64, `${args.join(" ")}: ${r.stderr}`);
    const lines = errLines(r.stderr);
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], reason);
    assert.equal(r.stdout, "");
  }
  for (
    const url of [
      "redis://:s3cret-pw@127.0.0.1:99999",
      "redis://:s3cret-pw@[bad",
      "http://:s3cret-pw@127.0.0.1:6379",
    ]
  ) {
    for (
      const r of [
        await run(["status", name], { REDIS_URL: url }),
        await run(["lock", name, "--url", url, "--", "true"]),
      ]
    ) {
      assert.equal(r.code, 64, `${url}: ${r.stderr}`);
      assert.match(r.stderr, /bad Redis URL/);
      assert.doesNotMatch(r.stderr + r.stdout, /s3cret-pw/);
    }
  }
  assert.equal(await admin.send("DBSIZE"), before, "nothing written");
  assert.equal(await connectionsReceived(admin), connected, "none connected");
  // After --, everything is the command's, options included.
  const after = await run([
    "lock",
    name,
    "--",
    "sh",
    "-c",
    'echo "$@"',
    "sh",
    "--ttl",
    "0",
    "--",
    "--json",
  ]);
  assert.equal(after.code, 0, after.stderr);
  assert.equal(after.stdout, "--ttl 0 -- --json\n");
});

test("with a password in REDIS_URL: status --json, a run, and Redis killed mid-run (exit with the lost code once the lease runs out); the password never shows", async () => {
  const own = await startRedis({ args: ["--requirepass", "s3cret-pw"] });
  const url = `redis://:s3cret-pw@127.0.0.1:${own.port}`;
  try {
    const name = uniq("pw");
    const status = await run(["status", name, "--json"], { REDIS_URL: url });
    assert.equal(status.code, 1, status.stderr);
    assert.equal(JSON.parse(status.stdout).held, false);
    const refused = await run(["status", name, "--json"], {
      REDIS_URL: `redis://:wrong-s3cret@127.0.0.1:${own.port}`,
    });
    assert.equal(refused.code, 69);
    assert.match(refused.stderr, /cannot reach Redis/);
    assert.doesNotMatch(refused.stderr + refused.stdout, /s3cret/);
    const mark = join(dir, `${name}.started`);
    const p = cli([
      "lock",
      name,
      "--ttl",
      "600",
      "--json",
      "--",
      "sh",
      "-c",
      `trap 'exit 0' TERM; touch '${mark}'; while :; do sleep 0.05; done`,
    ], { REDIS_URL: url });
    await until("the command started", 10_000, () => exists(mark));
    const t0 = performance.now();
    await own.stop();
    assert.equal(await p.exited, 76);
    const took = performance.now() - t0;
    assert.ok(took < 5_000, `stopped after ${Math.round(took)} ms`);
    const out = (await p.stdout()) + (await p.stderr());
    assert.match(out, /was lost/);
    assert.doesNotMatch(out + status.stdout + status.stderr, /s3cret-pw/);
  } finally {
    await own.stop();
  }
});

teardown(async () => {
  await admin.close();
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});
