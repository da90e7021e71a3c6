import { describe, expect, it } from "vitest";
import type { Database } from "../src/db/client.ts";
import { ConfigError, ExitCode, Interrupted } from "../src/errors.ts";
import { retentionMs, runPrune } from "../src/jobs/prune.ts";
import { runServeWebhook } from "../src/webhook/receiver.ts";
import { createTestDatabase, databaseKinds } from "./support/db.ts";
import { insertAgedDeliveries } from "./support/delivery-rows.ts";
import { testStorage } from "./support/pipeline-fixtures.ts";
import { waitFor } from "./support/wait.ts";

// Retention of the webhook delivery queue: `db prune` (runPrune) and the receiver's hourly run.

const DAY = 86_400_000;

/** 1,203 done deliveries 10 days old, and the ones retention must keep. */
async function agedQueue(db: Database) {
  const query = (sql: string, params: unknown[]) => db.query(sql, ...params);
  await insertAgedDeliveries(query, { state: "done", count: 1_203, ageDays: 10, prefix: "old-done-" });
  await insertAgedDeliveries(query, { state: "done", count: 3, ageDays: 1, prefix: "recent-done-" });
  await insertAgedDeliveries(query, { state: "failed", count: 2, ageDays: 30, prefix: "old-failed-" });
  await insertAgedDeliveries(query, { state: "pending", count: 1, ageDays: 30, prefix: "old-pending-" });
  await insertAgedDeliveries(query, { state: "processing", count: 1, ageDays: 30, prefix: "old-processing-" });
}

async function remaining(db: Database): Promise<Record<string, number>> {
  const rows = await db.query<{ kind: string; n: number | string }>(
    `SELECT regexp_replace(id, '-[0-9]+$', '') AS kind, count(*) AS n FROM "WebhookDelivery" GROUP BY 1 ORDER BY 1`,
  );
  return Object.fromEntries(rows.map((r) => [r.kind, Number(r.n)]));
}

const kept = { "recent-done": 3, "old-failed": 2, "old-pending": 1, "old-processing": 1 };

describe.each(databaseKinds)("retention of webhook deliveries (%s)", (kind) => {
  it("deletes done deliveries older than the retention in batches, and keeps failed, recent and unfinished ones", async () => {
    const { db } = await createTestDatabase(kind);
    await agedQueue(db);
    const progress: number[] = [];
    const result = await runPrune(
      { olderThanMs: 7 * DAY, batchSize: 500, pauseMs: 0 },
      { db, onProgress: (p) => progress.push(p.deleted) },
    );
    expect(result).toMatchObject({ dryRun: false, matched: 1_203, deleted: 1_203, batches: 3, failedKept: 2 });
    expect(progress).toEqual([500, 1_000, 1_203]);
    expect(Date.parse(result.before)).toBeGreaterThan(Date.now() - 7 * DAY - 60 * 60_000);
    expect(await remaining(db)).toEqual(kept);
  });

  it("counts what it would delete with --dry-run, and deletes nothing", async () => {
    const { db } = await createTestDatabase(kind);
    await agedQueue(db);
    const result = await runPrune({ olderThanMs: 7 * DAY, dryRun: true }, { db });
    expect(result).toMatchObject({ dryRun: true, matched: 1_203, deleted: 0, batches: 0, failedKept: 2 });
    expect((await remaining(db))["old-done"]).toBe(1_203);
    const wider = await runPrune({ olderThanMs: 12 * 60 * 60_000, dryRun: true }, { db });
    expect(wider.matched).toBe(1_206);
  });

  it("stops between batches when interrupted; a rerun deletes the rest", async () => {
    const { db } = await createTestDatabase(kind);
    await agedQueue(db);
    const controller = new AbortController();
    const stopped = await runPrune(
      { olderThanMs: 7 * DAY, batchSize: 500, pauseMs: 0 },
      { db, signal: controller.signal, onProgress: () => controller.abort() },
    ).catch((e: unknown) => e);
    expect(stopped).toBeInstanceOf(Interrupted);
    expect((await remaining(db))["old-done"]).toBe(703);
    expect((await runPrune({ olderThanMs: 7 * DAY, pauseMs: 0 }, { db })).deleted).toBe(703);
    expect(await remaining(db)).toEqual(kept);
  });

  it("serve-webhook deletes old done deliveries while it runs, and keeps the rest", async () => {
    const { db } = await createTestDatabase(kind);
    await agedQueue(db);
    const controller = new AbortController();
    const lines: string[] = [];
    const running = runServeWebhook(
      {
        port: 0,
        host: "127.0.0.1",
        concurrency: 1,
        insecureNoVerify: true,
        retentionMs: 7 * DAY,
        retentionBatch: { pauseMs: 0 },
      },
      {
        db,
        storage: await testStorage("local"),
        config: { outputHosts: [], maxOutputBytes: 1 },
        ingest: () => Promise.reject(new Error("not used")),
        process: async () => "processed",
        signal: controller.signal,
        log: (line) => lines.push(line),
      },
    );
    try {
      await waitFor(async () => (await remaining(db))["old-done"] === undefined, undefined, "retention to run");
      expect(await remaining(db)).toEqual(kept);
      await waitFor(
        () => lines.some((l) => l.startsWith("retention: deleted 1203 done deliveries")),
        undefined,
        "its log line",
      );
    } finally {
      controller.abort();
      await running;
    }
  });
});

describe("the retention setting", () => {
  it.each([
    ["the default", undefined, {}, 7 * DAY],
    ["GENSTORE_DELIVERY_RETENTION", undefined, { GENSTORE_DELIVERY_RETENTION: "36h" }, 36 * 60 * 60_000],
    ["the flag over the variable", "2w", { GENSTORE_DELIVERY_RETENTION: "36h" }, 14 * DAY],
  ])("%s", (_, value, env, expected) => {
    expect(retentionMs({ name: "--older-than", value }, env)).toBe(expected);
  });

  it.each([
    ["a bad flag is a usage error", "soon", {}, ExitCode.usage, "Invalid option: --older-than must be a duration"],
    ["zero keeps nothing: refused", "0d", {}, ExitCode.usage, "Invalid option: --older-than must be a duration"],
    [
      "a bad variable is a configuration error naming it",
      undefined,
      { GENSTORE_DELIVERY_RETENTION: "a week" },
      ExitCode.config,
      "GENSTORE_DELIVERY_RETENTION must be a duration",
    ],
  ])("%s", (_, value, env, exitCode, message) => {
    const error = (() => {
      try {
        retentionMs({ name: "--older-than", value }, env);
      } catch (e) {
        return e as ConfigError;
      }
    })();
    expect(error?.exitCode).toBe(exitCode);
    expect(error?.message).toContain(message);
  });
});
