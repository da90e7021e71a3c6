import { describe, expect, it } from "vitest";
import { planDeliveryBatch, type BatchCandidate } from "../src/core/delivery-batch.ts";
import type { Database } from "../src/db/client.ts";
import { applyMigrations } from "../src/db/migrations.ts";
import { ingestPrediction } from "../src/pipeline/ingest.ts";
import { createBatchIngestProcessor } from "../src/webhook/ingest-delivery.ts";
import { createDeliveryQueue, type DeliveryQueue } from "../src/webhook/queue.ts";
import { createDeliveryWorker } from "../src/webhook/worker.ts";
import { createAppDatabase } from "./support/app-database.ts";
import { createTestDatabase, databaseKinds } from "./support/db.ts";
import { generation, generations } from "./support/generations.ts";
import { makePrediction, pipelineDeps, testStorage } from "./support/pipeline-fixtures.ts";
import { waitFor } from "./support/wait.ts";

// The worker's batches: non-final deliveries folded into their rows and marked done in one
// transaction, with the same rules as one delivery at a time.

const at = (receivedAt: number, id: string, predictionId: string, status: string | null): BatchCandidate => ({
  id,
  predictionId,
  status,
  receivedAt,
});

describe("planDeliveryBatch", () => {
  it.each([
    {
      name: "groups non-final deliveries by prediction, in the order they arrived",
      batch: [at(2, "b", "p1", "processing"), at(1, "a", "p1", "starting"), at(3, "c", "p2", "processing")],
      plan: {
        apply: [
          { predictionId: "p1", deliveryIds: ["a", "b"] },
          { predictionId: "p2", deliveryIds: ["c"] },
        ],
        superseded: [],
        single: [],
      },
    },
    {
      name: "a final delivery makes the non-final ones of its prediction no-ops, and goes to the pipeline",
      batch: [at(1, "a", "p1", "processing"), at(2, "s", "p1", "succeeded"), at(3, "c", "p1", "processing")],
      plan: { apply: [], superseded: ["a", "c"], single: ["s"] },
    },
    {
      name: "failed, canceled and unreadable deliveries go to the pipeline",
      batch: [at(1, "f", "p1", "failed"), at(2, "x", "p2", null), at(3, "k", "p3", "canceled")],
      plan: { apply: [], superseded: [], single: ["f", "x", "k"] },
    },
  ])("$name", ({ batch, plan }) => {
    expect(planDeliveryBatch(batch)).toEqual(plan);
  });
});

const delivery = (id: string, prediction: Record<string, unknown>, query: Record<string, string> = {}) => ({
  id,
  predictionId: prediction["id"] as string,
  body: JSON.stringify(prediction),
  query,
});

const running = (id: string, status: "starting" | "processing", extra: Record<string, unknown> = {}) => ({
  id,
  status,
  input: { prompt: "[EDITED] a fox", user_id: "user_1" },
  output: null,
  completed_at: null,
  ...(status === "starting" ? { started_at: null } : { started_at: "2026-11-20T10:00:01.000Z" }),
  created_at: "2026-11-20T10:00:00.000Z",
  ...extra,
});

async function setUp(db: Database) {
  const storage = await testStorage("local");
  const deps = pipelineDeps(db, storage, []);
  const queue = createDeliveryQueue(db);
  return { deps, queue, batch: createBatchIngestProcessor(deps) };
}

async function states(db: Database): Promise<Record<string, string>> {
  const rows = await db.query<{ id: string; state: string }>(`SELECT id, state FROM "WebhookDelivery" ORDER BY id`);
  return Object.fromEntries(rows.map((r) => [r.id, r.state]));
}

async function claimAll(queue: DeliveryQueue) {
  return queue.claim(256, 60_000);
}

describe.each(databaseKinds)("a batch of deliveries (%s)", (kind) => {
  it("folds each prediction's deliveries into one row, in one transaction with their completion", async () => {
    const { db } = await createTestDatabase(kind);
    const { queue, batch } = await setUp(db);
    await queue.enqueue(delivery("m1", running("pa", "starting")));
    await queue.enqueue(delivery("m2", running("pa", "processing", { logs: "step 1" })));
    await queue.enqueue(delivery("m3", running("pb", "processing"), { userId: "user_q" }));
    // Replicate's retries and late arrivals: a starting after processing changes nothing.
    await queue.enqueue(delivery("m4", running("pa", "starting")));

    const result = await batch(await claimAll(queue));
    expect(result.single).toEqual([]);
    expect(result.outcomes).toEqual({ created: 4, updated: 0, unchanged: 0, superseded: 0 });
    expect(await states(db)).toEqual({ m1: "done", m2: "done", m3: "done", m4: "done" });

    const rows = await generations(db, { orderBy: "replicateId" });
    expect(rows).toHaveLength(2);
    expect(rows[0]).toMatchObject({
      replicateId: "pa",
      status: "processing",
      userId: "user_1",
      operationType: "edit",
      storageContext: "edited",
      completedAt: null,
    });
    expect(rows[0]!.metadata).toMatchObject({
      arrivedVia: "webhook",
      userIdSource: "prediction-input",
      replicate: { status: "processing", startedAt: "2026-11-20T10:00:01.000Z" },
    });
    // The query string places an orphan, as in the one-at-a-time pipeline.
    expect(rows[1]).toMatchObject({ replicateId: "pb", userId: "user_q", status: "processing" });

    // The next batch finds the rows: a duplicate changes nothing, a newer state updates.
    await queue.enqueue(delivery("m5", running("pa", "processing", { logs: "step 1" })));
    await queue.enqueue(delivery("m6", running("pb", "processing", { metrics: { predict_time: 1 } })));
    const again = await batch(await claimAll(queue));
    expect(again.outcomes).toEqual({ created: 0, updated: 0, unchanged: 2, superseded: 0 });
    expect((await generations(db)).map((r) => r.id).sort()).toEqual(rows.map((r) => r.id).sort());
  });

  it("a final delivery in the batch makes the non-final ones no-ops; a late processing never replaces succeeded", async () => {
    const { db } = await createTestDatabase(kind);
    const { deps, queue, batch } = await setUp(db);
    const failed = { ...running("pf", "processing"), status: "failed", error: "CUDA out of memory" };
    failed.completed_at = "2026-11-20T10:00:04.000Z" as never;
    await queue.enqueue(delivery("m1", running("pf", "processing")));
    await queue.enqueue(delivery("m2", failed));
    const result = await batch(await claimAll(queue));
    expect(result.single.map((d) => d.id)).toEqual(["m2"]);
    expect(result.outcomes.superseded).toBe(1);
    expect(await states(db)).toMatchObject({ m1: "done", m2: "processing" });
    expect(await generations(db)).toEqual([]);

    // A row already final: the batch leaves it as it is and marks the delivery done.
    await ingestPrediction(deps, {
      prediction: makePrediction({ id: "pz", status: "canceled", input: { prompt: "x", user_id: "user_1" } }),
      via: "webhook",
    });
    await queue.enqueue(delivery("m3", running("pz", "processing")));
    const late = await batch(await queue.claim(256, 60_000, { statuses: ["starting", "processing"] }));
    expect(late.outcomes).toEqual({ created: 0, updated: 0, unchanged: 1, superseded: 0 });
    expect(await generation(db, { replicateId: "pz" })).toMatchObject({ status: "canceled" });
    expect((await states(db))["m3"]).toBe("done");
  });

  it("hands back what only the pipeline decides, and does not complete a claim another worker took over", async () => {
    const { db } = await createTestDatabase(kind);
    const { queue, batch } = await setUp(db);
    // No user anywhere: the pipeline refuses it (and says why); a generationId to adopt: the pipeline's too.
    await queue.enqueue(delivery("orphan", { ...running("po", "processing"), input: { prompt: "x" } }));
    await queue.enqueue(delivery("adopt", running("pg", "processing"), { generationId: "cgen1" }));
    await queue.enqueue(delivery("ok", running("pk", "processing")));
    const claimed = await claimAll(queue);
    // ok's lease ran out and another worker claimed it again (attempt 2): the old claim is fenced.
    await db.query(`UPDATE "WebhookDelivery" SET attempts = 2 WHERE id = 'ok'`);
    const result = await batch(claimed);
    expect(result.single.map((d) => d.id).sort()).toEqual(["adopt", "orphan"]);
    expect(result.lost).toBe(1);
    expect(await states(db)).toEqual({ adopt: "processing", ok: "processing", orphan: "processing" });
    // Writing the row again when the other worker repeats it changes nothing: the merge is idempotent.
    expect(await generation(db, { replicateId: "pk" })).toMatchObject({ status: "processing" });
  });

  it("takes turns with single-row writers of the same predictions: one row each, final states kept", async () => {
    const { db } = await createTestDatabase(kind);
    const { deps, queue, batch } = await setUp(db);
    const ids = Array.from({ length: 40 }, (_, i) => `pc${i}`);
    for (const id of ids) await queue.enqueue(delivery(`m_${id}`, running(id, "processing")));
    const finals = ids.filter((_, i) => i % 2 === 0);
    await Promise.all([
      batch(await claimAll(queue)),
      ...finals.map((id) =>
        ingestPrediction(deps, {
          prediction: makePrediction({
            id,
            status: "failed",
            error: "boom",
            input: { prompt: "x", user_id: "user_1" },
          }),
          via: "webhook",
        }),
      ),
    ]);
    const rows = await generations(db);
    expect(rows).toHaveLength(ids.length);
    for (const row of rows) expect(row.status).toBe(finals.includes(row.replicateId!) ? "failed" : "processing");
  });

  it("the worker drains a mixed queue: batches for non-final deliveries, the pipeline for the rest", async () => {
    const { db } = await createTestDatabase(kind);
    const { queue, batch } = await setUp(db);
    const piped: string[] = [];
    const worker = createDeliveryWorker({
      queue,
      batch,
      batchSize: 16,
      concurrency: 2,
      pollIntervalMs: 50,
      process: async (d) => {
        piped.push(d.id);
        return "ok";
      },
    });
    for (let i = 0; i < 60; i++) {
      await queue.enqueue(delivery(`n${i}`, running(`pw${i % 20}`, i < 20 ? "starting" : "processing")));
      if (i % 10 === 9)
        await queue.enqueue(delivery(`f${i}`, { ...running(`pf${i}`, "processing"), status: "failed" }));
    }
    worker.start();
    await worker.drained();
    await worker.stop();
    expect(piped.sort()).toEqual(["f19", "f29", "f39", "f49", "f59", "f9"]);
    expect(Object.values(await states(db)).every((s) => s === "done")).toBe(true);
    const rows = await generations(db);
    expect(rows).toHaveLength(20);
    expect(rows.every((r) => r.status === "processing")).toBe(true);
  });
});

describe.runIf(databaseKinds.includes("postgres"))("a batch on an app's table (PostgreSQL)", () => {
  it("writes the app's names and status vocabulary (app b: snake_case columns, a status enum)", async () => {
    const { db } = await createAppDatabase("postgres", "b");
    await applyMigrations(db);
    const { queue, batch } = await setUp(db);
    await queue.enqueue(delivery("m1", running("pb1", "starting")));
    await queue.enqueue(delivery("m2", running("pb2", "processing")));
    await queue.enqueue(delivery("m3", running("pb2", "starting")));
    const result = await batch(await claimAll(queue));
    expect(result.outcomes.created).toBe(3);
    const raw = await db.query<{ job_id: string; status: string; user_id: string }>(
      `SELECT job_id, status::text, user_id FROM "${db.appSchema}".generations ORDER BY job_id`,
    );
    expect(raw).toEqual([
      { job_id: "pb1", status: "PENDING", user_id: "user_1" },
      { job_id: "pb2", status: "PROCESSING", user_id: "user_1" },
    ]);
    await waitFor(async () => Object.values(await states(db)).every((s) => s === "done"), undefined, "done");
  });
});
