import { describe, expect, it, onTestFinished } from "vitest";
import { startOutputServer } from "./support/output-server.ts";
import { testStorage, type StorageKind } from "./support/pipeline-fixtures.ts";
import { createTestDatabase, databaseKinds, type DatabaseKind } from "./support/db.ts";
import { newSecret, post, samplePrediction, svixSigned } from "./support/webhook-deliveries.ts";
import { startReceiver, storedKeys } from "./support/webhook-receiver.ts";
import { generations } from "./support/generations.ts";

// The receiver with the real ingestion pipeline: what Replicate's duplicate, concurrent and
// out-of-order deliveries leave in the database and the storage.

const secret = newSecret();

const combos: [DatabaseKind, StorageKind][] = [
  ...databaseKinds.map((kind) => [kind, "local"] as [DatabaseKind, StorageKind]),
  [databaseKinds.at(-1)!, "aws"],
];

describe.each(combos)("webhook deliveries through the pipeline (%s database, %s storage)", (dbKind, storageKind) => {
  it("concurrent, duplicate and out-of-order deliveries of one prediction give one row and one object per output", async () => {
    const outputs = await startOutputServer();
    onTestFinished(() => outputs.close());
    const { db } = await createTestDatabase(dbKind);
    const storage = await testStorage(storageKind);
    const receiver = await startReceiver(db, storage, [outputs.hostEntry], secret, { concurrency: 4 });

    const id = `p${Date.now().toString(36)}ooo`;
    const urls = [outputs.url("/png/out-0.png"), outputs.url("/jpeg/out-1.jpg")];
    const base = { id, input: { prompt: "[EDITED] a red fox in snow" } };
    const succeeded = JSON.stringify(samplePrediction({ ...base, status: "succeeded", output: urls }));
    const processing = JSON.stringify(
      samplePrediction({ ...base, status: "processing", output: null, completed_at: null }),
    );
    const starting = JSON.stringify(
      samplePrediction({ ...base, status: "starting", output: null, completed_at: null, started_at: null }),
    );

    // The completed one three times under different ids (Replicate retries reuse the id; a
    // second receiver or an app bug may not), once more with the same id, and the earlier
    // events after it, all at once.
    const completed = svixSigned(succeeded, secret);
    const deliveries = [
      completed,
      completed,
      svixSigned(succeeded, secret),
      svixSigned(succeeded, secret),
      svixSigned(processing, secret),
      svixSigned(starting, secret),
    ];
    const replies = await Promise.all(deliveries.map((d) => post(`${receiver.url}?userId=user_7`, d.body, d.headers)));
    expect(replies.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    // And a late "processing" once everything is done.
    await receiver.settled();
    const late = svixSigned(processing, secret);
    expect((await post(`${receiver.url}?userId=user_7`, late.body, late.headers)).status).toBe(200);
    await receiver.settled();

    const deliveryRows = await db.query<{ state: string }>(`SELECT state FROM "WebhookDelivery"`);
    expect(deliveryRows).toHaveLength(6);
    expect(deliveryRows.every((row) => row.state === "done")).toBe(true);

    const rows = await generations(db);
    expect(rows).toHaveLength(1);
    const row = rows[0]!;
    expect(row).toMatchObject({
      replicateId: id,
      userId: "user_7",
      status: "succeeded",
      operationType: "edit",
      storageContext: "edited",
    });
    const keys = await storedKeys(storage);
    const outputKeys = keys.filter((key) => key.startsWith("edited/"));
    expect(outputKeys).toEqual([`edited/user_7/${row.id}_0.png`, `edited/user_7/${row.id}_1.jpg`]);
    expect(keys.filter((key) => key.startsWith("thumbnails/edited/user_7/"))).toHaveLength(2);
    expect(keys).toHaveLength(4);
    const recorded = (row.storageKeys as Array<{ key: string }>).map((entry) => entry.key).sort();
    expect(recorded).toEqual([...keys].sort());
    // However the concurrent deliveries shared the work, each object was written once.
    const written = receiver.lines
      .map((line) => Number(/stored (\d+) object/.exec(line)?.[1] ?? 0))
      .reduce((a, b) => a + b, 0);
    expect(written, receiver.lines.join("\n")).toBe(4);
  });
});

describe("a delivery the pipeline cannot place", () => {
  it("is marked failed at once (not retried) with the pipeline's reason", async () => {
    const outputs = await startOutputServer();
    onTestFinished(() => outputs.close());
    const { db } = await createTestDatabase("embedded");
    const storage = await testStorage("local");
    const receiver = await startReceiver(db, storage, [outputs.hostEntry], secret);
    const orphan = svixSigned(JSON.stringify(samplePrediction({ output: [outputs.url("/png/out-0.png")] })), secret);
    expect((await post(receiver.url, orphan.body, orphan.headers)).status).toBe(200);
    await receiver.settled();
    const [row] = await db.query<{ state: string; attempts: number; lastError: string }>(
      `SELECT state, attempts, "lastError" FROM "WebhookDelivery"`,
    );
    expect(row).toMatchObject({ state: "failed", attempts: 1 });
    expect(row!.lastError).toMatch(/userId|user/i);
    expect(receiver.lines.some((line) => line.includes("failed (not retried)"))).toBe(true);
  });
});
