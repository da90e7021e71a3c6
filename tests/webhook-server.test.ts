import http from "node:http";
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createDeliveryQueue } from "../src/webhook/queue.ts";
import { createWebhookServer, type WebhookServer } from "../src/webhook/http-server.ts";
import { createReceiverMetrics } from "../src/webhook/metrics.ts";
import { createDeliveryWorker, type DeliveryProcessor } from "../src/webhook/worker.ts";
import { runServeWebhook } from "../src/webhook/receiver.ts";
import { createTestDatabase, databaseKinds } from "./support/db.ts";
import { testStorage } from "./support/pipeline-fixtures.ts";
import {
  newSecret,
  post,
  replicateAccepts,
  request,
  samplePrediction,
  svixSigned,
} from "./support/webhook-deliveries.ts";
import { waitFor } from "./support/wait.ts";

// The receiver's HTTP contract, with a recording processor in place of the pipeline (the
// pipeline's own behaviour is in tests/webhook-ingest.test.ts).

const secret = newSecret();
const MiB = 1024 * 1024;
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function receiver(
  kind: (typeof databaseKinds)[number],
  options: { process?: DeliveryProcessor; insecureNoVerify?: boolean; metricsToken?: string } = {},
) {
  const { db } = await createTestDatabase(kind);
  const queue = createDeliveryQueue(db);
  const processed: { id: string; predictionId: string; userId: string | null }[] = [];
  const metrics = createReceiverMetrics();
  const lines: string[] = [];
  const worker = createDeliveryWorker({
    queue,
    pollIntervalMs: 50,
    log: (line) => lines.push(line),
    process:
      options.process ??
      (async (d) => {
        processed.push({ id: d.id, predictionId: d.predictionId, userId: d.params.get("userId") });
        return "processed";
      }),
  });
  const server: WebhookServer = createWebhookServer({
    queue,
    secret: options.insecureNoVerify ? undefined : secret,
    insecureNoVerify: options.insecureNoVerify,
    onAccepted: () => worker.wake(),
    log: (line) => lines.push(line),
    metrics,
    metricsToken: options.metricsToken,
  });
  const base = await server.listen(0, "127.0.0.1");
  worker.start();
  closers.push(async () => {
    await server.close();
    await worker.stop();
  });
  const rows = () =>
    db.query<{ id: string; predictionId: string; state: string; query: unknown; body: unknown }>(
      `SELECT id, "predictionId", state, query, body FROM "WebhookDelivery" ORDER BY "receivedAt"`,
    );
  return { base, url: `${base}/api/webhooks/replicate`, db, queue, worker, server, processed, lines, rows, metrics };
}

/** The value of one sample in Prometheus text (`name{labels} value`). */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe.each(databaseKinds)("the webhook receiver (%s)", (kind) => {
  it("acks a svix-signed delivery only once it is stored, then processes it with the URL's query", async () => {
    const r = await receiver(kind);
    const prediction = samplePrediction();
    const delivery = svixSigned(JSON.stringify(prediction), secret);
    expect(await replicateAccepts(delivery, secret)).toBe(true);
    const reply = await post(`${r.url}?userId=user_1&generationId=gen_1`, delivery.body, delivery.headers);
    expect(reply.status).toBe(200);
    expect(reply.json).toEqual({ ok: true, webhookId: delivery.id, predictionId: prediction.id, duplicate: false });
    const [row] = await r.rows();
    expect(row).toMatchObject({
      id: delivery.id,
      predictionId: prediction.id,
      query: { userId: "user_1", generationId: "gen_1" },
    });
    expect(row!.body).toMatchObject({ id: prediction.id, status: "succeeded" });
    await waitFor(() => r.processed.length === 1, undefined, "the worker");
    expect(r.processed).toEqual([{ id: delivery.id, predictionId: prediction.id, userId: "user_1" }]);
    await waitFor(async () => (await r.rows())[0]!.state === "done", undefined, "done");
    expect(r.lines.some((line) => line.startsWith(`200 ${delivery.id} ${String(prediction.id)} processed`))).toBe(true);
  });

  it("answers 401 to a missing, bad or stale signature (replicate's validateWebhook rejects the bad one too) and stores nothing", async () => {
    const r = await receiver(kind);
    const body = JSON.stringify(samplePrediction());
    const good = svixSigned(body, secret);
    const missing = await post(r.url, body, { "content-type": "application/json" });
    expect(missing.status).toBe(401);
    expect(missing.json.error).toMatch(/missing webhook headers/);

    const wrongSecret = svixSigned(body, newSecret());
    expect(await replicateAccepts(wrongSecret, secret)).toBe(false);
    expect((await post(r.url, body, wrongSecret.headers)).status).toBe(401);

    const tampered = body.replace("a red fox", "a red cat");
    expect(await replicateAccepts({ ...good, body: tampered }, secret)).toBe(false);
    const bad = await post(r.url, tampered, good.headers);
    expect(bad.status).toBe(401);
    expect(bad.json.error).toMatch(/^bad signature/);

    const stale = svixSigned(body, secret, { date: new Date(Date.now() - 6 * 60_000) });
    const staleReply = await post(r.url, body, stale.headers);
    expect(staleReply.status).toBe(401);
    expect(staleReply.json.error).toMatch(/stale timestamp/);

    expect(await r.rows()).toEqual([]);
    expect(r.lines.filter((l) => l.startsWith("401 "))).toHaveLength(4);
  });

  it("accepts a delivery with several v1 signatures during a key rotation", async () => {
    const r = await receiver(kind);
    const body = JSON.stringify(samplePrediction());
    const date = new Date();
    const old = svixSigned(body, newSecret(), { id: "msg_rotate", date });
    const current = svixSigned(body, secret, { id: "msg_rotate", date });
    const headers = {
      ...current.headers,
      "webhook-signature": `${old.headers["webhook-signature"]} ${current.headers["webhook-signature"]}`,
    };
    expect((await post(r.url, body, headers)).status).toBe(200);
  });

  it.each([
    ["malformed JSON", "{not json", /malformed JSON/],
    ["JSON that is not a prediction", JSON.stringify({ hello: "world" }), /not a Replicate prediction/],
    [
      "a prediction with an unknown status",
      JSON.stringify(samplePrediction({ status: "exploded" })),
      /not a Replicate prediction: status/,
    ],
  ])("answers 400 to %s, signed correctly", async (_name, body, reason) => {
    const r = await receiver(kind);
    const reply = await post(r.url, body, svixSigned(body, secret).headers);
    expect(reply.status).toBe(400);
    expect(reply.json.error).toMatch(reason);
    expect(await r.rows()).toEqual([]);
  });

  it("answers 400 to a body PostgreSQL cannot store as jsonb (\\u0000), without failing the deliveries batched with it", async () => {
    const r = await receiver(kind);
    const nul = JSON.stringify(samplePrediction({ logs: "a\u0000b" }));
    expect(nul).toContain("\\u0000");
    const others = [1, 2, 3].map(() => svixSigned(JSON.stringify(samplePrediction()), secret));
    const replies = await Promise.all([
      post(r.url, nul, svixSigned(nul, secret).headers),
      ...others.map((d) => post(r.url, d.body, d.headers)),
    ]);
    expect(replies.map((x) => x.status)).toEqual([400, 200, 200, 200]);
    expect(replies[0].json.error).toMatch(/cannot be stored as JSON/);
    expect((await r.rows()).map((row) => row.id).sort()).toEqual(others.map((d) => d.id).sort());
  });

  it("stores one delivery for a repeated webhook-id and processes it once", async () => {
    const r = await receiver(kind);
    const delivery = svixSigned(JSON.stringify(samplePrediction()), secret);
    const replies = await Promise.all([1, 2, 3].map(() => post(r.url, delivery.body, delivery.headers)));
    expect(replies.map((x) => x.status)).toEqual([200, 200, 200]);
    expect(replies.filter((x) => x.json.duplicate === false)).toHaveLength(1);
    await waitFor(() => r.processed.length === 1, undefined, "the worker");
    const again = await post(r.url, delivery.body, delivery.headers);
    expect(again.json.duplicate).toBe(true);
    await r.worker.drained();
    expect(r.processed).toHaveLength(1);
    expect(await r.rows()).toHaveLength(1);
  });

  it("answers healthz with the queue's counts, and 404/405 elsewhere", async () => {
    let release = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    const r = await receiver(kind, { process: () => held.then(() => "released") });
    closers.push(async () => release());
    const delivery = svixSigned(JSON.stringify(samplePrediction()), secret);
    await post(r.url, delivery.body, delivery.headers);
    const health = await waitFor(
      async () => {
        const reply = await request("GET", `${r.base}/healthz`);
        return reply.json.processing === 1 && reply;
      },
      undefined,
      "the delivery to be claimed",
    );
    expect(health.status).toBe(200);
    expect(health.json).toEqual({
      ok: true,
      pending: 0,
      processing: 1,
      failed: 0,
      oldestPendingSeconds: expect.any(Number),
    });
    expect(health.json.oldestPendingSeconds).toBeGreaterThanOrEqual(0);
    expect((await request("GET", `${r.base}/nope`)).status).toBe(404);
    const wrong = await request("GET", r.url);
    expect(wrong.status).toBe(405);
    expect(wrong.headers.allow).toBe("POST");
    expect((await request("POST", `${r.base}/healthz`, "")).status).toBe(405);
  });

  it("serves /metrics in Prometheus text: answers by status code, the queue's depth and oldest age; a token when set", async () => {
    const token = "metrics-token-0123456789";
    let release = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    const r = await receiver(kind, { process: () => held.then(() => "released"), metricsToken: token });
    closers.push(async () => release());
    const good = svixSigned(JSON.stringify(samplePrediction()), secret);
    expect((await post(r.url, good.body, good.headers)).status).toBe(200);
    expect((await post(r.url, good.body, good.headers)).status).toBe(200);
    expect((await post(r.url, good.body, { ...good.headers, "webhook-signature": "v1,AAAA" })).status).toBe(401);
    expect((await post(r.url, "not json", svixSigned("not json", secret).headers)).status).toBe(400);

    expect((await request("GET", `${r.base}/metrics`)).status).toBe(401);
    expect(
      (await request("GET", `${r.base}/metrics`, undefined, { authorization: "Bearer wrong-token-0123456789" })).status,
    ).toBe(401);
    const reply = await request("GET", `${r.base}/metrics`, undefined, { authorization: `Bearer ${token}` });
    expect(reply.status).toBe(200);
    expect(reply.headers["content-type"]).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = reply.body;
    expect(sample(text, "genstore_webhook_deliveries_received_total")).toBe(4);
    expect(sample(text, 'genstore_webhook_deliveries_acked_total{duplicate="false"}')).toBe(1);
    expect(sample(text, 'genstore_webhook_deliveries_acked_total{duplicate="true"}')).toBe(1);
    expect(sample(text, 'genstore_webhook_deliveries_rejected_total{code="401"}')).toBe(1);
    expect(sample(text, 'genstore_webhook_deliveries_rejected_total{code="400"}')).toBe(1);
    expect(sample(text, "genstore_webhook_database_up")).toBe(1);
    const queued =
      sample(text, 'genstore_webhook_queue_depth{state="pending"}')! +
      sample(text, 'genstore_webhook_queue_depth{state="processing"}')!;
    expect(queued).toBe(1);
    expect(sample(text, "genstore_webhook_oldest_pending_age_seconds")).toBeGreaterThanOrEqual(0);
    expect(text).toContain("# TYPE genstore_webhook_ingest_duration_seconds histogram");
  });

  it("answers 503 with Retry-After, not a crash, when the database fails, and healthz says so", async () => {
    const r = await receiver(kind);
    const down = async () => {
      throw new Error("connect ECONNREFUSED 127.0.0.1:5432");
    };
    r.queue.enqueue = down;
    r.queue.counts = down;
    r.queue.health = down;
    const delivery = svixSigned(JSON.stringify(samplePrediction()), secret);
    const reply = await post(r.url, delivery.body, delivery.headers);
    expect(reply.status).toBe(503);
    expect(reply.headers["retry-after"]).toBe("5");
    const health = await request("GET", `${r.base}/healthz`);
    expect(health.status).toBe(503);
    expect(health.json.error).toMatch(/ECONNREFUSED/);
    expect(r.lines.some((line) => line.startsWith(`503 ${delivery.id}`))).toBe(true);
  });
});

describe("body size (embedded database)", () => {
  it("accepts a 9 MiB delivery", async () => {
    const r = await receiver("embedded");
    const body = JSON.stringify(samplePrediction({ logs: "x".repeat(9 * MiB) }));
    const reply = await post(r.url, body, svixSigned(body, secret).headers);
    expect(reply.status).toBe(200);
    expect(await r.rows()).toHaveLength(1);
  });

  it("answers 413 to a body over 10 MiB, declared or streamed, and closes the connection", async () => {
    const r = await receiver("embedded");
    const body = JSON.stringify(samplePrediction({ logs: "x".repeat(10 * MiB + 1) }));
    const declared = await post(r.url, body, svixSigned(body, secret).headers);
    expect(declared.status).toBe(413);
    expect(declared.json.error).toBe("body over 10 MiB");
    expect(declared.headers.connection).toBe("close");

    // Chunked, no Content-Length: the limit is counted as the bytes arrive.
    const streamed = await new Promise<number>((resolve, reject) => {
      const req = http.request(r.url, { method: "POST", headers: svixSigned(body, secret).headers }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on("error", reject);
      let sent = 0;
      const chunk = Buffer.alloc(MiB, "x");
      const write = () => {
        while (sent < 12) {
          sent += 1;
          if (!req.write(chunk)) return void req.once("drain", write);
        }
        req.end();
      };
      write();
    });
    expect(streamed).toBe(413);
    expect(await r.rows()).toEqual([]);
  });
});

describe("--insecure-no-verify", () => {
  it("accepts an unsigned delivery and deduplicates it by its content", async () => {
    const r = await receiver("embedded", { insecureNoVerify: true });
    const body = JSON.stringify(samplePrediction());
    expect((await post(r.url, body)).json.duplicate).toBe(false);
    expect((await post(r.url, body)).json.duplicate).toBe(true);
    expect((await r.rows())[0]!.id).toMatch(/^unsigned_[0-9a-f]{32}$/);
  });
});

describe("closing", () => {
  it("lets an in-flight request finish, then refuses new connections", async () => {
    const r = await receiver("embedded");
    const delivery = svixSigned(JSON.stringify(samplePrediction()), secret);
    // Headers and a part of the body now, the rest after close() began.
    let sendRest = () => {};
    const pending = new Promise<number>((resolve, reject) => {
      const req = http.request(
        r.url,
        {
          method: "POST",
          headers: { ...delivery.headers, "content-length": String(Buffer.byteLength(delivery.body)) },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode!);
        },
      );
      req.on("error", reject);
      req.write(delivery.body.slice(0, 10));
      sendRest = () => req.end(delivery.body.slice(10));
    });
    // The server holds the request (its declared length is reserved once the headers are read).
    await waitFor(() => r.server.bufferedBytes() > 0);
    const close = closers.pop()!;
    const closing = close();
    await new Promise((resolve) => setTimeout(resolve, 100));
    sendRest();
    expect(await pending).toBe(200);
    await closing;
    const port = Number(new URL(r.base).port);
    await expect(
      new Promise((resolve, reject) => net.connect(port, "127.0.0.1").on("connect", resolve).on("error", reject)),
    ).rejects.toThrow(/ECONNREFUSED/);
  });
});

describe("the receiver's metrics", () => {
  it("count ingest outcomes, download bytes and a cumulative duration histogram per path", () => {
    const metrics = createReceiverMetrics();
    metrics.ingested("created", 250);
    metrics.ingested("superseded", 6);
    metrics.ingested("ingested");
    metrics.ingested("retry");
    metrics.downloaded(1_000);
    metrics.downloaded(24);
    metrics.observeIngest("batch", 0.02);
    metrics.observeIngest("batch", 0.2);
    metrics.observeIngest("single", 3);
    const text = metrics.render(undefined);
    expect(sample(text, 'genstore_webhook_ingest_total{outcome="created"}')).toBe(250);
    expect(sample(text, 'genstore_webhook_ingest_total{outcome="superseded"}')).toBe(6);
    expect(sample(text, 'genstore_webhook_ingest_total{outcome="ingested"}')).toBe(1);
    expect(sample(text, 'genstore_webhook_ingest_total{outcome="retry"}')).toBe(1);
    expect(sample(text, "genstore_webhook_download_bytes_total")).toBe(1_024);
    expect(sample(text, 'genstore_webhook_ingest_duration_seconds_bucket{path="batch",le="0.025"}')).toBe(1);
    expect(sample(text, 'genstore_webhook_ingest_duration_seconds_bucket{path="batch",le="0.25"}')).toBe(2);
    expect(sample(text, 'genstore_webhook_ingest_duration_seconds_bucket{path="batch",le="+Inf"}')).toBe(2);
    expect(sample(text, 'genstore_webhook_ingest_duration_seconds_count{path="single"}')).toBe(1);
    expect(sample(text, 'genstore_webhook_ingest_duration_seconds_sum{path="single"}')).toBe(3);
    // The database did not answer the scrape: said so, and no queue gauges made up.
    expect(sample(text, "genstore_webhook_database_up")).toBe(0);
    expect(text).not.toContain("genstore_webhook_queue_depth");
  });
});

describe("healthz and a worker that makes no progress (serve-webhook's server)", () => {
  it("answers 503 with the reason while deliveries are in progress and none finishes, and 200 once one does", async () => {
    const { db } = await createTestDatabase("embedded");
    let release = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    const controller = new AbortController();
    let base = "";
    const running = runServeWebhook(
      { port: 0, host: "127.0.0.1", concurrency: 2, secret, pollIntervalMs: 50, stallMs: 500 },
      {
        db,
        storage: await testStorage("local"),
        config: { outputHosts: [], maxOutputBytes: 1 },
        ingest: () => Promise.reject(new Error("not used")),
        // A storage call that never answers, as S3 without deadlines did.
        process: () => held.then(() => "released"),
        signal: controller.signal,
        log: () => {},
        onListening: (where) => (base = where.url),
      },
    );
    try {
      await waitFor(() => base !== "", undefined, "the receiver to listen");
      const idle = await request("GET", `${base}/healthz`);
      expect(idle.status).toBe(200);
      expect(idle.json).toMatchObject({ ok: true, worker: { ok: true, inProgress: 0 } });

      const delivery = svixSigned(JSON.stringify(samplePrediction()), secret);
      expect((await post(`${base}/api/webhooks/replicate`, delivery.body, delivery.headers)).status).toBe(200);
      const stuck = await waitFor(
        async () => {
          const reply = await request("GET", `${base}/healthz`);
          return reply.status === 503 && reply;
        },
        undefined,
        "healthz to report the stuck worker",
      );
      expect(stuck.json).toMatchObject({
        ok: false,
        processing: 1,
        worker: {
          ok: false,
          inProgress: 1,
          reason: expect.stringMatching(/^1 delivery in progress, none finished for \d+ s$/),
        },
      });

      release();
      const healed = await waitFor(
        async () => {
          const reply = await request("GET", `${base}/healthz`);
          return reply.status === 200 && reply;
        },
        undefined,
        "healthz to be ok again",
      );
      expect(healed.json).toMatchObject({ ok: true, worker: { ok: true, inProgress: 0 } });
    } finally {
      release();
      controller.abort();
      await running;
    }
  });
});
