import { describe, expect, it } from "vitest";
import { planIngest, type ExistingRow, type IngestPlan, type PlanIngestInput } from "../src/core/ingest-plan.ts";
import { parsePrediction, userIdHints, type Prediction } from "../src/core/prediction.ts";

function prediction(overrides: Record<string, unknown> = {}): Prediction {
  const parsed = parsePrediction({
    id: "p1",
    model: "black-forest-labs/flux-schnell",
    version: "v1",
    input: { prompt: "a red fox" },
    output: ["https://replicate.delivery/x/out-0.webp", "https://replicate.delivery/x/out-1.png"],
    status: "succeeded",
    error: null,
    ...overrides,
  });
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.prediction;
}

function row(overrides: Partial<ExistingRow> = {}): ExistingRow {
  return {
    id: "gen1",
    userId: "alice",
    status: "processing",
    operationType: null,
    prompt: "a red fox",
    storageKeys: [],
    ...overrides,
  };
}

function plan(input: Partial<PlanIngestInput> & { query?: string }): IngestPlan {
  const p = input.prediction ?? prediction();
  const result = planIngest({
    prediction: p,
    row: input.row ?? null,
    hints: input.hints ?? userIdHints(p, new URLSearchParams(input.query ?? "")),
    fallbackUserId: input.fallbackUserId,
    newId: input.newId ?? "new1",
  });
  if (!result.ok) throw new Error(result.reason);
  return result;
}

describe("planIngest: whose folder", () => {
  it.each([
    [
      "an existing row keeps its id and user; the query never moves it",
      { row: row(), query: "userId=mallory" },
      "gen1",
      "alice",
      "existing-row",
    ],
    [
      "an existing row wins over prediction input too",
      { row: row(), prediction: prediction({ input: { prompt: "x", user_id: "bob" } }) },
      "gen1",
      "alice",
      "existing-row",
    ],
    ["no row: the query places it", { query: "userId=bob" }, "new1", "bob", "webhook-query"],
    [
      "no row: the query outranks input user_id",
      { query: "userId=bob", prediction: prediction({ input: { user_id: "carol" } }) },
      "new1",
      "bob",
      "webhook-query",
    ],
    [
      "no row: input user_id when there is no query",
      { prediction: prediction({ input: { user_id: "carol", userId: "dave" } }) },
      "new1",
      "carol",
      "prediction-input",
    ],
    [
      "no row: input userId when there is no user_id",
      { prediction: prediction({ input: { userId: "dave" } }) },
      "new1",
      "dave",
      "prediction-input",
    ],
    ["no row: --user is the fallback", { fallbackUserId: "erin" }, "new1", "erin", "cli-flag"],
    ["no row: a hint outranks --user", { query: "userId=bob", fallbackUserId: "erin" }, "new1", "bob", "webhook-query"],
    [
      "no row: an unsafe query userId is skipped, not used",
      { query: "userId=..%2Fbob", fallbackUserId: "erin" },
      "new1",
      "erin",
      "cli-flag",
    ],
  ] as const)("%s", (_, input, id, userId, source) => {
    const result = plan(input);
    expect({ id: result.id, userId: result.userId, userIdSource: result.userIdSource }).toEqual({
      id,
      userId,
      userIdSource: source,
    });
    expect(result.isNew).toBe(!("row" in input));
  });

  it("records why a conflicting query userId was ignored", () => {
    const result = plan({ row: row(), query: "userId=mallory" });
    expect(result.ignoredHints).toEqual([
      {
        hint: { accepted: true, source: "webhook-query", field: "userId", userId: "mallory" },
        why: "the row already belongs to alice",
      },
    ]);
  });

  it.each([
    ["nothing names a user", {}, /has no row and no usable userId$/],
    ["only an unsafe query userId", { query: "userId=.." }, /refused: webhook-query userId contains "\.\."/],
    ["an unsafe fallback user", { fallbackUserId: "../root" }, /fallback user .* contains a slash/],
  ])("refuses when %s", (_, input, reason) => {
    const p = prediction();
    const q = "query" in input ? input.query : "";
    const result = planIngest({
      prediction: p,
      row: null,
      hints: userIdHints(p, new URLSearchParams(q)),
      fallbackUserId: (input as { fallbackUserId?: string }).fallbackUserId,
      newId: "new1",
    });
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason).toMatch(reason);
  });

  it("refuses an existing row whose userId would escape its folder", () => {
    const result = planIngest({ prediction: prediction(), row: row({ userId: "../x" }), hints: [], newId: "n" });
    expect(result).toMatchObject({ ok: false, reason: expect.stringMatching(/refusing to store/) });
  });
});

describe("planIngest: detection", () => {
  it.each([
    ["prompt prefix on a new row", null, "[EDITED] a fox", "edit", "edited", "prompt-prefix"],
    ["plain prompt on a new row", null, "a fox", "generation", "generated", "prompt-prefix"],
    [
      "the row's operationType wins over the prompt",
      row({ operationType: "upscale", prompt: "[EDITED] a fox" }),
      "[EDITED] a fox",
      "upscale",
      "upscaled",
      "operationType-column",
    ],
    [
      "an old row without operationType falls back to its prompt",
      row({ operationType: null, prompt: "[VIDEO] a fox" }),
      "a fox",
      "video",
      "videos",
      "prompt-prefix",
    ],
  ])("%s", (_, existing, prompt, operationType, storageContext, detectedBy) => {
    const result = plan({
      row: existing ?? undefined,
      fallbackUserId: "alice",
      prediction: prediction({ input: { prompt } }),
    });
    expect(result.detection).toEqual({ operationType, storageContext, detectedBy });
  });
});

describe("planIngest: status", () => {
  it.each([
    ["new row, starting", null, "starting", "starting", true],
    ["processing after starting", "starting", "processing", "processing", true],
    ["succeeded after processing", "processing", "succeeded", "succeeded", true],
    ["a late processing after succeeded keeps succeeded", "succeeded", "processing", "succeeded", false],
    ["a late starting after processing keeps processing", "processing", "starting", "processing", false],
    ["a late failed after succeeded keeps succeeded", "succeeded", "failed", "succeeded", false],
    ["the same succeeded twice", "succeeded", "succeeded", "succeeded", false],
  ] as const)("%s", (_, current, incoming, status, apply) => {
    const result = plan({
      row: current === null ? undefined : row({ status: current }),
      fallbackUserId: "alice",
      prediction: prediction({
        status: incoming,
        output: incoming === "succeeded" ? ["https://replicate.delivery/x/o.png"] : null,
      }),
    });
    expect(result.status).toBe(status);
    expect(result.transition.apply).toBe(apply);
  });

  it("a late processing after succeeded plans no objects", () => {
    const result = plan({ row: row({ status: "succeeded" }), prediction: prediction({ status: "processing" }) });
    expect(result.toStore).toEqual([]);
  });
});

describe("planIngest: objects to store", () => {
  it("images get a context key and a thumbnail key, in output order", () => {
    const result = plan({ fallbackUserId: "alice", prediction: prediction({ input: { prompt: "[UPSCALED] a fox" } }) });
    expect(result.toStore).toEqual([
      {
        index: 0,
        url: "https://replicate.delivery/x/out-0.webp",
        ext: "webp",
        contentType: "image/webp",
        key: "upscaled/alice/new1_0.webp",
        outputStored: false,
        thumbnailKey: "thumbnails/upscaled/alice/new1_0.webp",
      },
      {
        index: 1,
        url: "https://replicate.delivery/x/out-1.png",
        ext: "png",
        contentType: "image/png",
        key: "upscaled/alice/new1_1.png",
        outputStored: false,
        thumbnailKey: "thumbnails/upscaled/alice/new1_1.webp",
      },
    ]);
  });

  it("a video output goes to videos/<user>/<id>.mp4 without a thumbnail", () => {
    const result = plan({
      fallbackUserId: "alice",
      prediction: prediction({
        input: { prompt: "[VIDEO] a fox running" },
        output: "https://replicate.delivery/x/video.mp4",
      }),
    });
    expect(result.toStore).toEqual([
      {
        index: 0,
        url: "https://replicate.delivery/x/video.mp4",
        ext: "mp4",
        contentType: "video/mp4",
        key: "videos/alice/new1.mp4",
        outputStored: false,
        thumbnailKey: null,
      },
    ]);
  });

  it("an output without a known extension is stored as .bin without a thumbnail", () => {
    const result = plan({
      fallbackUserId: "alice",
      prediction: prediction({ output: "https://replicate.delivery/x/blob" }),
    });
    expect(result.toStore).toMatchObject([{ key: "generated/alice/new1_0.bin", thumbnailKey: null }]);
  });

  it.each([
    [
      "skips an output whose key and thumbnail are already stored",
      [
        { key: "generated/alice/gen1_0.webp", kind: "output" },
        { key: "thumbnails/generated/alice/gen1_0.webp", kind: "thumbnail" },
      ],
      [1],
      ["generated/alice/gen1_0.webp", "thumbnails/generated/alice/gen1_0.webp"],
      false,
    ],
    [
      "keeps an output whose thumbnail is missing, marked as stored (and reported as already stored)",
      [{ key: "generated/alice/gen1_0.webp", kind: "output" }],
      [0, 1],
      ["generated/alice/gen1_0.webp"],
      true,
    ],
    [
      "stores the output whose thumbnail alone is there, and reports the thumbnail",
      [{ key: "thumbnails/generated/alice/gen1_0.webp", kind: "thumbnail" }],
      [0, 1],
      ["thumbnails/generated/alice/gen1_0.webp"],
      false,
    ],
    [
      "stores everything when the row has only legacy keys",
      [{ key: "alice/old.webp", kind: "output" }],
      [0, 1],
      [],
      false,
    ],
  ])("%s", (_, storageKeys, toStore, already, firstStored) => {
    const result = plan({ row: row({ status: "succeeded", storageKeys }) });
    expect(result.toStore.map((o) => o.index)).toEqual(toStore);
    expect(result.alreadyStored.map((o) => o.key)).toEqual(already);
    expect(result.toStore[0]?.outputStored).toBe(firstStored);
  });

  it.each([
    ["failed", "CUDA out of memory", "CUDA out of memory"],
    ["canceled", null, "prediction canceled"],
    ["aborted", null, "prediction aborted"],
  ])("%s: nothing to store, the error is recorded", (status, error, expected) => {
    const result = plan({ fallbackUserId: "alice", prediction: prediction({ status, error, output: null }) });
    expect(result.toStore).toEqual([]);
    expect(result.status).toBe(status);
    expect(result.error).toBe(expected);
  });

  it("a succeeded prediction has no error", () => {
    expect(plan({ fallbackUserId: "alice" }).error).toBeNull();
  });

  it("warns when Replicate has removed the outputs still to be stored", () => {
    const result = plan({ fallbackUserId: "alice", prediction: prediction({ data_removed: true }) });
    expect(result.warnings.join(" ")).toMatch(/data_removed/);
  });

  it("is plain data", () => {
    const result = plan({ fallbackUserId: "alice" });
    expect(JSON.parse(JSON.stringify(result))).toEqual(result);
  });
});
