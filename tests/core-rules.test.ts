import { describe, expect, it } from "vitest";
import { isRelativeDate, parseDateInput, parseDuration } from "../src/core/dates.ts";
import { unsafeSegmentReason } from "../src/core/ids.ts";
import { extensionFor, parseContextKey, parseLegacyKey, storageKeyFor, thumbnailKeyFor } from "../src/core/keys.ts";
import { detectOperation, resolveOperation } from "../src/core/operation.ts";
import { compareMigrations } from "../src/core/schema-migrations.ts";
import { nextStatus } from "../src/core/status.ts";

describe("detectOperation (the prefix table)", () => {
  it.each([
    ["[EDITED] a fox", "edit", "edited"],
    ["[UPSCALED] a fox", "upscale", "upscaled"],
    ["[VIDEO] a fox running", "video", "videos"],
    ["a fox", "generation", "generated"],
    ["", "generation", "generated"],
    ["  \t\n[EDITED] leading whitespace is ignored", "edit", "edited"],
    ["[EDITED]no space after the prefix", "edit", "edited"],
    ["[edited] lower case is words, not the app's marker", "generation", "generated"],
    ["a fox [EDITED] not at the start", "generation", "generated"],
    ["[VIDEO][EDITED] the first prefix decides", "video", "videos"],
  ])("%j → %s in %s", (prompt, operationType, storageContext) => {
    expect(detectOperation(prompt)).toMatchObject({ operationType, storageContext });
  });

  it.each([
    [{ operationType: "upscale", prompt: "[EDITED] x" }, "upscale", "operationType-column"],
    [{ operationType: null, prompt: "[EDITED] x" }, "edit", "prompt-prefix"],
    [{ operationType: "nonsense", prompt: "[VIDEO] x" }, "video", "prompt-prefix"],
    [{ operationType: "generation", prompt: "[VIDEO] x" }, "generation", "operationType-column"],
  ])("the hybrid rule: %j → %s from %s", (row, operationType, detectedBy) => {
    expect(resolveOperation(row)).toMatchObject({ operationType, detectedBy });
  });
});

describe("the key layout", () => {
  it.each([
    ["generated", "u1", "g1", 0, "webp", "generated/u1/g1_0.webp"],
    ["edited", "u1", "e1", 2, "png", "edited/u1/e1_2.png"],
    ["upscaled", "u1", "s1", 0, "jpg", "upscaled/u1/s1_0.jpg"],
    ["videos", "u1", "v1", 0, "mp4", "videos/u1/v1.mp4"],
    ["videos", "u1", "v1", 1, "mp4", "videos/u1/v1_1.mp4"],
  ] as const)("%s/%s/%s #%i .%s → %s", (context, userId, id, index, ext, key) => {
    expect(storageKeyFor(context, userId, id, index, ext)).toBe(key);
    expect(parseContextKey(key)).toMatchObject({ kind: "output", context, userId, id, index, ext });
  });

  it("puts thumbnails under thumbnails/<context>/", () => {
    const key = thumbnailKeyFor("edited", "u1", "e1", 0);
    expect(key).toBe("thumbnails/edited/u1/e1_0.webp");
    expect(parseContextKey(key)).toMatchObject({
      kind: "thumbnail",
      context: "edited",
      userId: "u1",
      id: "e1",
      index: 0,
    });
  });

  it.each(["../other", "a/b", "..", ".", "", "a\u0000b", "a\nb", " padded", "x".repeat(201), "a\\b"])(
    "refuses the userId %j",
    (userId) => {
      expect(unsafeSegmentReason(userId)).toBeDefined();
      expect(() => storageKeyFor("generated", userId, "g1", 0, "png")).toThrow(/Refusing userId/);
    },
  );

  it.each(["user_123", "auth0|abc", "a.b@example.com", "0f3c"])("accepts the userId %j", (userId) => {
    expect(unsafeSegmentReason(userId)).toBeUndefined();
  });

  it.each([
    ["https://replicate.delivery/xezq/abc/out-0.webp", undefined, "webp"],
    ["https://replicate.delivery/xezq/abc/out-0.JPEG?x=1", undefined, "jpg"],
    ["https://replicate.delivery/xezq/abc/output", "video/mp4", "mp4"],
    ["https://replicate.delivery/xezq/abc/output", undefined, "bin"],
  ])("extension of %s (%s) is %s", (url, type, ext) => {
    expect(extensionFor(url, type)).toBe(ext);
  });
});

describe("parseLegacyKey", () => {
  it.each([
    ["user_1/abc.png", "user-flat", "user_1"],
    ["generations/user_1/abc.png", "generations-folder", "user_1"],
    ["uploads/abc.png", "uploads-folder", undefined],
    ["uploads/user_1/abc.png", "uploads-folder", "user_1"],
    ["thumbnails/user_1/abc.webp", "legacy-thumbnail", "user_1"],
    ["thumbs/user_1/abc.webp", "legacy-thumbnail", "user_1"],
  ])("%s is %s (user %s)", (key, pattern, userId) => {
    expect(parseLegacyKey(key)).toMatchObject({ pattern, userId });
  });

  it.each(["generated/u1/g1_0.png", "thumbnails/edited/u1/e1_0.webp", "a/b/c/d.png", "lonely.png", "user//x.png"])(
    "%s is not a legacy key it knows",
    (key) => {
      expect(parseLegacyKey(key).pattern).toBe("unknown");
    },
  );
});

describe("nextStatus", () => {
  it.each([
    [null, "starting", true, "starting"],
    ["starting", "processing", true, "processing"],
    ["processing", "starting", false, "processing"],
    ["processing", "succeeded", true, "succeeded"],
    ["succeeded", "processing", false, "succeeded"],
    ["succeeded", "starting", false, "succeeded"],
    ["failed", "succeeded", false, "failed"],
    ["succeeded", "succeeded", false, "succeeded"],
    ["starting", "canceled", true, "canceled"],
  ] as const)("%s then %s: applies=%s, stays %s", (current, incoming, apply, status) => {
    expect(nextStatus(current, incoming)).toMatchObject({ apply, status });
  });

  const at = (s: number) => new Date(Date.UTC(2026, 10, 20, 10, 0, s));
  it.each([
    ["succeeded", "failed", at(4), at(9), true, "failed"],
    ["failed", "succeeded", at(9), at(4), false, "failed"],
    ["failed", "succeeded", at(4), at(9), true, "succeeded"],
    ["succeeded", "failed", at(4), at(4), false, "succeeded"],
    ["succeeded", "failed", null, at(9), false, "succeeded"],
    ["succeeded", "failed", at(4), null, false, "succeeded"],
    ["succeeded", "processing", at(4), at(9), false, "succeeded"],
  ] as const)(
    "two final statuses: %s (completed %s) then %s… decided by Replicate's completed_at",
    (current, incoming, currentAt, incomingAt, apply, status) => {
      expect(nextStatus(current, incoming, { current: currentAt, incoming: incomingAt })).toMatchObject({
        apply,
        status,
      });
    },
  );
});

describe("parseDateInput", () => {
  const now = new Date("2026-11-30T12:00:00Z");
  it.each([
    ["2026-11-20", "2026-11-20T00:00:00.000Z"],
    ["2026-11-20T10:30:00Z", "2026-11-20T10:30:00.000Z"],
    ["2026-11-20T10:30:00+02:00", "2026-11-20T08:30:00.000Z"],
    ["2026-11-20T10:30", "2026-11-20T10:30:00.000Z"],
    ["24h", "2026-11-29T12:00:00.000Z"],
    ["7d", "2026-11-23T12:00:00.000Z"],
    ["90m", "2026-11-30T10:30:00.000Z"],
  ])("%s → %s", (text, iso) => {
    expect(parseDateInput(text, now)?.toISOString()).toBe(iso);
  });
  it.each(["yesterday", "2026-13-45", "7 days", "", "5", "-1d", "99999999999d", "9999999999999999w", "100000000w"])(
    "refuses %j",
    (text) => {
      expect(parseDateInput(text, now)).toBeUndefined();
    },
  );
});

describe("parseDuration (every flag and variable that takes a duration)", () => {
  it.each([
    ["500ms", {}, 500],
    ["5s", {}, 5_000],
    ["0.5s", {}, 500],
    [" 10s ", {}, 10_000],
    ["10 s", {}, 10_000],
    ["2m", {}, 120_000],
    ["1.5h", {}, 5_400_000],
    ["7d", {}, 604_800_000],
    ["2w", {}, 1_209_600_000],
    ["0s", {}, 0],
    ["5", { bareUnit: "s" }, 5_000],
    ["1.5", { bareUnit: "s" }, 1_500],
    ["7", { bareUnit: "d" }, 604_800_000],
    ["5", {}, undefined],
    ["-1s", {}, undefined],
    ["5S", {}, undefined],
    ["7 days", {}, undefined],
    ["1y", {}, undefined],
    ["soon", { bareUnit: "s" }, undefined],
    ["", { bareUnit: "s" }, undefined],
    ["1e3s", {}, undefined],
    ["99999999999999999999w", {}, undefined],
  ] as const)("%j %j → %s", (text, options, expected) => {
    expect(parseDuration(text, options)).toBe(expected);
  });

  it.each([
    ["24h", true],
    ["7d", true],
    ["500ms", true],
    ["2026-11-20", false],
    ["2026-11-20T10:30:00Z", false],
    [undefined, false],
  ] as const)("%j is a date relative to now: %s", (text, relative) => {
    expect(isRelativeDate(text)).toBe(relative);
  });
});

describe("compareMigrations", () => {
  const local = [
    { name: "1_init", checksum: "a" },
    { name: "2_more", checksum: "b" },
  ];
  it("reports pending migrations", () => {
    const state = compareMigrations(local, [{ name: "1_init", checksum: "a", finished: true, rolledBack: false }]);
    expect(state).toMatchObject({ applied: ["1_init"], pending: ["2_more"], upToDate: false });
  });
  it("is up to date when every migration finished", () => {
    const applied = local.map((m) => ({ ...m, finished: true, rolledBack: false }));
    expect(compareMigrations(local, applied).upToDate).toBe(true);
  });
  it("reports failed, edited and unknown migrations", () => {
    const state = compareMigrations(local, [
      { name: "1_init", checksum: "changed", finished: true, rolledBack: false },
      { name: "2_more", checksum: "b", finished: false, rolledBack: false },
      { name: "3_newer", checksum: "c", finished: true, rolledBack: false },
    ]);
    expect(state).toMatchObject({ failed: ["2_more"], edited: ["1_init"], unknown: ["3_newer"], upToDate: false });
  });
});
