/**
 * The fault matrix: every fault mode × (lock fleet, cached fleet) × (Deno,
 * Bun workers), on loopback, each case against its own throwaway
 * redis-servers (testing/fault_run.ts says what each case does and checks).
 * Prints one table row per fleet and case, then every failed check.
 *
 *   deno task faults                      # everything (bun found on PATH)
 *   deno task faults --fault stall,drop   # some faults
 *   deno task faults --runtime deno       # one runtime
 *   deno task faults --fleet lock         # one fleet
 *   deno task faults --dump /tmp/f        # also write each case's records
 *
 * Exits 1 when any check failed. Bounded: each case takes a few seconds and
 * a worker that does not exit is killed (testing/fault_run.ts).
 */
import {
  type Fault,
  FAULT_TEXT,
  FAULTS,
  type FleetReport,
  type Launcher,
  runFaultCase,
} from "../testing/fault_run.ts";

function flag(name: string): string | undefined {
  const i = Deno.args.indexOf(`--${name}`);
  return i === -1 ? undefined : Deno.args[i + 1];
}

/** The first executable called `name` on PATH. */
function which(name: string): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    const path = `${dir}/${name}`;
    try {
      const st = Deno.statSync(path);
      if (st.isFile && ((st.mode ?? 0) & 0o111) !== 0) return path;
    } catch {
      // not here
    }
  }
  return null;
}

const launchers: Record<string, Launcher | null> = {
  deno: (file, args) => [Deno.execPath(), ["run", "-A", file, ...args]],
  bun: (() => {
    const bun = which("bun");
    return bun === null ? null : (file, args) => [bun, ["run", file, ...args]];
  })(),
};

const faults = (flag("fault")?.split(",") ?? [...FAULTS]) as Fault[];
for (const f of faults) {
  if (!FAULTS.includes(f)) {
    console.error(`unknown fault ${f}; one of ${FAULTS.join(", ")}`);
    Deno.exit(2);
  }
}
const runtimes = flag("runtime")?.split(",") ?? ["deno", "bun"];
const fleets = (flag("fleet")?.split(",") ?? ["lock", "cached"]) as Array<
  "lock" | "cached"
>;

const header = [
  "fault",
  "fleet",
  "runtime",
  "ops ok",
  "errors by kind",
  "in-flight cut",
  "overlaps",
  "max settle ms",
  "recovery ok",
  "result",
];
const rows: string[][] = [];
const failed: FleetReport[] = [];
const t0 = performance.now();
for (const runtime of runtimes) {
  const launcher = launchers[runtime];
  if (launcher === undefined) {
    console.error(`unknown runtime ${runtime}`);
    Deno.exit(2);
  }
  if (launcher === null) {
    console.error(`SKIPPED the ${runtime} workers: ${runtime} is not on PATH`);
    continue;
  }
  for (const fault of faults) {
    const started = performance.now();
    let reports: FleetReport[];
    try {
      const dir = flag("dump");
      const dump = dir ? `${dir}/${fault}-${runtime}.json` : undefined;
      reports = await runFaultCase({ fault, launcher, runtime, fleets, dump });
    } catch (err) {
      console.error(`${fault} on ${runtime}: the case could not run: ${err}`);
      rows.push([fault, "-", runtime, "-", "-", "-", "-", "-", "-", "ERROR"]);
      continue;
    }
    for (const r of reports) {
      const errors = Object.entries(r.errors).sort().map(([k, v]) =>
        `${k} ${v}`
      ).join(", ") || "-";
      rows.push([
        fault,
        r.fleet,
        runtime,
        String(r.opsOk),
        errors,
        String(r.inFlight),
        String(r.overlaps),
        String(r.maxSettleMs),
        r.recoveryOk ? "yes" : "NO",
        r.failures.length === 0 ? "pass" : "FAIL",
      ]);
      if (r.failures.length > 0) {
        failed.push(r);
      }
    }
    console.error(
      `${fault} on ${runtime}: ${
        ((performance.now() - started) / 1000).toFixed(1)
      } s`,
    );
  }
}

const widths = header.map((h, i) =>
  Math.max(h.length, ...rows.map((r) => r[i].length))
);
const line = (cells: string[]) =>
  "| " + cells.map((c, i) => c.padEnd(widths[i])).join(" | ") + " |";
console.log();
console.log(line(header));
console.log("|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|");
for (const r of rows) console.log(line(r));
console.log();
console.log("Faults:");
for (const f of faults) console.log(`  ${f}: ${FAULT_TEXT[f]}`);
console.log(
  `\n${rows.length} rows in ${((performance.now() - t0) / 1000).toFixed(0)} s`,
);
for (const r of failed) {
  console.log(`\nFAILED ${r.fault} / ${r.fleet} / ${r.runtime}:`);
  for (const f of r.failures) console.log(`  - ${f}`);
  for (const [k, m] of Object.entries(r.errorSamples)) {
    console.log(`  error ${k}: ${m}`);
  }
  for (const n of r.notes) console.log(`  note: ${n}`);
}
if (failed.length > 0 || rows.some((r) => r[9] === "ERROR")) Deno.exit(1);
