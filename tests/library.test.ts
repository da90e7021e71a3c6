import { describe, expect, it, onTestFinished } from "vitest";
import * as library from "../src/index.ts";
import { handleReplicateWebhook, openGenstore } from "../src/index.ts";
import { createTestDatabase, databaseKinds, databaseEnv } from "./support/db.ts";
import { startOutputServer } from "./support/output-server.ts";
import { tempDir, testStorage } from "./support/pipeline-fixtures.ts";
import { newSecret, samplePrediction, svixSigned } from "./support/webhook-deliveries.ts";
import { storedKeys } from "./support/webhook-receiver.ts";
import { countGenerations, generation } from "./support/generations.ts";

// The package's exports, used the way a Next.js route handler uses them: a web Request in,
// a Response out.

const secret = newSecret();
const MiB = 1024 * 1024;
const url = "https://app.example.com/api/webhooks/replicate?userId=user_3";

async function setup() {
  const outputs = await startOutputServer();
  onTestFinished(() => outputs.close());
  const { db } = await createTestDatabase("embedded");
  const storage = await testStorage("local");
  const config = { outputHosts: [outputs.hostEntry], maxOutputBytes: 50 * MiB };
  return { outputs, db, storage, options: { secret, db, storage, config } };
}

function signedRequest(body: string, options: { target?: string; headers?: Record<string, string> } = {}) {
  const delivery = svixSigned(body, secret);
  return {
    delivery,
    request: new Request(options.target ?? url, {
      method: "POST",
      headers: { ...delivery.headers, ...options.headers },
      body,
    }),
  };
}

describe("the library", () => {
  it("exports the verification, parsing, ingestion and handler functions", () => {
    for (const name of [
      "verifyWebhook",
      "signWebhook",
      "parsePrediction",
      "ingestPrediction",
      "handleReplicateWebhook",
      "openGenstore",
      "loadConfig",
    ]) {
      expect(typeof (library as Record<string, unknown>)[name], name).toBe("function");
    }
  });

  it("is importable by its package name, through package.json's exports (the built dist/index.js)", async () => {
    const name = "genstore";
    const built = (await import(/* @vite-ignore */ name)) as Record<string, unknown>;
    expect(Object.keys(built).sort()).toEqual(Object.keys(library).sort());
  });

  it("handleReplicateWebhook stores and ingests a signed delivery before answering 200, once", async () => {
    const { outputs, db, storage, options } = await setup();
    const prediction = samplePrediction({
      input: { prompt: "[UPSCALED] a fox" },
      output: [outputs.url("/png/out-0.png")],
    });
    const { delivery, request } = signedRequest(JSON.stringify(prediction));
    const response = await handleReplicateWebhook(request, options);
    expect(response.status).toBe(200);
    const body = await response.json();
    expect(body).toMatchObject({ ok: true, webhookId: delivery.id, predictionId: prediction.id, duplicate: false });
    expect(body.processed).toMatch(/stored 2 objects/);
    const row = await generation(db, { replicateId: prediction.id as string });
    expect(row).toMatchObject({ userId: "user_3", storageContext: "upscaled", status: "succeeded" });
    expect(await storedKeys(storage, "upscaled/")).toEqual([`upscaled/user_3/${row.id}_0.png`]);

    // Replicate's retry of the same delivery: 200, nothing done again.
    const again = await handleReplicateWebhook(
      new Request(url, { method: "POST", headers: delivery.headers, body: delivery.body }),
      options,
    );
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ duplicate: true });
    expect(outputs.count("/png/")).toBe(1);
  });

  it("with waitUntil, answers 200 once stored and ingests after", async () => {
    const { outputs, db, options } = await setup();
    const prediction = samplePrediction({ output: [outputs.url("/png/out-0.png")] });
    const pending: Promise<unknown>[] = [];
    const response = await handleReplicateWebhook(signedRequest(JSON.stringify(prediction)).request, {
      ...options,
      waitUntil: (work) => pending.push(work),
    });
    expect(response.status).toBe(200);
    expect((await response.json()).processed).toBeUndefined();
    expect(pending).toHaveLength(1);
    await Promise.all(pending);
    expect(await countGenerations(db, { replicateId: prediction.id as string })).toBe(1);
    const [delivery] = await db.query<{ state: string }>(`SELECT state FROM "WebhookDelivery"`);
    expect(delivery!.state).toBe("done");
  });

  it.each([
    [
      "a bad signature",
      401,
      () => new Request(url, { method: "POST", headers: svixSigned("{}", newSecret()).headers, body: "{}" }),
    ],
    ["no signature", 401, () => new Request(url, { method: "POST", body: JSON.stringify(samplePrediction()) })],
    ["malformed JSON", 400, () => signedRequest("{oops").request],
    [
      "a body over 10 MiB",
      413,
      () => signedRequest(JSON.stringify(samplePrediction({ logs: "x".repeat(10 * MiB) }))).request,
    ],
    ["a GET", 405, () => new Request(url)],
  ])("answers %s with %i and stores nothing", async (_name, status, make) => {
    const { db, options } = await setup();
    const response = await handleReplicateWebhook(make(), options);
    expect(response.status).toBe(status);
    expect(typeof (await response.json()).error).toBe("string");
    expect(await db.query(`SELECT id FROM "WebhookDelivery"`)).toEqual([]);
  });

  it("answers 503 when the pipeline fails in a way a retry can fix, and the redelivery succeeds", async () => {
    const { outputs, db, options } = await setup();
    let calls = 0;
    const prediction = samplePrediction({ output: [outputs.url("/png/out-0.png")] });
    const { delivery, request } = signedRequest(JSON.stringify(prediction));
    const flaky: typeof library.ingestPrediction = async (deps, req) => {
      calls += 1;
      if (calls === 1) throw Object.assign(new Error("S3 is unreachable"), { retryable: true });
      return library.ingestPrediction(deps, req);
    };
    const first = await handleReplicateWebhook(request, { ...options, ingest: flaky });
    expect(first.status).toBe(503);
    expect(first.headers.get("retry-after")).toBe("30");
    const retry = await handleReplicateWebhook(
      new Request(url, { method: "POST", headers: delivery.headers, body: delivery.body }),
      { ...options, ingest: flaky },
    );
    expect(retry.status).toBe(200);
    expect((await retry.json()).processed).toMatch(/stored/);
    const [row] = await db.query<{ state: string; attempts: number }>(`SELECT state, attempts FROM "WebhookDelivery"`);
    expect(row).toEqual({ state: "done", attempts: 2 });
  });

  it("openGenstore opens the database and storage the environment names", async () => {
    const home = await tempDir("genstore-library-");
    const kind = databaseKinds.at(-1)!;
    const env: Record<string, string> = {
      GENSTORE_HOME: home,
      GENSTORE_OUTPUT_HOSTS: "127.0.0.1:9",
      REPLICATE_WEBHOOK_SECRET: secret,
    };
    if (kind === "postgres") Object.assign(env, databaseEnv((await createTestDatabase("postgres")).config));
    const genstore = await openGenstore(env);
    try {
      expect(genstore.db.kind).toBe(kind);
      expect(genstore.storage.provider).toBe("local");
      expect(genstore.config.outputHosts).toEqual(["127.0.0.1:9"]);
      expect(genstore.config.webhookSecret).toBe(secret);
      expect(await genstore.db.query(`SELECT count(*)::int AS n FROM "WebhookDelivery"`)).toEqual([{ n: 0 }]);
    } finally {
      await genstore.close();
    }
  });
});
