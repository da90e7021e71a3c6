import { describe, expect, it } from "vitest";
import {
  countFinding,
  emptySummary,
  findingOfMerge,
  listingPrefixes,
  markLost,
  mergeKeys,
  problemCount,
  rowFindings,
  type DoctorRow,
  type ExpectedKey,
  type ListedObject,
  type MergeEvent,
} from "../src/core/doctor.ts";
import { compareKeys } from "../src/core/keys.ts";

const now = new Date("2026-12-01T12:00:00Z");
const row = (extra: Partial<DoctorRow> = {}): DoctorRow => ({
  id: "g1",
  userId: "u1",
  prompt: "a fox",
  status: "succeeded",
  replicateId: "p1",
  imageUrls: ["https://replicate.delivery/x/out-0.png"],
  storageKeys: [
    { key: "generated/u1/g1_0.png", kind: "output", size: 10 },
    { key: "thumbnails/generated/u1/g1_0.webp", kind: "thumbnail", size: 5 },
  ],
  operationType: "generation",
  storageContext: "generated",
  metadata: {},
  createdAt: new Date("2026-12-01T10:00:00Z"),
  ...extra,
});
const kinds = (r: DoctorRow, stuckAfterMs = 3_600_000) => rowFindings(r, { now, stuckAfterMs }).map((f) => f.kind);

describe("rowFindings", () => {
  it.each<[string, Partial<DoctorRow>, string[]]>([
    ["a healthy row", {}, []],
    ["processing for 2 h", { status: "processing", storageKeys: [] }, ["stuck"]],
    ["starting for 2 h, with a limit of 3 h", { status: "starting", storageKeys: [] }, []],
    ["succeeded with URLs and no output", { storageKeys: [] }, ["never-stored"]],
    [
      "succeeded, its output expired before storing",
      { storageKeys: [], metadata: { expiredOutputs: [{ index: 0, url: "u", problem: "expired" }] } },
      ["lost"],
    ],
    ["a legacy key", { storageKeys: ["u1/a.png"] }, ["off-layout"]],
    ["storageContext against the column", { storageContext: "edited" }, ["context-mismatch"]],
    [
      "a key in another context folder than the hybrid rule",
      { operationType: null, prompt: "[EDITED] x", storageContext: null },
      ["context-mismatch", "context-mismatch"],
    ],
    [
      "an image without its thumbnail",
      { storageKeys: [{ key: "generated/u1/g1_0.png", kind: "output" }] },
      ["missing-thumbnail"],
    ],
    [
      "a video needs no thumbnail",
      { operationType: "video", storageContext: null, storageKeys: ["videos/u1/g1.mp4"] },
      [],
    ],
  ])("%s", (_name, extra, expected) => {
    const stuckAfter = _name.includes("3 h") ? 3 * 3_600_000 : 3_600_000;
    expect(kinds(row(extra), stuckAfter)).toEqual(expected);
  });
});

describe('compareKeys: UTF-8 byte order, as S3 and COLLATE "C"', () => {
  it.each([
    ["a-b", "a/c"],
    ["a/c", "a0"],
    ["A", "a"],
    ["\uffff", "😀"], // U+FFFF < U+1F600 in bytes, though not in UTF-16 units
    ["ab", "abc"],
  ])("%s < %s", (a, b) => {
    expect(compareKeys(a, b)).toBeLessThan(0);
    expect(compareKeys(b, a)).toBeGreaterThan(0);
    expect(Buffer.compare(Buffer.from(a), Buffer.from(b))).toBe(-1);
  });
});

/** items in pages of size (the last one shorter), as the scan and the listing give them. */
async function* pages<T>(items: T[], size = 2): AsyncGenerator<T[]> {
  for (let i = 0; i < items.length; i += size) yield await Promise.resolve(items.slice(i, i + size));
}
const exp = (key: string, size: number | null = 1, extra: Partial<ExpectedKey> = {}): ExpectedKey => ({
  key,
  size,
  kind: key.startsWith("thumbnails/") ? "thumbnail" : "output",
  generationId: "g",
  replicateId: null,
  userId: "u1",
  lost: false,
  ...extra,
});
const obj = (key: string, size = 1): ListedObject => ({ key, size });
async function collect(events: AsyncIterable<MergeEvent[]>): Promise<string[]> {
  const out: string[] = [];
  for await (const page of events)
    for (const e of page) out.push(`${e.type} ${"expected" in e ? e.expected.key : e.object.key}`);
  return out;
}

describe("mergeKeys", () => {
  it.each([1, 2, 3, 100])(
    "yields matches, missing keys and unlisted objects in one pass (pages of %i)",
    async (size) => {
      const events = mergeKeys(
        pages([exp("a"), exp("c"), exp("c"), exp("e")], size),
        pages([obj("b"), obj("c"), obj("d"), obj("f"), obj("g")], size),
      );
      expect(await collect(events)).toEqual([
        "missing a",
        "unlisted b",
        "match c",
        "match c",
        "unlisted d",
        "missing e",
        "unlisted f",
        "unlisted g",
      ]);
    },
  );

  it("passes on keys outside the listed prefixes", async () => {
    const events = mergeKeys(pages([exp("generated/u1/x.png"), exp("u1/a.png")]), pages([]), (k) =>
      k.startsWith("generated/"),
    );
    expect(await collect(events)).toEqual(["missing generated/u1/x.png", "outside u1/a.png"]);
  });

  it.each([1, 2])("refuses a stream out of order rather than report false findings (pages of %i)", async (size) => {
    await expect(collect(mergeKeys(pages([exp("b"), exp("a")], size), pages([])))).rejects.toThrow(/after/);
    await expect(collect(mergeKeys(pages([]), pages([obj("b"), obj("a")], size)))).rejects.toThrow(/after/);
    await expect(collect(mergeKeys(pages([exp("c")]), pages([obj("a"), obj("a")], size)))).rejects.toThrow(/after/);
  });

  it("holds one page of each side, however long the streams", async () => {
    let pulled = 0;
    async function* many(n: number): AsyncGenerator<ListedObject[]> {
      for (let i = 0; i < n; i += 1000) {
        pulled++;
        yield Array.from({ length: 1000 }, (_, j) => obj(`k${String(i + j).padStart(7, "0")}`));
      }
    }
    const it = mergeKeys(pages([exp("k0000001")]), many(100_000));
    await it.next(); // unlisted k0000000, match k0000001
    expect(pulled).toBe(1);
  });
});

describe("findingOfMerge", () => {
  it.each<[string, MergeEvent, string | undefined]>([
    [
      "a match",
      { type: "match", expected: exp("generated/u1/g_0.png"), object: obj("generated/u1/g_0.png") },
      undefined,
    ],
    [
      "a size mismatch",
      { type: "match", expected: exp("generated/u1/g_0.png", 5), object: obj("generated/u1/g_0.png", 6) },
      "size-mismatch",
    ],
    [
      "no size recorded",
      { type: "match", expected: exp("generated/u1/g_0.png", null), object: obj("generated/u1/g_0.png", 6) },
      undefined,
    ],
    ["a missing output", { type: "missing", expected: exp("generated/u1/g_0.png") }, "missing-object"],
    [
      "a missing thumbnail",
      { type: "missing", expected: exp("thumbnails/generated/u1/g_0.webp") },
      "missing-thumbnail",
    ],
    ["a key recorded as lost", { type: "missing", expected: exp("generated/u1/g_0.png", 1, { lost: true }) }, "lost"],
    ["an object in a context folder", { type: "unlisted", object: obj("edited/u1/x_0.png") }, "unreferenced-object"],
    ["a legacy object (migrate-keys' business)", { type: "unlisted", object: obj("u1/x.png") }, undefined],
  ])("%s", (_name, event, kind) => {
    expect(findingOfMerge(event as Exclude<MergeEvent, { type: "outside" }>)?.kind).toBe(kind);
  });
});

describe("scope, summary and lost marks", () => {
  it("lists the narrowed folders in key order", () => {
    expect(listingPrefixes({})).toEqual([""]);
    expect(listingPrefixes({ context: "edited", userId: "u1" })).toEqual(["edited/u1/", "thumbnails/edited/u1/"]);
    const all = listingPrefixes({ userId: "u1" });
    expect([...all].sort(compareKeys)).toEqual(all);
    expect(all).toHaveLength(8);
  });

  it("counts every finding, keeps a few examples, and does not count recorded losses as problems", () => {
    const summary = emptySummary();
    for (let i = 0; i < 8; i++) countFinding(summary, { kind: "missing-object", detail: String(i) });
    countFinding(summary, { kind: "lost", detail: "x" });
    expect(summary.counts["missing-object"]).toBe(8);
    expect(summary.examples["missing-object"]).toHaveLength(5);
    expect(problemCount(summary.counts)).toBe(8);
  });

  it("records a lost key once", () => {
    const once = markLost({ a: 1 }, [{ key: "k", kind: "output", reason: "gone", at: "t" }]);
    expect(once).toEqual({ a: 1, lostObjects: [{ key: "k", kind: "output", reason: "gone", at: "t" }] });
    expect(markLost(once, [{ key: "k", kind: "output", reason: "again", at: "t2" }])).toEqual(once);
  });
});
