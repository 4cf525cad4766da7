/**
 * XFetch early refresh: the rule itself, and how often `cached` refreshes a
 * fresh entry early, with a seeded PRNG (so the counts are reproducible) and
 * tolerances of 4 standard deviations around the expected frequency.
 */
import assert from "node:assert/strict";
import { cached, connect } from "../mod.ts";
import { encodeEntry, xfetchEarly } from "../lib/cache/entry.ts";
import { sharedRedis } from "../testing/redis.ts";
import { teardown, test } from "./_harness.ts";
import { mulberry32 as seeded } from "../testing/random.ts";

const server = await sharedRedis();
const url = server.url;
let n = 0;
const key = (s: string) => `test:cachedxfetch:${Date.now()}:${n++}:${s}`;

/** Within 4 standard deviations of a binomial(n, p) count. */
function assertBinomial(
  count: number,
  trials: number,
  p: number,
  what: string,
) {
  const sd = Math.sqrt(trials * p * (1 - p));
  const expected = trials * p;
  assert.ok(
    Math.abs(count - expected) <= 4 * sd + 1,
    `${what}: ${count} of ${trials}, expected ${expected.toFixed(1)} ± ${
      (4 * sd).toFixed(1)
    }`,
  );
}

test("the XFetch rule: P(early) = exp(-gap / (Δ·β)); β = 0 never", () => {
  const random = seeded(1);
  const delta = 1_000;
  const now = 1_000_000;
  for (const beta of [0.5, 1, 2]) {
    for (const p of [0.05, 0.3, 0.5, 0.8]) {
      const gap = -delta * beta * Math.log(p);
      const meta = { delta, freshUntil: now + gap };
      let early = 0;
      const trials = 20_000;
      for (let i = 0; i < trials; i++) {
        if (xfetchEarly(meta, now, beta, random)) early++;
      }
      assertBinomial(early, trials, p, `β=${beta} p=${p}`);
    }
  }
  const meta = { delta, freshUntil: now + 1 };
  for (let i = 0; i < 1_000; i++) {
    assert.equal(xfetchEarly(meta, now, 0, random), false);
  }
  // Δ = 0 (instant computations) never refresh early; at expiry always.
  assert.equal(
    xfetchEarly({ delta: 0, freshUntil: now + 1 }, now, 1, random),
    false,
  );
  assert.equal(
    xfetchEarly({ delta, freshUntil: now }, now, 1, () => 0.5),
    true,
  );
  // The extreme draw: random() = 0 gives u = 1, ln 1 = 0: no early refresh.
  assert.equal(
    xfetchEarly({ delta, freshUntil: now + 1 }, now, 1, () => 0),
    false,
  );
});

test("cached refreshes fresh entries early, in the background, with the XFetch frequency (β = 1, seeded)", async () => {
  await using redis = await connect(url);
  const delta = 10_000; // as if the value took 10 s to compute
  for (const [beta, p, seed] of [[1, 0.5, 11], [1, 0.15, 12], [2, 0.7, 13]]) {
    const k = key(`early-${beta}-${p}`);
    let early = 0;
    let runs = 0;
    const f = cached(() => {
      runs++;
      return "refreshed";
    }, {
      redis,
      key: k,
      ttl: 60_000,
      beta,
      random: seeded(seed),
      hooks: {
        compute: (e) => {
          if (e.reason === "early" && e.background) early++;
        },
      },
    });
    const trials = 300;
    for (let i = 0; i < trials; i++) {
      const now = Date.now();
      // A fresh entry whose early-refresh chance is p right now.
      const freshUntil = now + Math.round(-delta * beta * Math.log(p));
      await redis.send(
        "SET",
        f.redisKey(),
        encodeEntry(
          { createdAt: now - 1_000, delta, freshUntil, staleUntil: freshUntil },
          "value",
          JSON.stringify("seeded"),
        ),
        "PX",
        60_000,
      );
      assert.equal(
        await f(),
        "seeded",
        "the caller gets the fresh value at once",
      );
      await f.idle();
    }
    console.log(`β=${beta} p=${p}: ${early}/${trials} early`);
    assert.equal(runs, early);
    assertBinomial(early, trials, p, `β=${beta} p=${p}`);
    await f.invalidate();
  }
});

test("beta: 0 never refreshes early", async () => {
  await using redis = await connect(url);
  let runs = 0;
  const f = cached(() => {
    runs++;
    return "v";
  }, { redis, key: key("beta0"), ttl: 60_000, beta: 0 });
  const now = Date.now();
  await redis.send(
    "SET",
    f.redisKey(),
    encodeEntry(
      {
        createdAt: now,
        delta: 60_000,
        freshUntil: now + 5_000,
        staleUntil: now + 5_000,
      },
      "value",
      JSON.stringify("seeded"),
    ),
  );
  for (let i = 0; i < 200; i++) assert.equal(await f(), "seeded");
  await f.idle();
  assert.equal(runs, 0);
  await f.invalidate();
});

teardown(async () => {
  await server.stop();
});
