/**
 * Compares one benchmark between two git revisions, interleaved in one
 * session: checks both out (detached worktrees in a temporary folder), starts
 * one throwaway redis-server, then runs the benchmark script of each
 * revision in turn, `--rounds` times (base, head, base, head, ...), so both
 * see the same machine load. It reads respite's row of every table the
 * benchmark prints and shows, per figure, the median over the rounds for
 * each revision and their ratio (head / base).
 *
 * Usage:
 *   deno run -A scripts/bench_revisions.ts --base REV [--head REV] [--rounds N]
 *     -- SCRIPT [ARGS...]
 * e.g. `-- bench_lock.ts --rounds 1`. `--head` defaults to the working tree
 * (uncommitted changes included). The benchmark gets REDIS_URL.
 */

import { startRedis } from "../testing/redis.ts";

const argv = [...Deno.args];
const sep = argv.indexOf("--");
if (sep === -1 || sep === argv.length - 1) {
  console.error(
    "usage: bench_revisions.ts --base REV [--head REV] [--rounds N] -- SCRIPT [ARGS...]",
  );
  Deno.exit(2);
}
const own = argv.slice(0, sep);
const [script, ...benchArgs] = argv.slice(sep + 1);
function option(name: string): string | undefined {
  const i = own.indexOf(name);
  return i === -1 ? undefined : own[i + 1];
}
const base = option("--base");
if (base === undefined) throw new TypeError("--base REV is required");
const head = option("--head");
const rounds = Number(option("--rounds") ?? 5);
if (!Number.isInteger(rounds) || rounds < 1) {
  throw new RangeError("--rounds must be a positive integer");
}

const root = new URL("..", import.meta.url).pathname;
const tmp = await Deno.makeTempDir({ prefix: "respite-bench-revs-" });

async function git(...args: string[]): Promise<string> {
  const out = await new Deno.Command("git", {
    args,
    cwd: root,
    stderr: "inherit",
  })
    .output();
  if (!out.success) throw new Error(`git ${args.join(" ")} failed`);
  return new TextDecoder().decode(out.stdout).trim();
}

async function checkout(rev: string, name: string): Promise<string> {
  const dir = `${tmp}/${name}`;
  await git("worktree", "add", "--detach", dir, rev);
  return dir;
}

/** Respite's rows of every table in `text`: figure name → value. */
function respiteFigures(text: string): Map<string, number> {
  const figures = new Map<string, number>();
  const blocks = text.split(/\n\s*\n/);
  let table = 0;
  for (const block of blocks) {
    const lines = block.split("\n").filter((l) =>
      l.trim() !== "" && !/^[\s|:-]+$/.test(l)
    );
    if (lines.length < 2) continue;
    const cells = (l: string) =>
      l.includes("|")
        ? l.split("|").map((c) => c.trim()).filter((c) => c !== "")
        : l.trim().split(/\s{2,}/);
    const pipe = lines.findIndex((l) => l.trimStart().startsWith("|"));
    const header = cells(lines[pipe === -1 ? 0 : pipe]);
    let found = false;
    for (const line of lines.slice(1)) {
      const row = cells(line);
      const label = row.findIndex((c) => /^respite( Lock)?$/.test(c));
      if (label === -1) continue;
      found = true;
      for (let i = label + 1; i < row.length; i++) {
        const v = Number(row[i].replace(/[,×x%]/g, ""));
        if (Number.isFinite(v)) {
          figures.set(`table ${table + 1}: ${header[i] ?? `column ${i}`}`, v);
        }
      }
    }
    if (found) table++;
  }
  return figures;
}

const median = (xs: number[]) => {
  const s = xs.toSorted((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const redis = await startRedis();
const revs: Array<{ name: string; dir: string; runs: Map<string, number>[] }> =
  [];
try {
  revs.push({
    name: `base ${base}`,
    dir: await checkout(base, "base"),
    runs: [],
  });
  revs.push({
    name: head === undefined ? "head (working tree)" : `head ${head}`,
    dir: head === undefined ? root : await checkout(head, "head"),
    runs: [],
  });
  for (let r = 0; r < rounds; r++) {
    for (const rev of revs) {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", `${rev.dir}/scripts/${script}`, ...benchArgs],
        cwd: rev.dir,
        env: { REDIS_URL: redis.url },
        stderr: "inherit",
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      if (!out.success) {
        console.error(text);
        throw new Error(`${rev.name}: ${script} failed`);
      }
      const figures = respiteFigures(text);
      if (figures.size === 0) {
        console.error(text);
        throw new Error(`${rev.name}: no respite row found in the output`);
      }
      rev.runs.push(figures);
      console.error(
        `round ${r + 1}/${rounds} ${rev.name}: ${figures.size} figures`,
      );
    }
  }
} finally {
  await redis.stop();
  for (const rev of revs) {
    if (!rev.dir.startsWith(tmp)) continue;
    await git("worktree", "remove", "--force", rev.dir).catch(() => {});
  }
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
}

console.log(
  `${script} ${benchArgs.join(" ")}: medians of ${rounds} interleaved rounds\n`,
);
const names = [...revs[0].runs[0].keys()].filter((k) =>
  revs.every((rev) => rev.runs.every((run) => run.has(k)))
);
const rows = [["figure", revs[0].name, revs[1].name, "head / base"]];
for (const k of names) {
  const [b, h] = revs.map((rev) => median(rev.runs.map((run) => run.get(k)!)));
  rows.push([
    k,
    b.toFixed(2),
    h.toFixed(2),
    b === 0 ? "-" : (h / b).toFixed(3),
  ]);
}
const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
for (const r of rows) {
  console.log(
    r.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join(
      "  ",
    ),
  );
}
