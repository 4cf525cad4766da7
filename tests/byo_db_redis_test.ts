/**
 * respite's locks and cache on a `@db/redis` client. `@db/redis` is on JSR,
 * which these machines cannot reach, so the client here is a stand-in
 * (`dbRedisShim` in testing/byo_clients.ts): an object with `@db/redis`'s
 * documented `Redis` surface — `sendCommand(command, args?,
 * { returnUint8Arrays? })`, `isConnected`, `isClosed`, `close()`, error
 * replies as `ErrorReplyError` with the `-` line — built over respite's own
 * client. Its waiters re-check with backoff (lib/adapters/db_redis.ts says
 * why), so the handoff figure is the re-check bound, not a pub/sub wake-up.
 * See tests/_byo_scenarios.ts for what runs.
 */
import { byoScenarios } from "./_byo_scenarios.ts";

await byoScenarios("db-redis");
