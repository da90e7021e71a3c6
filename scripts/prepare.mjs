// Runs on `npm install` / `npm ci` in this repository: builds the bundle, so `npx genstore`
// works straight after installing. (genstore reads and writes through node-postgres or
// PGlite with SQL of its own: there is no Prisma client to generate.)
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

// `npm install ../genstore` links a checkout and runs this in it without installing its
// dependencies (npm never installs a linked folder's dependencies). Say what to do instead
// of failing on a missing module.
for (const tool of ["esbuild", "typescript"]) {
  if (!existsSync(path.join(root, "node_modules", tool, "package.json"))) {
    process.stderr.write(
      `genstore: cannot build in ${root}: its dependencies are not installed (${tool} is missing).\n` +
        "Run `npm ci` in that folder first, or install the packed package instead (`npm pack` there, then `npm install <tarball>`).\n",
    );
    process.exit(1);
  }
}
execFileSync(process.execPath, [path.join(root, "scripts/build.mjs"), "--types"], { cwd: root, stdio: "inherit" });
