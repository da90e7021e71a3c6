import { buffer } from "node:stream/consumers";
import sharp from "sharp";
import { afterAll, describe, expect, it, onTestFinished } from "vitest";
import { ExitCode, StorageError } from "../src/errors.ts";
import { ingestPrediction } from "../src/pipeline/ingest.ts";
import { openDatabase } from "../src/db/client.ts";
import {
  IngestRefusedError,
  OutputConflictError,
  OutputRefusedError,
  OutputTooLargeError,
  OutputUnavailableError,
  type OutputError,
} from "../src/pipeline/errors.ts";
import type { IngestRequest, PipelineDeps } from "../src/pipeline/types.ts";
import type { Storage } from "../src/storage/types.ts";
import { databaseKinds } from "./support/db.ts";
import { startOutputServer, type OutputServer } from "./support/output-server.ts";
import {
  dropSharedDatabases,
  makePrediction,
  pipelineDeps,
  sharedTestDatabase,
  storageKinds,
  testStorage,
} from "./support/pipeline-fixtures.ts";
import { countGenerations, generation, generations, insertGeneration } from "./support/generations.ts";

afterAll(dropSharedDatabases);

async function setup(kind: (typeof databaseKinds)[number], storageKind: "local" | "aws" = "local") {
  const [{ db }, storage, server] = await Promise.all([
    sharedTestDatabase(kind),
    testStorage(storageKind),
    startOutputServer(),
  ]);
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
      expect(result).toMatchObject({
        predictionId: prediction.id,
        userId: "alice",
        status: "succeeded",
        outcome: "created",
        expired: [],
        dryRun: false,
      });
      const keys = [
        `edited/alice/${id}_0.png`,
        `edited/alice/${id}_1.jpg`,
        `thumbnails/edited/alice/${id}_0.webp`,
        `thumbnails/edited/alice/${id}_1.webp`,
      ];
      expect(result.stored.map((s) => s.key).sort()).toEqual([...keys].sort());
      expect((await keysIn(storage)).sort()).toEqual([...keys].sort());
      expect(await buffer(await storage.get(keys[0]!))).toEqual(server.bytes.png);
      const thumb = await sharp(await buffer(await storage.get(keys[3]!))).metadata();
      expect({ format: thumb.format, width: thumb.width }).toEqual({ format: "webp", width: 512 });

      const row = await generation(db, { replicateId: prediction.id });
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
      expect(row.storageKeys).toContainEqual({
        key: keys[0],
        size: server.bytes.png.length,
        contentType: "image/png",
        etag: expect.any(String),
        kind: "output",
      });
      expect(row.storageKeys).toContainEqual(
        expect.objectContaining({ key: keys[3], contentType: "image/webp", kind: "thumbnail" }),
      );
      expect(row.metadata).toMatchObject({
        detectedBy: "prompt-prefix",
        model: prediction.model,
        version: prediction.version,
        metrics: { predict_time: 2.7, total_time: 4 },
        replicate: {
          status: "succeeded",
          createdAt: "2026-11-20T10:00:00.000Z",
          startedAt: "2026-11-20T10:00:01.000Z",
          completedAt: "2026-11-20T10:00:04.000Z",
        },
        arrivedVia: "webhook",
        userIdSource: "webhook-query",
      });
    });
    it("stores nothing at the key when the download breaks off, and keeps the row in processing", async () => {
      const { db, storage, server, deps } = await setup(kind, storageKind);
      const prediction = makePrediction({
        output: [server.url("/short/6000000/2000000/out.mp4")],
        input: { prompt: "[VIDEO] x" },
      });
      const error = await ingest(deps, { prediction, query: { userId: "alice" } }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(OutputUnavailableError);
      expect((error as Error).message).toMatch(
        /broke off after|connection closed after|instead of the 6000000 announced/,
      );
      expect(await keysIn(storage)).toEqual([]);
      const row = await generation(db, { replicateId: prediction.id });
      expect(row).toMatchObject({ status: "processing", storageKeys: [] });
    });
  });

  it("stores a video as videos/<userId>/<id>.mp4 without a thumbnail", async () => {
    const { storage, server, deps } = await setup(kind);
    const prediction = makePrediction({
      input: { prompt: "[VIDEO] a fox running", user_id: "bob" },
      output: server.url("/mp4/out.mp4"),
    });
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
    expect(await countGenerations(db)).toBe(0);
    expect(await keysIn(storage)).toEqual([]);
    expect(server.requests).toEqual([]);
  });

  it("marks an expired output on the row, keeps the others, and reports it", async () => {
    const { db, storage, server, deps } = await setup(kind);
    const gone = server.url("/status/410/out-1.png");
    const prediction = makePrediction({
      output: [server.url("/png/out-0.png"), gone],
      input: { prompt: "a fox", user_id: "alice" },
    });
    const result = await ingest(deps, { prediction, via: "recover" });
    expect(result.expired).toEqual([{ index: 1, url: gone }]);
    expect(result.warnings).toContain(
      `Output 1 of ${prediction.id} has expired (${gone}): the row is kept and marked.`,
    );
    expect(result.status).toBe("succeeded");
    const row = await generation(db, { replicateId: prediction.id });
    expect(row.status).toBe("succeeded");
    expect(row.error).toBe("output 1 expired before it was stored (the file is gone)");
    expect(row.metadata).toMatchObject({
      expiredOutputs: [{ index: 1, url: gone, problem: "expired", message: expect.stringContaining("answered 410") }],
      arrivedVia: "recover",
    });
    expect(row.storageKeys.map((e) => (e as { key: string }).key).sort()).toEqual([
      `generated/alice/${row.id}_0.png`,
      `thumbnails/generated/alice/${row.id}_0.webp`,
    ]);
    expect((await keysIn(storage)).length).toBe(2);

    // Asking again changes nothing (the file is still gone) and reports it again.
    const again = await ingest(deps, { prediction, via: "recover" });
    expect(again).toMatchObject({ outcome: "unchanged", expired: [{ index: 1, url: gone }] });
  });

  it("keeps a row whose only output expired, with its status and error", async () => {
    const { db, deps, server } = await setup(kind);
    const prediction = makePrediction({ output: server.url("/status/404/out.png") });
    const result = await ingest(deps, { prediction, user: "carol", via: "recover" });
    expect(result).toMatchObject({ outcome: "created", status: "succeeded", stored: [], expired: [{ index: 0 }] });
    const row = await generation(db, { replicateId: prediction.id });
    expect(row).toMatchObject({
      userId: "carol",
      status: "succeeded",
      storageKeys: [],
      error: "output 0 expired before it was stored (the file is gone)",
    });
    expect(row.metadata).toMatchObject({ userIdSource: "cli-flag" });
  });

  it("retries a flaky output host within one delivery", async () => {
    const { storage, deps, server } = await setup(kind);
    const prediction = makePrediction({ output: [server.url("/flaky/2/503/out-0.png")] });
    const result = await ingest(deps, { prediction, query: { userId: "alice" } });
    expect(result.stored.map((s) => s.kind)).toEqual(["output", "thumbnail"]);
    expect(server.count("/flaky/")).toBe(3);
    expect((await keysIn(storage)).length).toBe(2);
  });

  it("records stored outputs and stays processing when another output fails for now; a later delivery completes it", async () => {
    const { db, storage, deps, server } = await setup(kind);
    const flaky = server.url("/flaky/2/503/out-1.png");
    const prediction = makePrediction({ output: [server.url("/png/out-0.png"), flaky] });
    const quick = { ...deps, download: { ...deps.download, retry: { ...deps.download?.retry, maxAttempts: 2 } } };
    const error = await ingest(quick, { prediction, query: { userId: "alice" } }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OutputUnavailableError);
    expect((error as OutputUnavailableError).retryable).toBe(true);
    let row = await generation(db, { replicateId: prediction.id });
    expect(row.status).toBe("processing");
    expect(row.error).toMatch(/answered 503 2 times.*will be retried/);
    expect(row.storageKeys).toHaveLength(2);

    const result = await ingest(quick, { prediction, query: { userId: "alice" } });
    expect(result).toMatchObject({ outcome: "updated", status: "succeeded" });
    expect(result.stored.map((s) => s.key)).toEqual([
      `generated/alice/${row.id}_1.png`,
      `thumbnails/generated/alice/${row.id}_1.webp`,
    ]);
    expect(result.alreadyStored).toEqual([
      `generated/alice/${row.id}_0.png`,
      `thumbnails/generated/alice/${row.id}_0.webp`,
    ]);
    row = await generation(db, { replicateId: prediction.id });
    expect(row).toMatchObject({ status: "succeeded", error: null });
    expect(row.storageKeys).toHaveLength(4);
    expect((await keysIn(storage)).length).toBe(4);
  });

  it.each([
    [
      "an output host that is not allow-listed",
      () => "https://evil.example/out.png",
      OutputRefusedError,
      /not in the allowed output hosts/,
    ],
    [
      "an output over the size limit",
      (s: OutputServer) => s.url("/bytes/2000000/out.bin"),
      OutputTooLargeError,
      /over the limit of 1000000 bytes/,
    ],
  ] as const)("refuses %s: nothing stored, the row records why", async (_, url, type, message) => {
    const { db, storage, deps, server } = await setup(kind);
    const prediction = makePrediction({ output: [url(server)] });
    const error = await ingest(
      { ...deps, config: { ...deps.config, maxOutputBytes: 1_000_000 } },
      { prediction, query: { userId: "alice" } },
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(type);
    expect((error as OutputError).retryable).toBe(false);
    expect(await keysIn(storage)).toEqual([]);
    const row = await generation(db, { replicateId: prediction.id });
    expect(row.status).toBe("succeeded");
    expect(row.error).toMatch(message);
    expect(row.metadata).toMatchObject({ failedOutputs: [{ index: 0, problem: expect.any(String) }] });
  });

  it.each([
    ["a query userId with ../", { query: { userId: "../x" } }, /refused: webhook-query userId contains a slash/],
    ["a query userId of ..", { query: { userId: ".." } }, /refused: webhook-query userId contains "\.\."/],
    ["a query userId with a slash", { query: { userId: "a/b" } }, /contains a slash/],
    ["an input user_id with ..", { input: { prompt: "x", user_id: ".." } }, /contains "\.\."/],
    ["a --user with a slash", { user: "x/../../etc" }, /contains a slash/],
  ] as const)("refuses to place an orphan under %s (path traversal)", async (_, input, message) => {
    const { db, storage, deps, server } = await setup(kind);
    const { input: predictionInput, ...request } = input as {
      input?: Record<string, unknown>;
      query?: Record<string, string>;
      user?: string;
    };
    const prediction = makePrediction({
      output: [server.url("/png/out-0.png")],
      ...(predictionInput ? { input: predictionInput } : {}),
    });
    const error = await ingest(deps, { prediction, ...request }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IngestRefusedError);
    expect((error as Error).message).toMatch(message);
    expect(await countGenerations(db)).toBe(0);
    expect(await keysIn(storage)).toEqual([]);
  });

  it("ignores a query generationId with a slash and gives the row an id of its own", async () => {
    const { deps, server } = await setup(kind);
    const prediction = makePrediction({ output: [server.url("/png/out-0.png")] });
    const result = await ingest(deps, { prediction, query: { userId: "alice", generationId: "../../etc/passwd" } });
    expect(result.generationId).toMatch(/^c[a-z0-9]+$/);
    expect(result.warnings).toContain(
      'Ignored the webhook query\'s generationId "../../etc/passwd": it contains a slash.',
    );
    expect(result.stored[0]!.key).toBe(`generated/alice/${result.generationId}_0.png`);
  });

  it("uses the query's generationId for a new row, and adopts an app row that has no prediction yet", async () => {
    const { db, deps, server } = await setup(kind);
    const first = await ingest(deps, {
      prediction: makePrediction({ output: [server.url("/png/a.png")] }),
      query: { userId: "alice", generationId: "gen_app_1" },
    });
    expect(first.generationId).toBe("gen_app_1");

    await insertGeneration(db, { id: "gen_app_2", userId: "bob", prompt: "[UPSCALED] a fox", status: "starting" });
    const prediction = makePrediction({ output: [server.url("/png/b.png")], input: { prompt: "[UPSCALED] a fox" } });
    const adopted = await ingest(deps, { prediction, query: { userId: "mallory", generationId: "gen_app_2" } });
    expect(adopted).toMatchObject({ generationId: "gen_app_2", userId: "bob", outcome: "updated" });
    expect(adopted.stored[0]!.key).toBe("upscaled/bob/gen_app_2_0.png");
    expect(await countGenerations(db)).toBe(2);
    const row = await generation(db, { id: "gen_app_2" });
    expect(row.replicateId).toBe(prediction.id);
    expect(row.metadata).toMatchObject({ userIdSource: "existing-row", generationIdSource: "webhook-query" });
  });

  it("does not reuse a query generationId that belongs to another prediction's row", async () => {
    const { db, deps, server } = await setup(kind);
    await insertGeneration(db, {
      id: "gen_taken",
      userId: "bob",
      prompt: "x",
      status: "succeeded",
      replicateId: "p_other",
    });
    const prediction = makePrediction({ output: [server.url("/png/a.png")] });
    const result = await ingest(deps, { prediction, query: { userId: "alice", generationId: "gen_taken" } });
    expect(result.generationId).not.toBe("gen_taken");
    expect(result.userId).toBe("alice");
    expect(result.warnings).toContain(
      "Ignored the webhook query's generationId gen_taken: that row belongs to another prediction.",
    );
    expect(await generation(db, { id: "gen_taken" })).toMatchObject({
      userId: "bob",
      replicateId: "p_other",
    });
  });

  it("never moves a row that has its prediction: the query's userId and generationId are ignored", async () => {
    const { db, deps, server } = await setup(kind);
    const prediction = makePrediction({ output: [server.url("/png/a.png")], input: { prompt: "[EDITED] a fox" } });
    await insertGeneration(db, {
      id: "gen_row",
      userId: "alice",
      prompt: "a fox",
      status: "processing",
      replicateId: prediction.id,
      operationType: "video",
    });
    await insertGeneration(db, { id: "gen_other", userId: "mallory", prompt: "x", status: "starting" });
    const result = await ingest(deps, { prediction, query: { userId: "mallory", generationId: "gen_other" } });
    expect(result).toMatchObject({ generationId: "gen_row", userId: "alice" });
    // The row's operationType column wins over the prompt.
    expect(result.stored[0]!.key).toBe("videos/alice/gen_row.png");
    expect(result.warnings).toContain("Ignored webhook-query userId: the row already belongs to alice.");
    expect((await generation(db, { id: "gen_other" })).replicateId).toBeNull();
  });

  it("stores nothing for a failed prediction and records its error", async () => {
    const { db, storage, deps, server } = await setup(kind);
    const prediction = makePrediction({
      status: "failed",
      error: "CUDA out of memory",
      output: [server.url("/png/a.png")],
    });
    const result = await ingest(deps, { prediction, query: { userId: "alice" } });
    expect(result).toMatchObject({ status: "failed", outcome: "created", stored: [] });
    expect(server.requests).toEqual([]);
    expect(await keysIn(storage)).toEqual([]);
    const row = await generation(db, { replicateId: prediction.id });
    expect(row).toMatchObject({
      status: "failed",
      error: "CUDA out of memory",
      storageKeys: [],
      completedAt: new Date("2026-11-20T10:00:04.000Z"),
    });
  });

  it.each(["canceled", "aborted"] as const)("records a %s prediction without storing", async (status) => {
    const { db, deps } = await setup(kind);
    const prediction = makePrediction({ status, output: null, completed_at: null });
    const result = await ingest(deps, { prediction, query: { userId: "alice" } });
    expect(result.status).toBe(status);
    const row = await generation(db, { replicateId: prediction.id });
    expect(row).toMatchObject({ status, error: `prediction ${status}` });
    expect(row.completedAt).toBeInstanceOf(Date);
  });

  it("gives one row and one object per output for a duplicate delivery", async () => {
    const { db, storage, deps, server } = await setup(kind);
    const prediction = makePrediction({ output: [server.url("/png/a.png"), server.url("/mp4/b.mp4")] });
    const first = await ingest(deps, { prediction, query: { userId: "alice" } });
    const rowBefore = await generation(db, { replicateId: prediction.id });
    const second = await ingest(deps, { prediction, query: { userId: "alice" } });
    expect(second).toMatchObject({ generationId: first.generationId, outcome: "unchanged", stored: [] });
    expect(second.alreadyStored.sort()).toEqual([
      `generated/alice/${first.generationId}_0.png`,
      `generated/alice/${first.generationId}_1.mp4`,
      `thumbnails/generated/alice/${first.generationId}_0.webp`,
    ]);
    expect(await generations(db)).toEqual([rowBefore]);
    expect((await keysIn(storage)).length).toBe(3);
    expect(server.requests).toHaveLength(2);
  });

  it("keeps succeeded when a late processing (or starting) delivery arrives", async () => {
    const { db, deps, server } = await setup(kind);
    const prediction = makePrediction({ output: [server.url("/png/a.png")] });
    await ingest(deps, { prediction, query: { userId: "alice" } });
    const before = await generation(db, { replicateId: prediction.id });
    for (const status of ["processing", "starting"] as const) {
      const late = await ingest(deps, {
        prediction: { ...prediction, status, output: null, completed_at: null, metrics: null },
        query: { userId: "alice" },
      });
      expect(late).toMatchObject({ outcome: "unchanged", status: "succeeded" });
    }
    const failedLate = await ingest(deps, {
      prediction: { ...prediction, status: "failed", error: "late" },
      query: { userId: "alice" },
    });
    expect(failedLate).toMatchObject({ outcome: "unchanged", status: "succeeded" });
    expect(await generation(db, { replicateId: prediction.id })).toEqual(before);
  });

  it("moves starting → processing → succeeded in order, and ignores starting after processing", async () => {
    const { db, deps, server } = await setup(kind);
    const done = makePrediction({ output: [server.url("/png/a.png")] });
    const at = (status: "starting" | "processing") => ({ ...done, status, output: null, completed_at: null });
    expect(await ingest(deps, { prediction: at("processing"), query: { userId: "alice" } })).toMatchObject({
      outcome: "created",
      status: "processing",
    });
    expect(await ingest(deps, { prediction: at("starting"), query: { userId: "alice" } })).toMatchObject({
      outcome: "unchanged",
      status: "processing",
    });
    const result = await ingest(deps, { prediction: done, query: { userId: "alice" } });
    expect(result).toMatchObject({ outcome: "updated", status: "succeeded" });
    expect(await countGenerations(db)).toBe(1);
  });

  it("gives one row and one object per output for concurrent deliveries", async () => {
    const { db, storage, deps, server } = await setup(kind, "local");
    const prediction = makePrediction({ output: [server.url("/png/a.png"), server.url("/jpeg/b.jpg")] });
    const results = await Promise.all(
      Array.from({ length: 4 }, () => ingest(deps, { prediction, query: { userId: "alice" } })),
    );
    const ids = new Set(results.map((r) => r.generationId));
    expect(ids.size).toBe(1);
    expect(results.map((r) => r.status)).toEqual(["succeeded", "succeeded", "succeeded", "succeeded"]);
    expect(results.filter((r) => r.outcome === "created")).toHaveLength(1);
    const [id] = ids;
    expect((await keysIn(storage)).sort()).toEqual([
      `generated/alice/${id}_0.png`,
      `generated/alice/${id}_1.jpg`,
      `thumbnails/generated/alice/${id}_0.webp`,
      `thumbnails/generated/alice/${id}_1.webp`,
    ]);
    const rows = await generations(db);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.storageKeys).toHaveLength(4);
    expect(rows[0]!.status).toBe("succeeded");
    // One download per output, however many deliveries came at once.
    expect(server.count("/png/a.png")).toBe(1);
    expect(server.count("/jpeg/b.jpg")).toBe(1);
  });

  it("never overwrites a different object already at the key, and reuses an identical one", async () => {
    const { db, storage, deps, server } = await setup(kind);
    const prediction = makePrediction({ output: [server.url("/png/a.png"), server.url("/jpeg/b.jpg")] });
    await storage.put("generated/alice/gen_x_0.png", Buffer.from("someone else's file"));
    await storage.put("generated/alice/gen_x_1.jpg", server.bytes.jpeg);
    const error = await ingest(deps, { prediction, query: { userId: "alice", generationId: "gen_x" } }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(OutputConflictError);
    expect((error as Error).message).toMatch(
      /A different object \(19 bytes\) already exists at generated\/alice\/gen_x_0\.png/,
    );
    expect((await buffer(await storage.get("generated/alice/gen_x_0.png"))).toString()).toBe("someone else's file");
    const row = await generation(db, { id: "gen_x" });
    const keys = row.storageKeys.map((e) => (e as { key: string }).key).sort();
    expect(keys).toEqual(["generated/alice/gen_x_1.jpg", "thumbnails/generated/alice/gen_x_1.webp"]);
    expect(row.error).toMatch(/output 0 not stored: A different object/);
  });

  it("plans without writing on a dry run", async () => {
    const { db, storage, deps, server } = await setup(kind);
    const prediction = makePrediction({ output: [server.url("/png/a.png")] });
    const result = await ingest(deps, {
      prediction,
      query: { userId: "alice", generationId: "gen_dry" },
      dryRun: true,
    });
    expect(result).toMatchObject({
      dryRun: true,
      outcome: "created",
      generationId: "gen_dry",
      status: "succeeded",
      stored: [],
    });
    expect(result.planned).toEqual([
      { index: 0, key: "generated/alice/gen_dry_0.png", kind: "output", url: server.url("/png/a.png") },
      { index: 0, key: "thumbnails/generated/alice/gen_dry_0.webp", kind: "thumbnail", url: server.url("/png/a.png") },
    ]);
    expect(await countGenerations(db)).toBe(0);
    expect(await keysIn(storage)).toEqual([]);
    expect(server.requests).toEqual([]);
  });

  it("stores an image whose thumbnail cannot be made, with a warning", async () => {
    const { storage, deps, server } = await setup(kind);
    // A PNG signature, then nothing an image decoder can use.
    server.route("/broken.png", (_req, res) =>
      res.end(Buffer.concat([server.bytes.png.subarray(0, 16), Buffer.from("not really a png")])),
    );
    const prediction = makePrediction({ output: [server.url("/broken.png")] });
    const result = await ingest(deps, { prediction, query: { userId: "alice" } });
    expect(result.stored.map((s) => s.kind)).toEqual(["output"]);
    expect(
      result.warnings.some((w) => w.startsWith(`No thumbnail for generated/alice/${result.generationId}_0.png:`)),
    ).toBe(true);
    expect(await keysIn(storage)).toEqual([`generated/alice/${result.generationId}_0.png`]);
  });

  it("keeps the row short of succeeded when storage fails while making the thumbnail, and a retry makes it", async () => {
    const { db, storage, server } = await setup(kind);
    let down = true;
    // Storage that refuses writes under thumbnails/ while `down` (a full or unreachable bucket).
    const put: Storage["put"] = (key, body, options) => {
      if (down && key.startsWith("thumbnails/")) {
        (body as { destroy?: () => void }).destroy?.();
        return Promise.reject(new StorageError(`Cannot write ${key}: no space left on the device (ENOSPC).`));
      }
      return storage.put(key, body, options);
    };
    const flaky = new Proxy(storage, {
      get: (target, name, receiver) => (name === "put" ? put : Reflect.get(target, name, receiver)),
    });
    const deps = pipelineDeps(db, flaky, [server.hostEntry]);
    const prediction = makePrediction({ output: [server.url("/png/a.png")] });
    const failed = await ingest(deps, { prediction, query: { userId: "alice" } }).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(StorageError);
    let row = await generation(db, { replicateId: prediction.id });
    expect(row.status).toBe("processing");
    expect(row.storageKeys).toEqual([expect.objectContaining({ kind: "output" })]);
    expect(row.error).toMatch(/no space left/);

    down = false;
    const retried = await ingest(deps, { prediction, query: { userId: "alice" } });
    expect(retried.stored.map((s) => s.kind)).toEqual(["thumbnail"]);
    row = await generation(db, { replicateId: prediction.id });
    expect(row).toMatchObject({ status: "succeeded", error: null });
    expect(row.storageKeys.map((e) => (e as { kind: string }).kind).sort()).toEqual(["output", "thumbnail"]);
  });
});

describe.runIf(databaseKinds.includes("postgres"))(
  "ingestPrediction from two processes' connections (PostgreSQL)",
  () => {
    it("gives one row and one object per output when two database connections deliver at once", async () => {
      // The file's shared database: a fresh migrated one would wait ~10 s here for the migration
      // lock that the shared one's pool still holds (see the report on src/db/migrations.ts).
      const { db, config } = await sharedTestDatabase("postgres");
      const other = await openDatabase(config);
      onTestFinished(() => other.close());
      const [storage, server] = await Promise.all([testStorage("aws"), startOutputServer()]);
      onTestFinished(() => server.close());
      const prediction = makePrediction({ output: [server.url("/png/a.png"), server.url("/mp4/b.mp4")] });
      const results = await Promise.all(
        [db, other, db, other].map((database) =>
          ingest(pipelineDeps(database, storage, [server.hostEntry]), { prediction, query: { userId: "alice" } }),
        ),
      );
      expect(new Set(results.map((r) => r.generationId)).size).toBe(1);
      expect(await countGenerations(db)).toBe(1);
      const row = await generation(db, {});
      expect(row.status).toBe("succeeded");
      expect(row.storageKeys).toHaveLength(3);
      expect((await keysIn(storage)).length).toBe(3);
    });
  },
);
