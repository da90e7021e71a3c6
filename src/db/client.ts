import { mkdir } from "node:fs/promises";
import type { SqlMigrationAwareDriverAdapterFactory } from "@prisma/driver-adapter-utils";
import { describeDatabase, type DatabaseConfig } from "../config.ts";
import { DatabaseError } from "../errors.ts";
import type { PrismaClient } from "../generated/prisma/client.ts";

export type { PrismaClient };

// The Prisma runtime takes a while to load: it is imported lazily, alongside the database.
const loadPrisma = () => import("../generated/prisma/client.ts").then((m) => m.PrismaClient);

/** One database connection per process: the Prisma client and the adapter it runs on. */
export interface Database {
  prisma: PrismaClient;
  kind: DatabaseConfig["kind"];
  /** The same adapter, for the schema engine (migrations). */
  factory: SqlMigrationAwareDriverAdapterFactory;
  /**
   * An adapter on one connection of its own, for the schema engine. The engine takes
   * Prisma's migration advisory lock (session level) and releases it with a later query;
   * through a pool the two can land on different connections and the lock stays held,
   * making every later migration on the server wait. Closing the connection releases it.
   */
  migrationFactory(): Promise<{ factory: SqlMigrationAwareDriverAdapterFactory; close(): Promise<void> }>;
  /** Schema that holds genstore's tables (for raw SQL and the migrations table). */
  schema: string;
  describe: string;
  /** Runs raw SQL that returns rows (no parameters interpolated by us: use $n). */
  query<T = Record<string, unknown>>(sql: string, ...params: unknown[]): Promise<T[]>;
  close(): Promise<void>;
}

export async function openDatabase(config: DatabaseConfig): Promise<Database> {
  return config.kind === "embedded" ? openEmbedded(config.dir) : openPostgres(config);
}

async function openEmbedded(dir: string): Promise<Database> {
  const [{ PGlite }] = await Promise.all([import("@electric-sql/pglite"), loadPrisma()]);
  // PGlite does not create parent folders.
  await mkdir(dir, { recursive: true });
  let pglite: InstanceType<typeof PGlite>;
  try {
    pglite = await PGlite.create(dir);
  } catch (error) {
    throw new DatabaseError(
      `Cannot open the embedded database in ${dir}: ${firstLine(error)}.`,
      "It may have been made by another PGlite/PostgreSQL version. Move the folder away (or set GENSTORE_HOME elsewhere) and run again.",
      error,
    );
  }
  return databaseFromPGlite(pglite, describeDatabase({ kind: "embedded", dir }));
}

/** Wraps an open PGlite (a folder, or in memory for tests) as genstore's Database. */
export async function databaseFromPGlite(
  pglite: import("@electric-sql/pglite").PGlite,
  describe: string,
): Promise<Database> {
  const [{ PrismaPGlite }, PrismaClient] = await Promise.all([import("pglite-prisma-adapter"), loadPrisma()]);
  const factory = new PrismaPGlite(pglite) as unknown as SqlMigrationAwareDriverAdapterFactory;
  const prisma = new PrismaClient({ adapter: factory as never });
  return {
    prisma,
    kind: "embedded",
    factory,
    // PGlite is one connection already.
    migrationFactory: async () => ({ factory, close: async () => {} }),
    schema: "public",
    describe,
    query: async <T>(sql: string, ...params: unknown[]) => (await pglite.query(sql, params)).rows as T[],
    close: async () => {
      await prisma.$disconnect();
      await pglite.close();
    },
  };
}

async function openPostgres(config: Extract<DatabaseConfig, { kind: "postgres" }>): Promise<Database> {
  const [{ default: pg }, { PrismaPg }, PrismaClient] = await Promise.all([
    import("pg"),
    import("@prisma/adapter-pg"),
    loadPrisma(),
  ]);
  const schema = config.schema ?? "public";
  const newPool = (max: number) => {
    const pool = new pg.Pool({
      connectionString: config.url,
      // Raw SQL finds genstore's tables in the configured schema, like Prisma's own queries.
      options: `-c search_path="${schema}"`,
      connectionTimeoutMillis: 10_000,
      max,
    });
    pool.on("error", () => {
      // An idle connection dropped by the server; the pool replaces it on the next query.
    });
    return pool;
  };
  const pool = newPool(10);
  const describe = describeDatabase(config);
  try {
    const client = await pool.connect();
    client.release();
  } catch (error) {
    await pool.end().catch(() => {});
    throw new DatabaseError(
      `Cannot reach ${describe}: ${firstLine(error)}.`,
      "Check DATABASE_URL and that the server is running.",
      error,
    );
  }
  const factory = new PrismaPg(pool, { schema: config.schema }) as unknown as SqlMigrationAwareDriverAdapterFactory;
  const prisma = new PrismaClient({ adapter: factory as never });
  return {
    prisma,
    kind: "postgres",
    factory,
    migrationFactory: async () => {
      const single = newPool(1);
      return {
        factory: new PrismaPg(single, { schema: config.schema }) as unknown as SqlMigrationAwareDriverAdapterFactory,
        close: () => single.end(),
      };
    },
    schema,
    describe,
    query: async <T>(sql: string, ...params: unknown[]) => (await pool.query(sql, params)).rows as T[],
    close: async () => {
      await prisma.$disconnect();
      // adapter-pg does not end a pool it was given; without this the process waits 10 s.
      await pool.end();
    },
  };
}

function firstLine(error: unknown): string {
  const e = error as { code?: string; message?: string };
  const text = (e?.message || e?.code || String(error)).split("\n")[0]!.replace(/\.$/, "");
  return e?.code && !text.includes(e.code) ? `${text} (${e.code})` : text;
}
