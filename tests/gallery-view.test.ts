import { describe, expect, it } from "vitest";
import type { GenerationRecord as Generation } from "../src/core/generation-table.ts";
import { toGenerationView } from "../src/gallery/view.ts";

// What a card says about a row: its cover and every problem, decided from the row alone
// (and the keys the server found missing in storage).

const output = (key: string) => ({ key, size: 10, contentType: null, etag: "e", kind: "output" });
const thumbnail = (key: string) => ({ key, size: 5, contentType: "image/webp", etag: "t", kind: "thumbnail" });

function row(overrides: Partial<Generation>): Generation {
  return {
    id: "g1",
    userId: "alice",
    prompt: "a fox",
    status: "succeeded",
    replicateId: "p1",
    imageUrls: [],
    storageProvider: "local",
    storageBucket: "/data",
    storageKeys: [],
    operationType: "generation",
    storageContext: "generated",
    metadata: {},
    createdAt: new Date("2026-11-20T10:00:00Z"),
    updatedAt: new Date("2026-11-20T10:00:05Z"),
    completedAt: null,
    error: null,
    ...overrides,
  };
}

describe("toGenerationView", () => {
  it.each([
    [
      "an image with its thumbnail: the thumbnail is the cover",
      row({ storageKeys: [output("generated/alice/g1_0.png"), thumbnail("thumbnails/generated/alice/g1_0.webp")] }),
      [],
      { cover: "thumbnails/generated/alice/g1_0.webp", flags: {} },
    ],
    [
      "an image without a thumbnail: the output is the cover, and it says so",
      row({ storageKeys: [output("generated/alice/g1_0.png")] }),
      [],
      { cover: "generated/alice/g1_0.png", flags: { noThumbnail: true } },
    ],
    [
      "a video: no thumbnail is expected",
      row({ operationType: "video", storageKeys: [output("videos/alice/g1.mp4")] }),
      [],
      { cover: "videos/alice/g1.mp4", flags: {} },
    ],
    [
      "a thumbnail missing in storage: the output is the cover",
      row({ storageKeys: [output("generated/alice/g1_0.png"), thumbnail("thumbnails/generated/alice/g1_0.webp")] }),
      ["thumbnails/generated/alice/g1_0.webp"],
      { cover: "generated/alice/g1_0.png", flags: { missingKeys: true } },
    ],
    [
      "everything missing: no cover",
      row({ storageKeys: [output("generated/alice/g1_0.png")] }),
      ["generated/alice/g1_0.png"],
      { cover: null, flags: { missingKeys: true, noThumbnail: true } },
    ],
    [
      "a failed row with no output",
      row({ status: "failed", error: "NSFW" }),
      [],
      { cover: null, flags: { failed: true, noOutput: true } },
    ],
    [
      "a row still starting",
      row({ status: "starting" }),
      [],
      { cover: null, flags: { processing: true, noOutput: true } },
    ],
    [
      "an expired output",
      row({ metadata: { expiredOutputs: [{ index: 0, problem: "expired", message: "HTTP 410" }] } }),
      [],
      { cover: null, flags: { expired: true, noOutput: true } },
    ],
    [
      "storageKeys entries that are not objects with a key are left out",
      row({ storageKeys: ["generated/alice/g1_0.png", null, { size: 1 }] }),
      [],
      { cover: null, flags: { noOutput: true } },
    ],
  ])("%s", (_name, generation, missing, expected) => {
    const view = toGenerationView(generation, new Set(missing));
    expect(view.cover?.key ?? null).toBe(expected.cover);
    const none = {
      failed: false,
      processing: false,
      expired: false,
      missingKeys: false,
      noThumbnail: false,
      noOutput: false,
    };
    expect(view.flags).toEqual({ ...none, ...expected.flags });
  });

  it("marks the operation read from the prompt when the column is empty", () => {
    expect(toGenerationView(row({ operationType: null, prompt: "[VIDEO] a fox" }), new Set()).operation).toEqual({
      operationType: "video",
      storageContext: "videos",
      detectedBy: "prompt-prefix",
    });
  });

  it("encodes each key segment in the media URL", () => {
    const view = toGenerationView(row({ id: "g 1", storageKeys: [output("generated/user 1/a#b.png")] }), new Set());
    expect(view.objects[0]!.url).toBe("/media/g%201/generated/user%201/a%23b.png");
  });
});
