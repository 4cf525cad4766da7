/**
 * The commands that block the connection they are sent on. A shared,
 * auto-pipelined client refuses them (they would stall every caller behind
 * them); a client made with `blocking: true` takes them. Not part of the
 * public API: mod.ts does not re-export this module.
 *
 * @module
 */

/** Commands that block their connection: only on a `blocking` client. */
export const BLOCKING: ReadonlySet<string> = new Set([
  "BLPOP",
  "BRPOP",
  "BLMOVE",
  "BRPOPLPUSH",
  "BZPOPMIN",
  "BZPOPMAX",
  "BLMPOP",
  "BZMPOP",
  "WAIT",
  "WAITAOF",
]);

/**
 * Every blocking command name a shared client refuses, `XREAD` and
 * `XREADGROUP` included (refused only with `BLOCK`), for the ACL test's list
 * of names respite never sends.
 */
export const BLOCKING_COMMANDS: readonly string[] = [
  ...BLOCKING,
  "XREAD",
  "XREADGROUP",
];
