import { readFile } from "node:fs/promises";
import { PGlite } from "@electric-sql/pglite";
import pg from "pg";
import { inject, onTestFinished } from "vitest";
import { databaseFromPGlite, embeddedStartParams, openDatabase, type Database } from "../../src/db/client.ts";
import { applyMigrations } from "../../src/db/migrations.ts";
import type { DatabaseConfig, GenerationsConfig } from "../../src/config.ts";

// Database tests run on the embedded PGlite always, and on PostgreSQL too when
// TEST_DATABASE_URL is set (.ci/run sets it). Each test gets its own database: a copy of
// a migrated PGlite made once per run, or on PostgreSQL two fresh schemas dropped
// afterwards: the connection's (where an app's tables would be) and genstore's own.

export type DatabaseKind = "embedded" | "postgres";

export const databaseKinds: DatabaseKind[] = process.env.TEST_DATABASE_URL ? ["embedded", "postgres"] : ["embedded"];

export interface TestDatabase {
  db: Database;
  /** A config that reaches the same database (for the CLI binary or a second process). */
  config: DatabaseConfig;
  /** The embedded database's PGlite (one connection: a second view of it shares its search path). */
  pglite?: PGlite;
}

let template: Promise<Blob> | undefined;
let blankTemplate: Promise<Blob> | undefined;

/**
 * A tarball as PGlite loads it: PGlite reads it with arrayBuffer(), which on a Blob of 40 MB
 * takes Node 20 about 0.4 s, half of what opening a test database costs (it reads the bytes
 * as a stream of chunks and joins them); this one hands over a copy of its bytes at once.
 */
class TarballBlob extends Blob {
  constructor(private readonly tarball: Uint8Array) {
    super([]);
  }

  override arrayBuffer(): Promise<ArrayBuffer> {
    return Promise.resolve(this.tarball.slice().buffer);
  }
}

/** A migrated PGlite data folder, as a tarball (initdb takes seconds; loading this, under one). */
export function pgliteTemplate(): Promise<Blob> {
  template ??= readFile(inject("pgliteTemplate")).then((bytes) => new TarballBlob(bytes));
  return template;
}

/** A PGlite data folder straight after initdb. */
function pgliteBlankTemplate(): Promise<Blob> {
  blankTemplate ??= readFile(inject("pgliteBlankTemplate")).then((bytes) => new TarballBlob(bytes));
  return blankTemplate;
}

/** Opens a fresh, migrated database of the given kind; it is removed when the test ends. */
export async function createTestDatabase(
  kind: DatabaseKind,
  options: { dir?: string; cleanup?: "test" | "manual"; generations?: GenerationsConfig; migrate?: boolean } = {},
): Promise<TestDatabase & { drop(): Promise<void> }> {
  let result: TestDatabase & { drop(): Promise<void> };
  if (kind === "embedded") {
    const pglite = await PGlite.create({
      dataDir: options.dir,
      startParams: embeddedStartParams(PGlite.defaultStartParams),
      loadDataDir: options.migrate === false ? await pgliteBlankTemplate() : await pgliteTemplate(),
    });
    const db = await databaseFromPGlite(pglite, "the embedded test database", { generations: options.generations });
    result = {
      db,
      pglite,
      config: { kind: "embedded", dir: options.dir ?? "(memory)" },
      drop: () => db.close().catch(() => {}),
    };
  } else {
    const url = process.env.TEST_DATABASE_URL!;
    const schema = `genstore_test_${process.pid}_${Math.random().toString(36).slice(2, 10)}`;
    const genstoreSchema = `${schema}_gs`;
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    await admin.query(`CREATE SCHEMA "${schema}"`);
    await admin.end();
    const config: DatabaseConfig = { kind: "postgres", url, schema, genstoreSchema };
    const db = await openDatabase(config, { generations: options.generations });
    if (options.migrate !== false) await migrateWithRetry(db);
    result = {
      db,
      config,
      drop: async () => {
        await db.close().catch(() => {});
        const client = new pg.Client({ connectionString: url });
        await client.connect();
        await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        await client.query(`DROP SCHEMA IF EXISTS "${genstoreSchema}" CASCADE`);
        await client.end();
      },
    };
  }
  if (options.cleanup !== "manual") onTestFinished(() => result.drop());
  return result;
}

/**
 * Prisma's schema engine takes one advisory lock for the whole database and waits 10 s for
 * it (P1002). Test files migrating their own schemas at once on a busy machine can wait
 * longer than that; a real deployment migrates once, so only the tests retry.
 */
async function migrateWithRetry(db: Database): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await applyMigrations(db);
      return;
    } catch (error) {
      if (attempt >= 5 || !/P1002|timed out/i.test(String((error as Error)?.message ?? error))) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
    }
  }
}

/** The environment that points the binary (or a second process) at a test database: DATABASE_URL (with Prisma's ?schema=) and GENSTORE_SCHEMA. */
export function databaseEnv(config: DatabaseConfig): Record<string, string> {
  if (config.kind !== "postgres") return {};
  const url = new URL(config.url);
  if (config.schema) url.searchParams.set("schema", config.schema);
  return { DATABASE_URL: url.toString(), ...(config.genstoreSchema ? { GENSTORE_SCHEMA: config.genstoreSchema } : {}) };
}
