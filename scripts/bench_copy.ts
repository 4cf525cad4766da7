/**
 * What a memory-tier hit could hand each caller so that no caller's
 * mutation reaches another, per hit: a `JSON.parse` of the kept text (what
 * `cached`'s memory tier does, through the codec), a `structuredClone` of a
 * kept decoded value, or one deeply frozen value shared by every caller (no
 * copy; but `Object.freeze` cannot protect a `Map`, a `Set` or a typed
 * array's elements, which a codec may return). Two values: the bench's
 * 4-field row, and 100 such rows. Interleaved rounds, medians; no Redis.
 *
 * Usage: deno run scripts/bench_copy.ts [--json]  (or: bun scripts/bench_copy.ts)
 */

import {
  args,
  benchDoc,
  type BenchRow,
  jsonWanted,
  median,
  printJson,
} from "./_bench_json.ts";
import { textTable } from "./_text_table.ts";

function deepFreeze<V>(v: V): V {
  if (typeof v === "object" && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

const ROUNDS = 7;
const small = { id: 1, name: "a cached row", tags: ["x", "y", "z"], n: 3.14 };
const rows100 = {
  rows: Array.from({ length: 100 }, (_, i) => ({
    id: i,
    name: `row ${i}`,
    tags: ["a", "b"],
    price: i * 1.5,
    active: i % 2 === 0,
  })),
};
const WAYS = ["JSON.parse(text)", "structuredClone(value)", "frozen, shared"];

const out: BenchRow[] = [];
const table: string[][] = [];
let sink: unknown;
for (
  const [label, value, n] of [
    ["4-field row", small, 200_000],
    ["100 rows", rows100, 4_000],
  ] as const
) {
  const text = JSON.stringify(value);
  const kept = JSON.parse(text);
  const frozen = deepFreeze(JSON.parse(text));
  const fns = [
    () => JSON.parse(text),
    () => structuredClone(kept),
    () => frozen,
  ];
  const samples: number[][] = WAYS.map(() => []);
  for (let r = 0; r <= ROUNDS; r++) {
    fns.forEach((f, w) => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) sink = f();
      const ns = (performance.now() - t0) * 1e6 / n;
      if (r > 0) samples[w].push(ns); // round 0 warms up
    });
  }
  const base = median(samples[0]);
  WAYS.forEach((way, w) => {
    const m = median(samples[w]);
    out.push({
      group: `copy per hit, ${label}`,
      library: way,
      median: m,
      unit: "ns",
      samples: samples[w],
    });
    table.push([
      label,
      `${text.length}`,
      way,
      m.toFixed(0),
      `${(m / base).toFixed(2)}×`,
    ]);
  });
}
if (sink === 0) console.log(sink);

const runtime = (globalThis as { Bun?: unknown }).Bun ? "bun" : "deno";
const print = jsonWanted() ? console.error : console.log;
print(
  `\nCopy per memory hit (${runtime}; medians of ${ROUNDS} interleaved rounds)\n`,
);
print(
  textTable(
    ["value", "JSON bytes", "way", "ns per hit", "× JSON.parse"],
    table,
  ),
);
if (jsonWanted()) {
  printJson(benchDoc({
    benchmark: "copy",
    command: `${runtime} scripts/bench_copy.ts ${args().join(" ")}`.trim(),
    rounds: ROUNDS,
    rows: out,
    ratios: [],
  }));
}
