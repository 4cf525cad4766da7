/**
 * The one JSON shape every benchmark script writes with `--json` (and that
 * `bench_chart.ts` reads): where and when it ran, how many rounds, each
 * row's median, and respite's ratio against each peer.
 *
 * Reads only the runtime's version and `/proc/loadavg` (node:fs): Deno and
 * Bun load it unchanged.
 */

/** One measured row: a library's median in one group. */
export interface BenchRow {
  /** What was measured, e.g. "seq GET (Deno)"; rows of one group compare. */
  group: string;
  /** The library (or reference) measured, e.g. "ioredis". */
  library: string;
  /** The median over the rounds. */
  median: number;
  /** Its unit, e.g. "ops/s", "computations", "bytes". */
  unit: string;
  /** Every round's figure, when the script kept them. */
  samples?: number[];
}

/**
 * respite's ratio against one peer in one group, oriented so that > 1 means
 * respite did better: ours/peer when higher is better (throughput),
 * peer/ours when lower is better (computations, latency).
 */
export interface BenchRatio {
  group: string;
  /** The respite row compared, e.g. "respite" or "respite (memory)". */
  ours: string;
  peer: string;
  ratio: number;
  /** How the ratio was formed. */
  better: "higher" | "lower";
  /** Drawn by `bench_chart.ts` (the headline comparisons). */
  chart: boolean;
}

/** The whole document one run writes. */
export interface BenchDoc {
  schema: "respite-bench/1";
  /** The script's short name, e.g. "client", "lock". */
  benchmark: string;
  /** ISO time the run finished. */
  date: string;
  /** How it was run, e.g. "deno task bench:lock --json". */
  command: string;
  runtime: BenchRuntime;
  /** Interleaved rounds per row (the medians are over these). */
  rounds: number;
  rows: BenchRow[];
  ratios: BenchRatio[];
  /** Anything else the script reports (its own settings and details). */
  details?: unknown;
}

/** Where the run happened. */
export interface BenchRuntime {
  deno?: string;
  bun?: string;
  redis?: string;
  os: string;
  cpus: number;
  /** `uptime`'s load averages when the run finished (shared machine). */
  load?: number[];
}

import { readFileSync } from "node:fs";

// deno-lint-ignore no-explicit-any
const g = globalThis as any;

/** The median of `xs` (mean of the middle two for an even count). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return NaN;
  return n % 2 ? s[n >> 1] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/** The command line arguments, under Deno or Bun. */
export function args(): string[] {
  return g.Deno?.args ?? g.process.argv.slice(2);
}

/**
 * The positive number after `name` in the arguments (`--rounds 7`), or
 * `fallback` when `name` is absent.
 *
 * @throws {RangeError} When what follows `name` is not a positive number.
 */
export function positiveOption(name: string, fallback: number): number {
  const a = args();
  const i = a.indexOf(name);
  if (i === -1) return fallback;
  const n = Number(a[i + 1]);
  if (!(n > 0)) throw new RangeError(`${name} needs a positive number`);
  return n;
}

/** Whether `--json` was passed. */
export function jsonWanted(): boolean {
  return args().includes("--json");
}

/** This runtime's versions, the OS and the load averages. */
export function runtimeInfo(extra: Partial<BenchRuntime> = {}): BenchRuntime {
  const info: BenchRuntime = {
    os: g.Deno
      ? `${g.Deno.build.os}/${g.Deno.build.arch}`
      : `${g.process.platform}/${g.process.arch}`,
    cpus: navigator.hardwareConcurrency,
  };
  if (g.Bun) info.bun = g.Bun.version;
  else if (g.Deno) info.deno = g.Deno.version.deno;
  try {
    const text = readFileSync("/proc/loadavg", "utf8");
    info.load = text.split(" ").slice(0, 3).map(Number);
  } catch {
    // not Linux: no load figures
  }
  return { ...info, ...extra };
}

/** The server's version from an `INFO server` reply. */
export function redisVersion(info: string): string | undefined {
  return /redis_version:(\S+)/.exec(info)?.[1];
}

/**
 * respite's ratio against each peer in `group`, from the rows' medians.
 * Rows missing from `rows` are skipped.
 */
export function ratiosOf(
  rows: readonly BenchRow[],
  group: string,
  ours: string,
  peers: readonly string[],
  options: { better?: "higher" | "lower"; chart?: boolean } = {},
): BenchRatio[] {
  const better = options.better ?? "higher";
  const find = (lib: string) =>
    rows.find((r) => r.group === group && r.library === lib);
  const own = find(ours);
  if (own === undefined) return [];
  const out: BenchRatio[] = [];
  for (const peer of peers) {
    const p = find(peer);
    if (p === undefined) continue;
    out.push({
      group,
      ours,
      peer,
      ratio: better === "higher"
        ? own.median / p.median
        : p.median / own.median,
      better,
      chart: options.chart ?? true,
    });
  }
  return out;
}

/** Assembles the document (date: now). */
export function benchDoc(
  fields: Omit<BenchDoc, "schema" | "date" | "runtime"> & {
    runtime?: Partial<BenchRuntime>;
  },
): BenchDoc {
  const { runtime, ...rest } = fields;
  return {
    schema: "respite-bench/1",
    date: new Date().toISOString(),
    runtime: runtimeInfo(runtime),
    ...rest,
  };
}

/** Prints the document on stdout, one pretty-printed JSON value. */
export function printJson(doc: BenchDoc): void {
  console.log(JSON.stringify(doc, null, 2));
}
