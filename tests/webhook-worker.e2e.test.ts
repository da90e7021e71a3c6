import { existsSync } from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it, onTestFinished } from "vitest";
import { expectBuiltAfter, startBinary, startWorker } from "./support/cli.ts";
import { createTestDatabase, databaseEnv } from "./support/db.ts";
import { startOutputServer } from "./support/output-server.ts";
import { newSecret, post, request, samplePrediction, svixSigned } from "./support/webhook-deliveries.ts";
import { waitFor } from "./support/wait.ts";

// Acking and ingesting in separate processes: `serve-webhook --no-worker` stores and acks
// deliveries and ingests none of them; `genstore worker` on the same database ingests them.
// The real binaries, on PostgreSQL and local storage.

describe.skipIf(!process.env.TEST_DATABASE_URL)("serve-webhook --no-worker beside genstore worker (the binary)", () => {
  it("the receiver only acks; the worker ingests what it stored, then stops cleanly", async () => {
    expectBuiltAfter("src/commands/worker.ts");
    const outputs = await startOutputServer();
    onTestFinished(() => outputs.close());
    const { db, config } = await createTestDatabase("postgres");
    const home = await mkdtemp(path.join(os.tmpdir(), "genstore-split-"));
    onTestFinished(() => rm(home, { recursive: true, force: true }));
    const secret = newSecret();
    const env = {
      ...databaseEnv(config),
      GENSTORE_HOME: home,
      REPLICATE_WEBHOOK_SECRET: secret,
      GENSTORE_OUTPUT_HOSTS: outputs.hostEntry,
    };

    // --poll 100 would have a worker claim within 100 ms, if the receiver had one.
    const receiver = await startBinary(env, ["--no-worker", "--poll", "100"]);
    await waitFor(() => /Worker: off \(--no-worker\)/.test(receiver.stderr()), undefined, "the line saying so");
    const running = samplePrediction({ status: "processing", output: null, completed_at: null });
    const done = samplePrediction({ output: [outputs.url("/png/out-0.png")] });
    const replies = await Promise.all(
      [running, done].map((p) => {
        const delivery = svixSigned(JSON.stringify(p), secret);
        return post(`${receiver.url}?userId=user_split`, delivery.body, delivery.headers);
      }),
    );
    expect(replies.map((r) => r.status)).toEqual([200, 200]);

    // Stored, and left alone: well past the poll interval, nothing is claimed or written.
    await sleep(1_000);
    const states = async () =>
      (await db.query<{ state: string }>(`SELECT state FROM "WebhookDelivery" ORDER BY state`)).map((r) => r.state);
    expect(await states()).toEqual(["pending", "pending"]);
    expect(await db.query(`SELECT id FROM "Generation"`)).toEqual([]);
    const health = await request("GET", receiver.url.replace("/api/webhooks/replicate", "/healthz"));
    expect(health.status).toBe(200);
    expect(health.json).toMatchObject({ ok: true, pending: 2, processing: 0 });
    expect(health.json).not.toHaveProperty("worker");
    expect(existsSync(path.join(home, "storage"))).toBe(false); // a receiver without a worker never opens storage

    const worker = await startWorker(env, ["--poll", "100"]);
    expect(worker.stderr()).toMatch(/Ready\. Ingesting the webhook deliveries queued in PostgreSQL at /);
    await waitFor(
      async () => (await states()).every((s) => s === "done"),
      undefined,
      "the worker to ingest both deliveries",
    );
    const rows = await db.query<{ id: string; replicateId: string; status: string; userId: string }>(
      `SELECT id, "replicateId", status, "userId" FROM "Generation" ORDER BY status`,
    );
    expect(rows).toMatchObject([
      { replicateId: running.id, status: "processing", userId: "user_split" },
      { replicateId: done.id, status: "succeeded", userId: "user_split" },
    ]);
    const file = await stat(path.join(home, "storage", "generated", "user_split", `${rows[1]!.id}_0.png`));
    expect(file.size).toBe(outputs.bytes.png.length);

    // A delivery acked now is the worker's too, found by its poll (no receiver wakes it).
    const later = samplePrediction({ status: "starting", output: null, completed_at: null });
    const delivery = svixSigned(JSON.stringify(later), secret);
    expect((await post(`${receiver.url}?userId=user_split`, delivery.body, delivery.headers)).status).toBe(200);
    await waitFor(
      async () => (await db.query(`SELECT id FROM "Generation" WHERE "replicateId" = $1`, later.id)).length === 1,
      undefined,
      "the worker to ingest the later delivery",
    );

    worker.child.kill("SIGTERM");
    expect(await worker.exited).toBe(0);
    expect(worker.stderr()).toMatch(/shutting down: finishing the deliveries in progress/);
    expect(worker.stderr()).toMatch(/Stopped\.\n?$/);
    receiver.child.kill("SIGTERM");
    expect(await receiver.exited).toBe(0);
    expect(receiver.stderr()).toMatch(/shutting down: no new deliveries\n/);
  });
});
