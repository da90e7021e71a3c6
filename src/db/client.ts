import { mkdir } from "node:fs/promises";
import type { PGlite } from "@electric-sql/pglite";
import type { Pool, PoolClient } from "pg";
import type { SqlMigrationAwareDriverAdapterFactory } from "@prisma/driver-adapter-utils";
import { describeDatabase, type DatabaseConfig, type GenerationsConfig } from "../config.ts";
import type { GenerationTable } from "../core/generation-table.ts";
import { DatabaseError, UserError } from "../errors.ts";
import { loadPg, loadPGlite, loadPrismaAdapters } from "../lazy.ts";
import { lockEmbeddedDatabase } from "./embedded-lock.ts";
import { databaseError } from "./errors.ts";
import { resolveGenerationTable } from "./generations.ts";

// One database per process, over node-postgres (a server) or PGlite (embedded), with one
// error boundary: whatever the driver throws becomes a DatabaseError (exit code 4, with
// `retryable` telling a failure for now from one that no retry fixes); our own bugs pass
// through untouched. genstore's own tables and its migration history live in a schema of
// their own (`genstore` by default), first on the search path, so raw SQL names them
// unqualified; the generations table, which may be the app's, is always schema-qualified.

export const DEFAULT_GENSTORE_SCHEMA = "genstore";

export interface Queryable {
  /** Runs one statement with $n parameters; driver failures become DatabaseError. */
  query<T = Record<string, unknown>>(sql: string, ...params: unknown[]): Promise<T[]>;
}

/** A connection of its own, for what spans a run (a session-level advisory lock). */
export interface Session extends Queryable {
  /** Aborted when the connection is lost. */
  readonly lost: AbortSignal;
  release(): Promise<void>;
}

export interface Database extends Queryable {
  kind: DatabaseConfig["kind"];
  /** "PostgreSQL at host:5432/app", for messages. */
  describe: string;
  /** genstore's schema: its tables and its _prisma_migrations. */
  schema: string;
  /** The connection's schema (Prisma's `?schema=`, else public): where an app's table is looked for. */
  appSchema: string;
  /** Runs work in one transaction (on one connection); it commits when work resolves. */
  transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T>;
  /** The generations table in use (genstore's own, or the app's), resolved on first use. */
  generations(): Promise<GenerationTable>;
  /** Forgets the resolved generations table (after a migration created or moved it). */
  forgetGenerations(): void;
  session(): Promise<Session>;
  /**
   * Statements on connections of their own, apart from everything else's (PostgreSQL: a pool
   * of `max`; the embedded database, one connection, answers itself): for work whose latency
   * must not wait behind the rest, such as the webhook receiver's enqueues behind its worker's
   * batches. Closed with the database.
   */
  separate(max: number): Queryable;
  /**
   * A driver adapter on one connection of its own, for Prisma's schema engine. The engine
   * takes Prisma's migration advisory lock (session level) and releases it with a later
   * query; through a pool the two can land on different connections and the lock stays
   * held. Closing the connection releases it.
   */
  migrationAdapter(): Promise<{ factory: SqlMigrationAwareDriverAdapterFactory; close(): Promise<void> }>;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** The generations table's configuration (genstore.config.json). */
  generations?: GenerationsConfig;
}

export async function openDatabase(config: DatabaseConfig, options: OpenOptions = {}): Promise<Database> {
  return config.kind === "embedded" ? openEmbedded(config, options) : openPostgres(config, options);
}

/**
 * PostgreSQL's defaults for the embedded database, with 16 MB of shared buffers instead of
 * 128 MB: PGlite touches all of them at start, which was most of a short command's memory
 * (genstore list: 329 → 190 MB peak RSS). genstore's tables are small on a laptop.
 */
export function embeddedStartParams(defaults: readonly string[]): string[] {
  return [...defaults, "-c", "shared_buffers=16MB"];
}

/** Prisma keeps UTC in `timestamp without time zone`: read it back as UTC, whatever the process's zone. */
function parseUtcTimestamp(text: string): Date {
  return new Date(`${text.replace(" ", "T")}Z`);
}
const TIMESTAMP_OID = 1114;

async function openEmbedded(config: Extract<DatabaseConfig, { kind: "embedded" }>, options: OpenOptions) {
  const PGliteClass = await loadPGlite();
  const describe = describeDatabase(config);
  let pglite: PGlite;
  // PGlite does not create parent folders.
  await mkdir(config.dir, { recursive: true }).catch((error: unknown) => {
    throw cannotOpen(config.dir, error);
  });
  const lock = (() => {
    try {
      return lockEmbeddedDatabase(config.dir);
    } catch (error) {
      throw error instanceof UserError ? error : cannotOpen(config.dir, error);
    }
  })();
  try {
    pglite = await PGliteClass.create({
      dataDir: config.dir,
      startParams: embeddedStartParams(PGliteClass.defaultStartParams),
      parsers: { [TIMESTAMP_OID]: parseUtcTimestamp },
    });
  } catch (error) {
    lock.release();
    throw cannotOpen(config.dir, error);
  }
  try {
    const db = await databaseFromPGlite(pglite, describe, { ...options, schema: config.genstoreSchema });
    return { ...db, close: () => db.close().finally(() => lock.release()) };
  } catch (error) {
    await pglite.close().catch(() => {});
    lock.release();
    throw error;
  }
}

function cannotOpen(dir: string, error: unknown): DatabaseError {
  return new DatabaseError(
    `Cannot open the embedded database in ${dir}: ${firstLine(error)}.`,
    "It may have been made by another PGlite/PostgreSQL version, or the folder is not writable. Move it away (or set GENSTORE_HOME elsewhere) and run again.",
    error,
  );
}

/** Wraps an open PGlite (a folder, or in memory for tests) as genstore's Database. */
export async function databaseFromPGlite(
  pglite: PGlite,
  describe: string,
  options: OpenOptions & { schema?: string } = {},
): Promise<Database> {
  const schema = options.schema ?? DEFAULT_GENSTORE_SCHEMA;
  const boundary = <T>(run: () => Promise<T>) => guard(run, describe);
  await boundary(() => pglite.exec(`SET search_path TO "${schema}"`));
  const query = <T>(sql: string, ...params: unknown[]) =>
    boundary(async () => (await pglite.query<T>(sql, params)).rows);
  const db: Database = {
    kind: "embedded",
    describe,
    schema,
    appSchema: "public",
    query,
    transaction: (work) =>
      boundary(() =>
        pglite.transaction((tx) =>
          work({ query: (sql, ...params) => boundary(async () => (await tx.query(sql, params)).rows as never) }),
        ),
      ),
    ...generationsOf(() => db, options),
    // PGlite is one connection: a "session" is the database itself (job locks are kept in memory).
    session: async () => ({ query, lost: new AbortController().signal, release: async () => {} }),
    separate: () => ({ query }),
    migrationAdapter: async () => {
      const { PrismaPGlite } = await loadPrismaAdapters();
      const base = new PrismaPGlite(pglite);
      // The engine records _prisma_migrations in the schema the adapter names.
      const factory = {
        provider: base.provider,
        adapterName: base.adapterName,
        connect: async () => withSchema(await base.connect(), schema),
        connectToShadowDb: () => base.connectToShadowDb(),
      } as unknown as SqlMigrationAwareDriverAdapterFactory;
      return { factory, close: async () => {} };
    },
    close: () => pglite.close(),
  };
  return db;
}

async function openPostgres(config: Extract<DatabaseConfig, { kind: "postgres" }>, options: OpenOptions) {
  const pg = await loadPg();
  const schema = config.genstoreSchema ?? DEFAULT_GENSTORE_SCHEMA;
  const describe = describeDatabase(config);
  const builtin = pg.types.getTypeParser.bind(pg.types) as (oid: number, format?: string) => unknown;
  const types = {
    getTypeParser: ((oid: number, format?: string) =>
      oid === TIMESTAMP_OID ? parseUtcTimestamp : builtin(oid, format)) as never,
  };
  const connection = {
    connectionString: config.url,
    // genstore's tables first; the app's schema after it, for nothing but readability of ad-hoc SQL.
    options: `-c search_path="${schema}"`,
    connectionTimeoutMillis: 10_000,
    types,
  };
  const newPool = (max: number) => {
    const pool = new pg.Pool({ ...connection, max });
    pool.on("error", () => {
      // An idle connection dropped by the server; the pool replaces it on the next query.
    });
    return pool;
  };
  const pool = newPool(10);
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
  const boundary = <T>(run: () => Promise<T>) => guard(run, describe);
  const query = <T>(sql: string, ...params: unknown[]) =>
    boundary(async () => (await pool.query(sql, params)).rows as T[]);
  const separatePools: Pool[] = [];
  const db: Database = {
    kind: "postgres",
    describe,
    schema,
    appSchema: config.schema ?? "public",
    query,
    transaction: (work) => boundary(() => inTransaction(pool, work, describe)),
    ...generationsOf(() => db, options),
    session: async () => {
      const client = new pg.Client(connection);
      const lost = new AbortController();
      client.on("error", (error) => lost.abort(error));
      client.on("end", () => lost.abort(new Error("the database connection ended")));
      await boundary(() => client.connect());
      return {
        lost: lost.signal,
        query: <T>(sql: string, ...params: unknown[]) =>
          boundary(async () => (await client.query(sql, params)).rows as T[]),
        release: async () => {
          client.removeAllListeners("end");
          await client.end().catch(() => {});
        },
      };
    },
    separate: (max) => {
      const own = newPool(max);
      separatePools.push(own);
      return {
        query: <T>(sql: string, ...params: unknown[]) =>
          boundary(async () => (await own.query(sql, params)).rows as T[]),
      };
    },
    migrationAdapter: async () => {
      const { PrismaPg } = await loadPrismaAdapters();
      const single = newPool(1);
      return {
        factory: new PrismaPg(single, { schema }) as unknown as SqlMigrationAwareDriverAdapterFactory,
        close: () => single.end(),
      };
    },
    close: async () => {
      // node-postgres waits for idle connections otherwise; ending the pool lets the process exit.
      await Promise.all([pool, ...separatePools.splice(0)].map((p) => p.end()));
    },
  };
  return db;
}

async function inTransaction<T>(pool: Pool, work: (tx: Queryable) => Promise<T>, describe: string): Promise<T> {
  const client: PoolClient = await pool.connect();
  let broken = false;
  try {
    await client.query("BEGIN");
    const result = await work({
      query: (sql, ...params) => guard(async () => (await client.query(sql, params)).rows as never, describe),
    });
    await client.query("COMMIT");
    return result;
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {
      broken = true;
    });
    throw error;
  } finally {
    client.release(broken);
  }
}

/** The generations table, resolved once per database (and again after a migration). */
function generationsOf(db: () => Database, options: OpenOptions) {
  let table: Promise<GenerationTable> | undefined;
  return {
    generations: () => {
      table ??= resolveGenerationTable(db(), options.generations).catch((error: unknown) => {
        table = undefined;
        throw error;
      });
      return table;
    },
    forgetGenerations: () => {
      table = undefined;
    },
  };
}

/** The adapter with its connection info naming genstore's schema. */
function withSchema<A extends object>(adapter: A, schema: string): A {
  const info = (adapter as { getConnectionInfo?: () => object }).getConnectionInfo?.() ?? {};
  return Object.assign(adapter, { getConnectionInfo: () => ({ ...info, schemaName: schema }) });
}

/** The one boundary: a driver's failure becomes a DatabaseError; anything else is ours and passes through. */
async function guard<T>(run: () => Promise<T>, describe: string): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw databaseError(error, describe) ?? error;
  }
}

function firstLine(error: unknown): string {
  const e = error as { code?: string; message?: string };
  const text = (e?.message || e?.code || String(error)).split("\n")[0]!.replace(/\.$/, "");
  return e?.code && !text.includes(e.code) ? `${text} (${e.code})` : text;
}
