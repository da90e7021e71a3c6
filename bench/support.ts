import pg from "pg";
import type { DatabaseConfig, GenerationsConfig } from "../src/config.ts";
import { openDatabase, type Database } from "../src/db/client.ts";
import { applyMigrations } from "../src/db/migrations.ts";
import { APP_CONFIG, buildAppSchema, type AppName } from "../tests/support/app-database.ts";

// A PostgreSQL database of its own for one benchmark: two schemas, the connection's (where
// an app's tables are) and genstore's, dropped afterwards. BENCH_DATABASE_URL selects the
// server (default: the local one, database test).

export const benchDatabaseUrl = process.env.BENCH_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/test";

export interface BenchDatabase {
  db: Database;
  config: DatabaseConfig & { kind: "postgres" };
  /** The environment that points the binary at it (DATABASE_URL, GENSTORE_SCHEMA). */
  env: Record<string, string>;
}

export async function withBenchDatabase(
  name: string,
  fn: (bench: BenchDatabase) => Promise<void>,
  options: { app?: AppName; generations?: GenerationsConfig } = {},
): Promise<void> {
  const schema = `genstore_bench_${name}_${process.pid}`;
  const genstoreSchema = `${schema}_gs`;
  const admin = new pg.Client({ connectionString: benchDatabaseUrl });
  await admin.connect();
  await admin.query(`CREATE SCHEMA "${schema}"`);
  const config = { kind: "postgres" as const, url: benchDatabaseUrl, schema, genstoreSchema };
  const generations = options.generations ?? (options.app ? APP_CONFIG[options.app] : undefined);
  const db = await openDatabase(config, { generations });
  const url = new URL(benchDatabaseUrl);
  url.searchParams.set("schema", schema);
  const env = { DATABASE_URL: url.toString(), GENSTORE_SCHEMA: genstoreSchema };
  try {
    if (options.app) await buildAppSchema(db, schema, options.app);
    await applyMigrations(db);
    await fn({ db, config, env });
  } finally {
    await db.close();
    await admin.query(`DROP SCHEMA "${schema}" CASCADE`);
    await admin.query(`DROP SCHEMA IF EXISTS "${genstoreSchema}" CASCADE`);
    await admin.end();
  }
}

/** App (b)'s table (public.generations with snake_case columns and a status enum), filled with `rows` rows. */
export async function seedAppB(db: Database, rows: number, options: { operationType: boolean }): Promise<void> {
  const table = (await db.generations()).name;
  await db.query(`
    INSERT INTO ${table} (id, user_id, prompt, status, operation_type, storage_context, created_at, updated_at, credits)
    SELECT 'g' || lpad(i::text, 8, '0'), 'user_' || (i % 1000),
           (ARRAY['[EDITED] ', '[UPSCALED] ', '[VIDEO] ', '', ' [EDITED] ', ''])[1 + i % 6] || 'prompt ' || i,
           (ARRAY['COMPLETED','COMPLETED','COMPLETED','FAILED','PROCESSING'])[1 + i % 5]::"${db.appSchema}".generation_status,
           ${options.operationType ? `CASE WHEN i % 4 = 0 THEN NULL ELSE (ARRAY['edit','upscale','video','generation','edit','generation'])[1 + i % 6] END` : "NULL"},
           ${options.operationType ? `CASE WHEN i % 4 = 0 THEN NULL ELSE (ARRAY['edited','upscaled','videos','generated','edited','generated'])[1 + i % 6] END` : "NULL"},
           timestamp '2026-01-01' + (i || ' seconds')::interval, now(), 1 + i % 3
    FROM generate_series(1, ${rows}) AS i`);
  await db.query(`VACUUM ANALYZE ${table}`);
}

/** The median time of fn in milliseconds, over runs after one warm-up call. */
export async function median(fn: () => Promise<unknown>, runs = 21): Promise<number> {
  await fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await fn();
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(runs / 2)]!;
}
