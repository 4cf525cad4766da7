/**
 * scripts/bootstrap.sh, sourced by bash with stand-in tools on PATH (a
 * `deno`/`bun` that prints a version, an `npm` that records its arguments
 * and fails): nothing is installed and nothing goes to the network.
 */
import assert from "node:assert/strict";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { spawn } from "../testing/proc.ts";
import { test } from "./_harness.ts";

const root = new URL("..", import.meta.url).pathname;

async function withFakes(
  fakes: Record<string, string>,
  script: string,
  env: Record<string, string> = {},
): Promise<{ code: number | string; stderr: string; npm: string }> {
  const dir = await mkdtemp(`${tmpdir()}/respite-bootstrap-`);
  try {
    await writeFile(
      `${dir}/npm`,
      `#!/bin/sh\necho "npm $*" >> "${dir}/npm.log"\nexit 1\n`,
    );
    await chmod(`${dir}/npm`, 0o755);
    for (const [name, version] of Object.entries(fakes)) {
      await writeFile(`${dir}/${name}`, `#!/bin/sh\nprintf '${version}\\n'\n`);
      await chmod(`${dir}/${name}`, 0o755);
    }
    const p = spawn("bash", ["-c", `set -euo pipefail\n${script}`], {
      cwd: root,
      env: {
        PATH: `${dir}:/usr/bin:/bin`,
        RESPITE_TOOLS: `${dir}/tools`,
        ...env,
      },
    });
    const code = await p.exited;
    const npm = await readFile(`${dir}/npm.log`, "utf8").catch(() => "");
    return { code, stderr: await p.stderr(), npm };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test("bootstrap.sh: a Bun or Deno whose version only contains the pinned one (bun 1.4.41, deno 2.9.60) is the wrong version: it installs the pinned one", async () => {
  for (
    const [tool, shown, pinned] of [
      ["bun", "1.4.41", "bun@1.4.4"],
      ["deno", "deno 2.9.60 (stable)", "deno@2.9.6"],
    ]
  ) {
    const r = await withFakes(
      { [tool]: shown },
      `. scripts/bootstrap.sh ${tool}`,
    );
    assert.match(
      r.npm,
      new RegExp(pinned.replaceAll(".", "\\.")),
      `${tool} printing "${shown}" was taken for ${pinned} (exit ${r.code}, npm not asked)`,
    );
    assert.equal(r.code, 1);
  }
});

test("bootstrap.sh: a tools folder it cannot write to ends with one 'respite: ERROR:' line", async () => {
  // /proc exists and nobody, root included, can create files in it.
  const r = await withFakes(
    { deno: "deno 2.9.5 (stable)" },
    ". scripts/bootstrap.sh deno",
    { RESPITE_TOOLS: "/proc" },
  );
  assert.equal(r.code, 1);
  const last = r.stderr.trim().split("\n").at(-1) ?? "";
  assert.match(last, /^respite: ERROR: /, `stderr ended with: ${last}`);
});

test("bootstrap.sh sourced by an interactive shell returns on a failure, as its comment says, instead of exiting the shell", async () => {
  const r = await withFakes(
    {},
    "printf '. scripts/bootstrap.sh bogus\\necho STILL-IN-SHELL >&2\\n' | bash -i 2>&1 >/dev/null | tail -n 5 >&2",
  );
  assert.match(r.stderr, /respite: ERROR: bootstrap\.sh: unknown tool 'bogus'/);
  assert.match(
    r.stderr,
    /STILL-IN-SHELL/,
    `the interactive shell exited: ${r.stderr}`,
  );
});
