import { mkdtemp, rm, stat } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { expectBuiltAfter, startBinary } from "./support/cli.ts";
import { createTestDatabase, databaseEnv } from "./support/db.ts";
import { startOutputServer } from "./support/output-server.ts";
import { newSecret, post, samplePrediction, svixSigned } from "./support/webhook-deliveries.ts";
import { waitFor } from "./support/wait.ts";

// The promise of serve-webhook: once it has answered 200, the delivery is not lost, even
// if the process is killed outright. The real binary, on PostgreSQL and local storage,
// with outputs served slowly so that work is still queued when the receiver dies.

const MiB = 1024 * 1024;

describe.skipIf(!process.env.TEST_DATABASE_URL)(
  "serve-webhook killed with SIGKILL after acking (the binary, PostgreSQL, local storage)",
  () => {
    it("stores every acked delivery once a receiver runs again", async () => {
      expectBuiltAfter("src/webhook/receiver.ts");
      const outputs = await startOutputServer();
      onTestFinished(() => outputs.close());
      const { db, config } = await createTestDatabase("postgres");
      const home = await mkdtemp(path.join(os.tmpdir(), "genstore-crash-"));
      onTestFinished(() => rm(home, { recursive: true, force: true }));
      const secret = newSecret();
      const env = {
        ...databaseEnv(config),
        GENSTORE_HOME: home,
        REPLICATE_WEBHOOK_SECRET: secret,
        GENSTORE_OUTPUT_HOSTS: outputs.hostEntry,
        GENSTORE_MAX_OUTPUT_BYTES: String(50 * MiB),
      };

      // Each output takes a second to arrive: with 2 at a time, 8 deliveries need about 4 s.
      const N = 8;
      for (let i = 0; i < N; i++) {
        outputs.route(`/slow/out-${i}.png`, (_req, res) => {
          const timer = setTimeout(
            () =>
              res
                .writeHead(200, { "content-type": "image/png", "content-length": outputs.bytes.png.length })
                .end(outputs.bytes.png),
            1_000,
          );
          res.on("close", () => clearTimeout(timer));
        });
      }
      const first = await startBinary(env, ["--concurrency", "2", "--lease", "2", "--poll", "200"]);
      const predictions = Array.from({ length: N }, (_, i) =>
        samplePrediction({ output: [outputs.url(`/slow/out-${i}.png`)] }),
      );
      const agent = new http.Agent({ keepAlive: true });
      onTestFinished(() => agent.destroy());
      const replies = await Promise.all(
        predictions.map((p) => {
          const delivery = svixSigned(JSON.stringify(p), secret);
          return post(`${first.url}?userId=user_crash`, delivery.body, delivery.headers, agent);
        }),
      );
      expect(replies.map((r) => r.status)).toEqual(Array(N).fill(200));

      first.child.kill("SIGKILL");
      await first.exited;
      const states = async () =>
        (await db.query<{ state: string }>(`SELECT state FROM "WebhookDelivery"`)).map((r) => r.state);
      const atKill = await states();
      expect(atKill).toHaveLength(N);
      // The test means something only if work was left behind.
      expect(atKill.filter((s) => s !== "done").length).toBeGreaterThan(0);

      const second = await startBinary(env, ["--concurrency", "2", "--lease", "2", "--poll", "200"]);
      await waitFor(
        async () => (await states()).every((s) => s === "done"),
        undefined,
        "every delivery to be done after the restart",
      );
      const rows = await db.query<{ id: string; replicateId: string; status: string; userId: string }>(
        `SELECT id, "replicateId", status, "userId" FROM "Generation"`,
      );
      expect(rows.map((r) => r.replicateId).sort()).toEqual(predictions.map((p) => p.id as string).sort());
      for (const row of rows) {
        expect(row).toMatchObject({ status: "succeeded", userId: "user_crash" });
        const file = await stat(path.join(home, "storage", "generated", "user_crash", `${row.id}_0.png`));
        expect(file.size).toBe(outputs.bytes.png.length);
      }

      // And SIGTERM stops it cleanly.
      second.child.kill("SIGTERM");
      expect(await second.exited).toBe(0);
      expect(second.stderr()).toMatch(/shutting down/);
    });
  },
);
