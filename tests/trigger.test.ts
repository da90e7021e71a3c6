import { webcrypto } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { validateWebhook } from "replicate";
import { describe, expect, it, onTestFinished } from "vitest";
import { parsePrediction } from "../src/core/prediction.ts";
import { buildSamplePrediction, sendTrigger } from "../src/webhook/trigger.ts";
import { createTestDatabase } from "./support/db.ts";
import { startOutputServer } from "./support/output-server.ts";
import { testStorage } from "./support/pipeline-fixtures.ts";
import { newSecret } from "./support/webhook-deliveries.ts";
import { startReceiver, storedKeys } from "./support/webhook-receiver.ts";
import { generation } from "./support/generations.ts";

const secret = newSecret();

/** A bare receiver that checks signatures with replicate's own validateWebhook, nothing of genstore's. */
async function replicateCheckingServer(checkSecret: string) {
  const received: { headers: http.IncomingHttpHeaders; body: string; url: string }[] = [];
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString("utf8");
    received.push({ headers: req.headers, body, url: req.url ?? "" });
    const valid = await validateWebhook(
      {
        id: String(req.headers["webhook-id"]),
        timestamp: String(req.headers["webhook-timestamp"]),
        signature: String(req.headers["webhook-signature"]),
        body,
        secret: checkSecret,
      },
      webcrypto as unknown as Crypto,
    );
    res.writeHead(valid ? 200 : 401, { "content-type": "application/json" }).end(JSON.stringify({ valid }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, received };
}

describe("genstore trigger", () => {
  it.each(["starting", "processing", "succeeded", "failed", "canceled", "aborted"] as const)(
    "builds a %s sample that parses as a prediction",
    (status) => {
      const sample = buildSamplePrediction({ status, prompt: "[VIDEO] a fox" });
      const parsed = parsePrediction(sample);
      expect(parsed.ok).toBe(true);
      expect(sample.id).toMatch(/^[a-z2-7]{26}$/);
      if (status === "succeeded") expect(sample.output).toMatch(/^https:\/\/replicate\.delivery\/.+\.mp4$/);
      else expect(sample.output).toBeNull();
      expect(sample.completed_at === null).toBe(status === "starting" || status === "processing");
    },
  );

  it("signs so that replicate's validateWebhook accepts, and adds the user to the query string", async () => {
    const bare = await replicateCheckingServer(secret);
    const result = await sendTrigger({
      url: bare.url,
      secret,
      user: "user_1",
      prediction: buildSamplePrediction({ status: "succeeded", prompt: "a fox" }),
    });
    expect(result.status).toBe(200);
    expect(result.body).toEqual({ valid: true });
    expect(bare.received[0]!.url).toBe("/hook?userId=user_1");
    expect(bare.received[0]!.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(bare.received[0]!.body).id).toBe(result.predictionId);
  });

  it("reports the receiver's refusal when the secrets differ", async () => {
    const bare = await replicateCheckingServer(newSecret());
    const result = await sendTrigger({
      url: bare.url,
      secret,
      prediction: buildSamplePrediction({ status: "succeeded", prompt: "a fox" }),
    });
    expect(result.status).toBe(401);
    expect(result.body).toEqual({ valid: false });
  });

  it("end to end: a [VIDEO] sample sent to the receiver ends stored in videos/<user>/ with its row", async () => {
    const outputs = await startOutputServer();
    onTestFinished(() => outputs.close());
    const { db } = await createTestDatabase("embedded");
    const storage = await testStorage("local");
    const receiver = await startReceiver(db, storage, [outputs.hostEntry], secret);
    const prediction = buildSamplePrediction({
      status: "succeeded",
      prompt: "[VIDEO] a fox running",
      outputs: [outputs.url("/mp4/out.mp4")],
    });
    const result = await sendTrigger({ url: receiver.url, secret, user: "user_9", prediction });
    expect(result.status).toBe(200);
    expect(result.body).toMatchObject({ ok: true, predictionId: prediction.id, duplicate: false });
    await receiver.settled();
    const row = await generation(db, { replicateId: prediction.id as string });
    expect(row).toMatchObject({
      userId: "user_9",
      status: "succeeded",
      operationType: "video",
      storageContext: "videos",
    });
    expect(await storedKeys(storage)).toEqual([`videos/user_9/${row.id}.mp4`]);
  });
});
