import { mkdtemp, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { startBinary } from "./support/cli.ts";
import { createTestDatabase, databaseEnv } from "./support/db.ts";
import { fakePrediction, startFakeReplicate } from "./support/fake-replicate.ts";
import { generation, insertGenerations } from "./support/generations.ts";
import { startOutputServer } from "./support/output-server.ts";
import { newSecret } from "./support/webhook-deliveries.ts";
import { waitFor } from "./support/wait.ts";

// The second half of "webhook + polling": serve-webhook itself polls Replicate for rows left
// in starting/processing (a webhook that never came), with recover --pending's code, when it
// has a token; and says at start-up whether it does. The real binary, PostgreSQL, local storage.

describe.skipIf(!process.env.TEST_DATABASE_URL)("serve-webhook polls Replicate for stuck rows (the binary)", () => {
  it("says polling is off without REPLICATE_API_TOKEN; with one, stores a stuck row's outputs with no webhook", async () => {
    const [api, outputs] = await Promise.all([startFakeReplicate(), startOutputServer()]);
    onTestFinished(async () => {
      await Promise.all([api.close(), outputs.close()]);
    });
    const { db, config } = await createTestDatabase("postgres");
    const home = await mkdtemp(path.join(os.tmpdir(), "genstore-poll-"));
    onTestFinished(() => rm(home, { recursive: true, force: true }));
    api.add(
      fakePrediction({
        id: "stuck1",
        input: { prompt: "a fox", user_id: "u1" },
        output: [outputs.url("/png/out-0.png")],
      }),
    );
    await insertGenerations(db, [{ id: "gen_stuck1", replicateId: "stuck1", userId: "u1", status: "processing" }]);
    const env = {
      ...databaseEnv(config),
      GENSTORE_HOME: home,
      REPLICATE_WEBHOOK_SECRET: newSecret(),
      GENSTORE_OUTPUT_HOSTS: outputs.hostEntry,
      REPLICATE_API_BASE_URL: api.url,
    };
    const polling = ["--reconcile-after", "1s", "--reconcile-every", "200ms"];

    const without = await startBinary(env, polling);
    await waitFor(() => /Polling Replicate for stuck rows: off/.test(without.stderr()), undefined, "the polling line");
    expect(without.stderr()).toMatch(
      /Polling Replicate for stuck rows: off \(REPLICATE_API_TOKEN is not set\); rows a webhook never finished wait for genstore recover --pending\./,
    );
    without.child.kill("SIGTERM");
    expect(await without.exited).toBe(0);
    expect(api.polls("stuck1")).toBe(0);

    const receiver = await startBinary({ ...env, REPLICATE_API_TOKEN: api.token }, polling);
    // The URL (stdout) can arrive before the start-up lines (stderr): wait for the line.
    await waitFor(() => /Polling Replicate every/.test(receiver.stderr()), undefined, "the polling line");
    expect(receiver.stderr()).toMatch(
      /Polling Replicate every 200ms for rows starting\/processing untouched for 1s \(as recover --pending; --no-reconcile turns it off\)\./,
    );
    const row = await waitFor(
      async () => {
        const current = await generation(db, { replicateId: "stuck1" });
        return current.status === "succeeded" ? current : undefined;
      },
      undefined,
      "the stuck row to be stored by a poll",
    );
    expect((row.metadata as { arrivedVia?: string }).arrivedVia).toBe("poll");
    expect((await stat(path.join(home, "storage", "generated", "u1", "gen_stuck1_0.png"))).size).toBe(
      outputs.bytes.png.length,
    );
    await waitFor(() => /poll: rows stuck in starting\/processing: 1 prediction: 1 stored\./.test(receiver.stderr()));
    receiver.child.kill("SIGTERM");
    expect(await receiver.exited).toBe(0);
  });
});
