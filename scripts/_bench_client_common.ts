/**
 * Measurement code shared by the Deno and Bun halves of the client
 * benchmark (`bench_client.ts`, `bench_client_bun.ts`). Pure TypeScript: no
 * runtime APIs, so both runtimes load it unchanged.
 */

/** The two commands every benchmarked client is driven through. */
export interface BenchClient {
  /** Row label, e.g. "respite". */
  name: string;
  get(key: string): Promise<unknown>;
  set(key: string, value: string): Promise<unknown>;
  close(): Promise<void> | void;
  /** Only these workloads (for a reference row); all when absent. */
  only?: readonly Workload[];
}

/** The workloads, in table order. */
export const WORKLOADS = [
  "seq GET",
  "seq SET",
  "conc GET",
  "conc SET",
] as const;
/** One of {@linkcode WORKLOADS}. */
export type Workload = typeof WORKLOADS[number];

/** How much work one measurement does. */
export interface BenchPlan {
  /** Rounds; every client runs every workload once per round (interleaved). */
  rounds: number;
  /** Commands per sequential measurement (each awaited before the next). */
  seqOps: number;
  /** Commands in flight at once in a concurrent measurement. */
  inFlight: number;
  /** Batches of `inFlight` commands per concurrent measurement. */
  batches: number;
}

/** Median ops/s per client per workload, plus every round's figure. */
export interface BenchResult {
  client: string;
  /** `null` for a workload the client does not run. */
  median: Record<Workload, number | null>;
  samples: Record<Workload, number[]>;
}

export const GET_KEY = "respite:bench:get";
export const SET_KEY = "respite:bench:set";
/** A 32-byte ASCII value. */
export const VALUE = "respite-benchmark-value-32-bytes";

function now(): number {
  return performance.now();
}

/** Runs `n` commands one after the other, each awaited; returns ms taken. */
async function sequential(
  op: () => Promise<unknown>,
  n: number,
): Promise<number> {
  const t0 = now();
  for (let i = 0; i < n; i++) await op();
  return now() - t0;
}

/** Issues `inFlight` commands at once and awaits them all; returns ms taken. */
async function concurrent(
  op: () => Promise<unknown>,
  inFlight: number,
): Promise<number> {
  const pending: Promise<unknown>[] = new Array(inFlight);
  const t0 = now();
  for (let i = 0; i < inFlight; i++) pending[i] = op();
  await Promise.all(pending);
  return now() - t0;
}

/** Sequential measurements are cut into this many slices per round. */
const SEQ_SLICES = 10;

/**
 * One slice of a workload: `SEQ_SLICES`-th of the sequential commands, or
 * one batch of concurrent ones. Returns [commands, ms].
 */
async function slice(
  c: BenchClient,
  w: Workload,
  plan: BenchPlan,
): Promise<[number, number]> {
  const op = w.endsWith("GET")
    ? () => c.get(GET_KEY)
    : () => c.set(SET_KEY, VALUE);
  if (w.startsWith("seq")) {
    const n = Math.max(1, Math.round(plan.seqOps / SEQ_SLICES));
    return [n, await sequential(op, n)];
  }
  return [plan.inFlight, await concurrent(op, plan.inFlight)];
}

/** Middle value (mean of the two middle ones for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Warms every client up, then runs `plan.rounds` rounds. In a round, each
 * workload is cut into slices (a tenth of the sequential commands, or one
 * batch of concurrent ones) and the clients take turns slice by slice, their
 * order rotating, so that background load on a shared machine hits them all
 * alike. One round gives one ops/s figure per client and workload; the
 * result holds their medians.
 *
 * @param clients Connected clients; the GET key must already hold VALUE.
 * @param plan How much work to do.
 * @param progress Called after each round.
 * @returns One result per client, in the order given.
 */
export async function runBench(
  clients: BenchClient[],
  plan: BenchPlan,
  progress?: (round: number) => void,
): Promise<BenchResult[]> {
  for (const c of clients) {
    const got = await c.get(GET_KEY);
    if (String(got) !== VALUE) {
      throw new Error(`${c.name}: GET returned ${String(got)}, not ${VALUE}`);
    }
    for (const w of WORKLOADS) {
      if (c.only && !c.only.includes(w)) continue;
      for (let i = 0; i < 3; i++) await slice(c, w, plan);
    }
  }
  const samples = clients.map(() =>
    Object.fromEntries(WORKLOADS.map((w) => [w, [] as number[]])) as Record<
      Workload,
      number[]
    >
  );
  let turn = 0;
  for (let r = 0; r < plan.rounds; r++) {
    for (const w of WORKLOADS) {
      const slices = w.startsWith("seq") ? SEQ_SLICES : plan.batches;
      const ops = clients.map(() => 0);
      const ms = clients.map(() => 0);
      for (let s = 0; s < slices; s++) {
        turn++;
        for (let k = 0; k < clients.length; k++) {
          const i = (k + turn) % clients.length;
          if (clients[i].only && !clients[i].only!.includes(w)) continue;
          const [n, t] = await slice(clients[i], w, plan);
          ops[i] += n;
          ms[i] += t;
        }
      }
      for (let i = 0; i < clients.length; i++) {
        if (ops[i] > 0) samples[i][w].push(ops[i] / (ms[i] / 1000));
      }
    }
    progress?.(r + 1);
  }
  return clients.map((c, i) => ({
    client: c.name,
    samples: samples[i],
    median: Object.fromEntries(
      WORKLOADS.map((w) => [
        w,
        samples[i][w].length ? median(samples[i][w]) : null,
      ]),
    ) as Record<Workload, number | null>,
  }));
}
