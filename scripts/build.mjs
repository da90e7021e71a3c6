// Bundles src/ into dist/ (our code only; node_modules stay external) so the CLI starts
// fast: one file for the command surface, each command's heavy parts in lazy chunks.
// Builds beside dist/ and swaps it in, so a CLI already running keeps its chunks.
// With --types it also writes the library's type declarations (dist/types, about 5 s of tsc);
// without, it keeps the ones already there.
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { build } from "esbuild";

const dist = new URL("../dist", import.meta.url);
const next = new URL(`../dist.next-${process.pid}`, import.meta.url);
const old = new URL(`../dist.old-${process.pid}`, import.meta.url);
await build({
  entryPoints: { cli: "src/cli.ts", index: "src/index.ts" },
  outdir: next.pathname,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  packages: "external",
  sourcemap: true,
  logLevel: "warning",
  plugins: [schemaEngineBesideBundle()],
});
// The schema engine's WebAssembly travels inside the package, beside the chunk that reads it.
const wasm = createRequire(import.meta.url)
  .resolve("@prisma/schema-engine-wasm/schema_engine_bg")
  .replace(/\.js$/, ".wasm");
copyFileSync(wasm, new URL("schema_engine_bg.wasm", `${next.href}/`));
// The gallery's page, read beside the chunk that serves it (src/gallery/server.ts: ./static/).
const staticDir = new URL("../src/gallery/static/", import.meta.url);
mkdirSync(new URL("static", `${next.href}/`));
for (const name of readdirSync(staticDir))
  copyFileSync(new URL(name, staticDir), new URL(`static/${name}`, `${next.href}/`));
const types = new URL("types", `${dist.href}/`);
if (process.argv.includes("--types")) {
  const tsc = new URL("../node_modules/typescript/bin/tsc", import.meta.url).pathname;
  const config = new URL("../tsconfig.types.json", import.meta.url).pathname;
  execFileSync(process.execPath, [tsc, "-p", config, "--outDir", new URL("types", `${next.href}/`).pathname], {
    stdio: "inherit",
  });
} else if (existsSync(types)) {
  renameSync(types, new URL("types", `${next.href}/`));
}
try {
  renameSync(dist, old);
} catch {
  // no dist/ yet
}
renameSync(next, dist);
rmSync(old, { recursive: true, force: true });

/**
 * src/db/schema-engine-wasm.ts finds the engine in node_modules (for the sources); the
 * bundle reads the copy beside it instead, through a `new URL(…, import.meta.url)` that
 * bundlers and output file tracing (Next.js standalone) follow. esbuild puts shared chunks
 * in dist/ itself, so "./" is dist/.
 */
function schemaEngineBesideBundle() {
  return {
    name: "schema-engine-beside-bundle",
    setup(b) {
      b.onLoad({ filter: /[\\/]src[\\/]db[\\/]schema-engine-wasm\.ts$/ }, () => ({
        loader: "ts",
        contents: `import { readFile } from "node:fs/promises";
export function readSchemaEngineWasm() {
  return readFile(new URL("./schema_engine_bg.wasm", import.meta.url));
}
`,
      }));
    },
  };
}
