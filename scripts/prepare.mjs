// Runs on `npm install` / `npm ci` in this repository: generates the Prisma client and
// builds the bundle, so `npx genstore` works straight after installing.
import { execFileSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const run = (cmd, args, env = {}) =>
  execFileSync(cmd, args, { cwd: root, stdio: "inherit", env: { ...process.env, ...env } });

// `prisma generate` never runs the schema engine, but the CLI tries to download it unless
// told where one is; a stub stands in (migrations use the WebAssembly engine instead).
run(process.execPath, [path.join(root, "node_modules/prisma/build/index.js"), "generate"], {
  PRISMA_SCHEMA_ENGINE_BINARY: path.join(root, "scripts/schema-engine-stub"),
  PRISMA_HIDE_UPDATE_MESSAGE: "1",
});
run(process.execPath, [path.join(root, "scripts/build.mjs"), "--types"]);
