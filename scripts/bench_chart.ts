/**
 * Draws the committed benchmark results (`docs/bench/*.json`, each written
 * by a benchmark script's `--json`) as one SVG bar chart of respite's ratio
 * against each peer: one group per benchmark, one horizontal bar per peer,
 * on a log scale (0.5× and 2× lie the same distance from 1×), with a 1.0×
 * reference line and each group's run date and runtime in its heading.
 *
 * Usage: deno task bench:chart   (reads docs/bench/*.json, writes
 * docs/bench/chart.svg)
 */

import type { BenchDoc } from "./_bench_json.ts";

/** One bar: respite's ratio against one peer. */
export interface ChartBar {
  label: string;
  ratio: number;
}

/** One group of bars, with its heading. */
export interface ChartGroup {
  title: string;
  bars: ChartBar[];
}

const LABEL_W = 300;
const PLOT_W = 440;
const VALUE_W = 64;
const BAR_H = 16;
const GAP = 4;
const HEAD_H = 26;
const TOP = 64;
const AXIS_H = 44;
const TICKS = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];

/** The charted ratios of each document, grouped as the chart shows them. */
export function chartGroups(docs: readonly BenchDoc[]): ChartGroup[] {
  const groups: ChartGroup[] = [];
  for (const doc of docs) {
    const day = doc.date.slice(0, 10);
    const runtime = [
      doc.runtime.deno && `Deno ${doc.runtime.deno}`,
      doc.runtime.bun && `Bun ${doc.runtime.bun}`,
    ].filter(Boolean).join(", ");
    const order: string[] = [];
    const bars = new Map<string, ChartBar[]>();
    const lower = new Set<string>();
    for (const r of doc.ratios) {
      if (!r.chart || !(r.ratio > 0) || !Number.isFinite(r.ratio)) continue;
      if (!bars.has(r.group)) {
        order.push(r.group);
        bars.set(r.group, []);
      }
      if (r.better === "lower") lower.add(r.group);
      bars.get(r.group)!.push({
        label: r.ours.startsWith("respite (")
          ? `${r.ours.slice("respite ".length)} vs ${r.peer}`
          : `vs ${r.peer}`,
        ratio: r.ratio,
      });
    }
    for (const group of order) {
      const how = lower.has(group) ? "peer ÷ respite" : "respite ÷ peer";
      groups.push({
        title: `${doc.benchmark}: ${group} — ${how}; ${day}, ${runtime}`,
        bars: bars.get(group)!,
      });
    }
  }
  return groups;
}

const esc = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const fmt = (r: number) =>
  r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2);

/** The x position of `ratio` on the log axis spanning [lo, hi]. */
export function xOf(ratio: number, lo: number, hi: number): number {
  const t = (Math.log(ratio) - Math.log(lo)) / (Math.log(hi) - Math.log(lo));
  return LABEL_W + t * PLOT_W;
}

/** The chart as an SVG document (bars carry `data-ratio` for tests). */
export function renderChart(groups: readonly ChartGroup[]): string {
  const ratios = groups.flatMap((g) => g.bars.map((b) => b.ratio));
  const lo = [...TICKS].reverse().find((t) => t <= Math.min(1, ...ratios)) ??
    TICKS[0];
  const hi = TICKS.find((t) => t >= Math.max(2, ...ratios)) ??
    TICKS[TICKS.length - 1];
  const width = LABEL_W + PLOT_W + VALUE_W;
  const ticks = TICKS.filter((t) => t >= lo && t <= hi);
  let y = TOP;
  const parts: string[] = [];
  const one = xOf(1, lo, hi);
  for (const g of groups) {
    parts.push(
      `<text x="8" y="${y + 16}" class="head">${esc(g.title)}</text>`,
    );
    y += HEAD_H;
    const top = y - GAP;
    const end = y + g.bars.length * (BAR_H + GAP);
    for (const t of ticks) {
      const x = xOf(t, lo, hi).toFixed(1);
      parts.push(
        `<line class="${
          t === 1 ? "one" : "grid"
        }" x1="${x}" y1="${top}" x2="${x}" y2="${end}"/>`,
      );
    }
    for (const b of g.bars) {
      const x = xOf(b.ratio, lo, hi);
      const x0 = Math.min(x, one);
      const w = Math.max(Math.abs(x - one), 1);
      const cls = b.ratio >= 1 ? "win" : "loss";
      parts.push(
        `<text x="${LABEL_W - 8}" y="${y + 12}" class="label">${
          esc(b.label)
        }</text>`,
        `<rect class="bar ${cls}" x="${x0.toFixed(1)}" y="${y}" width="${
          w.toFixed(1)
        }" height="${BAR_H}" data-ratio="${b.ratio}"><title>${esc(b.label)}: ${
          fmt(b.ratio)
        }×</title></rect>`,
        `<text x="${(Math.max(x, one) + 4).toFixed(1)}" y="${
          y + 12
        }" class="value">${fmt(b.ratio)}×</text>`,
      );
      y += BAR_H + GAP;
    }
    y += GAP * 2;
  }
  const bottom = y;
  const axis: string[] = [];
  for (const t of ticks) {
    const x = xOf(t, lo, hi).toFixed(1);
    axis.push(
      `<text x="${x}" y="${bottom + 16}" class="tick">${t}×</text>`,
    );
  }
  const height = bottom + AXIS_H;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Verdana, sans-serif">`,
    `<style>.head{font-size:13px;font-weight:bold;fill:#222}.label{font-size:12px;fill:#333;text-anchor:end}.value{font-size:12px;fill:#222}.tick{font-size:11px;fill:#555;text-anchor:middle}.grid{stroke:#ddd}.one{stroke:#000;stroke-width:1.5}.win{fill:#2e7d32}.loss{fill:#c62828}</style>`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="8" y="22" style="font-size:16px;font-weight:bold">respite against its peers: ratio, log scale (&gt; 1× = respite better)</text>`,
    `<text x="8" y="42" style="font-size:12px;fill:#555">Medians of interleaved rounds from docs/bench/*.json (one run each, a shared 2-core machine); green: respite ahead, red: behind.</text>`,
    ...parts,
    ...axis,
    `<text x="${one.toFixed(1)}" y="${
      bottom + 32
    }" class="tick">1.0× = same as the peer</text>`,
    `</svg>`,
    "",
  ].join("\n");
}

if (import.meta.main) {
  const dir = new URL("../docs/bench/", import.meta.url);
  const docs: BenchDoc[] = [];
  const names = [...Deno.readDirSync(dir)]
    .map((e) => e.name)
    .filter((n) => n.endsWith(".json"))
    .sort();
  const order = ["client", "lock", "semaphore", "stampede"];
  for (const n of names) {
    const doc = JSON.parse(Deno.readTextFileSync(new URL(n, dir))) as BenchDoc;
    if (doc.schema !== "respite-bench/1") continue;
    docs.push(doc);
  }
  docs.sort((a, b) =>
    (order.indexOf(a.benchmark) + 99) % 99 -
    (order.indexOf(b.benchmark) + 99) % 99
  );
  const svg = renderChart(chartGroups(docs));
  Deno.writeTextFileSync(new URL("chart.svg", dir), svg);
  console.error(
    `wrote docs/bench/chart.svg from ${
      docs.map((d) => d.benchmark).join(", ")
    }`,
  );
}
