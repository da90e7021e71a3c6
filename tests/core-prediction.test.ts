import { describe, expect, it } from "vitest";
import {
  generationIdHint,
  outputUrls,
  parsePrediction,
  promptOf,
  userIdHints,
  type Prediction,
} from "../src/core/prediction.ts";
import { samplePrediction } from "./support/webhook-deliveries.ts";

// Replicate's documented prediction shape (support/webhook-deliveries.ts), with a fixed id.
const base = samplePrediction({
  id: "gm3qorzdhgbfurvjtvhg6dckhu",
  input: { prompt: "[UPSCALED] a red fox in snow" },
  urls: { get: "https://api.replicate.com/v1/predictions/gm3q", web: "https://replicate.com/p/gm3q" },
});

function prediction(overrides: Record<string, unknown> = {}): Prediction {
  const parsed = parsePrediction({ ...base, ...overrides });
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.prediction;
}

describe("parsePrediction", () => {
  it("accepts the documented example and keeps unknown fields", () => {
    const parsed = parsePrediction(base);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.prediction.status).toBe("succeeded");
    expect((parsed.prediction as Record<string, unknown>)["source"]).toBe("api");
  });

  it("accepts a JSON string", () => {
    expect(parsePrediction(JSON.stringify(base)).ok).toBe(true);
  });

  it.each([
    [
      "a starting prediction with null output and timestamps",
      { status: "starting", output: null, started_at: null, completed_at: null },
    ],
    ["a prediction without output at all", { status: "processing", output: undefined }],
    ["a string output", { output: "https://replicate.delivery/x/out.mp4" }],
    ["an object output", { output: { video: "https://replicate.delivery/x/v.mp4", seed: 4 } }],
    ["a failed prediction with an error string", { status: "failed", output: null, error: "CUDA out of memory" }],
    ["an aborted prediction", { status: "aborted", output: null }],
    ["no input", { input: undefined }],
  ])("accepts %s", (_, overrides) => {
    const parsed = parsePrediction({ ...base, ...overrides });
    expect(parsed.ok, parsed.ok ? "" : parsed.reason).toBe(true);
  });

  it("turns a missing output into null", () => {
    expect(prediction({ output: undefined }).output).toBeNull();
  });

  it.each([
    ["malformed JSON text", "{not json", /malformed JSON/],
    ["a non-object", 42, /not a Replicate prediction/],
    ["an unknown status", { ...base, status: "exploded" }, /status/],
    ["a missing id", { ...base, id: undefined }, /id/],
    ["an output array with a number", { ...base, output: ["https://replicate.delivery/a.png", 3] }, /output/],
    ["a non-object input", { ...base, input: "prompt" }, /input/],
  ])("refuses %s with a one-line reason", (_, json, reason) => {
    const parsed = parsePrediction(json);
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.reason).toMatch(reason);
    expect(parsed.reason).not.toContain("\n");
  });
});

describe("outputUrls", () => {
  it.each([
    ["a string is one output", "https://replicate.delivery/a/out.mp4", ["https://replicate.delivery/a/out.mp4"]],
    [
      "an array gives its strings in order",
      ["https://replicate.delivery/a/0.png", "https://replicate.delivery/a/1.png"],
      ["https://replicate.delivery/a/0.png", "https://replicate.delivery/a/1.png"],
    ],
    ["an empty array gives none", [], []],
    [
      "an object gives its URL-looking string values in key order",
      {
        video: "https://replicate.delivery/v.mp4",
        caption: "a fox",
        seed: 4,
        poster: "https://replicate.delivery/p.png",
        nested: { url: "https://x/y" },
      },
      ["https://replicate.delivery/v.mp4", "https://replicate.delivery/p.png"],
    ],
    ["null gives none", null, []],
  ])("%s", (_, output, expected) => {
    expect(outputUrls(prediction({ output }))).toEqual(expected);
  });
});

describe("promptOf", () => {
  it.each([
    ["input.prompt when it is a string", { prompt: "[VIDEO] a fox" }, "[VIDEO] a fox"],
    ['"" when the prompt is not a string', { prompt: 42 }, ""],
    ['"" when there is no prompt', { image: "https://x/y.png" }, ""],
    ['"" when there is no input', undefined, ""],
  ])("gives %s", (_, input, expected) => {
    expect(promptOf(prediction({ input }))).toBe(expected);
  });
});

describe("userIdHints", () => {
  it("lists the query string first, then input user_id, then input userId", () => {
    const hints = userIdHints(
      prediction({ input: { prompt: "p", userId: "carol", user_id: "bob" } }),
      new URLSearchParams("userId=alice"),
    );
    expect(hints).toEqual([
      { accepted: true, source: "webhook-query", field: "userId", userId: "alice" },
      { accepted: true, source: "prediction-input", field: "user_id", userId: "bob" },
      { accepted: true, source: "prediction-input", field: "userId", userId: "carol" },
    ]);
  });

  it("accepts a plain record as the query", () => {
    expect(userIdHints(prediction({ input: {} }), { userId: "alice" })).toEqual([
      { accepted: true, source: "webhook-query", field: "userId", userId: "alice" },
    ]);
  });

  it("gives no hints when nothing names a user", () => {
    expect(
      userIdHints(prediction({ input: { prompt: "p", user_id: null } }), new URLSearchParams("generationId=g1")),
    ).toEqual([]);
  });

  it.each([
    ["path traversal", "..", /\.\./],
    ["path traversal with a slash", "../bob", /slash/],
    ["a slash", "alice/../../etc", /slash/],
    ["a backslash", "alice\\bob", /slash/],
    ["a control character", "alice\u0000", /control/],
    ["an empty value", "", /empty/],
    ["surrounding whitespace", " alice", /whitespace/],
  ])("refuses a query userId with %s, with its reason", (_, value, reason) => {
    const [hint] = userIdHints(prediction({ input: {} }), new URLSearchParams({ userId: value }));
    expect(hint).toMatchObject({ accepted: false, source: "webhook-query", value });
    expect(hint && !hint.accepted && hint.reason).toMatch(reason);
  });

  it.each([
    ["path traversal", ".."],
    ["a number", 42],
    ["an object", { id: "alice" }],
  ])("refuses an input user_id that is %s", (_, value) => {
    const [hint] = userIdHints(prediction({ input: { user_id: value } }), {});
    expect(hint).toMatchObject({ accepted: false, source: "prediction-input", field: "user_id" });
  });

  it("refuses a query userId given twice with different values", () => {
    const [hint] = userIdHints(prediction({ input: {} }), new URLSearchParams("userId=alice&userId=bob"));
    expect(hint).toMatchObject({ accepted: false, reason: expect.stringMatching(/more than once/) });
  });
});

describe("generationIdHint", () => {
  it.each([
    ["absent", new URLSearchParams("userId=alice"), undefined],
    ["a safe id", new URLSearchParams("generationId=cm123"), { accepted: true, generationId: "cm123" }],
    ["a record query", { generationId: "cm123" }, { accepted: true, generationId: "cm123" }],
    [
      "a traversal attempt",
      new URLSearchParams("generationId=.."),
      { accepted: false, value: "..", reason: 'contains ".."' },
    ],
  ])("%s", (_, query, expected) => {
    expect(generationIdHint(query)).toEqual(expected);
  });
});
