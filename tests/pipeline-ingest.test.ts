import { buffer } from "node:stream/consumers";
import sharp from "sharp";
import { describe, expect, it, onTestFinished } from "vitest";
import { ExitCode } from "../src/errors.ts";
import { ingestPrediction } from "../src/pipeline/ingest.ts";
import { IngestRefusedError, OutputRefusedError } from "../src/pipeline/errors.ts";
import type { IngestRequest, PipelineDeps } from "../src/pipeline/types.ts";
import type { Storage } from "../src/storage/types.ts";
import { createTestDatabase, databaseKinds } from "./support/db.ts";
import { startOutputServer, type OutputServer } from "./support/output-server.ts";
import { makePrediction, pipelineDeps, storageKinds, testStorage } from "./support/pipeline-fixtures.ts";

async function setup(kind: (typeof databaseKinds)[number], storageKind: "local" | "aws" = "local") {
  const [{ db }, storage, server] = await Promise.all([createTestDatabase(kind), testStorage(storageKind), startOutputServer()]);
  onTestFinished(() => server.close());
  const deps = pipelineDeps(db, storage, [server.hostEntry]);
  return { db, storage, server, deps };
}

async function keysIn(storage: Storage): Promise<string[]> {
  const keys: string[] = [];
  for await (const info of storage.list("")) keys.push(info.key);
  return keys;
}

function ingest(deps: PipelineDeps, request: Partial<IngestRequest> & Pick<IngestRequest, "prediction">) {
  return ingestPrediction(deps, { via: "webhook", ...request });
}

describe.each(databaseKinds)("ingestPrediction on %s", (kind) => {
  describe.each(storageKinds)("with %s storage", (storageKind) => {
    it("stores every output and its thumbnail under the context folder, and creates the row", async () => {
      const { db, storage, server, deps } = await setup(kind, storageKind);
      const prediction = makePrediction({
        input: { prompt: "[EDITED] a red fox" },
        output: [server.url("/png/out-0.png"), server.url("/jpeg/out-1.jpg")],
      });
      const result = await ingest(deps, { prediction, query: { userId: "alice" } });

      const id = result.generationId;
      expect(result).toMatchObject({ predictionId: prediction.id, userId: "alice", status: "succeeded", outcome: "created", expired: [], dryRun: false });
      const keys = [`edited/alice/${id}_0.png`, `edited/alice/${id}_1.jpg`, `thumbnails/edited/alice/${id}_0.webp`, `thumbnails/edited/alice/${id}_1.webp`];
      expect(result.stored.map((s) => s.key).sort()).toEqual([...keys].sort());
      expect((await keysIn(storage)).sort()).toEqual([...keys].sort());
      expect(await buffer(await storage.get(keys[0]!))).toEqual(server.bytes.png);
      const thumb = await sharp(await buffer(await storage.get(keys[3]!))).metadata();
      expect({ format: thumb.format, width: thumb.width }).toEqual({ format: "webp", width: 512 });

      const row = await db.prisma.generation.findUniqueOrThrow({ where: { replicateId: prediction.id } });
      expect(row).toMatchObject({
        id,
        userId: "alice",
        prompt: "[EDITED] a red fox",
        status: "succeeded",
        operationType: "edit",
        storageContext: "edited",
        storageProvider: storage.provider,
        storageBucket: storage.bucket,
        imageUrls: prediction.output,
        error: null,
        completedAt: new Date("2026-11-20T10:00:04.000Z"),
      });
      expect(row.storageKeys).toHaveLength(4);
      expect(row.storageKeys).toContainEqual({ key: keys[0], size: server.bytes.png.length, contentType: "image/png", etag: expect.any(String), kind: "output" });
      expect(row.storageKeys).toContainEqual(expect.objectContaining({ key: keys[3], contentType: "image/webp", kind: "thumbnail" }));
      expect(row.metadata).toMatchObject({
        detectedBy: "prompt-prefix",
        model: prediction.model,
        version: prediction.version,
        metrics: { predict_time: 2.7, total_time: 4 },
        replicate: { status: "succeeded", createdAt: "2026-11-20T10:00:00.000Z", startedAt: "2026-11-20T10:00:01.000Z", completedAt: "2026-11-20T10:00:04.000Z" },
        arrivedVia: "webhook",
        userIdSource: "webhook-query",
      });
    });
  });

  it("stores a video as videos/<userId>/<id>.mp4 without a thumbnail", async () => {
    const { storage, server, deps } = await setup(kind);
    const prediction = makePrediction({ input: { prompt: "[VIDEO] a fox running", user_id: "bob" }, output: server.url("/mp4/out.mp4") });
    const result = await ingest(deps, { prediction, via: "recover" });
    expect(result.stored.map((s) => s.key)).toEqual([`videos/bob/${result.generationId}.mp4`]);
    expect(await keysIn(storage)).toEqual([`videos/bob/${result.generationId}.mp4`]);
  });

  it("refuses an orphan without a userId, touching nothing", async () => {
    const { db, storage, server, deps } = await setup(kind);
    const prediction = makePrediction({ output: [server.url("/png/out-0.png")] });
    const error = await ingest(deps, { prediction }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IngestRefusedError);
    expect((error as IngestRefusedError).exitCode).toBe(ExitCode.refused);
    expect((error as Error).message).toMatch(/has no row and no usable userId/);
    expect(await db.prisma.generation.count()).toBe(0);
    expect(await keysIn(storage)).toEqual([]);
    expect(server.requests).toEqual([]);
  });
});

void OutputRefusedError;
