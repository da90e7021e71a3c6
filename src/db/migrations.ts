import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import {
  compareMigrations,
  type AppliedMigration,
  type LocalMigration,
  type MigrationState,
} from "../core/schema-migrations.ts";
import { DatabaseError, ExitCode, UserError } from "../errors.ts";
import { packageRoot } from "../paths.ts";
import type { Database } from "./client.ts";

const FILTERS = { externalTables: [], externalEnums: [] };

export function prismaFolder(): string {
  return path.join(packageRoot(), "prisma");
}

interface MigrationFolder extends LocalMigration {
  sql: string;
}

export async function readLocalMigrations(dir = path.join(prismaFolder(), "migrations")): Promise<MigrationFolder[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const folders = entries
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
  return Promise.all(
    folders.map(async (name) => {
      const sql = await readFile(path.join(dir, name, "migration.sql"), "utf8");
      return { name, sql, checksum: createHash("sha256").update(sql).digest("hex") };
    }),
  );
}

export async function readAppliedMigrations(db: Database): Promise<AppliedMigration[]> {
  const [exists] = await db.query<{ present: boolean }>(
    `SELECT to_regclass($1) IS NOT NULL AS present`,
    `"${db.schema}"."_prisma_migrations"`,
  );
  if (!exists?.present) return [];
  const rows = await db.query<{
    migration_name: string;
    checksum: string;
    finished_at: Date | null;
    rolled_back_at: Date | null;
  }>(`SELECT migration_name, checksum, finished_at, rolled_back_at FROM "_prisma_migrations" ORDER BY started_at`);
  return rows.map((r) => ({
    name: r.migration_name,
    checksum: r.checksum,
    finished: r.finished_at !== null,
    rolledBack: r.rolled_back_at !== null,
  }));
}

export async function migrationState(db: Database): Promise<MigrationState> {
  return compareMigrations(await readLocalMigrations(), await readAppliedMigrations(db));
}

/** Applies pending migrations through the WebAssembly schema engine; returns their names. */
export async function applyMigrations(db: Database): Promise<string[]> {
  const state = await migrationState(db);
  refuseBrokenHistory(db, state);
  if (state.pending.length === 0) return [];
  const dir = path.join(prismaFolder(), "migrations");
  const [local, lockfile, schemaText] = await Promise.all([
    readLocalMigrations(dir),
    readFile(path.join(dir, "migration_lock.toml"), "utf8"),
    readFile(path.join(prismaFolder(), "schema.prisma"), "utf8"),
  ]);
  const { createSchemaEngine } = await import("./schema-engine.ts");
  const connection = await db.migrationFactory();
  const engine = await createSchemaEngine(connection.factory, "schema.prisma", schemaText);
  try {
    const result = await engine.applyMigrations({
      filters: FILTERS,
      migrationsList: {
        baseDir: dir,
        lockfile: { path: "migration_lock.toml", content: lockfile },
        shadowDbInitScript: "",
        migrationDirectories: local.map((m) => ({
          path: m.name,
          migrationFile: { path: "migration.sql", content: { tag: "ok", value: m.sql } },
        })),
      },
    });
    return result.appliedMigrationNames;
  } catch (error) {
    throw new DatabaseError(
      `Applying migrations to ${db.describe} failed: ${engineMessage(error)}`,
      "Fix the cause, then run `genstore db migrate` again.",
      error,
    );
  } finally {
    engine.free();
    await connection.close().catch(() => {});
  }
}

/**
 * Makes sure the schema is current before a command touches data: the embedded database
 * is migrated on the spot; a PostgreSQL server is shared, so it is only ever migrated
 * when an operator says so.
 */
export async function ensureMigrated(db: Database): Promise<void> {
  const state = await migrationState(db);
  if (state.upToDate) return;
  refuseBrokenHistory(db, state);
  if (db.kind === "embedded") {
    await applyMigrations(db);
    return;
  }
  const n = state.pending.length;
  throw new DatabaseError(
    `${db.describe} has ${n} pending migration${n === 1 ? "" : "s"} (${state.pending.join(", ")}).`,
    "Run `genstore db migrate` first.",
  );
}

function refuseBrokenHistory(db: Database, state: MigrationState): void {
  if (state.failed.length > 0) {
    throw new DatabaseError(
      `Migration ${state.failed.join(", ")} failed part-way on ${db.describe}.`,
      "Inspect the database, fix it by hand, then mark it resolved (prisma migrate resolve) before running again.",
    );
  }
  if (state.unknown.length > 0) {
    throw new UserError(
      `${db.describe} has migrations this genstore does not know (${state.unknown.join(", ")}): it is newer.`,
      {
        hint: "Upgrade genstore.",
        exitCode: ExitCode.database,
      },
    );
  }
}

function engineMessage(error: unknown): string {
  const e = error as { message?: string; meta?: { message?: string } };
  return (e?.meta?.message ?? e?.message ?? String(error)).split("\n")[0]!;
}
