/**
 * respite's locks and cache on an app's ioredis client (the real package; see
 * tests/_byo_scenarios.ts for what runs and testing/byo_clients.ts for how
 * the client is made).
 */
import { byoScenarios } from "./_byo_scenarios.ts";

await byoScenarios("ioredis");
