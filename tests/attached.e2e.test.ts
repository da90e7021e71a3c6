import { spawn } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { handleReplicateWebhook, openGenstore } from "../src/index.ts";
import { applyMigrations } from "../src/db/migrations.ts";
import { runDbCheck } from "../src/jobs/db.ts";
import { runBackfill } from "../src/jobs/backfill.ts";
import { runList } from "../src/jobs/list.ts";
import { runMigrateKeys } from "../src/jobs/migrate-keys.ts";
import { runDoctor } from "../src/jobs/doctor.ts";
import { runRecover } from "../src/jobs/recover.ts";
import { ingestPrediction } from "../src/pipeline/ingest.ts";
import { createReplicateClient } from "../src/replicate/client.ts";
import { createLocalStorage } from "../src/storage/local.ts";
import type { Database } from "../src/db/client.ts";
import {
  APP_CONFIG,
  APP_NAMES,
  APP_TABLE,
  createAppDatabase,
  snapshotApp,
  type AppName,
} from "./support/app-database.ts";
import { bin, cleanEnv, genstore } from "./support/cli.ts";
import { databaseEnv, databaseKinds } from "./support/db.ts";
import { fakePrediction, startFakeReplicate } from "./support/fake-replicate.ts";
import { startOutputServer } from "./support/output-server.ts";
import { tempDir } from "./support/pipeline-fixtures.ts";
import { newSecret, samplePrediction, svixSigned } from "./support/webhook-deliveries.ts";
import { waitFor } from "./support/wait.ts";
import { freePort } from "./support/moto.ts";
import { GENERATION_FIELDS } from "../src/core/generation-table.ts";

// genstore on an app's own database, the way an operator points it there: three apps whose
// Generation table genstore did not make (the seed's names with a User relation; @@map and
// @map names, jobId and a status enum; a table without the optional columns), each built
// from the SQL `prisma migrate diff` wrote plus the app's _prisma_migrations. Every command
// runs against it; afterwards the app's schema, history and own columns are as they were.

/** The rows the app already has, written in its own names. */
async function seedApp(db: Database, app: AppName, table: string, storageRoot: string) {
  const legacyKey = "u1/g_legacy_edit_0.png";
  await mkdir(path.join(storageRoot, "u1"), { recursive: true });
  await writeFile(path.join(storageRoot, legacyKey), Buffer.from("legacy png bytes"));
  const keys = JSON.stringify([{ key: legacyKey, kind: "output", size: 16 }]);
  const storage = (sql: string) => `ARRAY(SELECT jsonb_array_elements(${sql}::jsonb))`;
  if (app === "a") {
    await db.query(
      `INSERT INTO "${db.appSchema}"."User" (id, email) VALUES ('u1', 'one@app.test'), ('u2', 'two@app.test')`,
    );
    await db.query(
      `INSERT INTO ${table} (id, "userId", prompt, status, "replicateId", "storageKeys", "storageProvider", "createdAt", "updatedAt", width) VALUES
       ('g_legacy_edit', 'u1', '[EDITED] an old edit', 'succeeded', 'old1', ${storage("$1")}, 'local', now() - interval '3 days', now(), 512),
       ('g_plain', 'u1', 'a plain old one', 'succeeded', 'old2', '{}', NULL, now() - interval '2 days', now(), 640),
       ('g_running', 'u1', '[UPSCALED] still running', 'processing', 'run1', '{}', NULL, now() - interval '1 day', now(), NULL)`,
      keys,
    );
  } else if (app === "b") {
    await db.query(
      `INSERT INTO ${table} (id, user_id, prompt, status, job_id, storage_keys, storage_provider, created_at, updated_at, credits, visibility) VALUES
       ('g_legacy_edit', 'u1', '[EDITED] an old edit', 'COMPLETED', 'old1', ${storage("$1")}, 'local', now() - interval '3 days', now(), 5, 'public'),
       ('g_plain', 'u1', 'a plain old one', 'COMPLETED', 'old2', '{}', NULL, now() - interval '2 days', now(), 2, 'private'),
       ('g_running', 'u1', '[UPSCALED] still running', 'PROCESSING', 'run1', '{}', NULL, now() - interval '1 day', now(), 7, 'public')`,
      keys,
    );
  } else {
    await db.query(
      `INSERT INTO ${table} (id, "userId", title, prompt, status, "replicateId", "storageKeys", "storageProvider", "createdAt", "updatedAt") VALUES
       ('g_legacy_edit', 'u1', 'Old edit', '[EDITED] an old edit', 'succeeded', 'old1', ${storage("$1")}, 'local', now() - interval '3 days', now()),
       ('g_plain', 'u1', 'Plain', 'a plain old one', 'succeeded', 'old2', '{}', NULL, now() - interval '2 days', now()),
       ('g_running', 'u1', 'Running', '[UPSCALED] still running', 'processing', 'run1', '{}', NULL, now() - interval '1 day', now())`,
      keys,
    );
  }
}

/** The app's own columns of the rows it wrote, which genstore must leave alone. */
async function appColumns(db: Database, app: AppName, table: string): Promise<unknown[]> {
  const own = { a: `width`, b: `credits, visibility`, c: `title` }[app];
  return db.query(`SELECT id, ${own} FROM ${table} WHERE id IN ('g_legacy_edit', 'g_plain', 'g_running') ORDER BY id`);
}

/** One app's row, by prediction id, in the app's own names. */
async function appRow(db: Database, app: AppName, table: string, predictionId: string) {
  const [row] = await db.query<Record<string, unknown>>(
    `SELECT *, status::text AS status FROM ${table} WHERE "${APP_TABLE[app].predictionId}" = $1`,
    predictionId,
  );
  return row;
}

const succeededValue = (app: AppName) => (app === "b" ? "COMPLETED" : "succeeded");
const storageKeysOf = (app: AppName, row: Record<string, unknown> | undefined) =>
  (row?.[app === "b" ? "storage_keys" : "storageKeys"] as { key: string }[] | undefined)?.map((e) => e.key) ?? [];

async function outsideWorld() {
  const [api, out] = await Promise.all([startFakeReplicate(), startOutputServer()]);
  onTestFinished(async () => {
    await Promise.all([api.close(), out.close()]);
  });
  // A prediction that has no row (an orphan), and the running row's prediction, now finished.
  api.add(
    fakePrediction({ id: "orph1", input: { prompt: "[VIDEO] a fox", user_id: "u2" }, output: out.url("/mp4/out.mp4") }),
    fakePrediction({
      id: "run1",
      input: { prompt: "[UPSCALED] still running", user_id: "u1" },
      output: [out.url("/png/up.png")],
    }),
  );
  return { api, out };
}

describe.runIf(databaseKinds.includes("postgres")).each(APP_NAMES)(
  "app (%s) on PostgreSQL: every command through the binary",
  { timeout: 600_000 },
  (app) => {
    it("attaches to the app's table and leaves the app's schema, history and columns as they were", async () => {
      const { db, config, appSchema, table } = await createAppDatabase("postgres", app);
      const home = await tempDir("genstore-attached-");
      const storageRoot = path.join(home, "storage");
      await seedApp(db, app, table, storageRoot);
      const before = await snapshotApp(db, appSchema);
      expect(before.history).toMatchObject([{ migration_name: "20250101000000_app_init" }]);
      expect(before.objects).toContain(`r ${APP_TABLE[app].table}`);
      const ownBefore = await appColumns(db, app, table);
      expect(ownBefore).toHaveLength(3);
      const { api, out } = await outsideWorld();
      const secret = newSecret();
      const env: Record<string, string> = {
        ...databaseEnv(config),
        GENSTORE_HOME: home,
        REPLICATE_API_TOKEN: api.token,
        REPLICATE_API_BASE_URL: api.url,
        GENSTORE_OUTPUT_HOSTS: out.hostEntry,
        REPLICATE_WEBHOOK_SECRET: secret,
      };
      if (APP_CONFIG[app]) {
        env.GENSTORE_CONFIG = path.join(home, "genstore.config.json");
        await writeFile(env.GENSTORE_CONFIG, JSON.stringify({ generations: APP_CONFIG[app] }, null, 2));
      }
      const shown = `${appSchema}.${APP_TABLE[app].table}`;

      // Before genstore's own migration: refused with the hint, never "newer" because of the app's history.
      const refused = await genstore(["list"], env);
      expect(refused.code).toBe(4);
      expect(refused.stderr).toContain("Run `genstore db migrate` first.");
      expect(refused.stderr).not.toMatch(/newer/);
      const status = await genstore(["db", "status"], env);
      expect(status.code).toBe(4);
      expect(status.stdout).toContain(`Generations table: ${shown} (the app's, attached)`);
      expect(status.stdout).toContain("pending  20261130190000_init");
      expect(status.stdout).not.toContain("20250101000000_app_init");

      const migrated = await genstore(["db", "migrate", "--json"], env);
      expect(migrated.code).toBe(0);
      expect(JSON.parse(migrated.stdout)).toMatchObject({
        applied: ["20261130190000_init"],
        schema: config.genstoreSchema,
        generations: { table: shown, mode: "attached", exists: true },
      });
      expect((await genstore(["db", "status"], env)).code).toBe(0);

      const check = await genstore(["db", "check", "--json"], env);
      expect(check.code).toBe(0);
      const report = JSON.parse(check.stdout);
      expect(report).toMatchObject({ table: shown, mode: "attached", usable: true, predictionIdUnique: true });
      const missing = report.fields
        .filter((f: { state: string }) => f.state !== "found")
        .map((f: { field: string }) => f.field);
      expect(missing).toEqual(app === "c" ? ["imageUrls", "completedAt", "error"] : []);
      if (app === "b")
        expect(report.status).toMatchObject({ type: "generation_status", unmappedAppValues: [], invalidValues: [] });
      expect(report.indexes.find((i: { serves: string }) => i.serves === "list, newest first")).toMatchObject({
        present: false,
      });

      const listed = await genstore(["list", "--json"], env);
      expect(listed.code).toBe(0);
      const rows = JSON.parse(listed.stdout);
      expect(rows.map((r: { id: string; status: string }) => [r.id, r.status])).toEqual([
        ["g_running", "processing"],
        ["g_plain", "succeeded"],
        ["g_legacy_edit", "succeeded"],
      ]);
      // Prisma's field names, whatever the app calls its columns; none of the app's own columns.
      expect(Object.keys(rows[0]).sort()).toEqual([...GENERATION_FIELDS].sort());
      const edited = await genstore(["list", "--context", "edited", "--json"], env);
      expect(JSON.parse(edited.stdout).map((r: { id: string }) => r.id)).toEqual(["g_legacy_edit"]);
      const running = await genstore(["list", "--status", "processing", "--json"], env);
      expect(JSON.parse(running.stdout).map((r: { id: string }) => r.id)).toEqual(["g_running"]);

      const backfilled = await genstore(["backfill", "--json"], env);
      expect(backfilled.code).toBe(0);
      expect(JSON.parse(backfilled.stdout)).toMatchObject({
        updated: 3,
        byOperation: { edit: 1, upscale: 1, generation: 1 },
      });

      const moved = await genstore(["migrate-keys", "--json"], env);
      expect(moved.code).toBe(0);
      expect(JSON.parse(moved.stdout)).toMatchObject({ moved: 1, failed: 0 });
      expect(storageKeysOf(app, await appRow(db, app, table, "old1"))).toEqual(["edited/u1/g_legacy_edit_0.png"]);

      const recovered = await genstore(["recover", "orph1"], env);
      expect(recovered.stderr).not.toContain("error:");
      expect(recovered.code).toBe(0);
      const orphan = await appRow(db, app, table, "orph1");
      expect(orphan).toMatchObject({ [APP_TABLE[app].userId]: "u2", status: succeededValue(app) });
      expect(storageKeysOf(app, orphan)).toEqual([expect.stringMatching(/^videos\/u2\/\w+\.mp4$/)]);
      if (app === "b") expect(orphan).toMatchObject({ credits: 1, visibility: "private" });
      if (app === "c") expect(orphan).toMatchObject({ title: "Untitled" });

      const polled = await genstore(["recover", "--pending"], env);
      expect(polled.code).toBe(0);
      const finished = await appRow(db, app, table, "run1");
      expect(finished).toMatchObject({ id: "g_running", status: succeededValue(app) });
      expect(storageKeysOf(app, finished)).toEqual(
        expect.arrayContaining(["upscaled/u1/g_running_0.png", "thumbnails/upscaled/u1/g_running_0.webp"]),
      );
      if (app === "c") expect(finished!.metadata).toMatchObject({ completedAt: expect.any(String) });

      // serve-webhook receives what trigger sends, and writes into the app's table.
      const port = await freePort();
      const server = spawn(process.execPath, [bin, "serve-webhook", "--port", String(port)], { env: cleanEnv(env) });
      onTestFinished(() => void server.kill("SIGKILL"));
      let serverOut = "";
      server.stdout.on("data", (d) => (serverOut += d));
      server.stderr.on("data", (d) => (serverOut += d));
      await waitFor(() => serverOut.includes("/api/webhooks/replicate"), 120_000, "serve-webhook to listen");
      const triggered = await genstore(
        [
          "trigger",
          "--url",
          `http://127.0.0.1:${port}/api/webhooks/replicate`,
          "--user",
          "u1",
          "--id",
          "trig1",
          "--prompt",
          "[EDITED] sent by trigger",
          "--output",
          out.url("/png/t.png"),
        ],
        env,
      );
      expect(triggered.code).toBe(0);
      await waitFor(
        async () => (await appRow(db, app, table, "trig1"))?.status === succeededValue(app),
        120_000,
        "the delivery",
      );
      expect(storageKeysOf(app, await appRow(db, app, table, "trig1"))[0]).toMatch(/^edited\/u1\/\w+_0\.png$/);
      server.kill("SIGTERM");

      // The library's route handler, opened from the same environment.
      const genstoreLib = await openGenstore({ ...env });
      onTestFinished(() => genstoreLib.close());
      const body = JSON.stringify(
        samplePrediction({ id: "lib1", input: { prompt: "a fox" }, output: [out.url("/png/l.png")] }),
      );
      const delivery = svixSigned(body, secret);
      const response = await handleReplicateWebhook(
        new Request("https://app.test/api/webhooks/replicate?userId=u2", {
          method: "POST",
          headers: delivery.headers,
          body,
        }),
        genstoreLib,
      );
      expect(response.status).toBe(200);
      expect(await appRow(db, app, table, "lib1")).toMatchObject({
        [APP_TABLE[app].userId]: "u2",
        status: succeededValue(app),
      });

      // Nothing of the app's was changed: its schema, its migrations, its own columns.
      expect(await snapshotApp(db, appSchema)).toEqual(before);
      expect(await appColumns(db, app, table)).toEqual(ownBefore);
      const again = await genstore(["db", "check", "--json"], env);
      expect(JSON.parse(again.stdout)).toMatchObject({ usable: true, predictionIdUnique: true });
    });
  },
);

describe.each(APP_NAMES)("app (%s) on the embedded database: the jobs in process", { timeout: 300_000 }, (app) => {
  it("attaches, runs backfill, list, migrate-keys, recover and the route handler, and changes nothing of the app's", async () => {
    const { db, appSchema, table } = await createAppDatabase("embedded", app);
    const home = await tempDir("genstore-attached-");
    const storageRoot = path.join(home, "storage");
    await seedApp(db, app, table, storageRoot);
    const before = await snapshotApp(db, appSchema);
    expect(before.history).toMatchObject([{ migration_name: "20250101000000_app_init" }]);
    const ownBefore = await appColumns(db, app, table);
    expect(ownBefore).toHaveLength(3);
    const { api, out } = await outsideWorld();
    const storage = createLocalStorage(storageRoot);
    const pipeline = { db, storage, config: { outputHosts: [out.hostEntry], maxOutputBytes: 50 * 1024 * 1024 } };

    expect(await applyMigrations(db)).toEqual({ applied: ["20261130190000_init"], moved: [] });
    expect(await runDbCheck({ db, generations: APP_CONFIG[app] })).toMatchObject({ mode: "attached", usable: true });
    expect((await db.generations()).describe).toContain("the app's table, attached");

    const page = await runList({ limit: 10 }, { db });
    expect(page.rows.map((r) => [r.id, r.status])).toEqual([
      ["g_running", "processing"],
      ["g_plain", "succeeded"],
      ["g_legacy_edit", "succeeded"],
    ]);
    expect((await runList({ limit: 10, context: "upscaled" }, { db })).rows.map((r) => r.id)).toEqual(["g_running"]);
    expect(await runBackfill({}, { db })).toMatchObject({ updated: 3 });
    expect(await runMigrateKeys({}, { db, storage })).toMatchObject({ moved: 1, failed: 0 });
    expect(storageKeysOf(app, await appRow(db, app, table, "old1"))).toEqual(["edited/u1/g_legacy_edit_0.png"]);

    const replicate = createReplicateClient({ token: api.token, baseUrl: api.url });
    const recovered = await runRecover({ ids: ["orph1"] }, { replicate, ingest: ingestPrediction, pipeline });
    expect(recovered.exitCode).toBe(0);
    expect(await appRow(db, app, table, "orph1")).toMatchObject({ status: succeededValue(app) });
    const polled = await runRecover({ pending: true }, { replicate, ingest: ingestPrediction, pipeline });
    expect(polled.items).toMatchObject([{ predictionId: "run1", state: "stored" }]);

    const secret = newSecret();
    const body = JSON.stringify(samplePrediction({ id: "lib1", output: [out.url("/png/l.png")] }));
    const delivery = svixSigned(body, secret);
    const response = await handleReplicateWebhook(
      new Request("https://app.test/api/webhooks/replicate?userId=u2", {
        method: "POST",
        headers: delivery.headers,
        body,
      }),
      { ...pipeline, secret },
    );
    expect(response.status).toBe(200);
    expect(await appRow(db, app, table, "lib1")).toMatchObject({ status: succeededValue(app) });

    // doctor reads the app's table through its mapping: every row, and every key against the storage.
    const [deleted] = storageKeysOf(app, await appRow(db, app, table, "orph1"));
    await storage.delete(deleted!);
    const doctor = await runDoctor(
      { scope: {}, stuckAfterMs: 3_600_000 },
      { db, storage, pipeline, ingest: ingestPrediction, replicate },
    );
    expect(doctor.rows).toBe(page.rows.length + 2);
    expect(doctor.keys).toBeGreaterThan(0);
    expect(doctor.counts["never-stored"] + doctor.counts.stuck).toBe(0);
    expect(doctor.examples["missing-object"].map((f) => f.key)).toEqual([deleted]);

    expect(await snapshotApp(db, appSchema)).toEqual(before);
    expect(await appColumns(db, app, table)).toEqual(ownBefore);
  });
});
