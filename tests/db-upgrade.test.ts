import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { openDatabase, databaseFromPGlite, type Database } from "../src/db/client.ts";
import { applyMigrations, ensureMigrated, migrationState } from "../src/db/migrations.ts";
import { createDeliveryQueue } from "../src/webhook/queue.ts";
import { buildAppSchema } from "./support/app-database.ts";
import { genstore } from "./support/cli.ts";
import { createTestDatabase, databaseEnv, databaseKinds } from "./support/db.ts";
import { generations, jobCursors, keyMoves } from "./support/generations.ts";

// A database made by genstore 0.1 kept genstore's tables and its migration history in the
// connection's schema (public). `db migrate` moves them into genstore's own schema without
// losing a row, and takes genstore's rows out of a history the app shares.

/** The same database as genstore 0.1 saw it: genstore's schema was the connection's. */
async function legacyView(test: Awaited<ReturnType<typeof createTestDatabase>>): Promise<Database> {
  // PGlite is one connection: this view sets its search path to public until the test sets it back.
  if (test.pglite)
    return databaseFromPGlite(test.pglite, "the embedded test database, as genstore 0.1", { schema: "public" });
  return openDatabase({ ...test.config, genstoreSchema: test.db.appSchema });
}

/** genstore 0.1's layout with some of everything in it: a row, a pending delivery, a journal entry, a cursor. */
async function seedLegacy(old: Database) {
  expect(await applyMigrations(old)).toMatchObject({ applied: ["20261130190000_init"] });
  await old.query(
    `INSERT INTO "Generation" (id, "userId", prompt, status, "replicateId", "storageKeys", "updatedAt")
     VALUES ('g1', 'u1', '[EDITED] a fox', 'succeeded', 'p1', ARRAY['{"key":"edited/u1/g1_0.png","kind":"output"}'::jsonb], now())`,
  );
  await old.query(
    `INSERT INTO "WebhookDelivery" (id, "predictionId", body, "updatedAt") VALUES ('msg_1', 'p2', '{"id":"p2"}', now())`,
  );
  await old.query(
    `INSERT INTO "KeyMove" ("sourceKey", "targetKey", "generationId", "updatedAt") VALUES ('u1/a.png', 'edited/u1/g1_0.png', 'g1', now())`,
  );
  await old.query(`INSERT INTO "JobCursor" (name, cursor, "updatedAt") VALUES ('backfill:{}', 'g0', now())`);
}

describe.each(databaseKinds)("upgrading genstore 0.1's layout (%s)", (kind) => {
  async function setup() {
    const test = await createTestDatabase(kind, { migrate: false });
    return { ...test, old: await legacyView(test) };
  }

  it("moves every table and row into genstore's schema, and the history with them", async () => {
    const { db, old } = await setup();
    await seedLegacy(old);
    if (kind === "embedded") await db.query(`SET search_path TO "${db.schema}"`);
    if (kind === "postgres") await old.close();

    const state = await migrationState(db);
    expect(state.legacy).toMatchObject({
      schema: db.appSchema,
      tables: ["Generation", "JobCursor", "KeyMove", "WebhookDelivery"],
    });
    expect(state.upToDate).toBe(false);
    if (kind === "postgres") {
      await expect(ensureMigrated(db)).rejects.toMatchObject({
        name: "DatabaseError",
        message: expect.stringContaining("genstore 0.1's layout"),
        hint: expect.stringContaining("genstore db migrate"),
      });
    }

    const result = await applyMigrations(db);
    expect(result).toEqual({ applied: [], moved: ["Generation", "JobCursor", "KeyMove", "WebhookDelivery"] });
    expect(await migrationState(db)).toMatchObject({ upToDate: true, applied: ["20261130190000_init"] });
    expect((await migrationState(db)).legacy).toBeUndefined();

    // Nothing of genstore's is left in the connection's schema, and every row came along.
    const left = await db.query<{ relname: string }>(
      `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'`,
      db.appSchema,
    );
    expect(left).toEqual([]);
    expect((await generations(db)).map((g) => [g.id, g.replicateId, g.storageKeys])).toEqual([
      ["g1", "p1", [{ key: "edited/u1/g1_0.png", kind: "output" }]],
    ]);
    expect(await keyMoves(db)).toMatchObject([{ sourceKey: "u1/a.png", step: "planned" }]);
    expect(await jobCursors(db)).toMatchObject([{ name: "backfill:{}", cursor: "g0" }]);
    // The pending delivery is still there to be processed.
    const claimed = await createDeliveryQueue(db).claim(10, 60_000);
    expect(claimed.map((d) => d.id)).toEqual(["msg_1"]);

    // A second run has nothing to do.
    expect(await applyMigrations(db)).toEqual({ applied: [], moved: [] });
  });

  it("takes genstore's rows out of a history the app shares, and leaves the app's", async () => {
    const { db, old } = await setup();
    await seedLegacy(old);
    await old.query(
      `INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, started_at, applied_steps_count)
       VALUES ($1, 'abc', now(), '20250101000000_app_init', now(), 1)`,
      randomUUID(),
    );
    if (kind === "embedded") await db.query(`SET search_path TO "${db.schema}"`);
    if (kind === "postgres") await old.close();

    expect((await applyMigrations(db)).moved).toHaveLength(4);
    const appHistory = await db.query<{ migration_name: string }>(
      `SELECT migration_name FROM "${db.appSchema}"."_prisma_migrations"`,
    );
    expect(appHistory.map((r) => r.migration_name)).toEqual(["20250101000000_app_init"]);
    expect(await migrationState(db)).toMatchObject({ upToDate: true, unknown: [] });
    expect(await generations(db)).toHaveLength(1);
  });

  it("clears the failed migration genstore 0.1 left in the app's history when the app had its own Generation", async () => {
    const { db } = await setup();
    // The app's own table and history; genstore 0.1's `db migrate` then failed on "Generation" and said so in it.
    await buildAppSchema(db, db.appSchema, "a");
    await db.query(
      `INSERT INTO "${db.appSchema}"."_prisma_migrations" (id, checksum, migration_name, logs, started_at, applied_steps_count)
       VALUES ($1, 'xyz', '20261130190000_init', 'relation "Generation" already exists', now(), 0)`,
      randomUUID(),
    );
    if (kind === "embedded") await db.query(`SET search_path TO "${db.schema}"`);
    const state = await migrationState(db);
    expect(state.legacy?.migrations).toMatchObject([{ name: "20261130190000_init", finished: false }]);

    expect(await applyMigrations(db)).toEqual({ applied: ["20261130190000_init"], moved: [] });
    const appHistory = await db.query<{ migration_name: string }>(
      `SELECT migration_name FROM "${db.appSchema}"."_prisma_migrations"`,
    );
    expect(appHistory.map((r) => r.migration_name)).toEqual(["20250101000000_app_init"]);
    expect((await db.generations()).mode).toBe("attached");
  });
});

describe.runIf(databaseKinds.includes("postgres"))("upgrading through the binary", { timeout: 300_000 }, () => {
  it("db status names the old layout, commands refuse it with the fix, db migrate moves it", async () => {
    const { db, config } = await createTestDatabase("postgres", { migrate: false });
    const old = await openDatabase({ ...config, genstoreSchema: db.appSchema });
    await seedLegacy(old);
    await old.close();
    const env = databaseEnv(config);

    const status = await genstore(["db", "status"], env);
    expect(status.code).toBe(4);
    expect(status.stdout).toContain(`legacy   genstore's tables are in schema ${db.appSchema} (genstore 0.1)`);
    const refused = await genstore(["list"], env);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toContain("genstore 0.1's layout");
    const migrated = await genstore(["db", "migrate"], env);
    expect(migrated.code).toBe(0);
    expect(migrated.stderr).toContain("Moved genstore's tables into schema");
    const listed = await genstore(["list", "--json"], env);
    expect(JSON.parse(listed.stdout).map((r: { id: string }) => r.id)).toEqual(["g1"]);
  });
});
