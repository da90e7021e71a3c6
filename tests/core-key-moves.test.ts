import { describe, expect, it } from "vitest";
import {
  nextKeyMoveStep,
  planKeyMove,
  replaceStorageKey,
  summarizePlans,
  type KeyMoveFacts,
  type KeyMoveStep,
} from "../src/core/key-moves.ts";

const row = (
  storageKeys: unknown[],
  extra: { operationType?: string | null; prompt?: string; userId?: string; id?: string } = {},
) => ({
  id: extra.id ?? "gen1",
  userId: extra.userId ?? "u1",
  prompt: extra.prompt ?? "a fox",
  operationType: extra.operationType ?? null,
  storageKeys,
});

describe("planKeyMove: referenced legacy keys", () => {
  it.each([
    [
      "user-flat, no column, plain prompt",
      "u1/a.png",
      row(["u1/a.png"]),
      "generated/u1/gen1_0.png",
      "generated",
      "output",
      0,
    ],
    [
      "generations-folder, prompt [EDITED]",
      "generations/u1/a.jpg",
      row(["generations/u1/a.jpg"], { prompt: "[EDITED] x" }),
      "edited/u1/gen1_0.jpg",
      "edited",
      "output",
      0,
    ],
    [
      "uploads-folder (flat), prompt [UPSCALED]",
      "uploads/a.png",
      row(["uploads/a.png"], { prompt: "  [UPSCALED] x" }),
      "upscaled/u1/gen1_0.png",
      "upscaled",
      "output",
      0,
    ],
    [
      "uploads-folder with user, column wins over prompt",
      "uploads/u1/a.png",
      row(["uploads/u1/a.png"], { operationType: "upscale", prompt: "[EDITED] x" }),
      "upscaled/u1/gen1_0.png",
      "upscaled",
      "output",
      0,
    ],
    [
      "video by prompt, index 0 has no suffix",
      "u1/clip.MP4",
      row([{ key: "u1/clip.MP4", kind: "output" }], { prompt: "[VIDEO] run" }),
      "videos/u1/gen1.mp4",
      "videos",
      "output",
      0,
    ],
    [
      "video column, second output",
      "u1/b.mp4",
      row(["u1/a.mp4", "u1/b.mp4"], { operationType: "video" }),
      "videos/u1/gen1_1.mp4",
      "videos",
      "output",
      1,
    ],
    [
      "legacy-thumbnail (string entry)",
      "thumbnails/u1/t.webp",
      row(["u1/a.png", "thumbnails/u1/t.webp"]),
      "thumbnails/generated/u1/gen1_0.webp",
      "generated",
      "thumbnail",
      0,
    ],
    [
      "legacy thumbs/ by kind field, edit column",
      "thumbs/u1/t.jpg",
      row(
        [
          { key: "u1/a.png", kind: "output" },
          { key: "thumbs/u1/t.jpg", kind: "thumbnail" },
        ],
        { operationType: "edit" },
      ),
      "thumbnails/edited/u1/gen1_0.jpg",
      "edited",
      "thumbnail",
      0,
    ],
    [
      "index among outputs only (thumbnails between)",
      "u1/c.png",
      row([
        { key: "generated/u1/gen1_0.png", kind: "output" },
        { key: "thumbnails/generated/u1/gen1_0.webp", kind: "thumbnail" },
        "u1/b.png",
        { key: "thumbs/u1/x.webp", kind: "thumbnail" },
        { key: "u1/c.png", kind: "output" },
      ]),
      "generated/u1/gen1_2.png",
      "generated",
      "output",
      2,
    ],
    [
      "target uses row.userId, not the legacy folder",
      "olduser/a.png",
      row(["olduser/a.png"], { userId: "u9" }),
      "generated/u9/gen1_0.png",
      "generated",
      "output",
      0,
    ],
  ])("%s", (_name, key, r, targetKey, context, kind, index) => {
    expect(planKeyMove(key, r, {})).toEqual({
      action: "move",
      sourceKey: key,
      targetKey,
      context,
      kind,
      generationId: "gen1",
      index,
    });
  });
});

describe("planKeyMove: refusals, orphans, unknown, skipped", () => {
  it.each([
    ["generated/u1/gen1_0.png", "skip"],
    ["videos/u1/gen1.mp4", "skip"],
    ["thumbnails/generated/u1/gen1_0.webp", "skip"],
  ])("%s is already in layout → skip", (key, action) => {
    expect(planKeyMove(key, row([key]), {})).toEqual({ action, sourceKey: key, reason: "already in context layout" });
  });

  it.each([
    ["a/b/c/d.png", undefined],
    ["a//b.png", undefined],
    ["../etc/passwd", undefined],
    ["loose.png", undefined],
    ["u1/noext", row(["u1/noext"])],
    ["u1/a.png", row(["u1/other.png"])],
    ["u1/a.png", row(["u1/a.png"], { userId: "../x" })],
    ["u1/a.png", row(["u1/a.png"], { userId: "a/b" })],
    ["u1/a.png", row(["u1/a.png"], { id: ".." })],
  ])("%s → unknown", (key, r) => {
    const plan = planKeyMove(key, r, {});
    expect(plan.action).toBe("unknown");
    expect(plan).toHaveProperty("reason");
  });

  it.each([
    ["u1/a.png", "user-flat"],
    ["generations/u1/a.png", "generations-folder"],
    ["uploads/a.png", "uploads-folder"],
    ["thumbs/u1/t.webp", "legacy-thumbnail"],
  ])("%s with no row → orphan (%s)", (key, pattern) => {
    expect(planKeyMove(key, undefined, {})).toEqual({ action: "orphan", sourceKey: key, pattern });
  });

  it.each([
    ["u1/a.png", "generated/u1/a.png", "output"],
    ["generations/u1/a.png", "generated/u1/a.png", "output"],
    ["uploads/u1/a.png", "generated/u1/a.png", "output"],
    ["thumbs/u1/t.webp", "thumbnails/generated/u1/t.webp", "thumbnail"],
  ])("%s with orphansTo → %s", (key, targetKey, kind) => {
    expect(planKeyMove(key, undefined, { orphansTo: "generated" })).toEqual({
      action: "move",
      sourceKey: key,
      targetKey,
      context: "generated",
      kind,
      generationId: null,
      index: null,
    });
  });

  it.each([
    ["uploads/a.png", "uploads-folder"], // no userId in the key
    ["u\u0001x/a.png", "user-flat"], // unsafe userId
    ["u1/a..b.png", "user-flat"], // unsafe file name
  ])("%j with orphansTo but no safe userId stays an orphan", (key, pattern) => {
    const plan = planKeyMove(key, undefined, { orphansTo: "generated" });
    expect(plan).toMatchObject({ action: "orphan", sourceKey: key, pattern });
    expect(plan).toHaveProperty("reason");
  });
});

describe("replaceStorageKey", () => {
  const target = { key: "generated/u1/gen1_0.png", size: 10, etag: "e2" };
  it.each([
    [
      "object entry keeps its fields",
      [{ key: "u1/a.png", kind: "output", contentType: "image/png", size: 1, etag: "e1" }, "x"],
      [{ key: target.key, kind: "output", contentType: "image/png", size: 10, etag: "e2" }, "x"],
    ],
    ["string entry becomes an object", ["u1/a.png"], [{ key: target.key, kind: "output", size: 10, etag: "e2" }]],
    ["string legacy thumbnail keeps kind thumbnail", ["thumbs/u1/a.png"], null],
    [
      "target already listed elsewhere is not duplicated",
      ["u1/a.png", { key: target.key, kind: "output" }],
      [{ key: target.key, kind: "output", size: 10, etag: "e2" }],
    ],
  ])("%s", (_name, keys, expected) => {
    const source = (keys[0] as { key?: string }).key ?? (keys[0] as string);
    const result = replaceStorageKey(keys, source, target);
    if (expected) expect(result).toEqual(expected);
    else expect(result).toEqual([{ key: target.key, kind: "thumbnail", size: 10, etag: "e2" }]);
  });

  it("without size/etag keeps the entry's own", () => {
    expect(replaceStorageKey([{ key: "u1/a.png", size: 3 }], "u1/a.png", { key: "k" })).toEqual([
      { key: "k", size: 3 },
    ]);
  });

  it.each([
    ["source absent", ["other.png"]],
    ["already replaced (rerun)", [{ key: "generated/u1/gen1_0.png", kind: "output", size: 10 }]],
    ["empty", []],
  ])("unchanged and same array when %s", (_name, keys) => {
    expect(replaceStorageKey(keys, "u1/a.png", target)).toBe(keys);
  });

  it("is idempotent: applying twice equals applying once", () => {
    const once = replaceStorageKey(["u1/a.png", "u1/b.png"], "u1/a.png", target);
    expect(replaceStorageKey(once, "u1/a.png", target)).toBe(once);
  });
});

describe("nextKeyMoveStep (crash-recovery table)", () => {
  const f = (over: Partial<KeyMoveFacts>): KeyMoveFacts => ({
    sourceExists: true,
    targetExists: false,
    targetMatches: false,
    rowPointsAtTarget: false,
    rowPointsAtSource: true,
    keepSource: false,
    ...over,
  });
  const conflict = expect.objectContaining({ conflict: expect.any(String) });
  it.each<[string, KeyMoveStep, Partial<KeyMoveFacts>, unknown]>([
    ["fresh: copy", "planned", {}, "copy"],
    ["crash after copy, before journal: verify", "planned", { targetExists: true, targetMatches: true }, "verify"],
    ["planned, target differs: conflict", "planned", { targetExists: true, targetMatches: false }, conflict],
    ["planned, both missing: conflict", "planned", { sourceExists: false }, conflict],
    ["copied but row not updated: record", "copied", { targetExists: true, targetMatches: true }, "record"],
    [
      "copied, row updated, journal not: record (idempotent)",
      "copied",
      { targetExists: true, targetMatches: true, rowPointsAtTarget: true, rowPointsAtSource: false },
      "record",
    ],
    ["copied, target vanished, source there: copy again", "copied", { targetExists: false }, "copy"],
    ["copied, target now differs: conflict", "copied", { targetExists: true, targetMatches: false }, conflict],
    [
      "row updated but source not deleted: delete-source",
      "recorded",
      { targetExists: true, targetMatches: true, rowPointsAtTarget: true, rowPointsAtSource: false },
      "delete-source",
    ],
    [
      "recorded, keepSource: done",
      "recorded",
      { targetExists: true, targetMatches: true, rowPointsAtTarget: true, rowPointsAtSource: false, keepSource: true },
      "done",
    ],
    [
      "deleted, journal not done: done",
      "recorded",
      {
        sourceExists: false,
        targetExists: true,
        targetMatches: true,
        rowPointsAtTarget: true,
        rowPointsAtSource: false,
      },
      "done",
    ],
    [
      "recorded but row points at source again: record, never delete",
      "recorded",
      { targetExists: true, targetMatches: true, rowPointsAtSource: true },
      "record",
    ],
    [
      "recorded, target differs: conflict, never delete",
      "recorded",
      { targetExists: true, targetMatches: false, rowPointsAtTarget: true, rowPointsAtSource: false },
      conflict,
    ],
    [
      "recorded, target missing, source there: copy",
      "recorded",
      { rowPointsAtTarget: true, rowPointsAtSource: false },
      "copy",
    ],
    [
      "recorded, both missing: conflict",
      "recorded",
      { sourceExists: false, rowPointsAtTarget: true, rowPointsAtSource: false },
      conflict,
    ],
    [
      "orphan move (no row), recorded: delete-source",
      "recorded",
      { targetExists: true, targetMatches: true, rowPointsAtSource: false },
      "delete-source",
    ],
    [
      "done: done",
      "done",
      {
        sourceExists: false,
        targetExists: true,
        targetMatches: true,
        rowPointsAtTarget: true,
        rowPointsAtSource: false,
      },
      "done",
    ],
    [
      "done but target missing: conflict",
      "done",
      { sourceExists: false, rowPointsAtTarget: true, rowPointsAtSource: false },
      conflict,
    ],
  ])("%s", (_name, step, facts, expected) => {
    expect(nextKeyMoveStep(step, f(facts))).toEqual(expected);
  });

  it("never returns delete-source unless journal recorded, target matches and the row left the source", () => {
    const bools = [true, false];
    for (const step of ["planned", "copied", "recorded", "done"] as KeyMoveStep[])
      for (const sourceExists of bools)
        for (const targetExists of bools)
          for (const targetMatches of bools)
            for (const rowPointsAtTarget of bools)
              for (const rowPointsAtSource of bools)
                for (const keepSource of bools) {
                  const action = nextKeyMoveStep(step, {
                    sourceExists,
                    targetExists,
                    targetMatches,
                    rowPointsAtTarget,
                    rowPointsAtSource,
                    keepSource,
                  });
                  if (action === "delete-source") {
                    expect(step === "recorded" || step === "done").toBe(true);
                    expect(targetExists && targetMatches && sourceExists && !rowPointsAtSource && !keepSource).toBe(
                      true,
                    );
                  }
                  if (action === "copy") expect(targetExists).toBe(false);
                }
  });
});

describe("summarizePlans", () => {
  it("counts per context, orphans, unknown, skipped", () => {
    const plans = [
      planKeyMove("u1/a.png", row(["u1/a.png"]), {}),
      planKeyMove("u1/b.png", row(["u1/b.png"], { prompt: "[EDITED] x" }), {}),
      planKeyMove("u1/c.png", row(["u1/c.png"], { operationType: "edit" }), {}),
      planKeyMove("u2/d.png", undefined, {}),
      planKeyMove("u2/e.png", undefined, { orphansTo: "upscaled" }),
      planKeyMove("a/b/c/d", undefined, {}),
      planKeyMove("generated/u1/gen1_0.png", undefined, {}),
    ];
    expect(summarizePlans(plans)).toEqual({
      total: 7,
      moves: 4,
      byContext: { generated: 1, edited: 2, upscaled: 1, videos: 0 },
      orphansMoved: 1,
      orphans: 1,
      unknown: 1,
      skipped: 1,
    });
  });
});
