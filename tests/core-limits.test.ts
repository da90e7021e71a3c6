import { describe, expect, it } from "vitest";
import { MAX_ID_BYTES, MAX_SEGMENT_BYTES, unsafeIdReason, unsafeSegmentReason, utf8Length } from "../src/core/ids.ts";
import { planIngest } from "../src/core/ingest-plan.ts";
import { idLengthProblem, jsonTextProblem, jsonValueProblem, MAX_JSON_DEPTH } from "../src/core/json-limits.ts";
import { storageKeyFor, storageKeyProblem, thumbnailKeyFor } from "../src/core/keys.ts";
import { generationIdHint, parsePrediction, userIdHints } from "../src/core/prediction.ts";
import { samplePrediction } from "./support/webhook-deliveries.ts";

// The limits that keep what can never be stored out of the queue and out of storage keys:
// one rule each, checked where a value comes in, not by PostgreSQL or a provider later.

const deep = (levels: number, leaf = "1") => `${"[".repeat(levels)}${leaf}${"]".repeat(levels)}`;

describe("jsonTextProblem (what jsonb and JSON.stringify can hold)", () => {
  it.each([
    ["a prediction", JSON.stringify(samplePrediction())],
    ["nesting at the limit", deep(MAX_JSON_DEPTH)],
    ["brackets and quotes inside strings", JSON.stringify({ logs: `${"[".repeat(10_000)} \\" "quoted" \\\\` })],
    ["ordinary numbers", "[0, -1, 1.5, 2e10, -3.25E-7, 1e308, 5e-324]"],
    ["a small number numeric still holds", "1e-16000"],
    ["malformed JSON (left to JSON.parse)", "{not json"],
  ])("accepts %s", (_, text) => {
    expect(jsonTextProblem(text)).toBeUndefined();
  });

  it.each([
    ["nesting one level over the limit", deep(MAX_JSON_DEPTH + 1), /nests deeper than 64 levels/],
    ["nesting tens of thousands deep", deep(50_000), /nests deeper/],
    ["objects nested deep", `${'{"a":'.repeat(100)}1${"}".repeat(100)}`, /nests deeper/],
    ["a number beyond a double (1e200000)", '{"x": 1e200000}', /1e200000 is outside the range/],
    ["a number just beyond a double", "[1e309]", /outside the range/],
    ["a negative one", "[-1e400]", /outside the range/],
    ["a number too small for numeric", "[1e-20000]", /too small/],
    ["a zero with a huge negative exponent", "[0e-99999]", /too small/],
    ["a number with 400 digits", `[${"9".repeat(400)}]`, /outside the range/],
  ])("refuses %s", (_, text, reason) => {
    expect(jsonTextProblem(text)).toMatch(reason);
  });
});

describe("jsonValueProblem (the same rules for parsed values)", () => {
  const nested = (levels: number): unknown => {
    let value: unknown = 1;
    for (let i = 0; i < levels; i++) value = [value];
    return value;
  };
  it.each([
    ["a prediction", samplePrediction(), undefined],
    ["nesting at the limit", nested(MAX_JSON_DEPTH), undefined],
    ["nesting over the limit", nested(MAX_JSON_DEPTH + 1), /nests deeper/],
    ["nesting 100,000 deep (no recursion here)", nested(100_000), /nests deeper/],
    ["Infinity", { metrics: { x: Infinity } }, /outside the range/],
    ["NaN", [Number.NaN], /outside the range/],
  ])("%s", (_, value, expected) => {
    const problem = jsonValueProblem(value);
    if (expected === undefined) expect(problem).toBeUndefined();
    else expect(problem).toMatch(expected);
  });
});

describe("idLengthProblem (an index entry holds about 2.7 KB)", () => {
  it.each([
    ["gm3qorzdhgbfurvjtvhg6dckhu", undefined],
    ["x".repeat(256), undefined],
    ["x".repeat(257), /257 bytes long, over the limit of 256/],
    ["é".repeat(129), /258 bytes/],
    ["x".repeat(2_800), /2800 bytes/],
  ])("%s", (id, expected) => {
    const problem = idLengthProblem(id);
    if (expected === undefined) expect(problem).toBeUndefined();
    else expect(problem).toMatch(expected);
  });
});

describe("parsePrediction refuses a body that can never be stored", () => {
  it.each([
    ["1e200000", JSON.stringify(samplePrediction()).replace('"predict_time":2.7', '"predict_time":1e200000')],
    [
      "deep nesting",
      JSON.stringify(samplePrediction({ input: { prompt: "x", nested: "NESTED" } })).replace('"NESTED"', deep(30_000)),
    ],
    ["a prediction id of 2.8 KB", JSON.stringify(samplePrediction({ id: "p".repeat(2_800) }))],
  ])("%s", (_, body) => {
    const parsed = parsePrediction(body);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.reason).toMatch(/cannot be stored|bytes long/);
    // Parsed already (a body stored by an older version): refused all the same.
    expect(parsePrediction(JSON.parse(body)).ok).toBe(false);
  });
});

describe("one rule for ids in storage keys (bytes, dots, look-alikes)", () => {
  it.each([
    [".hidden", /starts with "."/],
    [".", /starts with "."/],
    ["é".repeat(101), /202 bytes long in UTF-8, over the limit of 200/],
    ["😀".repeat(51), /204 bytes/],
    ["x".repeat(MAX_SEGMENT_BYTES + 1), /201 bytes/],
    ["alice\u202Eevil", /bidi control/],
    ["alice\u2066x", /bidi control/],
    ["ali\u200Bce", /zero-width or invisible/],
    ["alice\uFEFF", /zero-width or invisible/],
    ["ali\u2060ce", /zero-width or invisible/],
    ["alice\uFF0Fbob", /look-alike/],
    ["alice\uFF0E\uFF0E", /look-alike/],
    ["a\u2215b", /look-alike/],
    ["a\u2044b", /look-alike/],
    ["a\uFF3Cb", /look-alike/],
    ["a\u3002b", /look-alike/],
    ["a\u2028b", /control character/],
  ])("refuses the userId %j", (userId, reason) => {
    expect(unsafeSegmentReason(userId)).toMatch(reason);
    expect(() => storageKeyFor("generated", userId, "g1", 0, "png")).toThrow(/Refusing userId/);
    expect(userIdHints({ input: { user_id: userId } }, {})[0]).toMatchObject({ accepted: false });
  });

  it.each(["x".repeat(MAX_SEGMENT_BYTES), "é".repeat(100), "auth0|abc", "a.b@example.com", "用户_123", "ユーザー"])(
    "accepts the userId %j",
    (userId) => {
      expect(unsafeSegmentReason(userId)).toBeUndefined();
      expect(storageKeyFor("generated", userId, "g1", 0, "png")).toContain(userId);
    },
  );

  it.each([195, 196, 200, MAX_ID_BYTES + 1])("refuses a generationId of %i characters", (length) => {
    const id = "g".repeat(length);
    expect(unsafeIdReason(id)).toMatch(/over the limit of 180/);
    expect(generationIdHint({ generationId: id })).toMatchObject({ accepted: false });
    expect(() => storageKeyFor("generated", "u1", id, 0, "png")).toThrow(/Refusing id/);
  });

  it("fits the longest id and userId into every key, thumbnails included, under 1,024 bytes", () => {
    const userId = "é".repeat(100);
    const id = "g".repeat(MAX_ID_BYTES);
    const key = thumbnailKeyFor("generated", userId, id, 9_999_999_999, "jpeg");
    expect(storageKeyProblem(key)).toBeUndefined();
    expect(utf8Length(key)).toBeLessThan(1024);
    for (const segment of key.split("/")) expect(utf8Length(segment)).toBeLessThanOrEqual(MAX_SEGMENT_BYTES);
  });

  it("refuses a planned generation id that the local provider would refuse later", () => {
    const plan = planIngest({
      prediction: parsePredictionOrThrow(samplePrediction()),
      row: null,
      hints: [{ accepted: true, source: "webhook-query", field: "userId", userId: "u1" }],
      newId: "g".repeat(197),
    });
    expect(plan).toMatchObject({ ok: false, reason: expect.stringMatching(/generation id .* over the limit of 180/) });
  });
});

describe("storageKeyProblem (every key, both providers' rule)", () => {
  it.each([
    ["generated/u1/g1_0.png", undefined],
    ["uploads/a b/c.png", undefined],
    ["", /is empty/],
    ["/abs/key", /absolute/],
    ["a//b", /empty segment/],
    ["a/../b", /"\.\." segment/],
    ["a/./b", /"\." segment/],
    ["a/.hidden/b", /starting with a dot/],
    [".partial", /starting with a dot/],
    ["a\\b", /backslash/],
    ["a\u0000b", /control character/],
    [`a/${"x".repeat(201)}`, /segment longer than 200 bytes/],
    [`a/${"é".repeat(101)}`, /segment longer than 200 bytes/],
    [Array.from({ length: 6 }, () => "x".repeat(180)).join("/"), /1085 bytes long in UTF-8, over the limit of 1024/],
  ])("%j", (key, expected) => {
    const problem = storageKeyProblem(key);
    if (expected === undefined) expect(problem).toBeUndefined();
    else expect(problem).toMatch(expected);
  });
});

function parsePredictionOrThrow(value: unknown) {
  const parsed = parsePrediction(value);
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.prediction;
}
