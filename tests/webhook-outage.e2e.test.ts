import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { BACKOFF } from "../src/core/backoff.ts";
import { ingestPrediction } from "../src/pipeline/ingest.ts";
import { createLocalStorage } from "../src/storage/local.ts";
import { runServeWebhook } from "../src/webhook/receiver.ts";
import { createTestDatabase } from "./support/db.ts";
import { generations } from "./support/generations.ts";
import { startOutputServer } from "./support/output-server.ts";
import { newSecret, post, samplePrediction, svixSigned } from "./support/webhook-deliveries.ts";
import { storedKeys } from "./support/webhook-receiver.ts";
import { waitFor } from "./support/wait.ts";

// Issue 11's figure: storage unusable while deliveries are acked, for longer than the old
// 9 attempts, then back. Every stranded delivery is stored with no operator, soon after storage
// returns, not after the backoff's next wait (10 min at the real backoff). The real server on
// loopback, the real pipeline, local storage whose folder disappears (a volume unmounted) and
// comes back. The backoff is shortened (5 ms doubling) so that 10 attempts take seconds, then
// each delivery's wait is set to 10 min, as the real backoff has it by then; storage is
// checked every second (15 s by default).

const N = 8;

describe("a storage outage longer than the old attempt limit (serve-webhook's server, local storage)", () => {
  it("stores every stranded delivery once storage is back, with no operator", async () => {
    const outputs = await startOutputServer();
    onTestFinished(() => outputs.close());
    const { db } = await createTestDatabase("embedded");
    const dir = await mkdtemp(path.join(os.tmpdir(), "genstore-outage-"));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const root = path.join(dir, "storage");
    const secret = newSecret();
    const controller = new AbortController();
    const lines: string[] = [];
    let base = "";
    const running = runServeWebhook(
      {
        port: 0,
        host: "127.0.0.1",
        concurrency: 4,
        secret,
        pollIntervalMs: 50,
        retry: { ...BACKOFF.delivery, baseDelayMs: 5, maxDelayMs: 60_000 },
        storageProbeMs: 1_000,
      },
      {
        db,
        storage: createLocalStorage(root),
        config: { outputHosts: [outputs.hostEntry], maxOutputBytes: 10 * 1024 * 1024 },
        ingest: ingestPrediction,
        signal: controller.signal,
        log: (line) => lines.push(line),
        onListening: (where) => (base = where.url),
      },
    );
    onTestFinished(async () => {
      controller.abort();
      await running;
    });
    await waitFor(() => base !== "", undefined, "the receiver to listen");

    // Storage goes away: its folder is replaced by a file.
    await rename(root, `${root}.away`);
    await writeFile(root, "not a folder");
    const predictions = Array.from({ length: N }, (_, i) =>
      samplePrediction({
        input: { prompt: "a fox", user_id: "u1" },
        output: [outputs.url(`/png/out-${i}.png`)],
        completed_at: new Date().toISOString(),
      }),
    );
    const replies = await Promise.all(
      predictions.map((p) => {
        const delivery = svixSigned(JSON.stringify(p), secret);
        return post(`${base}/api/webhooks/replicate`, delivery.body, delivery.headers);
      }),
    );
    expect(replies.map((r) => r.status)).toEqual(Array(N).fill(200));

    // Every delivery has failed 10 attempts (the old limit was 9) and is still waiting, none failed.
    const attempts = () =>
      db.query<{ state: string; attempts: number }>(`SELECT state, attempts FROM "WebhookDelivery"`);
    await waitFor(
      async () => {
        const rows = await attempts();
        const failed = rows.filter((r) => r.state === "failed");
        if (failed.length > 0)
          throw new Error(`${failed.length} deliveries failed after ${failed[0]!.attempts} attempts`);
        return rows.length === N && rows.every((r) => r.state === "pending" && r.attempts >= 10);
      },
      undefined,
      "every delivery to fail 10 attempts",
    );
    const before = await attempts();
    expect(before.filter((r) => r.state === "failed")).toEqual([]);
    // As after a 20-minute outage at the real backoff: each is waiting out a 10-minute wait.
    await db.query(
      `UPDATE "WebhookDelivery" SET "lockedUntil" = (now() AT TIME ZONE 'UTC') + interval '10 minutes' WHERE state = 'pending'`,
    );

    // Storage comes back.
    await rm(root);
    await rename(`${root}.away`, root);
    const back = Date.now();
    await waitFor(
      async () =>
        (await db.query<{ state: string }>(`SELECT state FROM "WebhookDelivery"`)).every((r) => r.state === "done"),
      undefined,
      "every stranded delivery to be stored",
    );
    const recoveredMs = Date.now() - back;
    console.log(
      `storage outage: ${N} deliveries acked, each failed ${Math.min(...before.map((r) => r.attempts))}+ attempts; ` +
        `from storage back to the last stranded delivery stored: ${(recoveredMs / 1000).toFixed(1)} s ` +
        `(their backoff alone would have waited 10 min more)`,
    );
    expect(recoveredMs).toBeLessThan(60_000);

    const rows = await generations(db);
    expect(rows).toHaveLength(N);
    expect(rows.every((r) => r.status === "succeeded" && r.error === null)).toBe(true);
    const keys = await storedKeys(createLocalStorage(root), "generated/u1/");
    expect(keys).toHaveLength(N);
    expect(
      lines.some((l) => /^storage is back after \d+ s: \d+ deliver(y|ies) waiting out a backoff retried now$/.test(l)),
    ).toBe(true);
  });
});
