/**
 * One clock for holds measured in several processes: the Redis server's
 * `TIME`.
 *
 * The multi-process tests check that no two holds overlap (or that at most
 * `limit` do) from the [start, end] each worker records. A clock of each
 * process's own, such as `performance.timeOrigin + performance.now()`, is
 * not one clock: on Deno it is ahead of the system clock by a different
 * 0.2–0.9 ms in each process (measured against `Date.now()` at a millisecond
 * edge), as much as a whole hand-off, so a clean hand-off could look like an
 * overlap (CI's failure in the Redlock exclusivity test, whose counter was
 * exact). `TIME` runs in the server's command order: a hold's start is read
 * after its acquire succeeded and its end before its release was sent, so
 * holds that did not overlap never look as if they did, and holds that did
 * overlap still do. Every server of a test runs on this machine and reads
 * the same system clock, so a cluster's masters may answer it in turn.
 */

/** A client that can send `TIME`. */
export interface TimeClient {
  send(...args: string[]): Promise<unknown>;
}

/**
 * The server's clock now, in ms with µs precision.
 *
 * @param redis A client of a server on this machine.
 */
export async function serverTime(redis: TimeClient): Promise<number> {
  const [s, us] = await redis.send("TIME") as [string, string];
  return Number(s) * 1000 + Number(us) / 1000;
}
