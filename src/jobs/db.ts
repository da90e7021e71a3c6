import type { GenerationsConfig } from "../config.ts";
import { checkTable, type TableCheck } from "../core/table-check.ts";
import type { Database } from "../db/client.ts";
import { locateGenerationTable, readTableShape } from "../db/generations.ts";
import { applyMigrations, migrationState, type DatabaseMigrationState, type MigrateResult } from "../db/migrations.ts";

// `db migrate`, `db status` and `db check`: genstore's migrations (in its own schema) and
// the generations table it uses (its own, or the app's).

export interface GenerationsInUse {
  /** schema.table */
  table: string;
  mode: "owned" | "attached";
  exists: boolean;
}

export interface DbStatus extends DatabaseMigrationState {
  generations: GenerationsInUse;
}

async function generationsInUse(db: Database, config?: GenerationsConfig): Promise<GenerationsInUse> {
  const { mode, mapping } = await locateGenerationTable(db, config);
  const shape = await readTableShape(db, mapping.schema, mapping.table);
  return { table: `${mapping.schema}.${mapping.table}`, mode, exists: shape.columns.size > 0 };
}

export async function runDbStatus(deps: { db: Database; generations?: GenerationsConfig }): Promise<DbStatus> {
  const state = await migrationState(deps.db);
  return { ...state, generations: await generationsInUse(deps.db, deps.generations) };
}

export async function runDbMigrate(deps: {
  db: Database;
  generations?: GenerationsConfig;
}): Promise<MigrateResult & { database: string; schema: string; generations: GenerationsInUse }> {
  const result = await applyMigrations(deps.db);
  return {
    database: deps.db.describe,
    schema: deps.db.schema,
    ...result,
    generations: await generationsInUse(deps.db, deps.generations),
  };
}

export async function runDbCheck(deps: {
  db: Database;
  generations?: GenerationsConfig;
}): Promise<TableCheck & { database: string; exists: boolean }> {
  const { mode, mapping } = await locateGenerationTable(deps.db, deps.generations);
  const shape = await readTableShape(deps.db, mapping.schema, mapping.table);
  return { database: deps.db.describe, exists: shape.columns.size > 0, ...checkTable(mode, mapping, shape) };
}
