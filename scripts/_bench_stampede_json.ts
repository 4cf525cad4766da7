/**
 * `bench_stampede.ts --json`: its printed tables turned into the shared JSON
 * document (`_bench_json.ts`). Reading the tables' cells by column name keeps
 * the benchmark script's own change to one block, and picks up any rows a
 * later change adds.
 */

import {
  type BenchDoc,
  benchDoc,
  type BenchRatio,
  type BenchRow,
  median,
  ratiosOf,
} from "./_bench_json.ts";

/** One printed table: its header and its rows of cells. */
export interface PrintedTable {
  head: string[];
  rows: string[][];
}

const num = (cell: string) => Number(cell.replace(/[×x,]/g, ""));

/**
 * The stampede table (computations per round, p50/p99 latency) and the hit
 * path table (ops/s at concurrency 1 and 100) as rows; respite's ratios
 * against each peer (fewer computations is better; more ops/s is better).
 */
export function stampedeJson(
  tables: readonly PrintedTable[],
  run: { command: string; redis?: string; rounds: number; details?: unknown },
): BenchDoc {
  const rows: BenchRow[] = [];
  for (const t of tables) {
    const col = (name: string) => t.head.indexOf(name);
    const comps = col("computations (per round)");
    if (comps !== -1) {
      for (const r of t.rows) {
        const samples = r[comps].split("/").map(num);
        rows.push({
          group: "stampede computations",
          library: r[0],
          median: median(samples),
          unit: "computations",
          samples,
        });
        for (const p of ["p50 ms", "p99 ms"]) {
          if (col(p) === -1) continue;
          rows.push({
            group: `stampede ${p.replace(" ms", "")} latency`,
            library: r[0],
            median: num(r[col(p)]),
            unit: "ms",
          });
        }
      }
    }
    for (const c of [1, 100]) {
      const ops = col(`c=${c} ops/s`);
      if (ops === -1) continue;
      for (const r of t.rows) {
        rows.push({
          group: `cached hit, ${c} caller${c > 1 ? "s" : ""}`,
          library: r[0],
          median: num(r[ops]),
          unit: "ops/s",
        });
      }
    }
  }
  const peers = [
    "cache-aside",
    "bentocache",
    "async-cache-dedupe",
    "cachified",
  ];
  const ratios: BenchRatio[] = [];
  const groups = [...new Set(rows.map((r) => r.group))];
  for (const group of groups) {
    const better = group.startsWith("stampede") ? "lower" : "higher";
    const headline = group === "stampede computations" ||
      group.startsWith("cached hit");
    ratios.push(
      ...ratiosOf(rows, group, "respite", peers, { better, chart: headline }),
      ...ratiosOf(
        rows,
        group,
        "respite (memory)",
        ["bentocache (memory+redis)", "cachified (lru+redis)"],
        { better, chart: headline && group.startsWith("cached hit") },
      ),
      ...ratiosOf(rows, group, "respite (cluster)", peers, {
        better,
        chart: false,
      }),
    );
  }
  return benchDoc({
    benchmark: "stampede",
    command: run.command,
    runtime: { redis: run.redis },
    rounds: run.rounds,
    rows,
    ratios,
    details: run.details,
  });
}
