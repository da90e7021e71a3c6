import { describe, expect, it, onTestFinished } from "vitest";
import { createDeliveryQueue, searchParamsFrom, storedQueryFrom, type NewDelivery } from "../src/webhook/queue.ts";
import { BACKOFF, type BackoffPolicy } from "../src/core/backoff.ts";
import { createDeliveryWorker } from "../src/webhook/worker.ts";
import type { Database } from "../src/db/client.ts";
import { createTestDatabase, databaseKinds } from "./support/db.ts";
import { insertAgedDeliveries } from "./support/delivery-rows.ts";
import { waitFor } from "./support/wait.ts";
import { generation, insertGenerations } from "./support/generations.ts";
import { recordGivenUp } from "../src/webhook/ingest-delivery.ts";

const fastRetries: BackoffPolicy = { ...BACKOFF.delivery, baseDelayMs: 0 };
/** Moves every lease and backoff into the past, as the passing of time would. */
async function expireLeases(db: Pick<Database, "query">): Promise<void> {
  await db.query(
    `UPDATE "WebhookDelivery" SET "lockedUntil" = (now() AT TIME ZONE 'UTC') - interval '1 second' WHERE "lockedUntil" IS NOT NULL`,
  );
}

const delivery = (id: string, predictionId = `p_${id}`) => ({
  id,
  predictionId,
  body: JSON.stringify({ id: predictionId, status: "succeeded" }),
  query: { userId: "u1" },
});

describe.each(databaseKinds)("the delivery queue (%s)", (kind) => {
  it("deduplicates by webhook-id", async () => {
    const { db } = await createTestDatabase(kind);
    const queue = createDeliveryQueue(db);
    expect(await queue.enqueue(delivery("m1"))).toEqual({ duplicate: false });
    expect(await queue.enqueue(delivery("m1"))).toEqual({ duplicate: true });
    const rows = await db.query<{ id: string; state: string; query: unknown }>(
      `SELECT id, state, query FROM "WebhookDelivery"`,
    );
    expect(rows).toEqual([{ id: "m1", state: "pending", query: { userId: "u1" } }]);
  });

  it("stores each row of a batch with its own body and query; a body jsonb refuses fails alone", async () => {
    const { db } = await createTestDatabase(kind);
    const queue = createDeliveryQueue(db);
    const body = (value: unknown) => JSON.stringify(value);
    const items: NewDelivery[] = [
      // The first goes out alone; the rest wait for its commit and go in together, as one batch.
      delivery("first"),
      delivery("second"),
      { id: "m1", predictionId: "p1", body: body({ id: "p1", note: 'quote " and \\ and ,' }), query: { userId: "u1" } },
      // Not one JSON value but two: joined into the batch's array, it would shift the later rows.
      { id: "m2", predictionId: "p2", body: `{"id":"p2"},{"id":"p2b"}`, query: { userId: "u2" } },
      { id: "m3", predictionId: "p3", body: body({ id: "p3", logs: "a\u0000b" }), query: { userId: "u3" } },
      { id: "m4", predictionId: "p4", body: body({ id: "p4" }), query: { userId: ["u4", "u5"] } },
      { id: "m1", predictionId: "p1", body: body({ id: "p1" }), query: {} },
    ];
    const results = await Promise.allSettled(items.map((item) => queue.enqueue(item)));
    expect(results.map((r) => (r.status === "fulfilled" ? r.value.duplicate : "refused"))).toEqual([
      false,
      false,
      false,
      "refused",
      "refused",
      false,
      true,
    ]);
    const rows = await db.query<{ id: string; predictionId: string; body: unknown; query: unknown }>(
      `SELECT id, "predictionId", body, query FROM "WebhookDelivery" WHERE id LIKE 'm%' ORDER BY id`,
    );
    expect(rows).toEqual([
      { id: "m1", predictionId: "p1", body: { id: "p1", note: 'quote " and \\ and ,' }, query: { userId: "u1" } },
      { id: "m4", predictionId: "p4", body: { id: "p4" }, query: { userId: ["u4", "u5"] } },
    ]);
  });

  it("hands each delivery to one claimer, oldest first, and counts attempts", async () => {
    const { db } = await createTestDatabase(kind);
    const queue = createDeliveryQueue(db);
    for (const id of ["a", "b", "c", "d", "e"]) await queue.enqueue(delivery(id));
    const [first, second] = await Promise.all([queue.claim(3, 60_000), queue.claim(3, 60_000)]);
    const ids = [...first, ...second].map((d) => d.id).sort();
    expect(ids).toEqual(["a", "b", "c", "d", "e"]);
    expect([...first, ...second].every((d) => d.attempt === 1)).toBe(true);
    expect(first[0]!.body).toEqual({ id: "p_a", status: "succeeded" });
    expect(await queue.claim(5, 60_000)).toEqual([]);
    expect(await queue.counts()).toEqual({ pending: 0, processing: 5, failed: 0 });
  });

  it("claims from a large backlog by reading about as many rows as it takes", async () => {
    const { db } = await createTestDatabase(kind);
    await insertAgedDeliveries((sql, params) => db.query(sql, ...params), {
      state: "pending",
      count: 5000,
      ageDays: 0,
      prefix: "backlog-",
    });
    // In progress, their leases held (no lockedUntil here): not claimable, but a scan reads them.
    await insertAgedDeliveries((sql, params) => db.query(sql, ...params), {
      state: "processing",
      count: 50,
      ageDays: 0,
      prefix: "running-",
    });
    await db.query(`ANALYZE "WebhookDelivery"`);
    // Rows and index entries of the table read by this transaction (PostgreSQL's own counters:
    // by sequential scans, and fetched through indexes).
    const { claimed, read } = await db.transaction(async (tx) => {
      const claimed = await createDeliveryQueue(tx).claim(10, 60_000);
      const [row] = await tx.query<{ read: number | string }>(
        `SELECT pg_stat_get_xact_tuples_returned(t) + pg_stat_get_xact_tuples_fetched(t) AS read
           FROM CAST('"WebhookDelivery"' AS regclass) AS t`,
      );
      return { claimed, read: Number(row!.read) };
    });
    expect(claimed).toHaveLength(10);
    expect(claimed.every((d) => d.id.startsWith("backlog-"))).toBe(true);
    // One condition with OR read all 5,050 and sorted them at every claim.
    expect(read).toBeLessThan(500);
  });

  it("gives a crashed worker's delivery to another once its lease runs out, and fences the old claim", async () => {
    const { db } = await createTestDatabase(kind);
    const queue = createDeliveryQueue(db);
    await queue.enqueue(delivery("m1"));
    const [stale] = await queue.claim(1, 60_000);
    expect(await queue.claim(1, 60_000)).toEqual([]);
    await expireLeases(db); // the crashed worker's minute is up
    const [again] = await queue.claim(1, 60_000);
    expect(again).toMatchObject({ id: "m1", attempt: 2 });
    expect(await queue.complete(stale!)).toBe(false);
    expect(await queue.renew(stale!, 60_000)).toBe(false);
    expect(await queue.complete(again!)).toBe(true);
    const [row] = await db.query<{ state: string; doneAt: Date | null }>(
      `SELECT state, "doneAt" FROM "WebhookDelivery"`,
    );
    expect(row!.state).toBe("done");
    expect(row!.doneAt).not.toBeNull();
  });

  it("retries a retryable failure after its backoff for as long as its retry window lasts, past the old 9 attempts, then fails it saying why", async () => {
    const { db } = await createTestDatabase(kind);
    const queue = createDeliveryQueue(db, BACKOFF.delivery, { retryWindowMs: 60 * 60_000 });
    const completedAt = new Date(Date.now() - 1_000).toISOString();
    await queue.enqueue({
      ...delivery("m1"),
      body: JSON.stringify({ id: "p_m1", status: "succeeded", completed_at: completedAt }),
    });
    const [one] = await queue.claim(1, 60_000);
    const failedAt = Date.now();
    const outcome = await queue.fail(one!, "S3 unreachable");
    expect(outcome).toMatchObject({ state: "retry" });
    expect(outcome.retryAt!.getTime() - failedAt).toBeGreaterThanOrEqual(5_000); // BACKOFF.delivery's first wait
    expect(await queue.claim(1, 60_000)).toEqual([]);
    for (let attempt = 2; attempt <= 12; attempt++) {
      await expireLeases(db); // the backoff is over
      const [next] = await queue.claim(1, 60_000);
      expect(next!.attempt).toBe(attempt);
      expect(await queue.fail(next!, "S3 still unreachable")).toMatchObject({ state: "retry" });
    }
    // An hour and more after the prediction completed: its output is gone from Replicate.
    await db.query(
      `UPDATE "WebhookDelivery" SET body = jsonb_set(body, '{completed_at}', to_jsonb($1::text))`,
      new Date(Date.now() - 61 * 60_000).toISOString(),
    );
    await expireLeases(db);
    const [last] = await queue.claim(1, 60_000);
    expect(last!.attempt).toBe(13);
    const given = await queue.fail(last!, "S3 still unreachable");
    expect(given).toMatchObject({
      state: "failed",
      reason: expect.stringMatching(/^its retry window ended at .* \(60 min after the prediction's completed_at\)$/),
    });
    const [row] = await db.query<{ state: string; lastError: string; attempts: number }>(
      `SELECT state, "lastError", attempts FROM "WebhookDelivery"`,
    );
    expect(row).toEqual({
      state: "failed",
      lastError: `S3 still unreachable (given up: ${given.reason})`,
      attempts: 13,
    });
    expect(await queue.counts()).toEqual({ pending: 0, processing: 0, failed: 1 });
  });

  it("fails at once what no retry can fix", async () => {
    const { db } = await createTestDatabase(kind);
    const queue = createDeliveryQueue(db);
    await queue.enqueue(delivery("m1"));
    const [one] = await queue.claim(1, 60_000);
    expect(await queue.fail(one!, "the output has expired", { final: true })).toEqual({ state: "failed" });
  });

  it("marks failed a delivery whose worker died during every attempt its window allows", async () => {
    const { db } = await createTestDatabase(kind);
    // A window shorter than the first wait allows 3 attempts.
    const queue = createDeliveryQueue(db, BACKOFF.delivery, { retryWindowMs: 1 });
    await queue.enqueue(delivery("m1"));
    for (let attempt = 1; attempt <= 3; attempt++) {
      expect(await queue.claim(1, 60_000)).toMatchObject([{ attempt }]);
      await expireLeases(db); // the worker died: its lease ran out
    }
    expect(await queue.claim(1, 60_000)).toEqual([]);
    expect(await queue.failAbandoned()).toBe(1);
    const [row] = await db.query<{ state: string; lastError: string }>(
      `SELECT state, "lastError" FROM "WebhookDelivery"`,
    );
    expect(row!.state).toBe("failed");
    expect(row!.lastError).toMatch(/worker stopped during its last attempt/);
  });

  it("releases deliveries waiting out a backoff: the soonest due first, or all", async () => {
    const { db } = await createTestDatabase(kind);
    const queue = createDeliveryQueue(db);
    for (const id of ["a", "b", "c"]) await queue.enqueue(delivery(id));
    for (const claimed of await queue.claim(3, 60_000)) await queue.fail(claimed, "storage is full");
    expect(await queue.claim(3, 60_000)).toEqual([]);
    expect(await queue.releaseWaiting(1)).toBe(1);
    expect(await queue.claim(3, 60_000)).toHaveLength(1);
    expect(await queue.releaseWaiting()).toBe(2);
    expect(await queue.claim(3, 60_000)).toHaveLength(2);
    expect(await queue.releaseWaiting()).toBe(0);
  });

  it("the worker processes what is queued, retries what throws, and stops cleanly", async () => {
    const { db } = await createTestDatabase(kind);
    const queue = createDeliveryQueue(db, fastRetries);
    const seen: string[] = [];
    let failures = 0;
    const worker = createDeliveryWorker({
      queue,
      concurrency: 2,
      pollIntervalMs: 50,
      process: async (d) => {
        if (d.id === "flaky" && failures++ < 1) throw new Error("temporary");
        seen.push(`${d.id}:${d.params.get("userId")}`);
        return "ok";
      },
    });
    worker.start();
    for (const id of ["a", "b", "flaky", "c"]) {
      await queue.enqueue(delivery(id));
      worker.wake();
    }
    await waitFor(
      async () => (await queue.counts()).pending + (await queue.counts()).processing === 0 && seen.length === 4,
      undefined,
      "the queue to drain",
    );
    await worker.stop();
    expect(seen.sort()).toEqual(["a:u1", "b:u1", "c:u1", "flaky:u1"]);
    const rows = await db.query<{ id: string; state: string; attempts: number }>(
      `SELECT id, state, attempts FROM "WebhookDelivery" ORDER BY id`,
    );
    expect(rows.map((r) => `${r.id}:${r.state}:${r.attempts}`)).toEqual([
      "a:done:1",
      "b:done:1",
      "c:done:1",
      "flaky:done:2",
    ]);
  });
});

describe("a delivery given up", () => {
  it("records on its prediction's row why it has no outputs, and leaves the row processing for a poll or recover", async () => {
    const { db } = await createTestDatabase("embedded");
    await insertGenerations(db, [
      { replicateId: "p_gone", status: "processing", error: "S3 unreachable (will be retried)" },
    ]);
    const queue = createDeliveryQueue(db, fastRetries, { retryWindowMs: 1 });
    const worker = createDeliveryWorker({
      queue,
      pollIntervalMs: 50,
      process: () => Promise.reject(new Error("S3 unreachable")),
      onGivenUp: (d, givenUp) => recordGivenUp(db, d, givenUp),
    });
    worker.start();
    onTestFinished(() => worker.stop());
    await queue.enqueue(delivery("m_gone", "p_gone"));
    worker.wake();
    await waitFor(async () => (await queue.counts()).failed === 1, undefined, "the delivery to be given up");
    await waitFor(async () => (await generation(db, { replicateId: "p_gone" })).metadata, undefined, "the row");
    const row = await generation(db, { replicateId: "p_gone" });
    expect(row.status).toBe("processing");
    expect(row.error).toMatch(
      /^not stored: webhook delivery m_gone given up after 3 attempts, its retry window ended at .*; last error: S3 unreachable$/,
    );
    expect((row.metadata as Record<string, unknown>)["deliveryGivenUp"]).toMatchObject({
      webhookId: "m_gone",
      attempts: 3,
      lastError: "S3 unreachable",
    });
  });
});

describe("stopping the worker", () => {
  it("waits for the delivery in progress to finish and be marked done, and claims nothing new", async () => {
    const { db } = await createTestDatabase("embedded");
    const queue = createDeliveryQueue(db);
    let started = 0;
    let finished = 0;
    const worker = createDeliveryWorker({
      queue,
      concurrency: 1,
      pollIntervalMs: 50,
      process: async () => {
        started += 1;
        await new Promise((resolve) => setTimeout(resolve, 300));
        finished += 1;
        return "ok";
      },
    });
    worker.start();
    await queue.enqueue(delivery("slow"));
    await queue.enqueue(delivery("next"));
    worker.wake();
    await waitFor(() => started === 1, undefined, "the first delivery to start");
    await worker.stop();
    expect({ started, finished }).toEqual({ started: 1, finished: 1 });
    const states = await db.query<{ state: string }>(`SELECT state FROM "WebhookDelivery" ORDER BY state`);
    expect(states.map((row) => row.state)).toEqual(["done", "pending"]);
  });
});

describe("stored query strings", () => {
  it.each([
    ["userId=u1&generationId=g1", { userId: "u1", generationId: "g1" }],
    ["userId=u1&userId=u2", { userId: ["u1", "u2"] }],
    ["", {}],
  ])("%s round-trips, keeping repeated values", (text, stored) => {
    expect(storedQueryFrom(new URLSearchParams(text))).toEqual(stored);
    expect(searchParamsFrom(stored).toString()).toBe(new URLSearchParams(text).toString());
  });
});
