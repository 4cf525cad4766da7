/** `scripts/bench_chart.ts`: benchmark JSON in, bars to scale out. */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { chartGroups, renderChart } from "../scripts/bench_chart.ts";
import type { BenchDoc } from "../scripts/_bench_json.ts";
import { stampedeJson } from "../scripts/_bench_stampede_json.ts";
import { test } from "./_harness.ts";

const fixture = JSON.parse(
  readFileSync(new URL("./fixtures/bench_small.json", import.meta.url), "utf8"),
) as BenchDoc;

/** The bars of an SVG: ratio, x, width and class, in document order. */
function bars(svg: string) {
  return [...svg.matchAll(
    /<rect class="bar (\w+)" x="([\d.]+)" y="[\d.]+" width="([\d.]+)" height="\d+" data-ratio="([\d.]+)"/g,
  )].map((m) => ({
    cls: m[1],
    x: Number(m[2]),
    width: Number(m[3]),
    ratio: Number(m[4]),
  }));
}

test("one group per benchmark group, only the charted ratios, labelled with peer, date and runtime", () => {
  const groups = chartGroups([fixture]);
  assert.equal(groups.length, 2);
  assert.match(groups[0].title, /lock: lock uncontended/);
  assert.match(groups[0].title, /2026-01-02/);
  assert.match(groups[0].title, /Deno 9\.9\.9/);
  assert.match(groups[1].title, /peer ÷ respite/);
  assert.deepEqual(groups[0].bars.map((b) => b.label), [
    "vs redlock",
    "vs mutex",
  ]);
  assert.deepEqual(groups[1].bars, [{
    label: "(memory) vs redlock",
    ratio: 4,
  }]);
});

test("the SVG's bars start at the 1.0× line and are to scale on the log axis", () => {
  const svg = renderChart(chartGroups([fixture]));
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.ok(svg.trimEnd().endsWith("</svg>"));
  const b = bars(svg);
  assert.deepEqual(b.map((x) => x.ratio), [2, 0.5, 4]);
  assert.deepEqual(b.map((x) => x.cls), ["win", "loss", "win"]);
  const one = b[0].x; // a win starts at 1×
  assert.ok(Math.abs(b[1].x + b[1].width - one) < 0.2, "a loss ends at 1×");
  assert.equal(b[2].x, one);
  assert.ok(Math.abs(b[0].width - b[1].width) < 0.2, "2× and 0.5× alike");
  assert.ok(Math.abs(b[2].width - 2 * b[0].width) < 0.2, "4× twice 2×");
  assert.ok(!svg.includes("hidden-peer"));
  for (const s of ["vs redlock", "vs mutex", "2.00×", "0.50×", "4.00×"]) {
    assert.ok(svg.includes(s), s);
  }
  const oneLines = [...svg.matchAll(/<line class="one" x1="([\d.]+)"/g)];
  assert.equal(oneLines.length, 2, "a 1.0× line in each group");
  for (const m of oneLines) assert.ok(Math.abs(Number(m[1]) - one) < 0.2);
});

test("stampedeJson turns the printed tables into rows and oriented ratios", () => {
  const doc = stampedeJson([
    {
      head: ["library", "computations (per round)", "p50 ms", "p99 ms"],
      rows: [
        ["respite", "1 / 1 / 2", "210.0", "230.0"],
        ["cache-aside", "200 / 180 / 190", "205.0", "215.0"],
      ],
    },
    {
      head: ["library", "c=1 ops/s", "vs bento", "c=100 ops/s"],
      rows: [["respite", "9000", "1.50×", "40000"], [
        "bentocache",
        "6000",
        "1.00×",
        "10000",
      ]],
    },
  ], { command: "x", rounds: 3 });
  const r = (group: string, lib: string) =>
    doc.rows.find((x) => x.group === group && x.library === lib)!.median;
  assert.equal(r("stampede computations", "cache-aside"), 190);
  assert.equal(r("stampede computations", "respite"), 1);
  assert.equal(r("cached hit, 100 callers", "respite"), 40000);
  const q = (group: string, peer: string) =>
    doc.ratios.find((x) => x.group === group && x.peer === peer)!;
  assert.equal(q("stampede computations", "cache-aside").ratio, 190);
  assert.equal(q("stampede computations", "cache-aside").better, "lower");
  assert.equal(q("cached hit, 1 caller", "bentocache").ratio, 1.5);
  assert.equal(q("cached hit, 100 callers", "bentocache").ratio, 4);
  assert.equal(q("stampede p99 latency", "cache-aside").chart, false);
});
