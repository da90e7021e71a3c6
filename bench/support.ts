import pg from "pg";
import { openDatabase, type Database } from "../src/db/client.ts";
import { applyMigrations } from "../src/db/migrations.ts";

// A migrated PostgreSQL schema of its own for one benchmark, dropped afterwards.
// BENCH_DATABASE_URL selects the server (default: the local one, database test).

export const benchDatabaseUrl = process.env.BENCH_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/test";

export async function withBenchDatabase(
  name: string,
  fn: (db: Database, schema: string) => Promise<void>,
): Promise<void> {
  const schema = `genstore_bench_${name}_${process.pid}`;
  const admin = new pg.Client({ connectionString: benchDatabaseUrl });
  await admin.connect();
  await admin.query(`CREATE SCHEMA "${schema}"`);
  const db = await openDatabase({ kind: "postgres", url: benchDatabaseUrl, schema });
  try {
    await applyMigrations(db);
    await fn(db, schema);
  } finally {
    await db.close();
    await admin.query(`DROP SCHEMA "${schema}" CASCADE`);
    await admin.end();
  }
}
