// `npm publish` runs this first (prepublishOnly, after a build): lists what `npm pack` would
// put in the tarball and checks that it holds what an installed genstore runs (the CLI and
// the library from dist/, their types, the schema engine) and nothing else.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

const manifest = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
const [packed] = JSON.parse(
  execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  }),
);
const files = new Set(packed.files.map((f) => f.path));
const problems = [];
for (const needed of [
  "package.json",
  "README.md",
  "LICENSE",
  "bin/genstore",
  "dist/cli.js",
  "dist/index.js",
  "dist/types/index.d.ts",
  "dist/schema_engine_bg.wasm",
  "dist/static/index.html",
]) {
  if (!files.has(needed)) problems.push(`missing ${needed}`);
}
for (const file of files) {
  if (/^(src|tests|bench|scripts|examples)\//.test(file)) problems.push(`should not ship ${file}`);
}
if (manifest.private) problems.push('package.json says "private"');
for (const field of ["license", "repository", "files", "exports", "types", "bin"])
  if (!manifest[field]) problems.push(`package.json has no "${field}"`);
if (problems.length > 0) {
  console.error(`genstore ${manifest.version} is not ready to publish:\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
console.error(`genstore ${manifest.version}: ${files.size} files, ${packed.size} bytes packed; ready to publish.`);
