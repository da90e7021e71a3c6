import { describe, expect, it, onTestFinished } from "vitest";
import pg from "pg";
import { resolveGenerationTable, writeRow } from "../src/db/generations.ts";
import { DatabaseError } from "../src/errors.ts";
import { runList } from "../src/jobs/list.ts";
import { runBackfill } from "../src/jobs/backfill.ts";
import { ingestPrediction } from "../src/pipeline/ingest.ts";
import { APP_CONFIG, createAppDatabase } from "./support/app-database.ts";
import { genstore } from "./support/cli.ts";
import { createTestDatabase, databaseEnv, databaseKinds } from "./support/db.ts";
import { countGenerations, insertGenerations } from "./support/generations.ts";
import { makePrediction, pipelineDeps, testStorage } from "./support/pipeline-fixtures.ts";
import { applyMigrations } from "../src/db/migrations.ts";

// One boundary in src/db turns what the driver throws into a DatabaseError (exit code 4,
// `retryable` telling "for now" from "never"), and lets genstore's own bugs through as bugs.

describe.each(databaseKinds)("the database boundary (%s)", (kind) => {
  it("turns a failing database into DatabaseError, for list and backfill alike", async () => {
    const { db } = await createTestDatabase(kind, { cleanup: "manual" });
    await insertGenerations(db, [{ id: "g1", prompt: "a fox" }]);
    await db.generations();
    await db.close();
    for (const run of [() => runList({ limit: 5 }, { db }), () => runBackfill({}, { db })]) {
      const error = await run().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DatabaseError);
      expect(error).toMatchObject({ exitCode: 4, retryable: true });
    }
  });

  it("lets a bug of genstore's through as what it is, not as a database failure", async () => {
    const { db } = await createTestDatabase(kind);
    const bug = await writeRow(db, { replicateId: "p1", newId: "g1" }, () => {
      throw new TypeError("cannot read properties of undefined");
    }).catch((e: unknown) => e);
    expect(bug).toBeInstanceOf(TypeError);
    expect(await countGenerations(db)).toBe(0);
  });

  it("says a value can never be stored (not retryable), with the SQLSTATE", async () => {
    const { db } = await createTestDatabase(kind);
    const error = await db.query(`SELECT '1e200000'::numeric::float8`).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseError);
    expect(error).toMatchObject({ code: "22003", retryable: false, exitCode: 4 });
  });
});

describe.each(databaseKinds)("creating rows in an app's table (%s)", (kind) => {
  it("refuses an orphan when a NOT NULL column has no value, naming the column (app c without defaults)", async () => {
    // App (c)'s table, without genstore.config.json's default for its title.
    const { db } = await createAppDatabase(kind, "c", {});
    await applyMigrations(db);
    const storage = await testStorage("local");
    const prediction = makePrediction({
      output: null,
      status: "processing",
      input: { prompt: "a fox", user_id: "u1" },
    });
    const error = await ingestPrediction(pipelineDeps(db, storage, []), { prediction, via: "webhook" }).catch(
      (e: unknown) => e,
    );
    expect(error).toMatchObject({
      name: "RowRefusedError",
      retryable: false,
      exitCode: 3,
      message: expect.stringContaining(`"title" is NOT NULL without a default`),
      hint: expect.stringContaining(`"defaults": { "title": …`),
    });
    expect(await countGenerations(db)).toBe(0);
  });

  it("reports a userId the app's User table lacks as a database refusal no retry fixes (app a)", async () => {
    const { db } = await createAppDatabase(kind, "a");
    await applyMigrations(db);
    const storage = await testStorage("local");
    const prediction = makePrediction({
      output: null,
      status: "processing",
      input: { prompt: "a fox", user_id: "nobody" },
    });
    const error = await ingestPrediction(pipelineDeps(db, storage, []), { prediction, via: "webhook" }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DatabaseError);
    expect(error).toMatchObject({ code: "23503", retryable: false, message: expect.stringMatching(/foreign key/) });
  });

  it("refuses a status mapping to a value the app's enum does not have, and a mapping to a missing column", async () => {
    const { db } = await createAppDatabase(kind, "b");
    await applyMigrations(db);
    const b = APP_CONFIG.b!;
    await expect(
      resolveGenerationTable(db, { ...b, status: { ...b.status, succeeded: "DONE" } }),
    ).rejects.toMatchObject({ exitCode: 3, message: expect.stringContaining('which has no "DONE"') });
    await expect(
      resolveGenerationTable(db, { ...b, columns: { ...b.columns, replicateId: "prediction_id" } }),
    ).rejects.toMatchObject({ exitCode: 3, message: expect.stringContaining('replicateId (column "prediction_id")') });
  });
});

describe.runIf(databaseKinds.includes("postgres"))("the binary on a failing PostgreSQL", () => {
  it("exits 4 with the database's reason (not 1, 'a bug') when a query is refused mid-command", async () => {
    const { db, config } = await createTestDatabase("postgres");
    await insertGenerations(db, [{ id: "g1", prompt: "a fox" }]);
    const role = `genstore_ro_${process.pid}_${Date.now()}`;
    const admin = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
    await admin.connect();
    onTestFinished(async () => {
      await admin.query(`DROP OWNED BY "${role}"`).catch(() => {});
      await admin.query(`DROP ROLE IF EXISTS "${role}"`).catch(() => {});
      await admin.end();
    });
    // A role that can read genstore's catalog and migration history, but not the generations.
    await admin.query(`CREATE ROLE "${role}" LOGIN`);
    for (const schema of [config.kind === "postgres" ? config.schema! : "", db.schema])
      await admin.query(`GRANT USAGE ON SCHEMA "${schema}" TO "${role}"`);
    await admin.query(`GRANT SELECT ON "${db.schema}"."_prisma_migrations" TO "${role}"`);
    const env = databaseEnv(config);
    const url = new URL(env.DATABASE_URL!);
    url.username = role;
    for (const args of [["list"], ["backfill"]]) {
      const result = await genstore(args, { ...env, DATABASE_URL: url.toString() });
      expect(result.stderr).not.toContain("This is a bug");
      expect(result.stderr).toMatch(/permission denied for table (Generation|JobCursor) \(SQLSTATE 42501\)/);
      expect(result.stderr).toContain("lacks a privilege");
      expect(result.code).toBe(4);
    }
  });
});
