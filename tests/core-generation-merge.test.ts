import { describe, expect, it } from "vitest";
import {
  mergeGeneration,
  mergeStorageKeys,
  summarizeProblems,
  type Delivery,
  type GenerationState,
  type StorageKeyEntry,
} from "../src/core/generation-merge.ts";

const done = new Date("2026-11-20T10:00:04Z");

function entry(key: string, kind: StorageKeyEntry["kind"] = "output"): StorageKeyEntry {
  return { key, size: 10, contentType: "image/png", etag: "e", kind };
}

function delivery(overrides: Partial<Delivery> = {}): Delivery {
  return {
    replicateId: "p1",
    status: "succeeded",
    predictionStatus: "succeeded",
    userId: "alice",
    prompt: "a fox",
    detection: { operationType: "generation", storageContext: "generated", detectedBy: "prompt-prefix" },
    outputUrls: ["https://replicate.delivery/a.png"],
    storedIndexes: [],
    stored: [],
    storage: { provider: "local", bucket: "/data" },
    predictionError: null,
    problems: [],
    retryError: null,
    completedAt: done,
    facts: { model: "m", arrivedVia: "webhook" },
    placement: { userIdSource: "webhook-query" },
    ...overrides,
  };
}

function row(overrides: Partial<GenerationState> = {}): GenerationState {
  return {
    userId: "alice",
    prompt: "a fox",
    status: "succeeded",
    replicateId: "p1",
    imageUrls: ["https://replicate.delivery/a.png"],
    storageProvider: "local",
    storageBucket: "/data",
    storageKeys: [entry("generated/alice/g_0.png")],
    operationType: "generation",
    storageContext: "generated",
    metadata: { model: "m", arrivedVia: "webhook", detectedBy: "prompt-prefix", userIdSource: "webhook-query" },
    completedAt: done,
    error: null,
    ...overrides,
  };
}

describe("mergeGeneration: deliveries that change nothing", () => {
  it.each([
    ["a duplicate succeeded", row(), delivery()],
    [
      "a late processing",
      row(),
      delivery({
        status: "processing",
        predictionStatus: "processing",
        outputUrls: [],
        completedAt: null,
        facts: { arrivedVia: "poll" },
      }),
    ],
    [
      "a late starting after processing",
      row({ status: "processing", completedAt: null, imageUrls: [] }),
      delivery({ status: "starting", predictionStatus: "starting", outputUrls: [] }),
    ],
    [
      "a failed after succeeded",
      row(),
      delivery({ status: "failed", predictionStatus: "failed", predictionError: "boom", outputUrls: [] }),
    ],
    [
      "a succeeded after failed",
      row({ status: "failed", error: "boom", storageKeys: [], imageUrls: [] }),
      delivery({ outputUrls: [] }),
    ],
    ["keys the row already has", row(), delivery({ stored: [entry("generated/alice/g_0.png")], storedIndexes: [0] })],
  ])("%s → null", (_, current, incoming) => {
    expect(mergeGeneration(current, incoming)).toBeNull();
  });
});

describe("mergeGeneration: what changes", () => {
  it("creates a full row, with placement, facts, detection and completedAt", () => {
    expect(mergeGeneration(null, delivery({ stored: [entry("generated/alice/g_0.png")], storedIndexes: [0] }))).toEqual(
      {
        userId: "alice",
        prompt: "a fox",
        status: "succeeded",
        replicateId: "p1",
        imageUrls: ["https://replicate.delivery/a.png"],
        storageProvider: "local",
        storageBucket: "/data",
        storageKeys: [entry("generated/alice/g_0.png")],
        operationType: "generation",
        storageContext: "generated",
        metadata: { model: "m", arrivedVia: "webhook", userIdSource: "webhook-query", detectedBy: "prompt-prefix" },
        completedAt: done,
        error: null,
      },
    );
  });

  it.each([
    [
      "processing → succeeded",
      row({ status: "processing", completedAt: null, storageKeys: [], imageUrls: [] }),
      { status: "succeeded", completedAt: done },
    ],
    [
      "starting → processing",
      row({ status: "starting", completedAt: null, storageKeys: [], imageUrls: [] }),
      { status: "processing" },
    ],
    [
      "processing → failed records the error",
      row({ status: "processing", completedAt: null, storageKeys: [], imageUrls: [] }),
      { status: "failed", error: "boom", completedAt: done },
    ],
  ] as const)("%s", (name, current, expected) => {
    const incoming = name.endsWith("processing")
      ? delivery({ status: "processing", predictionStatus: "processing", outputUrls: [], completedAt: null })
      : name.includes("failed")
        ? delivery({ status: "failed", predictionStatus: "failed", predictionError: "boom", outputUrls: [] })
        : delivery();
    expect(mergeGeneration(current, incoming)).toMatchObject(expected);
  });

  it("adds new keys to the ones the row has, keeping its entries as they are", () => {
    const current = row({ storageKeys: [{ key: "legacy/x.png", note: "kept" }, entry("generated/alice/g_0.png")] });
    const write = mergeGeneration(
      current,
      delivery({
        stored: [entry("generated/alice/g_0.png"), entry("thumbnails/generated/alice/g_0.webp", "thumbnail")],
      }),
    );
    expect(write).toEqual({
      storageKeys: [
        { key: "legacy/x.png", note: "kept" },
        entry("generated/alice/g_0.png"),
        entry("thumbnails/generated/alice/g_0.webp", "thumbnail"),
      ],
    });
  });

  it("does not let a concurrent delivery that lost the status race rewrite Replicate's facts", () => {
    const write = mergeGeneration(
      row(),
      delivery({ stored: [entry("generated/alice/g_1.png")], facts: { model: "m", arrivedVia: "recover" } }),
    );
    expect(write).toEqual({ storageKeys: [entry("generated/alice/g_0.png"), entry("generated/alice/g_1.png")] });
  });

  it("keeps the row's owner, prompt and operationType column", () => {
    const current = row({
      status: "processing",
      userId: "bob",
      prompt: "[EDITED] x",
      operationType: "edit",
      storageContext: "edited",
      completedAt: null,
    });
    const write = mergeGeneration(current, delivery({ userId: "mallory", prompt: "other" }));
    expect(write).not.toHaveProperty("userId");
    expect(write).not.toHaveProperty("prompt");
    expect(write).not.toHaveProperty("operationType");
  });

  it("marks expired outputs, then clears them when a later run stores the output", () => {
    const expired = { index: 1, url: "u1", problem: "expired" as const, message: "gone" };
    const marked = mergeGeneration(row({ status: "processing", completedAt: null }), delivery({ problems: [expired] }));
    expect(marked).toMatchObject({
      status: "succeeded",
      error: "output 1 expired before it was stored (the file is gone)",
      metadata: { expiredOutputs: [expired] },
    });
    const current = row({ ...(marked as Partial<GenerationState>) });
    const cleared = mergeGeneration(
      current,
      delivery({ stored: [entry("generated/alice/g_1.png")], storedIndexes: [1] }),
    );
    expect(cleared).toMatchObject({ error: null });
    expect((cleared!.metadata as Record<string, unknown>)["expiredOutputs"]).toBeUndefined();
  });

  it("records a retryable failure in error and keeps the status short of succeeded", () => {
    const write = mergeGeneration(
      row({ status: "processing", completedAt: null, storageKeys: [], imageUrls: [] }),
      delivery({
        status: "processing",
        stored: [entry("generated/alice/g_0.png")],
        storedIndexes: [0],
        retryError: "503 (will be retried)",
      }),
    );
    expect(write).toMatchObject({ error: "503 (will be retried)", storageKeys: [entry("generated/alice/g_0.png")] });
    expect(write).not.toHaveProperty("status");
  });

  it("decides two final statuses by Replicate's completed_at, whichever arrives first, and keeps stored outputs", () => {
    const succeeded = delivery({
      stored: [entry("generated/alice/g_0.png")],
      storedIndexes: [0],
      facts: { replicate: { status: "succeeded", completedAt: "2026-11-20T10:00:04Z" } },
    });
    const failed = delivery({
      status: "failed",
      predictionStatus: "failed",
      predictionError: "canceled by the model",
      outputUrls: [],
      completedAt: new Date("2026-11-20T10:00:09Z"),
      facts: { replicate: { status: "failed", completedAt: "2026-11-20T10:00:09Z" } },
    });
    const processing = row({ status: "processing", storageKeys: [], imageUrls: [], completedAt: null, metadata: {} });
    const afterSucceeded = { ...processing, ...mergeGeneration(processing, succeeded) };
    const afterFailed = { ...processing, ...mergeGeneration(processing, failed) };
    const oneOrder = { ...afterSucceeded, ...mergeGeneration(afterSucceeded, failed) };
    const otherOrder = { ...afterFailed, ...mergeGeneration(afterFailed, succeeded) };
    for (const end of [oneOrder, otherOrder]) {
      expect(end).toMatchObject({ status: "failed", error: "canceled by the model" });
      expect(end.completedAt).toEqual(new Date("2026-11-20T10:00:09Z"));
    }
    expect(otherOrder.storageKeys).toEqual([entry("generated/alice/g_0.png")]);
    expect(oneOrder.storageKeys).toEqual([entry("generated/alice/g_0.png")]);
  });

  it("writes placement only for a new or adopted row", () => {
    const adopted = mergeGeneration(
      row({ replicateId: null, status: "starting", metadata: {} }),
      delivery({ placement: { userIdSource: "existing-row", generationIdSource: "webhook-query" } }),
    );
    expect(adopted!.metadata).toMatchObject({ userIdSource: "existing-row", generationIdSource: "webhook-query" });
    const existing = mergeGeneration(row({ status: "processing", metadata: { userIdSource: "cli-flag" } }), delivery());
    expect(existing!.metadata).toMatchObject({ userIdSource: "cli-flag" });
  });
});

describe("mergeStorageKeys", () => {
  it.each([
    ["adds to an empty list", [], [entry("a")], [entry("a")]],
    ["skips a key already listed", [entry("a")], [entry("a"), entry("b")], [entry("a"), entry("b")]],
    ["skips a key given twice", [], [entry("a"), entry("a")], [entry("a")]],
    ["keeps entries without a key", [{ legacy: true }], [entry("a")], [{ legacy: true }, entry("a")]],
  ] as const)("%s", (_, existing, added, expected) => {
    expect(mergeStorageKeys(existing as readonly unknown[], added as readonly StorageKeyEntry[])).toEqual(expected);
  });
});

describe("summarizeProblems", () => {
  it.each([
    [
      "one expired",
      [{ index: 0, url: "u", problem: "expired", message: "m" }],
      "output 0 expired before it was stored (the file is gone)",
    ],
    [
      "two expired",
      [
        { index: 0, url: "u", problem: "expired", message: "m" },
        { index: 2, url: "u", problem: "expired", message: "m" },
      ],
      "outputs 0, 2 expired before they were stored (the file is gone)",
    ],
    [
      "a refusal",
      [{ index: 1, url: "u", problem: "refused", message: "Refused to download output u: nope." }],
      "output 1 not stored: Refused to download output u: nope.",
    ],
  ] as const)("%s", (_, problems, expected) => {
    expect(summarizeProblems(problems as never)).toBe(expected);
  });
});
