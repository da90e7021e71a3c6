import { readdir } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { applyMigrations } from "../src/db/migrations.ts";
import * as library from "../src/index.ts";
import { createWebhookRoute, drainDeliveries, handleReplicateWebhook, openGenstore } from "../src/index.ts";
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
      "createWebhookRoute",
      "createDrainRoute",
      "drainDeliveries",
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

describe("createWebhookRoute", () => {
  const deliveryFor = (output: string, target = url) => {
    const prediction = samplePrediction({ output: [output] });
    const signed = signedRequest(JSON.stringify(prediction), { target });
    return { prediction, ...signed };
  };

  it("opens nothing until the first request, then stores with the environment's database and storage", async () => {
    const outputs = await startOutputServer();
    onTestFinished(() => outputs.close());
    const home = await tempDir("genstore-route-");
    const env = { GENSTORE_HOME: home, GENSTORE_OUTPUT_HOSTS: outputs.hostEntry, REPLICATE_WEBHOOK_SECRET: secret };
    const pending: Promise<unknown>[] = [];
    const POST = createWebhookRoute({ env, waitUntil: (work) => pending.push(work) });
    expect(await readdir(home)).toEqual([]);

    const { request } = deliveryFor(outputs.url("/png/out-0.png"));
    const response = await POST(request);
    expect(response.status).toBe(200);
    await Promise.all(pending);
    const files = await readdir(path.join(home, "storage/generated/user_3"));
    expect(files.filter((name) => !name.startsWith("."))).toEqual([expect.stringMatching(/_0\.png$/)]);
  }, 120_000);

  it.each(databaseKinds.filter((kind) => kind === "postgres"))(
    "answers 503 with Retry-After while the database is unreachable or unmigrated, and stores once it is ready (%s)",
    async () => {
      const outputs = await startOutputServer();
      onTestFinished(() => outputs.close());
      const fresh = await createTestDatabase("postgres", { migrate: false });
      const env: Record<string, string> = {
        GENSTORE_HOME: await tempDir("genstore-route-"),
        DATABASE_URL: "postgresql://postgres@127.0.0.1:9/nowhere",
        GENSTORE_OUTPUT_HOSTS: outputs.hostEntry,
        REPLICATE_WEBHOOK_SECRET: secret,
      };
      const POST = createWebhookRoute({ env });

      const unreachable = await POST(deliveryFor(outputs.url("/png/a.png")).request);
      expect(unreachable.status).toBe(503);
      expect(unreachable.headers.get("retry-after")).toBe("10");
      expect((await unreachable.json()).error).toMatch(/Cannot reach PostgreSQL/);

      // The same route, once the variable points at a reachable database that is not migrated yet.
      Object.assign(env, databaseEnv(fresh.config));
      const unmigrated = await POST(deliveryFor(outputs.url("/png/a.png")).request);
      expect(unmigrated.status).toBe(503);
      expect(await unmigrated.json()).toMatchObject({
        error: expect.stringMatching(/pending (genstore )?migration/),
        hint: expect.stringMatching(/genstore db migrate/),
      });

      await applyMigrations(fresh.db);
      const ready = await POST(deliveryFor(outputs.url("/png/a.png")).request);
      expect(ready.status).toBe(200);
      expect((await ready.json()).processed).toMatch(/stored 2 objects/);
    },
  );

  it("answers 500 naming the variable when the configuration is wrong", async () => {
    const POST = createWebhookRoute({ env: { REPLICATE_WEBHOOK_SECRET: "nope" } });
    const response = await POST(signedRequest("{}").request);
    expect(response.status).toBe(500);
    expect((await response.json()).error).toMatch(/REPLICATE_WEBHOOK_SECRET/);
  });
});

describe("stranded deliveries", () => {
  it("a download that fails after the 200 is stored once the output is back, by a later answer's drain, with no redelivery", async () => {
    const { outputs, db, storage, options } = await setup();
    let gateClosed = true;
    outputs.route("/gate/out-0.png", (_req, res) => {
      if (gateClosed) return void res.writeHead(503).end();
      res.writeHead(200, { "content-type": "image/png" }).end(outputs.bytes.png);
    });
    const pending: Promise<unknown>[] = [];
    const withAfter = { ...options, waitUntil: (work: Promise<unknown>) => pending.push(work) };
    const stranded = samplePrediction({ output: [outputs.url("/gate/out-0.png")] });
    const first = signedRequest(JSON.stringify(stranded));
    expect((await handleReplicateWebhook(first.request, withAfter)).status).toBe(200);
    await Promise.all(pending.splice(0));
    const [failed] = await db.query<{ state: string; lastError: string }>(
      `SELECT state, "lastError" FROM "WebhookDelivery" WHERE id = $1`,
      first.delivery.id,
    );
    expect(failed).toMatchObject({ state: "pending", lastError: expect.stringMatching(/Could not download/) });

    gateClosed = false;
    // Its retry is due after the first backoff (5 s); any later delivery's answer then finishes it.
    await new Promise((resolve) => setTimeout(resolve, 5_500));
    const other = signedRequest(JSON.stringify(samplePrediction({ output: [outputs.url("/png/other.png")] })));
    expect((await handleReplicateWebhook(other.request, withAfter)).status).toBe(200);
    await Promise.all(pending.splice(0));

    const states = await db.query<{ id: string; state: string }>(`SELECT id, state FROM "WebhookDelivery" ORDER BY id`);
    expect(states.map((s) => s.state)).toEqual(["done", "done"]);
    const row = await generation(db, { replicateId: stranded.id as string });
    expect(row.status).toBe("succeeded");
    expect(await storedKeys(storage, "generated/")).toContain(`generated/user_3/${row.id}_0.png`);
  });

  it("drainDeliveries reports what it finished and what is left", async () => {
    const { db, storage, options } = await setup();
    expect(await drainDeliveries({ db, storage, config: options.config })).toEqual({
      processed: 0,
      failed: 0,
      remaining: { pending: 0, processing: 0, failed: 0 },
    });
  });
});

describe("errors in the library's words", () => {
  it("a refused orphan says what a library caller passes (user, or ?userId=), not the CLI's --user", async () => {
    const { db, storage, options } = await setup();
    const prediction = parsePredictionOrThrow(samplePrediction());
    const error = (await library
      .ingestPrediction({ db, storage, config: options.config }, { prediction, via: "webhook" })
      .catch((e: unknown) => e)) as { name: string; message: string; hint: string };
    expect(error.name).toBe("IngestRefusedError");
    expect(error.hint).toMatch(/pass `user`/);
    expect(`${error.message} ${error.hint}`).not.toMatch(/--user/);
  });
});

function parsePredictionOrThrow(value: unknown) {
  const parsed = library.parsePrediction(JSON.stringify(value));
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.prediction;
}
