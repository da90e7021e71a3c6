import { describe, expect, it } from "vitest";
import { answerKind, parseRetryAfter, retryDelay } from "../src/core/retry.ts";

describe("answerKind", () => {
  it.each([
    [200, "ok"],
    [206, "ok"],
    [301, "redirect"],
    [302, "redirect"],
    [303, "redirect"],
    [307, "redirect"],
    [308, "redirect"],
    [304, "fail"],
    [404, "expired"],
    [410, "expired"],
    [400, "fail"],
    [401, "fail"],
    [403, "fail"],
    [408, "retry"],
    [425, "retry"],
    [429, "retry"],
    [500, "retry"],
    [502, "retry"],
    [503, "retry"],
    [504, "retry"],
    [599, "retry"],
    [100, "fail"],
  ] as const)("%i → %s", (status, kind) => {
    expect(answerKind(status)).toBe(kind);
  });
});

describe("parseRetryAfter", () => {
  const now = Date.parse("2026-11-30T12:00:00Z");
  it.each([
    ["seconds", "120", 120_000],
    ["zero", "0", 0],
    ["spaces around", " 5 ", 5_000],
    ["an HTTP date in the future", "Mon, 30 Nov 2026 12:00:30 GMT", 30_000],
    ["an HTTP date in the past", "Mon, 30 Nov 2026 11:00:00 GMT", 0],
    ["a fraction", "1.5", undefined],
    ["a negative number", "-3", undefined],
    ["garbage", "soon", undefined],
    ["absent", undefined, undefined],
    ["null", null, undefined],
  ] as const)("%s: %j → %j ms", (_, value, expected) => {
    expect(parseRetryAfter(value, now)).toBe(expected);
  });
});

describe("retryDelay (full jitter)", () => {
  const policy = { baseDelayMs: 500, maxDelayMs: 10_000 };
  it.each([
    ["first retry, top of the range", 1, 0.999, undefined, 499],
    ["first retry, bottom of the range", 1, 0, undefined, 0],
    ["second retry doubles the ceiling", 2, 0.5, undefined, 500],
    ["third retry", 3, 0.5, undefined, 1_000],
    ["the ceiling is capped by maxDelayMs", 10, 0.999, undefined, 9_990],
    ["Retry-After is a minimum", 1, 0.1, 3_000, 3_000],
    ["a jittered delay above Retry-After wins", 4, 0.9, 1_000, 3_600],
  ] as const)("%s", (_, retry, random, retryAfter, expected) => {
    expect(retryDelay(retry, policy, retryAfter, () => random)).toBe(expected);
  });
});
