// Bundles src/ into dist/ (our code only; node_modules stay external) so the CLI starts
// fast: one file for the command surface, each command's heavy parts in lazy chunks.
// Builds beside dist/ and swaps it in, so a CLI already running keeps its chunks.
import { build } from "esbuild";
import { renameSync, rmSync } from "node:fs";

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
});
try {
  renameSync(dist, old);
} catch {
  // no dist/ yet
}
renameSync(next, dist);
rmSync(old, { recursive: true, force: true });
