/**
 * Faults under load: for each fault mode, a lock fleet (3 processes × 2
 * loops contending on 2 lock names, a fenced non-atomic read-modify-write
 * counter, recorded holds) and a `cached` fleet (3 processes × 3 callers on
 * one key) run through the fault proxy; the fault is injected while traffic
 * flows and cleared; testing/fault_run.ts says what is checked and why.
 * `deno task faults` runs the same cases on Deno and Bun workers and prints
 * a table.
 */
import assert from "node:assert/strict";
import { FAULT_TEXT, FAULTS, runFaultCase } from "../testing/fault_run.ts";
import { test } from "./_harness.ts";

for (const fault of FAULTS) {
  test(
    `fault ${fault}: ${
      FAULT_TEXT[fault]
    } — lock and cached fleets stay correct, settle, recover`,
    async () => {
      const reports = await runFaultCase({ fault });
      const failed = reports.filter((r) => r.failures.length > 0);
      assert.deepEqual(
        failed.map((r) => ({
          fleet: r.fleet,
          failures: r.failures,
          notes: r.notes,
        })),
        [],
        JSON.stringify(
          failed.map((r) => ({
            fleet: r.fleet,
            failures: r.failures,
            notes: r.notes,
            errors: r.errors,
            errorSamples: r.errorSamples,
          })),
          null,
          1,
        ),
      );
    },
    { timeout: 60_000 },
  );
}
