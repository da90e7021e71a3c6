import { createHash, randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { GenerationsConfig } from "../../src/config.ts";
import type { Queryable } from "../../src/db/client.ts";
import { createTestDatabase, type DatabaseKind } from "./db.ts";

// An app's database, built the way apps build theirs: the SQL `prisma migrate diff` wrote
// for the app's schema.prisma (tests/fixtures/apps/<app>, written by generate.ts there),
// applied in the app's schema, and the app's own _prisma_migrations row for it, as
// `prisma migrate deploy` leaves them. genstore's schema is not migrated yet: that is the
// operator's first step.

export type AppName = "a" | "b" | "c";
export const APP_NAMES: AppName[] = ["a", "b", "c"];
export const APP_MIGRATION = "20250101000000_app_init";

/** What each app's operator writes in genstore.config.json (a: nothing at all). */
export const APP_CONFIG: Record<AppName, GenerationsConfig | undefined> = {
  a: undefined,
  b: {
    table: "generations",
    columns: {
      userId: "user_id",
      replicateId: "job_id",
      imageUrls: "image_urls",
      storageProvider: "storage_provider",
      storageBucket: "storage_bucket",
      storageKeys: "storage_keys",
      operationType: "operation_type",
      storageContext: "storage_context",
      createdAt: "created_at",
      updatedAt: "updated_at",
      completedAt: "completed_at",
    },
    status: {
      starting: "PENDING",
      processing: "PROCESSING",
      succeeded: "COMPLETED",
      failed: "FAILED",
      canceled: "CANCELED",
      aborted: "CANCELED",
    },
  },
  c: { defaults: { title: "Untitled" } },
};

/** The app's table and its names for the columns the tests look at directly. */
export const APP_TABLE: Record<AppName, { table: string; userId: string; predictionId: string; status: string }> = {
  a: { table: "Generation", userId: "userId", predictionId: "replicateId", status: "status" },
  b: { table: "generations", userId: "user_id", predictionId: "job_id", status: "status" },
  c: { table: "Generation", userId: "userId", predictionId: "replicateId", status: "status" },
};

/** Prisma's own _prisma_migrations table, as its migrate commands create it. */
const PRISMA_MIGRATIONS_DDL = `CREATE TABLE "_prisma_migrations" (
  "id" VARCHAR(36) PRIMARY KEY NOT NULL,
  "checksum" VARCHAR(64) NOT NULL,
  "finished_at" TIMESTAMPTZ,
  "migration_name" VARCHAR(255) NOT NULL,
  "logs" TEXT,
  "rolled_back_at" TIMESTAMPTZ,
  "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
  "applied_steps_count" INTEGER NOT NULL DEFAULT 0
)`;

export async function appMigrationSql(app: AppName): Promise<string> {
  return readFile(
    path.join(import.meta.dirname, "../fixtures/apps", app, "migrations", APP_MIGRATION, "migration.sql"),
    "utf8",
  );
}

/** Applies the app's migration in `schema`, and records it in that schema's _prisma_migrations. */
export async function buildAppSchema(
  db: Pick<Queryable, "query"> & { transaction: <T>(w: (tx: Queryable) => Promise<T>) => Promise<T> },
  schema: string,
  app: AppName,
): Promise<void> {
  const sql = await appMigrationSql(app);
  await db.transaction(async (tx) => {
    await tx.query(`SET LOCAL search_path TO "${schema}"`);
    for (const statement of sql
      .split(/;\s*\n/)
      .map((s) => s.trim())
      .filter((s) => s.replace(/--.*$/gm, "").trim() !== ""))
      await tx.query(statement);
    await tx.query(PRISMA_MIGRATIONS_DDL);
    await tx.query(
      `INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, started_at, applied_steps_count)
       VALUES ($1, $2, now(), $3, now(), 1)`,
      randomUUID(),
      createHash("sha256").update(sql).digest("hex"),
      APP_MIGRATION,
    );
  });
}

/** A database holding app `app`'s tables in its connection schema, genstore's schema not yet migrated. */
export async function createAppDatabase(kind: DatabaseKind, app: AppName, generations = APP_CONFIG[app]) {
  const test = await createTestDatabase(kind, { migrate: false, generations });
  const appSchema = test.db.appSchema;
  await buildAppSchema(test.db, appSchema, app);
  return { ...test, appSchema, table: `"${appSchema}"."${APP_TABLE[app].table}"` };
}

export interface AppSnapshot {
  /** Every object in the app's schema: relations, types, functions. */
  objects: string[];
  /** Every column of every table in the app's schema, with its type, default and nullability. */
  columns: string[];
  indexes: string[];
  history: unknown[];
}

/** Everything in the app's schema that genstore must never change. */
export async function snapshotApp(db: Queryable, schema: string): Promise<AppSnapshot> {
  const objects = await db.query<{ o: string }>(
    `SELECT kind || ' ' || name AS o FROM (
       SELECT c.relkind::text AS kind, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1
       UNION ALL SELECT 'type', t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = $1 AND t.typrelid = 0 AND t.typcategory <> 'A'
       UNION ALL SELECT 'function', p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1
       UNION ALL SELECT 'trigger', tg.tgname FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND NOT tg.tgisinternal
     ) AS o ORDER BY 1`,
    schema,
  );
  const columns = await db.query<{ c: string }>(
    `SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '') AS c
       FROM information_schema.columns WHERE table_schema = $1 ORDER BY 1`,
    schema,
  );
  const indexes = await db.query<{ indexdef: string }>(
    `SELECT indexdef FROM pg_indexes WHERE schemaname = $1 ORDER BY indexdef`,
    schema,
  );
  const history = await db.query(
    `SELECT id, checksum, migration_name, finished_at, rolled_back_at, applied_steps_count FROM "${schema}"."_prisma_migrations" ORDER BY migration_name`,
  );
  return {
    objects: objects.map((r) => r.o),
    columns: columns.map((r) => r.c),
    indexes: indexes.map((r) => r.indexdef),
    history,
  };
}
