import { describe, expect, it } from "vitest";
import { decideRange, parseFilters, parseMediaPath, parseTab } from "../src/gallery/request.ts";
import { mediaKindOf, mediaUrl } from "../src/gallery/view.ts";

describe("parseMediaPath", () => {
  it.each([
    ["/media/g1/generated/alice/g1_0.png", { id: "g1", key: "generated/alice/g1_0.png" }],
    ["/media/g1/generated/user%201/a%2Bb.png", { id: "g1", key: "generated/user 1/a+b.png" }],
    ["/media/g1/videos/bob/v%C3%A9.webm", { id: "g1", key: "videos/bob/vé.webm" }],
  ])("reads %s", (raw, expected) => {
    expect(parseMediaPath(raw)).toEqual(expected);
  });

  it.each([
    ["/media/g1/../../etc/passwd"],
    ["/media/g1/%2e%2e/%2E%2E/etc/passwd"],
    ["/media/g1/generated%2F..%2F..%2Fetc%2Fpasswd"],
    ["/media/g1/..%5Cetc%5Cpasswd"],
    ["/media/g1/./generated/a.png"],
    ["/media/g1//etc/passwd"],
    ["/media/g1/generated/.hidden"],
    ["/media/g1/generated/a.png%00.jpg"],
    ["/media/g1/generated/%E0%A4%A.png"],
    ["/media/g1"],
    ["/media/"],
    ["/other/g1/a.png"],
  ])("refuses %s", (raw) => {
    expect(parseMediaPath(raw)).toBeUndefined();
  });

  it("reads back what mediaUrl writes", () => {
    const key = "generated/user 1/a+b#c?.png";
    expect(parseMediaPath(mediaUrl("id/with slash", key))).toBeUndefined();
    expect(parseMediaPath(mediaUrl("id 1", key))).toEqual({ id: "id 1", key });
  });
});

describe("decideRange", () => {
  it.each([
    [undefined, 100, { kind: "whole" }],
    ["bytes=0-9", 100, { kind: "partial", start: 0, end: 9 }],
    ["bytes=90-", 100, { kind: "partial", start: 90, end: 99 }],
    ["bytes=90-500", 100, { kind: "partial", start: 90, end: 99 }],
    ["bytes=-10", 100, { kind: "partial", start: 90, end: 99 }],
    ["bytes=-500", 100, { kind: "partial", start: 0, end: 99 }],
    ["bytes=100-", 100, { kind: "unsatisfiable" }],
    ["bytes=-0", 100, { kind: "unsatisfiable" }],
    ["bytes=0-", 0, { kind: "unsatisfiable" }],
    ["bytes=9-0", 100, { kind: "whole" }],
    ["bytes=0-1,5-6", 100, { kind: "whole" }],
    ["items=0-1", 100, { kind: "whole" }],
    ["bytes=-", 100, { kind: "whole" }],
  ])("%s of %i bytes", (header, size, expected) => {
    expect(decideRange(header, size)).toEqual(expected);
  });
});

describe("parseFilters", () => {
  const now = new Date("2026-11-20T12:00:00Z");
  const parse = (query: string) => parseFilters(new URLSearchParams(query), now);

  it.each([
    ["", {}],
    ["user=alice&status=failed", { userId: "alice", statuses: ["failed"] }],
    ["user=%20&status=", {}],
    ["since=2026-11-01", { since: new Date("2026-11-01T00:00:00Z") }],
    // A bare date as the end of a range includes that day.
    ["until=2026-11-01", { until: new Date("2026-11-02T00:00:00Z") }],
    ["until=2026-11-01T10:00:00Z", { until: new Date("2026-11-01T10:00:00Z") }],
    ["since=24h", { since: new Date("2026-11-19T12:00:00Z") }],
  ])("reads %j", (query, expected) => {
    expect(parse(query)).toEqual({ ok: true, value: expected });
  });

  it.each([["status=done"], ["since=yesterday"], ["until=2026-13-45"], [`user=${"x".repeat(501)}`]])(
    "refuses %s",
    (query) => {
      expect(parse(query).ok).toBe(false);
    },
  );

  it.each([
    ["", undefined],
    ["tab=all", undefined],
    ["tab=edited", "edited"],
  ])("reads the tab of %j", (query, context) => {
    expect(parseTab(new URLSearchParams(query))).toEqual({ ok: true, value: context });
  });

  it("refuses an unknown tab", () => {
    expect(parseTab(new URLSearchParams("tab=photos")).ok).toBe(false);
  });
});

describe("mediaKindOf", () => {
  it.each([
    ["a/b.png", "image"],
    ["a/b.WEBP", "image"],
    ["a/b.webm", "video"],
    ["a/b.mp4", "video"],
    ["a/b.svg", "other"],
    ["a/b.html", "other"],
    ["a/b", "other"],
  ])("%s is %s", (key, kind) => {
    expect(mediaKindOf(key)).toBe(kind);
  });
});
