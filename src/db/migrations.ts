import { createHash } from "node:crypto";
import {
  compareMigrations,
  type AppliedMigration,
  type LocalMigration,
  type MigrationState,
} from "../core/schema-migrations.ts";
import { quoteIdent } from "../core/generation-table.ts";
import { DatabaseError, ExitCode, UserError } from "../errors.ts";
import { loadSchemaEngine } from "../lazy.ts";
import type { Database, Queryable } from "./client.ts";
import { MIGRATION_LOCK, MIGRATIONS, SCHEMA_PRISMA } from "./schema-files.ts";

// genstore's migrations (prisma/migrations, embedded in the bundle by scripts/embed-schema.mjs)
// and their history live in genstore's own schema: `db migrate` and `db status` read and write
// that schema's _prisma_migrations and no other, so an app's own migrations never concern
// genstore, and genstore's never appear in the app's history.
//
// genstore 0.1 kept its tables and history in the connection's schema (public). Such a
// database is upgraded by `db migrate` (the embedded one, on the spot): the tables move
// into genstore's schema with ALTER TABLE … SET SCHEMA (rows, indexes and constraints go
// with them), and genstore's rows leave the old _prisma_migrations for the new one.

const FILTERS = { externalTables: [], externalEnums: [] };

/** The migrations genstore 0.1 applied in the connection's schema. */
export const LEGACY_MIGRATIONS: readonly string[] = ["20261130190000_init"];
/** The tables those migrations created. */
const LEGACY_TABLES = ["Generation", "WebhookDelivery", "KeyMove", "JobCursor"];

export interface MigrationFile extends LocalMigration {
  sql: string;
}

export function localMigrations(): MigrationFile[] {
  return MIGRATIONS.map((m) => ({
    name: m.name,
    sql: m.sql,
    checksum: createHash("sha256").update(m.sql).digest("hex"),
  }));
}

/** genstore 0.1's layout, found in the connection's schema. */
export interface LegacyLayout {
  schema: string;
  /** genstore's rows in that schema's _prisma_migrations. */
  migrations: AppliedMigration[];
  /** genstore's tables there. */
  tables: string[];
}

export interface DatabaseMigrationState extends MigrationState {
  database: string;
  /** genstore's schema. */
  schema: string;
  legacy?: LegacyLayout;
}

export async function readAppliedMigrations(db: Queryable, schema: string): Promise<AppliedMigration[]> {
  const table = `${quoteIdent(schema)}."_prisma_migrations"`;
  const [exists] = await db.query<{ present: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS present`, table);
  if (!exists?.present) return [];
  const rows = await db.query<{
    migration_name: string;
    checksum: string;
    finished_at: Date | null;
    rolled_back_at: Date | null;
  }>(`SELECT migration_name, checksum, finished_at, rolled_back_at FROM ${table} ORDER BY started_at`);
  return rows.map((r) => ({
    name: r.migration_name,
    checksum: r.checksum,
    finished: r.finished_at !== null,
    rolledBack: r.rolled_back_at !== null,
  }));
}

/** genstore 0.1's tables and history in the connection's schema, if this database has them. */
export async function findLegacyLayout(db: Database): Promise<LegacyLayout | undefined> {
  if (db.appSchema === db.schema) return undefined;
  const history = await readAppliedMigrations(db, db.appSchema);
  const ours = history.filter((m) => LEGACY_MIGRATIONS.includes(m.name));
  if (ours.length === 0) return undefined;
  const present = await db.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname = ANY($2::text[])`,
    db.appSchema,
    LEGACY_TABLES,
  );
  return { schema: db.appSchema, migrations: ours, tables: present.map((r) => r.name).sort() };
}

export async function migrationState(db: Database): Promise<DatabaseMigrationState> {
  const [applied, legacy] = await Promise.all([readAppliedMigrations(db, db.schema), findLegacyLayout(db)]);
  const state = compareMigrations(localMigrations(), applied);
  if (legacy) state.upToDate = false;
  return { database: db.describe, schema: db.schema, ...state, ...(legacy ? { legacy } : {}) };
}

/** Moves genstore 0.1's layout into genstore's schema (one transaction); returns the tables moved. */
async function moveLegacyLayout(db: Database): Promise<string[]> {
  return db.transaction(async (tx) => {
    // Two upgrades at once: the second waits here, then finds nothing left to move.
    await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, `genstore:upgrade:${db.schema}`);
    const legacy = await findLegacyLayout({ ...db, query: (sql, ...params) => tx.query(sql, ...params) });
    if (!legacy) return [];
    const from = quoteIdent(legacy.schema);
    const to = quoteIdent(db.schema);
    await tx.query(`CREATE SCHEMA IF NOT EXISTS ${to}`);
    // A finished migration made these tables; a failed one (the app had its own Generation) made none.
    const created = legacy.migrations.some((m) => m.finished && !m.rolledBack);
    const moved: string[] = [];
    if (created) {
      for (const table of legacy.tables) {
        await tx.query(`ALTER TABLE ${from}.${quoteIdent(table)} SET SCHEMA ${to}`);
        moved.push(table);
      }
    }
    const history = `${from}."_prisma_migrations"`;
    const [others] = await tx.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${history} WHERE NOT (migration_name = ANY($1::text[]))`,
      LEGACY_MIGRATIONS,
    );
    if (Number(others?.n ?? 0) === 0 && (await readAppliedMigrations(tx, db.schema)).length === 0) {
      // The history held genstore's migrations alone: it moves as it is.
      if (created) await tx.query(`ALTER TABLE ${history} SET SCHEMA ${to}`);
      else await tx.query(`DROP TABLE ${history}`);
    } else {
      // The app's history too: genstore's rows leave it (a failed one is dropped: it changed nothing).
      await tx.query(`CREATE TABLE IF NOT EXISTS ${to}."_prisma_migrations" (LIKE ${history} INCLUDING ALL)`);
      if (created)
        await tx.query(
          `INSERT INTO ${to}."_prisma_migrations" SELECT * FROM ${history}
            WHERE migration_name = ANY($1::text[]) AND finished_at IS NOT NULL AND rolled_back_at IS NULL
           ON CONFLICT DO NOTHING`,
          LEGACY_MIGRATIONS,
        );
      await tx.query(`DELETE FROM ${history} WHERE migration_name = ANY($1::text[])`, LEGACY_MIGRATIONS);
    }
    return moved;
  });
}

export interface MigrateResult {
  applied: string[];
  /** Tables moved from genstore 0.1's layout into genstore's schema. */
  moved: string[];
}

/** Upgrades genstore 0.1's layout, then applies pending migrations through the WebAssembly schema engine. */
export async function applyMigrations(db: Database): Promise<MigrateResult> {
  const moved = (await findLegacyLayout(db)) ? await moveLegacyLayout(db) : [];
  const state = compareMigrations(localMigrations(), await readAppliedMigrations(db, db.schema));
  refuseBrokenHistory(db, state);
  db.forgetGenerations();
  if (state.pending.length === 0) return { applied: [], moved };
  await db.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(db.schema)}`);
  const { createSchemaEngine } = await loadSchemaEngine();
  const connection = await db.migrationAdapter();
  const engine = await createSchemaEngine(connection.factory, "schema.prisma", SCHEMA_PRISMA);
  try {
    const result = await engine.applyMigrations({
      filters: FILTERS,
      migrationsList: {
        baseDir: "prisma/migrations",
        lockfile: { path: "migration_lock.toml", content: MIGRATION_LOCK },
        shadowDbInitScript: "",
        migrationDirectories: localMigrations().map((m) => ({
          path: m.name,
          migrationFile: { path: "migration.sql", content: { tag: "ok", value: m.sql } },
        })),
      },
    });
    return { applied: result.appliedMigrationNames, moved };
  } catch (error) {
    throw new DatabaseError(
      `Applying migrations to ${db.describe} failed: ${engineMessage(error)}`,
      "Fix the cause, then run `genstore db migrate` again.",
      error,
    );
  } finally {
    engine.free();
    db.forgetGenerations();
    await connection.close().catch(() => {});
  }
}

/**
 * Makes sure genstore's schema is current before a command touches data: the embedded
 * database is migrated on the spot; a PostgreSQL server is shared, so it is only ever
 * migrated when an operator says so.
 */
export async function ensureMigrated(db: Database): Promise<void> {
  const state = await migrationState(db);
  if (state.upToDate) return;
  refuseBrokenHistory(db, state);
  if (db.kind === "embedded") {
    await applyMigrations(db);
    return;
  }
  if (state.legacy) {
    throw new DatabaseError(
      `${db.describe} has genstore's tables in schema ${state.legacy.schema} (genstore 0.1's layout); they now live in schema ${db.schema}.`,
      "Run `genstore db migrate` once: it moves them, rows included, and leaves the app's own tables and migrations alone.",
    );
  }
  const n = state.pending.length;
  throw new DatabaseError(
    `${db.describe} has ${n} pending genstore migration${n === 1 ? "" : "s"} in schema ${db.schema} (${state.pending.join(", ")}).`,
    "Run `genstore db migrate` first.",
  );
}

function refuseBrokenHistory(db: Database, state: MigrationState): void {
  if (state.failed.length > 0) {
    throw new DatabaseError(
      `Migration ${state.failed.join(", ")} failed part-way on ${db.describe} (schema ${db.schema}).`,
      "Inspect the database, fix it by hand, then mark it resolved (prisma migrate resolve) before running again.",
    );
  }
  if (state.unknown.length > 0) {
    throw new UserError(
      `${db.describe} has genstore migrations this genstore does not know (${state.unknown.join(", ")} in schema ${db.schema}): it is newer.`,
      { hint: "Upgrade genstore.", exitCode: ExitCode.database },
    );
  }
}

function engineMessage(error: unknown): string {
  const e = error as { message?: string; meta?: { message?: string } };
  return (e?.meta?.message ?? e?.message ?? String(error)).split("\n")[0]!;
}
