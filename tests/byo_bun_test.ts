/**
 * respite's locks and cache on Bun's built-in `RedisClient` (Bun only: under
 * Deno these tests are skipped, with the reason printed, because the client
 * does not exist there). See tests/_byo_scenarios.ts for what runs.
 */
import { byoScenarios } from "./_byo_scenarios.ts";

await byoScenarios("bun");
