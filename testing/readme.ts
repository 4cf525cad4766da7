/**
 * The README's code blocks, read from README.md itself at test time, so a
 * test runs exactly what a reader copies.
 *
 * A block is tagged by the HTML comment on the last non-blank line before its
 * opening fence: `<!-- example: NAME runtime=RUNTIME -->` (the runtime defaults to
 * `deno`; others: `bun`, `node`, `workerd`). Untagged blocks are returned too
 * (with `name` undefined) so a test can insist that every `ts` block is
 * tagged and run.
 *
 * @module
 */

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** One fenced code block of README.md. */
export interface ReadmeBlock {
  /** The fence's language, e.g. `ts`, `sh`, or "" when none was given. */
  lang: string;
  /** From the tag comment; undefined when the block is untagged. */
  name?: string;
  /** From the tag comment (`runtime=`), default `deno`. */
  runtime: string;
  /** The block's text, without the fences. */
  code: string;
  /** 1-based line of the opening fence, for messages. */
  line: number;
}

const TAG = /^<!--\s*example:\s*([\w.-]+)((?:\s+\w+=[\w.-]+)*)\s*-->\s*$/;

/**
 * Parses README.md (or another Markdown file) into its fenced code blocks.
 *
 * @param path The Markdown file (default: the repository's README.md).
 * @returns The blocks, in order.
 */
export function readmeBlocks(
  path: string = fileURLToPath(new URL("../README.md", import.meta.url)),
): ReadmeBlock[] {
  const lines = readFileSync(path, "utf8").split("\n");
  const blocks: ReadmeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)\s*$/.exec(lines[i]);
    if (open === null) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]); i++) {
      body.push(lines[i]);
    }
    // The tag is the last non-blank line before the fence (`deno fmt` puts a
    // blank line between an HTML comment and a fence).
    let before = start - 1;
    while (before >= 0 && lines[before].trim() === "") before--;
    const tag = before >= 0 ? TAG.exec(lines[before].trim()) : null;
    const attrs = new Map<string, string>();
    for (const m of (tag?.[2] ?? "").matchAll(/(\w+)=([\w.-]+)/g)) {
      attrs.set(m[1], m[2]);
    }
    blocks.push({
      lang: open[1],
      name: tag?.[1],
      runtime: attrs.get("runtime") ?? "deno",
      code: body.join("\n") + "\n",
      line: start + 1,
    });
  }
  return blocks;
}

/**
 * The block tagged `name`; throws when there is none (or more than one), so a
 * test cannot silently run nothing.
 *
 * @param name The tag's name.
 * @param path The Markdown file (default: README.md).
 * @returns The block.
 */
export function readmeBlock(name: string, path?: string): ReadmeBlock {
  const found = readmeBlocks(path).filter((b) => b.name === name);
  if (found.length !== 1) {
    throw new Error(
      `README.md has ${found.length} blocks tagged "example: ${name}"; want exactly 1`,
    );
  }
  return found[0];
}
