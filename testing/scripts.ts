/**
 * Loads respite's Lua scripts into a server ahead of use, as a server that
 * already ran them has them: then no `NAME not cached.` warning is expected.
 */
import type { RedisClient } from "../mod.ts";
import { CACHE_SCRIPTS } from "../lib/cache/store.ts";
import { LOCK_SCRIPTS } from "../lib/lock/scripts.ts";
import { SEMAPHORE_SCRIPTS } from "../lib/semaphore/scripts.ts";

/** Every script in lib/ (the lock's, `cached`'s and the semaphore's). */
export const ALL_SCRIPTS = [
  ...LOCK_SCRIPTS,
  ...CACHE_SCRIPTS,
  ...SEMAPHORE_SCRIPTS,
];

/**
 * `SCRIPT LOAD`s every respite script on `admin`'s server.
 *
 * @param admin A client allowed to run SCRIPT LOAD.
 */
export async function preloadScripts(admin: RedisClient): Promise<void> {
  for (const s of ALL_SCRIPTS) {
    const sha = await admin.send<string>("SCRIPT", "LOAD", s.lua);
    if (sha !== await s.sha()) throw new Error(`${s.name}: SHA mismatch`);
  }
}
