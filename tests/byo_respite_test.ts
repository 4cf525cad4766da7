/**
 * The bring-your-own-client scenarios (tests/_byo_scenarios.ts) on respite's
 * own client, which passes through `checkClient` as it is: the baseline the
 * other kinds' figures compare with.
 */
import { byoScenarios } from "./_byo_scenarios.ts";

await byoScenarios("respite");
