/**
 * "On Deno and Bun no `node:` module is loaded" (issue 2, item 7), checked
 * two ways, each able to fail:
 *
 * 1. The module graph of mod.ts (from `deno info --json` under Deno, from
 *    Bun's own import scanner under Bun): nothing reachable through static
 *    imports is a `node:` (or any non-file) module, and no module in the
 *    whole graph imports a `node:` module with a specifier a bundler can
 *    read, not even dynamically: lib/transport/node.ts loads `node:net` and
 *    `node:tls` through variables (esbuild bundling a Cloudflare worker
 *    follows literal dynamic imports and fails on `node:`); the runtimes'
 *    transports are imported only by lib/transport/mod.ts, only
 *    dynamically, and themselves import only lib/transport/types.ts (no
 *    cycle through mod.ts).
 * 2. At run time, in a child process of the runtime under test that connects,
 *    runs commands and subscribes:
 *    - Deno: an import map sends every `node:` built-in to a module that
 *      reports itself and throws;
 *    - Bun (whose plugins cannot replace built-ins): a preload plugin reports
 *      every runtime's transport in lib/transport/ it loads and throws on
 *      node.ts and workers.ts there, the only modules that import `node:` or
 *      `cloudflare:` modules (part 1 proves that).
 *    A control run with `connector: "node"` must trip the same wire.
 */

import assert from "node:assert/strict";
import { builtinModules } from "node:module";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, posix, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { isDeno, runtime, test } from "./_harness.ts";
import { runtimeExecutable } from "../testing/proc.ts";
import { startRedis } from "../testing/redis.ts";
import { run } from "./fixtures/tools.ts";

const modTs = fileURLToPath(new URL("../mod.ts", import.meta.url));
const libDir = fileURLToPath(new URL("../lib/", import.meta.url));
const transportDir = join(libDir, "transport");
const NODE_ONLY = "node.ts";
const WORKERS_ONLY = "workers.ts";
/** The modules of lib/transport/ that are not a runtime's transport. */
const TRANSPORT_SHARED = ["mod.ts", "types.ts"];

/** One module's imports: resolved specifiers (file paths, or e.g. "node:net"). */
interface Imports {
  static: string[];
  dynamic: string[];
}

/** mod.ts's module graph, as `deno info --json` sees it (code imports only). */
async function denoGraph(): Promise<Map<string, Imports>> {
  const r = await run(runtimeExecutable(), [
    "info",
    "--json",
    "--no-config",
    "--no-lock",
    modTs,
  ], 30_000);
  assert.equal(r.code, 0, `deno info failed: ${r.stderr}`);
  const info = JSON.parse(r.stdout) as {
    modules: {
      specifier: string;
      dependencies?: {
        code?: { specifier: string };
        isDynamic?: boolean;
      }[];
    }[];
  };
  const graph = new Map<string, Imports>();
  const name = (s: string) => s.startsWith("file:") ? fileURLToPath(s) : s;
  for (const m of info.modules) {
    const imports: Imports = { static: [], dynamic: [] };
    for (const d of m.dependencies ?? []) {
      if (d.code === undefined) continue; // type-only
      (d.isDynamic ? imports.dynamic : imports.static).push(
        name(d.code.specifier),
      );
    }
    graph.set(name(m.specifier), imports);
  }
  return graph;
}

/** mod.ts's module graph, as Bun's transpiler scans it (type imports dropped). */
async function bunGraph(): Promise<Map<string, Imports>> {
  const bun = (globalThis as unknown as {
    Bun: {
      Transpiler: new (o: { loader: string }) => {
        scanImports(code: string): { path: string; kind: string }[];
      };
    };
  }).Bun;
  const scanner = new bun.Transpiler({ loader: "ts" });
  const graph = new Map<string, Imports>();
  const todo = [modTs];
  while (todo.length > 0) {
    const file = todo.pop()!;
    if (graph.has(file)) continue;
    const imports: Imports = { static: [], dynamic: [] };
    graph.set(file, imports);
    if (!file.startsWith("/")) continue; // node:, npm:, ...
    for (const i of scanner.scanImports(await readFile(file, "utf8"))) {
      const target = i.path.startsWith(".")
        ? resolve(dirname(file), i.path)
        : i.path;
      (i.kind === "dynamic-import" ? imports.dynamic : imports.static).push(
        target,
      );
      todo.push(target);
    }
  }
  return graph;
}

test(`${runtime}: mod.ts's static module graph has no node: module; no module imports one with a literal specifier, even dynamically`, async () => {
  const graph = isDeno ? await denoGraph() : await bunGraph();
  assert.ok(graph.size > 5, `the graph looks empty: ${[...graph.keys()]}`);

  // Everything reachable from mod.ts through static imports.
  const reached = new Set<string>();
  const todo = [modTs];
  while (todo.length > 0) {
    const m = todo.pop()!;
    if (reached.has(m)) continue;
    reached.add(m);
    todo.push(...(graph.get(m)?.static ?? []));
  }
  const foreign = [...reached].filter((m) => !m.startsWith("/"));
  assert.deepEqual(foreign, [], "mod.ts statically imports non-file modules");
  for (const only of [NODE_ONLY, WORKERS_ONLY]) {
    assert.ok(
      !reached.has(join(transportDir, only)),
      `${only} is statically reachable from mod.ts`,
    );
  }

  // Who imports node: modules at all (static or dynamic)?
  const nodeImports: string[] = [];
  for (const [file, imports] of graph) {
    for (const s of imports.static) {
      if (s.startsWith("node:")) nodeImports.push(`${file} static ${s}`);
    }
    for (const s of imports.dynamic) {
      if (s.startsWith("node:")) nodeImports.push(`${file} dynamic ${s}`);
    }
  }
  const nodeTransport = join(transportDir, NODE_ONLY);
  assert.ok(
    graph.has(nodeTransport),
    `transport/node.ts is not in the graph: the scan is broken (${[
      ...graph.keys(),
    ]})`,
  );
  assert.deepEqual(
    nodeImports,
    [],
    "no module may import a node: module with a literal specifier (bundlers follow it); transport/node.ts uses variables",
  );
  // The transports are loaded only on demand, from transport/mod.ts.
  const transportMod = join(transportDir, "mod.ts");
  const isTransport = (s: string) =>
    dirname(s) === transportDir &&
    !TRANSPORT_SHARED.includes(s.slice(transportDir.length + 1));
  let transports = 0;
  for (const [file, imports] of graph) {
    for (const s of [...imports.static, ...imports.dynamic]) {
      if (isTransport(s)) {
        transports++;
        assert.equal(file, transportMod, `${file} imports ${s}`);
        assert.ok(imports.dynamic.includes(s), `${s} imported statically`);
      }
    }
  }
  assert.equal(transports, 4, "the scan missed a runtime's transport");
});

test(`${runtime}: lib/transport/: each runtime's transport imports only ./types.ts of ours, never ./mod.ts (no cycle)`, async () => {
  const names = ["deno.ts", "bun.ts", NODE_ONLY, WORKERS_ONLY];
  for (const name of names) {
    const source = await readFile(join(transportDir, name), "utf8");
    // Every module specifier: static imports and exports, `import type`,
    // dynamic `import("...")` and type-position `import("...")`.
    const specifiers = [
      ...source.matchAll(/\bfrom\s+["']([^"']+)["']/g),
      ...source.matchAll(/\bimport\s*\(\s*["']([^"']+)["']/g),
      ...source.matchAll(/^\s*import\s+["']([^"']+)["']/gm),
    ].map((m) => m[1]);
    const ours = specifiers.filter((s) => s.startsWith("."));
    assert.ok(
      ours.length > 0,
      `${name}: no import of ours seen: the scan is broken`,
    );
    assert.deepEqual(
      [...new Set(ours)],
      ["./types.ts"],
      `${name} imports ${
        ours.join(", ")
      }; a runtime's transport may import only ./types.ts`,
    );
  }
  // types.ts itself imports nothing: it only declares interfaces.
  const types = await readFile(join(transportDir, "types.ts"), "utf8");
  assert.doesNotMatch(types, /^\s*import\b|\bfrom\s+["']|\bimport\s*\(/m);
});

/**
 * The decoder is pure (its module doc says so: no I/O, no runtime APIs), and
 * so is every module it imports: the closure of its imports is exactly
 * these, and none of them names a runtime's API or a timer.
 */
const DECODER_CLOSURE = [
  "resp/decoder.ts",
  "resp/scalars.ts",
  "resp/limits.ts",
  "errors.ts",
];
/** Runtime APIs, I/O and time: none may appear in a pure module's code. */
const IMPURE =
  /\b(?:Deno|Bun|process|globalThis|window|self|require|setTimeout|setInterval|setImmediate|queueMicrotask|performance|Date|fetch|crypto|WebSocket|navigator|console)\b|\bimport\s*\(/;

/** Every module specifier in `source` (its code: doc examples are not imports): static, type-only and dynamic. */
function specifiersOf(source: string): string[] {
  return [
    ...source.matchAll(/\bfrom\s+["']([^"']+)["']/g),
    ...source.matchAll(/\bimport\s*\(\s*["']([^"']+)["']/g),
    ...source.matchAll(/^\s*import\s+["']([^"']+)["']/gm),
  ].map((m) => m[1]);
}

/** `source` without its comments (the pure modules hold no "//" in strings). */
function code(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
}

test(`${runtime}: lib/resp/decoder.ts and everything it imports are pure: no I/O, no runtime API, no timer`, async () => {
  const seen = new Set<string>();
  const todo = ["resp/decoder.ts"];
  while (todo.length > 0) {
    const name = todo.pop()!;
    if (seen.has(name)) continue;
    seen.add(name);
    const source = await readFile(join(libDir, name), "utf8");
    for (const s of specifiersOf(code(source))) {
      // A path under lib/ ("resp/scalars.ts", "errors.ts"), never outside it.
      const target = posix.normalize(posix.join(posix.dirname(name), s));
      assert.ok(
        (s.startsWith("./") || s.startsWith("../")) &&
          !target.startsWith("../"),
        `${name} imports ${s}: a pure module imports only modules of lib/`,
      );
      todo.push(target);
    }
    const impure = code(source).match(IMPURE);
    assert.equal(
      impure,
      null,
      `${name} uses ${
        impure?.[0]
      }: a pure module has no I/O and no runtime API`,
    );
  }
  assert.deepEqual(
    [...seen].sort(),
    [...DECODER_CLOSURE].sort(),
    "the decoder's imports changed: keep them pure and list them here",
  );
});

const CHILD = `
import { connect } from ${JSON.stringify(pathToFileURL(modTs).href)};
const [port, mode] = globalThis.Deno ? Deno.args : process.argv.slice(2);
const redis = await connect({
  hostname: "127.0.0.1",
  port: Number(port),
  reconnect: false,
  ...(mode === "node" ? { connector: "node" } : {}),
});
const key = "respite:test:purity:" + Math.random();
await redis.send("SET", key, "v");
const got = await redis.send("GET", key);
let timer;
const message = await new Promise((done) => {
  timer = setTimeout(() => done(null), 5000);
  redis.subscribe(key, done).then(() => redis.send("PUBLISH", key, "m"));
});
clearTimeout(timer);
await redis.send("DEL", key);
await redis.close();
console.log("RESPITE-CHILD-OK " + JSON.stringify({ got, message }));
`;

/** Writes the Deno import map that poisons node: built-ins; returns its path. */
async function denoPoison(dir: string): Promise<string> {
  await mkdir(join(dir, "poison"));
  const imports: Record<string, string> = {};
  const names = new Set([
    ...builtinModules.map((m) => m.replace(/^node:/, "")),
    "test",
    "sqlite",
    "sea",
  ]);
  for (const name of names) {
    const file = join(dir, "poison", `${name.replaceAll("/", "__")}.mjs`);
    await writeFile(
      file,
      `console.error("RESPITE-POISON node:${name} was loaded");\n` +
        `throw new Error("node:${name} must not be loaded here");\n`,
    );
    imports[`node:${name}`] = pathToFileURL(file).href;
    imports[name] = pathToFileURL(file).href;
  }
  const map = join(dir, "import_map.json");
  await writeFile(map, JSON.stringify({ imports }, null, 2));
  return map;
}

const BUN_PRELOAD = `
import { plugin } from "bun";
plugin({
  name: "respite-purity",
  setup(build) {
    build.onLoad({ filter: /[\\\\/]lib[\\\\/]transport[\\\\/]\\w+\\.ts$/ }, async (args) => {
      const name = args.path.split(/[\\\\/]/).pop();
      if (${JSON.stringify(TRANSPORT_SHARED)}.includes(name)) {
        // Not a runtime's transport: the chooser and the interfaces.
        return { contents: await Bun.file(args.path).text(), loader: "ts" };
      }
      if (name === ${JSON.stringify(NODE_ONLY)} || name === ${
  JSON.stringify(WORKERS_ONLY)
}) {
        console.error("RESPITE-POISON " + name + " was loaded");
        throw new Error(name + " must not be loaded here");
      }
      console.error("RESPITE-LOADED " + name);
      return { contents: await Bun.file(args.path).text(), loader: "ts" };
    });
  },
});
`;

test(
  `${runtime}: at run time, connect + commands + pub/sub load no node: module (and the check catches one)`,
  async () => {
    const dir = await mkdtemp(join(tmpdir(), "respite-purity-"));
    const server = await startRedis();
    try {
      const child = join(dir, "child.mjs");
      await writeFile(child, CHILD);
      let argv: (mode: string) => string[];
      if (isDeno) {
        const map = await denoPoison(dir);
        argv = (mode) => [
          "run",
          "--no-config",
          "--no-lock",
          "--no-remote",
          "--no-npm",
          "--import-map",
          map,
          // transport/node.ts imports node:net through a variable, which
          // Deno resolves at run time: the poisoned module is a file then.
          `--allow-read=${join(dir, "poison")}`,
          "--allow-net=127.0.0.1",
          child,
          String(server.port),
          mode,
        ];
      } else {
        const preload = join(dir, "preload.ts");
        await writeFile(preload, BUN_PRELOAD);
        argv = (mode) => [
          "--preload",
          preload,
          child,
          String(server.port),
          mode,
        ];
      }
      const exe = runtimeExecutable();

      const ok = await run(exe, argv("default"), 15_000, { cwd: dir });
      const report =
        `exit ${ok.code}\nstdout: ${ok.stdout}\nstderr: ${ok.stderr}`;
      assert.doesNotMatch(ok.stderr, /RESPITE-POISON/, report);
      assert.equal(ok.code, 0, report);
      assert.match(
        ok.stdout,
        /RESPITE-CHILD-OK \{"got":"v","message":"m"\}/,
        report,
      );
      if (!isDeno) {
        // The wire is live: it saw the one transport Bun loaded.
        const loaded = [...ok.stderr.matchAll(/RESPITE-LOADED (\S+)/g)].map(
          (m) => m[1],
        );
        assert.deepEqual(loaded, ["bun.ts"], report);
      }

      // Control: forcing the Node transport must trip the wire.
      const bad = await run(exe, argv("node"), 15_000, { cwd: dir });
      const badReport =
        `exit ${bad.code}\nstdout: ${bad.stdout}\nstderr: ${bad.stderr}`;
      assert.notEqual(bad.code, 0, badReport);
      assert.doesNotMatch(bad.stdout, /RESPITE-CHILD-OK/, badReport);
      assert.match(
        bad.stderr,
        isDeno
          ? /RESPITE-POISON node:net was loaded/
          : /RESPITE-POISON node\.ts was loaded/,
        badReport,
      );
    } finally {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    }
  },
  { timeout: 30_000 },
);
