// Writes the next migration from a change to prisma/schema.prisma:
//   npm run db:diff -- add_some_column
// The schema engine (WebAssembly) replays prisma/migrations into an in-memory PGlite
// shadow database and diffs it against the schema; the SQL goes to
// prisma/migrations/<timestamp>_<name>/migration.sql, as `prisma migrate dev` would write it,
// and src/db/schema-files.ts (the schema and migrations embedded in the bundle) is rewritten.
import { execFileSync } from "node:child_process";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import { PrismaPGlite } from "pglite-prisma-adapter";
import { createSchemaEngine } from "../src/db/schema-engine.ts";

const name = process.argv[2];
if (!name || !/^[a-z0-9_]+$/.test(name)) {
  console.error("usage: npm run db:diff -- <name>   (lower-case letters, digits and _)");
  process.exit(2);
}
const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const prisma = path.join(root, "prisma");
const dir = path.join(prisma, "migrations");
const schemaPath = path.join(prisma, "schema.prisma");
const schema = await readFile(schemaPath, "utf8");
const shadow = new PrismaPGlite(await PGlite.create());
const engine = await createSchemaEngine(shadow, schemaPath, schema);
const names = (await readdir(dir, { withFileTypes: true }))
  .filter((e) => e.isDirectory())
  .map((e) => e.name)
  .sort();
const migrations = await Promise.all(
  names.map(async (name) => ({ name, sql: await readFile(path.join(dir, name, "migration.sql"), "utf8") })),
);
const result = await engine.diff({
  from: {
    tag: "migrations",
    baseDir: dir,
    lockfile: { path: "migration_lock.toml", content: await readFile(path.join(dir, "migration_lock.toml"), "utf8") },
    shadowDbInitScript: "",
    migrationDirectories: migrations.map((m) => ({
      path: m.name,
      migrationFile: { path: "migration.sql", content: { tag: "ok", value: m.sql } },
    })),
  },
  to: { tag: "schemaDatamodel", files: [{ path: schemaPath, content: schema }] },
  script: true,
  exitCode: null,
  filters: { externalTables: [], externalEnums: [] },
});
engine.free();
const sql = (result.stdout ?? "").trim();
if (sql === "" || sql.startsWith("-- This is an empty migration")) {
  console.log("prisma/schema.prisma matches the migrations: nothing to write.");
  process.exit(0);
}
const stamp = new Date().toISOString().replace(/\D/g, "").slice(0, 14);
const target = path.join(dir, `${stamp}_${name}`);
await mkdir(target, { recursive: true });
await writeFile(path.join(target, "migration.sql"), `${sql}\n`);
console.log(`Wrote ${path.relative(process.cwd(), target)}/migration.sql`);
execFileSync(process.execPath, [path.join(root, "scripts/embed-schema.mjs")], { stdio: "inherit" });
process.exit(0);
