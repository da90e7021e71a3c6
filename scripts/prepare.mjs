// Runs on `npm install` / `npm ci` in this repository: builds the bundle, so `npx genstore`
// works straight after installing. (genstore reads and writes through node-postgres or
// PGlite with SQL of its own: there is no Prisma client to generate.)
import { execFileSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
execFileSync(process.execPath, [path.join(root, "scripts/build.mjs"), "--types"], { cwd: root, stdio: "inherit" });
